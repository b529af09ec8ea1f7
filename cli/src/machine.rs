//! What the machine is, for the bench's header and JSON: the CPU's name, its x86
//! family and model, cache sizes, and whether the bf16 kernels run natively.

/// One line describing this CPU, e.g. `AMD EPYC (family 26, model 2); L2 1024K, L3 32768K`.
pub fn cpu_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()))
    };
    let mut s = field("model name")
        .or_else(|| field("CPU part").map(|p| format!("CPU part {p}")))
        .unwrap_or_else(|| std::env::consts::ARCH.into());
    if let (Some(f), Some(m)) = (field("cpu family"), field("model")) {
        s.push_str(&format!(" (family {f}, model {m})"));
    }
    let cache = |level: u32| {
        let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
        (0..8).find_map(|i| {
            let d = dir.join(format!("index{i}"));
            let lvl = std::fs::read_to_string(d.join("level")).ok()?;
            (lvl.trim() == level.to_string()).then(|| std::fs::read_to_string(d.join("size")).ok()).flatten()
        })
    };
    let caches: Vec<String> = [2, 3].iter().filter_map(|&l| cache(l).map(|v| format!("L{l} {}", v.trim()))).collect();
    if !caches.is_empty() {
        s.push_str("; ");
        s.push_str(&caches.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn describes_something() {
        assert!(!super::cpu_description().is_empty());
    }
}
