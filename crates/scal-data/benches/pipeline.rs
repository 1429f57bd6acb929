//! Decode + augment throughput: Market-like 128 × 64 JPEGs (the synthetic dataset) resized
//! to 256 × 128, flipped, padded and cropped, normalised and randomly erased, in P × K
//! batches of 64, on all cores (rayon), without the image cache.
//!
//! ```text
//! cargo bench -p scal-data --bench pipeline
//! SCAL_DATA_BENCH_DIR=/tmp/pipeline-bench cargo bench -p scal-data --bench pipeline
//! ```
//!
//! With `SCAL_DATA_BENCH_DIR` the images are kept there for `benches/pil_pipeline.py`.

use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use scal_data::synth::{SynthConfig, generate};
use scal_data::{
    DatasetName, LoaderOptions, ReadOptions, SamplerPosition, TrainLoader, TrainTransform,
    read_dataset,
};

fn pipeline(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let root = match std::env::var("SCAL_DATA_BENCH_DIR") {
        Ok(dir) => std::path::PathBuf::from(dir),
        Err(_) => tmp.path().join("synth"),
    };
    if !root.exists() {
        generate(&SynthConfig::default(), &root).unwrap();
    }
    let train = read_dataset(DatasetName::Market1501, &root, ReadOptions::default())
        .unwrap()
        .train;
    println!("{} training images of 128 x 64", train.len());
    let loader = TrainLoader::new(
        train,
        TrainTransform::new(256, 128),
        LoaderOptions {
            p: 16,
            k: 4,
            ..LoaderOptions::default()
        },
    )
    .unwrap();
    let batches: Vec<_> = loader.sampler().epoch(0);
    let mut group = c.benchmark_group("data_pipeline");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(64));
    let mut i = 0;
    group.bench_function("decode_augment_b64_128x64_to_256x128", |b| {
        b.iter(|| {
            let position = SamplerPosition {
                epoch: 0,
                batch: i % batches.len(),
            };
            let batch = loader
                .load(&batches[i % batches.len()], position, position)
                .unwrap();
            i += 1;
            batch
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
