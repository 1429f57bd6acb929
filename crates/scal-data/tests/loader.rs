//! The training loader on a small synthetic dataset.

use scal_data::synth::{SynthConfig, generate};
use scal_data::{
    DatasetName, LoaderOptions, ReadOptions, SamplerPosition, TrainLoader, TrainTransform,
    read_dataset,
};

fn dataset(dir: &std::path::Path) -> Vec<scal_data::ImageRecord> {
    let out = dir.join("synth");
    generate(
        &SynthConfig {
            train_ids: 8,
            test_ids: 2,
            cameras: 3,
            seed: 1,
            preset: scal_data::synth::SynthPreset::Easy,
        },
        &out,
    )
    .unwrap();
    read_dataset(DatasetName::Market1501, &out, ReadOptions::default())
        .unwrap()
        .train
}

fn options() -> LoaderOptions {
    LoaderOptions {
        p: 4,
        k: 2,
        seed: 9,
        prefetch: 2,
        cache: false,
        strict: false,
    }
}

#[test]
fn batches_have_the_right_shape_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let loader = TrainLoader::new(records.clone(), TrainTransform::new(64, 32), options()).unwrap();
    let batches: Vec<_> = loader
        .iter_from(SamplerPosition::default(), 1)
        .map(Result::unwrap)
        .collect();
    assert_eq!(batches.len(), loader.batches_in_epoch(0));
    for b in &batches {
        assert_eq!(b.shape, [8, 3, 64, 32]);
        assert_eq!(b.images.len(), 8 * 3 * 64 * 32);
        assert!(b.labels.chunks(2).all(|c| c[0] == c[1]));
        assert!(b.labels.iter().all(|&l| (0..8).contains(&l)));
        assert!(b.images.iter().all(|v| v.is_finite()));
    }
    assert_eq!(
        batches.last().unwrap().next,
        SamplerPosition { epoch: 1, batch: 0 }
    );
    let (images, labels) = batches[0].to_tensors(&burn::tensor::Device::flex());
    assert_eq!(images.dims(), [8, 3, 64, 32]);
    assert_eq!(labels.dims(), [8]);
    // Data-parallel shards: two halves of whole identities that concatenate to the batch.
    let device = burn::tensor::Device::flex();
    let halves: Vec<_> = (0..2)
        .map(|i| batches[0].shard_to_tensors(i, 2, &device))
        .collect();
    let mut shard_labels = Vec::new();
    for (i, s) in halves.iter().enumerate() {
        assert_eq!(s.0.dims(), [4, 3, 64, 32]);
        let l: Vec<i64> =
            s.1.clone()
                .into_data()
                .convert::<i64>()
                .try_into_vec()
                .unwrap();
        assert!(l.chunks(2).all(|c| c[0] == c[1]), "shard {i}: {l:?}");
        shard_labels.extend(l);
    }
    assert_eq!(shard_labels, batches[0].labels);
    let whole: Vec<f32> =
        burn::tensor::Tensor::cat(vec![halves[0].0.clone(), halves[1].0.clone()], 0)
            .into_data()
            .try_into_vec()
            .unwrap();
    assert_eq!(whole, batches[0].images);
}

#[test]
fn resumed_and_cached_runs_give_the_same_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let loader = TrainLoader::new(records.clone(), TrainTransform::new(64, 32), options()).unwrap();
    let full: Vec<_> = loader
        .iter_from(SamplerPosition::default(), 2)
        .map(Result::unwrap)
        .collect();
    let resume = full[2].next;
    let resumed: Vec<_> = loader
        .iter_from(resume, 2 - resume.epoch)
        .map(Result::unwrap)
        .collect();
    assert_eq!(resumed.len(), full.len() - 3);
    for (a, b) in resumed.iter().zip(&full[3..]) {
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.images, b.images, "same augmentation after a resume");
    }
    let cached = TrainLoader::new(
        records,
        TrainTransform::new(64, 32),
        LoaderOptions {
            cache: true,
            ..options()
        },
    )
    .unwrap();
    for _ in 0..2 {
        let again: Vec<_> = cached
            .iter_from(SamplerPosition::default(), 1)
            .map(Result::unwrap)
            .collect();
        assert_eq!(again[0].images, full[0].images);
    }
}

#[test]
fn corrupt_images_are_replaced_or_fatal_when_strict() {
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let broken = records[0].path.clone();
    std::fs::write(&broken, b"\xff\xd8 truncated").unwrap();
    let loader = TrainLoader::new(records.clone(), TrainTransform::new(64, 32), options()).unwrap();
    let batches: Vec<_> = loader
        .iter_from(SamplerPosition::default(), 1)
        .map(Result::unwrap)
        .collect();
    assert!(batches.iter().any(|b| {
        b.replaced
            .iter()
            .any(|r| r.path == broken && !r.reason.is_empty())
    }));
    assert!(loader.replaced_images() >= 1);

    let strict = TrainLoader::new(
        records,
        TrainTransform::new(64, 32),
        LoaderOptions {
            strict: true,
            ..options()
        },
    )
    .unwrap();
    let results: Vec<_> = strict.iter_from(SamplerPosition::default(), 1).collect();
    let err = results
        .into_iter()
        .find_map(Result::err)
        .expect("strict mode fails");
    assert!(
        err.to_string()
            .contains(broken.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );
}

#[test]
fn a_split_smaller_than_one_batch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let records = dataset(dir.path());
    let err = TrainLoader::new(
        records,
        TrainTransform::new(64, 32),
        LoaderOptions { p: 16, ..options() },
    )
    .unwrap_err();
    assert!(err.to_string().contains("fewer than one batch"), "{err}");
}
