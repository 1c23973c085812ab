//! The gRPC adapter: `hashsieve.v1` services over the core [`Matcher`].
//!
//! Each service is a small struct holding the matcher behind an `Arc`; each handler validates
//! its request (parsing wire types into domain types), runs the core on a CPU worker thread,
//! and converts the result. CPU work (decoding, hashing, scanning) never runs on the async
//! runtime's threads.

mod auth;
mod banks;
mod check;
/// Wire ⇄ domain conversions; public for the fuzz targets.
pub mod convert;
mod metered;
mod status;
mod workers;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::Status;
use tonic::transport::server::TcpIncoming;

use crate::matcher::Matcher;
use crate::proto;

pub use auth::{ApiKeys, Caller, Role, key_line};
pub use banks::BanksService;
pub use check::MatcherService;
pub use convert::algorithm_to_pb;

/// Largest request message tonic reads (see [`ServeConfig::max_message_bytes`]); past it,
/// tonic itself refuses the message (OUT_OF_RANGE).
fn max_message_bytes(matcher: &Matcher, config: &ServeConfig) -> usize {
    config
        .max_message_bytes
        .unwrap_or_else(|| matcher.config().decode_limits.max_input_bytes.saturating_mul(2) + (1 << 20))
}

/// How the server runs, beyond the matcher's own settings.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// How long in-flight calls may take to finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// Threads that run core work (decoding, hashing, large searches, writes); the rest waits
    /// for one of them.
    pub cpu_workers: usize,
    /// Checks of images (and of many hashes) running or waiting for a worker; one more is
    /// refused at once with RESOURCE_EXHAUSTED, so a burst cannot queue without bound.
    pub max_pending_checks: usize,
    /// Bytes of images those checks may hold in all: each waiting check holds its image in
    /// memory, so past this a check is refused too, however few are waiting.
    pub max_pending_bytes: usize,
    /// Largest request message; `None` for twice the largest image plus 1 MiB, so that an
    /// image somewhat over the limit still reaches the decoder and is refused with a message
    /// naming the limit.
    pub max_message_bytes: Option<usize>,
    /// The keys calls must carry; none means every call is let through.
    pub api_keys: ApiKeys,
    /// Serve TLS instead of plaintext HTTP/2.
    pub tls: Option<TlsFiles>,
    /// On a shared store, report NOT_SERVING while the replica's view is staler than this
    /// (see [`crate::matcher::FeedStatus::lag`]); `None` never does.
    pub max_lag: Option<Duration>,
    /// Where every call is counted and timed, if anywhere.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// PEM contents of the server's TLS certificate and key, and of the CA that client
