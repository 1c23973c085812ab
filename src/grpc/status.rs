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
            Error::LowQuality(_) => Code::FailedPrecondition,
            Error::Store(store) if store.is_unavailable() => {
                tracing::warn!(error = %store, "store unavailable");
                return Status::unavailable("the store is unavailable for now; retry with backoff");
            }
            Error::Store(store) => {
                tracing::error!(error = %store, "storage failure");
                Code::Internal
            }
        };
        Status::new(code, error.to_string())
    }
}

/// The start of the message tonic gives a request message past the decoding limit.
const TONIC_MESSAGE_TOO_LARGE: &str = "Error, decoded message length too large";

/// tonic refuses a request message past the size limit with OUT_OF_RANGE; gRPC's own
/// implementations answer RESOURCE_EXHAUSTED, which is what clients expect of a limit (retry
/// smaller, not as is). Streams' handlers see the refusal as an item error and pass it here.
pub fn inbound(status: Status) -> Status {
    match status.message().strip_prefix(TONIC_MESSAGE_TOO_LARGE) {
        Some(rest) if status.code() == Code::OutOfRange => Status::resource_exhausted(format!(
            "request message too large{}",
            rest.replace(", the limit is:", ", more than the limit of")
        )),
        _ => status,
    }
}

/// [`inbound`] for unary calls, whose oversize request tonic answers before any handler runs:
/// rewrites that trailers-only response.
pub fn inbound_response(response: http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> {
    let oversize = response.headers().get("grpc-status").map(|v| v.as_bytes()) == Some(b"11");
    match Status::from_header_map(response.headers()) {
        Some(status) if oversize && status.message().starts_with(TONIC_MESSAGE_TOO_LARGE) => {
            inbound(status).into_http()
        }
        _ => response,
    }
}
