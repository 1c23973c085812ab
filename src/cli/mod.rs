//! The `hashsieve` command line: one module per command, each a thin layer over the library
//! (offline hashing) or over the generated gRPC clients (everything that needs a server).

mod bank;
mod check;
mod client;
mod entries;
mod hash;
mod key;
mod loadtest;
mod matches;
mod serve;
mod status;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::error::error_chain;

/// Matches uploads against banks of perceptual hashes of flagged media.
#[derive(Debug, Parser)]
#[command(name = "hashsieve", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC service.
    Serve(serve::ServeArgs),
    /// Hash image files offline (no server).
    Hash(hash::HashArgs),
    /// Check images against a running server's banks.
    Check(check::CheckArgs),
    /// Manage banks on a running server.
    #[command(subcommand)]
    Bank(bank::BankCommand),
    /// Load a hash list (CSV or bare hex) into a bank.
    Import(entries::ImportArgs),
    /// Hash images and add them to a bank.
    Add(entries::AddArgs),
    /// Remove entries from a bank by hash or id.
    Remove(entries::RemoveArgs),
    /// Print a bank's entries as CSV (the import format).
    Export(entries::ExportArgs),
    /// Show recent matches, newest first.
    Matches(matches::MatchesArgs),
    /// Show what a server holds and how closely it follows a shared store.
    Status(status::StatusArgs),
    /// Drive a running server with check calls and report throughput and latency.
    Loadtest(loadtest::LoadtestArgs),
    /// Make API keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
}

/// Runs a parsed command line; errors are printed here, once.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Hash(args) => hash::run(args),
        Command::Loadtest(args) => loadtest::run(args),
        Command::Key(command) => key::run(command),
        command => with_runtime(async move {
            match command {
                Command::Check(args) => check::run(args).await,
                Command::Bank(command) => bank::run(command).await,
                Command::Import(args) => entries::import(args).await,
                Command::Add(args) => entries::add(args).await,
                Command::Remove(args) => entries::remove(args).await,
                Command::Export(args) => entries::export(args).await,
                Command::Matches(args) => matches::run(args).await,
                Command::Status(args) => status::run(args).await,
                Command::Serve(_) | Command::Hash(_) | Command::Loadtest(_) | Command::Key(_) => {
                    Ok(ExitCode::SUCCESS)
                }
            }
        }),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("hashsieve: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Client commands are small: a current-thread runtime is enough.
fn with_runtime(work: impl std::future::Future<Output = CliResult>) -> CliResult {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?
        .block_on(work)
}

/// A command's outcome: an exit code, or a message for the user.
type CliResult = Result<ExitCode, String>;

/// Parses an optional `--algo pdq,md5` into wire values; none given means the server's default.
fn wire_algorithms(text: Option<&str>) -> Result<Vec<i32>, String> {
    let algorithms = match text {
        Some(text) => parse_algorithms(text)?,
        None => Vec::new(),
    };
    Ok(algorithms
        .into_iter()
        .map(|a| crate::grpc::algorithm_to_pb(a) as i32)
        .collect())
}

/// Parses `pdq,md5` into algorithms.
fn parse_algorithms(text: &str) -> Result<Vec<crate::hash::Algorithm>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse()
                .map_err(|e: crate::hash::UnknownAlgorithm| e.to_string())
        })
        .collect()
}

/// Parses `30s`, `2m`, `500ms`, `1.5h` or a bare number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds_per_unit = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => {
            return Err(format!(
                "unknown time unit {other:?} in {text:?} (use ms, s, m, h or d)"
            ));
        }
    };
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 2m or 500ms"))?;
    Duration::try_from_secs_f64(number * seconds_per_unit).map_err(|e| format!("{text:?}: {e}"))
}
