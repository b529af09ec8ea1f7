//! Choices per microarchitecture: which core this is, what its caches are, and the f32
//! GEMM's cache blocks chosen for it, in one table ([`TABLE`]) with the reason for each
//! entry.
//!
//! The ISA ([`crate::cpu`]) fixes the register tile; this module fixes how much of each
//! operand a loop level keeps resident (`gemm::blocking`), which depends on the core's
//! caches, not on its instructions: Zen 2 and Zen 4 both run the AVX2 kernel, with L2s of
//! 512 KiB and 1 MiB. A core is named from what it reports (x86 CPUID vendor, family and
//! model; the AArch64 main ID register's implementer and part, as Linux shows it), its
//! caches read from CPUID (leaf 4 on Intel, 0x8000001D on AMD) or Linux's sysfs. A core the
//! table does not name runs [`Uarch::Generic`], sized from the L2 it reports.
//!
//! An entry's block budgets are for its typical L2 ([`Entry::l2`]); when the CPU reports
//! a smaller one (a cut-down part, a VM that shows less), both budgets shrink in
//! proportion. A choice forced for an A/B run (`ModelBuilder::uarch`, [`UARCH_VAR`]) uses
//! the entry's own cache sizes, so it reproduces that core's blocks on this one.
//!
//! The register tile, the thread split (`gemm::best_cut`, from the tile and block sizes)
//! and the prefetches (fixed distances of one tile or one row ahead) are the same on every
//! core of an ISA: nothing measured so far asked for a per-core value (`docs/performance.md`).

use crate::error::{Error, Result};

/// The variable that forces a table entry for every model opened without
/// `ModelBuilder::uarch`, by [`Uarch::name`] (e.g. `zen2`): another core's blocks tried on
/// this one without a rebuild.
pub const UARCH_VAR: &str = "ALEXNET_UARCH";

/// A microarchitecture (or family of cores that take the same choices).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Uarch {
    /// AMD Zen, Zen+ and Zen 2 (family 0x17).
    Zen2,
    /// AMD Zen 3 (family 0x19, models 0x00-0x0f and 0x20-0x5f).
    Zen3,
    /// AMD Zen 4 (family 0x19, the other models).
    Zen4,
    /// AMD Zen 5 (family 0x1a).
    Zen5,
    /// Intel cores with AVX2 and a 256 KiB L2: Haswell to Comet Lake client parts, and the
    /// Haswell and Broadwell Xeons.
    IntelClient,
    /// Intel Ice Lake and Tiger Lake client cores: AVX-512 on one FMA port.
    IntelClientAvx512,
    /// Intel hybrid client parts (Alder Lake and later): AVX2 on P- and E-cores.
    IntelHybrid,
    /// Intel Skylake-SP, Cascade Lake and Cooper Lake Xeons.
    SkylakeServer,
    /// Intel Ice Lake-SP Xeons.
    IceLakeServer,
    /// Intel Sapphire Rapids, Emerald Rapids and Granite Rapids Xeons.
    SapphireRapids,
    /// Arm Neoverse N1 (and Cortex-A76-derived server cores).
    NeoverseN1,
    /// Arm Neoverse N2.
    NeoverseN2,
    /// Arm Neoverse V1.
    NeoverseV1,
    /// Arm Neoverse V2.
    NeoverseV2,
    /// Arm Cortex-A76, A77 and A78.
    CortexA76,
    /// Arm Cortex-A53 and A55: small in-order cores.
    CortexA55,
    /// Apple M-series cores.
    AppleM,
    /// Any other core: blocks sized from the L2 it reports.
    Generic,
}