/// certificates must chain to, when clients must present one.
#[derive(Clone)]
pub struct TlsFiles {
    pub certificate: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsFiles {
    /// The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("client_ca", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

impl TlsFiles {
    fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let config = ServerTlsConfig::new().identity(Identity::from_pem(&self.certificate, &self.key));
        match &self.client_ca {
            Some(ca) => config.client_ca_root(Certificate::from_pem(ca)),
            None => config,
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        ServeConfig {
            shutdown_grace: Duration::from_secs(20),
            cpu_workers: 2 * cores,
            max_pending_checks: 64 * cores,
            max_pending_bytes: 256 << 20,
            max_message_bytes: None,
            api_keys: ApiKeys::default(),
            tls: None,
            max_lag: Some(Duration::from_secs(60)),
            metrics: None,
        }
    }
}

/// Serves every service on `listener` until `shutdown` completes, then shuts down gracefully:
/// health turns NOT_SERVING, new connections and calls are refused (HTTP/2 GOAWAY), and calls
/// in flight may finish for up to `config.shutdown_grace` before the server stops regardless.
pub async fn serve(
    listener: TcpListener,
    matcher: Arc<Matcher>,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let max_bytes = max_message_bytes(&matcher, &config);
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

    let lag_watch = tokio::spawn(watch_lag(
        matcher.clone(),
        config.max_lag,
        health_reporter.clone(),
    ));
    let core = Core::new(matcher, &config)?;
    let matcher_service = proto::matcher_server::MatcherServer::new(MatcherService::new(core.clone()))
        .max_decoding_message_size(max_bytes);
    let banks_service =
        proto::banks_server::BanksServer::new(BanksService::new(core)).max_decoding_message_size(max_bytes);

    let (drain, draining) = tokio::sync::oneshot::channel::<()>();
    if config.api_keys.is_empty() {
        tracing::warn!("no API keys configured: every client may check, change and export banks");
    }
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        builder = builder.tls_config(tls.server_config())?;
        tracing::info!(client_certificates = tls.client_ca.is_some(), "serving TLS");
    }
    let server = builder
        .layer(metered::MeteredLayer::new(config.metrics.clone()))
        .layer(tower::util::MapResponseLayer::new(status::inbound_response))
        .layer(auth::AuthLayer::new(config.api_keys.clone()))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(matcher_service)
        .add_service(banks_service)
        .serve_with_incoming_shutdown(incoming(listener), async {
            let _ = draining.await;
        });
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return Ok(result?),
        () = shutdown => {}
    }
    // Load balancers and probes see NOT_SERVING first; then tonic refuses new calls and waits
    // for the ones in flight.
    lag_watch.abort();
    set_health(&health_reporter, tonic_health::ServingStatus::NotServing).await;
    tracing::info!(
        grace_s = config.shutdown_grace.as_secs_f64(),
        "draining in-flight calls"
    );
    let _ = drain.send(());
    match tokio::time::timeout(config.shutdown_grace, &mut server).await {
        Ok(result) => Ok(result?),
        Err(_) => {
            tracing::warn!(
                grace_s = config.shutdown_grace.as_secs_f64(),
                "calls still in flight after the shutdown grace period: stopping anyway"
            );
            Ok(())
        }
    }
}

/// Every service health reports on: the server as a whole ("") and each service.
const HEALTH_SERVICES: [&str; 3] = [
    "",
    proto::matcher_server::SERVICE_NAME,
    proto::banks_server::SERVICE_NAME,
];

async fn set_health(reporter: &tonic_health::server::HealthReporter, status: tonic_health::ServingStatus) {
    for service in HEALTH_SERVICES {
        reporter.set_service_status(service, status).await;
    }
}

/// Whether a replica's view is fresh enough to serve.
fn within_lag_bound(feed: &crate::matcher::FeedStatus, max_lag: Option<Duration>) -> bool {
    max_lag.is_none_or(|bound| feed.lag <= bound)
}

/// On a shared store, turns health NOT_SERVING while the replica's view is staler than
/// `max_lag` (the store unreachable, the follower failing), and SERVING again once it has
/// caught up, so load balancers send checks to replicas that see the banks as they are.
async fn watch_lag(
    matcher: Arc<Matcher>,
    max_lag: Option<Duration>,
    reporter: tonic_health::server::HealthReporter,
) {
    const EVERY: Duration = Duration::from_millis(250);
    let (Some(_), Some(_)) = (matcher.feed_status(), max_lag) else {
        return;
    };
    let mut serving = true;
    loop {
        tokio::time::sleep(EVERY).await;
        let Some(feed) = matcher.feed_status() else {
            return;
        };
        let fresh = within_lag_bound(&feed, max_lag);
        if fresh != serving {
            serving = fresh;
            if fresh {
                tracing::info!(
                    lag_ms = feed.lag.as_millis() as u64,
                    "caught up with the shared store: serving"
                );
                set_health(&reporter, tonic_health::ServingStatus::Serving).await;
            } else {
                tracing::warn!(
                    lag_ms = feed.lag.as_millis() as u64,
                    behind = feed.behind(),
                    error = feed.error.as_deref().unwrap_or(""),
                    "too far behind the shared store: NOT_SERVING"
                );
                set_health(&reporter, tonic_health::ServingStatus::NotServing).await;
            }
        }
    }
}

