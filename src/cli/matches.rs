//! `hashsieve matches`: what matched recently on any replica, newest first, from the store's
//! match log; with `--follow`, new matches as they are recorded.

use std::process::ExitCode;
use std::time::Duration;

use super::client::{ServerArgs, describe, rfc3339};
use super::{CliResult, parse_duration};
use crate::matcher::RECENT_MATCHES;
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
    /// List the last matches oldest first, then keep printing new ones as they are recorded,
    /// until interrupted.
    #[arg(long)]
    follow: bool,
    /// With `--follow`: how often to ask for new matches.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    interval: Duration,
}

pub async fn run(args: MatchesArgs) -> CliResult {
    let mut banks = args.server.banks().await?;
    let mut list = async |limit: u32| -> Result<Vec<pb::RecentMatch>, String> {
        let request = pb::ListRecentMatchesRequest {
            bank: args.bank.clone(),
            limit,
        };
        Ok(banks
            .list_recent_matches(request)
            .await
            .map_err(describe)?
            .into_inner()
            .matches)
    };
    let first = list(args.limit).await?;
    if !args.follow {
        for recent in &first {
            print(recent, args.json)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    // The log numbers matches in the order they were written: each round prints, oldest
    // first, those past the last printed.
    let mut last = first.first().map_or(0, |r| r.sequence);
    for recent in first.iter().rev() {
        print(recent, args.json)?;
    }
    loop {
        tokio::time::sleep(args.interval).await;
        let fresh: Vec<pb::RecentMatch> = list(RECENT_MATCHES as u32)
            .await?
            .into_iter()
            .take_while(|r| r.sequence > last)
            .collect();
        if fresh.len() == RECENT_MATCHES {
            eprintln!("more than {RECENT_MATCHES} matches since the last look: older ones skipped");
        }
        if let Some(newest) = fresh.first() {
            last = newest.sequence;
        }
        for recent in fresh.iter().rev() {
            print(recent, args.json)?;
        }
    }
}

fn print(recent: &pb::RecentMatch, json: bool) -> Result<(), String> {
    if json {
        println!(
            "{}",
            serde_json::to_string(recent).map_err(|e| format!("cannot encode JSON: {e}"))?
        );
        return Ok(());
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
    Ok(())
}
