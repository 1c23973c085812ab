//! The PostgreSQL store's change feed: the `changes` table read in sequence order, and
//! LISTEN/NOTIFY to wake followers as soon as a write commits.

use std::sync::atomic::Ordering;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, GenericClient, IsolationLevel};

use super::{PostgresStore, WRITE_LOCK, bank_from_row, change, connect, corrupt, hash_from_row};
use crate::bank::{Bank, BankId, EntryKey};
use crate::store::{Change, ChangeFeed, ChangeKind, ChangeListener, StoreError};

/// The channel every write notifies with its new head, and listeners listen on.
const CHANNEL: &str = "hashsieve_changes";

/// The last committed change's sequence number (0 before the first).
pub(super) fn head(client: &mut impl GenericClient) -> Result<u64, StoreError> {
    let head: i64 = client
        .query_one("SELECT coalesce(max(seq), 0) FROM changes", &[])?
        .get(0);
    Ok(head as u64)
}

/// Tells listeners, once the transaction commits, that the feed's head is now `head`.
pub(super) fn notify(client: &mut impl GenericClient, head: u64) -> Result<(), StoreError> {
    client.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &head.to_string()])?;
    Ok(())
}

impl ChangeFeed for PostgresStore {
    fn position(&self) -> u64 {
        self.position.load(Ordering::SeqCst)
    }

    fn set_position(&self, seq: u64) {
        self.position.store(seq, Ordering::SeqCst);
    }

    fn head(&self) -> Result<u64, StoreError> {
        self.read(head)
    }

    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let (horizon, rows) = self.read(|client| {
            // One snapshot for both reads, so that a prune cannot commit between them.
            let mut txn = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let horizon = horizon(&mut txn)?;
            let rows = txn.query(
                "SELECT seq, kind, bank_id, entry_seq, algorithm, hash, \
                        (extract(epoch FROM at) * 1000)::bigint \
                 FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&(after as i64), &(limit as i64)],
            )?;
            txn.commit()?;
            Ok((horizon, rows))
        })?;
        if after < horizon {
            return Err(StoreError::Pruned {
                position: after,
                horizon,
            });
        }
        rows.iter().map(change_from_row).collect()
    }

    fn bank(&self, id: BankId) -> Result<Option<Bank>, StoreError> {
        let row = self.read(|client| {
            Ok(client.query_opt(
                "SELECT id, name, settings::text, created_at_ms FROM banks WHERE id = $1",
                &[&(id.0 as i32)],
            )?)
        })?;
        row.map(|row| bank_from_row(row.get(0), row.get(1), row.get(2), row.get(3)))
            .transpose()
    }

    fn listen(&self) -> Box<dyn ChangeListener> {
        Box::new(Listener {
            url: self.url.clone(),
            client: None,
        })
    }

    fn prune(&self, keep: Duration) -> Result<u64, StoreError> {
        self.prune_in_batches(keep, PRUNE_BATCH)
    }
}

/// Changes deleted per transaction when pruning: each holds the write lock, so that a first
/// prune of a long history holds writers back for a moment at a time, not for the whole of it.
const PRUNE_BATCH: i64 = 50_000;

impl PostgresStore {
    /// [`ChangeFeed::prune`], deleting at most `batch` changes per transaction. Each runs under
    /// the write lock, so that the newest change (the head) is known and stays, and moves the
    /// horizon with its deletion in one commit.
    pub(in crate::store) fn prune_in_batches(&self, keep: Duration, batch: i64) -> Result<u64, StoreError> {
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let mut client = self.client()?;
        // The last change to prune, fixed by the first transaction.
        let mut last: Option<i64> = None;
        let mut pruned = 0;
        loop {
            let mut txn = client.get().transaction()?;
            txn.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
            let last = match last {
                Some(last) => last,
                None => {
                    let found: Option<i64> = txn
                        .query_one(
                            "SELECT max(seq) FROM changes \
                             WHERE at < now() - $1::bigint * interval '1 millisecond' \
                               AND seq < (SELECT max(seq) FROM changes)",
                            &[&keep_ms],
                        )?
                        .get(0);
                    let Some(found) = found else {
                        return Ok(0);
                    };
                    *last.insert(found)
                }
            };
            let first: Option<i64> = txn.query_one("SELECT min(seq) FROM changes", &[])?.get(0);
            let upto = first.map_or(last, |first| last.min(first.saturating_add(batch - 1)));
            pruned += txn.execute("DELETE FROM changes WHERE seq <= $1", &[&upto])?;
            // Another process may have pruned further between two batches: the horizon never
            // moves back.
            txn.execute(
                "INSERT INTO hashsieve_meta VALUES ($1, $2) ON CONFLICT (key) DO UPDATE \
                 SET value = greatest(hashsieve_meta.value::bigint, excluded.value::bigint)::text",
                &[&HORIZON_KEY, &upto.to_string()],
            )?;
            txn.commit()?;
            if upto >= last {
                return Ok(pruned);
            }
        }
    }
}

