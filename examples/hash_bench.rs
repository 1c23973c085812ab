//! Times hashsieve's in-process decode + PDQ per image file: the Rust side of `bench/hashing`
//! (see bench/README.md).
//!
//! For each file (read into memory first, outside the timing) it runs, `--repeat` times each:
//! `decode_image` alone, `pdq_from_rgb8` alone on the decoded pixels, and `hash_image` with PDQ
//! only (no dihedrals), which is decode + PDQ as the service runs it. It prints one
//! tab-separated line per file: `PATH HASH QUALITY DECODE_MS PDQ_MS TOTAL_MS` (medians over the
//! repeats), to be compared with Pillow + `pdqhash` by bench/hashing_bench.py.
//!
//! Run: `cargo run --release --example hash_bench -- --repeat 5 FILE...`

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use hashsieve::hash::decode::{DecodeLimits, decode_image};
use hashsieve::hash::{Algorithm, HashOptions, hash_image, pdq};

#[derive(Parser)]
struct Args {
    /// Timed runs per file and per stage; the median is printed.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    files: Vec<PathBuf>,
}

fn median_ms(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Runs `work` `repeat` times and returns the median wall time in milliseconds.
fn time_ms<T>(repeat: usize, mut work: impl FnMut() -> T) -> f64 {
    let samples = (0..repeat.max(1))
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(work());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median_ms(samples)
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let limits = DecodeLimits::default();
    let options = HashOptions {
        algorithms: vec![Algorithm::Pdq],
        pdq_dihedral: false,
        ..HashOptions::default()
    };
    for path in &args.files {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let decoded = match decode_image(&bytes, &limits) {
            Ok(decoded) => decoded,
            Err(error) => {
                eprintln!("{}: skipped: {error}", path.display());
                continue;
            }
        };
        let (width, height) = (decoded.rgb.width() as usize, decoded.rgb.height() as usize);
        let decode_ms = time_ms(args.repeat, || decode_image(&bytes, &limits));
        let pdq_ms = time_ms(args.repeat, || {
            pdq::pdq_from_rgb8(decoded.rgb.as_raw(), width, height)
        });
        let total_ms = time_ms(args.repeat, || hash_image(&bytes, &options, &limits));
        let output = pdq::pdq_from_rgb8(decoded.rgb.as_raw(), width, height);
        println!(
            "{}\t{}\t{}\t{decode_ms:.4}\t{pdq_ms:.4}\t{total_ms:.4}",
            path.display(),
            output.hash,
            output.quality
        );
    }
    Ok(())
}
