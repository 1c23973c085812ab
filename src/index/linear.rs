//! Linear popcount scan over hashes stored contiguously: the simplest exact engine, and the
//! fastest for small sets. A sublinear engine (multi-index hashing) can replace it behind
//! [`HashIndex`] without changing callers.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use super::{HashIndex, IndexHit};
use crate::bank::{BankId, EntryKey};
use crate::hash::{Algorithm, HashValue};

/// `WORDS` 64-bit words per hash: 4 for PDQ, 1 for the 64-bit hashes.
pub struct LinearIndex<const WORDS: usize> {
    algorithm: Algorithm,
    table: RwLock<Table<WORDS>>,
}

/// Parallel arrays, so a scan reads codes only; `positions` finds an entry by code and bank.
#[derive(Default)]
struct Table<const WORDS: usize> {
    codes: Vec<[u64; WORDS]>,
    keys: Vec<EntryKey>,
    positions: HashMap<([u64; WORDS], BankId), usize>,
}

impl<const WORDS: usize> LinearIndex<WORDS> {
    pub fn new(algorithm: Algorithm) -> Self {
        debug_assert_eq!(algorithm.byte_len(), WORDS * 8);
        LinearIndex {
            algorithm,
            table: RwLock::new(Table {
                codes: Vec::new(),
                keys: Vec::new(),
                positions: HashMap::new(),
            }),
        }
    }

    fn to_words(&self, hash: &HashValue) -> Option<[u64; WORDS]> {
        super::to_code(self.algorithm, hash)
    }

    fn to_hash(&self, words: &[u64; WORDS]) -> HashValue {
        super::to_hash(self.algorithm, words)
    }

    /// A panic elsewhere while holding the lock cannot leave the table half-updated in a way
    /// that breaks exactness (each update is a few pushes), so a poisoned lock is used as is.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table<WORDS>> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table<WORDS>> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<const WORDS: usize> Table<WORDS> {
    fn insert(&mut self, code: [u64; WORDS], key: EntryKey) -> bool {
        if self.positions.contains_key(&(code, key.bank)) {
            return false;
        }
        self.positions.insert((code, key.bank), self.codes.len());
        self.codes.push(code);
        self.keys.push(key);
        true
    }

    /// Swap-removes the pair at `position`, fixing the position of the pair moved into it.
    fn remove_at(&mut self, position: usize) {
        self.positions
            .remove(&(self.codes[position], self.keys[position].bank));
        self.codes.swap_remove(position);
        self.keys.swap_remove(position);
        if position < self.codes.len() {
            self.positions
                .insert((self.codes[position], self.keys[position].bank), position);
        }
    }
}

fn distance<const WORDS: usize>(a: &[u64; WORDS], b: &[u64; WORDS]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

impl<const WORDS: usize> HashIndex for LinearIndex<WORDS> {
    fn insert(&self, hash: &HashValue, key: EntryKey) -> bool {
        match self.to_words(hash) {
            Some(code) => self.write().insert(code, key),
            None => false,
        }
    }

    fn insert_many(&self, entries: &[(HashValue, EntryKey)]) -> usize {
        let codes: Vec<_> = entries
            .iter()
            .filter_map(|(hash, key)| Some((self.to_words(hash)?, *key)))
            .collect();
        let mut table = self.write();
        codes
            .into_iter()
            .filter(|(code, key)| table.insert(*code, *key))
            .count()
    }

    fn get(&self, hash: &HashValue, bank: BankId) -> Option<EntryKey> {
        let code = self.to_words(hash)?;
        let table = self.read();
        let position = *table.positions.get(&(code, bank))?;
        Some(table.keys[position])
    }

    fn remove(&self, hash: &HashValue, bank: BankId) -> bool {
        let Some(code) = self.to_words(hash) else {
            return false;
        };
        let mut table = self.write();
        match table.positions.get(&(code, bank)) {
            Some(&position) => {
                table.remove_at(position);
                true
            }
            None => false,
        }
    }

    fn remove_bank(&self, bank: BankId) -> usize {
        let mut table = self.write();
        let before = table.codes.len();
        let mut position = 0;
        while position < table.codes.len() {
            if table.keys[position].bank == bank {
                table.remove_at(position);
            } else {
                position += 1;
            }
        }
        before - table.codes.len()
    }

    fn search(&self, query: &HashValue, radius: u32, hits: &mut Vec<IndexHit>) {
        let Some(query_code) = self.to_words(query) else {
            return;
        };
        let table = self.read();
        for (code, key) in table.codes.iter().zip(&table.keys) {
            let distance = distance(code, &query_code);
            if distance <= radius {
                hits.push(IndexHit {
                    distance,
                    hash: self.to_hash(code),
                    key: *key,
                });
            }
        }
    }

    fn len(&self) -> usize {
        self.read().codes.len()
    }

    fn scanned(&self) -> usize {
        self.len()
    }
}
