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
    let dir = tempfile::tempdir().unwrap();
    let (bank, keys) = {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let bank = open_bank(&store, "TVEC");
        let keys = add(&store, bank.id, &[entry(2, "x"), entry(1, "y")]);
        (bank, keys)
    };
    assert_eq!(keys.len(), 2);
    assert!(keys[0].seq < keys[1].seq);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.load_banks().unwrap(), vec![(bank.clone(), 2)]);
    let entries = all_entries(&store, bank.id);
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

#[test]
fn replacing_updates_metadata_and_keeps_the_first_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let bank = open_bank(&store, "B");
    let keys = add(&store, bank.id, &[entry(1, "old")]);
    let mut again = entry(1, "new");
    again.meta.added_at_ms = 9999;
    let written = store
        .write_entries(bank.id, &[], &[(keys[0], &again)], true)
        .unwrap();
    assert!(written.is_empty());
    let entries = all_entries(&store, bank.id);
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

#[test]
fn replacing_a_missing_entry_is_reported_as_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let bank = open_bank(&store, "B");
    let missing = EntryKey {
        bank: bank.id,
        seq: 42,
    };
    assert!(matches!(
        store.write_entries(bank.id, &[], &[(missing, &entry(1, ""))], true),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn removal_by_sequence_number_and_id_and_bank_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let a = open_bank(&store, "A");
    let b = open_bank(&store, "B");
    assert_ne!(a.id, b.id);
    let keys = add(&store, a.id, &[entry(1, "m"), entry(2, "m"), entry(3, "n")]);
    add(&store, b.id, &[entry(1, "m")]);

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
    assert!(all_entries(&store, a.id).is_empty());
    assert_eq!(store.entries(&keys).unwrap(), vec![None, None, None]);
    // Bank B is untouched by A's removals.
    assert_eq!(all_entries(&store, b.id).len(), 1);

    assert_eq!(store.delete_bank(b.id).unwrap(), 1);
    assert!(all_entries(&store, b.id).is_empty());
    assert_eq!(store.load_banks().unwrap().len(), 1);
    let mut remaining = 0;
    store.for_each_key(&mut |_, _| remaining += 1).unwrap();
    assert_eq!(remaining, 0);
}

#[test]
fn sequence_numbers_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let bank = open_bank(&store, "A");
        let first = add(&store, bank.id, &[entry(1, "")])[0];
        store.remove_entries(bank.id, &[first.seq], &[]).unwrap();
        first
    };
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let second = add(&store, first.bank, &[entry(1, "")])[0];
    assert!(second.seq > first.seq);
}

#[test]
fn duplicate_bank_names_are_refused_and_ids_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let first = open_bank(&store, "A");
    assert!(matches!(
        store.create_bank(BankName::new("A").unwrap(), settings(), 0),
        Err(StoreError::BankExists(_))
    ));
    store.delete_bank(first.id).unwrap();
    let second = open_bank(&store, "A");
    assert!(second.id > first.id);
}

#[test]
fn a_durable_commit_makes_earlier_non_durable_ones_durable() {
    let dir = tempfile::tempdir().unwrap();
    let bank = {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let bank = open_bank(&store, "A");
        let first = entry(7, "");
        store.write_entries(bank.id, &[&first], &[], false).unwrap();
        add(&store, bank.id, &[entry(8, "")]);
        bank
    };
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(all_entries(&store, bank.id).len(), 2);
}

#[test]
fn a_store_of_another_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(EmbeddedStore::open(dir.path()).unwrap());
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
        EmbeddedStore::open(dir.path()),
        Err(StoreError::SchemaVersion { found: 99, .. })
    ));
}

#[test]
fn a_version_1_store_is_migrated_on_open() {
    use migrate::v1;
    let dir = tempfile::tempdir().unwrap();
    let bank = Bank {
        id: BankId(3),
        name: BankName::new("OLD").unwrap(),
        settings: settings(),
        created_at_ms: 1,
    };
    let entries = [entry(9, "p"), entry(4, "q")];
    {
        // What version 1 wrote: hash-keyed entries, an id table, no sequence counter.
        let db = Database::create(dir.path().join(DATABASE_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            meta.insert(META_SCHEMA_VERSION, 1u32.to_be_bytes().as_slice())
                .unwrap();
            meta.insert(META_HASHER_CONFIG, imghash::describe_configuration().as_bytes())
                .unwrap();
            meta.insert(META_NEXT_BANK_ID, 4u32.to_be_bytes().as_slice())
                .unwrap();
            txn.open_table(BANKS)
                .unwrap()
                .insert(3, encode(&bank).as_slice())
                .unwrap();
            txn.open_table(COUNTS).unwrap().insert(3, 2).unwrap();
            let mut old = txn.open_table(v1::ENTRIES).unwrap();
            let mut ids = txn.open_multimap_table(v1::ENTRY_IDS).unwrap();
            for entry in &entries {
                let key = v1::key(bank.id, &entry.hash);
                old.insert(key.as_slice(), encode(&entry.meta).as_slice())
                    .unwrap();
                ids.insert(b"x".as_slice(), key.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.load_banks().unwrap(), vec![(bank.clone(), 2)]);
    // Version 1 kept entries in hash order.
    let migrated = all_entries(&store, bank.id);
    assert_eq!(
        migrated,
        vec![Entry::from(entries[1].clone()), Entry::from(entries[0].clone())]
    );
    // New entries continue after the migrated ones.
    let next = add(&store, bank.id, &[entry(5, "r")])[0];
    assert_eq!(next.seq, 2);
    drop(store);
    // Reopening finds the current version: nothing is migrated twice.
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(all_entries(&store, bank.id).len(), 3);
}
