//! The training loader: P × K batches decoded and augmented in parallel (rayon) on a
//! background thread that keeps the next batches ready while the model computes, with an
//! optional in-memory cache of decoded, resized images. Output is host memory
//! ([`HostBatch`]) that becomes Burn tensors on any device with [`HostBatch::to_tensors`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, OnceLock};

use burn::tensor::{Device, Int, Tensor, TensorData};
use image::RgbImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::DataError;
use crate::augment::TrainTransform;
use crate::datasets::ImageRecord;
use crate::sampler::{PkSampler, SamplerPosition};
use crate::transform::decode;

/// One batch in host memory.
#[derive(Debug, Clone)]
pub struct HostBatch {
    /// Normalised pixels, `[N, 3, H, W]` flattened.
    pub images: Vec<f32>,
    /// `[N, 3, H, W]`.
    pub shape: [usize; 4],
    /// Training identities (`0..num_ids`), `[N]`.
    pub labels: Vec<i64>,
    /// The sampler position after this batch (save it to resume after it).
    pub next: SamplerPosition,
    /// Images that could not be decoded and were replaced by another image of the same
    /// identity (`strict` off).
    pub replaced: Vec<SkippedImage>,
}

/// An image that could not be decoded and was left out (`strict` off): the training loader
/// replaces it by another image of the same identity; other readers of training images
/// measure without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedImage {
    /// The undecodable file.
    pub path: PathBuf,
    /// Why it could not be decoded.
    pub reason: String,
}

impl HostBatch {
    /// The batch as tensors on `device`.
    ///
    /// # Shapes
    /// - images `[N, 3, H, W]`, labels `[N]`
    pub fn to_tensors(&self, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let images = Tensor::from_data(TensorData::new(self.images.clone(), self.shape), device);
        let labels = Tensor::from_data(
            TensorData::new(self.labels.clone(), [self.labels.len()]),
            device,
        );
        (images, labels)
    }

    /// Shard `index` of `count` equal, contiguous slices of the batch as tensors on `device`
    /// (data-parallel training: one shard per device). The sampler puts the K images of an
    /// identity next to each other, so with P divisible by `count` every shard holds P/count
    /// whole identities.
    ///
    /// # Shapes
    /// - images `[N / count, 3, H, W]`, labels `[N / count]`
    ///
    /// # Panics
    /// If `count` is 0, does not divide N, or `index >= count`.
    pub fn shard_to_tensors(
        &self,
        index: usize,
        count: usize,
        device: &Device,
    ) -> (Tensor<4>, Tensor<1, Int>) {
        let n = self.shape[0];
        assert!(
            count > 0 && n.is_multiple_of(count) && index < count,
            "shard {index} of {count}: the batch of {n} images must split into equal shards"
        );
        let rows = n / count;
        let per_image = self.shape[1] * self.shape[2] * self.shape[3];
        let pixels = self.images[index * rows * per_image..(index + 1) * rows * per_image].to_vec();
        let [_, c, h, w] = self.shape;
        let images = Tensor::from_data(TensorData::new(pixels, [rows, c, h, w]), device);
        let labels = self.labels[index * rows..(index + 1) * rows].to_vec();
        let labels = Tensor::from_data(TensorData::new(labels, [rows]), device);
        (images, labels)
    }
}

/// How the loader behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoaderOptions {
    /// Identities per batch.
    pub p: usize,
    /// Images per identity per batch.
    pub k: usize,
    /// Seed of the sampler and of the augmentation.
    pub seed: u64,
    /// Batches kept ready ahead of the consumer.
    pub prefetch: usize,
    /// Keep decoded, resized images in memory after their first use.
    pub cache: bool,
    /// Fail on an undecodable image instead of replacing it (and logging it).
    pub strict: bool,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions {
            p: 16,
            k: 4,
            seed: 0,
            prefetch: 2,
            cache: false,
            strict: false,
        }
    }
}

/// The training loader (cheap to clone: shared state).
#[derive(Debug, Clone)]
pub struct TrainLoader {
    records: Arc<Vec<ImageRecord>>,
    groups: Arc<Vec<Vec<usize>>>,
    group_of: Arc<Vec<usize>>,
    sampler: Arc<PkSampler>,
    transform: Arc<TrainTransform>,
    cache: Option<Arc<Vec<OnceLock<Arc<RgbImage>>>>>,
    replaced_total: Arc<AtomicUsize>,
    options: LoaderOptions,
}

/// Per-sample random stream: a function of (seed, epoch, batch, slot) only, so results do
/// not depend on threads or on where a run was resumed.
fn sample_rng(seed: u64, position: SamplerPosition, slot: usize) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed ^ 0xA5A5_5A5A_0F0F_F0F0);
    r.set_stream(position.epoch);
    r.set_word_pos(((position.batch as u128) << 24 | slot as u128) << 16);
    r
}

