//! The one mapping from the core's errors to gRPC statuses. Internal details (storage
//! failures) are logged here and never sent to clients.

use tonic::{Code, Status};

use crate::error::Error;

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let code = match &error {
            Error::BankNotFound(_) => Code::NotFound,
            Error::BankExists(_) => Code::AlreadyExists,
            Error::Invalid(_) | Error::BadHash(_) | Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::Decode(decode) if decode.is_limit() => Code::ResourceExhausted,
            Error::Decode(_) => Code::InvalidArgument,
            Error::LowQuality { .. } => Code::FailedPrecondition,
            Error::Store(store) => {
                tracing::error!(error = %store, "storage failure");
                Code::Internal
            }
        };
        Status::new(code, error.to_string())
    }
}
