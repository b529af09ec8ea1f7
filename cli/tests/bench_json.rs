//! `alexnet-bench --json` is valid JSON whatever the weight file's layer names hold:
//! quotes, backslashes and control characters are escaped, and every promised key is
//! there.

use std::process::Command;

use alexnet::plan::{Pads, Preprocess};
use alexnet::synthetic::{self, layers};

#[test]
fn json_output_parses_with_hostile_layer_names() {
    let name = "conv\"1\\\t\u{1}é";
    let plan = layers::plan(
        [3, 19, 19],
        Preprocess::caffe(),
        vec![
            layers::conv(name, 4, 3, 2, Pads::uniform(1), 1, true),
            alexnet::plan::Layer::Flatten,
            layers::linear("fc \"x\"", 5, false),
            alexnet::plan::Layer::Softmax,
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd \"name\".alexnet");
    alexnet::weights::format::write_file(&path, &plan, &synthetic::weights(&plan, 1).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alexnet-bench"))
        .arg("--weights")
        .arg(&path)
        .args(["--iters", "2", "--warmup", "0", "--threads", "1", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    for key in [
        "median_ms",
        "p90_ms",
        "min_ms",
        "mean_ms",
        "throughput_ips",
        "batch",
        "threads",
        "isa",
        "cold_start_ms",
        "precision",
        "gemm",
    ] {
        assert!(doc.get(key).is_some(), "missing {key}");
    }
    assert!(doc["gemm"]["mr"].as_u64().unwrap() > 0 && doc["gemm"]["kc"].as_u64().unwrap() > 0);
    assert_eq!(doc["source"], path.display().to_string());
    let names: Vec<&str> = doc["layers"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert!(names.contains(&format!("conv:{name}").as_str()), "{names:?}");
    assert!(names.contains(&"linear:fc \"x\""), "{names:?}");
}

/// A small conv + linear (`classes` rows) + softmax model written into `dir`.
fn small_model(dir: &std::path::Path, classes: u32) -> std::path::PathBuf {
    let plan = layers::plan(
        [3, 19, 19],
        Preprocess::caffe(),
        vec![
            layers::conv("c", 8, 3, 2, Pads::uniform(1), 1, true),
            alexnet::plan::Layer::Flatten,
            layers::linear("fc", classes, false),
            alexnet::plan::Layer::Softmax,
        ],
    );
    let path = dir.join("small.alexnet");
    alexnet::weights::format::write_file(&path, &plan, &synthetic::weights(&plan, 3).unwrap()).unwrap();
    path
}

#[test]
fn accuracy_mode_reports_agreement_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = small_model(dir.path(), 10);
    let out = Command::new(env!("CARGO_BIN_EXE_alexnet-bench"))
        .arg("--weights")
        .arg(&path)
        .args(["--accuracy", "6", "--threads", "1", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(doc["precision"], "bf16");
    assert_eq!(doc["reference"], "f32");
    assert_eq!(doc["images"], 6);
    let top1 = doc["top1_agreement"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&top1), "{top1}");
    let max = doc["max_abs_dlogp"].as_f64().unwrap();
    let median = doc["median_abs_dlogp"].as_f64().unwrap();
    // bf16 weights move log-probabilities a little, never by nothing at all on random
    // weights, and the median never exceeds the maximum.
    assert!(median <= max && max > 0.0 && max < 1.0, "{median} {max}");
}

#[test]
fn partition_reports_each_layer_at_each_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = small_model(dir.path(), 70);
    let out = Command::new(env!("CARGO_BIN_EXE_alexnet-bench"))
        .arg("--weights")
        .arg(&path)
        .args(["--partition", "1,3", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let per_t = doc["partition"].as_array().unwrap();
    assert_eq!(per_t.iter().map(|p| p["threads"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 3]);
    for p in per_t {
        let t = p["threads"].as_f64().unwrap();
        let layers = p["layers"].as_array().unwrap();
        let fc = layers.iter().find(|l| l["layer"] == "linear:fc").expect("the linear layer");
        // 70 rows in tasks of 32: 3 tasks, the largest 32 of 70 rows.
        assert_eq!(fc["tasks"], 3);
        assert!((fc["largest_share"].as_f64().unwrap() - 32.0 / 70.0).abs() < 1e-3);
        for l in layers {
            let s = l["speedup_bound"].as_f64().unwrap();
            assert!(s > 0.0 && s <= t, "{l}");
        }
    }
    // A thread count of 0 is refused with a clear message.
    let bad = Command::new(env!("CARGO_BIN_EXE_alexnet-bench")).args(["--partition", "0"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("at least 1"));
}

/// `ALEXNET_GEMM_BLOCKS` forces MC, KC and NC (rounded to whole panels), which the bench
/// reports; a malformed value is refused at open with a message naming it.
#[test]
fn forced_gemm_blocks_are_reported_and_malformed_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = small_model(dir.path(), 10);
    let run = |blocks: &str| {
        Command::new(env!("CARGO_BIN_EXE_alexnet-bench"))
            .env("ALEXNET_GEMM_BLOCKS", blocks)
            .arg("--weights")
            .arg(&path)
            .args(["--iters", "2", "--warmup", "0", "--threads", "1", "--json", "--no-profile"])
            .output()
            .unwrap()
    };
    let out = run("1,100,1");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let g = &doc["gemm"];
    assert_eq!(g["forced"], true);
    assert_eq!(g["kc"], 100);
    assert_eq!(g["mc"], g["mr"], "MC rounds up to one panel");
    assert_eq!(g["nc"], g["nr"], "NC rounds up to one panel");
    let out = run("120,384");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ALEXNET_GEMM_BLOCKS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--uarch` and `ALEXNET_UARCH` take another core's entry of the tuning table, which the
/// bench reports with the blocks it gives; an unknown name is refused; `--list-uarch`
/// prints every entry and this CPU's.
#[test]
fn forced_uarch_is_reported_and_unknown_names_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = small_model(dir.path(), 10);
    let run = |args: &[&str], var: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_alexnet-bench"));
        cmd.env_remove("ALEXNET_UARCH").env_remove("ALEXNET_GEMM_BLOCKS");
        if let Some(v) = var {
            cmd.env("ALEXNET_UARCH", v);
        }
        cmd.arg("--weights").arg(&path);
        cmd.args(["--iters", "2", "--warmup", "0", "--threads", "1", "--json", "--no-profile"]).args(args);
        cmd.output().unwrap()
    };
    let json = |out: &std::process::Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("valid JSON")
    };
    let detected = json(&run(&[], None));
    assert_eq!(detected["gemm"]["uarch_forced"], false);
    assert!(detected["gemm"]["uarch"].as_str().is_some_and(|s| !s.is_empty()));
    for (args, var) in [(&["--uarch", "cortex-a55"][..], None), (&[][..], Some("cortex-a55"))] {
        let g = &json(&run(args, var))["gemm"];
        assert_eq!((&g["uarch"], &g["uarch_forced"], &g["l2_kib"]), (&"cortex-a55".into(), &true.into(), &128.into()));
        assert_eq!(g["kc"], 256);
        // A55's 32 KiB of A and 96 KiB of B at KC 256, in whole panels.
        let (mr, nr) = (g["mr"].as_u64().unwrap(), g["nr"].as_u64().unwrap());
        assert_eq!(g["mc"].as_u64().unwrap(), (32 / mr).max(1) * mr);
        assert_eq!(g["nc"].as_u64().unwrap(), (96 / nr).max(1) * nr);
    }
    for (args, var) in [(&["--uarch", "zen9"][..], None), (&[][..], Some("zen9"))] {
        let out = run(args, var);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("zen9"), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let list = Command::new(env!("CARGO_BIN_EXE_alexnet-bench")).arg("--list-uarch").output().unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success() && text.contains("zen4") && text.contains("neoverse-n1") && text.contains("entry "));
}
