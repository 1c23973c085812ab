//! Exact radius search over stored hashes, one index per algorithm.
//!
//! "Exact" means no stored hash within the radius is ever missed: the property tests below
//! compare every engine with a brute-force oracle. Inserts and removals apply at once, with no
//! rebuild, while searches run concurrently. Perceptual hashes go to multi-index hashing
//! ([`MihIndex`]), which scans instead where that is cheaper; exact digests to a hash map.
//! [`LinearIndex`], a plain scan, is kept as the baseline that benchmarks measure against.

mod exact;
mod huge_pages;
mod linear;
mod mih;

pub use exact::ExactIndex;
pub use linear::LinearIndex;
pub use mih::{MihConfig, MihIndex};

use crate::bank::{BankId, EntryKey, Thresholds};
use crate::hash::{Algorithm, HashValue};

/// Bits of the sequence number in a packed entry key; the bank id takes the rest.
const SEQ_BITS: u32 = 40;

/// An entry key packed into one word, so an entry costs 8 bytes beside its hash. The store
/// hands out bank ids up to [`MAX_BANK_ID`] and sequence numbers up to [`MAX_SEQ`], which fit.
///
/// [`MAX_BANK_ID`]: crate::bank::MAX_BANK_ID
/// [`MAX_SEQ`]: crate::bank::MAX_SEQ
fn pack(key: EntryKey) -> u64 {
    debug_assert!(key.bank.0 <= crate::bank::MAX_BANK_ID && key.seq <= crate::bank::MAX_SEQ);
    (u64::from(key.bank.0) << SEQ_BITS) | key.seq
}

fn unpack(packed: u64) -> EntryKey {
    EntryKey {
        bank: BankId(bank_of(packed)),
        seq: packed & ((1 << SEQ_BITS) - 1),
    }
}

fn bank_of(packed: u64) -> u32 {
    (packed >> SEQ_BITS) as u32
}

/// A stored hash found by a search, with where the store keeps its entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IndexHit {
    pub distance: u32,
    pub hash: HashValue,
    pub key: EntryKey,
}

/// The entries of one algorithm, each a hash in a bank with its store key, unique by (hash,
/// bank): answers radius queries, and finds an entry's key from its hash and bank.
pub trait HashIndex: Send + Sync {
    /// Adds an entry; returns false, changing nothing, if its (hash, bank) was already there.
    fn insert(&self, hash: &HashValue, key: EntryKey) -> bool;

    /// Adds many entries under one lock; returns how many were new.
    fn insert_many(&self, entries: &[(HashValue, EntryKey)]) -> usize {
        entries
            .iter()
            .filter(|(hash, key)| self.insert(hash, *key))
            .count()
    }

    /// Adds entries whose (hash, bank) pairs are distinct and not yet present, as the matcher
    /// knows after looking each one up with [`HashIndex::get`] under its write lock, without
    /// looking them up again.
    fn insert_new(&self, entries: &[(HashValue, EntryKey)]) {
        self.insert_many(entries);
    }

    /// Makes room for `additional` more entries ahead of a bulk load, so that the engine's
    /// arrays are not copied as they grow.
    fn reserve(&self, _additional: usize) {}

    /// Like [`HashIndex::insert_new`], for a bulk load such as a store's at start-up: the
    /// engine may defer all upkeep until [`HashIndex::settle`], which must follow.
    fn load_distinct(&self, entries: &[(HashValue, EntryKey)]) {
        self.insert_new(entries);
    }

    /// Ends a bulk load: lets the engine reorganise so that later searches are fast.
    fn settle(&self) {}

    /// Whether [`HashIndex::settle`] has work to do: searches meanwhile scan what it would
    /// fold into the engine's tables.
    fn needs_settling(&self) -> bool {
        false
    }

    /// Upkeep between writes: reorganises what searches have paid for in scanning as much as
    /// reorganising costs (see [`MihIndex::fold_paid_for`]). Call it now and then.
    fn fold_paid_for(&self) {}

    /// Codes every search compares one by one (an engine without tables: all of them), for
    /// the metrics: a figure that stays high after a load means its end did not settle.
    fn scanned(&self) -> usize {
        0
    }

