//! The matcher: banks, their entries in the index, and checks against them.
//!
//! Synchronous and transport-agnostic: the gRPC layer calls it from blocking threads, the
//! tests call it directly. Writes go to the store first and to the index only once committed,
//! under one writer lock, so the index always equals the store's committed state and a
//! concurrent check never sees an entry that a crash could lose.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use dashmap::DashMap;

use crate::bank::{Bank, BankId, BankName, BankSettings, BankUpdate, Entry, EntryKey, NewEntry};
use crate::error::Error;
use crate::hash::decode::DecodeLimits;
use crate::hash::{
    Algorithm, ComputedHash, DerivedPictures, HashOptions, HashValue, ImageHashes, Transform, View,
    hash_image,
};
use crate::index::{IndexHit, IndexSet};
use crate::store::{EmbeddedStore, MatchRecord, PostgresStore, Store, StoreError};
use crate::verdict::{Match, Verdict, decide, sort_matches};

/// Settings of the matcher.
#[derive(Clone, Debug)]
pub struct MatcherConfig {
    pub data_dir: PathBuf,
    pub decode_limits: DecodeLimits,
    /// Most matches listed in one response (the verdict always weighs them all).
    pub max_matches: usize,
    /// The store's page cache, in bytes.
    pub store_cache_bytes: usize,
    /// A `postgres://` URL: keep banks and entries in that shared database instead of the
    /// embedded store in `data_dir`.
    pub postgres_url: Option<String>,
    /// Matches the store's match log keeps (the newest; older ones are deleted).
    pub match_log_keep: u64,
}

impl MatcherConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        MatcherConfig {
            data_dir: data_dir.into(),
            decode_limits: DecodeLimits::default(),
            max_matches: 1000,
            store_cache_bytes: crate::store::DEFAULT_CACHE_BYTES,
            postgres_url: None,
            match_log_keep: DEFAULT_MATCH_LOG_KEEP,
        }
    }
}

/// Default of [`MatcherConfig::match_log_keep`]: at about 300 bytes a match, 30 MB of store.
pub const DEFAULT_MATCH_LOG_KEEP: u64 = 100_000;

/// A bank with its live counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankView {
    pub bank: Bank,
    pub entry_count: u64,
    /// Checks that matched it, on every process sharing the store, since it was created (as
    /// this process last read the store's counts, which it does every few seconds).
    pub match_count: u64,
    pub last_match_ms: Option<i64>,
    /// Checks that matched it in this process since it started: what metrics count, so that
    /// summing over replicas counts each check once.
    pub matches_here: u64,
}

/// The answer to a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOutcome {
    pub verdict: Verdict,
    pub matches: Vec<Match>,
    pub hashes: Vec<ComputedHash>,
}

/// A check of image bytes.
#[derive(Clone, Debug, Default)]
pub struct ImageCheck {
    /// Only these banks; all enabled banks when empty.
    pub banks: Vec<BankName>,
    /// Only these algorithms; when empty PDQ, MD5, SHA-256 and every 64-bit algorithm that
    /// some bank holds entries of.
    pub algorithms: Vec<Algorithm>,
    /// Also match PDQ's dihedral variants (mirrored and rotated copies).
    pub dihedral: bool,
    /// Also match the PDQ of the picture inside the image's margins (borders, letterbox bars,
    /// caption bands, a screenshot's frame), when it has any.
    pub trim: bool,
    /// Also match the PDQ of the image's overlay windows (and of the trimmed picture's): a
    /// caption, logo or text over an edge or a corner, or a meme's top and bottom captions,
    /// then hide no match against banks that store sub-windows. Windows under a bank's
    /// minimum quality never match it.
    pub windows: bool,
}

