//! The match log's write path: checks queue their matches in memory, and a background thread
//! writes the queue to the store in batches, so a check never waits on the store (nor fails
//! when it is down). The store keeps the log and the per-bank counts for every replica; this
//! process reads the counts back now and then, and adds what it has yet to write.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Matcher;
use crate::bank::BankId;
use crate::error::error_chain;
use crate::store::{MatchCount, MatchRecord, Store, StoreError};

/// How often queued matches are written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// How often the counts are read back, to pick up other replicas' matches.
const REFRESH_EVERY: Duration = Duration::from_secs(2);
/// Matches queued at most while the store cannot take them; past this the oldest are dropped
/// (and counted), so an outage costs bounded memory. Counts are kept whatever is dropped.
const MAX_QUEUED: usize = 100_000;

pub(super) struct MatchLog {
    /// Records kept in the store, newest first.
    keep: u64,
    queue: Mutex<Queue>,
    /// The store's counts as last read, plus what this process wrote since.
    stored: RwLock<HashMap<BankId, MatchCount>>,
    /// Serialises flushes and refreshes, so that a count is never added twice to `stored`.
    flushing: Mutex<Option<Instant>>,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Queue {
    records: Vec<MatchRecord>,
    counts: HashMap<BankId, MatchCount>,
}

impl MatchLog {
    pub fn new(keep: u64) -> MatchLog {
        MatchLog {
            keep,
            queue: Mutex::default(),
            stored: RwLock::default(),
            flushing: Mutex::new(None),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues one check's matches: its records, and one check for each bank in `banks`.
    pub fn push(&self, records: impl IntoIterator<Item = MatchRecord>, banks: &[BankId], now_ms: i64) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.records.extend(records);
        for bank in banks {
            queue.counts.entry(*bank).or_default().add(MatchCount {
                checks: 1,
                last_match_ms: now_ms,
            });
        }
        let excess = queue.records.len().saturating_sub(MAX_QUEUED);
        if excess > 0 {
            queue.records.drain(..excess);
            self.dropped.fetch_add(excess as u64, Ordering::Relaxed);
        }
    }

    /// Writes the queue to the store, and reads the counts back when they are older than
    /// [`REFRESH_EVERY`] (or `refresh` asks). What cannot be written stays queued.
    pub fn flush(&self, store: &dyn Store, refresh: bool) -> Result<(), StoreError> {
        let mut refreshed_at = self.flushing.lock().unwrap_or_else(PoisonError::into_inner);
        let queue = std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner));
        if !queue.records.is_empty() || !queue.counts.is_empty() {
            let counts: Vec<(BankId, MatchCount)> = queue.counts.iter().map(|(b, c)| (*b, *c)).collect();
            if let Err(error) = store.record_matches(&queue.records, &counts, self.keep) {
                self.requeue(queue);
                return Err(error);
            }
            let mut stored = self.stored.write().unwrap_or_else(PoisonError::into_inner);
            for (bank, count) in counts {
                stored.entry(bank).or_default().add(count);
            }
        }
        if refresh || refreshed_at.is_none_or(|at| at.elapsed() >= REFRESH_EVERY) {
            let counts = store.match_counts()?;
            *self.stored.write().unwrap_or_else(PoisonError::into_inner) = counts;
            *refreshed_at = Some(Instant::now());
        }
        Ok(())
    }

    /// Puts back records and counts a failed flush took, before what was queued meanwhile.
    fn requeue(&self, mut failed: Queue) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        failed.records.append(&mut queue.records);
        queue.records = failed.records;
        for (bank, count) in failed.counts {
            queue.counts.entry(bank).or_default().add(count);
        }
        let excess = queue.records.len().saturating_sub(MAX_QUEUED);
        if excess > 0 {
            queue.records.drain(..excess);
            self.dropped.fetch_add(excess as u64, Ordering::Relaxed);
        }
    }

    /// A bank's matches on every replica as far as this process knows: the store's count
    /// as last read, and this process's matches not yet written.
    pub fn count(&self, bank: BankId) -> MatchCount {
        let mut total = self
            .stored
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&bank)
            .copied()
            .unwrap_or_default();
        if let Some(queued) = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .counts
            .get(&bank)
        {
            total.add(*queued);
        }
        total
    }

    /// Matches dropped unwritten because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Starts the thread that writes `matcher`'s queued matches every [`FLUSH_EVERY`]; it ends
/// with the matcher. A failure is logged once, and its recovery once.
pub fn keep_flushing(matcher: &Arc<Matcher>) -> std::io::Result<JoinHandle<()>> {
    let matcher: Weak<Matcher> = Arc::downgrade(matcher);
    std::thread::Builder::new()
        .name("match-log".into())
        .spawn(move || {
            let mut failing = false;
            loop {
                std::thread::sleep(FLUSH_EVERY);
                let Some(matcher) = matcher.upgrade() else {
                    return;
                };
                match matcher.match_log.flush(matcher.store.as_ref(), false) {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("writing the match log again");
                    }
                    Ok(()) => {}
                    Err(error) if !failing => {
                        failing = true;
                        tracing::warn!(error = %error_chain(&error), "cannot write the match log; matches stay queued");
                    }
                    Err(_) => {}
                }
            }
        })
}
