//! The P × K identity sampler (torchreid's `RandomIdentitySampler`), deterministic and
//! resumable.
//!
//! An epoch: each identity's images are shuffled (drawn with replacement up to K when it has
//! fewer than K) and cut into chunks of K; batches take P distinct identities at random among
//! those with chunks left, one chunk each, until fewer than P identities remain. Those last
//! identities are not dropped (unlike torchreid): a final batch takes one chunk of each and
//! fills up with random other identities, so every identity is seen at least once per
//! epoch. The order depends only on the seed and the epoch number, so a position
//! ([`SamplerPosition`]) is enough to resume exactly.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::DataError;

/// Where a run is in the sampler's sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerPosition {
    /// Epoch (0-based).
    pub epoch: u64,
    /// Next batch within the epoch (0-based).
    pub batch: usize,
}

/// P identities × K images per batch.
#[derive(Debug, Clone)]
pub struct PkSampler {
    /// Indices of each identity's images, in identity order.
    groups: Vec<Vec<usize>>,
    p: usize,
    k: usize,
    seed: u64,
}

impl PkSampler {
    /// A sampler over images whose identities are `pids` (`pids[i]` is image `i`'s identity).
    ///
    /// # Errors
    /// If `p` or `k` is 0, or there are fewer than `p` identities (not even one batch).
    pub fn new(pids: &[i64], p: usize, k: usize, seed: u64) -> Result<PkSampler, DataError> {
        if p == 0 || k == 0 {
            return Err(DataError::EmptyBatch { p, k });
        }
        let mut by_pid: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (i, pid) in pids.iter().enumerate() {
            by_pid.entry(*pid).or_default().push(i);
        }
        if by_pid.len() < p {
            return Err(DataError::TooFewIdentities {
                identities: by_pid.len(),
                images: pids.len(),
                p,
            });
        }
        Ok(PkSampler {
            groups: by_pid.into_values().collect(),
            p,
            k,
            seed,
        })
    }

    /// Identities per batch.
    pub fn p(&self) -> usize {
        self.p
    }

    /// Images per identity per batch.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of identities.
    pub fn identities(&self) -> usize {
        self.groups.len()
    }

    /// The batches of `epoch`: each `P × K` image indices, identity by identity (K
    /// consecutive indices of one identity).
    pub fn epoch(&self, epoch: u64) -> Vec<Vec<usize>> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(epoch);
        let mut chunks: Vec<Vec<Vec<usize>>> = self
            .groups
            .iter()
            .map(|images| {
                let mut pool: Vec<usize> = if images.len() < self.k {
                    (0..self.k)
                        .map(|_| images[rng.random_range(0..images.len())])
                        .collect()
                } else {
                    images.clone()
                };
                pool.shuffle(&mut rng);
                let mut chunks: Vec<Vec<usize>> =
                    pool.chunks_exact(self.k).map(<[usize]>::to_vec).collect();
                chunks.reverse(); // popped from the back
                chunks
            })
            .collect();
        let mut available: Vec<usize> = (0..self.groups.len()).collect();
        let mut batches = Vec::new();
        while available.len() >= self.p {
            available.shuffle(&mut rng);
            let mut batch = Vec::with_capacity(self.p * self.k);
            for &g in &available[..self.p] {
                batch.extend(chunks[g].pop().expect("available groups have chunks"));
            }
            available.retain(|&g| !chunks[g].is_empty());
            batches.push(batch);
        }
        if !available.is_empty() {
            // The last few identities, topped up with others drawn at random.
            let mut batch = Vec::with_capacity(self.p * self.k);
            for &g in &available {
                batch.extend(chunks[g].pop().expect("available groups have chunks"));
            }
            let mut others: Vec<usize> = (0..self.groups.len())
                .filter(|g| !available.contains(g))
                .collect();
            others.shuffle(&mut rng);
            for &g in others.iter().take(self.p - available.len()) {
                let images = &self.groups[g];
                if images.len() >= self.k {
                    let mut pool = images.clone();
                    pool.shuffle(&mut rng);
                    batch.extend_from_slice(&pool[..self.k]);
                } else {
                    batch.extend((0..self.k).map(|_| images[rng.random_range(0..images.len())]));
                }
            }
            batches.push(batch);
        }
        batches
    }

    /// The batches from `position` on, for up to `epochs` epochs after it (the position's
    /// own epoch included), each with the position that follows it.
    pub fn batches_from(
        &self,
        position: SamplerPosition,
        epochs: u64,
    ) -> impl Iterator<Item = (Vec<usize>, SamplerPosition)> + '_ {
        (position.epoch..position.epoch + epochs).flat_map(move |epoch| {
            let batches = self.epoch(epoch);
            let count = batches.len();
            let skip = if epoch == position.epoch {
                position.batch
            } else {
                0
            };
            batches
                .into_iter()
                .enumerate()
                .skip(skip)
                .map(move |(i, b)| {
                    let next = if i + 1 == count {
                        SamplerPosition {
                            epoch: epoch + 1,
                            batch: 0,
                        }
                    } else {
                        SamplerPosition {
                            epoch,
                            batch: i + 1,
                        }
                    };
                    (b, next)
                })
        })
    }
}
