//! Entry commands against a running server: `import`, `add`, `remove`, `export`.

use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::bank::split_labels;
use super::client::{ServerArgs, describe, read_file, rfc3339};
use super::{CliResult, wire_algorithms};
use crate::grpc::algorithm_to_pb;
use crate::hash::{Algorithm, HashValue};
use crate::hashlist::{HashListReader, RowError};
use crate::proto as pb;

/// Entries per streamed message.
const IMPORT_BATCH: usize = 2_000;
/// Rejections printed after an import; the count covers them all.
const PRINTED_REJECTIONS: usize = 20;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long)]
    bank: String,
    /// Algorithm of rows without an `algorithm` column (and of bare hex lists).
    #[arg(long = "algo", default_value = "pdq")]
    algorithm: Algorithm,
    /// Store PDQ rows even when their `quality` is below the bank's minimum.
    #[arg(long)]
    allow_low_quality: bool,
    /// CSV with a header row and a `hash` column (optional `algorithm`, `id`, `labels` separated
    /// by `;`, `source`, `note`, `quality`), or bare hex hashes one per line; `-` reads stdin.
    file: PathBuf,
}

/// Maps a streamed entry's position back to its line in the file. Lines run one per entry
/// except where rows were skipped or rejected locally, so only those jumps are kept: memory
/// grows with the irregularities of the file, not its length.
#[derive(Default)]
struct LineMap {
    jumps: Vec<(u64, u64)>,
}

impl LineMap {
    fn record(&mut self, index: u64, line: u64) {
        let delta = line - index.min(line);
        if self.jumps.last().is_none_or(|(_, last)| *last != delta) {
            self.jumps.push((index, delta));
        }
    }

    fn line_of(&self, index: u64) -> u64 {
        let at = self.jumps.partition_point(|(start, _)| *start <= index);
        index + at.checked_sub(1).map(|i| self.jumps[i].1).unwrap_or(0)
    }
}

struct ReadSummary {
    line_map: LineMap,
    rejected: u64,
    rejections: Vec<RowError>,
}

/// Reads and parses the list on its own thread (constant memory: batches go out as they fill)
/// and returns the local rejections and the line map when the file ends.
fn spawn_reader(
    args: &ImportArgs,
    tx: mpsc::Sender<pb::AddEntriesRequest>,
    progress: ProgressBar,
) -> std::thread::JoinHandle<Result<ReadSummary, String>> {
    let (file, algorithm, bank) = (args.file.clone(), args.algorithm, args.bank.clone());
    let allow_low_quality = args.allow_low_quality;
    let message = move |bank: String, entries: Vec<pb::Entry>| pb::AddEntriesRequest {
        bank,
        entries,
        allow_low_quality,
    };
    std::thread::spawn(move || {
        let input: Box<dyn std::io::Read> = if file.as_os_str() == "-" {
            Box::new(std::io::stdin())
        } else {
            Box::new(std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?)
        };
        let reader =
            HashListReader::new(input, algorithm, 0).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut summary = ReadSummary {
            line_map: LineMap::default(),
            rejected: 0,
            rejections: Vec::new(),
        };
        let mut batch = Vec::with_capacity(IMPORT_BATCH);
        let mut sent: u64 = 0;
        // Rows read since the progress bar last heard: it reads the clock on every update,
        // which cost 2% of a load's client time when done per row.
        let mut unreported: u64 = 0;
        for row in reader {
            unreported += 1;
            match row {
                Ok(row) => {
                    summary.line_map.record(sent, row.line);
                    sent += 1;
                    batch.push(pb::Entry {
                        hash: Some(pb::HashValue {
                            algorithm: algorithm_to_pb(row.entry.hash.algorithm()) as i32,
                            hex: row.entry.hash.to_hex(),
                        }),
                        id: row.entry.meta.id,
                        labels: row.entry.meta.labels,
                        source: row.entry.meta.source,
                        note: row.entry.meta.note,
                        added_at: None,
                        quality: row.entry.quality.map(u32::from),
                    });
                }
                Err(rejection) => {
                    summary.rejected += 1;
                    if summary.rejections.len() < PRINTED_REJECTIONS {
                        summary.rejections.push(rejection);
                    }
                }
            }
            if batch.len() >= IMPORT_BATCH {
                progress.inc(std::mem::take(&mut unreported));
                let entries = std::mem::replace(&mut batch, Vec::with_capacity(IMPORT_BATCH));
                if tx.blocking_send(message(bank.clone(), entries)).is_err() {
                    return Err("the server stopped reading the upload".into());
                }
            }
        }
        progress.inc(unreported);
        // Always send a last message, so even an empty list names its bank.
        let _ = tx.blocking_send(message(bank, batch));
        Ok(summary)
    })
}

