//! Exact-match index for cryptographic digests (MD5, SHA-256): a hash map, since a digest
//! matches only itself.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{HashIndex, IndexHit};
use crate::bank::BankId;
use crate::hash::HashValue;

#[derive(Default)]
pub struct ExactIndex {
    table: RwLock<Table>,
}

#[derive(Default)]
struct Table {
    /// Banks holding each hash; nearly always one, so a small vector beats a set.
    banks_by_hash: HashMap<HashValue, Vec<BankId>>,
    /// Number of (hash, bank) pairs, kept so `len` need not walk the map.
    pairs: usize,
}

impl ExactIndex {
    /// A poisoned lock is used as is: every update leaves the table consistent.
    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl HashIndex for ExactIndex {
    fn insert(&self, hash: &HashValue, bank: BankId) -> bool {
        let mut table = self.write();
        let banks = table.banks_by_hash.entry(*hash).or_default();
        if banks.contains(&bank) {
            return false;
        }
        banks.push(bank);
        table.pairs += 1;
        true
    }

    fn remove(&self, hash: &HashValue, bank: BankId) -> bool {
        let mut table = self.write();
        let Some(banks) = table.banks_by_hash.get_mut(hash) else {
            return false;
        };
        let Some(position) = banks.iter().position(|b| *b == bank) else {
            return false;
        };
        banks.swap_remove(position);
        if banks.is_empty() {
            table.banks_by_hash.remove(hash);
        }
        table.pairs -= 1;
        true
    }

    fn remove_bank(&self, bank: BankId) -> usize {
        let mut table = self.write();
        let mut removed = 0;
        table.banks_by_hash.retain(|_, banks| {
            let before = banks.len();
            banks.retain(|b| *b != bank);
            removed += before - banks.len();
            !banks.is_empty()
        });
        table.pairs -= removed;
        removed
    }

    /// Exact digests match only at distance 0, whatever the radius.
    fn search(&self, query: &HashValue, _radius: u32, hits: &mut Vec<IndexHit>) {
        if let Some(banks) = self.read().banks_by_hash.get(query) {
            hits.extend(banks.iter().map(|bank| IndexHit {
                distance: 0,
                hash: *query,
                bank: *bank,
            }));
        }
    }

    fn len(&self) -> usize {
        self.read().pairs
    }
}