impl TrainLoader {
    /// A loader over the training split.
    ///
    /// # Errors
    /// As [`PkSampler::new`] (a split smaller than one batch, P or K of 0).
    pub fn new(
        records: Vec<ImageRecord>,
        transform: TrainTransform,
        options: LoaderOptions,
    ) -> Result<TrainLoader, DataError> {
        let pids: Vec<i64> = records.iter().map(|r| r.pid).collect();
        let sampler = PkSampler::new(&pids, options.p, options.k, options.seed)?;
        let mut by_pid = std::collections::BTreeMap::<i64, Vec<usize>>::new();
        for (i, pid) in pids.iter().enumerate() {
            by_pid.entry(*pid).or_default().push(i);
        }
        let groups: Vec<Vec<usize>> = by_pid.into_values().collect();
        let mut group_of = vec![0; records.len()];
        for (g, members) in groups.iter().enumerate() {
            for &i in members {
                group_of[i] = g;
            }
        }
        let cache = options
            .cache
            .then(|| Arc::new((0..records.len()).map(|_| OnceLock::new()).collect()));
        Ok(TrainLoader {
            records: Arc::new(records),
            groups: Arc::new(groups),
            group_of: Arc::new(group_of),
            sampler: Arc::new(sampler),
            transform: Arc::new(transform),
            cache,
            replaced_total: Arc::new(AtomicUsize::new(0)),
            options,
        })
    }

    /// The sampler.
    pub fn sampler(&self) -> &PkSampler {
        &self.sampler
    }

    /// Batches per epoch (the epoch's length; the same for every epoch up to the last batch
    /// of an identity set that does not divide evenly).
    pub fn batches_in_epoch(&self, epoch: u64) -> usize {
        self.sampler.epoch(epoch).len()
    }

    /// Images replaced so far because they could not be decoded.
    pub fn replaced_images(&self) -> usize {
        self.replaced_total.load(Ordering::Relaxed)
    }

    /// The resized image of record `index`, decoded (and cached) if needed. An undecodable
    /// image is replaced by the next decodable image of the same identity unless strict.
    fn resized(
        &self,
        index: usize,
        replaced: &mut Vec<SkippedImage>,
    ) -> Result<Arc<RgbImage>, DataError> {
        let pid = self.records[index].pid;
        let group = &self.groups[self.group_of[index]];
        let start = group.iter().position(|&i| i == index).unwrap_or(0);
        let mut first_error = None;
        for offset in 0..group.len() {
            let i = group[(start + offset) % group.len()];
            if let Some(img) = self.cache.as_ref().and_then(|c| c[i].get()) {
                return Ok(img.clone());
            }
            match decode(&self.records[i].path) {
                Ok(img) => {
                    let img = Arc::new(self.transform.resize(&img));
                    if let Some(cache) = &self.cache {
                        let _ = cache[i].set(img.clone());
                    }
                    return Ok(img);
                }
                Err(e) => {
                    if self.options.strict {
                        return Err(e);
                    }
                    replaced.push(SkippedImage {
                        path: self.records[i].path.clone(),
                        reason: e.to_string(),
                    });
                    self.replaced_total.fetch_add(1, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(DataError::Decode {
            path: self.records[index].path.clone(),
            message: format!(
                "no image of identity {pid} could be decoded (first error: {})",
                first_error.map(|e| e.to_string()).unwrap_or_default()
            ),
        })
    }

    /// Decodes and augments one batch of record indices at `position` (which seeds the
    /// augmentation).
    pub fn load(
        &self,
        indices: &[usize],
        position: SamplerPosition,
        next: SamplerPosition,
    ) -> Result<HostBatch, DataError> {
        let len = self.transform.len();
        let mut images = vec![0.0f32; indices.len() * len];
        let replaced: Vec<Vec<SkippedImage>> = images
            .par_chunks_mut(len)
            .zip(indices.par_iter())
            .enumerate()
            .map(|(slot, (out, &index))| {
                let mut replaced = Vec::new();
                let img = self.resized(index, &mut replaced)?;
                let mut rng = sample_rng(self.options.seed, position, slot);
                self.transform.apply_resized_into(&img, &mut rng, out);
                Ok(replaced)
            })
            .collect::<Result<_, DataError>>()?;
        Ok(HostBatch {
            images,
            shape: [
                indices.len(),
                3,
                self.transform.height as usize,
                self.transform.width as usize,
            ],
            labels: indices.iter().map(|&i| self.records[i].pid).collect(),
            next,
            replaced: replaced.into_iter().flatten().collect(),
        })
    }

    /// Batches from `position` for `epochs` epochs (the position's epoch included), prepared
    /// on a background thread `prefetch` batches ahead. Dropping the iterator stops it.
    pub fn iter_from(&self, position: SamplerPosition, epochs: u64) -> BatchIter {
        let (sender, receiver) = sync_channel(self.options.prefetch.max(1));
        let loader = self.clone();
        std::thread::spawn(move || {
            let mut current = position;
            for (indices, next) in loader.sampler.batches_from(position, epochs) {
                let batch = loader.load(&indices, current, next);
                let failed = batch.is_err();
                if sender.send(batch).is_err() || failed {
                    return;
                }
                current = next;
            }
        });
        BatchIter { receiver }
    }
}

/// Batches prepared in the background (see [`TrainLoader::iter_from`]).
#[derive(Debug)]
pub struct BatchIter {
    receiver: Receiver<Result<HostBatch, DataError>>,
}

impl Iterator for BatchIter {
    type Item = Result<HostBatch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.receiver.recv().ok()
    }
}
