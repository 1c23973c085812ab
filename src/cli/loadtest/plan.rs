//! What a load test sends and when: the call mix, the stop condition, the pacing, and the
//! queries themselves (random and near-duplicate hashes, images read once into memory).
//!
//! Everything here is synchronous and deterministic for a given seed, so it is unit-tested
//! without a server.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

pub(crate) use crate::cli::parse_duration;

use crate::hash::{Algorithm, HashValue};
use crate::hashlist::HashListReader;

/// The kinds of call a load test makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Hashes,
    Image,
    Stream,
    /// One write round trip: `AddEntries` of a new entry, a `CheckHashes` that must match it,
    /// and `RemoveEntries` of it, so a long run neither grows the store nor the index.
    Write,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Hashes, Kind::Image, Kind::Stream, Kind::Write];

    /// The name used in `--mix` and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hashes => "hashes",
            Kind::Image => "image",
            Kind::Stream => "stream",
            Kind::Write => "write",
        }
    }

    /// Position in per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Images are needed by `CheckImage` and by `CheckStream`, whose items are images.
    fn needs_images(self) -> bool {
        matches!(self, Kind::Image | Kind::Stream)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Relative weights of the kinds of call: `hashes=8,image=1,stream=1,write=1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; Kind::ALL.len()],
}

impl Mix {
    pub fn weight(&self, kind: Kind) -> u32 {
        self.weights[kind.index()]
    }

    pub fn needs_images(&self) -> bool {
        Kind::ALL.iter().any(|k| k.needs_images() && self.weight(*k) > 0)
    }

    /// Whether the run writes, and so needs its write bank and Banks clients.
    pub fn writes(&self) -> bool {
        self.weight(Kind::Write) > 0
    }

    /// Picks a kind with probability proportional to its weight.
    pub fn pick(&self, rng: &mut Rng) -> Kind {
        let total: u64 = self.weights.iter().map(|w| u64::from(*w)).sum();
        let mut roll = rng.below(total);
        for kind in Kind::ALL {
            let weight = u64::from(self.weight(kind));
            if roll < weight {
                return kind;
            }
            roll -= weight;
        }
        // Unreachable while the weights sum to `total`; hashes is the harmless answer.
        Kind::Hashes
    }
}

impl std::str::FromStr for Mix {
    type Err = String;

    /// Kinds left out weigh 0; at least one weight must be positive.
    fn from_str(text: &str) -> Result<Mix, String> {
        let mut weights = [None; Kind::ALL.len()];
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("mix item {part:?} is not KIND=WEIGHT"))?;
            let kind = Kind::ALL
                .into_iter()
                .find(|k| k.name() == name.trim())
                .ok_or_else(|| {
                    format!(
                        "unknown call kind {:?} (expected hashes, image, stream or write)",
                        name.trim()
                    )
                })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("weight of {kind} must be a whole number, got {:?}", weight.trim()))?;
            if weights[kind.index()].replace(weight).is_some() {
                return Err(format!("{kind} is given twice in the mix"));
            }
        }
        let weights = weights.map(|w| w.unwrap_or(0));
        if weights.iter().all(|w| *w == 0) {
            return Err("the mix needs at least one positive weight".into());
        }
        Ok(Mix { weights })
    }
}

/// When a phase of the test ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// No call starts after this long.
    After(Duration),
    /// Exactly this many calls.
    Count(u64),
}

/// How calls are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Each worker starts its next call when the previous one answers.
    Closed,
    /// Calls are due at a fixed rate (per second) whatever the answers; latency counts from
    /// the due time, so a slow server's queueing shows in it (no coordinated omission).
    Open { rate: f64 },
}

/// Offset from the phase start at which call number `ticket` is due at `rate` calls/s.
pub fn due_offset(ticket: u64, rate: f64) -> Duration {
    Duration::try_from_secs_f64(ticket as f64 / rate).unwrap_or(Duration::MAX)
}

/// Hands out calls to the workers of one phase: tickets in order, each with its due time.
pub struct Schedule {
    start: Instant,
    stop: Stop,
    pace: Pace,
    next_ticket: std::sync::atomic::AtomicU64,
}

impl Schedule {
    pub fn new(start: Instant, stop: Stop, pace: Pace) -> Schedule {
        Schedule {
            start,
            stop,
            pace,
            next_ticket: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// Whether calls are due on a rate's grid (open loop) rather than at once.
    pub fn is_open_loop(&self) -> bool {
        matches!(self.pace, Pace::Open { .. })
    }

    /// Claims the next call and returns when it is due, or `None` once the phase is over.
    /// Closed-loop calls are due at once; open-loop ones on the rate's grid, possibly in the
    /// past when every worker was busy (the wait then counts as latency).
    pub fn claim(&self) -> Option<Instant> {
        let ticket = self
            .next_ticket
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Stop::Count(count) = self.stop
            && ticket >= count
        {
            return None;
        }
        let due = match self.pace {
            Pace::Closed => Instant::now(),
            Pace::Open { rate } => self.start.checked_add(due_offset(ticket, rate))?,
        };
        match self.stop {
            Stop::After(length) if due.saturating_duration_since(self.start) >= length => None,
            _ => Some(due),
        }
    }
}

/// A small, fast, seedable generator (SplitMix64): queries need to be reproducible, not secret.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (0 when `bound` is 0), by the multiply-high method.
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let random = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&random[..chunk.len()]);
        }
    }
}

/// Where `CheckHashes` queries come from.
#[derive(Debug, Clone)]
pub struct HashQueries {
    /// Hashes to make near-duplicates of (from `--hashes`).
    known: Vec<HashValue>,
    /// Fraction of queries that are near-duplicates of a known hash; the rest are random PDQ.
    near_fraction: f64,
}

impl HashQueries {
    /// `near_fraction` must be in `[0, 1]` and zero when there are no known hashes.
    pub fn new(known: Vec<HashValue>, near_fraction: f64) -> Result<HashQueries, String> {
        if !(0.0..=1.0).contains(&near_fraction) {
            return Err(format!(
                "--near-fraction must be between 0 and 1, got {near_fraction}"
            ));
        }
        if known.is_empty() && near_fraction > 0.0 {
            return Err("--near-fraction needs --hashes FILE to make near-duplicates of".into());
        }
        Ok(HashQueries { known, near_fraction })
    }

    /// One query hash: a near-duplicate of a known hash, or a random PDQ hash (which matches
    /// nothing in practice: two random hashes differ in about half their bits).
    pub fn next(&self, rng: &mut Rng) -> Query {
        if !self.known.is_empty() && rng.unit() < self.near_fraction {
            let base = &self.known[rng.below(self.known.len() as u64) as usize];
            let mut bytes = base.as_bytes().to_vec();
            let flips = rng.below(u64::from(max_flips(base.algorithm())) + 1) as u32;
            flip_bits(&mut bytes, flips, rng);
            Query::new(base.algorithm(), &bytes)
        } else {
            random_pdq(rng)
        }
    }
}

/// A query hash as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub algorithm: Algorithm,
    pub hex: String,
}

impl Query {
    fn new(algorithm: Algorithm, bytes: &[u8]) -> Query {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let hex = bytes
            .iter()
            .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
            .map(char::from)
            .collect();
        Query { algorithm, hex }
    }
}

/// Bits a near-duplicate may differ by: up to the default threshold, so near-duplicates match
/// a bank that keeps it; exact algorithms (MD5, SHA-256) only match unchanged.
fn max_flips(algorithm: Algorithm) -> u32 {
    match algorithm {
        Algorithm::Pdq => 31,
        Algorithm::Md5 | Algorithm::Sha256 => 0,
        Algorithm::PHash | Algorithm::DHash => 8,
        Algorithm::AHash => 6,
    }
}

pub fn random_pdq(rng: &mut Rng) -> Query {
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes);
    Query::new(Algorithm::Pdq, &bytes)
}

/// The entry a write call adds, checks for and removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteEntry {
    pub hash: Query,
    /// External id, so an entry a run left behind (a call cut short by its timeout) can be
    /// told apart from the bank's other entries.
    pub id: String,
}

/// A fresh entry: a random PDQ hash, which no other worker draws and no stored hash is near in
/// practice, so the check that follows the write matches exactly this entry.
pub fn write_entry(rng: &mut Rng) -> WriteEntry {
    let hash = random_pdq(rng);
    let id = format!("loadtest-{}", &hash.hex[..16]);
    WriteEntry { hash, id }
}

/// Flips `count` distinct random bits of `bytes` (all of them when `count` exceeds its size).
pub fn flip_bits(bytes: &mut [u8], count: u32, rng: &mut Rng) {
    let bits = bytes.len() as u64 * 8;
    let mut flipped = vec![false; bytes.len() * 8];
    let mut remaining = u64::from(count).min(bits);
    while remaining > 0 {
        let bit = rng.below(bits) as usize;
        if !flipped[bit] {
            flipped[bit] = true;
            bytes[bit / 8] ^= 1 << (bit % 8);
            remaining -= 1;
        }
    }
}

/// Reads a hash list (CSV or bare hex, PDQ unless a column says otherwise) for near-duplicates.
/// Bad rows are skipped with one warning; a list with no good row is an error.
pub fn read_hash_list(path: &Path) -> Result<Vec<HashValue>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader =
        HashListReader::new(file, Algorithm::Pdq, 0).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hashes = Vec::new();
    let mut rejected = Vec::new();
    for row in reader {
        match row {
            Ok(row) => hashes.push(row.entry.hash),
            Err(error) => rejected.push(error),
        }
    }
    if let Some(first) = rejected.first() {
        eprintln!(
            "hashsieve: {}: skipped {} bad rows (first, line {}: {})",
            path.display(),
            rejected.len(),
            first.line,
            first.reason
        );
    }
    if hashes.is_empty() {
        return Err(format!("{}: no usable hash in the list", path.display()));
    }
    Ok(hashes)
}

/// Reads every file directly in `dir` (not hidden, not in subfolders), sorted by name, once,
/// so the test measures the server and not the disk. Files that are not images are sent as
/// they are and their errors counted, which is also a way to load-test the error path.
pub fn read_images(dir: &Path) -> Result<Vec<Vec<u8>>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && !hidden {
            paths.push(entry.path());
        }
    }
    paths.sort();
    let images: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
        .collect::<Result<_, _>>()?;
    if images.is_empty() {
        return Err(format!("{}: no files to send as images", dir.display()));
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_weights_and_leaves_the_rest_at_zero() {
        let mix: Mix = "hashes=8, image=1,stream=2".parse().unwrap();
        assert_eq!(mix.weights, [8, 1, 2, 0]);
        assert!(!mix.writes());
        let mix: Mix = "image=1".parse().unwrap();
        assert_eq!(mix.weights, [0, 1, 0, 0]);
        assert!(mix.needs_images());
        assert!(!"hashes=1".parse::<Mix>().unwrap().needs_images());
    }

    #[test]
    fn mix_takes_writes_which_need_no_images() {
        let mix: Mix = "hashes=6,image=2,stream=1,write=1".parse().unwrap();
        assert_eq!(mix.weights, [6, 2, 1, 1]);
        assert_eq!(mix.weight(Kind::Write), 1);
        assert!(mix.writes());
        let mix: Mix = "write=3".parse().unwrap();
        assert_eq!(mix.weights, [0, 0, 0, 3]);
        assert!(mix.writes());
        assert!(!mix.needs_images());
        assert_eq!(mix.pick(&mut Rng::new(1)), Kind::Write);
        assert_eq!(Kind::Write.name(), "write");
        assert_eq!(Kind::Write.index(), 3);
    }

    #[test]
    fn mix_refuses_bad_input_with_a_reason() {
        for (text, reason) in [
            ("hashes", "not KIND=WEIGHT"),
            ("video=1", "unknown call kind"),
            ("writes=1", "stream or write"),
            ("write=1,write=1", "twice"),
            ("hashes=-1", "whole number"),
            ("hashes=1,hashes=2", "twice"),
            ("hashes=0,image=0", "at least one positive"),
            ("", "at least one positive"),
        ] {
            let error = text.parse::<Mix>().unwrap_err();
            assert!(error.contains(reason), "{text:?}: {error}");
        }
    }

    #[test]
    fn mix_picks_in_proportion_and_never_a_zero_weight() {
        let mix: Mix = "hashes=3,stream=1".parse().unwrap();
        let mut rng = Rng::new(7);
        let mut counts = [0u32; Kind::ALL.len()];
        for _ in 0..4000 {
            counts[mix.pick(&mut rng).index()] += 1;
        }
        assert_eq!(counts[Kind::Image.index()], 0);
        assert_eq!(counts[Kind::Write.index()], 0);
        // 3000 expected; 6 standard deviations is about ±165.
        assert!((2800..3200).contains(&counts[Kind::Hashes.index()]), "{counts:?}");

        let mix: Mix = "hashes=6,image=2,stream=1,write=1".parse().unwrap();
        let mut counts = [0u32; Kind::ALL.len()];
        for _ in 0..10_000 {
            counts[mix.pick(&mut rng).index()] += 1;
        }
        // 1000 expected, standard deviation 30.
        assert!((820..1180).contains(&counts[Kind::Write.index()]), "{counts:?}");
    }

    #[test]
    fn write_entries_are_fresh_random_pdq_hashes_named_by_their_id() {
        let mut rng = Rng::new(5);
        let first = write_entry(&mut rng);
        let second = write_entry(&mut rng);
        assert_ne!(first.hash, second.hash);
        assert_eq!(first.hash.algorithm, Algorithm::Pdq);
        assert!(HashValue::from_hex(Algorithm::Pdq, &first.hash.hex).is_ok());
        assert_eq!(first.id, format!("loadtest-{}", &first.hash.hex[..16]));
        assert_eq!(write_entry(&mut Rng::new(5)), first);
    }

    #[test]
    fn durations_take_units() {
        for (text, millis) in [
            ("30s", 30_000),
            ("2m", 120_000),
            ("500ms", 500),
            ("1.5s", 1_500),
            ("10", 10_000),
            ("1h", 3_600_000),
            ("7d", 604_800_000),
        ] {
            assert_eq!(
                parse_duration(text).unwrap(),
                Duration::from_millis(millis),
                "{text}"
            );
        }
        assert!(parse_duration("3w").unwrap_err().contains("unknown time unit"));
        assert!(parse_duration("s").unwrap_err().contains("not a duration"));
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn count_schedule_hands_out_exactly_count_tickets() {
        let schedule = Schedule::new(Instant::now(), Stop::Count(3), Pace::Closed);
        assert_eq!((0..10).filter_map(|_| schedule.claim()).count(), 3);
    }

    #[test]
    fn open_loop_tickets_are_due_on_the_rate_grid_until_the_duration() {
        assert_eq!(due_offset(0, 100.0), Duration::ZERO);
        assert_eq!(due_offset(150, 100.0), Duration::from_millis(1500));
        let start = Instant::now();
        let schedule = Schedule::new(
            start,
            Stop::After(Duration::from_secs(1)),
            Pace::Open { rate: 10.0 },
        );
        let due: Vec<Duration> = std::iter::from_fn(|| schedule.claim())
            .map(|d| d - start)
            .collect();
        assert_eq!(due.len(), 10);
        assert_eq!(due[9], Duration::from_millis(900));
    }

    fn distance(a: &Query, b: &Query) -> u32 {
        let a = HashValue::from_hex(a.algorithm, &a.hex).unwrap();
        let b = HashValue::from_hex(b.algorithm, &b.hex).unwrap();
        a.distance(&b).unwrap()
    }

    #[test]
    fn near_duplicates_differ_by_exactly_the_flipped_bits() {
        let mut rng = Rng::new(1);
        let base = random_pdq(&mut rng);
        let base_bytes = HashValue::from_hex(Algorithm::Pdq, &base.hex).unwrap();
        for count in [0, 1, 31, 256, 300] {
            let mut bytes = base_bytes.as_bytes().to_vec();
            flip_bits(&mut bytes, count, &mut rng);
            assert_eq!(
                distance(&base, &Query::new(Algorithm::Pdq, &bytes)),
                count.min(256)
            );
        }
    }

    #[test]
    fn queries_mix_near_duplicates_and_random_hashes() {
        let mut rng = Rng::new(2);
        let known = random_pdq(&mut rng);
        let known_hash = HashValue::from_hex(Algorithm::Pdq, &known.hex).unwrap();
        let queries = HashQueries::new(vec![known_hash], 0.5).unwrap();
        let near = (0..1000)
            .map(|_| queries.next(&mut rng))
            .filter(|q| distance(&known, q) <= 31)
            .count();
        assert!((400..600).contains(&near), "{near}");
        assert!(HashQueries::new(Vec::new(), 0.1).is_err());
        assert!(HashQueries::new(vec![known_hash], 1.5).is_err());
    }

    #[test]
    fn the_same_seed_gives_the_same_queries() {
        let a: Vec<u64> = std::iter::repeat_with({
            let mut rng = Rng::new(42);
            move || rng.next_u64()
        })
        .take(5)
        .collect();
        let mut rng = Rng::new(42);
        assert_eq!(a, (0..5).map(|_| rng.next_u64()).collect::<Vec<_>>());
    }
}
