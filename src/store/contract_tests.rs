//! The contract every [`Store`] keeps, run against each backend: the embedded store always,
//! PostgreSQL when `HASHSIEVE_TEST_DATABASE_URL` names a server (each run in a schema of its
//! own, dropped afterwards).

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::bank::{Action, Thresholds};

/// Opens (and reopens) one backend's store.
pub(crate) struct Backend {
    pub name: &'static str,
    open: Box<dyn Fn() -> Box<dyn Store>>,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(String, String)>,
    /// The URL of a PostgreSQL backend's schema.
    pub scoped_url: Option<String>,
}

impl Backend {
    pub fn open(&self) -> Box<dyn Store> {
        (self.open)()
    }

    fn embedded() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        Backend {
            name: "embedded",
            open: Box::new(move || Box::new(EmbeddedStore::open(&path).unwrap())),
            _dir: Some(dir),
            schema: None,
            scoped_url: None,
        }
    }

    /// A store in a fresh schema of the test database.
    pub fn postgres(url: &str) -> Backend {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let schema = format!(
            "hs_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut client = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .unwrap();
        let separator = if url.contains('?') { '&' } else { '?' };
        let scoped = format!("{url}{separator}options=-csearch_path%3D{schema}");
        Backend {
            name: "postgres",
            scoped_url: Some(scoped.clone()),
            open: Box::new(move || Box::new(PostgresStore::open(&scoped).unwrap())),
            _dir: None,
            schema: Some((url.to_string(), schema)),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some((url, schema)) = &self.schema
            && let Ok(mut client) = ::postgres::Client::connect(url, ::postgres::NoTls)
        {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}

/// The test database's URL, or `None` (and a note that the PostgreSQL runs were skipped).
pub(crate) fn test_database_url() -> Option<String> {
    let url = std::env::var("HASHSIEVE_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!("HASHSIEVE_TEST_DATABASE_URL is unset: the PostgreSQL store tests were skipped");
    }
    url
}

/// Runs `test` against a fresh store of every available backend.
fn for_each_backend(test: fn(&Backend)) {
    let mut backends = vec![Backend::embedded()];
    backends.extend(test_database_url().map(|url| Backend::postgres(&url)));
    for backend in &backends {
        // Names the backend in the output of a failing test.
        eprintln!("on the {} store", backend.name);
        test(backend);
    }
}

fn settings() -> BankSettings {
    BankSettings {
        action: Action::Block,
        thresholds: Thresholds::default(),
        labels: vec!["tvec".into()],
        description: String::new(),
        enabled: true,
        min_quality: 40,
    }
}

fn entry(hex_byte: u8, id: &str) -> NewEntry {
    let hash = HashValue::from_bytes(Algorithm::Pdq, &[hex_byte; 32]).unwrap();
    NewEntry::new(hash, id, vec!["a".into()], "test", "", 1000).unwrap()
}

fn all_entries(store: &dyn Store, bank: BankId) -> Vec<Entry> {
    let mut out = Vec::new();
    store
        .for_each_entry(bank, None, &mut |entry| {
            out.push(entry);
            ControlFlow::Continue(())
        })
        .unwrap();
    out
}

fn add(store: &dyn Store, bank: BankId, entries: &[NewEntry]) -> Vec<EntryKey> {
    let new: Vec<&NewEntry> = entries.iter().collect();
    store.write_entries(bank, &new, &[], true).unwrap()
}

fn open_bank(store: &dyn Store, name: &str) -> Bank {
    store
        .create_bank(BankName::new(name).unwrap(), settings(), 5)
        .unwrap()
}

#[test]
fn banks_and_entries_survive_reopening_in_the_order_added() {
    for_each_backend(contract::banks_and_entries_survive_reopening_in_the_order_added);
}

#[test]
fn replacing_updates_metadata_and_keeps_the_first_time() {
    for_each_backend(contract::replacing_updates_metadata_and_keeps_the_first_time);
}

#[test]
fn replacing_a_missing_entry_is_reported_as_corruption() {
    for_each_backend(contract::replacing_a_missing_entry_is_reported_as_corruption);
}

#[test]
fn removal_by_sequence_number_and_id_and_bank_deletion() {
    for_each_backend(contract::removal_by_sequence_number_and_id_and_bank_deletion);
}

#[test]
fn sequence_numbers_are_never_reused() {
    for_each_backend(contract::sequence_numbers_are_never_reused);
}

#[test]
fn duplicate_bank_names_are_refused_and_ids_never_reused() {
    for_each_backend(contract::duplicate_bank_names_are_refused_and_ids_never_reused);
}

#[test]
fn the_match_log_keeps_the_newest_records_and_counts_survive_reopening() {
    for_each_backend(contract::the_match_log_keeps_the_newest_records_and_counts_survive_reopening);
}

fn match_record(bank: &Bank, at: i64, entry_id: &str) -> MatchRecord {
    use crate::hash::{Transform, View};
    MatchRecord {
        sequence: 0,
        bank: bank.id,
        matched_at_ms: at,
        verdict: crate::verdict::Verdict::Review,
        found: crate::verdict::Match {
            bank: bank.name.clone(),
            entry_id: entry_id.into(),
            hash: entry(7, "").hash,
            distance: 12,
            labels: vec!["tvec".into(), "video".into()],
            action: Action::Review,
            source: "gifct".into(),
            view: View::Trimmed,
            transform: Transform::FlipX,
            low_quality: true,
        },
    }
}

mod contract {
    use super::*;

    pub fn banks_and_entries_survive_reopening_in_the_order_added(backend: &Backend) {
        let (bank, keys) = {
            let store = backend.open();
            let bank = open_bank(&*store, "TVEC");
            let keys = add(&*store, bank.id, &[entry(2, "x"), entry(1, "y")]);
            (bank, keys)
        };
        assert_eq!(keys.len(), 2);
        assert!(keys[0].seq < keys[1].seq);
        let store = backend.open();
        assert_eq!(store.load_banks().unwrap(), vec![(bank.clone(), 2)]);
        let entries = all_entries(&*store, bank.id);
        let ids: Vec<&str> = entries.iter().map(|e| e.meta.id.as_str()).collect();
        assert_eq!(ids, ["x", "y"]);
        assert_eq!(entries[0], Entry::from(entry(2, "x")));
        assert_eq!(
            store.entries(&keys).unwrap(),
            vec![Some(Entry::from(entry(2, "x"))), Some(Entry::from(entry(1, "y")))]
        );
        let mut visited = Vec::new();
        store
            .for_each_key(&mut |key, hash| visited.push((key, hash)))
            .unwrap();
        assert_eq!(
            visited,
            vec![(keys[0], entry(2, "").hash), (keys[1], entry(1, "").hash)]
        );
    }

    pub fn replacing_updates_metadata_and_keeps_the_first_time(backend: &Backend) {
        let store = backend.open();
        let bank = open_bank(&*store, "B");
        let keys = add(&*store, bank.id, &[entry(1, "old")]);
        let mut again = entry(1, "new");
        again.meta.added_at_ms = 9999;
        let written = store
            .write_entries(bank.id, &[], &[(keys[0], &again)], true)
            .unwrap();
        assert!(written.is_empty());
        let entries = all_entries(&*store, bank.id);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].meta.id, "new");
        assert_eq!(entries[0].meta.added_at_ms, 1000);
        assert_eq!(store.load_banks().unwrap()[0].1, 1);
        // The old id no longer finds the entry; the new one does.
        assert!(
            store
                .remove_entries(bank.id, &[], &["old".into()])
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.remove_entries(bank.id, &[], &["new".into()]).unwrap(),
            vec![(keys[0], again.hash)]
        );
        assert_eq!(store.load_banks().unwrap()[0].1, 0);
    }

    pub fn replacing_a_missing_entry_is_reported_as_corruption(backend: &Backend) {
        let store = backend.open();
        let bank = open_bank(&*store, "B");
        let missing = EntryKey {
            bank: bank.id,
            seq: 42,
        };
        assert!(matches!(
            store.write_entries(bank.id, &[], &[(missing, &entry(1, ""))], true),
            Err(StoreError::Corrupt { .. })
        ));
    }

    pub fn removal_by_sequence_number_and_id_and_bank_deletion(backend: &Backend) {
        let store = backend.open();
        let a = open_bank(&*store, "A");
        let b = open_bank(&*store, "B");
        assert_ne!(a.id, b.id);
        let keys = add(&*store, a.id, &[entry(1, "m"), entry(2, "m"), entry(3, "n")]);
        add(&*store, b.id, &[entry(1, "m")]);

        let removed = store.remove_entries(a.id, &[], &["m".into()]).unwrap();
        assert_eq!(
            removed,
            vec![(keys[0], entry(1, "").hash), (keys[1], entry(2, "").hash)]
        );
        // A sequence number given twice, or one already removed, removes nothing more.
        let third = (keys[2], entry(3, "").hash);
        assert_eq!(
            store
                .remove_entries(a.id, &[keys[2].seq, keys[2].seq, keys[0].seq], &[])
                .unwrap(),
            vec![third]
        );
        assert!(all_entries(&*store, a.id).is_empty());
        assert_eq!(store.entries(&keys).unwrap(), vec![None, None, None]);
        // Bank B is untouched by A's removals.
        assert_eq!(all_entries(&*store, b.id).len(), 1);

        assert_eq!(store.delete_bank(b.id).unwrap(), 1);
        assert!(all_entries(&*store, b.id).is_empty());
        assert_eq!(store.load_banks().unwrap().len(), 1);
        let mut remaining = 0;
        store.for_each_key(&mut |_, _| remaining += 1).unwrap();
        assert_eq!(remaining, 0);
    }

    pub fn sequence_numbers_are_never_reused(backend: &Backend) {
        let first = {
            let store = backend.open();
            let bank = open_bank(&*store, "A");
            let first = add(&*store, bank.id, &[entry(1, "")])[0];
            store.remove_entries(bank.id, &[first.seq], &[]).unwrap();
            first
        };
        let store = backend.open();
        let second = add(&*store, first.bank, &[entry(1, "")])[0];
        assert!(second.seq > first.seq);
    }

    pub fn duplicate_bank_names_are_refused_and_ids_never_reused(backend: &Backend) {
        let store = backend.open();
        let first = open_bank(&*store, "A");
        assert!(matches!(
            store.create_bank(BankName::new("A").unwrap(), settings(), 0),
            Err(StoreError::BankExists(_))
        ));
        store.delete_bank(first.id).unwrap();
        let second = open_bank(&*store, "A");
        assert!(second.id > first.id);
    }

    pub fn the_match_log_keeps_the_newest_records_and_counts_survive_reopening(backend: &Backend) {
        let (a, b, gone) = {
            let store = backend.open();
            let (a, b, gone) = (
                open_bank(&*store, "A"),
                open_bank(&*store, "B"),
                open_bank(&*store, "GONE"),
            );
            let count = |checks, last_match_ms| MatchCount {
                checks,
                last_match_ms,
            };
            let first = [match_record(&a, 10, "a1"), match_record(&b, 11, "b1")];
            store
                .record_matches(&first, &[(a.id, count(1, 10)), (b.id, count(1, 11))], 3)
                .unwrap();
            store.delete_bank(gone.id).unwrap();
            let second = [
                match_record(&a, 20, "a2"),
                match_record(&a, 21, "a3"),
                match_record(&gone, 22, "gone"),
            ];
            store
                .record_matches(&second, &[(a.id, count(2, 21)), (gone.id, count(1, 22))], 3)
                .unwrap();
            (a, b, gone)
        };
        let store = backend.open();
        let ids = |records: Vec<MatchRecord>| -> Vec<String> {
            records.into_iter().map(|r| r.found.entry_id).collect()
        };
        // Five records, three kept: the newest, newest first, whatever the bank.
        assert_eq!(ids(store.recent_matches(None, 10).unwrap()), ["gone", "a3", "a2"]);
        assert_eq!(ids(store.recent_matches(None, 2).unwrap()), ["gone", "a3"]);
        assert_eq!(ids(store.recent_matches(Some(a.id), 10).unwrap()), ["a3", "a2"]);
        assert!(store.recent_matches(Some(b.id), 10).unwrap().is_empty());
        let newest = store.recent_matches(Some(a.id), 1).unwrap();
        assert_eq!(
            newest,
            vec![MatchRecord {
                sequence: newest[0].sequence,
                ..match_record(&a, 21, "a3")
            }]
        );
        // Sequence numbers follow the order records were written.
        let sequences: Vec<u64> = store
            .recent_matches(None, 10)
            .unwrap()
            .iter()
            .map(|r| r.sequence)
            .collect();
        assert!(sequences.windows(2).all(|w| w[0] > w[1]), "{sequences:?}");
        // Counts of a deleted bank are not kept; the others add up.
        let counts = store.match_counts().unwrap();
        assert_eq!(
            counts.get(&a.id),
            Some(&MatchCount {
                checks: 3,
                last_match_ms: 21
            })
        );
        assert_eq!(
            counts.get(&b.id),
            Some(&MatchCount {
                checks: 1,
                last_match_ms: 11
            })
        );
        assert_eq!(counts.get(&gone.id), None);
        store.delete_bank(b.id).unwrap();
        assert_eq!(store.match_counts().unwrap().get(&b.id), None);
    }
}

/// The change feed of a shared store: two processes' views of one database.
#[test]
fn the_feed_orders_every_change_and_refuses_writes_decided_on_a_stale_view() {
    let Some(url) = test_database_url() else {
        return;
    };
    let backend = Backend::postgres(&url);
    let (writer, follower) = (backend.open(), backend.open());
    let (writer_feed, follower_feed) = (writer.feed().unwrap(), follower.feed().unwrap());
    assert_eq!(follower_feed.head().unwrap(), 0);

    let bank = open_bank(writer.as_ref(), "TVEC");
    let keys = add(writer.as_ref(), bank.id, &[entry(1, "a"), entry(2, "b")]);
    writer.remove_entries(bank.id, &[keys[0].seq], &[]).unwrap();
    let mut changed = bank.clone();
    changed.settings.enabled = false;
    writer.update_bank(&changed).unwrap();
    // A write moves its own process's position to its last change.
    let head = follower_feed.head().unwrap();
    assert_eq!(writer_feed.position(), head);

    let changes = follower_feed.changes_since(0, 100).unwrap();
    let kinds: Vec<ChangeKind> = changes.iter().map(|c| c.kind.clone()).collect();
    let hash = |byte| HashValue::from_bytes(Algorithm::Pdq, &[byte; 32]).unwrap();
    assert_eq!(
        kinds,
        [
            ChangeKind::BankCreated(bank.id),
            ChangeKind::EntryAdded(keys[0], hash(1)),
            ChangeKind::EntryAdded(keys[1], hash(2)),
            ChangeKind::EntryRemoved(keys[0], hash(1)),
            ChangeKind::BankChanged(bank.id),
        ]
    );
    assert!(changes.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    assert_eq!(changes.last().unwrap().seq, head);
    assert_eq!(
        follower_feed.changes_since(changes[1].seq, 2).unwrap(),
        changes[2..4]
    );
    assert!(!follower_feed.bank(bank.id).unwrap().unwrap().settings.enabled);

    // The follower opened before those writes: a write of its own is refused until it has
    // applied them, and nothing of the refused write is stored.
    let refused = follower.write_entries(bank.id, &[&entry(3, "c")], &[], true);
    assert!(matches!(refused, Err(StoreError::Behind)), "{refused:?}");
    assert_eq!(all_entries(follower.as_ref(), bank.id).len(), 1);
    follower_feed.set_position(head);
    follower
        .write_entries(bank.id, &[&entry(3, "c")], &[], true)
        .unwrap();
    assert_eq!(all_entries(follower.as_ref(), bank.id).len(), 2);

    // A snapshot load sets the position to the last change it reflects.
    let fresh = backend.open();
    let mut banks_loaded = Vec::new();
    let mut keys_loaded = 0;
    fresh
        .load(&mut |banks| banks_loaded = banks, &mut |_, _| keys_loaded += 1)
        .unwrap();
    assert_eq!((banks_loaded.len(), keys_loaded), (1, 2));
    assert_eq!(fresh.feed().unwrap().position(), follower_feed.head().unwrap());
    assert!(
        writer
            .delete_bank(bank.id)
            .is_err_and(|e| matches!(e, StoreError::Behind))
    );
}

#[test]
fn pruning_keeps_the_head_and_refuses_followers_behind_it() {
    let Some(url) = test_database_url() else {
        return;
    };
    let backend = Backend::postgres(&url);
    let (writer, behind) = (backend.open(), backend.open());
    let feed = writer.feed().unwrap();
    let bank = open_bank(writer.as_ref(), "TVEC");
    add(
        writer.as_ref(),
        bank.id,
        &[entry(1, "a"), entry(2, "b"), entry(3, "c")],
    );
    let head = feed.head().unwrap();
    let all = feed.changes_since(0, 100).unwrap();
    assert_eq!(all.len(), 4);

    // Nothing is older than an hour; with no retention, all but the head goes.
    assert_eq!(feed.prune(Duration::from_secs(3600)).unwrap(), 0);
    assert_eq!(feed.prune(Duration::ZERO).unwrap(), 3);
    assert_eq!(feed.prune(Duration::ZERO).unwrap(), 0, "the head always stays");
    assert_eq!(feed.head().unwrap(), head);

    // A follower that applied the pruned changes reads on; one that did not is refused, never
    // handed the rest as if nothing were missing.
    let horizon = all[2].seq;
    assert_eq!(feed.changes_since(horizon, 100).unwrap(), all[3..]);
    assert_eq!(feed.changes_since(head, 100).unwrap(), []);
    let refused = behind.feed().unwrap().changes_since(all[1].seq, 100);
    assert!(
        matches!(refused, Err(StoreError::Pruned { position, horizon: h }) if position == all[1].seq && h == horizon),
        "{refused:?}"
    );

    // Writes go on, and a fresh snapshot starts past the horizon.
    add(writer.as_ref(), bank.id, &[entry(4, "d")]);
    let fresh = backend.open();
    let mut loaded = 0;
    fresh.load(&mut |_| {}, &mut |_, _| loaded += 1).unwrap();
    assert_eq!(loaded, 4);
    let position = fresh.feed().unwrap().position();
    assert!(position > horizon);
    assert_eq!(fresh.feed().unwrap().changes_since(position, 100).unwrap(), []);
}

#[test]
fn pruning_in_small_batches_deletes_what_one_batch_would() {
    let Some(url) = test_database_url() else {
        return;
    };
    let backend = Backend::postgres(&url);
    let writer = backend.open();
    let bank = open_bank(writer.as_ref(), "TVEC");
    let entries: Vec<NewEntry> = (1..=9).map(|i| entry(i, &format!("e{i}"))).collect();
    add(writer.as_ref(), bank.id, &entries);
    let feed = writer.feed().unwrap();
    let all = feed.changes_since(0, 100).unwrap();
    assert_eq!(all.len(), 10);

    let store = PostgresStore::open(backend.scoped_url.as_deref().unwrap()).unwrap();
    assert_eq!(store.prune_in_batches(Duration::ZERO, 3).unwrap(), 9);
    assert_eq!(store.prune_in_batches(Duration::ZERO, 3).unwrap(), 0);
    assert_eq!(feed.changes_since(all[8].seq, 100).unwrap(), all[9..]);
    let refused = feed.changes_since(all[7].seq, 100);
    assert!(
        matches!(refused, Err(StoreError::Pruned { horizon, .. }) if horizon == all[8].seq),
        "{refused:?}"
    );
}
