//! `hashsieve bank …`: bank management against a running server.

use std::process::ExitCode;

use super::CliResult;
use super::client::{ServerArgs, describe};
use crate::proto as pb;

#[derive(Debug, clap::Subcommand)]
pub enum BankCommand {
    /// Create a bank.
    Create {
        #[command(flatten)]
        server: ServerArgs,
        /// Name: 1 to 64 characters of A-Z, 0-9 and _.
        name: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// List every bank.
    List {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        json: bool,
    },
    /// Show one bank.
    Get {
        #[command(flatten)]
        server: ServerArgs,
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a bank's settings; what is not given keeps its value.
    Update {
        #[command(flatten)]
        server: ServerArgs,
        name: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Delete a bank and all its entries.
    Delete {
        #[command(flatten)]
        server: ServerArgs,
        name: String,
    },
}

#[derive(Debug, Clone, clap::ValueEnum)]
enum ActionArg {
    Block,
    Review,
    Allow,
}

#[derive(Debug, clap::Args)]
pub struct SettingsArgs {
    /// What a match asks for (required on create).
    #[arg(long, value_enum)]
    action: Option<ActionArg>,
    /// PDQ match threshold in bits (default 31 of 256).
    #[arg(long)]
    pdq_threshold: Option<u32>,
    /// pHash threshold in bits (default 8 of 64).
    #[arg(long)]
    phash_threshold: Option<u32>,
    /// dHash threshold in bits (default 8 of 64).
    #[arg(long)]
    dhash_threshold: Option<u32>,
    /// aHash threshold in bits (default 6 of 64).
    #[arg(long)]
    ahash_threshold: Option<u32>,
    /// Labels, separated by `;`.
    #[arg(long)]
    labels: Option<String>,
    #[arg(long)]
    description: Option<String>,
    /// Stop matching this bank.
    #[arg(long, conflicts_with = "enable")]
    disable: bool,
    /// Match this bank again.
    #[arg(long)]
    enable: bool,
    /// PDQ quality (0-100) below which adding a hash needs --allow-low-quality, and a
    /// check's match is marked low quality (default 50).
    #[arg(long)]
    min_quality: Option<u32>,
}

impl SettingsArgs {
    fn action(&self) -> Option<i32> {
        self.action.as_ref().map(|action| {
            (match action {
                ActionArg::Block => pb::Action::Block,
                ActionArg::Review => pb::Action::Review,
                ActionArg::Allow => pb::Action::Allow,
            }) as i32
        })
    }

    fn thresholds(&self) -> pb::Thresholds {
        pb::Thresholds {
            pdq: self.pdq_threshold,
            phash: self.phash_threshold,
            dhash: self.dhash_threshold,
            ahash: self.ahash_threshold,
        }
    }

    fn labels(&self) -> Option<Vec<String>> {
        self.labels.as_ref().map(|text| split_labels(text))
    }

    fn enabled(&self) -> Option<bool> {
        match (self.enable, self.disable) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }
}

pub fn split_labels(text: &str) -> Vec<String> {
    text.split(';')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

pub async fn run(command: BankCommand) -> CliResult {
    match command {
        BankCommand::Create {
            server,
            name,
            settings,
        } => {
            let action = settings
                .action()
                .ok_or("--action is required: block, review or allow")?;
            let bank = pb::Bank {
                name,
                action,
                thresholds: Some(settings.thresholds()),
                labels: settings.labels().unwrap_or_default(),
                description: settings.description.clone().unwrap_or_default(),
                enabled: Some(settings.enabled().unwrap_or(true)),
                min_quality: settings.min_quality,
                ..Default::default()
            };
            let created = server
                .banks()
                .await?
                .create_bank(pb::CreateBankRequest { bank: Some(bank) })
                .await
                .map_err(describe)?;
            print_bank(&created.into_inner());
        }
        BankCommand::List { server, json } => {
            let banks = server
                .banks()
                .await?
                .list_banks(pb::ListBanksRequest {})
                .await
                .map_err(describe)?;
            for bank in &banks.into_inner().banks {
                if json { print_json(bank)? } else { print_bank(bank) }
            }
        }
        BankCommand::Get { server, name, json } => {
            let bank = server
                .banks()
                .await?
                .get_bank(pb::GetBankRequest { name })
                .await
                .map_err(describe)?;
            if json {
                print_json(bank.get_ref())?
            } else {
                print_bank(bank.get_ref())
            }
        }
        BankCommand::Update {
            server,
            name,
            settings,
        } => {
            let request = pb::UpdateBankRequest {
                name,
                action: settings.action(),
                thresholds: Some(settings.thresholds()),
                labels: settings.labels().map(|values| pb::Labels { values }),
                description: settings.description.clone(),
                enabled: settings.enabled(),
                min_quality: settings.min_quality,
            };
            let bank = server
                .banks()
                .await?
                .update_bank(request)
                .await
                .map_err(describe)?;
            print_bank(bank.get_ref());
        }
        BankCommand::Delete { server, name } => {
            let response = server
                .banks()
                .await?
                .delete_bank(pb::DeleteBankRequest { name: name.clone() })
                .await
                .map_err(describe)?;
            println!(
                "deleted {name} and {} entries",
                response.get_ref().entries_removed
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), String> {
    println!(
        "{}",
        serde_json::to_string(value).map_err(|e| format!("cannot encode JSON: {e}"))?
    );
    Ok(())
}

/// One line per bank: name, action, state, counts, thresholds, labels.
fn print_bank(bank: &pb::Bank) {
    let action = pb::Action::try_from(bank.action).unwrap_or(pb::Action::Unspecified);
    let t = bank.thresholds.unwrap_or_default();
    println!(
        "{}\t{}\t{}\tentries={}\tmatches={}\tthresholds=pdq:{},phash:{},dhash:{},ahash:{}\tmin_quality={}\tlabels={}",
        bank.name,
        action.as_str_name().trim_start_matches("ACTION_").to_lowercase(),
        if bank.enabled.unwrap_or(true) {
            "enabled"
        } else {
            "disabled"
        },
        bank.entry_count,
        bank.match_count,
        t.pdq.unwrap_or_default(),
        t.phash.unwrap_or_default(),
        t.dhash.unwrap_or_default(),
        t.ahash.unwrap_or_default(),
        bank.min_quality.unwrap_or_default(),
        bank.labels.join(";"),
    );
}
