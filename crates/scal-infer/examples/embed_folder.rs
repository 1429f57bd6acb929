//! Load a trained checkpoint and embed a folder of images: one L2-normalised ReID feature per
//! image, in file-name order.
//!
//! ```sh
//! cargo run --release -p scal-infer --example embed_folder -- runs/<name>/last photos/
//! ```

use std::path::PathBuf;

use scal_infer::{EmbedOptions, embed_paths, load_model_folder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: embed_folder CHECKPOINT_DIR IMAGE_DIR";
    let mut args = std::env::args().skip(1);
    let checkpoint = PathBuf::from(args.next().ok_or(usage)?);
    let folder = PathBuf::from(args.next().ok_or(usage)?);

    let device = burn::tensor::Device::flex();
    let loaded = load_model_folder(&checkpoint, &device)?;
    let images = scal_data::list_images(&folder)?.images;
    let options = EmbedOptions::new(loaded.config.height, loaded.config.width);
    let features = embed_paths(&loaded.model, &images, options, &device, &mut |_| {})?;

    for (path, feature) in images.iter().zip(features.rows()) {
        let head: Vec<String> = feature.iter().take(4).map(|v| format!("{v:.4}")).collect();
        println!(
            "{}: [{}, …] ({} values)",
            path.display(),
            head.join(", "),
            feature.len()
        );
    }
    Ok(())
}