/// Metadata for the entries `add_image` creates.
#[derive(Clone, Debug, Default)]
pub struct ImageEntry {
    /// Default PDQ, MD5 and SHA-256.
    pub algorithms: Vec<Algorithm>,
    pub id: String,
    pub labels: Vec<String>,
    pub source: String,
    pub note: String,
    pub allow_low_quality: bool,
    /// Also store the PDQ of the picture inside the image's margins, when it has margins, so
    /// uploads checked with [`ImageCheck::trim`] match it: trimming an upload also trims the
    /// flat edges the picture itself has (a clear sky, a studio backdrop).
    pub trim: bool,
    /// Also store the PDQ of these pictures derived from the image.
    pub derived: DerivedPictures,
}

/// Counts of an add.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddOutcome {
    pub added: u64,
    pub updated: u64,
}

/// Most matches [`Matcher::recent_matches`] lists at once.
pub const RECENT_MATCHES: usize = 1000;

/// The banks as one immutable snapshot, swapped whole on change, so a check reads a
/// consistent set without holding a lock.
#[derive(Default)]
struct Catalog {
    by_name: HashMap<BankName, Arc<Bank>>,
    by_id: HashMap<BankId, Arc<Bank>>,
}

impl Catalog {
    fn from_banks(banks: impl IntoIterator<Item = Bank>) -> Self {
        let mut catalog = Catalog::default();
        for bank in banks {
            let bank = Arc::new(bank);
            catalog.by_name.insert(bank.name.clone(), bank.clone());
            catalog.by_id.insert(bank.id, bank);
        }
        catalog
    }

    fn get(&self, name: &BankName) -> Result<&Arc<Bank>, Error> {
        self.by_name
            .get(name)
            .ok_or_else(|| Error::BankNotFound(name.to_string()))
    }
}

/// One consistent view of the store: its banks with their entry counts, and an index of
/// their entries.
struct Snapshot {
    banks: Vec<(Bank, u64)>,
    index: IndexSet,
}

impl Snapshot {
    fn read(store: &dyn Store) -> Result<Snapshot, Error> {
        const BATCH: usize = 65_536;
        let index = IndexSet::default();
        let mut all_banks = Vec::new();
        let mut batches: HashMap<Algorithm, Vec<(HashValue, EntryKey)>> = HashMap::new();
        store.load(
            &mut |banks| {
                // Room for every entry in each engine, as the store does not count them by
                // algorithm: what an engine does not fill is address space, never touched, so
                // never resident.
                let stored: u64 = banks.iter().map(|(_, count)| count).sum();
                for algorithm in Algorithm::ALL {
                    index.get(algorithm).reserve(stored as usize);
                }
                all_banks = banks;
            },
            &mut |key, hash| {
                let batch = batches.entry(hash.algorithm()).or_default();
                batch.push((hash, key));
                if batch.len() >= BATCH {
                    index.get(hash.algorithm()).load_distinct(batch);
                    batch.clear();
                }
            },
        )?;
        for (algorithm, batch) in batches {
            index.get(algorithm).load_distinct(&batch);
        }
        for algorithm in Algorithm::ALL {
            index.get(algorithm).settle();
        }
        Ok(Snapshot {
            banks: all_banks,
            index,
        })
    }
}

pub struct Matcher {
    config: MatcherConfig,
    store: Box<dyn Store>,
    index: IndexSet,
    catalog: RwLock<Arc<Catalog>>,
    entry_counts: DashMap<BankId, u64>,
    /// Checks that matched each bank in this process (for metrics).
    matches_here: DashMap<BankId, u64>,
    /// Matches on their way to the store's match log, and the banks' match counts.
    match_log: MatchLog,
    /// Serialises writes, and the applying of a shared store's changes, so the index applies
    /// them in the store's commit order.
    write_lock: Mutex<()>,
    /// How closely this process follows a shared store's changes.
    following: Mutex<follow::Following>,
}

impl Matcher {
    /// Whether the store answers without a network round trip (see [`Store::is_local`]).
    pub fn store_is_local(&self) -> bool {
        self.store.is_local()
    }