/// One row of the table: a core's typical caches and the blocks chosen for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The core.
    pub uarch: Uarch,
    /// Name as [`UARCH_VAR`] and `--uarch` take it.
    pub name: &'static str,
    /// f32 multiply-adds a cycle at the core's FMA peak (vector width times FMA ports).
    pub fma_lanes: u32,
    /// L1 data cache per core, bytes (typical part).
    pub l1d: usize,
    /// L2 per core, bytes (typical part; a cluster's share where cores share it).
    pub l2: usize,
    /// Depth of a K slice.
    pub kc: usize,
    /// Bytes of packed A per L2-resident block (MC x KC f32).
    pub a_block: usize,
    /// Bytes of packed B per block (KC x NC f32), in L2 or, where L2 is small, L3.
    pub b_block: usize,
    /// Why these sizes.
    pub why: &'static str,
}

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// The blocks most x86 cores with a 1 MiB L2 run: KC 384, 120 x 384 of A (180 KiB) and
/// 384 x 512 of B (768 KiB) together in L2.
const X86: [usize; 3] = [384, 180 * KIB, 768 * KIB];
/// The NEON blocks: KC 256, 128 x 256 of A (128 KiB), 256 x 480 of B (480 KiB).
const ARM: [usize; 3] = [256, 128 * KIB, 480 * KIB];
/// The unnamed core's: its ISA family's.
const GENERIC: [usize; 3] = if cfg!(target_arch = "aarch64") { ARM } else { X86 };

/// A row of [`TABLE`]: core, name, FMA lanes, `[L1d, L2]`, `[KC, A block, B block]`, why.
const fn row(
    uarch: Uarch,
    name: &'static str,
    fma_lanes: u32,
    [l1d, l2]: [usize; 2],
    [kc, a_block, b_block]: [usize; 3],
    why: &'static str,
) -> Entry {
    Entry { uarch, name, fma_lanes, l1d, l2, kc, a_block, b_block, why }
}

