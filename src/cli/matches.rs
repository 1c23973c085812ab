//! `hashsieve matches`: what matched recently on any replica, newest first, from the store's
//! match log.

use std::process::ExitCode;

use super::CliResult;
use super::client::{ServerArgs, describe, rfc3339};
use crate::proto as pb;

#[derive(Debug, clap::Args)]
pub struct MatchesArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Only matches of this bank.
    #[arg(long, default_value = "")]
    bank: String,
    /// At most this many (1000 at most; the store keeps `serve --match-log-keep`).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// One JSON object per match (protobuf's JSON mapping).
    #[arg(long)]
    json: bool,
}

pub async fn run(args: MatchesArgs) -> CliResult {
    let request = pb::ListRecentMatchesRequest {
        bank: args.bank,
        limit: args.limit,
    };
    let response = args
        .server
        .banks()
        .await?
        .list_recent_matches(request)
        .await
        .map_err(describe)?;
    for recent in &response.get_ref().matches {
        if args.json {
            println!(
                "{}",
                serde_json::to_string(recent).map_err(|e| format!("cannot encode JSON: {e}"))?
            );
            continue;
        }
        let verdict = pb::Verdict::try_from(recent.verdict).unwrap_or(pb::Verdict::Unspecified);
        let found = recent.r#match.clone().unwrap_or_default();
        let algorithm = pb::Algorithm::try_from(found.algorithm).unwrap_or(pb::Algorithm::Unspecified);
        println!(
            "{}\t{}\tbank={}\tentry={}\t{}\tdistance={}\tlabels={}",
            rfc3339(recent.matched_at.as_ref()),
            verdict.as_str_name(),
            found.bank,
            found.entry_id,
            algorithm.as_str_name(),
            found.distance,
            found.labels.join(";"),
        );
    }
    Ok(ExitCode::SUCCESS)
}