    /// Opens the store and rebuilds the index from it.
    pub fn open(config: MatcherConfig) -> Result<Matcher, Error> {
        let store: Box<dyn Store> = match &config.postgres_url {
            Some(url) => Box::new(PostgresStore::open(url)?),
            None => Box::new(EmbeddedStore::open_with_cache(
                &config.data_dir,
                config.store_cache_bytes,
            )?),
        };
        let matcher = Matcher {
            catalog: RwLock::new(Arc::new(Catalog::default())),
            match_log: MatchLog::new(config.match_log_keep),
            config,
            store,
            index: IndexSet::default(),
            entry_counts: DashMap::new(),
            matches_here: DashMap::new(),
            write_lock: Mutex::new(()),
            following: Mutex::new(follow::Following::new()),
        };
        matcher.load()?;
        Ok(matcher)
    }

    /// Loads the banks and rebuilds the index from one snapshot of the store: at start, and
    /// again for a replica whose unapplied changes were pruned from the shared store's feed,
    /// which it can no longer follow change by change. Local writes wait meanwhile; checks go
    /// on against the old view until the new one takes its place, the bank list first, then
    /// each algorithm's index. Memory holds both indexes for that moment.
    fn load(&self) -> Result<(), Error> {
        let _writes = self.lock_writes();
        let snapshot = Snapshot::read(self.store.as_ref())?;
        self.install(snapshot);
        Ok(())
    }

    fn install(&self, snapshot: Snapshot) {
        let ids: std::collections::HashSet<BankId> = snapshot.banks.iter().map(|(bank, _)| bank.id).collect();
        self.entry_counts.retain(|id, _| ids.contains(id));
        for (bank, count) in &snapshot.banks {
            self.entry_counts.insert(bank.id, *count);
        }
        self.matches_here.retain(|id, _| ids.contains(id));
        self.replace_catalog(|all| *all = snapshot.banks.into_iter().map(|(bank, _)| bank).collect());
        self.index.replace_with(snapshot.index);
        let total: usize = Algorithm::ALL.iter().map(|a| self.index.get(*a).len()).sum();
        tracing::info!(entries = total, "index rebuilt from store");
    }

    pub fn config(&self) -> &MatcherConfig {
        &self.config
    }

    fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn lock_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a write under the writer lock. A shared store refuses a write decided on a stale
    /// view, when another replica wrote first: this one applies that replica's changes, then
    /// decides and tries the write again.
    fn write<T>(&self, mut attempt: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
        /// Beyond this, other replicas are writing faster than this one can catch up.
        const ATTEMPTS: usize = 16;
        let _writes = self.lock_writes();
        for _ in 1..ATTEMPTS {
            let result = attempt();
            let Some(feed) = self.store.feed() else {
                return result;
            };
            match result {
                Err(Error::Store(StoreError::Behind)) => while self.apply_next_changes(feed)? {},
                // The bank may have been created or deleted through another replica a moment
                // ago: decide again if this one had not applied that yet.
                Err(Error::BankNotFound(_) | Error::BankExists(_)) if self.apply_next_changes(feed)? => {
                    while self.apply_next_changes(feed)? {}
                }
                result => return result,
            }
        }
        attempt()
    }

    fn replace_catalog(&self, change: impl FnOnce(&mut Vec<Bank>)) {
        let mut guard = self.catalog.write().unwrap_or_else(PoisonError::into_inner);
        let mut banks: Vec<Bank> = guard.by_id.values().map(|bank| (**bank).clone()).collect();
        change(&mut banks);
        *guard = Arc::new(Catalog::from_banks(banks));
    }

    /// A bank by name. On a shared store a name not known here is looked up again once this
    /// replica has applied the others' latest changes: the bank may have been created through
    /// another one a moment ago.
    fn bank_named(&self, name: &BankName) -> Result<Arc<Bank>, Error> {
        if let Ok(bank) = self.catalog().get(name) {
            return Ok(bank.clone());
        }
        if self.store.feed().is_some() {
            self.catch_up()?;
        }
        self.catalog().get(name).cloned()
    }

    /// Puts a bank's record in the catalog, replacing its old one.
    fn upsert_bank(&self, bank: Bank) {
        self.entry_counts.entry(bank.id).or_insert(0);
        self.replace_catalog(|banks| match banks.iter_mut().find(|b| b.id == bank.id) {
            Some(slot) => *slot = bank,
            None => banks.push(bank),
        });
    }

