//! Multi-index hashing (Norouzi, Punjani & Fleet, "Fast Exact Search in Hamming Space with
//! Multi-Index Hashing", 2014): the sublinear exact engine for perceptual hashes.
//!
//! A code of `B` bits is cut into `m` chunks, and each chunk keys one table. If a stored code is
//! within `r` bits of the query and the chunks are given radii `r_i` with `Σ (r_i + 1) ≥ r + 1`,
//! then some chunk differs by at most `r_i` bits (else the distances would add up past `r`). So
//! probing every key within `r_i` of the query's chunk in table `i`, then checking the full
//! distance of what the probes find, misses nothing. The chunk count is chosen at each rebuild
//! from the number of stored codes and the radius the index is expected to serve; any radius
//! can still be searched, and where probing would cost more than a scan, the index scans.
//!
//! Memory is flat: codes in one vector, and per table a bucket-offset array and one `u32` per
//! code (its slot, with the key's low bits packed beside it so the offsets array stays small).
//! A probe visits each bucket within the chunk's radius once and keeps the entries whose low
//! bits are within what the radius leaves, so keys sharing a bucket cost one visit. The large
//! arrays ask for huge pages (`index::huge_pages`).
//! New codes go to a short tail that searches scan linearly; when the tail grows, it is folded
//! into the tables (extending them bucket by bucket, or rebuilding them by counting sort when
//! the size calls for another layout) while searches carry on under the read lock. Removals
//! mark a slot dead at once; dead slots are dropped when they make up half the vector.

use std::sync::{Mutex, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{HashIndex, IndexHit, bank_of, huge_pages, pack, unpack};
use crate::bank::{BankId, EntryKey};
use crate::hash::{Algorithm, HashValue};

/// Relative costs of the cost model: visiting a bucket (its offsets, then its first entries:
/// two cache misses), testing one of its entries (sequential, a few instructions), and checking
/// a candidate (a cache miss for its code, and its distance).
const BUCKET_COST: f64 = 1.0;
const ENTRY_COST: f64 = 0.1;
const CANDIDATE_COST: f64 = 1.0;
/// The most entries per bucket the tables aim for, on average (and at least half as many): the
/// key bits past the bucket number ride in the entry, so the offsets arrays stay small while a
/// bucket is about one cache line. Codes wider than 64 bits (PDQ) take up to 12: at 10M random
/// PDQ that halves the buckets against 8 (offsets 88 → 44 MB of 922) at the same speed, and at
/// 1M both give the same tables; 16 was 35% slower at 1M. 64-bit codes keep 8: there 12 was
/// 25% slower at 10M, testing twice the entries per bucket for the same candidates.
fn entries_per_bucket(code_bits: u32) -> usize {
    if code_bits > 64 { 12 } else { 8 }
}
/// The most chunks a split may have; 64 one-bit chunks of a 64-bit code at most, and far
/// fewer for PDQ.
const MAX_CHUNKS: usize = 64;
/// Marks a removed slot in `owners`; no entry key packs to it (see [`crate::bank::MAX_SEQ`]).
const DEAD: u64 = u64::MAX;

/// How a [`MihIndex`] trades tables against scanning.
#[derive(Clone, Copy, Debug)]
pub struct MihConfig {
    /// The radius the chunking is tuned for; searches at other radii stay exact.
    pub design_radius: u32,
    /// Below this many codes the tables do not pay for themselves: a scan is as fast.
    pub min_indexed: usize,
    /// The tail is folded into the tables once it is this long and an eighth of the indexed
    /// codes, so rebuilds cost O(1) amortised per insert while the tail stays cheap to scan.
    pub min_tail: usize,
    /// The cost of scanning one 64-bit word, relative to a cache miss (see the cost model).
    pub scan_cost_per_word: f64,
}

impl MihConfig {
    pub fn for_radius(design_radius: u32) -> Self {
        MihConfig {
            design_radius,
            min_indexed: 4096,
            min_tail: 8192,
            scan_cost_per_word: 0.02,
        }
    }
}

/// An exact radius-search index over codes of `WORDS` 64-bit words.
pub struct MihIndex<const WORDS: usize> {
    algorithm: Algorithm,
    config: MihConfig,
    /// Serialises writers, so that a rebuild can read the codes under the read lock while
    /// searches go on, knowing nothing changes them.
    writer: Mutex<()>,
    state: RwLock<State<WORDS>>,
    /// Tail codes that searches have scanned since the tail was last folded: what the tail
    /// has cost them, which [`MihIndex::fold_paid_for`] weighs against what a fold costs.
    tail_scans: std::sync::atomic::AtomicU64,
}

struct State<const WORDS: usize> {
    codes: Vec<[u64; WORDS]>,
    /// The entry key of each slot, packed, or [`DEAD`].
    owners: Vec<u64>,
    live: usize,
    /// Tables over slots `..indexed`; `None` while there are too few codes to need them.
    tables: Option<Tables>,
    indexed: usize,
    /// Live slots `indexed..` by code and bank, for exact lookups in the tail; out of date
    /// while `tail_mapped` is false (after [`MihIndex::load_distinct`]).
    tail: foldhash::HashMap<([u64; WORDS], u32), u32>,
    tail_mapped: bool,
}

/// The chunk tables of one build.
struct Tables {
    chunks: Vec<Chunk>,
    /// Probe plans by radius, made on first use.
    plans: Vec<OnceLock<Option<Plan>>>,
    /// Live codes in the tables.
    live: usize,
    /// What scanning the indexed codes costs in the cost model's units.
    scan_cost: f64,
}

/// Which bits of the code key a chunk, and how its keys split into bucket number and the low
/// bits kept in each entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    start: u32,
    bits: u32,
    low_bits: u32,
}

/// One chunk: its layout, and the table from key to slots.
struct Chunk {
    layout: Layout,
    /// Entries of bucket `b` are `entries[offsets[b]..offsets[b + 1]]`.
    offsets: Vec<u32>,
    /// `slot << low_bits | key & low_mask`.
    entries: Vec<u32>,
}

/// How to probe for one radius.
struct Plan {
    /// Per chunk, `None` when the chunk is not probed (its radius is -1).
    chunks: Vec<Option<ChunkPlan>>,
}

