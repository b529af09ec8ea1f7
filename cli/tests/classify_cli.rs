//! End-to-end tests of the `alexnet-classify` binary on a small synthetic model.
//!
//! Each test writes its own files into a fresh temporary directory: a weight file for a
//! tiny network (`[3, 35, 35]` -> conv 5x5/2 -> max-pool 3x3/2 -> flatten -> linear 10,
//! ending in logits so the CLI's softmax path is the one exercised), `.npy` tensors and
//! images encoded in the test. Outputs are compared with [`Model::infer`] bit for bit;
//! every failure must be one `alexnet-classify: ...` line on stderr and no panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use alexnet::plan::{Layer, Pads, Plan, Preprocess};
use alexnet::synthetic::layers;
use alexnet::{npy, synthetic, Model};

const BIN: &str = env!("CARGO_BIN_EXE_alexnet-classify");
const CLASSES: usize = 10;

/// The tiny test network; `labels` may be empty.
fn plan(labels: Vec<String>) -> Plan {
    let preprocess = Preprocess { resize_shorter: 40, ..Preprocess::torchvision() };
    let net = vec![
        layers::conv("conv1", 4, 5, 2, Pads::default(), 1, true),
        layers::max_pool(3, 2, Pads::default(), false),
        Layer::Flatten,
        layers::linear("fc", CLASSES as u32, false),
    ];
    Plan { labels, ..layers::plan([3, 35, 35], preprocess, net) }
}

/// Write the test model into `dir` and return its path.
fn write_model(dir: &Path, labels: Vec<String>) -> PathBuf {
    let plan = plan(labels);
    let path = dir.join("tiny.alexnet");
    let tensors = synthetic::weights(&plan, 7).expect("synthetic weights");
    alexnet::weights::format::write_file(&path, &plan, &tensors).expect("write weight file");
    path
}

fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(BIN).args(args).output().expect("run alexnet-classify")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Assert success and return stdout.
fn ok(out: Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "status {:?}, stderr: {err}", out.status);
    assert!(err.is_empty(), "unexpected stderr: {err}");
    stdout(&out)
}

/// Assert a clean failure: non-zero status, exactly one `alexnet-classify:` line on
/// stderr, no panic. Returns the message.
fn fails(out: Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected failure, got success; stdout: {}", stdout(&out));
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "panic: {err}");
    assert_eq!(err.lines().count(), 1, "stderr is not one line: {err:?}");
    assert!(err.starts_with("alexnet-classify: "), "stderr: {err:?}");
    assert!(err.len() > "alexnet-classify: ".len() + 5, "empty message: {err:?}");
    err
}

fn write_png(path: &Path, w: u32, h: u32) {
    let img = image::ImageBuffer::from_fn(w, h, |x, y| image::Rgb([(x * 5) as u8, (y * 3) as u8, ((x + y) * 2) as u8]));
    image::DynamicImage::ImageRgb8(img).save_with_format(path, image::ImageFormat::Png).expect("write png");
}

fn write_jpeg(path: &Path, w: u32, h: u32) {
    let img = image::ImageBuffer::from_fn(w, h, |x, y| image::Rgb([(x * 4) as u8, 200, (y * 6) as u8]));
    image::DynamicImage::ImageRgb8(img).save_with_format(path, image::ImageFormat::Jpeg).expect("write jpeg");
}

fn reference_model(weights: &Path) -> Model {
    Model::builder().threads(1).open(weights).expect("open model")
}

#[test]
fn npy_inputs_match_model_infer_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let weights = write_model(dir.path(), Vec::new());
    let p = plan(Vec::new());
    let batch = synthetic::input(&p, 3, 2);
    let single = synthetic::input(&p, 4, 1);
    npy::write(&dir.path().join("batch.npy"), &[2, 3, 35, 35], &batch).unwrap();
    npy::write(&dir.path().join("single.npy"), &[3, 35, 35], &single).unwrap();
    let probs = dir.path().join("probs.npy");
    let out = run(&[
        "--weights".as_ref(),
        weights.as_os_str(),
        dir.path().join("batch.npy").as_os_str(),
        dir.path().join("single.npy").as_os_str(),
        "--threads=1".as_ref(),
        "--output".as_ref(),
        probs.as_os_str(),
    ]);
    let text = ok(out);
    let got = npy::read(&probs).unwrap();
    assert_eq!(got.shape, vec![3, CLASSES]);
    let mut all = batch.clone();
    all.extend_from_slice(&single);
    let want = reference_model(&weights).infer(&all).unwrap();
    assert_eq!(got.data.len(), want.len());
    for (g, w) in got.data.iter().zip(&want) {
        assert_eq!(g.to_bits(), w.to_bits(), "probabilities differ: {g} vs {w}");
    }
    // Probabilities (the network ends in logits; the CLI reports softmax).
    for row in got.data.chunks(CLASSES) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // Text: a heading per image (batch members indexed), 5 lines each by default.
    assert!(text.contains("batch.npy[0]:") && text.contains("batch.npy[1]:") && text.contains("single.npy:"));
    assert_eq!(text.lines().count(), 3 * 6, "{text}");
}