    /// The key of the entry of `hash` in `bank`, if there is one.
    fn get(&self, hash: &HashValue, bank: BankId) -> Option<EntryKey>;

    /// Removes the entry of `hash` in `bank`; returns false if there was none.
    fn remove(&self, hash: &HashValue, bank: BankId) -> bool;

    /// Removes every entry of a bank; returns how many.
    fn remove_bank(&self, bank: BankId) -> usize;

    /// Appends every stored entry within `radius` bits of `query` to `hits`, in no order.
    fn search(&self, query: &HashValue, radius: u32, hits: &mut Vec<IndexHit>);

    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `hash` as `WORDS` big-endian 64-bit words, or `None` if it is not of `algorithm`: the form
/// the perceptual engines store and compare.
fn to_code<const WORDS: usize>(algorithm: Algorithm, hash: &HashValue) -> Option<[u64; WORDS]> {
    if hash.algorithm() != algorithm {
        return None;
    }
    let mut code = [0u64; WORDS];
    for (word, bytes) in code.iter_mut().zip(hash.as_bytes().chunks_exact(8)) {
        let mut be = [0u8; 8];
        be.copy_from_slice(bytes);
        *word = u64::from_be_bytes(be);
    }
    Some(code)
}

/// The hash of `algorithm` that [`to_code`] turned into `code`.
fn to_hash<const WORDS: usize>(algorithm: Algorithm, code: &[u64; WORDS]) -> HashValue {
    debug_assert_eq!(algorithm.byte_len(), WORDS * 8);
    let mut bytes = [0u8; 32];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(code) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    // Cannot fail: the engines are built with WORDS * 8 equal to the algorithm's length.
    HashValue::from_bytes(algorithm, &bytes[..WORDS * 8]).unwrap_or_else(|_| unreachable!())
}

/// One index per algorithm.
pub struct IndexSet {
    pdq: MihIndex<4>,
    phash: MihIndex<1>,
    dhash: MihIndex<1>,
    ahash: MihIndex<1>,
    md5: ExactIndex<16>,
    sha256: ExactIndex<32>,
}

impl Default for IndexSet {
    /// Indexes tuned for the default thresholds, the radius most searches use.
    fn default() -> Self {
        let thresholds = Thresholds::default();
        let config = |algorithm| MihConfig::for_radius(thresholds.get(algorithm));
        IndexSet::with_configs(config)
    }
}

impl IndexSet {
    /// Indexes whose perceptual engines are configured by `config`.
    pub fn with_configs(config: impl Fn(Algorithm) -> MihConfig) -> Self {
        IndexSet {
            pdq: MihIndex::new(Algorithm::Pdq, config(Algorithm::Pdq)),
            phash: MihIndex::new(Algorithm::PHash, config(Algorithm::PHash)),
            dhash: MihIndex::new(Algorithm::DHash, config(Algorithm::DHash)),
            ahash: MihIndex::new(Algorithm::AHash, config(Algorithm::AHash)),
            md5: ExactIndex::default(),
            sha256: ExactIndex::default(),
        }
    }

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

    /// Takes every engine's contents from `fresh`, one engine after another.
    pub fn replace_with(&self, fresh: IndexSet) {
        self.pdq.replace_with(fresh.pdq);
        self.phash.replace_with(fresh.phash);
        self.dhash.replace_with(fresh.dhash);
        self.ahash.replace_with(fresh.ahash);
        self.md5.replace_with(fresh.md5);
        self.sha256.replace_with(fresh.sha256);
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
    use std::collections::BTreeMap;

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
            6 => (clustered_hash(algorithm), bank()).prop_map(|(h, b)| Op::Insert(h, b)),
            2 => (clustered_hash(algorithm), bank()).prop_map(|(h, b)| Op::Remove(h, b)),
            1 => bank().prop_map(Op::RemoveBank),
            4 => (clustered_hash(algorithm), 0..=max_radius).prop_map(|(h, r)| Op::Search(h, r)),
        ];
        proptest::collection::vec(op, 1..200)
    }

