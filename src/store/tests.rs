use super::*;
use crate::bank::{Action, Thresholds};

fn settings() -> BankSettings {
    BankSettings {
        action: Action::Block,
        thresholds: Thresholds::default(),
        labels: vec!["tvec".into()],
        description: String::new(),
        enabled: true,
    }
}

fn entry(hex_byte: u8, id: &str) -> NewEntry {
    let hash = HashValue::from_bytes(Algorithm::Pdq, &[hex_byte; 32]).unwrap();
    NewEntry::new(hash, id, vec!["a".into()], "test", "", 1000).unwrap()
}

fn all_entries(store: &Store, bank: BankId) -> Vec<Entry> {
    let mut out = Vec::new();
    store
        .for_each_entry(bank, None, |entry| {
            out.push(entry);
            ControlFlow::Continue(())
        })
        .unwrap();
    out
}

#[test]
fn banks_and_entries_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let bank = {
        let store = Store::open(dir.path()).unwrap();
        let bank = store
            .create_bank(BankName::new("TVEC").unwrap(), settings(), 5)
            .unwrap();
        let outcome = store
            .upsert_entries(bank.id, &[entry(1, "x"), entry(2, "y")], true)
            .unwrap();
        assert_eq!(outcome.added.len(), 2);
        bank
    };
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.load_banks().unwrap(), vec![(bank.clone(), 2)]);
    let entries = all_entries(&store, bank.id);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].meta.id, "x");
}

#[test]
fn readding_updates_metadata_and_keeps_the_first_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bank = store
        .create_bank(BankName::new("B").unwrap(), settings(), 0)
        .unwrap();
    store.upsert_entries(bank.id, &[entry(1, "old")], true).unwrap();
    let mut again = entry(1, "new");
    again.meta.added_at_ms = 9999;
    let outcome = store.upsert_entries(bank.id, &[again], true).unwrap();
    assert_eq!(
        outcome,
        UpsertOutcome {
            added: vec![],
            updated: 1
        }
    );
    let entries = all_entries(&store, bank.id);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].meta.id, "new");
    assert_eq!(entries[0].meta.added_at_ms, 1000);
    // The old id no longer leads to the entry; the new one does.
    assert!(
        store
            .remove_entries(bank.id, &[], &["old".into()])
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.remove_entries(bank.id, &[], &["new".into()]).unwrap().len(),
        1
    );
    assert_eq!(store.load_banks().unwrap()[0].1, 0);
}

#[test]
fn removal_by_hash_and_id_and_bank_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a = store
        .create_bank(BankName::new("A").unwrap(), settings(), 0)
        .unwrap();
    let b = store
        .create_bank(BankName::new("B").unwrap(), settings(), 0)
        .unwrap();
    assert_ne!(a.id, b.id);
    store
        .upsert_entries(a.id, &[entry(1, "m"), entry(2, "m"), entry(3, "n")], true)
        .unwrap();
    store.upsert_entries(b.id, &[entry(1, "m")], true).unwrap();

    let removed = store.remove_entries(a.id, &[], &["m".into()]).unwrap();
    assert_eq!(removed.len(), 2);
    let third = entry(3, "").hash;
    assert_eq!(
        store.remove_entries(a.id, &[third, third], &[]).unwrap(),
        vec![third]
    );
    assert!(all_entries(&store, a.id).is_empty());
    // Bank B is untouched by A's removals.
    assert_eq!(all_entries(&store, b.id).len(), 1);

    assert_eq!(store.delete_bank(b.id).unwrap(), 1);
    assert!(all_entries(&store, b.id).is_empty());
    assert_eq!(store.load_banks().unwrap().len(), 1);
    let mut remaining = 0;
    store.for_each_key(|_, _| remaining += 1).unwrap();
    assert_eq!(remaining, 0);
}

#[test]
fn duplicate_bank_names_are_refused_and_ids_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = store
        .create_bank(BankName::new("A").unwrap(), settings(), 0)
        .unwrap();
    assert!(matches!(
        store.create_bank(BankName::new("A").unwrap(), settings(), 0),
        Err(StoreError::BankExists(_))
    ));
    store.delete_bank(first.id).unwrap();
    let second = store
        .create_bank(BankName::new("A").unwrap(), settings(), 0)
        .unwrap();
    assert!(second.id > first.id);
}

#[test]
fn non_durable_batches_are_readable_and_sync_commits_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bank = store
        .create_bank(BankName::new("A").unwrap(), settings(), 0)
        .unwrap();
    store.upsert_entries(bank.id, &[entry(7, "")], false).unwrap();
    store.sync().unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(all_entries(&store, bank.id).len(), 1);
}

#[test]
fn a_store_of_another_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    {
        let db = Database::create(dir.path().join(DATABASE_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(META_SCHEMA_VERSION, 99u32.to_be_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::SchemaVersion { found: 99, .. })
    ));
}