#[test]
fn json_output_has_k_entries_and_escapes_labels() {
    let dir = tempfile::tempdir().unwrap();
    let mut labels: Vec<String> = (0..CLASSES).map(|i| format!("class {i}")).collect();
    labels[3] = "say \"hi\"\\ \t".into();
    let weights = write_model(dir.path(), labels);
    let p = plan(Vec::new());
    npy::write(&dir.path().join("x.npy"), &[2, 3, 35, 35], &synthetic::input(&p, 5, 2)).unwrap();
    let out = run(&[
        "--weights".as_ref(),
        weights.as_os_str(),
        "--json".as_ref(),
        "--top".as_ref(),
        "10".as_ref(),
        dir.path().join("x.npy").as_os_str(),
    ]);
    let json = ok(out);
    assert_eq!(json.lines().count(), 1, "one JSON object: {json}");
    let doc: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let results = doc["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index_in_input"], i);
        assert_eq!(r["input"], dir.path().join("x.npy").display().to_string());
        let top = r["top"].as_array().expect("top");
        assert_eq!(top.len(), CLASSES);
        assert!(top.iter().all(|c| c["probability"].is_f64() && c["class"].is_u64()));
        let label = |class: u64| top.iter().find(|c| c["class"] == class).map(|c| c["label"].clone());
        assert_eq!(label(3).unwrap(), "say \"hi\"\\ \t");
        assert_eq!(label(0).unwrap(), "class 0");
    }
    // --top 2: two entries per image.
    let out = run(&[
        "--weights".as_ref(),
        weights.as_os_str(),
        "--json".as_ref(),
        "--top=2".as_ref(),
        dir.path().join("x.npy").as_os_str(),
    ]);
    assert_eq!(ok(out).matches("\"class\":").count(), 4);
}

#[test]
fn images_are_preprocessed_like_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let weights = write_model(dir.path(), Vec::new());
    let png = dir.path().join("wide.png");
    let jpg = dir.path().join("tall.jpg");
    write_png(&png, 60, 45);
    write_jpeg(&jpg, 30, 70);
    let probs = dir.path().join("p.npy");
    let out = run(&[
        "--weights".as_ref(),
        weights.as_os_str(),
        png.as_os_str(),
        jpg.as_os_str(),
        "--threads".as_ref(),
        "1".as_ref(),
        "--output".as_ref(),
        probs.as_os_str(),
        "--top".as_ref(),
        "3".as_ref(),
    ]);
    let text = ok(out);
    assert!(text.contains("wide.png:") && text.contains("tall.jpg:"), "{text}");
    assert_eq!(text.lines().count(), 2 * 4, "{text}");
    let model = reference_model(&weights);
    let mut input = alexnet::image::load_image(&png, model.preprocess(), model.input_shape()).unwrap();
    input.extend(alexnet::image::load_image(&jpg, model.preprocess(), model.input_shape()).unwrap());
    let want = model.infer(&input).unwrap();
    let got = npy::read(&probs).unwrap();
    assert_eq!(got.shape, vec![2, CLASSES]);
    assert!(got.data.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()));
}

#[test]
fn label_file_names_the_classes() {
    let dir = tempfile::tempdir().unwrap();
    let weights = write_model(dir.path(), Vec::new());
    let labels = dir.path().join("labels.txt");
    let names: Vec<String> = (0..CLASSES).map(|i| format!("thing-{i}")).collect();
    std::fs::write(&labels, names.join("\n") + "\n").unwrap();
    write_png(&dir.path().join("a.png"), 40, 40);
    let out = run(&[
        "--weights".as_ref(),
        weights.as_os_str(),
        "--labels".as_ref(),
        labels.as_os_str(),
        "--top".as_ref(),
        "10".as_ref(),
        dir.path().join("a.png").as_os_str(),
    ]);
    let text = ok(out);
    for name in &names {
        assert_eq!(text.matches(&format!("  {name}\n")).count(), 1, "{name} missing in {text}");
    }
}