/// How to probe one chunk within `radius`: every bucket whose number is within `radius` bits
/// of the query's, each visited once, with how many more bits the key's low bits (kept in the
/// entries) may differ by. Keys within the radius that share a bucket are found in one pass
/// over it, rather than once per key.
struct ChunkPlan {
    radius: u32,
    /// (XOR mask of the bucket number, remaining radius for the low key bits), fewest bits
    /// first.
    buckets: Vec<(u32, u32)>,
}

impl<const WORDS: usize> MihIndex<WORDS> {
    /// An empty index for `algorithm`.
    pub fn new(algorithm: Algorithm, config: MihConfig) -> Self {
        debug_assert_eq!(algorithm.byte_len(), WORDS * 8);
        MihIndex {
            algorithm,
            config,
            writer: Mutex::new(()),
            tail_scans: std::sync::atomic::AtomicU64::new(0),
            state: RwLock::new(State {
                codes: Vec::new(),
                owners: Vec::new(),
                live: 0,
                tables: None,
                indexed: 0,
                tail: foldhash::HashMap::default(),
                tail_mapped: true,
            }),
        }
    }

    /// Folds the tail into the tables now if it is longer than a quick scan: after a bulk
    /// load, so that later searches do not scan a long tail.
    pub fn settle(&self) {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if self.needs_settling() {
            self.rebuild();
        }
    }

    /// Whether [`MihIndex::settle`] would fold the tail into the tables.
    pub fn needs_settling(&self) -> bool {
        let state = self.read();
        let tail = state.tail_len();
        tail > self.config.min_tail
            || (state.tables.is_none() && state.live >= self.config.min_indexed && tail > 0)
    }

    /// Appends pairs known to be distinct and absent, such as a store's keys at start-up,
    /// skipping the per-pair lookup; [`MihIndex::settle`] then builds the tables once.
    pub fn load_distinct(&self, entries: &[(HashValue, EntryKey)]) {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut state = self.write();
        state.reserve(entries.len());
        for (hash, key) in entries {
            if let Some(code) = self.to_code(hash) {
                state.codes.push(code);
                state.owners.push(pack(*key));
                state.live += 1;
            }
        }
        state.tail_mapped = false;
    }

    /// Takes `fresh`'s codes and tables in place of this index's, at once for searches. The
    /// old ones are freed after the lock is let go.
    pub fn replace_with(&self, fresh: MihIndex<WORDS>) {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = fresh.state.into_inner().unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::replace(&mut *self.write(), fresh);
        drop(old);
    }

    fn to_code(&self, hash: &HashValue) -> Option<[u64; WORDS]> {
        super::to_code(self.algorithm, hash)
    }

    fn to_hash(&self, code: &[u64; WORDS]) -> HashValue {
        super::to_hash(self.algorithm, code)
    }

    /// A panic while holding the lock cannot leave the state inexact (a rebuild swaps in
    /// finished tables only), so a poisoned lock is used as is.
    fn read(&self) -> RwLockReadGuard<'_, State<WORDS>> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State<WORDS>> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Rebuilds the tables over every slot, dropping dead slots first if they are many. The
    /// caller holds `writer`, so the codes cannot change while the tables are built from them
    /// under the read lock.
    fn rebuild(&self) {
        let compact = {
            let state = self.read();
            state.codes.len() - state.live > state.live
        };
        if compact {
            let mut state = self.write();
            state.compact();
            let tables = Tables::build(None, &state.codes, &state.owners, state.live, &self.config);
            state.install(tables);
        } else {
            let tables = {
                let state = self.read();
                let current = state.tables.as_ref().map(|tables| (tables, state.indexed));
                Tables::build(current, &state.codes, &state.owners, state.live, &self.config)
            };
            self.write().install(tables);
        }
        self.tail_scans.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Folds the tail into the tables once searches have spent on scanning it about what the
    /// fold costs (the ski-rental rule): a tail that many searches scan is folded soon, one
    /// that few do waits, and searches never pay much more for a tail than folding it would
    /// have cost. A fold costs about [`FOLD_SCANS_PER_ENTRY`] code scans per live code and
    /// chunk.
    pub fn fold_paid_for(&self) {
        let due = |index: &Self| {
            let state = index.read();
            let Some(tables) = &state.tables else {
                return false;
            };
            let fold_cost = (state.live * tables.chunks.len()) as f64 * FOLD_SCANS_PER_ENTRY;
            state.tail_len() > 0
                && index.tail_scans.load(std::sync::atomic::Ordering::Relaxed) as f64 >= fold_cost
        };
        if !due(self) {
            return;
        }
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if due(self) {
            self.rebuild();
        }
    }

    /// Rebuilds if the tail has outgrown its bound.
    fn maybe_rebuild(&self) {
        let needed = {
            let state = self.read();
            let tail = state.tail_len();
            tail > self.config.min_tail.max(state.indexed / 8)
                || (state.tables.is_none() && tail > self.config.min_indexed)
        };
        if needed {
            self.rebuild();
        }
    }

    /// Drops dead slots when they are the majority, with a rebuild so slot numbers stay valid.
    fn maybe_compact(&self) {
        let needed = {
            let state = self.read();
            let dead = state.codes.len() - state.live;
            dead > state.live && dead > 1024
        };
        if needed {
            self.rebuild();
        }
    }
}

impl<const WORDS: usize> State<WORDS> {
    /// Slots past the tables, which searches scan.
    fn tail_len(&self) -> usize {
        self.codes.len() - self.indexed
    }

    /// Makes `tables`, built over every slot, the index's tables, leaving the tail empty.
    fn install(&mut self, tables: Option<Tables>) {
        self.tables = tables;
        self.indexed = self.codes.len();
        self.tail = foldhash::HashMap::default();
        self.tail_mapped = true;
    }

    /// Maps the tail again after [`MihIndex::load_distinct`] appended to it unmapped.
    fn map_tail(&mut self) {
        if !self.tail_mapped {
            self.tail = (self.indexed..self.codes.len())
                .filter(|&slot| self.owners[slot] != DEAD)
                .map(|slot| ((self.codes[slot], bank_of(self.owners[slot])), slot as u32))
                .collect();
            self.tail_mapped = true;
        }
    }

