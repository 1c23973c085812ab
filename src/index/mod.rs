//! Exact radius search over stored hashes, one index per algorithm.
//!
//! "Exact" means no stored hash within the radius is ever missed: the property tests below
//! compare every engine with a brute-force oracle. Inserts and removals apply at once, with no
//! rebuild, while searches run concurrently. The engines behind [`HashIndex`] are replaceable:
//! today a linear popcount scan for perceptual hashes and a hash map for exact digests.

mod exact;
mod linear;

pub use exact::ExactIndex;
pub use linear::LinearIndex;

use crate::bank::BankId;
use crate::hash::{Algorithm, HashValue};

/// A stored hash found by a search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IndexHit {
    pub distance: u32,
    pub hash: HashValue,
    pub bank: BankId,
}

/// A set of (hash, bank) pairs of one algorithm that answers radius queries.
pub trait HashIndex: Send + Sync {
    /// Adds a pair; returns false if it was already there.
    fn insert(&self, hash: &HashValue, bank: BankId) -> bool;

    /// Adds many pairs under one lock; returns how many were new.
    fn insert_many(&self, pairs: &[(HashValue, BankId)]) -> usize {
        pairs
            .iter()
            .filter(|(hash, bank)| self.insert(hash, *bank))
            .count()
    }

    /// Removes a pair; returns false if it was not there.
    fn remove(&self, hash: &HashValue, bank: BankId) -> bool;

    /// Removes every pair of a bank; returns how many.
    fn remove_bank(&self, bank: BankId) -> usize;

    /// Appends every stored pair within `radius` bits of `query` to `hits`, in no order.
    fn search(&self, query: &HashValue, radius: u32, hits: &mut Vec<IndexHit>);

    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One index per algorithm.
pub struct IndexSet {
    pdq: LinearIndex<4>,
    phash: LinearIndex<1>,
    dhash: LinearIndex<1>,
    ahash: LinearIndex<1>,
    md5: ExactIndex,
    sha256: ExactIndex,
}

impl Default for IndexSet {
    fn default() -> Self {
        IndexSet {
            pdq: LinearIndex::new(Algorithm::Pdq),
            phash: LinearIndex::new(Algorithm::PHash),
            dhash: LinearIndex::new(Algorithm::DHash),
            ahash: LinearIndex::new(Algorithm::AHash),
            md5: ExactIndex::default(),
            sha256: ExactIndex::default(),
        }
    }
}

impl IndexSet {
    pub fn get(&self, algorithm: Algorithm) -> &dyn HashIndex {
        match algorithm {
            Algorithm::Pdq => &self.pdq,
            Algorithm::PHash => &self.phash,
            Algorithm::DHash => &self.dhash,
            Algorithm::AHash => &self.ahash,
            Algorithm::Md5 => &self.md5,
            Algorithm::Sha256 => &self.sha256,
        }
    }

