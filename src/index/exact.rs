//! Exact-match index for cryptographic digests (MD5, SHA-256): a hash map, since a digest
//! matches only itself.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{HashIndex, IndexHit};
use crate::bank::{BankId, EntryKey};
use crate::hash::HashValue;

#[derive(Default)]
pub struct ExactIndex {
    table: RwLock<Table>,
}

#[derive(Default)]
struct Table {
    /// The entries of each hash, one per bank; nearly always one, so a small vector beats a
    /// map.
    keys_by_hash: HashMap<HashValue, Vec<EntryKey>>,
    /// Number of entries, kept so `len` need not walk the map.
    entries: usize,
}

impl ExactIndex {
    /// A poisoned lock is used as is: every update leaves the table consistent.
    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `fresh`'s entries in place of this index's, at once for lookups.
    pub fn replace_with(&self, fresh: ExactIndex) {
        let fresh = fresh.table.into_inner().unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::replace(&mut *self.write(), fresh);
        drop(old);
    }
}

impl HashIndex for ExactIndex {
    fn insert(&self, hash: &HashValue, key: EntryKey) -> bool {
        let mut table = self.write();
        let keys = table.keys_by_hash.entry(*hash).or_default();
        if keys.iter().any(|k| k.bank == key.bank) {
            return false;
        }
        keys.push(key);
        table.entries += 1;
        true
    }

    fn get(&self, hash: &HashValue, bank: BankId) -> Option<EntryKey> {
        self.read()
            .keys_by_hash
            .get(hash)?
            .iter()
            .find(|key| key.bank == bank)
            .copied()
    }

    fn remove(&self, hash: &HashValue, bank: BankId) -> bool {
        let mut table = self.write();
        let Some(keys) = table.keys_by_hash.get_mut(hash) else {
            return false;
        };
        let Some(position) = keys.iter().position(|k| k.bank == bank) else {
            return false;
        };
        keys.swap_remove(position);
        if keys.is_empty() {
            table.keys_by_hash.remove(hash);
        }
        table.entries -= 1;
        true
    }

    fn remove_bank(&self, bank: BankId) -> usize {
        let mut table = self.write();
        let mut removed = 0;
        table.keys_by_hash.retain(|_, keys| {
            let before = keys.len();
            keys.retain(|k| k.bank != bank);
            removed += before - keys.len();
            !keys.is_empty()
        });
        table.entries -= removed;
        removed
    }

    /// Exact digests match only at distance 0, whatever the radius.
    fn search(&self, query: &HashValue, _radius: u32, hits: &mut Vec<IndexHit>) {
        if let Some(keys) = self.read().keys_by_hash.get(query) {
            hits.extend(keys.iter().map(|key| IndexHit {
                distance: 0,
                hash: *query,
                key: *key,
            }));
        }
    }

    fn len(&self) -> usize {
        self.read().entries
    }
}
