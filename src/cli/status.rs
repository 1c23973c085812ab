//! `hashsieve status`: what a server holds, and how closely it follows a shared store.

use std::process::ExitCode;

use super::CliResult;
use super::client::{ServerArgs, describe};
use crate::proto as pb;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// One JSON object (protobuf's JSON mapping).
    #[arg(long)]
    json: bool,
}

pub async fn run(args: StatusArgs) -> CliResult {
    let response = args
        .server
        .matcher()
        .await?
        .get_status(pb::GetStatusRequest {})
        .await
        .map_err(describe)?
        .into_inner();
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&response).map_err(|e| format!("cannot encode JSON: {e}"))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "store={}\tbanks={}\tentries={}",
        response.store, response.banks, response.entries
    );
    if let Some(feed) = &response.feed {
        println!(
            "feed\tposition={}\thead={}\tbehind={}\tlag_ms={}\twithin_bound={}{}",
            feed.position,
            feed.head,
            feed.behind,
            feed.lag_ms,
            feed.within_bound,
            if feed.error.is_empty() {
                String::new()
            } else {
                format!("\terror={}", feed.error)
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
