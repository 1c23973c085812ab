//! The core's one error vocabulary. `grpc::status` maps it to gRPC codes in one place; the CLI
//! prints it.

use crate::bank::{BankName, LowQuality, ValidationError};
use crate::hash::HashParseError;
use crate::hash::decode::DecodeError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bank {0} not found")]
    BankNotFound(String),
    #[error("bank {0} already exists")]
    BankExists(BankName),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    BadHash(#[from] HashParseError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    LowQuality(#[from] LowQuality),
    #[error("storage failure")]
    Store(#[source] StoreError),
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::BankExists(name) => Error::BankExists(name),
            other => Error::Store(other),
        }
    }
}

/// An error and its sources, joined: "storage failure: database error: …".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        text.push_str(": ");
        text.push_str(&next.to_string());
        source = next.source();
    }
    text
}

/// Whether a background loop (the feed follower, the match-log writer) is failing, logged when
/// that changes: the first failure as a warning, the first success after it as an info line,
/// so an outage of an hour is two lines rather than one per attempt.
#[derive(Debug, Default)]
pub(crate) struct Outage {
    pub failing: bool,
}

impl Outage {
    /// Notes one attempt's `result`, logging `recovered` or `failed` if it changes the state.
    pub fn note<E: std::error::Error>(&mut self, result: &Result<(), E>, recovered: &str, failed: &str) {
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!("{recovered}");
            }
            Err(error) if !self.failing => {
                self.failing = true;
                tracing::warn!(error = %error_chain(error), "{failed}");
            }
            _ => {}
        }
    }
}
