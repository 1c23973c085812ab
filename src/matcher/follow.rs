//! Following a shared store: every replica applies the changes other replicas commit, in
//! commit order, so an entry added through any replica becomes matchable on all of them.
//!
//! A thread per matcher waits for the store's notification of a commit, or for the poll
//! interval to pass (a notification can be lost with a connection; the poll bounds what that
//! costs), then applies every change past its position. The staleness it reports is the time
//! since the start of the last round that applied everything: every change committed before
//! that is matchable here.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Matcher;
use crate::bank::EntryKey;
use crate::error::{Error, Outage, error_chain};
use crate::hash::{Algorithm, HashValue};
use crate::store::{Change, ChangeFeed, ChangeKind, StoreError};

/// Changes read and applied under one hold of the writer lock: enough to apply a bulk load
/// quickly, few enough that local writes wait at most a few milliseconds.
const BATCH: usize = 4096;

/// How closely a replica follows its shared store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedStatus {
    /// The last change applied here.
    pub position: u64,
    /// The last change known to be committed.
    pub head: u64,
    /// Every change committed longer ago than this is applied here.
    pub lag: Duration,
    /// Why the last round failed, if it did.
    pub error: Option<String>,
}

impl FeedStatus {
    /// Changes known to be committed and not applied here yet.
    pub fn behind(&self) -> u64 {
        self.head.saturating_sub(self.position)
    }
}

/// The follower's progress, kept by the matcher.
pub(super) struct Following {
    head: u64,
    caught_up_at: Instant,
    error: Option<String>,
}

impl Following {
    pub(super) fn new() -> Self {
        Following {
            head: 0,
            // The snapshot loaded at start is current as of now.
            caught_up_at: Instant::now(),
            error: None,
        }
    }
}

impl Matcher {
    /// How closely this process follows its store; `None` for a store it owns alone.
    pub fn feed_status(&self) -> Option<FeedStatus> {
        let feed = self.store.feed()?;
        let following = self.following.lock().unwrap_or_else(PoisonError::into_inner);
        let position = feed.position();
        Some(FeedStatus {
            position,
            head: following.head.max(position),
            lag: following.caught_up_at.elapsed(),
            error: following.error.clone(),
        })
    }

    /// Applies every change committed before the call; returns at once for a store without a
    /// feed.
    pub fn catch_up(&self) -> Result<(), Error> {
        let Some(feed) = self.store.feed() else {
            return Ok(());
        };
        let started = Instant::now();
        let result = self.catch_up_to_head(feed);
        let mut following = self.following.lock().unwrap_or_else(PoisonError::into_inner);
        match &result {
            Ok(head) => {
                following.head = following.head.max(*head);
                following.caught_up_at = started;
                following.error = None;
            }
            Err(error) => following.error = Some(error_chain(error)),
        }
        result.map(|_| ())
    }

    /// Applies changes until the position reaches the head read at the start; returns it.
    fn catch_up_to_head(&self, feed: &dyn ChangeFeed) -> Result<u64, Error> {
        let head = feed.head()?;
        {
            let mut following = self.following.lock().unwrap_or_else(PoisonError::into_inner);
            following.head = following.head.max(head);
        }
        let applied_from = feed.position();
        while feed.position() < head {
            let _writes = self.lock_writes();
            if !self.apply_next_changes(feed)? {
                break;
            }
        }
        if feed.position() > applied_from {
            // Caught up: what the changes added joins the tables, as at the end of a load
            // here, so that a replica following another's bulk load does not scan it.
            self.settle_indexes();
        }
        Ok(head)
    }

    /// Applies the next batch of changes past the feed's position; returns whether there was
    /// any. The caller holds the writer lock.
    pub(super) fn apply_next_changes(&self, feed: &dyn ChangeFeed) -> Result<bool, Error> {
        let changes = feed.changes_since(feed.position(), BATCH)?;
        let Some(last) = changes.last() else {
            return Ok(false);
        };
        self.apply_changes(feed, &changes)?;
        feed.set_position(last.seq);
        Ok(true)
    }

