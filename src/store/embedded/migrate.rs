//! Migration of a version 1 store (entries keyed by bank ‖ algorithm ‖ hash, with an
//! `entry_ids` table) to the current layout.
//!
//! Entries are copied in batches, each committed without fsync; the last transaction drops the
//! old tables, sets the version and is durable. A migration cut short leaves the version at 1
//! and is started again from scratch on the next open.

use redb::{Database, Durability, MultimapTableDefinition, ReadableDatabase, ReadableTable, TableDefinition};

use super::{ENTRIES, META, META_NEXT_SEQ, META_SCHEMA_VERSION, SCHEMA_VERSION, StoreError, read_u32};
use crate::bank::{BankId, EntryMeta};
use crate::hash::{Algorithm, HashValue};

/// The one version this build migrates from.
pub(super) const FROM_VERSION: u32 = 1;

const V1_ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
const V1_ENTRY_IDS: MultimapTableDefinition<&[u8], &[u8]> = MultimapTableDefinition::new("entry_ids");

/// Entries copied per transaction.
const BATCH: usize = 100_000;

pub(super) fn from_v1(db: &Database) -> Result<(), StoreError> {
    tracing::info!("migrating the store from schema version 1");
    // Start from an empty table: an earlier attempt may have copied part of the entries.
    let txn = db.begin_write()?;
    txn.delete_table(ENTRIES)?;
    txn.commit()?;

    let snapshot = db.begin_read()?;
    let old = snapshot.open_table(V1_ENTRIES)?;
    let mut rows = old.iter()?;
    let mut seq: u64 = 0;
    let mut record = Vec::new();
    loop {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::None)?;
        let mut copied = 0;
        {
            let mut table = txn.open_table(ENTRIES)?;
            for row in rows.by_ref().take(BATCH) {
                let (key, value) = row?;
                let (bank, hash) = parse_v1_key(key.value())?;
                let meta: EntryMeta = super::decode(value.value(), "entries")?;
                super::encode_record(&hash, &meta, &mut record);
                table.insert((bank.0, seq), record.as_slice())?;
                seq += 1;
                copied += 1;
            }
        }
        txn.commit()?;
        if copied < BATCH {
            break;
        }
    }
    drop(rows);
    drop(old);
    drop(snapshot);

    let txn = db.begin_write()?;
    txn.delete_table(V1_ENTRIES)?;
    txn.delete_multimap_table(V1_ENTRY_IDS)?;
    {
        let mut meta = txn.open_table(META)?;
        meta.insert(META_NEXT_SEQ, seq.to_be_bytes().as_slice())?;
        meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION.to_be_bytes().as_slice())?;
    }
    txn.commit()?;
    tracing::info!(entries = seq, "store migrated to schema version {SCHEMA_VERSION}");
    Ok(())
}

/// A version 1 entry key: bank id (4 bytes, big-endian) ‖ algorithm code ‖ hash bytes.
fn parse_v1_key(key: &[u8]) -> Result<(BankId, HashValue), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "entries",
        reason,
    };
    let (bank, rest) = key
        .split_at_checked(4)
        .ok_or_else(|| corrupt("key too short".into()))?;
    let (&code, hash) = rest
        .split_first()
        .ok_or_else(|| corrupt("key too short".into()))?;
    let algorithm =
        Algorithm::from_code(code).ok_or_else(|| corrupt(format!("unknown algorithm code {code}")))?;
    let hash = HashValue::from_bytes(algorithm, hash).map_err(|e| corrupt(e.to_string()))?;
    Ok((BankId(read_u32(bank, "entries")?), hash))
}

#[cfg(test)]
pub(super) mod v1 {
    //! Writes a version 1 store, for the migration's test.
    use super::*;

    pub fn key(bank: BankId, hash: &HashValue) -> Vec<u8> {
        let mut key = bank.0.to_be_bytes().to_vec();
        key.push(hash.algorithm().code());
        key.extend_from_slice(hash.as_bytes());
        key
    }

    pub const ENTRIES: TableDefinition<&[u8], &[u8]> = V1_ENTRIES;
    pub const ENTRY_IDS: MultimapTableDefinition<&[u8], &[u8]> = V1_ENTRY_IDS;
}
