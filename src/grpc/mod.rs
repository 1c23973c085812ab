//! The gRPC adapter: `hashsieve.v1` services over the core [`Matcher`].
//!
//! Each service is a small struct holding the matcher behind an `Arc`; each handler validates
//! its request (parsing wire types into domain types), runs the core on a blocking thread,
//! and converts the result. CPU work (decoding, hashing, scanning) never runs on the async
//! runtime's threads.

mod banks;
mod check;
mod convert;
mod status;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Status;

use crate::matcher::Matcher;
use crate::proto;

pub use banks::BanksService;
pub use check::MatcherService;
pub use convert::algorithm_to_pb;

/// Largest request accepted: the largest image the decoder accepts, plus room for the rest.
fn max_message_bytes(matcher: &Matcher) -> usize {
    matcher.config().decode_limits.max_input_bytes + (1 << 20)
}

/// Serves every service on `listener` until `shutdown` completes, then drains in-flight calls.
pub async fn serve(
    listener: TcpListener,
    matcher: Arc<Matcher>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let max_bytes = max_message_bytes(&matcher);
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<proto::matcher_server::MatcherServer<MatcherService>>()
        .await;
    health_reporter
        .set_serving::<proto::banks_server::BanksServer<BanksService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let matcher_service = proto::matcher_server::MatcherServer::new(MatcherService::new(matcher.clone()))
        .max_decoding_message_size(max_bytes);
    let banks_service = proto::banks_server::BanksServer::new(BanksService::new(matcher))
        .max_decoding_message_size(max_bytes);

    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(matcher_service)
        .add_service(banks_service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

/// Runs core work on the blocking pool, so the async threads stay responsive.
async fn blocking<T, F>(work: F) -> Result<T, Status>
where
    F: FnOnce() -> Result<T, crate::error::Error> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(Status::from),
        Err(join_error) => {
            tracing::error!(error = %join_error, "blocking task failed");
            Err(Status::internal("internal error"))
        }
    }
}