    /// Applies changes in order. Runs of added entries go to the index together.
    fn apply_changes(&self, feed: &dyn ChangeFeed, changes: &[Change]) -> Result<(), Error> {
        let mut added: HashMap<Algorithm, Vec<(HashValue, EntryKey)>> = HashMap::new();
        for change in changes {
            if let ChangeKind::EntryAdded(key, hash) = &change.kind {
                added.entry(hash.algorithm()).or_default().push((*hash, *key));
                continue;
            }
            self.insert_added(&mut added);
            match &change.kind {
                ChangeKind::BankCreated(id) | ChangeKind::BankChanged(id) => {
                    // The bank as it is now; if it is gone, its deletion follows in the feed.
                    if let Some(bank) = feed.bank(*id)? {
                        self.upsert_bank(bank);
                    }
                }
                ChangeKind::BankDeleted(id) => self.forget_bank(*id),
                ChangeKind::EntryRemoved(key, hash) => self.forget_entry(*key, hash),
                // Metadata lives in the store, read at match time: nothing held here changes.
                ChangeKind::EntryUpdated(..) | ChangeKind::EntryAdded(..) => {}
            }
        }
        self.insert_added(&mut added);
        Ok(())
    }

    /// Deletes the feed's changes older than `keep`, logging what it did; a failure is only
    /// logged, as the next round tries again.
    fn prune_feed(&self, keep: Duration) {
        let Some(feed) = self.store.feed() else {
            return;
        };
        match feed.prune(keep) {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned old changes from the shared store's feed"),
            Err(error) => tracing::warn!(error = %error, "cannot prune the shared store's feed"),
        }
    }

    fn insert_added(&self, added: &mut HashMap<Algorithm, Vec<(HashValue, EntryKey)>>) {
        for (algorithm, entries) in added.drain() {
            let inserted = self.index.get(algorithm).insert_many(&entries);
            if inserted != entries.len() {
                // Each (hash, bank) is unique in the store and applied once, so this means the
                // index and the store disagree.
                tracing::warn!(
                    ?algorithm,
                    applied = entries.len(),
                    inserted,
                    "the change feed added entries the index already held"
                );
            }
            let mut per_bank: HashMap<_, u64> = HashMap::new();
            for (_, key) in &entries {
                *per_bank.entry(key.bank).or_default() += 1;
            }
            for (bank, count) in per_bank {
                *self.entry_counts.entry(bank).or_insert(0) += count;
            }
        }
    }
}

/// How a replica follows its shared store.
#[derive(Clone, Copy, Debug)]
pub struct FollowConfig {
    /// Look for changes at least this often, in case a notification was lost.
    pub poll: Duration,
    /// Prune the feed's changes older than this (every replica does, at most every
    /// [`PRUNE_EVERY`]); `None` keeps them all.
    pub retention: Option<Duration>,
}

/// How often a replica prunes the feed, at most; sooner when the retention is shorter.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Starts a thread that keeps `matcher` following its store's changes, woken by the store's
/// notifications and at least every `config.poll`, and pruning old changes; `None` for a
/// store without a feed. A replica that finds changes it had yet to apply pruned (it stalled
/// for longer than the retention) loads a fresh snapshot in place and follows on from there.
/// The thread ends soon after the matcher is dropped.
pub fn follow(matcher: &Arc<Matcher>, config: FollowConfig) -> Option<JoinHandle<()>> {
    let mut listener = matcher.store.feed()?.listen();
    let matcher: Weak<Matcher> = Arc::downgrade(matcher);
    let prune_every = config.retention.map(|keep| keep.min(PRUNE_EVERY));
    let thread = std::thread::Builder::new()
        .name("feed-follower".into())
        .spawn(move || {
            let mut outage = Outage::default();
            let mut pruned_at: Option<Instant> = None;
            loop {
                let Some(strong) = matcher.upgrade() else {
                    return;
                };
                match strong.catch_up() {
                    Err(error @ Error::Store(StoreError::Pruned { .. })) => {
                        tracing::warn!(error = %error_chain(&error), "changes not yet applied here were pruned: loading a fresh snapshot");
                        match strong.load() {
                            Ok(()) => {
                                outage.failing = false;
                                tracing::info!(position = strong.store.feed().map_or(0, |f| f.position()), "following the shared store again from a fresh snapshot");
                                continue;
                            }
                            Err(error) => {
                                outage.failing = true;
                                tracing::warn!(error = %error_chain(&error), "cannot load a fresh snapshot; retrying");
                            }
                        }
                    }
                    result => outage.note(
                        &result,
                        "following the shared store again",
                        "cannot follow the shared store; retrying",
                    ),
                }
                if let (Some(keep), Some(every)) = (config.retention, prune_every)
                    && pruned_at.is_none_or(|at| at.elapsed() >= every)
                {
                    pruned_at = Some(Instant::now());
                    strong.prune_feed(keep);
                }
                drop(strong);
                if listener.wait(config.poll).is_err() {
                    // The listener reconnects on its next call; until then, poll.
                    std::thread::sleep(config.poll);
                }
            }
        });
    match thread {
        Ok(thread) => Some(thread),
        Err(error) => {
            tracing::error!(%error, "cannot start the change feed's follower");
            None
        }
    }
}