#[test]
fn help_and_usage_errors() {
    let help = ok(run(&["--help"]));
    assert!(help.contains("usage: alexnet-classify") && help.contains("--weights"));
    for args in [
        &[][..],
        &["x.png"][..],
        &["--weights", "m.alexnet"][..],
        &["--weights"][..],
        &["--weights", "m", "--bogus", "x.png"][..],
        &["--weights", "m", "--top", "many", "x.png"][..],
        &["--weights", "m", "--top", "0", "x.png"][..],
        &["--weights", "m", "--threads", "0", "x.png"][..],
        &["--weights", "a", "--weights", "b", "x.png"][..],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "args {args:?}");
        fails(out);
    }
}

#[test]
fn bad_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let weights = write_model(dir.path(), Vec::new());
    let w = weights.as_os_str();
    let good = dir.path().join("good.png");
    write_png(&good, 40, 40);
    // Corrupt image: garbage bytes; truncated PNG and JPEG; an empty file.
    std::fs::write(dir.path().join("garbage.png"), b"this is not an image at all").unwrap();
    let png = std::fs::read(&good).unwrap();
    std::fs::write(dir.path().join("cut.png"), &png[..png.len() / 2]).unwrap();
    write_jpeg(&dir.path().join("full.jpg"), 64, 64);
    let jpg = std::fs::read(dir.path().join("full.jpg")).unwrap();
    std::fs::write(dir.path().join("cut.jpg"), &jpg[..jpg.len() - 40]).unwrap();
    std::fs::write(dir.path().join("empty.jpg"), b"").unwrap();
    // Wrong tensor shapes and a non-npy .npy.
    npy::write(&dir.path().join("hw.npy"), &[1, 3, 34, 35], &vec![0.0; 3 * 34 * 35]).unwrap();
    npy::write(&dir.path().join("rank.npy"), &[3 * 35 * 35], &vec![0.0; 3 * 35 * 35]).unwrap();
    npy::write(&dir.path().join("zero.npy"), &[0, 3, 35, 35], &[]).unwrap();
    std::fs::write(dir.path().join("fake.npy"), b"not numpy").unwrap();
    // A label file one line short.
    std::fs::write(dir.path().join("short.txt"), "a\nb\nc\n").unwrap();

    let msg = fails(run(&["--weights".as_ref(), dir.path().join("missing.alexnet").as_os_str(), good.as_os_str()]));
    assert!(msg.contains("missing.alexnet"), "{msg}");
    fails(run(&["--weights".as_ref(), dir.path().as_os_str(), good.as_os_str()]));
    // A weight file that is really an image.
    let msg = fails(run(&["--weights".as_ref(), good.as_os_str(), good.as_os_str()]));
    assert!(msg.contains("good.png"), "{msg}");
    for bad in
        ["garbage.png", "cut.png", "cut.jpg", "empty.jpg", "hw.npy", "rank.npy", "zero.npy", "fake.npy", "nope.png"]
    {
        let path = dir.path().join(bad);
        let out = run(&["--weights".as_ref(), w, good.as_os_str(), path.as_os_str()]);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        let msg = fails(out);
        assert!(msg.contains(bad), "{bad}: message does not name the file: {msg}");
    }
    let msg = fails(run(&["--weights".as_ref(), w, "--top".as_ref(), "11".as_ref(), good.as_os_str()]));
    assert!(msg.contains("11"), "{msg}");
    let msg = fails(run(&[
        "--weights".as_ref(),
        w,
        "--labels".as_ref(),
        dir.path().join("short.txt").as_os_str(),
        good.as_os_str(),
    ]));
    assert!(msg.contains("3 lines"), "{msg}");
    fails(run(&[
        "--weights".as_ref(),
        w,
        "--labels".as_ref(),
        dir.path().join("none.txt").as_os_str(),
        good.as_os_str(),
    ]));
    // An output path that cannot be written.
    let unwritable = dir.path().join("no-such-dir").join("p.npy");
    let msg = fails(run(&["--weights".as_ref(), w, good.as_os_str(), "--output".as_ref(), unwritable.as_os_str()]));
    assert!(msg.contains("cannot write"), "{msg}");
}

