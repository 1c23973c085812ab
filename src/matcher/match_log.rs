//! The match log's write path: checks queue their matches in memory, and a background thread
//! writes the queue to the store in batches, so a check never waits on the store (nor fails
//! when it is down). The store keeps the log and the per-bank counts for every replica; this
//! process reads the counts back now and then, and adds what it has yet to write.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Matcher;
use crate::bank::BankId;
use crate::error::Outage;
use crate::store::{MatchCount, MatchRecord, Store, StoreError};

/// How often queued matches are written.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// How often the counts are read back, to pick up other replicas' matches.
const REFRESH_EVERY: Duration = Duration::from_secs(2);
/// Matches queued at most while the store cannot take them; past this the oldest are dropped
/// (and counted), so an outage costs bounded memory. Counts are kept whatever is dropped.
const MAX_QUEUED: usize = 100_000;

pub(super) struct MatchLog {
    /// Records kept in the store, newest first.
    keep: u64,
    /// Records queued at most ([`MAX_QUEUED`] but in tests).
    max_queued: usize,
    queue: Mutex<Queue>,
    /// The store's counts as last read, plus what this process wrote since.
    stored: RwLock<HashMap<BankId, MatchCount>>,
    /// Serialises flushes and refreshes, so that a count is never added twice to `stored`.
    flushing: Mutex<Option<Instant>>,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Queue {
    /// Oldest first; a deque, so that dropping the oldest of a full queue costs no shifting.
    records: VecDeque<MatchRecord>,
    counts: HashMap<BankId, MatchCount>,
}

impl MatchLog {
    pub fn new(keep: u64) -> MatchLog {
        MatchLog {
            keep,
            max_queued: MAX_QUEUED,
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
        self.bound(&mut queue);
    }

    /// Drops the oldest records past the bound, counting them.
    fn bound(&self, queue: &mut Queue) {
        let excess = queue.records.len().saturating_sub(self.max_queued);
        if excess > 0 {
            queue.records.drain(..excess);
            self.dropped.fetch_add(excess as u64, Ordering::Relaxed);
        }
    }

    /// Writes the queue to the store, and reads the counts back when they are older than
    /// [`REFRESH_EVERY`] (or `refresh` asks). What cannot be written stays queued.
    pub fn flush(&self, store: &dyn Store, refresh: bool) -> Result<(), StoreError> {
        let mut refreshed_at = self.flushing.lock().unwrap_or_else(PoisonError::into_inner);
        self.write_queue(|records, counts| store.record_matches(records, counts, self.keep))?;
        if refresh || refreshed_at.is_none_or(|at| at.elapsed() >= REFRESH_EVERY) {
            let counts = store.match_counts()?;
            *self.stored.write().unwrap_or_else(PoisonError::into_inner) = counts;
            *refreshed_at = Some(Instant::now());
        }
        Ok(())
    }

    /// Hands the queue to `write`; on success its counts join the stored ones, on failure it
    /// is queued again. Callers hold `flushing`.
    fn write_queue(
        &self,
        write: impl FnOnce(&[MatchRecord], &[(BankId, MatchCount)]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut queue = std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner));
        if queue.records.is_empty() && queue.counts.is_empty() {
            return Ok(());
        }
        let counts: Vec<(BankId, MatchCount)> = queue.counts.iter().map(|(b, c)| (*b, *c)).collect();
        if let Err(error) = write(queue.records.make_contiguous(), &counts) {
            self.requeue(queue);
            return Err(error);
        }
        let mut stored = self.stored.write().unwrap_or_else(PoisonError::into_inner);
        for (bank, count) in counts {
            stored.entry(bank).or_default().add(count);
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
        self.bound(&mut queue);
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
            let mut outage = Outage::default();
            loop {
                std::thread::sleep(FLUSH_EVERY);
                let Some(matcher) = matcher.upgrade() else {
                    return;
                };
                outage.note(
                    &matcher.match_log.flush(matcher.store.as_ref(), false),
                    "writing the match log again",
                    "cannot write the match log; matches stay queued",
                );
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bank::{Action, BankName};
    use crate::hash::{Algorithm, HashValue, Transform, View};
    use crate::verdict::{Match, Verdict};

    fn record(bank: u32, distance: u32) -> MatchRecord {
        MatchRecord {
            sequence: 0,
            bank: BankId(bank),
            matched_at_ms: 1,
            verdict: Verdict::Block,
            found: Match {
                bank: BankName::new("A").unwrap(),
                entry_id: String::new(),
                hash: HashValue::from_bytes(Algorithm::Pdq, &[0; 32]).unwrap(),
                distance,
                labels: Vec::new(),
                action: Action::Block,
                source: String::new(),
                view: View::Whole,
                transform: Transform::Original,
                low_quality: false,
            },
        }
    }

    fn distances(records: &[MatchRecord]) -> Vec<u32> {
        records.iter().map(|r| r.found.distance).collect()
    }

    #[test]
    fn a_failed_write_keeps_the_queue_in_order_within_its_bound_and_counts_every_check() {
        let mut log = MatchLog::new(10);
        log.max_queued = 3;
        let bank = BankId(1);
        log.push([record(1, 0), record(1, 1)], &[bank], 5);
        let unavailable = || Err(StoreError::Behind);
        assert!(log.write_queue(|_, _| unavailable()).is_err());
        log.push([record(1, 2), record(1, 3)], &[bank], 9);
        // Four records queued, three kept: the oldest went, and is counted as dropped.
        assert_eq!(log.dropped(), 1);
        assert_eq!(
            log.count(bank),
            MatchCount {
                checks: 2,
                last_match_ms: 9
            }
        );
        let mut written = Vec::new();
        log.write_queue(|records, counts| {
            written = distances(records);
            assert_eq!(
                counts,
                [(
                    bank,
                    MatchCount {
                        checks: 2,
                        last_match_ms: 9
                    }
                )]
            );
            Ok(())
        })
        .unwrap();
        assert_eq!(written, [1, 2, 3]);
        // Written counts stay counted; the queue is empty.
        assert_eq!(
            log.count(bank),
            MatchCount {
                checks: 2,
                last_match_ms: 9
            }
        );
        log.write_queue(|_, _| panic!("nothing to write")).unwrap();
    }
}