    /// Removes a bank from every index; returns how many pairs went.
    pub fn remove_bank(&self, bank: BankId) -> usize {
        Algorithm::ALL
            .into_iter()
            .map(|algorithm| self.get(algorithm).remove_bank(bank))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// Hashes clustered around a few centres, so that small radii find something.
    fn clustered_hash(algorithm: Algorithm) -> impl Strategy<Value = HashValue> {
        let len = algorithm.byte_len();
        (0u8..4, proptest::collection::vec(any::<u8>(), len), 0usize..12).prop_map(
            move |(centre, noise, flips)| {
                let mut bytes = vec![centre.wrapping_mul(0x5b); len];
                for (i, byte) in noise.iter().enumerate().take(flips) {
                    bytes[usize::from(*byte) % len] ^= 1 << (i % 8);
                }
                HashValue::from_bytes(algorithm, &bytes).unwrap()
            },
        )
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(HashValue, u32),
        Remove(HashValue, u32),
        RemoveBank(u32),
        Search(HashValue, u32),
    }

    fn ops(algorithm: Algorithm) -> impl Strategy<Value = Vec<Op>> {
        let max_radius = algorithm.bits() / 4;
        let op = prop_oneof![
            6 => (clustered_hash(algorithm), 0u32..3).prop_map(|(h, b)| Op::Insert(h, b)),
            2 => (clustered_hash(algorithm), 0u32..3).prop_map(|(h, b)| Op::Remove(h, b)),
            1 => (0u32..3).prop_map(Op::RemoveBank),
            4 => (clustered_hash(algorithm), 0..=max_radius).prop_map(|(h, r)| Op::Search(h, r)),
        ];
        proptest::collection::vec(op, 1..200)
    }

    /// Runs `ops` on `index` and on a plain set, checking every answer against brute force.
    fn check_against_brute_force(index: &dyn HashIndex, ops: &[Op]) {
        let mut model: BTreeSet<(HashValue, u32)> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Insert(hash, bank) => {
                    assert_eq!(index.insert(hash, BankId(*bank)), model.insert((*hash, *bank)));
                }
                Op::Remove(hash, bank) => {
                    assert_eq!(index.remove(hash, BankId(*bank)), model.remove(&(*hash, *bank)));
                }
                Op::RemoveBank(bank) => {
                    let before = model.len();
                    model.retain(|(_, b)| b != bank);
                    assert_eq!(index.remove_bank(BankId(*bank)), before - model.len());
                }
                Op::Search(query, radius) => {
                    let radius = if query.algorithm().is_exact() { 0 } else { *radius };
                    let mut hits = Vec::new();
                    index.search(query, radius, &mut hits);
                    hits.sort();
                    let mut expected: Vec<IndexHit> = model
                        .iter()
                        .filter_map(|(hash, bank)| {
                            let distance = hash.distance(query)?;
                            (distance <= radius).then_some(IndexHit {
                                distance,
                                hash: *hash,
                                bank: BankId(*bank),
                            })
                        })
                        .collect();
                    expected.sort();
                    assert_eq!(hits, expected);
                }
            }
            assert_eq!(index.len(), model.len());
        }
    }

    proptest! {
        #[test]
        fn pdq_index_agrees_with_brute_force(ops in ops(Algorithm::Pdq)) {
            check_against_brute_force(IndexSet::default().get(Algorithm::Pdq), &ops);
        }

        #[test]
        fn phash_index_agrees_with_brute_force(ops in ops(Algorithm::PHash)) {
            check_against_brute_force(IndexSet::default().get(Algorithm::PHash), &ops);
        }

        #[test]
        fn dhash_index_agrees_with_brute_force(ops in ops(Algorithm::DHash)) {
            check_against_brute_force(IndexSet::default().get(Algorithm::DHash), &ops);
        }

        #[test]
        fn ahash_index_agrees_with_brute_force(ops in ops(Algorithm::AHash)) {
            check_against_brute_force(IndexSet::default().get(Algorithm::AHash), &ops);
        }

        #[test]
        fn md5_index_agrees_with_brute_force(ops in ops(Algorithm::Md5)) {
            check_against_brute_force(IndexSet::default().get(Algorithm::Md5), &ops);
        }

        #[test]
        fn sha256_index_agrees_with_brute_force(ops in ops(Algorithm::Sha256)) {
            check_against_brute_force(IndexSet::default().get(Algorithm::Sha256), &ops);
        }
    }

    #[test]
    fn searches_run_while_inserts_and_removals_apply() {
        let index = std::sync::Arc::new(LinearIndex::<4>::new(Algorithm::Pdq));
        let stable = HashValue::from_bytes(Algorithm::Pdq, &[0xAA; 32]).unwrap();
        index.insert(&stable, BankId(0));
        let writer = {
            let index = index.clone();
            std::thread::spawn(move || {
                for i in 0..2000u32 {
                    let mut bytes = [0u8; 32];
                    bytes[..4].copy_from_slice(&i.to_be_bytes());
                    let hash = HashValue::from_bytes(Algorithm::Pdq, &bytes).unwrap();
                    index.insert(&hash, BankId(1));
                    if i % 2 == 0 {
                        index.remove(&hash, BankId(1));
                    }
                }
            })
        };
        // The stable hash must be found by every search, whatever the writer is doing.
        for _ in 0..500 {
            let mut hits = Vec::new();
            index.search(&stable, 0, &mut hits);
            assert_eq!(hits.len(), 1);
        }
        writer.join().unwrap();
        assert_eq!(index.len(), 1 + 1000);
    }
}
