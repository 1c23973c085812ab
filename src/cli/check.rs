//! `hashsieve check`: sends images to a running server and prints the verdicts.

use std::path::PathBuf;
use std::process::ExitCode;

use super::client::{ServerArgs, describe, read_file};
use super::{CliResult, wire_algorithms};
use crate::proto as pb;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Only these banks (comma-separated); all enabled banks by default.
    #[arg(long, value_delimiter = ',')]
    banks: Vec<String>,
    /// Only these algorithms (comma-separated); the server's default set otherwise.
    #[arg(long = "algo")]
    algorithms: Option<String>,
    /// Do not match PDQ's mirrored and rotated variants.
    #[arg(long)]
    no_dihedral: bool,
    /// Also match the picture inside the image's margins (borders, bars, caption bands).
    #[arg(long)]
    trim: bool,
    /// Also match windows of the image that leave out its corners and edges, so a caption,
    /// logo or text over an edge or corner hides no match (against banks that store
    /// sub-windows: `add --store-crops`).
    #[arg(long)]
    windows: bool,
    /// One JSON object per file: the CheckResponse in protobuf's JSON mapping, plus "path".
    #[arg(long)]
    json: bool,
    /// Image files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub async fn run(args: CheckArgs) -> CliResult {
    let algorithms = wire_algorithms(args.algorithms.as_deref())?;
    let mut client = args.server.matcher().await?;
    let mut failed = false;
    for path in &args.files {
        let request = read_file(path).map(|image| pb::CheckImageRequest {
            image,
            banks: args.banks.clone(),
            algorithms: algorithms.clone(),
            dihedral: Some(!args.no_dihedral),
            trim: Some(args.trim),
            windows: Some(args.windows),
        });
        let response = match request {
            Ok(request) => client
                .check_image(request)
                .await
                .map(|r| r.into_inner())
                .map_err(describe),
            Err(message) => Err(message),
        };
        match response {
            Ok(response) if args.json => println!("{}", json_line(&response, path)?),
            Ok(response) => print_text(&response, path),
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

fn json_line(response: &pb::CheckResponse, path: &std::path::Path) -> Result<String, String> {
    let mut value = serde_json::to_value(response).map_err(|e| format!("cannot encode JSON: {e}"))?;
    if let Some(object) = value.as_object_mut() {
        object.insert("path".into(), path.display().to_string().into());
    }
    Ok(value.to_string())
}

/// `PATH<TAB>VERDICT`, then one indented line per match.
fn print_text(response: &pb::CheckResponse, path: &std::path::Path) {
    let verdict = pb::Verdict::try_from(response.verdict).unwrap_or(pb::Verdict::Unspecified);
    println!("{}\t{}", path.display(), verdict.as_str_name());
    for found in &response.matches {
        let algorithm = pb::Algorithm::try_from(found.algorithm).unwrap_or(pb::Algorithm::Unspecified);
        let action = pb::Action::try_from(found.action).unwrap_or(pb::Action::Unspecified);
        let transform = pb::Transform::try_from(found.transform).unwrap_or(pb::Transform::Unspecified);
        // Only a mirrored or rotated match names its transform.
        let transform = match transform {
            pb::Transform::Original | pb::Transform::Unspecified => String::new(),
            other => format!("\ttransform={}", other.as_str_name()),
        };
        let low_quality = if found.low_quality { "\tlow_quality" } else { "" };
        println!(
            "  match\tbank={}\tentry={}\t{}\tdistance={}\t{}\tlabels={}{transform}{low_quality}",
            found.bank,
            found.entry_id,
            algorithm.as_str_name(),
            found.distance,
            action.as_str_name(),
            found.labels.join(";"),
        );
    }
}
