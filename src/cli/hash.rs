//! `hashsieve hash`: hashes files offline, exactly as the server would.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{CliResult, parse_algorithms};
use crate::hash::decode::DecodeLimits;
use crate::hash::{HashOptions, hash_image};

#[derive(Debug, clap::Args)]
pub struct HashArgs {
    /// Algorithms, comma-separated: pdq, phash, dhash, ahash, md5, sha256.
    #[arg(long = "algo", default_value = "pdq")]
    algorithms: String,
    /// One JSON object per line: {"algorithm", "hex", "quality", "path"}.
    #[arg(long)]
    json: bool,
    /// Image files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Prints `ALGORITHM<TAB>HEX<TAB>QUALITY<TAB>PATH` per file and algorithm (quality `-` where
/// the algorithm has none). A file that fails is reported on stderr and the others go on.
pub fn run(args: HashArgs) -> CliResult {
    let algorithms = parse_algorithms(&args.algorithms)?;
    if algorithms.is_empty() {
        return Err("--algo needs at least one algorithm".into());
    }
    let options = HashOptions {
        algorithms,
        ..HashOptions::default()
    };
    let limits = DecodeLimits::default();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = false;
    for path in &args.files {
        let hashes = super::client::read_file(path).and_then(|bytes| {
            hash_image(&bytes, &options, &limits).map_err(|e| format!("{}: {e}", path.display()))
        });
        let hashes = match hashes {
            Ok(hashes) => hashes,
            Err(message) => {
                eprintln!("hashsieve: {message}");
                failed = true;
                continue;
            }
        };
        for computed in &hashes.hashes {
            let algorithm = computed.value.algorithm().name();
            let hex = computed.value.to_hex();
            let line = if args.json {
                serde_json::json!({
                    "algorithm": algorithm,
                    "hex": hex,
                    "quality": computed.quality,
                    "path": path.display().to_string(),
                })
                .to_string()
            } else {
                let quality = computed
                    .quality
                    .map(|q| q.to_string())
                    .unwrap_or_else(|| "-".into());
                format!("{algorithm}\t{hex}\t{quality}\t{}", path.display())
            };
            writeln!(out, "{line}").map_err(|e| format!("cannot write output: {e}"))?;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
