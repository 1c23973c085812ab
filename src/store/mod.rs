//! The durable record of banks and entries, which the index is rebuilt from.
//!
//! [`Store`] is what the matcher needs of one; [`EmbeddedStore`] keeps it in a redb database in
//! the data directory (the default: one node, nothing else to run); [`PostgresStore`] in
//! PostgreSQL, shared by replicas.
//!
//! Every entry has an [`EntryKey`]: its bank's id and a sequence number the store hands out,
//! never reused. The index holds each entry's key, so a match is resolved to its metadata by
//! key, and the matcher (which keeps the index equal to the store) is the one that knows
//! whether a (bank, hash) is already stored: a store does not check that itself.

use std::ops::ControlFlow;

use crate::bank::{Bank, BankId, BankName, BankSettings, Entry, EntryKey, NewEntry};
use crate::hash::{Algorithm, HashValue};

#[cfg(test)]
mod contract_tests;
mod embedded;
mod postgres;

pub use embedded::{DATABASE_FILE, DEFAULT_CACHE_BYTES, EmbeddedStore, SCHEMA_VERSION};
pub use postgres::{MIGRATIONS, PostgresStore, change};

/// What the matcher needs of a store. Every method is one transaction: it happens whole or
/// not at all, and a write that returns `Ok` is committed (durably, unless it says otherwise).
pub trait Store: Send + Sync {
    /// Whether reads are local (no network round trip), so a check may resolve its matches
    /// on an async thread. A networked store's client may also refuse to run there at all.
    fn is_local(&self) -> bool;

    /// Every bank with its entry count.
    fn load_banks(&self) -> Result<Vec<(Bank, u64)>, StoreError>;

    /// Stores a new bank under a fresh id. The caller has checked the name is free; the store
    /// checks again inside the transaction.
    fn create_bank(
        &self,
        name: BankName,
        settings: BankSettings,
        created_at_ms: i64,
    ) -> Result<Bank, StoreError>;

    /// Replaces a bank's stored record (its settings).
    fn update_bank(&self, bank: &Bank) -> Result<(), StoreError>;

    /// Deletes a bank and all its entries; returns how many entries went.
    fn delete_bank(&self, bank: BankId) -> Result<u64, StoreError>;

    /// Writes entries of a bank: `new` ones under fresh sequence numbers, which it returns in
    /// order, and `replaced` ones, whose metadata replaces that of the entry at their key
    /// (keeping when it was first added). The caller guarantees that no `new` entry's
    /// (hash, bank) is already stored, and that each replaced key holds that hash.
    ///
    /// With `durable` false the commit need not be fsynced: it becomes durable with the next
    /// durable commit or [`Store::sync`], which bulk loads use to pay for one fsync per load,
    /// not per batch.
    fn write_entries(
        &self,
        bank: BankId,
        new: &[&NewEntry],
        replaced: &[(EntryKey, &NewEntry)],
        durable: bool,
    ) -> Result<Vec<EntryKey>, StoreError>;

    /// Makes every earlier non-durable commit durable.
    fn sync(&self) -> Result<(), StoreError>;

    /// Removes the entries at `seqs` and those whose external id is one of `external_ids`;
    /// returns what it removed.
    fn remove_entries(
        &self,
        bank: BankId,
        seqs: &[u64],
        external_ids: &[String],
    ) -> Result<Vec<(EntryKey, HashValue)>, StoreError>;

    /// The entries at `keys`, read in one snapshot; `None` where an entry is gone.
    fn entries(&self, keys: &[EntryKey]) -> Result<Vec<Option<Entry>>, StoreError>;

    /// Visits the entries of one bank, optionally of one algorithm, in the order they were
    /// added, from one consistent snapshot; stops when `visit` breaks.
    fn for_each_entry(
        &self,
        bank: BankId,
        algorithm: Option<Algorithm>,
        visit: &mut dyn FnMut(Entry) -> ControlFlow<()>,
    ) -> Result<(), StoreError>;

    /// Visits the key and hash of every entry, without decoding metadata: what rebuilding the
    /// index needs.
    fn for_each_key(&self, visit: &mut dyn FnMut(EntryKey, HashValue)) -> Result<(), StoreError>;
}

/// Why a store operation failed. Everything but `BankExists` is an internal failure the
/// service logs and reports without detail.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir { path: String, source: std::io::Error },
    #[error("database error: {0}")]
    Database(Box<redb::Error>),
    #[error("postgresql error: {0}")]
    Postgres(Box<::postgres::Error>),
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
    #[error("the store has used up its {0}")]
    Exhausted(&'static str),
}