/// Every core this runtime names, with its choice and the reason for it: core, name,
/// f32 FMA lanes a cycle, `[L1d, L2]` of a typical part, `[KC, A block, B block]`, why.
#[rustfmt::skip]
pub const TABLE: [Entry; 18] = [
    row(Uarch::Zen2, "zen2", 16, [32 * KIB, 512 * KIB], [384, 180 * KIB, 384 * KIB],
        "L2 is 512 KiB: the 768 KiB B block of a 1 MiB L2 would spill to L3, so B's block halves \
         (NC 256) and stays in L2 beside A's"),
    row(Uarch::Zen3, "zen3", 16, [32 * KIB, 512 * KIB], [384, 180 * KIB, 384 * KIB],
        "L2 is 512 KiB, as on Zen 2: B's block halves to stay in L2"),
    row(Uarch::Zen4, "zen4", 16, [32 * KIB, MIB], X86,
        "measured on a Zen 4 EPYC: KC 192 and 128 were no faster than 384 although the 384-deep B \
         micro-panel (48 KiB) overflows the 32 KiB L1; it streams from L2"),
    row(Uarch::Zen5, "zen5", 32, [48 * KIB, MIB], X86,
        "the blocks measured on Zen 5 EPYCs: the 32 x 384 B micro-panel (48 KiB) fills the 48 KiB \
         L1, A's and B's blocks share the 1 MiB L2"),
    row(Uarch::IntelClient, "intel-client", 16, [32 * KIB, 256 * KIB], [384, 96 * KIB, 768 * KIB],
        "L2 is 256 KiB: A's block shrinks to 96 KiB (MC 60) to stay there with B's micro-panels; \
         B's block is reused from the shared L3"),
    row(Uarch::IntelClientAvx512, "intel-client-avx512", 16, [48 * KIB, 512 * KIB], [384, 180 * KIB, 384 * KIB],
        "L2 is 512 KiB on Ice Lake client (1.25 MiB on Tiger Lake): B's block halves to fit the \
         smaller"),
    row(Uarch::IntelHybrid, "intel-hybrid", 16, [48 * KIB, 512 * KIB], [384, 180 * KIB, 384 * KIB],
        "threads land on E-cores too, four of which share 2 MiB of L2 (512 KiB each), and the \
         slowest task sets the pace: B's block is sized for an E-core"),
    row(Uarch::SkylakeServer, "skylake-server", 32, [32 * KIB, MIB], X86,
        "1 MiB L2 and 32 KiB L1 as on Zen 4: the same blocks"),
    row(Uarch::IceLakeServer, "icelake-server", 32, [48 * KIB, 1280 * KIB], X86,
        "48 KiB L1 and 1.25 MiB L2: the Zen 5 blocks, with room to spare in L2"),
    row(Uarch::SapphireRapids, "sapphire-rapids", 32, [48 * KIB, 2 * MIB], X86,
        "the blocks measured on a Sapphire Rapids class Xeon (issue 14); its 2 MiB L2 would hold \
         larger blocks, not yet measured"),
    row(Uarch::NeoverseN1, "neoverse-n1", 8, [64 * KIB, MIB], ARM,
        "64 KiB L1 holds the 12 x 256 B micro-panel many times over; A's and B's blocks share the \
         1 MiB L2"),
    row(Uarch::NeoverseN2, "neoverse-n2", 8, [64 * KIB, MIB], ARM,
        "the caches of Neoverse N1: the same blocks"),
    row(Uarch::NeoverseV1, "neoverse-v1", 16, [64 * KIB, MIB], ARM,
        "the caches of Neoverse N1 (four 128-bit FMA pipes change the tile's pace, not what stays \
         resident)"),
    row(Uarch::NeoverseV2, "neoverse-v2", 16, [64 * KIB, MIB], ARM,
        "1-2 MiB L2 and 64 KiB L1: the Neoverse N1 blocks"),
    row(Uarch::CortexA76, "cortex-a76", 8, [64 * KIB, 256 * KIB], [256, 96 * KIB, 240 * KIB],
        "L2 is 256-512 KiB: A's block (MC 96) and B's (NC 240) halve to fit the smaller"),
    row(Uarch::CortexA55, "cortex-a55", 4, [32 * KIB, 128 * KIB], [256, 32 * KIB, 96 * KIB],
        "L2 is 0-256 KiB per core (128 KiB typical): A's block (MC 32) and B's (NC 96) fit it \
         together"),
    row(Uarch::AppleM, "apple-m", 16, [128 * KIB, 4 * MIB], ARM,
        "a 128 KiB L1 and a shared L2 of 4 MiB or more: the Neoverse blocks fit with room"),
    row(Uarch::Generic, "generic", 8, [32 * KIB, MIB], GENERIC,
        "a core the table does not name: the blocks of a 1 MiB L2, shrunk in proportion if the \
         core reports less"),
];

impl Uarch {
    /// Every core the table names, `Generic` last.
    pub fn all() -> impl Iterator<Item = Uarch> {
        TABLE.iter().map(|e| e.uarch)
    }

    /// The table's row for this core.
    pub fn entry(self) -> &'static Entry {
        // Every variant has a row (a test checks it); Generic's is the last.
        TABLE.iter().find(|e| e.uarch == self).unwrap_or(&TABLE[TABLE.len() - 1])
    }

    /// Lower-case name as [`UARCH_VAR`] and `--uarch` take it.
    pub fn name(self) -> &'static str {
        self.entry().name
    }

    /// Parse a name (`zen4`, `skylake-server`, ...).
    pub fn parse(name: &str) -> Result<Uarch> {
        let want = name.trim().to_ascii_lowercase();
        TABLE.iter().find(|e| e.name == want).map(|e| e.uarch).ok_or_else(|| Error::UnknownUarch(name.into()))
    }

    /// [`UARCH_VAR`] if set (an unknown name is an error), else `None`.
    pub fn from_env() -> Result<Option<Uarch>> {
        match std::env::var(UARCH_VAR) {
            Ok(v) if !v.trim().is_empty() => Uarch::parse(&v).map(Some),
            _ => Ok(None),
        }
    }
}