/// Every image result line of a text report, keyed by its heading.
fn headings(text: &str) -> Vec<String> {
    text.lines().filter(|l| !l.starts_with(' ')).map(|l| l.trim_end_matches(':').to_owned()).collect()
}

#[test]
fn folders_stream_in_order_skip_bad_files_and_match_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let weights = write_model(dir.path(), Vec::new());
    let imgs = dir.path().join("imgs");
    std::fs::create_dir_all(imgs.join("sub/deeper")).unwrap();
    // 23 images in nested folders (more than a batch), a corrupt one among them, and
    // files that are not images by content (skipped without a word).
    let mut want_order = Vec::new();
    for i in 0..23 {
        let sub = ["", "sub", "sub/deeper"][i % 3];
        let path = imgs.join(sub).join(format!("img{i:02}.{}", if i % 2 == 0 { "png" } else { "jpg" }));
        if i % 2 == 0 {
            write_png(&path, 36 + i as u32, 40);
        } else {
            write_jpeg(&path, 40, 36 + i as u32);
        }
        want_order.push(path);
    }
    let png = std::fs::read(&want_order[0]).unwrap();
    let corrupt = imgs.join("sub").join("img99.png");
    std::fs::write(&corrupt, &png[..png.len() / 2]).unwrap();
    std::fs::write(imgs.join("notes.txt"), "not an image").unwrap();
    std::fs::write(imgs.join("sub").join("fake.jpg"), "not a jpeg either").unwrap();
    want_order.sort();
    let probs = dir.path().join("p.npy");
    let out = run(&[
        "--weights".as_ref(),
        weights.as_os_str(),
        imgs.as_os_str(),
        "--batch".as_ref(),
        "4".as_ref(),
        "--decode-threads".as_ref(),
        "3".as_ref(),
        "--output".as_ref(),
        probs.as_os_str(),
    ]);
    // The corrupt file is reported (one line naming it) and skipped; the run fails.
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("alexnet-classify: ") && err.contains("img99.png"), "{err}");
    // The others in name order (directories walked in name order), as one by one.
    let text = stdout(&out);
    let shown: Vec<String> = want_order.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(headings(&text), shown);
    let model = reference_model(&weights);
    let got = npy::read(&probs).unwrap();
    // One row per image found, the corrupt one's row NaN.
    let mut all: Vec<_> = want_order.clone();
    all.push(corrupt.clone());
    all.sort();
    assert_eq!(got.shape, vec![all.len(), CLASSES]);
    for (row, path) in got.data.chunks(CLASSES).zip(&all) {
        if *path == corrupt {
            assert!(row.iter().all(|v| v.is_nan()));
            continue;
        }
        let x = alexnet::image::load_image(path, model.preprocess(), model.input_shape()).unwrap();
        let want = model.infer(&x).unwrap();
        assert!(row.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()), "{}", path.display());
    }
}

#[test]
fn paths_from_stdin_and_csv_and_jsonl_records() {
    let dir = tempfile::tempdir().unwrap();
    let weights = write_model(dir.path(), Vec::new());
    let (a, b) = (dir.path().join("a,1.png"), dir.path().join("b.jpg"));
    write_png(&a, 40, 40);
    write_jpeg(&b, 50, 40);
    let list = format!("{}\n\n{}\n", a.display(), b.display());
    let classify = |format: &str| {
        let mut child = Command::new(BIN)
            .args(["--weights".as_ref(), weights.as_os_str(), "-".as_ref(), "--top=3".as_ref()])
            .args(["--format", format])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(list.as_bytes()).unwrap();
        ok(child.wait_with_output().unwrap())
    };
    let csv = classify("csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "path,class_1,label_1,probability_1,class_2,label_2,probability_2,class_3,label_3,probability_3"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1].starts_with(&format!("\"{}\",", a.display())), "a comma in a path is quoted: {}", lines[1]);
    assert!(lines[2].starts_with(&format!("{},", b.display())));
    let jsonl = classify("jsonl");
    let recs: Vec<serde_json::Value> = jsonl.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1]["input"], b.display().to_string());
    assert_eq!(recs[0]["top"].as_array().unwrap().len(), 3);
    // The same classes and probabilities as the library.
    let model = reference_model(&weights);
    let x = alexnet::image::load_image(&b, model.preprocess(), model.input_shape()).unwrap();
    let top = alexnet::top_k(&model.infer(&x).unwrap(), 3).unwrap();
    for (rec, (class, p)) in recs[1]["top"].as_array().unwrap().iter().zip(top) {
        assert_eq!(rec["class"], class);
        assert_eq!(rec["probability"].as_f64().unwrap() as f32, p);
    }
}