/// The `hashsieve_meta` key of the last change pruned.
const HORIZON_KEY: &str = "feed_horizon";

/// The last change pruned (0 before the first prune): a process that has not applied it
/// cannot follow the feed any more.
fn horizon(client: &mut impl GenericClient) -> Result<u64, StoreError> {
    let row = client.query_opt("SELECT value FROM hashsieve_meta WHERE key = $1", &[&HORIZON_KEY])?;
    let Some(row) = row else {
        return Ok(0);
    };
    let value: &str = row.try_get(0)?;
    value.parse().map_err(|_| StoreError::Corrupt {
        table: "hashsieve_meta",
        reason: format!("{HORIZON_KEY} is not a change number: {value:?}"),
    })
}

fn change_from_row(row: &postgres::Row) -> Result<Change, StoreError> {
    let seq: i64 = row.try_get(0)?;
    let kind: &str = row.try_get(1)?;
    let bank = BankId(row.try_get::<_, i32>(2)? as u32);
    let entry = || -> Result<(EntryKey, crate::hash::HashValue), StoreError> {
        let entry_seq: Option<i64> = row.try_get(3)?;
        let code: Option<i16> = row.try_get(4)?;
        let hash: Option<&[u8]> = row.try_get(5)?;
        match (entry_seq, code, hash) {
            (Some(entry_seq), Some(code), Some(hash)) => Ok((
                EntryKey {
                    bank,
                    seq: entry_seq as u64,
                },
                hash_from_row(code, hash)?,
            )),
            _ => Err(corrupt(format!("change {seq} ({kind}) has no entry"))),
        }
    };
    let kind = match kind {
        change::BANK_CREATED => ChangeKind::BankCreated(bank),
        change::BANK_CHANGED => ChangeKind::BankChanged(bank),
        change::BANK_DELETED => ChangeKind::BankDeleted(bank),
        change::ENTRY_ADDED => {
            let (key, hash) = entry()?;
            ChangeKind::EntryAdded(key, hash)
        }
        change::ENTRY_UPDATED => {
            let (key, hash) = entry()?;
            ChangeKind::EntryUpdated(key, hash)
        }
        change::ENTRY_REMOVED => {
            let (key, hash) = entry()?;
            ChangeKind::EntryRemoved(key, hash)
        }
        other => return Err(corrupt(format!("change {seq} has an unknown kind {other:?}"))),
    };
    Ok(Change {
        seq: seq as u64,
        at_ms: row.try_get(6)?,
        kind,
    })
}

/// A connection that listens on [`CHANNEL`], opened on first use and again after a failure.
struct Listener {
    url: String,
    client: Option<Client>,
}

impl ChangeListener for Listener {
    fn wait(&mut self, timeout: Duration) -> Result<(), StoreError> {
        let client = match &mut self.client {
            Some(client) if !client.is_closed() => client,
            slot => {
                *slot = None;
                let mut client = connect(&self.url)?;
                client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
                // Notifications sent while there was no connection are lost: the caller's
                // next poll finds their changes, so return at once.
                *slot = Some(client);
                return Ok(());
            }
        };
        let received = client.notifications().timeout_iter(timeout).next();
        match received {
            Ok(Some(_)) => {
                // One wake-up serves every notification already here.
                let mut pending = client.notifications();
                let mut pending = pending.iter();
                while pending.next()?.is_some() {}
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(error) => {
                self.client = None;
                Err(error.into())
            }
        }
    }
}