    /// The slot holding `(code, bank)`, if any.
    fn find(&self, code: &[u64; WORDS], bank: u32) -> Option<usize> {
        let in_tail = if self.tail_mapped {
            self.tail.get(&(*code, bank)).map(|&slot| slot as usize)
        } else {
            (self.indexed..self.codes.len()).find(|&slot| self.holds(slot, code, bank))
        };
        if in_tail.is_some() {
            return in_tail;
        }
        match &self.tables {
            Some(tables) => tables.chunks[0]
                .bucket(tables.chunks[0].layout.key(code))
                .map(|slot| slot as usize)
                .find(|&slot| self.holds(slot, code, bank)),
            None => (0..self.indexed).find(|&slot| self.holds(slot, code, bank)),
        }
    }

    /// Whether `slot` is live and holds `code` in `bank`.
    fn holds(&self, slot: usize, code: &[u64; WORDS], bank: u32) -> bool {
        let owner = self.owners[slot];
        owner != DEAD && bank_of(owner) == bank && self.codes[slot] == *code
    }

    /// Makes room for `additional` more slots, in memory backed by huge pages.
    fn reserve(&mut self, additional: usize) {
        if self.codes.capacity() - self.codes.len() < additional {
            let capacity = (self.codes.len() + additional).max(2 * self.codes.capacity());
            huge_pages::reallocate(&mut self.codes, capacity);
            huge_pages::reallocate(&mut self.owners, capacity);
        }
    }

    fn insert(&mut self, code: [u64; WORDS], key: EntryKey) -> bool {
        self.map_tail();
        if self.find(&code, key.bank.0).is_some() {
            return false;
        }
        self.push(code, key);
        true
    }

    /// Appends a code known to be absent from its bank, keeping the tail's map.
    fn push(&mut self, code: [u64; WORDS], key: EntryKey) {
        debug_assert!(self.tail_mapped && self.find(&code, key.bank.0).is_none());
        self.reserve(1);
        self.tail.insert((code, key.bank.0), self.codes.len() as u32);
        self.codes.push(code);
        self.owners.push(pack(key));
        self.live += 1;
    }

    fn kill(&mut self, slot: usize) {
        self.map_tail();
        if slot >= self.indexed {
            self.tail.remove(&(self.codes[slot], bank_of(self.owners[slot])));
        }
        self.owners[slot] = DEAD;
        self.live -= 1;
    }

    /// Moves live slots down over dead ones. Slot numbers change, so new tables must be
    /// installed afterwards.
    fn compact(&mut self) {
        let mut kept = 0;
        for slot in 0..self.codes.len() {
            if self.owners[slot] != DEAD {
                self.codes[kept] = self.codes[slot];
                self.owners[kept] = self.owners[slot];
                kept += 1;
            }
        }
        self.codes.truncate(kept);
        self.owners.truncate(kept);
        huge_pages::reallocate(&mut self.codes, kept);
        huge_pages::reallocate(&mut self.owners, kept);
    }

    /// Calls `emit(distance, slot)` for every live slot in `slots` within `radius` of `query`.
    fn scan(
        &self,
        slots: std::ops::Range<usize>,
        query: &[u64; WORDS],
        radius: u32,
        emit: &mut impl FnMut(u32, usize),
    ) {
        let start = slots.start;
        for (offset, code) in self.codes[slots].iter().enumerate() {
            let distance = distance(code, query);
            if distance <= radius && self.owners[start + offset] != DEAD {
                emit(distance, start + offset);
            }
        }
    }