impl std::fmt::Display for Uarch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Who made the CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Vendor {
    /// AuthenticAMD (or HygonGenuine, a Zen derivative).
    Amd,
    /// GenuineIntel.
    Intel,
    /// An AArch64 implementer (the main ID register's top byte: 0x41 Arm, 0x61 Apple...).
    Arm(u32),
    /// Not known.
    #[default]
    Unknown,
}

/// What the CPU says about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuId {
    /// The vendor.
    pub vendor: Vendor,
    /// x86 display family (base plus extended), or 0.
    pub family: u32,
    /// x86 display model (extended model in the high nibble), or the AArch64 part number.
    pub model: u32,
    /// L1 data cache per core, bytes, if reported.
    pub l1d: Option<usize>,
    /// L2 per core, bytes, if reported.
    pub l2: Option<usize>,
    /// L3, bytes, if reported.
    pub l3: Option<usize>,
}

impl CpuId {
    /// This CPU, read once per process.
    pub fn detect() -> CpuId {
        static ID: std::sync::OnceLock<CpuId> = std::sync::OnceLock::new();
        *ID.get_or_init(read_cpu_id)
    }

    /// The core this is, from vendor, family and model.
    pub fn uarch(&self) -> Uarch {
        let m = self.model;
        match (self.vendor, self.family) {
            (Vendor::Amd, 0x17) => Uarch::Zen2,
            (Vendor::Amd, 0x19) if matches!(m, 0x00..=0x0f | 0x20..=0x5f) => Uarch::Zen3,
            (Vendor::Amd, 0x19) => Uarch::Zen4,
            (Vendor::Amd, 0x1a) => Uarch::Zen5,
            (Vendor::Intel, 6) => match m {
                0x3c | 0x3f | 0x45 | 0x46 | 0x3d | 0x47 | 0x4f | 0x56 | 0x4e | 0x5e | 0x8e | 0x9e | 0xa5 | 0xa6 => {
                    Uarch::IntelClient
                }
                0x7d | 0x7e | 0x8c | 0x8d | 0xa7 => Uarch::IntelClientAvx512,
                0x97 | 0x9a | 0xb7 | 0xba | 0xbf | 0xaa | 0xac | 0xb5 | 0xc5 | 0xc6 | 0xbd => Uarch::IntelHybrid,
                0x55 => Uarch::SkylakeServer,
                0x6a | 0x6c => Uarch::IceLakeServer,
                0x8f | 0xcf | 0xad | 0xae => Uarch::SapphireRapids,
                _ => Uarch::Generic,
            },
            (Vendor::Arm(0x41), _) => match m {
                0xd0c => Uarch::NeoverseN1,
                0xd49 => Uarch::NeoverseN2,
                0xd40 => Uarch::NeoverseV1,
                0xd4f => Uarch::NeoverseV2,
                0xd0b | 0xd0d | 0xd41 => Uarch::CortexA76,
                0xd03 | 0xd05 => Uarch::CortexA55,
                _ => Uarch::Generic,
            },
            (Vendor::Arm(0x61), _) => Uarch::AppleM,
            _ => Uarch::Generic,
        }
    }
}

/// The choice a model runs: a table entry, and the L2 its budgets are scaled to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// The entry.
    pub uarch: Uarch,
    /// Whether it was forced (builder or [`UARCH_VAR`]) rather than detected.
    pub forced: bool,
    /// The L2 the block budgets are sized for: the CPU's own when detected and reported,
    /// else the entry's.
    pub l2: usize,
}

impl Tuning {
    /// This CPU's entry, with the L2 it reports.
    pub fn detected() -> Tuning {
        let id = CpuId::detect();
        let uarch = id.uarch();
        Tuning { uarch, forced: false, l2: id.l2.unwrap_or(uarch.entry().l2) }
    }