    /// Three banks, one of them the largest id the store hands out.
    fn bank() -> impl Strategy<Value = u32> {
        prop_oneof![Just(0), Just(1), Just(crate::bank::MAX_BANK_ID)]
    }

    /// Runs `ops` on `index` and on a plain map, checking every answer against brute force.
    /// Sequence numbers alternate between small and near the largest the store hands out.
    fn check_against_brute_force(index: &dyn HashIndex, ops: &[Op]) {
        let mut model: BTreeMap<(HashValue, u32), u64> = BTreeMap::new();
        let key = |bank: u32, seq: u64| EntryKey {
            bank: BankId(bank),
            seq,
        };
        for (position, op) in ops.iter().enumerate() {
            let seq = match position % 2 {
                0 => position as u64,
                _ => crate::bank::MAX_SEQ - position as u64,
            };
            match op {
                Op::Insert(hash, bank) => {
                    let new = !model.contains_key(&(*hash, *bank));
                    if new {
                        model.insert((*hash, *bank), seq);
                    }
                    assert_eq!(index.insert(hash, key(*bank, seq)), new);
                    let stored = model[&(*hash, *bank)];
                    assert_eq!(index.get(hash, BankId(*bank)), Some(key(*bank, stored)));
                }
                Op::Remove(hash, bank) => {
                    assert_eq!(
                        index.remove(hash, BankId(*bank)),
                        model.remove(&(*hash, *bank)).is_some()
                    );
                    assert_eq!(index.get(hash, BankId(*bank)), None);
                }
                Op::RemoveBank(bank) => {
                    let before = model.len();
                    model.retain(|(_, b), _| b != bank);
                    assert_eq!(index.remove_bank(BankId(*bank)), before - model.len());
                }
                Op::Search(query, radius) => {
                    let radius = if query.algorithm().is_exact() { 0 } else { *radius };
                    let mut hits = Vec::new();
                    index.search(query, radius, &mut hits);
                    hits.sort();
                    let mut expected: Vec<IndexHit> = model
                        .iter()
                        .filter_map(|((hash, bank), seq)| {
                            let distance = hash.distance(query)?;
                            (distance <= radius).then_some(IndexHit {
                                distance,
                                hash: *hash,
                                key: key(*bank, *seq),
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

    /// Indexes that build tables from a handful of codes and always probe them, so that small
    /// property-test cases exercise the multi-index path, not only the scan.
    fn eager_tables() -> IndexSet {
        IndexSet::with_configs(|algorithm| MihConfig {
            design_radius: algorithm.bits() / 8,
            min_indexed: 4,
            min_tail: 3,
            scan_cost_per_word: f64::INFINITY,
        })
    }

    proptest! {
        #[test]
        fn every_index_agrees_with_brute_force(
            (algorithm, ops) in proptest::sample::select(Algorithm::ALL.to_vec())
                .prop_flat_map(|algorithm| (Just(algorithm), ops(algorithm)))
        ) {
            check_against_brute_force(IndexSet::default().get(algorithm), &ops);
            check_against_brute_force(eager_tables().get(algorithm), &ops);
        }
    }

    #[test]
    fn searches_run_while_inserts_and_removals_apply() {
        // Small limits, so the writer's inserts and removals go through rebuilds too.
        let config = MihConfig {
            min_indexed: 64,
            min_tail: 16,
            scan_cost_per_word: f64::INFINITY,
            ..MihConfig::for_radius(31)
        };
        let index = std::sync::Arc::new(MihIndex::<4>::new(Algorithm::Pdq, config));
        let stable = HashValue::from_bytes(Algorithm::Pdq, &[0xAA; 32]).unwrap();
        let key = |bank: u32, seq: u64| EntryKey {
            bank: BankId(bank),
            seq,
        };
        index.insert(&stable, key(0, 0));
        let writer = {
            let index = index.clone();
            std::thread::spawn(move || {
                for i in 0..2000u32 {
                    let mut bytes = [0u8; 32];
                    bytes[..4].copy_from_slice(&i.to_be_bytes());
                    let hash = HashValue::from_bytes(Algorithm::Pdq, &bytes).unwrap();
                    index.insert(&hash, key(1, u64::from(i) + 1));
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