    /// Calls `emit(distance, slot)` once for every live slot within `radius` of `query`.
    fn search(&self, query: &[u64; WORDS], radius: u32, emit: &mut impl FnMut(u32, usize)) {
        self.scan(self.indexed..self.codes.len(), query, radius, emit);
        let plan = self
            .tables
            .as_ref()
            .and_then(|tables| Some((tables, tables.plan(radius)?)));
        let Some((tables, plan)) = plan else {
            self.scan(0..self.indexed, query, radius, emit);
            return;
        };
        let mut query_keys = [0u32; MAX_CHUNKS];
        for (key, chunk) in query_keys.iter_mut().zip(&tables.chunks) {
            *key = chunk.layout.key(query);
        }
        // A code is reported only by the first probed chunk within that chunk's radius of the
        // query: this one, if no earlier probed chunk is.
        let found_earlier = |code: &[u64; WORDS], index: usize| {
            tables.chunks[..index].iter().zip(&plan.chunks).enumerate().any(
                |(earlier, (chunk, chunk_plan))| {
                    chunk_plan.as_ref().is_some_and(|chunk_plan| {
                        (chunk.layout.key(code) ^ query_keys[earlier]).count_ones() <= chunk_plan.radius
                    })
                },
            )
        };
        // Three passes rather than one nested loop, so that each pass's loads are independent
        // and its cache misses (offsets, then entries, then codes) overlap: each pass
        // prefetches what the item PREFETCH_DISTANCE ahead will read.
        PROBE_SCRATCH.with_borrow_mut(|scratch| {
            scratch.ranges.clear();
            scratch.candidates.clear();
            for (index, (chunk, chunk_plan)) in tables.chunks.iter().zip(&plan.chunks).enumerate() {
                let Some(chunk_plan) = chunk_plan else {
                    continue;
                };
                let bucket = chunk.bucket_of(query_keys[index]);
                let buckets = &chunk_plan.buckets;
                for (position, &(mask, low_radius)) in buckets.iter().enumerate() {
                    if let Some((ahead, _)) = buckets.get(position + PREFETCH_DISTANCE) {
                        prefetch(&chunk.offsets[bucket ^ *ahead as usize]);
                    }
                    let probed = bucket ^ mask as usize;
                    let (start, end) = (chunk.offsets[probed], chunk.offsets[probed + 1]);
                    if start < end {
                        scratch.ranges.push(Probe {
                            chunk: index as u32,
                            start,
                            end,
                            low_radius,
                        });
                    }
                }
            }
            for (position, probe) in scratch.ranges.iter().enumerate() {
                if let Some(ahead) = scratch.ranges.get(position + PREFETCH_DISTANCE) {
                    // A bucket's entries can straddle two cache lines: fetch both.
                    let entries = &tables.chunks[ahead.chunk as usize].entries;
                    prefetch(&entries[ahead.start as usize]);
                    prefetch(&entries[ahead.end as usize - 1]);
                }
                let chunk = &tables.chunks[probe.chunk as usize];
                let low_mask = chunk.layout.low_mask();
                let query_low = query_keys[probe.chunk as usize] & low_mask;
                for &entry in &chunk.entries[probe.start as usize..probe.end as usize] {
                    if ((entry ^ query_low) & low_mask).count_ones() <= probe.low_radius {
                        let slot = entry >> chunk.layout.low_bits;
                        scratch.candidates.push((slot, probe.chunk));
                    }
                }
            }
            for (position, &(slot, index)) in scratch.candidates.iter().enumerate() {
                if let Some((ahead, _)) = scratch.candidates.get(position + PREFETCH_DISTANCE) {
                    prefetch(&self.codes[*ahead as usize]);
                }
                let slot = slot as usize;
                let code = &self.codes[slot];
                let distance = distance(code, query);
                if distance <= radius && self.owners[slot] != DEAD && !found_earlier(code, index as usize) {
                    emit(distance, slot);
                }
            }
            scratch.shrink();
        });
    }
}

/// What folding the tail costs per entry of each chunk, in scans of one code (a code scan:
/// about 1.2 ns for PDQ at 1M, where a tail of 8,192 codes cost 10 µs per search; a fold of
/// 10M PDQ codes into 11 chunks: about 1.3 s, 12 ns per entry and chunk).
const FOLD_SCANS_PER_ENTRY: f64 = 10.0;

/// How many items ahead each pass prefetches what a later item will read (a bucket's offsets,
/// its entries, a candidate's code). Longer distances measured slower: more loads in flight
/// than the core tracks.
const PREFETCH_DISTANCE: usize = 16;

/// A non-empty bucket to read: entries `start..end` of a chunk, of which those whose low key
/// bits are within `low_radius` of the query's are candidates.
struct Probe {
    chunk: u32,
    start: u32,
    end: u32,
    low_radius: u32,
}

/// Per-thread buffers of a search, kept so that a search allocates nothing.
#[derive(Default)]
struct ProbeScratch {
    ranges: Vec<Probe>,
    candidates: Vec<(u32, u32)>,
}

impl ProbeScratch {
    /// Lets go of the memory a pathological query (a huge bucket) made the buffers take.
    fn shrink(&mut self) {
        const KEEP: usize = 1 << 16;
        if self.ranges.capacity() > KEEP || self.candidates.capacity() > KEEP {
            self.ranges = Vec::new();
            self.candidates = Vec::new();
        }
    }
}

thread_local! {
    static PROBE_SCRATCH: std::cell::RefCell<ProbeScratch> = std::cell::RefCell::default();
}

/// Asks the CPU to start loading `item` into cache; a hint with no effect on results.
#[inline(always)]
fn prefetch<T>(item: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch never faults and changes no memory; the pointer comes from a
        // live reference anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((item as *const T).cast()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = item;
}

impl Tables {
    /// Tables over the live slots of `codes`, or `None` if a scan would serve as well. Given
    /// the `current` tables over the slots before some index, and if the layout chosen for the
    /// new size is theirs, they are extended with the slots from that index on: each bucket's
    /// entries are copied as a block, far cheaper than sorting every code again.
    fn build<const WORDS: usize>(
        current: Option<(&Tables, usize)>,
        codes: &[[u64; WORDS]],
        owners: &[u64],
        live: usize,
        config: &MihConfig,
    ) -> Option<Tables> {
        if live < config.min_indexed || codes.len() >= (1 << 28) {
            return None;
        }
        let bits = (WORDS * 64) as u32;
        let chunk_bits = choose_chunks(bits, live, config.design_radius)?;
        let mut start = 0;
        let layouts: Vec<Layout> = chunk_bits
            .iter()
            .map(|&chunk| {
                let layout = Layout {
                    start,
                    bits: chunk,
                    low_bits: low_bits(bits, chunk, live, codes.len()),
                };
                start += chunk;
                layout
            })
            .collect();
        let extended = current.filter(|(tables, _)| {
            tables
                .chunks
                .iter()
                .map(|chunk| chunk.layout)
                .eq(layouts.iter().copied())
        });
        let chunks = std::thread::scope(|scope| {
            let threads = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(layouts.len());
            let per_thread = layouts.len().div_ceil(threads);
            let handles: Vec<_> = layouts
                .chunks(per_thread)
                .enumerate()
                .map(|(group_index, group)| {
                    scope.spawn(move || {
                        group
                            .iter()
                            .enumerate()
                            .map(|(offset, &layout)| match extended {
                                Some((tables, from)) => tables.chunks[group_index * per_thread + offset]
                                    .extended(codes, owners, from),
                                None => Chunk::build(codes, owners, live, layout),
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            // A build thread cannot panic short of allocation failure, which aborts anyway.
            handles
                .into_iter()
                .flat_map(|handle| handle.join().unwrap_or_default())
                .collect::<Vec<_>>()
        });
        if chunks.len() != layouts.len() {
            return None;
        }
        Some(Tables {
            chunks,
            plans: (0..=bits).map(|_| OnceLock::new()).collect(),
            live,
            scan_cost: codes.len() as f64 * config.scan_cost_per_word * WORDS as f64,
        })
    }

    /// The probe plan for `radius`, or `None` if scanning is cheaper.
    fn plan(&self, radius: u32) -> Option<&Plan> {
        let cell = self.plans.get(radius as usize)?;
        cell.get_or_init(|| {
            let widths: Vec<Width> = self
                .chunks
                .iter()
                .map(|chunk| Width {
                    bits: chunk.layout.bits,
                    bucket_bits: chunk.layout.bits - chunk.layout.low_bits,
                })
                .collect();
            let (radii, cost) = allocate_radii(&widths, self.live, radius);
            if cost > self.scan_cost {
                return None;
            }
            let chunks = widths
                .iter()
                .zip(&radii)
                .map(|(width, &radius)| {
                    let radius = u32::try_from(radius).ok()?;
                    let buckets = masks_within(width.bucket_bits, radius)
                        .into_iter()
                        .map(|mask| (mask, radius - mask.count_ones()))
                        .collect();
                    Some(ChunkPlan { radius, buckets })
                })
                .collect();
            Some(Plan { chunks })
        })
        .as_ref()
    }
}

impl Layout {
    /// This chunk's key in `code`.
    fn key<const WORDS: usize>(&self, code: &[u64; WORDS]) -> u32 {
        extract(code, self.start, self.bits)
    }

    fn low_mask(&self) -> u32 {
        (1u32 << self.low_bits) - 1
    }

    /// The entry of `slot`, whose key is `key`.
    fn entry(&self, slot: usize, key: u32) -> u32 {
        ((slot as u32) << self.low_bits) | (key & self.low_mask())
    }

    /// Counts the live slots `from..` of `codes` by bucket: bucket `b`'s count is added to
    /// `offsets[b + 1]`.
    fn count<const WORDS: usize>(
        &self,
        codes: &[[u64; WORDS]],
        owners: &[u64],
        from: usize,
        offsets: &mut [u32],
    ) {
        for (_, key) in self.live_keys(codes, owners, from..codes.len()) {
            offsets[(key >> self.low_bits) as usize + 1] += 1;
        }
    }

    /// The live slots among `slots`, each with its key in this chunk.
    fn live_keys<'a, const WORDS: usize>(
        &'a self,
        codes: &'a [[u64; WORDS]],
        owners: &'a [u64],
        slots: std::ops::Range<usize>,
    ) -> impl Iterator<Item = (usize, u32)> + 'a {
        let start = slots.start;
        codes[slots.clone()]
            .iter()
            .zip(&owners[slots])
            .enumerate()
            .filter(|(_, (_, owner))| **owner != DEAD)
            .map(move |(offset, (code, _))| (start + offset, self.key(code)))
    }

    /// Writes the entries of the live slots `from..` of `codes`, bucket `b`'s from
    /// `offsets[b]` on, and fills each bucket exactly up to where the next starts. `offsets`
    /// serves as the cursors, and holds the buckets' starts on return.
    fn place<const WORDS: usize>(
        &self,
        codes: &[[u64; WORDS]],
        owners: &[u64],
        from: usize,
        entries: &mut [u32],
        offsets: &mut [u32],
    ) {
        let bucket_bits = self.bits - self.low_bits;
        let partition_bits = bucket_bits
            .saturating_sub(PARTITION_BUCKET_BITS)
            .min(MAX_PARTITION_BITS);
        let staging = Staging {
            partition_bits,
            block_slots: STAGE_BLOCK,
        };
        self.place_in_partitions(codes, owners, from, entries, offsets, staging);
    }

    /// [`Layout::place`] in `2^partition_bits` partitions of consecutive buckets. Writing each
    /// entry straight to its bucket is a cache miss per entry (twice: the cursor, the entry)
    /// once the table outgrows the cache, and it was most of a bulk load's time at 10M. Staging
    /// a block of entries by partition first (a few sequential streams), then placing them one
    /// partition at a time, keeps each partition's cursors and entries in cache. Entries keep
    /// slot order within a bucket either way, so the tables are the same.
    fn place_in_partitions<const WORDS: usize>(
        &self,
        codes: &[[u64; WORDS]],
        owners: &[u64],
        from: usize,
        entries: &mut [u32],
        offsets: &mut [u32],
        staging: Staging,
    ) {
        let Staging {
            partition_bits,
            block_slots,
        } = staging;
        let live = |slots| self.live_keys(codes, owners, slots);
        if partition_bits == 0 {
            for (slot, key) in live(from..codes.len()) {
                let cursor = &mut offsets[(key >> self.low_bits) as usize];
                entries[*cursor as usize] = self.entry(slot, key);
                *cursor += 1;
            }
        } else {
            let shift = self.bits - self.low_bits - partition_bits;
            let partition = |key: u32| ((key >> self.low_bits) >> shift) as usize;
            let mut starts = vec![0usize; (1 << partition_bits) + 1];
            // (bucket, entry) pairs of one block, grouped by partition, in slot order within
            // each; the buffer is reused, so a build touches no more new memory for it.
            let mut staged: Vec<u64> = Vec::new();
            for block in (from..codes.len()).step_by(block_slots) {
                let block = block..codes.len().min(block.saturating_add(block_slots));
                starts.fill(0);
                for (_, key) in live(block.clone()) {
                    starts[partition(key) + 1] += 1;
                }
                for index in 1..starts.len() {
                    starts[index] += starts[index - 1];
                }
                staged.clear();
                staged.resize(starts[starts.len() - 1], 0);
                for (slot, key) in live(block) {
                    let cursor = &mut starts[partition(key)];
                    staged[*cursor] =
                        u64::from(key >> self.low_bits) << 32 | u64::from(self.entry(slot, key));
                    *cursor += 1;
                }
                for &pair in &staged {
                    let cursor = &mut offsets[(pair >> 32) as usize];
                    entries[*cursor as usize] = pair as u32;
                    *cursor += 1;
                }
            }
        }
        // Each cursor stopped where the next bucket starts: shift them back into starts.
        let buckets = offsets.len() - 1;
        offsets.copy_within(0..buckets, 1);
        offsets[0] = 0;
    }
}

/// How [`Layout::place_in_partitions`] stages entries: in `2^partition_bits` partitions (none
/// when 0), `block_slots` slots at a time.
#[derive(Clone, Copy, Debug)]
struct Staging {
    partition_bits: u32,
    block_slots: usize,
}

/// Slots staged at a time by [`Layout::place_in_partitions`]: at most 32 MiB of pairs per
/// build thread. Blocks of 1M slots placed each partition in more, smaller visits and made a
/// 10M bulk load 5% slower; staging everything at once would take 8 bytes per entry more.
const STAGE_BLOCK: usize = 1 << 22;

/// Buckets per partition of [`Layout::place_in_partitions`], as a power of two: 4,096 buckets'
/// cursors (16 KiB) and their entries (about 8 each, 128 KiB) fit in L2.
const PARTITION_BUCKET_BITS: u32 = 12;

/// At most 1,024 partitions: more staging streams than that thrash the TLB and L1.
const MAX_PARTITION_BITS: u32 = 10;

impl Chunk {
    /// The table of the live slots of `codes`, by counting sort.
    fn build<const WORDS: usize>(
        codes: &[[u64; WORDS]],
        owners: &[u64],
        live: usize,
        layout: Layout,
    ) -> Chunk {
        let buckets = 1usize << (layout.bits - layout.low_bits);
        let mut offsets = vec![0u32; buckets + 1];
        huge_pages::advise(&offsets);
        layout.count(codes, owners, 0, &mut offsets);
        for bucket in 0..buckets {
            offsets[bucket + 1] += offsets[bucket];
        }
        let mut entries = vec![0u32; live];
        huge_pages::advise(&entries);
        layout.place(codes, owners, 0, &mut entries, &mut offsets);
        Chunk {
            layout,
            offsets,
            entries,
        }
    }

    /// This table with the live slots `from..` of `codes` added: each bucket's entries are
    /// copied as one block, and the new ones placed after them. Entries of slots that died
    /// since are kept; searches skip them, and the next compaction drops them.
    fn extended<const WORDS: usize>(&self, codes: &[[u64; WORDS]], owners: &[u64], from: usize) -> Chunk {
        let layout = self.layout;
        let buckets = self.offsets.len() - 1;
        let mut offsets = vec![0u32; buckets + 1];
        huge_pages::advise(&offsets);
        layout.count(codes, owners, from, &mut offsets);
        // Each bucket now starts after the previous one's old and new entries.
        for bucket in 0..buckets {
            let old = self.offsets[bucket + 1] - self.offsets[bucket];
            offsets[bucket + 1] += offsets[bucket] + old;
        }
        let mut entries = vec![0u32; offsets[buckets] as usize];
        huge_pages::advise(&entries);
        for (old_range, at) in self.offsets.windows(2).zip(&mut offsets) {
            let old = &self.entries[old_range[0] as usize..old_range[1] as usize];
            let start = *at as usize;
            entries[start..start + old.len()].copy_from_slice(old);
            *at += old.len() as u32;
        }
        layout.place(codes, owners, from, &mut entries, &mut offsets);
        Chunk {
            layout,
            offsets,
            entries,
        }
    }

    fn bucket_of(&self, key: u32) -> usize {
        (key >> self.layout.low_bits) as usize
    }

    /// The slots whose key in this chunk is exactly `key`.
    fn bucket(&self, key: u32) -> impl Iterator<Item = u32> + '_ {
        let bucket = self.bucket_of(key);
        let low_mask = self.layout.low_mask();
        let low = key & low_mask;
        let range = self.offsets[bucket] as usize..self.offsets[bucket + 1] as usize;
        self.entries[range]
            .iter()
            .filter(move |&&entry| entry & low_mask == low)
            .map(move |&entry| entry >> self.layout.low_bits)
    }
}

/// Bits `start..start + bits` of `code` (bit 0 is the first word's most significant), as an
/// integer; `bits` is 1 to 32.
fn extract<const WORDS: usize>(code: &[u64; WORDS], start: u32, bits: u32) -> u32 {
    debug_assert!((1..=32).contains(&bits) && start + bits <= WORDS as u32 * 64);
    let word = (start / 64) as usize;
    let offset = start % 64;
    if offset + bits <= 64 {
        ((code[word] << offset) >> (64 - bits)) as u32
    } else {
        let high_bits = 64 - offset;
        let low_bits = bits - high_bits;
        let high = (code[word] << offset) >> (64 - high_bits);
        let low = code[word + 1] >> (64 - low_bits);
        ((high << low_bits) | low) as u32
    }
}

fn distance<const WORDS: usize>(a: &[u64; WORDS], b: &[u64; WORDS]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// The key bits of a `bits`-wide chunk kept in its entries rather than in the bucket number,
/// of `code_bits`-bit codes, for tables over `live` codes in `slots` slots: enough for about
/// [`entries_per_bucket`] entries per bucket, as far as the slot number leaves room in the
/// entry's 32 bits.
fn low_bits(code_bits: u32, bits: u32, live: usize, slots: usize) -> u32 {
    let slot_bits = usize::BITS - slots.leading_zeros();
    let per_bucket = entries_per_bucket(code_bits);
    let bucket_bits = (usize::BITS - (live / per_bucket).max(1).leading_zeros()).max(1);
    bits.saturating_sub(bucket_bits).min(32 - slot_bits)
}

/// A chunk's width as the cost model sees it.
#[derive(Clone, Copy, Debug)]
struct Width {
    bits: u32,
    /// Bits of the bucket number; the rest of the key is in the entries.
    bucket_bits: u32,
}

impl Width {
    /// A `bits`-wide chunk of `code_bits`-bit codes, `count` of them.
    fn new(code_bits: u32, bits: u32, count: usize) -> Width {
        Width {
            bits,
            bucket_bits: bits - low_bits(code_bits, bits, count, count),
        }
    }

    /// The expected cost of probing this chunk within `radius` over `count` codes: buckets
    /// visited, entries tested, candidates checked.
    fn cost(&self, count: usize, radius: i32) -> f64 {
        if radius < 0 {
            return 0.0;
        }
        let within = |bits: u32| -> f64 {
            (0..=radius.min(bits as i32) as u32)
                .map(|k| binomial(bits, k))
                .sum()
        };
        let buckets = within(self.bucket_bits);
        let entries = buckets * count as f64 / 2f64.powi(self.bucket_bits as i32);
        let candidates = within(self.bits) * count as f64 / 2f64.powi(self.bits as i32);
        buckets * BUCKET_COST + entries * ENTRY_COST + candidates * CANDIDATE_COST
    }
}

/// Chunk widths for `bits`-bit codes, `count` of them, searched at `radius`: the split the cost
/// model finds cheapest, with no chunk wider than 32 bits nor more than two bits wider than
/// `log2(count)`, past which the tables are sparse and probing only costs. (Measured on random
/// PDQ at radius 31, the model's choice was the fastest split at 1M and 10M, 12 and 11 chunks:
/// 14 and 16 chunks at 1M, and 12 at 10M, were 25–50% slower.)
fn choose_chunks(bits: u32, count: usize, radius: u32) -> Option<Vec<u32>> {
    let log_count = usize::BITS - count.max(2).leading_zeros();
    let widest = (log_count + 2).min(32);
    (bits.div_ceil(widest)..=bits.min(MAX_CHUNKS as u32))
        .map(|chunks| split_bits(bits, chunks))
        .map(|widths| {
            let model: Vec<Width> = widths.iter().map(|&w| Width::new(bits, w, count)).collect();
            let (_, cost) = allocate_radii(&model, count, radius);
            (widths, cost)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(widths, _)| widths)
}

/// `bits` split into `chunks` widths differing by at most one.
fn split_bits(bits: u32, chunks: u32) -> Vec<u32> {
    (0..chunks)
        .map(|i| bits / chunks + u32::from(i < bits % chunks))
        .collect()
}

/// Radii per chunk (-1 for "not probed") with `Σ (r_i + 1) = radius + 1`, chosen greedily by
/// the smallest rise in expected cost, and that cost. The greedy choice is optimal because each
/// chunk's cost is convex in its radius.
fn allocate_radii(widths: &[Width], count: usize, radius: u32) -> (Vec<i32>, f64) {
    let mut radii = vec![-1i32; widths.len()];
    for _ in 0..=radius {
        let best = (0..widths.len())
            .filter(|&i| radii[i] < widths[i].bits as i32)
            .min_by(|&a, &b| {
                let rise = |i: usize| widths[i].cost(count, radii[i] + 1) - widths[i].cost(count, radii[i]);
                rise(a).total_cmp(&rise(b))
            });
        match best {
            Some(i) => radii[i] += 1,
            None => break,
        }
    }
    let cost = widths.iter().zip(&radii).map(|(w, &r)| w.cost(count, r)).sum();
    (radii, cost)
}

fn binomial(n: u32, k: u32) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * f64::from(n - i) / f64::from(i + 1))
}

/// Every `bits`-bit mask with at most `radius` bits set, fewest bits first.
fn masks_within(bits: u32, radius: u32) -> Vec<u32> {
    let mut masks = vec![0u32];
    for weight in 1..=radius.min(bits) {
        // Gosper's hack walks the masks of one weight in increasing order.
        let limit = if bits == 32 {
            u64::from(u32::MAX)
        } else {
            (1u64 << bits) - 1
        };
        let mut mask: u64 = (1u64 << weight) - 1;
        while mask <= limit {
            masks.push(mask as u32);
            let lowest = mask & mask.wrapping_neg();
            let ripple = mask + lowest;
            mask = (((ripple ^ mask) >> 2) / lowest) | ripple;
        }
    }
    masks
}

impl<const WORDS: usize> HashIndex for MihIndex<WORDS> {
    fn load_distinct(&self, entries: &[(HashValue, EntryKey)]) {
        MihIndex::load_distinct(self, entries);
    }

    fn settle(&self) {
        MihIndex::settle(self);
    }

    fn needs_settling(&self) -> bool {
        MihIndex::needs_settling(self)
    }

    fn fold_paid_for(&self) {
        MihIndex::fold_paid_for(self);
    }

    fn scanned(&self) -> usize {
        let state = self.read();
        match state.tables {
            Some(_) => state.tail_len(),
            None => state.codes.len(),
        }
    }

    fn reserve(&self, additional: usize) {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.write().reserve(additional);
    }

    fn insert(&self, hash: &HashValue, key: EntryKey) -> bool {
        self.insert_many(&[(*hash, key)]) == 1
    }

    fn insert_new(&self, entries: &[(HashValue, EntryKey)]) {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        {
            let mut state = self.write();
            state.map_tail();
            for (hash, key) in entries {
                if let Some(code) = self.to_code(hash) {
                    state.push(code, *key);
                }
            }
        }
        self.maybe_rebuild();
    }

    fn insert_many(&self, entries: &[(HashValue, EntryKey)]) -> usize {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let added = {
            let mut state = self.write();
            entries
                .iter()
                .filter(|(hash, key)| self.to_code(hash).is_some_and(|code| state.insert(code, *key)))
                .count()
        };
        self.maybe_rebuild();
        added
    }

    fn get(&self, hash: &HashValue, bank: BankId) -> Option<EntryKey> {
        let code = self.to_code(hash)?;
        let state = self.read();
        let slot = state.find(&code, bank.0)?;
        Some(unpack(state.owners[slot]))
    }

    fn remove(&self, hash: &HashValue, bank: BankId) -> bool {
        let Some(code) = self.to_code(hash) else {
            return false;
        };
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let removed = {
            let mut state = self.write();
            match state.find(&code, bank.0) {
                Some(slot) => {
                    state.kill(slot);
                    true
                }
                None => false,
            }
        };
        self.maybe_compact();
        removed
    }

    fn remove_bank(&self, bank: BankId) -> usize {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let removed = {
            let mut state = self.write();
            let slots: Vec<usize> = (0..state.codes.len())
                .filter(|&slot| state.owners[slot] != DEAD && bank_of(state.owners[slot]) == bank.0)
                .collect();
            for &slot in &slots {
                state.kill(slot);
            }
            slots.len()
        };
        self.maybe_compact();
        removed
    }

    fn search(&self, query: &HashValue, radius: u32, hits: &mut Vec<IndexHit>) {
        let Some(query) = self.to_code(query) else {
            return;
        };
        let state = self.read();
        let tail = state.tail_len();
        if tail > 0 && state.tables.is_some() {
            self.tail_scans
                .fetch_add(tail as u64, std::sync::atomic::Ordering::Relaxed);
        }
        state.search(&query, radius, &mut |distance, slot| {
            hits.push(IndexHit {
                distance,
                hash: self.to_hash(&state.codes[slot]),
                key: unpack(state.owners[slot]),
            });
        });
    }

    fn len(&self) -> usize {
        self.read().live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_reads_bits_across_word_boundaries() {
        let code = [0x0123_4567_89ab_cdefu64, 0xfedc_ba98_7654_3210];
        assert_eq!(extract(&code, 0, 8), 0x01);
        assert_eq!(extract(&code, 60, 8), 0xff);
        assert_eq!(extract(&code, 56, 16), 0xeffe);
        assert_eq!(extract(&code, 96, 32), 0x7654_3210);
        assert_eq!(extract(&code, 127, 1), 0);
        assert_eq!(extract(&code, 4, 1), 0);
        assert_eq!(extract(&code, 7, 1), 1);
    }

    #[test]
    fn masks_within_lists_every_mask_once() {
        let masks = masks_within(10, 3);
        let expected: Vec<u32> = (0u32..1024).filter(|m| m.count_ones() <= 3).collect();
        let mut sorted = masks.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected);
        assert_eq!(masks_within(32, 1).len(), 33);
    }

    #[test]
    fn radii_cover_the_radius_by_pigeonhole() {
        for radius in 0..=64 {
            for widths in [split_bits(256, 11), split_bits(256, 16), split_bits(64, 3)] {
                let model: Vec<Width> = widths.iter().map(|&w| Width::new(256, w, 1_000_000)).collect();
                let (radii, _) = allocate_radii(&model, 1_000_000, radius);
                let covered: i32 = radii.iter().map(|r| r + 1).sum();
                assert!(covered as u32 >= (radius + 1).min(widths.iter().sum::<u32>() + 1));
            }
        }
    }

    #[test]
    fn placing_by_partitions_writes_the_same_table_as_placing_directly() {
        let codes: Vec<[u64; 4]> = (1..=20_000u64)
            .map(|i| [i.wrapping_mul(0x9e37_79b9_7f4a_7c15), i, !i, i << 7])
            .collect();
        let owners: Vec<u64> = (0..codes.len() as u64)
            .map(|slot| if slot % 5 == 1 { DEAD } else { slot })
            .collect();
        let layout = Layout {
            start: 0,
            bits: 16,
            low_bits: 3,
        };
        let from = 3_000;
        let table = |partition_bits: u32, block_slots: usize| {
            let mut offsets = vec![0u32; (1 << 13) + 1];
            layout.count(&codes, &owners, from, &mut offsets);
            for bucket in 0..1 << 13 {
                offsets[bucket + 1] += offsets[bucket];
            }
            let mut entries = vec![0u32; offsets[1 << 13] as usize];
            layout.place_in_partitions(
                &codes,
                &owners,
                from,
                &mut entries,
                &mut offsets,
                Staging {
                    partition_bits,
                    block_slots,
                },
            );
            (offsets, entries)
        };
        let direct = table(0, usize::MAX);
        assert_eq!(
            direct.1.len(),
            owners[from..].iter().filter(|&&o| o != DEAD).count()
        );
        for (partition_bits, block_slots) in [(1, usize::MAX), (4, 1_000), (10, 7_777)] {
            assert_eq!(
                table(partition_bits, block_slots),
                direct,
                "{partition_bits} partition bits, blocks of {block_slots}"
            );
        }
    }

    /// The `i`-th of a run of distinct, well-spread PDQ codes made from odd multipliers.
    fn spread_code(i: u64) -> [u64; 4] {
        [
            0x9e37_79b9_7f4a_7c15u64,
            0xc2b2_ae3d_27d4_eb4f,
            0x1656_67b1_9e37_79f9,
            0xff51_afd7_ed55_8ccd,
        ]
        .map(|m| i.wrapping_mul(m).rotate_left((i % 64) as u32))
    }

    #[test]
    fn extended_tables_equal_tables_built_afresh() {
        // Any codes do, the same for both builds.
        let codes: Vec<[u64; 4]> = (1..=45_000u64).map(spread_code).collect();
        // Some dead slots on both sides of the split.
        let owners: Vec<u64> = (0..codes.len() as u64)
            .map(|slot| if slot % 7 == 3 { DEAD } else { slot })
            .collect();
        let live_before = owners[..40_000].iter().filter(|&&o| o != DEAD).count();
        let live = owners.iter().filter(|&&o| o != DEAD).count();
        let config = MihConfig::for_radius(31);
        let before = Tables::build(None, &codes[..40_000], &owners[..40_000], live_before, &config).unwrap();
        let fresh = Tables::build(None, &codes, &owners, live, &config).unwrap();
        let layouts = |tables: &Tables| tables.chunks.iter().map(|c| c.layout).collect::<Vec<_>>();
        assert_eq!(
            layouts(&before),
            layouts(&fresh),
            "the test needs an unchanged layout"
        );
        let extended = Tables::build(Some((&before, 40_000)), &codes, &owners, live, &config).unwrap();
        for (a, b) in extended.chunks.iter().zip(&fresh.chunks) {
            assert_eq!(a.offsets, b.offsets);
            for bucket in 0..a.offsets.len() - 1 {
                let range = a.offsets[bucket] as usize..a.offsets[bucket + 1] as usize;
                let mut x = a.entries[range.clone()].to_vec();
                let mut y = b.entries[range].to_vec();
                x.sort_unstable();
                y.sort_unstable();
                assert_eq!(x, y);
            }
        }
    }

    /// A short tail is folded once searches have scanned it about as much as the fold costs,
    /// and not before; what searches find does not change.
    #[test]
    fn searches_pay_for_their_tail_to_be_folded() {
        let pairs: Vec<(HashValue, EntryKey)> = (1..=5_500u64)
            .map(|i| {
                let code = spread_code(i);
                let key = EntryKey {
                    bank: BankId(1),
                    seq: i,
                };
                (super::super::to_hash(Algorithm::Pdq, &code), key)
            })
            .collect();
        let index = MihIndex::<4>::new(Algorithm::Pdq, MihConfig::for_radius(31));
        index.load_distinct(&pairs[..5_000]);
        index.settle();
        HashIndex::insert_new(&index, &pairs[5_000..]);
        assert_eq!(HashIndex::scanned(&index), 500);
        // No search has paid for anything yet.
        index.fold_paid_for();
        assert_eq!(HashIndex::scanned(&index), 500);

        let chunks = index.read().tables.as_ref().unwrap().chunks.len();
        let searches_to_pay = (5_500.0 * chunks as f64 * FOLD_SCANS_PER_ENTRY / 500.0).ceil() as usize;
        let query = pairs[5_499].0;
        let mut hits = Vec::new();
        for done in 1..=searches_to_pay {
            hits.clear();
            index.search(&query, 31, &mut hits);
            assert!(hits.iter().any(|hit| hit.key.seq == 5_500));
            index.fold_paid_for();
            let folded = HashIndex::scanned(&index) == 0;
            assert_eq!(
                folded,
                done == searches_to_pay,
                "after {done} of {searches_to_pay}"
            );
        }
        hits.clear();
        index.search(&query, 31, &mut hits);
        assert!(hits.iter().any(|hit| hit.key.seq == 5_500));
    }

    #[test]
    fn chunk_count_grows_with_the_store() {
        let small = choose_chunks(256, 10_000, 31).unwrap().len();
        let large = choose_chunks(256, 10_000_000, 31).unwrap().len();
        assert!(small > large, "{small} chunks at 10k, {large} at 10M");
        assert!(
            choose_chunks(256, 10_000_000, 31)
                .unwrap()
                .iter()
                .all(|&w| w <= 26)
        );
    }
}
