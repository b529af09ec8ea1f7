//! Embedding `alexnet` in a program: open a weight file once, share the model across
//! threads, classify.
//!
//! ```sh
//! cargo run --release --example embed -- model.alexnet [image.jpg]
//! ```
//! Without arguments it writes the spec network with synthetic weights to a temporary
//! file first, so it runs anywhere.

use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match args.first() {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            let plan = alexnet::synthetic::spec_plan();
            let p = std::env::temp_dir().join("alexnet-embed-example.alexnet");
            alexnet::weights::format::write_file(&p, &plan, &alexnet::synthetic::weights(&plan, 1)?)?;
            p
        }
    };

    // One model, mapped once, shared by every thread; it owns a 2-thread pool.
    let model = Arc::new(alexnet::Model::builder().threads(2).open(&path)?);
    println!("{} classes, input {:?}, {} kernels", model.num_classes(), model.input_shape(), model.isa());

    // An image if given (decoded and preprocessed as the file's metadata says), else a
    // deterministic synthetic input.
    let input = match args.get(1) {
        Some(img) => alexnet::image::load_image(std::path::Path::new(img), model.preprocess(), model.input_shape())?,
        None => alexnet::synthetic::input(model.plan(), 7, 1),
    };

    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (model, input) = (Arc::clone(&model), input.clone());
            std::thread::spawn(move || model.infer(&input))
        })
        .collect();
    let labels = alexnet::labels::for_model(model.labels(), model.num_classes());
    for w in workers {
        let probs = w.join().map_err(|_| "worker panicked")??;
        let top = alexnet::top_k(&probs, 3)?;
        let line: Vec<String> = top.iter().map(|(i, p)| format!("{} {:.4}", labels[*i], p)).collect();
        println!("{}", line.join(" | "));
    }
    Ok(())
}