#[test]
fn eval_reports_accuracy_on_a_labelled_folder() {
    let dir = tempfile::tempdir().unwrap();
    let weights = write_model(dir.path(), Vec::new());
    let model = reference_model(&weights);
    // Images filed under the class the model gives them (folder names in the file's
    // label order: with no labels, class i is the i-th folder in name order) except one
    // misfiled: top-1 is then (n - 1) / n.
    let set = dir.path().join("val");
    let scratch = dir.path().join("scratch.png");
    let mut n = 0;
    let mut bests = Vec::new();
    for i in 0..12u32 {
        write_png(&scratch, 36 + i, 40 + 2 * i);
        let x = alexnet::image::load_image(&scratch, model.preprocess(), model.input_shape()).unwrap();
        let probs = model.infer(&x).unwrap();
        let best = alexnet::top_k(&probs, 1).unwrap()[0].0;
        bests.push(best);
        let class = if i == 0 { (best + 1) % CLASSES } else { best };
        let folder = set.join(format!("c{class:02}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(&scratch, folder.join(format!("{i}.png"))).unwrap();
        n += 1;
    }
    // Empty folders for the other classes keep folder order equal to class order.
    for c in 0..CLASSES {
        std::fs::create_dir_all(set.join(format!("c{c:02}"))).unwrap();
    }
    std::fs::remove_file(&scratch).unwrap();
    let text = ok(run(&["--weights".as_ref(), weights.as_os_str(), "--eval".as_ref(), set.as_os_str()]));
    let want = format!("top-1 {:.2}%", 100.0 * (n - 1) as f64 / n as f64);
    assert!(text.lines().last().unwrap().starts_with(&want), "{text}");
    assert!(text.contains(&format!("({n} images)")), "{text}");
    // The same through a ground-truth file: every image labelled with class 0.
    let truth = dir.path().join("truth.txt");
    let lines: String = (0..12).map(|i| format!("{i}.png 0\n")).collect();
    std::fs::write(&truth, lines).unwrap();
    let text = ok(run(&[
        "--weights".as_ref(),
        weights.as_os_str(),
        "--eval".as_ref(),
        set.as_os_str(),
        "--ground-truth".as_ref(),
        truth.as_os_str(),
    ]));
    let zeros = bests.iter().filter(|&&b| b == 0).count();
    let want = format!("top-1 {:.2}%", 100.0 * zeros as f64 / 12.0);
    assert!(text.lines().last().unwrap().starts_with(&want), "{text}");
    assert!(text.contains("(12 images)"), "{text}");
    let version = ok(run(&["--version"]));
    assert!(version.starts_with("alexnet-classify "), "{version}");
}

/// Ctrl-C (SIGINT) while the run waits for more paths on stdin: the results so far are
/// written, the `.npy` is complete and valid, the exit status is 130.
#[cfg(unix)]
#[test]
fn interrupt_ends_cleanly_with_results_written() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let weights = write_model(dir.path(), Vec::new());
    let img = dir.path().join("a.png");
    write_png(&img, 40, 40);
    let probs = dir.path().join("p.npy");
    let mut child = Command::new(BIN)
        .args(["--weights".as_ref(), weights.as_os_str(), "-".as_ref(), "--batch=1".as_ref(), "--output".as_ref()])
        .arg(&probs)
        .args(["--format", "csv"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for _ in 0..3 {
        writeln!(stdin, "{}", img.display()).unwrap();
    }
    stdin.flush().unwrap();
    // Wait for the three results (header + 3 rows), with stdin still open.
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    for _ in 0..4 {
        line.clear();
        out.read_line(&mut line).unwrap();
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let done = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(done.status.code(), Some(130), "stderr: {}", String::from_utf8_lossy(&done.stderr));
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(err.contains("interrupted after 3 images"), "{err}");
    let got = npy::read(&probs).unwrap();
    assert_eq!(got.shape, vec![3, CLASSES]);
    assert!(got.data.iter().all(|v| v.is_finite()));
}