pub async fn import(args: ImportArgs) -> CliResult {
    let mut client = args.server.banks().await?;
    // Fail before reading a large file when the bank does not exist.
    client
        .get_bank(pb::GetBankRequest {
            name: args.bank.clone(),
        })
        .await
        .map_err(describe)?;
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} {human_pos} rows read ({per_sec}) {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    progress.enable_steady_tick(std::time::Duration::from_millis(200));
    let (tx, rx) = mpsc::channel(4);
    let reader = spawn_reader(&args, tx, progress.clone());
    let response = client.add_entries(ReceiverStream::new(rx)).await;
    let summary = reader
        .join()
        .map_err(|_| "the file reader failed".to_string())??;
    progress.finish_and_clear();
    let response = response.map_err(describe)?.into_inner();

    let mut rejections: Vec<(u64, String)> = summary
        .rejections
        .into_iter()
        .map(|r| (r.line, r.reason))
        .collect();
    rejections.extend(
        response
            .rejections
            .iter()
            .map(|r| (summary.line_map.line_of(r.index), r.reason.clone())),
    );
    rejections.sort();
    let rejected = summary.rejected + response.rejected;
    println!(
        "imported {} into {}: {} added, {} updated, {} rejected",
        args.file.display(),
        args.bank,
        response.added,
        response.updated,
        rejected
    );
    if response.low_quality > 0 {
        println!(
            "  {} of the rejected rows are PDQ hashes below the bank's minimum quality (--allow-low-quality stores them)",
            response.low_quality
        );
    }
    for (line, reason) in rejections.iter().take(PRINTED_REJECTIONS) {
        println!("  line {line}: {reason}");
    }
    if rejected as usize > PRINTED_REJECTIONS.min(rejections.len()) {
        println!(
            "  … and {} more",
            rejected as usize - PRINTED_REJECTIONS.min(rejections.len())
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long)]
    bank: String,
    /// External id of the entries (default: each file's name).
    #[arg(long)]
    id: Option<String>,
    /// Labels, separated by `;`.
    #[arg(long, default_value = "")]
    labels: String,
    #[arg(long, default_value = "")]
    source: String,
    #[arg(long, default_value = "")]
    note: String,
    /// Algorithms to store (comma-separated); default PDQ, MD5 and SHA-256.
    #[arg(long = "algo")]
    algorithms: Option<String>,
    /// Store PDQ hashes even below the bank's minimum quality.
    #[arg(long)]
    allow_low_quality: bool,
    /// Also store the PDQ of the picture inside each image's margins (see `check --trim`).
    #[arg(long)]
    trim: bool,
    /// Also store the PDQ of each image turned and mirrored (7 more entries an image).
    #[arg(long)]
    store_dihedral: bool,
    /// Also store the PDQ of up to 74 sub-windows of each image, for cropped (also to a square)
    /// and captioned copies.
    #[arg(long)]
    store_crops: bool,
    /// Also store the PDQ of each image turned by 1° to 10° each way (40 more entries).
    #[arg(long)]
    store_rotations: bool,
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub async fn add(args: AddArgs) -> CliResult {
    let algorithms = wire_algorithms(args.algorithms.as_deref())?;
    let mut client = args.server.banks().await?;
    let mut failed = false;
    for path in &args.files {
        let id = args.id.clone().unwrap_or_else(|| {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let result = match read_file(path) {
            Ok(image) => client
                .add_image(pb::AddImageRequest {
                    bank: args.bank.clone(),
                    image,
                    algorithms: algorithms.clone(),
                    id,
                    labels: split_labels(&args.labels),
                    source: args.source.clone(),
                    note: args.note.clone(),
                    allow_low_quality: args.allow_low_quality,
                    trim: args.trim,
                    store_dihedral: args.store_dihedral,
                    store_crops: args.store_crops,
                    store_rotations: args.store_rotations,
                })
                .await
                .map(|r| r.into_inner())
                .map_err(describe),
            Err(message) => Err(message),
        };
        match result {
            Ok(response) => {
                let hashes: Vec<String> = response
                    .hashes
                    .iter()
                    .map(|h| {
                        let algorithm =
                            pb::Algorithm::try_from(h.algorithm).unwrap_or(pb::Algorithm::Unspecified);
                        let name = algorithm
                            .as_str_name()
                            .trim_start_matches("ALGORITHM_")
                            .to_lowercase();
                        if h.quality >= 0 {
                            format!("{name}={} (quality {})", h.hex, h.quality)
                        } else {
                            format!("{name}={}", h.hex)
                        }
                    })
                    .collect();
                println!(
                    "{}\t{} added, {} updated\t{}",
                    path.display(),
                    response.added,
                    response.updated,
                    hashes.join(" ")
                );
            }
            Err(message) => {
                eprintln!("hashsieve: {}: {message}", path.display());
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long)]
    bank: String,
    /// Remove every entry with this external id (repeatable).
    #[arg(long = "id")]
    ids: Vec<String>,
    /// Algorithm of the hashes given without an `algorithm:` prefix.
    #[arg(long = "algo", default_value = "pdq")]
    algorithm: Algorithm,
    /// Hashes to remove, as hex or `algorithm:hex`.
    hashes: Vec<String>,
}

pub async fn remove(args: RemoveArgs) -> CliResult {
    let hashes = args
        .hashes
        .iter()
        .map(|text| {
            let (algorithm, hex) = match text.split_once(':') {
                Some((name, hex)) => (name.parse::<Algorithm>().map_err(|e| e.to_string())?, hex),
                None => (args.algorithm, text.as_str()),
            };
            let value = HashValue::from_hex(algorithm, hex).map_err(|e| e.to_string())?;
            Ok(pb::HashValue {
                algorithm: algorithm_to_pb(algorithm) as i32,
                hex: value.to_hex(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let response = args
        .server
        .banks()
        .await?
        .remove_entries(pb::RemoveEntriesRequest {
            bank: args.bank.clone(),
            hashes,
            ids: args.ids,
        })
        .await
        .map_err(describe)?;
    println!(
        "removed {} entries from {}",
        response.get_ref().removed,
        args.bank
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long)]
    bank: String,
    /// Only this algorithm.
    #[arg(long = "algo")]
    algorithm: Option<Algorithm>,
}

/// Writes CSV in the import format (plus `added_at`), so an export re-imports as is.
pub async fn export(args: ExportArgs) -> CliResult {
    let request = pb::ExportEntriesRequest {
        bank: args.bank,
        algorithm: args.algorithm.map(|a| algorithm_to_pb(a) as i32).unwrap_or(0),
    };
    let mut stream = args
        .server
        .banks()
        .await?
        .export_entries(request)
        .await
        .map_err(describe)?
        .into_inner();
    let mut writer = csv::Writer::from_writer(std::io::stdout().lock());
    let write_error = |e: csv::Error| format!("cannot write output: {e}");
    writer
        .write_record(["algorithm", "hash", "id", "labels", "source", "note", "added_at"])
        .map_err(write_error)?;
    while let Some(message) = stream.next().await {
        for entry in message.map_err(describe)?.entries {
            let hash = entry.hash.unwrap_or_default();
            let algorithm = pb::Algorithm::try_from(hash.algorithm).unwrap_or(pb::Algorithm::Unspecified);
            let added_at = rfc3339(entry.added_at.as_ref());
            writer
                .write_record([
                    algorithm
                        .as_str_name()
                        .trim_start_matches("ALGORITHM_")
                        .to_lowercase()
                        .as_str(),
                    hash.hex.as_str(),
                    entry.id.as_str(),
                    entry.labels.join(";").as_str(),
                    entry.source.as_str(),
                    entry.note.as_str(),
                    added_at.as_str(),
                ])
                .map_err(write_error)?;
        }
    }
    writer.flush().map_err(|e| format!("cannot write output: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::LineMap;

    #[test]
    fn line_map_follows_skipped_lines() {
        let mut map = LineMap::default();
        // Header on line 1; entries on lines 2, 3, then 6, 7 (two lines skipped).
        for (index, line) in [(0, 2), (1, 3), (2, 6), (3, 7)] {
            map.record(index, line);
        }
        let lines: Vec<u64> = (0..4).map(|i| map.line_of(i)).collect();
        assert_eq!(lines, vec![2, 3, 6, 7]);
        assert_eq!(map.jumps.len(), 2);
    }
}
