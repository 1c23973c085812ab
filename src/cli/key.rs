//! `hashsieve key create`: makes an API key and the line that configures it on the server.

use std::process::ExitCode;

use super::CliResult;
use crate::grpc::{Role, key_line};

#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Make a random API key. Prints the key (give it to the client; it is stored nowhere)
    /// and the line to add to the server's `--api-keys-file`, which holds only its SHA-256.
    Create {
        /// `reader` (check and hash) or `admin` (also change banks and entries).
        #[arg(long, value_parser = ["reader", "admin"])]
        role: String,
        /// Who holds the key, as audit logs will name them: letters, digits, `-`, `_`, `.`.
        #[arg(long)]
        name: String,
    },
}

pub fn run(command: KeyCommand) -> CliResult {
    let KeyCommand::Create { role, name } = command;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "invalid key name {name:?}: use letters, digits, `-`, `_` and `.`"
        ));
    }
    let role = if role == "admin" {
        Role::Admin
    } else {
        Role::Reader
    };
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| format!("no randomness from the system: {e}"))?;
    let key: String = std::iter::once("hsk_".to_string())
        .chain(random.iter().map(|b| format!("{b:02x}")))
        .collect();
    println!("key:  {key}");
    println!("line: {}", key_line(role, &name, &key));
    Ok(ExitCode::SUCCESS)
}