    /// Takes a removed entry out of the index and its bank's count, if the index holds it at
    /// that key.
    fn forget_entry(&self, key: EntryKey, hash: &HashValue) {
        let index = self.index.get(hash.algorithm());
        if index.get(hash, key.bank) == Some(key)
            && index.remove(hash, key.bank)
            && let Some(mut count) = self.entry_counts.get_mut(&key.bank)
        {
            *count = count.saturating_sub(1);
        }
    }

    /// Drops a deleted bank and its entries.
    fn forget_bank(&self, id: BankId) {
        // Out of the catalog first, so no check resolves a hit of this bank while the index
        // is being cleaned.
        self.replace_catalog(|banks| banks.retain(|b| b.id != id));
        self.index.remove_bank(id);
        self.entry_counts.remove(&id);
        self.matches_here.remove(&id);
    }

    fn view(&self, bank: &Bank) -> BankView {
        let matches = self.match_log.count(bank.id);
        BankView {
            bank: bank.clone(),
            entry_count: self.entry_counts.get(&bank.id).map(|c| *c).unwrap_or(0),
            match_count: matches.checks,
            last_match_ms: (matches.checks > 0).then_some(matches.last_match_ms),
            matches_here: self.matches_here.get(&bank.id).map(|c| *c).unwrap_or(0),
        }
    }

    // ---- Banks ----

    pub fn create_bank(&self, name: BankName, settings: BankSettings) -> Result<BankView, Error> {
        settings.validate()?;
        self.write(|| {
            if self.catalog().by_name.contains_key(&name) {
                return Err(Error::BankExists(name.clone()));
            }
            let bank = self.store.create_bank(name.clone(), settings.clone(), now_ms())?;
            self.upsert_bank(bank.clone());
            Ok(self.view(&bank))
        })
    }

    pub fn bank(&self, name: &BankName) -> Result<BankView, Error> {
        Ok(self.view(self.catalog().get(name)?))
    }

    /// Every bank, by name.
    pub fn banks(&self) -> Vec<BankView> {
        let catalog = self.catalog();
        let mut views: Vec<BankView> = catalog.by_id.values().map(|bank| self.view(bank)).collect();
        views.sort_by(|a, b| a.bank.name.cmp(&b.bank.name));
        views
    }

    pub fn update_bank(&self, name: &BankName, update: &BankUpdate) -> Result<BankView, Error> {
        self.write(|| {
            let mut bank = (**self.catalog().get(name)?).clone();
            bank.settings = update.apply(&bank.settings);
            bank.settings.validate()?;
            self.store.update_bank(&bank)?;
            self.upsert_bank(bank.clone());
            Ok(self.view(&bank))
        })
    }

    /// Deletes a bank and its entries; returns how many entries went.
    pub fn delete_bank(&self, name: &BankName) -> Result<u64, Error> {
        self.write(|| {
            let id = self.catalog().get(name)?.id;
            let removed = self.store.delete_bank(id)?;
            self.forget_bank(id);
            Ok(removed)
        })
    }

    // ---- Entries ----

    /// Adds entries to a bank, or replaces the metadata of those it already holds (by hash).
    /// Rows are applied in order, so of two rows for one hash the later wins, and counts as an
    /// update. See [`Store::write_entries`] for `durable`.
    pub fn add_entries(
        &self,
        name: &BankName,
        entries: &[NewEntry],
        durable: bool,
    ) -> Result<AddOutcome, Error> {
        self.write(|| self.add_entries_locked(name, entries, durable))
    }

