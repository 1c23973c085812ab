//! Builds one of hashsieve's index engines from a file of raw hashes and runs radius queries
//! against it on one thread: the Rust side of `bench/index_vs_faiss` (see bench/README.md).
//!
//! Input files are rows of `bits / 8` bytes (the stored hashes; row i has id i) and query rows
//! of the same width. Prints one JSON line (engine, n, build_s, memory_mb, peak_mb, queries,
//! query_s, qps) and writes the hits as ids to `--out`: u32 queries answered A, A u32 hit
//! counts, then the ids, query by query (little-endian).
//!
//! Queries go through `HashIndex::search` one at a time, as `Matcher` calls it; nothing here
//! needs a batch API, so it builds against any engine behind the trait.
//!
//! Run: `cargo run --release --example index_bench -- --bits 256 --data base.bin
//! --queries queries.bin --radius 31 --engine linear --out answers.bin`

use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use hashsieve::bank::{BankId, EntryKey};
use hashsieve::hash::{Algorithm, HashValue};
use hashsieve::index::{HashIndex, LinearIndex, MihConfig, MihIndex};

#[derive(Parser)]
struct Args {
    /// 256 (PDQ) or 64 (pHash).
    #[arg(long, default_value_t = 256)]
    bits: u32,
    /// Stored hashes: rows of bits / 8 bytes.
    #[arg(long)]
    data: PathBuf,
    /// Query hashes: rows of bits / 8 bytes.
    #[arg(long)]
    queries: PathBuf,
    #[arg(long, default_value_t = 31)]
    radius: u32,
    /// Index engine: see `new_engine`.
    #[arg(long, default_value = "linear")]
    engine: String,
    /// Stop querying after this many seconds (the answers cover the queries done by then).
    #[arg(long, default_value_t = 60.0)]
    budget: f64,
    /// Where to write the hits; none if absent.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Add the last this many stored hashes after the build, as live writes do, so that
    /// searches find them in the tail they scan until the next fold.
    #[arg(long, default_value_t = 0)]
    unsettled: usize,
}

/// The engines this example can build: the plain scan, and the multi-index engine the
/// service uses, tuned for the radius searched.
fn new_engine(name: &str, algorithm: Algorithm, radius: u32) -> Option<Box<dyn HashIndex>> {
    let config = MihConfig::for_radius(radius);
    match (name, algorithm.byte_len()) {
        ("linear", 32) => Some(Box::new(LinearIndex::<4>::new(algorithm))),
        ("linear", 8) => Some(Box::new(LinearIndex::<1>::new(algorithm))),
        ("mih", 32) => Some(Box::new(MihIndex::<4>::new(algorithm, config))),
        ("mih", 8) => Some(Box::new(MihIndex::<1>::new(algorithm, config))),
        _ => None,
    }
}

fn read_rows(path: &PathBuf, algorithm: Algorithm) -> Result<Vec<HashValue>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let width = algorithm.byte_len();
    if bytes.len() % width != 0 {
        return Err(format!(
            "{}: not a whole number of {width}-byte rows",
            path.display()
        ));
    }
    bytes
        .chunks_exact(width)
        .map(|row| HashValue::from_bytes(algorithm, row).map_err(|e| e.to_string()))
        .collect()
}

/// Resident memory now, and the peak so far, in bytes (Linux /proc).
fn rss_bytes() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let algorithm = match args.bits {
        256 => Algorithm::Pdq,
        64 => Algorithm::PHash,
        other => return Err(format!("--bits must be 256 or 64, not {other}")),
    };
    let index = new_engine(&args.engine, algorithm, args.radius)
        .ok_or_else(|| format!("unknown engine {:?} for {} bits", args.engine, args.bits))?;
    let stored = read_rows(&args.data, algorithm)?;
    let queries = read_rows(&args.queries, algorithm)?;
    if stored.iter().collect::<HashSet<_>>().len() != stored.len() {
        return Err("stored hashes must be distinct (ids are row numbers)".into());
    }
    // Row i is stored under sequence number i, so a hit's key is its row's id.
    let pairs: Vec<(HashValue, EntryKey)> = stored
        .iter()
        .zip(0..)
        .map(|(hash, seq)| (*hash, EntryKey { bank: BankId(0), seq }))
        .collect();

    // Build: in batches, as `Matcher` rebuilds the index from the store at start.
    let (rss_before, _) = rss_bytes();
    let start = Instant::now();
    let (built, written) = pairs.split_at(pairs.len() - args.unsettled.min(pairs.len()));
    for batch in built.chunks(65_536) {
        index.load_distinct(batch);
    }
    index.settle();
    index.insert_new(written);
    let build = start.elapsed();
    let (rss_after, _) = rss_bytes();
    drop(pairs);
    if index.len() != stored.len() {
        return Err(format!("index holds {} of {} hashes", index.len(), stored.len()));
    }

    let budget = Duration::from_secs_f64(args.budget);
    let mut counts: Vec<u32> = Vec::with_capacity(queries.len());
    let mut found: Vec<u32> = Vec::new();
    let mut hits = Vec::new();
    // Only the search calls are timed.
    let mut searching = Duration::ZERO;
    let start = Instant::now();
    for query in &queries {
        hits.clear();
        let call = Instant::now();
        index.search(query, args.radius, &mut hits);
        searching += call.elapsed();
        counts.push(hits.len() as u32);
        found.extend(hits.iter().map(|hit| hit.key.seq as u32));
        if start.elapsed() > budget {
            break;
        }
    }
    let elapsed = searching.as_secs_f64();
    let (_, peak) = rss_bytes();

    if let Some(out) = &args.out {
        let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
        let mut writer = BufWriter::new(file);
        let write_all = |writer: &mut BufWriter<std::fs::File>, values: &[u32]| {
            values
                .iter()
                .try_for_each(|value| writer.write_all(&value.to_le_bytes()))
        };
        (|| {
            write_all(&mut writer, &[counts.len() as u32])?;
            write_all(&mut writer, &counts)?;
            write_all(&mut writer, &found)?;
            writer.flush()
        })()
        .map_err(|e| format!("{}: {e}", out.display()))?;
    }

    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    let stats = serde_json::json!({
        "engine": args.engine,
        "n": stored.len(),
        "build_s": build.as_secs_f64(),
        "memory_mb": mib(rss_after.saturating_sub(rss_before)),
        "peak_mb": mib(peak),
        "queries": counts.len(),
        "query_s": elapsed,
        "qps": counts.len() as f64 / elapsed,
        "scanned": index.scanned(),
    });
    println!("{stats}");
    Ok(())
}
