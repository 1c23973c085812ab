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

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::time::Duration;

use crate::bank::{Bank, BankId, BankName, BankSettings, Entry, EntryKey, NewEntry};
use crate::hash::{Algorithm, HashValue};
use crate::verdict::{Match, Verdict};

#[cfg(test)]
pub(crate) mod contract_tests;
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

    /// What a process needs at start, from one consistent snapshot: the banks with their entry
    /// counts (given to `banks` first), then every entry's key and hash. A shared store also
    /// sets its feed's position to the last change that snapshot reflects.
    fn load(
        &self,
        banks: &mut dyn FnMut(Vec<(Bank, u64)>),
        keys: &mut dyn FnMut(EntryKey, HashValue),
    ) -> Result<(), StoreError> {
        // One process owns a store without a feed: nothing changes between the two reads.
        banks(self.load_banks()?);
        self.for_each_key(keys)
    }

    /// The change feed of a store that other processes write to as well; `None` for one this
    /// process owns alone.
    fn feed(&self) -> Option<&dyn ChangeFeed> {
        None
    }

    /// Appends `records` to the match log and adds `counts` to the banks' match counts (for
    /// banks that still exist), then drops the log's oldest records past the newest `keep`.
    /// Not part of the change feed: replicas read the log, they do not apply it.
    fn record_matches(
        &self,
        records: &[MatchRecord],
        counts: &[(BankId, MatchCount)],
        keep: u64,
    ) -> Result<(), StoreError>;

    /// The newest `limit` records of the match log, newest first, optionally of one bank.
    fn recent_matches(&self, bank: Option<BankId>, limit: usize) -> Result<Vec<MatchRecord>, StoreError>;

    /// Every bank's match count.
    fn match_counts(&self) -> Result<HashMap<BankId, MatchCount>, StoreError>;
}

/// A match as the match log keeps it: which bank, when, and the verdict of the whole check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchRecord {
    /// Its place in the log, which numbers records in the order they were written (across
    /// replicas, too); 0 until it is written (the store ignores it then).
    pub sequence: u64,
    pub bank: BankId,
    pub matched_at_ms: i64,
    pub verdict: Verdict,
    pub found: Match,
}

/// How many checks matched a bank, and when the last did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatchCount {
    pub checks: u64,
    pub last_match_ms: i64,
}

impl MatchCount {
    /// Adds `other`'s checks, keeping the later time.
    pub fn add(&mut self, other: MatchCount) {
        self.checks += other.checks;
        self.last_match_ms = self.last_match_ms.max(other.last_match_ms);
    }
}

/// The stored form of a record beside its bank and time (which both backends keep as keys or
/// columns): postcard of the verdict and the match.
fn encode_match(record: &MatchRecord) -> Vec<u8> {
    // Serialising plain structs to a Vec cannot fail: postcard errors only on unsupported
    // serde features or a full fixed buffer, neither of which applies here.
    postcard::to_stdvec(&(record.verdict, &record.found)).unwrap_or_default()
}

fn decode_match(
    sequence: u64,
    bank: BankId,
    matched_at_ms: i64,
    bytes: &[u8],
) -> Result<MatchRecord, StoreError> {
    let (verdict, found) = postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        table: "match_log",
        reason: e.to_string(),
    })?;
    Ok(MatchRecord {
        sequence,
        bank,
        matched_at_ms,
        verdict,
        found,
    })
}

/// The ordered changes of a store shared by several processes, which each applies to its
/// index, and the position up to which this process has applied them.
///
/// Writes keep the position exact: a write is refused with [`StoreError::Behind`] when the
/// store holds a change past the position (another process wrote, and this one's view, on
/// which the write was decided, is stale), and a write that commits moves the position to its
/// own last change. The caller serialises its writes and its applying of changes.
pub trait ChangeFeed: Send + Sync {
    /// The last change applied.
    fn position(&self) -> u64;

    /// Records that every change up to `seq` is applied.
    fn set_position(&self, seq: u64);

    /// The last committed change.
    fn head(&self) -> Result<u64, StoreError>;

    /// Committed changes after `after`, oldest first, at most `limit`.
    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError>;

    /// A bank's current record; `None` once it is deleted.
    fn bank(&self, id: BankId) -> Result<Option<Bank>, StoreError>;

    /// A listener for the store's notifications of new changes.
    fn listen(&self) -> Box<dyn ChangeListener>;

    /// Deletes the changes committed longer than `keep` ago, except the newest, and returns
    /// how many went. A process whose position falls behind what is left can no longer follow:
    /// [`ChangeFeed::changes_since`] refuses it with [`StoreError::Pruned`], and it must load
    /// a fresh snapshot. Safe to run from several processes at once.
    fn prune(&self, keep: Duration) -> Result<u64, StoreError>;
}

/// Waits for word that another process committed a change.
pub trait ChangeListener: Send {
    /// Returns when a change may have been committed since the last call, or after `timeout`.
    /// A notification can be lost (a dropped connection), so callers also poll.
    fn wait(&mut self, timeout: Duration) -> Result<(), StoreError>;
}

/// One committed change of a shared store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Its place in commit order: every change before it committed earlier.
    pub seq: u64,
    /// When it committed (the store's clock), in milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub kind: ChangeKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    BankCreated(BankId),
    BankChanged(BankId),
    BankDeleted(BankId),
    EntryAdded(EntryKey, HashValue),
    /// Its metadata changed; the hash did not.
    EntryUpdated(EntryKey, HashValue),
    EntryRemoved(EntryKey, HashValue),
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
    /// A shared store holds changes this process has not applied yet: apply them, decide the
    /// write again, retry.
    #[error("another process wrote to the shared store first")]
    Behind,
    /// The changes after `position` that this process has yet to apply were pruned (changes
    /// up to `horizon` are gone): it can only catch up by loading a fresh snapshot.
    #[error(
        "the store pruned changes this process had not applied (applied up to {position}, pruned up to {horizon}): it must load a fresh snapshot"
    )]
    Pruned { position: u64, horizon: u64 },
}

impl StoreError {
    /// Whether the store could not be reached (a connection refused or dropped) or this
    /// process's view of a shared store is stale: the request may succeed if retried, later or
    /// on another replica, unlike a failure of the data itself.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Postgres(error) => {
                let connection_lost = error.code().is_some_and(|code| {
                    // Connection exceptions (08…) and operator intervention (57P…: the server
                    // shutting down, the backend terminated, not accepting connections yet).
                    code.code().starts_with("08") || code.code().starts_with("57P")
                });
                let io =
                    std::error::Error::source(&**error).is_some_and(|source| source.is::<std::io::Error>());
                error.is_closed() || connection_lost || io
            }
            // Another replica can serve the call: this one's view is stale for good.
            StoreError::Behind | StoreError::Pruned { .. } => true,
            _ => false,
        }
    }
}