    fn add_entries_locked(
        &self,
        name: &BankName,
        entries: &[NewEntry],
        durable: bool,
    ) -> Result<AddOutcome, Error> {
        let id = self.catalog().get(name)?.id;
        // Under the write lock the index equals the store, so it tells new hashes from stored
        // ones. A hash seen earlier in this batch takes the later row's metadata.
        enum Seen {
            New(usize),
            Replaced(usize),
        }
        let mut new: Vec<&NewEntry> = Vec::new();
        let mut replaced: Vec<(EntryKey, &NewEntry)> = Vec::new();
        let mut seen: foldhash::HashMap<HashValue, Seen> = foldhash::HashMap::default();
        for entry in entries {
            match seen.get(&entry.hash) {
                Some(Seen::New(position)) => new[*position] = entry,
                Some(Seen::Replaced(position)) => replaced[*position].1 = entry,
                None => match self.index.get(entry.hash.algorithm()).get(&entry.hash, id) {
                    Some(key) => {
                        seen.insert(entry.hash, Seen::Replaced(replaced.len()));
                        replaced.push((key, entry));
                    }
                    None => {
                        seen.insert(entry.hash, Seen::New(new.len()));
                        new.push(entry);
                    }
                },
            }
        }
        let keys = self.store.write_entries(id, &new, &replaced, durable)?;
        let mut by_algorithm: HashMap<Algorithm, Vec<(HashValue, EntryKey)>> = HashMap::new();
        for (entry, key) in new.iter().zip(keys) {
            by_algorithm
                .entry(entry.hash.algorithm())
                .or_default()
                .push((entry.hash, key));
        }
        for (algorithm, added) in by_algorithm {
            self.index.get(algorithm).insert_new(&added);
        }
        if durable {
            // The end of a load: every index, as the load's earlier batches may have added
            // what this last one (often empty) does not.
            self.settle_indexes();
        }
        *self.entry_counts.entry(id).or_insert(0) += new.len() as u64;
        Ok(AddOutcome {
            added: new.len() as u64,
            updated: (entries.len() - new.len()) as u64,
        })
    }

    /// Folds what writes added into every index's tables, where the engines left it in a
    /// tail that searches scan: left unfolded after a 10M load (up to an eighth of it), the
    /// server answered 1,700 instead of 7,700 `CheckHashes` calls/s. Cheap when there is
    /// little to fold.
    fn settle_indexes(&self) {
        for algorithm in Algorithm::ALL {
            self.index.get(algorithm).settle();
        }
    }

    /// Makes every write so far durable, those of a load cut short included: the last thing a
    /// server does on a graceful shutdown.
    pub fn flush(&self) -> Result<(), Error> {
        // The match log is a record for people, not an acknowledged write: failing to write
        // its last matches is worth a warning, not a failed shutdown.
        if let Err(error) = self.match_log.flush(self.store.as_ref(), false) {
            tracing::warn!(error = %crate::error::error_chain(&error), "cannot write the last queued matches to the match log");
        }
        let _writes = self.lock_writes();
        self.store.sync()?;
        Ok(())
    }

