use super::*;
use crate::bank::{Action, DEFAULT_MIN_QUALITY, Thresholds};

fn settings() -> BankSettings {
    BankSettings {
        action: Action::Block,
        thresholds: Thresholds::default(),
        labels: vec!["tvec".into()],
        description: String::new(),
        enabled: true,
        min_quality: 50,
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
            let old_bank = migrate::BankV2 {
                id: bank.id,
                name: bank.name.clone(),
                action: bank.settings.action,
                thresholds: bank.settings.thresholds,
                labels: bank.settings.labels.clone(),
                description: bank.settings.description.clone(),
                enabled: bank.settings.enabled,
                created_at_ms: bank.created_at_ms,
            };
            txn.open_table(BANKS)
                .unwrap()
                .insert(3, encode(&old_bank).as_slice())
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
    // Banks of versions 1 and 2 take the default minimum quality.
    assert_eq!(bank.settings.min_quality, DEFAULT_MIN_QUALITY);
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
