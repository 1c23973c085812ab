//! Exact-match index for cryptographic digests (MD5, SHA-256): a hash map, since a digest
//! matches only itself.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use super::{HashIndex, IndexHit};
use crate::bank::BankId;
use crate::hash::HashValue;

#[derive(Default)]
pub struct ExactIndex {
    /// Banks holding each hash; nearly always one, so a small vector beats a set.
    banks_by_hash: RwLock<HashMap<HashValue, Vec<BankId>>>,
}

impl ExactIndex {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<HashValue, Vec<BankId>>> {
        self.banks_by_hash.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<HashValue, Vec<BankId>>> {
        self.banks_by_hash.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl HashIndex for ExactIndex {
    fn insert(&self, hash: &HashValue, bank: BankId) -> bool {
        let mut map = self.write();
        let banks = map.entry(*hash).or_default();
        if banks.contains(&bank) {
            return false;
        }
        banks.push(bank);
        true
    }

    fn remove(&self, hash: &HashValue, bank: BankId) -> bool {
        let mut map = self.write();
        let Some(banks) = map.get_mut(hash) else {
            return false;
        };
        let Some(position) = banks.iter().position(|b| *b == bank) else {
            return false;
        };
        banks.swap_remove(position);
        if banks.is_empty() {
            map.remove(hash);
        }
        true
    }

    fn remove_bank(&self, bank: BankId) -> usize {
        let mut removed = 0;
        self.write().retain(|_, banks| {
            let before = banks.len();
            banks.retain(|b| *b != bank);
            removed += before - banks.len();
            !banks.is_empty()
        });
        removed
    }

    /// Exact digests match only at distance 0, whatever the radius.
    fn search(&self, query: &HashValue, _radius: u32, hits: &mut Vec<IndexHit>) {
        if let Some(banks) = self.read().get(query) {
            hits.extend(banks.iter().map(|bank| IndexHit {
                distance: 0,
                hash: *query,
                bank: *bank,
            }));
        }
    }

    fn len(&self) -> usize {
        self.read().values().map(Vec::len).sum()
    }
}
