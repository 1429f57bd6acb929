//! Invariants of the P × K sampler (proptest).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use scal_data::{PkSampler, SamplerPosition};

/// Identity of each image: `counts[i]` images of identity `i * 3 + 1` (sparse raw ids).
fn pids(counts: &[usize]) -> Vec<i64> {
    counts
        .iter()
        .enumerate()
        .flat_map(|(i, &n)| std::iter::repeat_n(i as i64 * 3 + 1, n))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn batches_are_p_identities_times_k_images(
        counts in proptest::collection::vec(1usize..9, 1..30),
        p in 1usize..6,
        k in 1usize..5,
        seed in any::<u64>(),
        epoch in 0u64..4,
    ) {
        let ids = pids(&counts);
        let sampler = match PkSampler::new(&ids, p, k, seed) {
            Ok(s) => s,
            Err(_) => { prop_assert!(counts.len() < p); return Ok(()); }
        };
        let batches = sampler.epoch(epoch);
        prop_assert!(!batches.is_empty());
        let mut seen = BTreeSet::new();
        for batch in &batches {
            prop_assert_eq!(batch.len(), p * k);
            let mut in_batch = BTreeSet::new();
            for chunk in batch.chunks(k) {
                let pid = ids[chunk[0]];
                prop_assert!(chunk.iter().all(|&i| ids[i] == pid), "a chunk is one identity");
                prop_assert!(in_batch.insert(pid), "P distinct identities per batch");
                seen.insert(pid);
            }
        }
        let all: BTreeSet<i64> = ids.iter().copied().collect();
        prop_assert_eq!(seen, all, "every identity at least once per epoch");
        // Identities with at least K images contribute distinct images within a chunk.
        let by_pid: BTreeMap<i64, usize> = ids.iter().fold(BTreeMap::new(), |mut m, p| { *m.entry(*p).or_default() += 1; m });
        for batch in &batches {
            for chunk in batch.chunks(k) {
                if by_pid[&ids[chunk[0]]] >= k {
                    let distinct: BTreeSet<_> = chunk.iter().collect();
                    prop_assert_eq!(distinct.len(), k);
                }
            }
        }
    }

    #[test]
    fn deterministic_and_resumable(
        counts in proptest::collection::vec(1usize..7, 4..20),
        seed in any::<u64>(),
        cut in 0usize..30,
    ) {
        let ids = pids(&counts);
        let sampler = PkSampler::new(&ids, 4, 2, seed).unwrap();
        let again = PkSampler::new(&ids, 4, 2, seed).unwrap();
        prop_assert_eq!(sampler.epoch(3), again.epoch(3));
        let full: Vec<_> = sampler.batches_from(SamplerPosition::default(), 3).collect();
        let cut = cut.min(full.len() - 1);
        let resume_at = if cut == 0 { SamplerPosition::default() } else { full[cut - 1].1 };
        let epochs_left = 3 - resume_at.epoch;
        let resumed: Vec<_> = sampler.batches_from(resume_at, epochs_left).collect();
        prop_assert_eq!(&resumed[..], &full[cut..]);
    }
}

#[test]
fn identities_with_fewer_than_k_images_are_drawn_with_replacement() {
    let ids = [5i64, 7, 7, 7, 7, 9, 9, 9, 9];
    let sampler = PkSampler::new(&ids, 3, 4, 1).unwrap();
    for batch in sampler.epoch(0) {
        let ones: Vec<_> = batch.iter().filter(|&&i| ids[i] == 5).collect();
        assert!(ones.is_empty() || ones.len() == 4);
    }
    let err = PkSampler::new(&ids, 4, 4, 1).unwrap_err().to_string();
    assert!(
        err.contains("3 identities") && err.contains("P = 4"),
        "{err}"
    );
}

#[test]
fn epochs_differ() {
    let ids: Vec<i64> = (0..64).map(|i| i / 4).collect();
    let sampler = PkSampler::new(&ids, 4, 4, 0).unwrap();
    assert_ne!(sampler.epoch(0), sampler.epoch(1));
}