    /// `uarch`'s entry as on that core (its own L2), for runs that try another core's
    /// choice here.
    pub fn forced(uarch: Uarch) -> Tuning {
        Tuning { uarch, forced: true, l2: uarch.entry().l2 }
    }

    /// `forced` if given, else [`UARCH_VAR`] if set, else [`Tuning::detected`].
    pub fn choose(forced: Option<Uarch>) -> Result<Tuning> {
        Ok(match forced.or(Uarch::from_env()?) {
            Some(u) => Tuning::forced(u),
            None => Tuning::detected(),
        })
    }

    /// The process's default (the variable, else this CPU), for products called without a
    /// model's choice; an invalid variable counts as unset here (opening a model reports
    /// it).
    pub fn default_for_process() -> Tuning {
        static T: std::sync::OnceLock<Tuning> = std::sync::OnceLock::new();
        *T.get_or_init(|| Tuning::choose(None).unwrap_or_else(|_| Tuning::detected()))
    }

    /// MC, KC and NC for a register tile of `mr x nr`: the entry's budgets (shrunk in
    /// proportion when the L2 is smaller than the entry's) in whole panels, at least one.
    pub fn blocks(&self, mr: usize, nr: usize) -> [usize; 3] {
        let e = self.uarch.entry();
        let scale = |bytes: usize| if self.l2 < e.l2 { bytes * self.l2 / e.l2 } else { bytes };
        let per_k = 4 * e.kc;
        let mc = (scale(e.a_block) / per_k / mr).max(1) * mr;
        let nc = (scale(e.b_block) / per_k / nr).max(1) * nr;
        [mc, e.kc, nc]
    }
}

/// Read vendor, family, model and caches: CPUID on x86-64, Linux's files on AArch64.
fn read_cpu_id() -> CpuId {
    // Miri runs neither CPUID nor (isolated) file reads: a core it cannot name.
    if cfg!(miri) {
        return CpuId::default();
    }
    #[cfg(target_arch = "x86_64")]
    {
        x86_cpu_id()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut id = CpuId::default();
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        if let Some((imp, part)) = arm_midr(&info) {
            (id.vendor, id.model) = (Vendor::Arm(imp), part);
        }
        (id.l1d, id.l2, id.l3) = (sysfs_cache(1), sysfs_cache(2), sysfs_cache(3));
        id
    }
}

/// The first core's `CPU implementer` and `CPU part` (hexadecimal, `0x41`) in the text of
/// Linux's `/proc/cpuinfo` on AArch64.
pub fn arm_midr(cpuinfo: &str) -> Option<(u32, u32)> {
    let field = |name: &str| {
        let (_, v) = cpuinfo.lines().filter_map(|l| l.split_once(':')).find(|(k, _)| k.trim() == name)?;
        let v = v.trim();
        u32::from_str_radix(v.strip_prefix("0x").or_else(|| v.strip_prefix("0X"))?, 16).ok()
    };
    Some((field("CPU implementer")?, field("CPU part")?))
}