    /// Hashes an image and adds its hashes to a bank.
    pub fn add_image(
        &self,
        name: &BankName,
        image: &[u8],
        request: &ImageEntry,
    ) -> Result<(ImageHashes, AddOutcome), Error> {
        // Fail on an unknown bank before paying for the decode.
        let bank = self.bank_named(name)?;
        let algorithms = if request.algorithms.is_empty() {
            vec![Algorithm::Pdq, Algorithm::Md5, Algorithm::Sha256]
        } else {
            request.algorithms.clone()
        };
        let pdq = algorithms.contains(&Algorithm::Pdq);
        let hashes = hash_image(
            image,
            &HashOptions {
                algorithms,
                pdq_trimmed: request.trim && pdq,
                pdq_derived: if pdq {
                    request.derived
                } else {
                    DerivedPictures::default()
                },
                ..HashOptions::default()
            },
            &self.config.decode_limits,
        )?;
        let admit = |hash: &ComputedHash| match request.allow_low_quality {
            true => Ok(()),
            false => bank.settings.admits(hash.value.algorithm(), hash.quality),
        };
        // The image itself below the bank's minimum fails the call ...
        for hash in &hashes.hashes {
            admit(hash)?;
        }
        // ... while the trimmed and derived pictures' hashes are extras: those too flat to
        // trust are left out.
        let extras: Vec<ComputedHash> = hashes
            .pdq_views
            .iter()
            .map(|found| found.hash)
            .chain(hashes.pdq_derived.iter().copied())
            .filter(|hash| admit(hash).is_ok())
            .collect();
        let now = now_ms();
        let entries = hashes
            .hashes
            .iter()
            .chain(&extras)
            .map(|computed| {
                NewEntry::new(
                    computed.value,
                    &request.id,
                    request.labels.clone(),
                    &request.source,
                    &request.note,
                    now,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outcome = self.add_entries(name, &entries, true)?;
        Ok((hashes, outcome))
    }

    /// Removes entries by hash and by external id; returns how many went.
    pub fn remove_entries(
        &self,
        name: &BankName,
        hashes: &[HashValue],
        ids: &[String],
    ) -> Result<u64, Error> {
        self.write(|| self.remove_entries_locked(name, hashes, ids))
    }

    fn remove_entries_locked(
        &self,
        name: &BankName,
        hashes: &[HashValue],
        ids: &[String],
    ) -> Result<u64, Error> {
        let id = self.catalog().get(name)?.id;
        let seqs: Vec<u64> = hashes
            .iter()
            .filter_map(|hash| self.index.get(hash.algorithm()).get(hash, id))
            .map(|key| key.seq)
            .collect();
        let removed = self.store.remove_entries(id, &seqs, ids)?;
        for (key, hash) in &removed {
            self.forget_entry(*key, hash);
        }
        Ok(removed.len() as u64)
    }

    /// Visits a bank's entries (optionally of one algorithm) from one snapshot.
    pub fn export(
        &self,
        name: &BankName,
        algorithm: Option<Algorithm>,
        mut visit: impl FnMut(Entry) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let id = self.catalog().get(name)?.id;
        self.store.for_each_entry(id, algorithm, &mut visit)?;
        Ok(())
    }

    // ---- Checks ----

    /// Hashes image bytes without any lookup.
    pub fn hash_image(&self, image: &[u8], options: &HashOptions) -> Result<ImageHashes, Error> {
        Ok(hash_image(image, options, &self.config.decode_limits)?)
    }

    /// Checks precomputed hashes.
    pub fn check_hashes(&self, hashes: &[HashValue], banks: &[BankName]) -> Result<CheckOutcome, Error> {
        let banks = self.eligible_banks(banks)?;
        let queries: Vec<Query> = hashes
            .iter()
            .map(|hash| Query {
                hash: *hash,
                view: View::Whole,
                transform: Transform::Original,
                quality: None,
            })
            .collect();
        self.check(&queries, &banks, Vec::new())
    }

    /// Hashes image bytes and checks the hashes.
    pub fn check_image(&self, image: &[u8], request: &ImageCheck) -> Result<CheckOutcome, Error> {
        // Resolve the bank filter before paying for the decode.
        let banks = self.eligible_banks(&request.banks)?;
        let algorithms = if request.algorithms.is_empty() {
            let mut default = vec![Algorithm::Pdq, Algorithm::Md5, Algorithm::Sha256];
            default.extend(
                [Algorithm::PHash, Algorithm::DHash, Algorithm::AHash]
                    .into_iter()
                    .filter(|a| !self.index.get(*a).is_empty()),
            );
            default
        } else {
            request.algorithms.clone()
        };
        let pdq = algorithms.contains(&Algorithm::Pdq);
        let image_hashes = hash_image(
            image,
            &HashOptions {
                algorithms,
                pdq_dihedral: request.dihedral && pdq,
                pdq_trimmed: request.trim && pdq,
                pdq_windows: request.windows && pdq,
                ..HashOptions::default()
            },
            &self.config.decode_limits,
        )?;
        let mut queries: Vec<Query> = Vec::new();
        let mut add = |view: View, computed: &ComputedHash, dihedral: &Option<[HashValue; 8]>| {
            let query = |hash: HashValue, transform: Transform| Query {
                hash,
                view,
                transform,
                quality: computed.quality,
            };
            match dihedral {
                Some(variants) => queries.extend(
                    variants
                        .iter()
                        .zip(Transform::DIHEDRAL_ORDER)
                        .map(|(hash, transform)| query(*hash, transform)),
                ),
                None => queries.push(query(computed.value, Transform::Original)),
            }
        };
        for computed in &image_hashes.hashes {
            match computed.value.algorithm() {
                Algorithm::Pdq => add(View::Whole, computed, &image_hashes.pdq_dihedral),
                _ => add(View::Whole, computed, &None),
            }
        }
        for found in &image_hashes.pdq_views {
            add(found.view, &found.hash, &found.dihedral);
        }
        self.check(&queries, &banks, image_hashes.hashes)
    }

    /// Banks a check may match: enabled, and in the filter when one is given.
    fn eligible_banks(&self, filter: &[BankName]) -> Result<HashMap<BankId, Arc<Bank>>, Error> {
        let chosen: Vec<Arc<Bank>> = if filter.is_empty() {
            self.catalog().by_id.values().cloned().collect()
        } else {
            filter
                .iter()
                .map(|name| self.bank_named(name))
                .collect::<Result<_, _>>()?
        };
        Ok(chosen
            .into_iter()
            .filter(|b| b.settings.enabled)
            .map(|b| (b.id, b))
            .collect())
    }

    /// Searches every query in the banks given, keeps the hits within each bank's threshold,
    /// and resolves their metadata from one store snapshot.
    fn check(
        &self,
        queries: &[Query],
        banks: &HashMap<BankId, Arc<Bank>>,
        hashes: Vec<ComputedHash>,
    ) -> Result<CheckOutcome, Error> {
        // The nearest hit per entry: an entry found through several variants of the query is
        // one match. Earlier views and transforms win ties, so the whole image as uploaded is
        // preferred.
        let mut nearest: HashMap<EntryKey, (u32, View, Transform, Option<u8>)> = HashMap::new();
        let mut hits: Vec<IndexHit> = Vec::new();
        for query in queries {
            let algorithm = query.hash.algorithm();
            let Some(radius) = banks.values().map(|b| b.settings.thresholds.get(algorithm)).max() else {
                break;
            };
            hits.clear();
            self.index.get(algorithm).search(&query.hash, radius, &mut hits);
            for hit in &hits {
                let Some(bank) = banks.get(&hit.key.bank) else {
                    continue;
                };
                if hit.distance > bank.settings.thresholds.get(algorithm) {
                    continue;
                }
                // A window is a guess at where the picture is; one too flat to trust is no
                // evidence at all.
                if query.view == View::Window && bank.settings.is_low_quality(algorithm, query.quality) {
                    continue;
                }
                let found = (hit.distance, query.view, query.transform, query.quality);
                let slot = nearest.entry(hit.key).or_insert(found);
                if found < *slot {
                    *slot = found;
                }
            }
        }
        let keys: Vec<EntryKey> = nearest.keys().copied().collect();
        let entries = self.store.entries(&keys)?;
        let mut matches = Vec::with_capacity(keys.len());
        for (key, entry) in keys.iter().zip(entries) {
            // Removed since the search: no longer a match.
            let (Some(Entry { hash, meta }), Some(bank)) = (entry, banks.get(&key.bank)) else {
                continue;
            };
            let (distance, view, transform, quality) = nearest[key];
            let mut labels = bank.settings.labels.clone();
            for label in meta.labels {
                if !labels.contains(&label) {
                    labels.push(label);
                }
            }
            matches.push(Match {
                bank: bank.name.clone(),
                entry_id: meta.id,
                hash,
                distance,
                labels,
                action: bank.settings.action,
                source: meta.source,
                view,
                transform,
                low_quality: bank.settings.is_low_quality(hash.algorithm(), quality),
            });
        }
        let verdict = decide(&matches);
        sort_matches(&mut matches);
        self.record_matches(&matches, banks, verdict);
        matches.truncate(self.config.max_matches);
        Ok(CheckOutcome {
            verdict,
            matches,
            hashes,
        })
    }

    /// Counts the check once for each bank it matched, and queues its matches for the
    /// match log.
    fn record_matches(&self, matches: &[Match], banks: &HashMap<BankId, Arc<Bank>>, verdict: Verdict) {
        if matches.is_empty() {
            return;
        }
        let now = now_ms();
        let matched: Vec<&Arc<Bank>> = banks
            .values()
            .filter(|b| matches.iter().any(|m| m.bank == b.name))
            .collect();
        for bank in &matched {
            *self.matches_here.entry(bank.id).or_default() += 1;
        }
        // Debug, not info: a busy platform matches many times a second, and the match log
        // and per-bank counters already record it.
        tracing::debug!(matches = matches.len(), ?verdict, banks = ?matched.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), "check matched");
        let records = matches.iter().filter_map(|found| {
            let bank = matched.iter().find(|b| b.name == found.bank)?;
            Some(MatchRecord {
                sequence: 0,
                bank: bank.id,
                matched_at_ms: now,
                verdict,
                found: found.clone(),
            })
        });
        let ids: Vec<BankId> = matched.iter().map(|b| b.id).collect();
        self.match_log.push(records, &ids, now);
    }

    /// The most recent matches of every process sharing the store, newest first, optionally
    /// of one bank, at most [`RECENT_MATCHES`]. This process's queued matches are written
    /// first, so they are listed.
    pub fn recent_matches(&self, bank: Option<&BankName>, limit: usize) -> Result<Vec<MatchRecord>, Error> {
        let bank = bank
            .map(|name| self.catalog().get(name).map(|b| b.id))
            .transpose()?;
        self.match_log.flush(self.store.as_ref(), false)?;
        Ok(self.store.recent_matches(bank, limit.min(RECENT_MATCHES))?)
    }

    /// Writes queued matches to the store and reads every bank's match count back from it:
    /// what the match-log thread does now and then, done now.
    pub fn flush_match_log(&self) -> Result<(), Error> {
        Ok(self.match_log.flush(self.store.as_ref(), true)?)
    }

    /// Matches dropped unwritten because the store could not take them for too long.
    pub fn match_log_dropped(&self) -> u64 {
        self.match_log.dropped()
    }

    /// Folds each index's tail into its tables where searches have paid for that in scanning
    /// it (see [`HashIndex::fold_paid_for`]).
    pub fn fold_paid_for_tails(&self) {
        for algorithm in Algorithm::ALL {
            self.index.get(algorithm).fold_paid_for();
        }
    }

    /// Per algorithm, the stored codes every search compares one by one (see
    /// [`HashIndex::scanned`]).
    pub fn index_scanned(&self) -> Vec<(Algorithm, usize)> {
        Algorithm::ALL
            .into_iter()
            .map(|algorithm| (algorithm, self.index.get(algorithm).scanned()))
            .collect()
    }
}

/// A hash to search for, and how it was made from the uploaded image.
struct Query {
    hash: HashValue,
    view: View,
    transform: Transform,
    /// The PDQ quality of the picture it was computed from (unknown for given hashes).
    quality: Option<u8>,
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

mod follow;
mod match_log;
#[cfg(test)]
mod tests;

pub use follow::{FeedStatus, FollowConfig, follow};
use match_log::MatchLog;
pub use match_log::keep_flushing;

/// How often the server looks for index tails that searches have paid to have folded.
const FOLD_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Starts a thread that folds index tails once searches have paid for it
/// ([`Matcher::fold_paid_for_tails`]), so that the last writes' hashes do not stay in a
/// scanned tail until the next load. It ends with the matcher.
pub fn keep_tails_folded(matcher: &Arc<Matcher>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let matcher = Arc::downgrade(matcher);
    std::thread::Builder::new()
        .name("index-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(FOLD_CHECK_EVERY);
                let Some(matcher) = matcher.upgrade() else {
                    return;
                };
                matcher.fold_paid_for_tails();
            }
        })
}
