//! The `hashsieve` binary: parses arguments and hands over to the library's CLI.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = hashsieve::cli::Cli::parse();
    hashsieve::cli::run(cli)
}
