//! The embedded store: one redb database in the data directory.
//!
//! redb is a crash-safe embedded B-tree store: a committed write transaction survives `kill -9`
//! and power loss (it fsyncs on commit), and a torn write is rolled back on open. Every write the
//! service acknowledges has been committed with [`Durability::Immediate`].
//!
//! Layout (schema version [`SCHEMA_VERSION`]):
//! - `meta`: schema version, the 64-bit hasher configuration, the next bank id, the next
//!   entry sequence number.
//! - `banks`: bank id → bank (postcard).
//! - `bank_entries`: (bank id, sequence number) → algorithm code ‖ hash bytes ‖ metadata
//!   (postcard, the external id first). A bank's entries are one contiguous range, in the order
//!   they were added.
//! - `counts`: bank id → number of entries, kept in the same transactions as the entries.
//! - `match_log`: record number → bank id ‖ time (ms) ‖ the match (postcard, see
//!   [`super::MatchRecord`]); the newest records only, up to the retention.
//! - `match_counts`: bank id → (checks that matched it, time of the last).
//!
//! The match tables came after version 3 without a version bump: they are created on open,
//! and a build that does not know them leaves them alone.
//!
//! Entries are keyed by sequence number rather than by hash so that a bulk load appends to the
//! end of the B-tree instead of inserting at random places: measured with redb, 1.1M rows/s
//! against 150–230k rows/s for hash keys, and a quarter of the file size. Finding an entry by
//! hash is the index's job: it holds every entry's key, and the matcher keeps it equal to the
//! store. So this store does not check that a (bank, hash) is unique; its caller does.
//! Finding entries by external id scans the bank's range: removal by id is a rare
//! administrative act, not worth an id index that every load would pay for.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{MatchCount, MatchRecord, Store, StoreError, decode_match, encode_match};
use crate::bank::{
    Bank, BankId, BankName, BankSettings, Entry, EntryKey, EntryMeta, MAX_BANK_ID, MAX_SEQ, NewEntry,
};
use crate::hash::{Algorithm, HashValue, imghash};

mod migrate;

/// Bumped on any change to the layout above. Older versions are migrated on open (1: entries
/// keyed by hash, with an id table; 2: banks without a minimum quality); any other version is
/// refused.
pub const SCHEMA_VERSION: u32 = 3;
/// File name inside the data directory.
pub const DATABASE_FILE: &str = "hashsieve.redb";

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const BANKS: TableDefinition<u32, &[u8]> = TableDefinition::new("banks");
const ENTRIES: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("bank_entries");
const COUNTS: TableDefinition<u32, u64> = TableDefinition::new("counts");
const MATCH_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("match_log");
const MATCH_COUNTS: TableDefinition<u32, (u64, i64)> = TableDefinition::new("match_counts");

const META_SCHEMA_VERSION: &str = "schema_version";
const META_HASHER_CONFIG: &str = "hasher_config";
const META_NEXT_BANK_ID: &str = "next_bank_id";
const META_NEXT_SEQ: &str = "next_seq";

macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for StoreError {
            fn from(error: $error) -> Self {
                StoreError::Database(Box::new(error.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

pub struct EmbeddedStore {
    db: Database,
}

/// The page cache of [`EmbeddedStore::open`]: redb's own default (1 GiB) would double the resident
/// memory of a server whose index already holds what checks need. Loads append to the end of
/// the entries' B-tree and checks read only the metadata of matches, so a small cache serves
/// both.
pub const DEFAULT_CACHE_BYTES: usize = 16 << 20;

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, checking its schema and hasher configuration.
    pub fn open(dir: &Path) -> Result<EmbeddedStore, StoreError> {
        EmbeddedStore::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens the store with `cache_bytes` of page cache.
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(dir.join(DATABASE_FILE))?;
        let store = EmbeddedStore { db };
        store.initialise()?;
        Ok(store)
    }

    fn initialise(&self) -> Result<(), StoreError> {
        let current_config = imghash::describe_configuration();
        let txn = self.db.begin_write()?;
        let version = {
            let mut meta = txn.open_table(META)?;
            let version = meta
                .get(META_SCHEMA_VERSION)?
                .map(|v| read_u32(v.value(), "meta"))
                .transpose()?;
            match version {
                None => {
                    meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION.to_be_bytes().as_slice())?;
                    meta.insert(META_HASHER_CONFIG, current_config.as_bytes())?;
                    meta.insert(META_NEXT_BANK_ID, 1u32.to_be_bytes().as_slice())?;
                    meta.insert(META_NEXT_SEQ, 0u64.to_be_bytes().as_slice())?;
                }
                Some(found) if !(migrate::OLDEST_VERSION..=SCHEMA_VERSION).contains(&found) => {
                    return Err(StoreError::SchemaVersion {
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
                Some(_) => {
                    let stored = meta
                        .get(META_HASHER_CONFIG)?
                        .map(|v| String::from_utf8_lossy(v.value()).into_owned())
                        .unwrap_or_default();
                    if stored != current_config {
                        return Err(StoreError::HasherConfig {
                            stored,
                            current: current_config,
                        });
                    }
                }
            }
            // Create the other tables so that read transactions can always open them.
            txn.open_table(BANKS)?;
            txn.open_table(ENTRIES)?;
            txn.open_table(COUNTS)?;
            txn.open_table(MATCH_LOG)?;
            txn.open_table(MATCH_COUNTS)?;
            version
        };
        txn.commit()?;
        if version == Some(1) {
            migrate::from_v1(&self.db)?;
        }
        if version.is_some_and(|v| v <= 2) {
            migrate::from_v2(&self.db)?;
        }
        Ok(())
    }
}

impl Store for EmbeddedStore {
    fn is_local(&self) -> bool {
        true
    }

    fn load_banks(&self) -> Result<Vec<(Bank, u64)>, StoreError> {
        let txn = self.db.begin_read()?;
        let banks = txn.open_table(BANKS)?;
        let counts = txn.open_table(COUNTS)?;
        let mut out = Vec::new();
        for row in banks.iter()? {
            let (id, bytes) = row?;
            let bank: Bank = decode(bytes.value(), "banks")?;
            let count = counts.get(id.value())?.map(|c| c.value()).unwrap_or(0);
            out.push((bank, count));
        }
        Ok(out)
    }

    fn create_bank(
        &self,
        name: BankName,
        settings: BankSettings,
        created_at_ms: i64,
    ) -> Result<Bank, StoreError> {
        let txn = self.db.begin_write()?;
        let bank = {
            let mut banks = txn.open_table(BANKS)?;
            for row in banks.iter()? {
                let (_, bytes) = row?;
                let existing: Bank = decode(bytes.value(), "banks")?;
                if existing.name == name {
                    return Err(StoreError::BankExists(name));
                }
            }
            let mut meta = txn.open_table(META)?;
            let id = meta
                .get(META_NEXT_BANK_ID)?
                .map(|v| read_u32(v.value(), "meta"))
                .transpose()?
                .unwrap_or(1);
            if id > MAX_BANK_ID {
                return Err(StoreError::Exhausted("bank ids"));
            }
            meta.insert(META_NEXT_BANK_ID, (id + 1).to_be_bytes().as_slice())?;
            let bank = Bank {
                id: BankId(id),
                name,
                settings,
                created_at_ms,
            };
            banks.insert(id, encode(&bank).as_slice())?;
            bank
        };
        txn.commit()?;
        Ok(bank)
    }

    fn update_bank(&self, bank: &Bank) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(BANKS)?
            .insert(bank.id.0, encode(bank).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    fn delete_bank(&self, bank: BankId) -> Result<u64, StoreError> {
        let txn = self.db.begin_write()?;
        let removed = {
            txn.open_table(BANKS)?.remove(bank.0)?;
            let removed = txn
                .open_table(COUNTS)?
                .remove(bank.0)?
                .map(|c| c.value())
                .unwrap_or(0);
            txn.open_table(ENTRIES)?
                .retain_in(bank_range(bank), |_, _| false)?;
            txn.open_table(MATCH_COUNTS)?.remove(bank.0)?;
            removed
        };
        txn.commit()?;
        Ok(removed)
    }

    /// Writes entries of a bank in one transaction: `new` ones under fresh sequence numbers,
    /// which it returns in order, and `replaced` ones, whose metadata replaces that of the entry
    /// at their key (keeping when it was first added). The caller guarantees that no `new`
    /// entry's (hash, bank) is already stored, and that each replaced key holds that hash.
    ///
    fn write_entries(
        &self,
        bank: BankId,
        new: &[&NewEntry],
        replaced: &[(EntryKey, &NewEntry)],
        durable: bool,
    ) -> Result<Vec<EntryKey>, StoreError> {
        let mut txn = self.db.begin_write()?;
        if !durable {
            txn.set_durability(Durability::None)?;
        }
        let keys = {
            let mut meta = txn.open_table(META)?;
            let first = meta
                .get(META_NEXT_SEQ)?
                .map(|v| read_u64(v.value(), "meta"))
                .transpose()?
                .unwrap_or(0);
            let next = first + new.len() as u64;
            if next > MAX_SEQ + 1 {
                return Err(StoreError::Exhausted("entry sequence numbers"));
            }
            meta.insert(META_NEXT_SEQ, next.to_be_bytes().as_slice())?;
            let mut table = txn.open_table(ENTRIES)?;
            let mut record = Vec::new();
            let keys: Vec<EntryKey> = (first..next).map(|seq| EntryKey { bank, seq }).collect();
            for (key, entry) in keys.iter().zip(new) {
                encode_record(&entry.hash, &entry.meta, &mut record);
                table.insert((bank.0, key.seq), record.as_slice())?;
            }
            for (key, entry) in replaced {
                let added_at_ms = {
                    let previous = table
                        .get((key.bank.0, key.seq))?
                        .ok_or_else(|| StoreError::Corrupt {
                            table: "bank_entries",
                            reason: format!("entry {} of bank {} is missing", key.seq, key.bank.0),
                        })?;
                    decode_record(previous.value())?.meta.added_at_ms
                };
                // The first time it was added is the entry's age; re-adding updates the rest.
                let mut meta = entry.meta.clone();
                meta.added_at_ms = added_at_ms;
                encode_record(&entry.hash, &meta, &mut record);
                table.insert((key.bank.0, key.seq), record.as_slice())?;
            }
            add_to_count(&mut txn.open_table(COUNTS)?, bank, new.len() as i64)?;
            keys
        };
        txn.commit()?;
        Ok(keys)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.db.begin_write()?.commit()?;
        Ok(())
    }

    fn remove_entries(
        &self,
        bank: BankId,
        seqs: &[u64],
        external_ids: &[String],
    ) -> Result<Vec<(EntryKey, HashValue)>, StoreError> {
        let txn = self.db.begin_write()?;
        let mut removed = Vec::new();
        {
            let mut table = txn.open_table(ENTRIES)?;
            let mut targets: BTreeSet<u64> = seqs.iter().copied().collect();
            if !external_ids.is_empty() {
                let wanted: HashSet<&str> = external_ids.iter().map(String::as_str).collect();
                for row in table.range(bank_range(bank))? {
                    let (key, value) = row?;
                    if wanted.contains(record_id(value.value())?) {
                        targets.insert(key.value().1);
                    }
                }
            }
            for seq in targets {
                let Some(previous) = table.remove((bank.0, seq))? else {
                    continue;
                };
                let (hash, _) = split_record(previous.value())?;
                removed.push((EntryKey { bank, seq }, hash));
            }
            add_to_count(&mut txn.open_table(COUNTS)?, bank, -(removed.len() as i64))?;
        }
        txn.commit()?;
        Ok(removed)
    }

    fn entries(&self, keys: &[EntryKey]) -> Result<Vec<Option<Entry>>, StoreError> {
        if keys.is_empty() {
            // Most checks match nothing: they need no read transaction.
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        keys.iter()
            .map(|key| {
                table
                    .get((key.bank.0, key.seq))?
                    .map(|v| decode_record(v.value()))
                    .transpose()
            })
            .collect()
    }

    fn for_each_entry(
        &self,
        bank: BankId,
        algorithm: Option<Algorithm>,
        visit: &mut dyn FnMut(Entry) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        for row in table.range(bank_range(bank))? {
            let (_, value) = row?;
            let (hash, _) = split_record(value.value())?;
            if algorithm.is_some_and(|a| a != hash.algorithm()) {
                continue;
            }
            if visit(decode_record(value.value())?).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn for_each_key(&self, visit: &mut dyn FnMut(EntryKey, HashValue)) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        for row in table.iter()? {
            let (key, value) = row?;
            let (bank, seq) = key.value();
            let (hash, _) = split_record(value.value())?;
            visit(
                EntryKey {
                    bank: BankId(bank),
                    seq,
                },
                hash,
            );
        }
        Ok(())
    }

    fn record_matches(
        &self,
        records: &[MatchRecord],
        counts: &[(BankId, MatchCount)],
        keep: u64,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut log = txn.open_table(MATCH_LOG)?;
            let mut next = log.last()?.map(|(key, _)| key.value() + 1).unwrap_or(1);
            for record in records {
                let mut value = Vec::with_capacity(128);
                value.extend_from_slice(&record.bank.0.to_be_bytes());
                value.extend_from_slice(&record.matched_at_ms.to_be_bytes());
                value.extend_from_slice(&encode_match(record));
                log.insert(next, value.as_slice())?;
                next += 1;
            }
            log.retain_in(..next.saturating_sub(keep), |_, _| false)?;
            let banks = txn.open_table(BANKS)?;
            let mut stored = txn.open_table(MATCH_COUNTS)?;
            for (bank, count) in counts {
                if banks.get(bank.0)?.is_none() {
                    continue;
                }
                let mut total = stored
                    .get(bank.0)?
                    .map(|v| {
                        let (checks, last_match_ms) = v.value();
                        MatchCount {
                            checks,
                            last_match_ms,
                        }
                    })
                    .unwrap_or_default();
                total.add(*count);
                stored.insert(bank.0, (total.checks, total.last_match_ms))?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn recent_matches(&self, bank: Option<BankId>, limit: usize) -> Result<Vec<MatchRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let log = txn.open_table(MATCH_LOG)?;
        let mut out = Vec::new();
        for row in log.iter()?.rev() {
            if out.len() >= limit {
                break;
            }
            let (key, value) = row?;
            let value = value.value();
            let (Some(id), Some(at)) = (value.get(..4), value.get(4..12)) else {
                return Err(StoreError::Corrupt {
                    table: "match_log",
                    reason: "record shorter than its header".into(),
                });
            };
            let id = BankId(read_u32(id, "match_log")?);
            if bank.is_some_and(|wanted| wanted != id) {
                continue;
            }
            let at = read_u64(at, "match_log")? as i64;
            out.push(decode_match(key.value(), id, at, &value[12..])?);
        }
        Ok(out)
    }

    fn match_counts(&self) -> Result<HashMap<BankId, MatchCount>, StoreError> {
        let txn = self.db.begin_read()?;
        let stored = txn.open_table(MATCH_COUNTS)?;
        let mut out = HashMap::new();
        for row in stored.iter()? {
            let (bank, value) = row?;
            let (checks, last_match_ms) = value.value();
            out.insert(
                BankId(bank.value()),
                MatchCount {
                    checks,
                    last_match_ms,
                },
            );
        }
        Ok(out)
    }
}

fn add_to_count(counts: &mut redb::Table<u32, u64>, bank: BankId, delta: i64) -> Result<(), StoreError> {
    if delta == 0 {
        return Ok(());
    }
    let current = counts.get(bank.0)?.map(|c| c.value()).unwrap_or(0);
    counts.insert(bank.0, current.saturating_add_signed(delta))?;
    Ok(())
}

/// Every key of a bank's entries.
fn bank_range(bank: BankId) -> std::ops::RangeInclusive<(u32, u64)> {
    (bank.0, 0)..=(bank.0, u64::MAX)
}

/// A stored entry: algorithm code ‖ hash bytes ‖ postcard metadata, written into `out`.
fn encode_record(hash: &HashValue, meta: &EntryMeta, out: &mut Vec<u8>) {
    out.clear();
    out.push(hash.algorithm().code());
    out.extend_from_slice(hash.as_bytes());
    // Serialising our own plain struct cannot fail (see `encode`).
    if let Ok(with_meta) = postcard::to_extend(meta, std::mem::take(out)) {
        *out = with_meta;
    }
}

/// A record's hash, and the bytes of its metadata.
fn split_record(record: &[u8]) -> Result<(HashValue, &[u8]), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "bank_entries",
        reason,
    };
    let (&code, rest) = record
        .split_first()
        .ok_or_else(|| corrupt("empty record".into()))?;
    let algorithm =
        Algorithm::from_code(code).ok_or_else(|| corrupt(format!("unknown algorithm code {code}")))?;
    let (hash, meta) = rest
        .split_at_checked(algorithm.byte_len())
        .ok_or_else(|| corrupt("record shorter than its hash".into()))?;
    let hash = HashValue::from_bytes(algorithm, hash).map_err(|e| corrupt(e.to_string()))?;
    Ok((hash, meta))
}

fn decode_record(record: &[u8]) -> Result<Entry, StoreError> {
    let (hash, meta) = split_record(record)?;
    Ok(Entry {
        hash,
        meta: decode(meta, "bank_entries")?,
    })
}

/// A record's external id, read without decoding the rest of its metadata.
fn record_id(record: &[u8]) -> Result<&str, StoreError> {
    let (_, meta) = split_record(record)?;
    postcard::take_from_bytes::<&str>(meta)
        .map(|(id, _)| id)
        .map_err(|e| StoreError::Corrupt {
            table: "bank_entries",
            reason: e.to_string(),
        })
}

fn read_u32(bytes: &[u8], table: &'static str) -> Result<u32, StoreError> {
    let array: [u8; 4] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        table,
        reason: "expected a 4-byte integer".into(),
    })?;
    Ok(u32::from_be_bytes(array))
}

fn read_u64(bytes: &[u8], table: &'static str) -> Result<u64, StoreError> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        table,
        reason: "expected an 8-byte integer".into(),
    })?;
    Ok(u64::from_be_bytes(array))
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own plain structs to a Vec cannot fail: postcard errors only on
    // unsupported serde features or a full fixed buffer, neither of which applies here.
    postcard::to_stdvec(value).unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], table: &'static str) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
