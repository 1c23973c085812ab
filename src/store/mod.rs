//! The durable record of banks and entries: one redb database in the data directory.
//!
//! redb is a crash-safe embedded B-tree store: a committed write transaction survives `kill -9`
//! and power loss (it fsyncs on commit), and a torn write is rolled back on open. Every write the
//! service acknowledges has been committed with [`Durability::Immediate`].
//!
//! Layout (schema version [`SCHEMA_VERSION`]):
//! - `meta`: schema version, the 64-bit hasher configuration, the next bank id.
//! - `banks`: bank id → bank (postcard).
//! - `entries`: bank id (4 bytes BE) ‖ algorithm code ‖ hash bytes → entry metadata (postcard).
//!   Keys sort by bank, then algorithm, so a bank's entries are one contiguous range.
//! - `entry_ids`: bank id ‖ external id → algorithm code ‖ hash bytes (multimap), to remove
//!   entries by id.
//! - `counts`: bank id → number of entries, kept in the same transactions as the entries.

use std::ops::ControlFlow;
use std::path::Path;

use redb::{
    Database, Durability, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable, ReadableTable,
    TableDefinition,
};

use crate::bank::{Bank, BankId, BankName, BankSettings, Entry, EntryMeta, NewEntry};
use crate::hash::{Algorithm, HashValue, imghash};

/// Bumped on any change to the layout above; a store of another version is refused.
pub const SCHEMA_VERSION: u32 = 1;
/// File name inside the data directory.
pub const DATABASE_FILE: &str = "hashsieve.redb";

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const BANKS: TableDefinition<u32, &[u8]> = TableDefinition::new("banks");
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
const ENTRY_IDS: MultimapTableDefinition<&[u8], &[u8]> = MultimapTableDefinition::new("entry_ids");
const COUNTS: TableDefinition<u32, u64> = TableDefinition::new("counts");

const META_SCHEMA_VERSION: &str = "schema_version";
const META_HASHER_CONFIG: &str = "hasher_config";
const META_NEXT_BANK_ID: &str = "next_bank_id";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir { path: String, source: std::io::Error },
    #[error("database error: {0}")]
    Database(Box<redb::Error>),
    #[error("store schema version {found} is not supported (this build reads version {expected})")]
    SchemaVersion { found: u32, expected: u32 },
    #[error(
        "the store's 64-bit hashes were made with another hasher configuration ({stored}); this build uses ({current})"
    )]
    HasherConfig { stored: String, current: String },
    #[error("corrupt record in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    #[error("bank {0} already exists")]
    BankExists(BankName),
}

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

/// What an upsert did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UpsertOutcome {
    /// Hashes that were new in the bank (the caller adds them to the index).
    pub added: Vec<HashValue>,
    /// Entries that existed and had their metadata replaced.
    pub updated: u64,
}

pub struct Store {
    db: Database,
}

/// The page cache of [`Store::open`]: redb's own default (1 GiB) would double the resident
/// memory of a server whose index already holds what checks need. Measured at 10M entries,
/// 64 MiB imported as fast as 128 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