/// A cache size as Linux's sysfs writes it (`32K`, `1M`, `1024`), in bytes; `None` for
/// anything else, or one too large to count.
pub fn cache_size(text: &str) -> Option<usize> {
    let t = text.trim();
    let (num, mult) = match t.as_bytes().last()? {
        b'K' => (&t[..t.len() - 1], KIB),
        b'M' => (&t[..t.len() - 1], MIB),
        b'G' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<usize>().ok()?.checked_mul(mult).filter(|&b| b > 0)
}

#[cfg(target_arch = "x86_64")]
fn x86_cpu_id() -> CpuId {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    let v = __cpuid(0);
    let mut name = [0u8; 12];
    for (i, r) in [v.ebx, v.edx, v.ecx].into_iter().enumerate() {
        name[4 * i..4 * i + 4].copy_from_slice(&r.to_le_bytes());
    }
    let vendor = match &name {
        b"AuthenticAMD" | b"HygonGenuine" => Vendor::Amd,
        b"GenuineIntel" => Vendor::Intel,
        _ => Vendor::Unknown,
    };
    let mut id = CpuId { vendor, ..CpuId::default() };
    if v.eax >= 1 {
        let sig = __cpuid(1).eax;
        let (base_family, base_model) = ((sig >> 8) & 0xf, (sig >> 4) & 0xf);
        id.family = if base_family == 0xf { base_family + ((sig >> 20) & 0xff) } else { base_family };
        id.model = if matches!(base_family, 6 | 0xf) { ((sig >> 16) & 0xf) << 4 | base_model } else { base_model };
    }
    // Deterministic cache parameters: Intel's leaf 4, AMD's 0x8000001D, the same layout.
    let leaf = match vendor {
        Vendor::Amd if __cpuid(0x8000_0000).eax >= 0x8000_001d => Some(0x8000_001d),
        Vendor::Intel if v.eax >= 4 => Some(4),
        _ => None,
    };
    for sub in 0..16 {
        let Some(leaf) = leaf else { break };
        let r = __cpuid_count(leaf, sub);
        let kind = r.eax & 0x1f;
        if kind == 0 {
            break;
        }
        let level = (r.eax >> 5) & 0x7;
        let bytes = ((r.ebx >> 22) + 1) as usize
            * (((r.ebx >> 12) & 0x3ff) + 1) as usize
            * ((r.ebx & 0xfff) + 1) as usize
            * (r.ecx as usize + 1);
        // Type 1 is data, 3 unified; 2 (instructions) is not ours.
        match (level, kind) {
            (1, 1 | 3) => id.l1d = Some(bytes),
            (2, 1 | 3) => id.l2 = Some(bytes),
            (3, 1 | 3) => id.l3 = Some(bytes),
            _ => {}
        }
    }
    id
}

/// The size of cpu0's level-`level` data or unified cache from Linux's sysfs.
#[cfg(not(target_arch = "x86_64"))]
fn sysfs_cache(level: u32) -> Option<usize> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    (0..8).find_map(|i| {
        let d = dir.join(format!("index{i}"));
        let read = |f: &str| std::fs::read_to_string(d.join(f)).ok().map(|s| s.trim().to_string());
        if read("level")? != level.to_string() || read("type")? == "Instruction" {
            return None;
        }
        cache_size(&read("size")?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_has_one_row_and_a_name_that_round_trips() {
        for (i, e) in TABLE.iter().enumerate() {
            assert_eq!(e.uarch.entry(), e, "{}", e.name);
            assert_eq!(Uarch::parse(e.name).unwrap(), e.uarch);
            assert!(TABLE[..i].iter().all(|o| o.uarch != e.uarch && o.name != e.name), "{} twice", e.name);
            assert!(e.kc > 0 && e.a_block >= 4 * e.kc && e.b_block >= 4 * e.kc && !e.why.is_empty());
        }
        assert_eq!(TABLE[TABLE.len() - 1].uarch, Uarch::Generic);
        assert!(matches!(Uarch::parse("zen9"), Err(Error::UnknownUarch(_))));
        assert_eq!(Uarch::parse(" Zen4 ").unwrap(), Uarch::Zen4);
    }

    #[test]
    fn cores_are_named_from_family_and_model() {
        let x86 = |vendor, family, model| CpuId { vendor, family, model, ..CpuId::default() }.uarch();
        assert_eq!(x86(Vendor::Amd, 0x19, 0x11), Uarch::Zen4); // EPYC 9004
        assert_eq!(x86(Vendor::Amd, 0x19, 0x01), Uarch::Zen3); // EPYC 7003
        assert_eq!(x86(Vendor::Amd, 0x19, 0x21), Uarch::Zen3); // Ryzen 5000
        assert_eq!(x86(Vendor::Amd, 0x19, 0x61), Uarch::Zen4); // Ryzen 7000
        assert_eq!(x86(Vendor::Amd, 0x1a, 0x02), Uarch::Zen5);
        assert_eq!(x86(Vendor::Amd, 0x17, 0x31), Uarch::Zen2);
        assert_eq!(x86(Vendor::Intel, 6, 0x55), Uarch::SkylakeServer);
        assert_eq!(x86(Vendor::Intel, 6, 0x8f), Uarch::SapphireRapids);
        assert_eq!(x86(Vendor::Intel, 6, 0x9e), Uarch::IntelClient);
        assert_eq!(x86(Vendor::Intel, 6, 0x97), Uarch::IntelHybrid);
        assert_eq!(x86(Vendor::Intel, 6, 0x01), Uarch::Generic);
        assert_eq!(x86(Vendor::Unknown, 6, 0x55), Uarch::Generic);
        assert_eq!(x86(Vendor::Arm(0x41), 0, 0xd0c), Uarch::NeoverseN1);
        assert_eq!(x86(Vendor::Arm(0x41), 0, 0xd05), Uarch::CortexA55);
        assert_eq!(x86(Vendor::Arm(0x61), 0, 0x022), Uarch::AppleM);
    }

    #[test]
    fn blocks_fill_the_budgets_in_whole_panels() {
        let zen4 = Tuning::forced(Uarch::Zen4);
        assert_eq!(zen4.blocks(12, 32), [120, 384, 512]);
        assert_eq!(zen4.blocks(6, 16), [120, 384, 512]);
        assert_eq!(Tuning::forced(Uarch::Zen2).blocks(6, 16)[2], 256);
        assert_eq!(Tuning::forced(Uarch::NeoverseN1).blocks(8, 12), [128, 256, 480]);
        // A smaller L2 than the entry's shrinks both blocks; a larger one leaves them.
        assert_eq!(Tuning { l2: 512 * KIB, ..zen4 }.blocks(12, 32), [60, 384, 256]);
        assert_eq!(Tuning { l2: 4 * MIB, ..zen4 }.blocks(12, 32), zen4.blocks(12, 32));
        // However small, a block is a whole panel.
        assert_eq!(Tuning { l2: 1, ..zen4 }.blocks(12, 32), [12, 384, 32]);
        for u in Uarch::all() {
            let [mc, kc, nc] = Tuning::forced(u).blocks(12, 32);
            assert!(mc % 12 == 0 && nc % 32 == 0 && mc > 0 && kc > 0 && nc > 0, "{u}");
        }
    }

    #[test]
    fn os_reports_parse_or_are_refused() {
        assert_eq!(cache_size("32K\n"), Some(32 * KIB));
        assert_eq!(cache_size("1M"), Some(MIB));
        assert_eq!(cache_size(" 1024 "), Some(1024));
        for bad in ["", "K", "0K", "-1K", "1.5M", "12Q", "99999999999999999999999K", "18446744073709551615K", "1 K"] {
            assert_eq!(cache_size(bad), None, "{bad:?}");
        }
        let info = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n\n\
                    processor\t: 1\nCPU part\t: 0xd05\n";
        assert_eq!(arm_midr(info), Some((0x41, 0xd0c)), "the first core's");
        assert_eq!(arm_midr("CPU implementer: 0x41\n"), None);
        assert_eq!(arm_midr("CPU implementer: 41\nCPU part: 0xd0c"), None, "not hexadecimal as Linux writes it");
        assert_eq!(arm_midr("CPU implementer: 0xfffffffff\nCPU part: 0xd0c"), None);
        assert_eq!(arm_midr(""), None);
    }

    #[test]
    fn this_cpu_is_read() {
        let t = Tuning::detected();
        assert!(!t.forced && t.l2 > 0);
        assert_eq!(t.uarch, CpuId::detect().uarch());
    }
}