/// Connections accepted from `listener`, with `TCP_NODELAY` set. tonic sets it only on
/// listeners it binds itself; without it a response's frames can wait behind Nagle's algorithm
/// for the peer's acknowledgement (measured with 32 calls in flight: 11k CheckHashes calls/s
/// without, 16k with).
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// The core as the services share it: the matcher, and bounds on the CPU work in flight.
///
/// Decoding one large image takes up to a few hundred megabytes for a second, so running every
/// request's work at once would let a burst of uploads exhaust memory; instead work waits for
/// one of a few workers ([`ServeConfig::cpu_workers`]), and checks past
/// [`ServeConfig::max_pending_checks`] are refused at once rather than queued.
#[derive(Clone)]
pub(crate) struct Core {
    matcher: Arc<Matcher>,
    max_lag: Option<Duration>,
    workers: Arc<workers::Workers>,
    check_slots: Arc<Semaphore>,
    /// The pending-bytes budget, in [`BYTE_PERMIT`] units, and its size.
    pending_bytes: Arc<Semaphore>,
    pending_bytes_total: usize,
}

/// The unit of [`Core::pending_bytes`]: a semaphore counts at most `u32::MAX` permits.
const BYTE_PERMIT: usize = 4096;

impl Core {
    fn new(matcher: Arc<Matcher>, config: &ServeConfig) -> std::io::Result<Self> {
        let pending_units = (config.max_pending_bytes / BYTE_PERMIT).clamp(1, u32::MAX as usize);
        Ok(Core {
            matcher,
            max_lag: config.max_lag,
            workers: Arc::new(workers::Workers::start(config.cpu_workers)?),
            check_slots: Arc::new(Semaphore::new(config.max_pending_checks.max(1))),
            pending_bytes: Arc::new(Semaphore::new(pending_units)),
            pending_bytes_total: pending_units,
        })
    }

    /// Runs short core work (well under a millisecond) on the calling async thread, where a
    /// hand-off to the blocking pool would cost as much as the work.
    fn run_inline<T>(
        &self,
        work: impl FnOnce(&Matcher) -> Result<T, crate::error::Error>,
    ) -> Result<T, Status> {
        work(&self.matcher).map_err(Status::from)
    }

    /// Runs a check holding `bytes` of image on the blocking pool, or refuses it at once with
    /// RESOURCE_EXHAUSTED when the pending checks or their bytes are at their bound. A check
    /// whose caller's deadline passes while it waits is dropped with its call (tonic honours
    /// `grpc-timeout`), never computed.
    async fn run_check<T, F>(&self, bytes: usize, work: F) -> Result<T, Status>
    where
        F: FnOnce(&Matcher) -> Result<T, crate::error::Error> + Send + 'static,
        T: Send + 'static,
    {
        let busy = || {
            Status::resource_exhausted("the server is busy: too many checks in progress; retry with backoff")
        };
        let slot = self.check_slots.clone().try_acquire_owned().map_err(|_| busy())?;
        // An image larger than the whole budget takes all of it: it runs when nothing else is
        // waiting.
        let units = bytes.div_ceil(BYTE_PERMIT).min(self.pending_bytes_total);
        let budget = u32::try_from(units)
            .ok()
            .and_then(|units| self.pending_bytes.clone().try_acquire_many_owned(units).ok())
            .ok_or_else(busy)?;
        self.run(move |matcher| {
            let _held = (slot, budget);
            work(matcher)
        })
        .await
    }

    /// Runs core work on one of the CPU workers, so the async threads stay responsive.
    async fn run<T, F>(&self, work: F) -> Result<T, Status>
    where
        F: FnOnce(&Matcher) -> Result<T, crate::error::Error> + Send + 'static,
        T: Send + 'static,
    {
        let matcher = self.matcher.clone();
        match self.workers.run(move || work(&matcher)).await {
            Ok(result) => result.map_err(Status::from),
            Err(workers::JobLost) => {
                tracing::error!("core work panicked");
                Err(Status::internal("internal error"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn accepted_connections_have_nodelay_set() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut incoming = super::incoming(listener);
        let _client = tokio::net::TcpStream::connect(address).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
