//! Exact-match index for cryptographic digests (MD5, SHA-256): a digest matches only itself.
//!
//! Flat: one hash map from the digest's `BYTES` bytes to its first entry's key packed into a
//! word, with no allocation per entry: 86 bytes an entry for SHA-256 and 78 for MD5, measured
//! at 1M, where a map to a vector of keys per digest took 216. The rare digest stored in
//! several banks keeps its other entries in a second, small map.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{HashIndex, IndexHit, bank_of, pack, unpack};
use crate::bank::{BankId, EntryKey};
use crate::hash::HashValue;

pub struct ExactIndex<const BYTES: usize> {
    table: RwLock<Table<BYTES>>,
}

impl<const BYTES: usize> Default for ExactIndex<BYTES> {
    fn default() -> Self {
        ExactIndex {
            table: RwLock::new(Table {
                first: foldhash::HashMap::default(),
                more: HashMap::new(),
                entries: 0,
            }),
        }
    }
}

struct Table<const BYTES: usize> {
    /// Each stored digest's first entry, packed.
    first: foldhash::HashMap<[u8; BYTES], u64>,
    /// The entries of digests stored in more than one bank, past the first.
    more: HashMap<[u8; BYTES], Vec<EntryKey>>,
    /// Number of entries, kept so `len` need not walk the maps.
    entries: usize,
}

impl<const BYTES: usize> Table<BYTES> {
    /// Removes `digest`'s first entry, putting one of its others, if any, in its place.
    fn remove_first(&mut self, digest: &[u8; BYTES]) {
        let promoted = self.more.get_mut(digest).and_then(Vec::pop);
        match promoted {
            Some(next) => {
                self.first.insert(*digest, pack(next));
                if self.more.get(digest).is_some_and(Vec::is_empty) {
                    self.more.remove(digest);
                }
            }
            None => {
                self.first.remove(digest);
            }
        }
    }
}

impl<const BYTES: usize> ExactIndex<BYTES> {
    /// A poisoned lock is used as is: every update leaves the table consistent.
    fn write(&self) -> RwLockWriteGuard<'_, Table<BYTES>> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> RwLockReadGuard<'_, Table<BYTES>> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `fresh`'s entries in place of this index's, at once for lookups.
    pub fn replace_with(&self, fresh: ExactIndex<BYTES>) {
        let fresh = fresh.table.into_inner().unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::replace(&mut *self.write(), fresh);
        drop(old);
    }

    /// The digest of `hash`, if it is this index's length.
    fn digest(hash: &HashValue) -> Option<[u8; BYTES]> {
        hash.as_bytes().try_into().ok()
    }
}

impl<const BYTES: usize> HashIndex for ExactIndex<BYTES> {
    fn insert(&self, hash: &HashValue, key: EntryKey) -> bool {
        let Some(digest) = Self::digest(hash) else {
            return false;
        };
        let mut table = self.write();
        let Some(&first) = table.first.get(&digest) else {
            table.first.insert(digest, pack(key));
            table.entries += 1;
            return true;
        };
        let others = table.more.get(&digest).map_or(&[][..], Vec::as_slice);
        if bank_of(first) == key.bank.0 || others.iter().any(|other| other.bank == key.bank) {
            return false;
        }
        table.more.entry(digest).or_default().push(key);
        table.entries += 1;
        true
    }

    fn get(&self, hash: &HashValue, bank: BankId) -> Option<EntryKey> {
        let digest = Self::digest(hash)?;
        let table = self.read();
        let first = unpack(*table.first.get(&digest)?);
        if first.bank == bank {
            return Some(first);
        }
        table
            .more
            .get(&digest)?
            .iter()
            .find(|key| key.bank == bank)
            .copied()
    }

    fn remove(&self, hash: &HashValue, bank: BankId) -> bool {
        let Some(digest) = Self::digest(hash) else {
            return false;
        };
        let mut table = self.write();
        let Some(&first) = table.first.get(&digest) else {
            return false;
        };
        if bank_of(first) == bank.0 {
            table.remove_first(&digest);
        } else {
            let Some(others) = table.more.get_mut(&digest) else {
                return false;
            };
            let Some(position) = others.iter().position(|key| key.bank == bank) else {
                return false;
            };
            others.swap_remove(position);
            if others.is_empty() {
                table.more.remove(&digest);
            }
        }
        table.entries -= 1;
        true
    }

    fn remove_bank(&self, bank: BankId) -> usize {
        let mut table = self.write();
        let mut removed = 0;
        table.more.retain(|_, others| {
            let before = others.len();
            others.retain(|key| key.bank != bank);
            removed += before - others.len();
            !others.is_empty()
        });
        let firsts: Vec<[u8; BYTES]> = table
            .first
            .iter()
            .filter(|&(_, &first)| bank_of(first) == bank.0)
            .map(|(digest, _)| *digest)
            .collect();
        for digest in &firsts {
            table.remove_first(digest);
        }
        removed += firsts.len();
        table.entries -= removed;
        removed
    }

    /// Exact digests match only at distance 0, whatever the radius.
    fn search(&self, query: &HashValue, _radius: u32, hits: &mut Vec<IndexHit>) {
        let Some(digest) = Self::digest(query) else {
            return;
        };
        let table = self.read();
        let Some(&first) = table.first.get(&digest) else {
            return;
        };
        let others = table.more.get(&digest).map_or(&[][..], Vec::as_slice);
        let hit = |key: EntryKey| IndexHit {
            distance: 0,
            hash: *query,
            key,
        };
        hits.push(hit(unpack(first)));
        hits.extend(others.iter().map(|&key| hit(key)));
    }

    fn len(&self) -> usize {
        self.read().entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Algorithm;

    /// A digest stored in several banks: each entry is found, and removing the first keeps
    /// the others, whichever way it is removed.
    #[test]
    fn a_digest_in_several_banks_keeps_every_entry() {
        let index = ExactIndex::<32>::default();
        let digest = HashValue::from_bytes(Algorithm::Sha256, &[7; 32]).unwrap();
        let key = |bank: u32| EntryKey {
            bank: BankId(bank),
            seq: u64::from(bank) * 10,
        };
        for bank in [1, 2, 3] {
            assert!(index.insert(&digest, key(bank)));
        }
        assert!(!index.insert(&digest, key(2)));
        let found = |index: &ExactIndex<32>| {
            let mut hits = Vec::new();
            index.search(&digest, 0, &mut hits);
            let mut banks: Vec<u32> = hits.iter().map(|hit| hit.key.bank.0).collect();
            banks.sort_unstable();
            banks
        };
        assert_eq!(found(&index), [1, 2, 3]);
        assert!(index.remove(&digest, BankId(1)));
        assert_eq!(found(&index), [2, 3]);
        assert_eq!(index.get(&digest, BankId(3)), Some(key(3)));
        assert_eq!(index.remove_bank(BankId(2)) + index.remove_bank(BankId(9)), 1);
        assert_eq!((found(&index), index.len()), (vec![3], 1));
        // A digest of another length is never stored.
        let md5 = HashValue::from_bytes(Algorithm::Md5, &[7; 16]).unwrap();
        assert!(!index.insert(&md5, key(4)));
        assert_eq!(index.len(), 1);
    }
}