impl Store {
    /// Opens (or creates) the store in `dir`, checking its schema and hasher configuration.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens the store with `cache_bytes` of page cache. Checks read the store only for the
    /// metadata of matches, so a small cache serves them; a larger one speeds bulk loads into
    /// a large store.
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(dir.join(DATABASE_FILE))?;
        let store = Store { db };
        store.initialise()?;
        Ok(store)
    }

    fn initialise(&self) -> Result<(), StoreError> {
        let current_config = imghash::describe_configuration();
        let txn = self.db.begin_write()?;
        {
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
                }
                Some(found) if found != SCHEMA_VERSION => {
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
            txn.open_multimap_table(ENTRY_IDS)?;
            txn.open_table(COUNTS)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Every bank with its entry count.
    pub fn load_banks(&self) -> Result<Vec<(Bank, u64)>, StoreError> {
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

    /// Stores a new bank under a fresh id. The caller has checked the name is free; the store
    /// checks again inside the transaction.
    pub fn create_bank(
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

    /// Replaces a bank's stored record (its settings).
    pub fn update_bank(&self, bank: &Bank) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(BANKS)?
            .insert(bank.id.0, encode(bank).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Deletes a bank and all its entries in one transaction; returns how many entries went.
    pub fn delete_bank(&self, bank: BankId) -> Result<u64, StoreError> {
        let txn = self.db.begin_write()?;
        let removed = {
            txn.open_table(BANKS)?.remove(bank.0)?;
            let removed = txn
                .open_table(COUNTS)?
                .remove(bank.0)?
                .map(|c| c.value())
                .unwrap_or(0);
            let (start, end) = bank_range(bank);
            txn.open_table(ENTRIES)?
                .retain_in(start.as_slice()..end.as_slice(), |_, _| false)?;
            let mut ids = txn.open_multimap_table(ENTRY_IDS)?;
            let keys: Vec<Vec<u8>> = ids
                .range(start.as_slice()..end.as_slice())?
                .map(|row| row.map(|(key, _)| key.value().to_vec()))
                .collect::<Result<_, _>>()?;
            for key in keys {
                ids.remove_all(key.as_slice())?;
            }
            removed
        };
        txn.commit()?;
        Ok(removed)
    }

    /// Adds entries to a bank or replaces the metadata of those already there, in one
    /// transaction. With `durable` false the commit is not fsynced: it becomes durable with the
    /// next durable commit, which bulk loads use to pay for one fsync per load, not per batch.
    pub fn upsert_entries(
        &self,
        bank: BankId,
        entries: &[NewEntry],
        durable: bool,
    ) -> Result<UpsertOutcome, StoreError> {
        let mut txn = self.db.begin_write()?;
        if !durable {
            txn.set_durability(Durability::None)?;
        }
        let mut outcome = UpsertOutcome::default();
        // In key order, so that consecutive inserts touch neighbouring B-tree pages; the sort is
        // stable, so of two rows for one hash the later still wins.
        let mut ordered: Vec<(Vec<u8>, &NewEntry)> = entries
            .iter()
            .map(|entry| (entry_key(bank, &entry.hash), entry))
            .collect();
        ordered.sort_by(|a, b| a.0.cmp(&b.0));
        {
            let mut table = txn.open_table(ENTRIES)?;
            let mut ids = txn.open_multimap_table(ENTRY_IDS)?;
            for (key, entry) in ordered {
                // One descent for a new entry, the common case: insert, then look at what it
                // replaced.
                let previous: Option<EntryMeta> = table
                    .insert(key.as_slice(), encode(&entry.meta).as_slice())?
                    .map(|v| decode(v.value(), "entries"))
                    .transpose()?;
                let meta = &entry.meta;
                match &previous {
                    Some(previous) => {
                        // The first time it was added is the entry's age; re-adding updates the rest.
                        if previous.added_at_ms != meta.added_at_ms {
                            let mut kept = meta.clone();
                            kept.added_at_ms = previous.added_at_ms;
                            table.insert(key.as_slice(), encode(&kept).as_slice())?;
                        }
                        if previous.id != meta.id {
                            ids.remove(
                                id_key(bank, &previous.id).as_slice(),
                                id_value(&entry.hash).as_slice(),
                            )?;
                        }
                        outcome.updated += 1;
                    }
                    None => outcome.added.push(entry.hash),
                }
                ids.insert(
                    id_key(bank, &meta.id).as_slice(),
                    id_value(&entry.hash).as_slice(),
                )?;
            }
            add_to_count(&mut txn.open_table(COUNTS)?, bank, outcome.added.len() as i64)?;
        }
        txn.commit()?;
        Ok(outcome)
    }

    /// Makes every earlier non-durable commit durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.commit()?;
        Ok(())
    }

    /// Removes entries by hash and by external id; returns the hashes removed.
    pub fn remove_entries(
        &self,
        bank: BankId,
        hashes: &[HashValue],
        external_ids: &[String],
    ) -> Result<Vec<HashValue>, StoreError> {
        let txn = self.db.begin_write()?;
        let mut removed = Vec::new();
        {
            let mut table = txn.open_table(ENTRIES)?;
            let mut ids = txn.open_multimap_table(ENTRY_IDS)?;
            let mut targets: Vec<HashValue> = hashes.to_vec();
            for external_id in external_ids {
                for value in ids.get(id_key(bank, external_id).as_slice())? {
                    targets.push(parse_id_value(value?.value())?);
                }
            }
            for hash in targets {
                let Some(previous) = table.remove(entry_key(bank, &hash).as_slice())? else {
                    continue;
                };
                let meta: EntryMeta = decode(previous.value(), "entries")?;
                drop(previous);
                ids.remove(id_key(bank, &meta.id).as_slice(), id_value(&hash).as_slice())?;
                removed.push(hash);
            }
            add_to_count(&mut txn.open_table(COUNTS)?, bank, -(removed.len() as i64))?;
        }
        txn.commit()?;
        Ok(removed)
    }

    /// Metadata of the given entries, read in one snapshot; `None` where an entry is gone.
    pub fn entries_meta(&self, keys: &[(BankId, HashValue)]) -> Result<Vec<Option<EntryMeta>>, StoreError> {
        if keys.is_empty() {
            // Most checks match nothing: they need no read transaction.
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        keys.iter()
            .map(|(bank, hash)| {
                table
                    .get(entry_key(*bank, hash).as_slice())?
                    .map(|v| decode(v.value(), "entries"))
                    .transpose()
            })
            .collect()
    }

    /// Visits the entries of one bank (or of all banks), optionally of one algorithm, in key
    /// order, from one consistent snapshot; stops when `visit` breaks.
    pub fn for_each_entry(
        &self,
        bank: BankId,
        algorithm: Option<Algorithm>,
        mut visit: impl FnMut(Entry) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        let (start, end) = bank_range(bank);
        for row in table.range(start.as_slice()..end.as_slice())? {
            let (key, value) = row?;
            let (_, hash) = parse_entry_key(key.value())?;
            if algorithm.is_some_and(|a| a != hash.algorithm()) {
                continue;
            }
            let meta: EntryMeta = decode(value.value(), "entries")?;
            if visit(Entry { hash, meta }).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Visits the (bank, hash) key of every entry, without decoding metadata: what rebuilding
    /// the index needs, at a fraction of the cost of [`Store::for_each_entry`].
    pub fn for_each_key(&self, mut visit: impl FnMut(BankId, HashValue)) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        for row in table.range::<&[u8]>(..)? {
            let (key, _) = row?;
            let (bank, hash) = parse_entry_key(key.value())?;
            visit(bank, hash);
        }
        Ok(())
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

fn entry_key(bank: BankId, hash: &HashValue) -> Vec<u8> {
    let mut key = Vec::with_capacity(5 + hash.as_bytes().len());
    key.extend_from_slice(&bank.0.to_be_bytes());
    key.push(hash.algorithm().code());
    key.extend_from_slice(hash.as_bytes());
    key
}

fn parse_entry_key(key: &[u8]) -> Result<(BankId, HashValue), StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        table: "entries",
        reason: reason.to_string(),
    };
    if key.len() < 5 {
        return Err(corrupt("key too short"));
    }
    let bank = BankId(read_u32(&key[..4], "entries")?);
    let hash = parse_id_value(&key[4..])?;
    Ok((bank, hash))
}

/// The key range holding every row of a bank (entries and ids share the bank prefix).
fn bank_range(bank: BankId) -> (Vec<u8>, Vec<u8>) {
    let start = bank.0.to_be_bytes().to_vec();
    let end = match bank.0.checked_add(1) {
        Some(next) => next.to_be_bytes().to_vec(),
        None => vec![0xff; 5],
    };
    (start, end)
}

fn id_key(bank: BankId, external_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + external_id.len());
    key.extend_from_slice(&bank.0.to_be_bytes());
    key.extend_from_slice(external_id.as_bytes());
    key
}

fn id_value(hash: &HashValue) -> Vec<u8> {
    let mut value = Vec::with_capacity(1 + hash.as_bytes().len());
    value.push(hash.algorithm().code());
    value.extend_from_slice(hash.as_bytes());
    value
}

fn parse_id_value(value: &[u8]) -> Result<HashValue, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "entries",
        reason,
    };
    let (&code, bytes) = value.split_first().ok_or_else(|| corrupt("empty hash".into()))?;
    let algorithm =
        Algorithm::from_code(code).ok_or_else(|| corrupt(format!("unknown algorithm code {code}")))?;
    HashValue::from_bytes(algorithm, bytes).map_err(|e| corrupt(e.to_string()))
}

fn read_u32(bytes: &[u8], table: &'static str) -> Result<u32, StoreError> {
    let array: [u8; 4] =
        bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| StoreError::Corrupt {
                table,
                reason: "expected a 4-byte integer".into(),
            })?;
    Ok(u32::from_be_bytes(array))
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
