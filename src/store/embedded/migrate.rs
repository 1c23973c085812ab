//! Migrations of older stores to the current layout, one version at a time.
//!
//! Version 1 to 2: entries keyed by bank ‖ algorithm ‖ hash, with an `entry_ids` table, become
//! entries keyed by (bank, sequence number). Entries are copied in batches, each committed
//! without fsync; the last transaction drops the old tables, sets the version and is durable.
//! A migration cut short leaves the version at 1 and is started again from scratch on the next
//! open.
//!
//! Version 2 to 3: banks gain a minimum PDQ quality (the default, 50). One transaction.

use redb::{Database, Durability, MultimapTableDefinition, ReadableDatabase, ReadableTable, TableDefinition};

use serde::{Deserialize, Serialize};

use super::{BANKS, ENTRIES, META, META_NEXT_SEQ, META_SCHEMA_VERSION, StoreError, read_u32};
use crate::bank::{Action, Bank, BankId, BankName, BankSettings, DEFAULT_MIN_QUALITY, EntryMeta, Thresholds};
use crate::hash::{Algorithm, HashValue};

/// The oldest version this build migrates from.
pub(super) const OLDEST_VERSION: u32 = 1;

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
        meta.insert(META_SCHEMA_VERSION, 2u32.to_be_bytes().as_slice())?;
    }
    txn.commit()?;
    tracing::info!(entries = seq, "store migrated to schema version 2");
    Ok(())
}

/// A bank as versions 1 and 2 stored it (postcard is positional: the layout is the type).
#[derive(Serialize, Deserialize)]
pub(super) struct BankV2 {
    pub id: BankId,
    pub name: BankName,
    pub action: Action,
    pub thresholds: Thresholds,
    pub labels: Vec<String>,
    pub description: String,
    pub enabled: bool,
    pub created_at_ms: i64,
}

pub(super) fn from_v2(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    let mut migrated = 0;
    {
        let mut banks = txn.open_table(BANKS)?;
        let old: Vec<(u32, BankV2)> = banks
            .iter()?
            .map(|row| {
                let (id, bytes) = row?;
                Ok((id.value(), super::decode::<BankV2>(bytes.value(), "banks")?))
            })
            .collect::<Result<_, StoreError>>()?;
        for (id, bank) in old {
            let bank = Bank {
                id: bank.id,
                name: bank.name,
                settings: BankSettings {
                    action: bank.action,
                    thresholds: bank.thresholds,
                    labels: bank.labels,
                    description: bank.description,
                    enabled: bank.enabled,
                    min_quality: DEFAULT_MIN_QUALITY,
                },
                created_at_ms: bank.created_at_ms,
            };
            banks.insert(id, super::encode(&bank).as_slice())?;
            migrated += 1;
        }
        let mut meta = txn.open_table(META)?;
        meta.insert(META_SCHEMA_VERSION, 3u32.to_be_bytes().as_slice())?;
    }
    txn.commit()?;
    tracing::info!(banks = migrated, "store migrated to schema version 3");
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
