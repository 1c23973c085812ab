//! `hashsieve serve`: opens the store, rebuilds the index, serves until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tracing_subscriber::EnvFilter;

use super::{CliResult, parse_duration};
use crate::grpc::{ApiKeys, ServeConfig, TlsFiles};
use crate::matcher::{FollowConfig, Matcher, MatcherConfig};
use crate::metrics::Metrics;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HASHSIEVE_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Directory of the embedded store (created if missing).
    #[arg(long, env = "HASHSIEVE_DATA_DIR", default_value = "./hashsieve-data")]
    data_dir: PathBuf,
    /// Keep banks and entries in PostgreSQL instead (`postgres://USER[:PASSWORD]@HOST:PORT/DB`),
    /// shared by every replica given the same URL. The schema is created and migrated at start.
    #[arg(long, env = "HASHSIEVE_STORE", value_parser = parse_store_url, hide_env_values = true)]
    store: Option<String>,
    /// Largest accepted image, in bytes.
    #[arg(long, env = "HASHSIEVE_MAX_IMAGE_BYTES", default_value_t = MatcherConfig::new(".").decode_limits.max_input_bytes)]
    max_image_bytes: usize,
    /// Largest accepted image, in pixels (width × height), checked before decoding.
    #[arg(long, env = "HASHSIEVE_MAX_IMAGE_PIXELS", default_value_t = MatcherConfig::new(".").decode_limits.max_pixels)]
    max_image_pixels: u64,
    /// The store's page cache, in MiB. Loads append and checks read only the metadata of
    /// matches, so a small one serves; more helps exports and removals by id of large banks.
    #[arg(long, env = "HASHSIEVE_STORE_CACHE_MB", default_value_t = MatcherConfig::new(".").store_cache_bytes >> 20)]
    store_cache_mb: usize,
    /// On SIGTERM or Ctrl-C, how long calls in flight may take to finish (e.g. `20s`,
    /// `500ms`) before the server stops anyway.
    #[arg(long, env = "HASHSIEVE_SHUTDOWN_GRACE", value_parser = parse_duration, default_value = "20s")]
    shutdown_grace: std::time::Duration,
    /// Threads for core work (decoding, hashing, writes) [default: twice the cores].
    #[arg(long, env = "HASHSIEVE_CPU_WORKERS")]
    cpu_workers: Option<usize>,
    /// Image checks running or waiting at once; past this a check is refused with
    /// RESOURCE_EXHAUSTED rather than queued [default: 64 per core].
    #[arg(long, env = "HASHSIEVE_MAX_PENDING_CHECKS")]
    max_pending_checks: Option<usize>,
    /// Bytes of images those checks may hold in all, in MiB; past this a check is refused
    /// likewise.
    #[arg(long, env = "HASHSIEVE_MAX_PENDING_MB", default_value_t = ServeConfig::default().max_pending_bytes >> 20)]
    max_pending_mb: usize,
    /// Largest request message in bytes [default: twice --max-image-bytes, plus 1 MiB].
    #[arg(long, env = "HASHSIEVE_MAX_MESSAGE_BYTES")]
    max_message_bytes: Option<usize>,
    /// File of API keys, one `ROLE NAME sha256:HEX` line each (see `hashsieve key create`).
    #[arg(long, env = "HASHSIEVE_API_KEYS_FILE")]
    api_keys_file: Option<PathBuf>,
    /// More API key lines, separated by `;`. With no keys at all, every call is let through.
    #[arg(long, env = "HASHSIEVE_API_KEYS", hide_env_values = true)]
    api_keys: Option<String>,
    /// Serve TLS with this certificate (PEM, the chain after the leaf) …
    #[arg(long, env = "HASHSIEVE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// … and this private key (PEM).
    #[arg(long, env = "HASHSIEVE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require clients to present a certificate signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "HASHSIEVE_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// With `--store postgres://…`: report NOT_SERVING while changes committed longer ago
    /// than this are not yet applied here (the database unreachable, say); `0s` never does.
    #[arg(long, env = "HASHSIEVE_MAX_LAG", value_parser = parse_duration, default_value = "60s")]
    max_lag: std::time::Duration,
    /// With `--store postgres://…`: look for other replicas' changes at least this often, in
    /// case a notification was lost (they are applied at once when one arrives).
    #[arg(long, env = "HASHSIEVE_FEED_POLL", value_parser = parse_duration, default_value = "500ms")]
    feed_poll: std::time::Duration,
    /// With `--store postgres://…`: delete changes older than this from the database's change
    /// feed (`0s` keeps them all). A replica that stopped following for longer loads a fresh
    /// snapshot in place when it finds changes it had yet to apply pruned.
    #[arg(long, env = "HASHSIEVE_FEED_RETENTION", value_parser = parse_duration, default_value = "7d")]
    feed_retention: std::time::Duration,
    /// Serve Prometheus metrics (`GET /metrics`, plain HTTP, no key) on this address, e.g.
    /// `0.0.0.0:9090`; none if unset. They name banks and count their matches: keep the port
    /// inside the cluster.
    #[arg(long, env = "HASHSIEVE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Matches the store's match log keeps, the newest (`hashsieve matches` lists them;
    /// about 300 bytes each). Shared by all replicas of a PostgreSQL store.
    #[arg(long, env = "HASHSIEVE_MATCH_LOG_KEEP", default_value_t = crate::matcher::DEFAULT_MATCH_LOG_KEEP)]
    match_log_keep: u64,
}

pub fn run(args: ServeArgs) -> CliResult {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    crate::memory::return_large_blocks_to_the_system();
    let mut config = MatcherConfig::new(&args.data_dir);
    config.decode_limits.max_input_bytes = args.max_image_bytes;
    config.decode_limits.max_pixels = args.max_image_pixels;
    config.store_cache_bytes = args.store_cache_mb << 20;
    config.postgres_url = args.store.clone();
    config.match_log_keep = args.match_log_keep;
    let store = match &args.store {
        Some(url) => without_password(url),
        None => args.data_dir.display().to_string(),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let started = std::time::Instant::now();
        let matcher = tokio::task::spawn_blocking(move || Matcher::open(config))
            .await
            .map_err(|e| format!("startup failed: {e}"))?
            .map_err(|e| format!("cannot open the store {store}: {}", super::error_chain(&e)))?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(%address, %store, elapsed_ms = started.elapsed().as_millis() as u64, "serving");
        let matcher = Arc::new(matcher);
        let follow_config = FollowConfig {
            poll: args.feed_poll,
            retention: (!args.feed_retention.is_zero()).then_some(args.feed_retention),
        };
        let _follower = crate::matcher::follow(&matcher, follow_config);
        let _match_log = crate::matcher::keep_flushing(&matcher)
            .map_err(|e| format!("cannot start the match log's thread: {e}"))?;
        let _upkeep = crate::matcher::keep_tails_folded(&matcher)
            .map_err(|e| format!("cannot start the index upkeep thread: {e}"))?;
        let api_keys = api_keys(&args)?;
        if api_keys.is_empty() && !args.listen.ip().is_loopback() {
            tracing::warn!(address = %args.listen, "no API keys, yet listening beyond this machine: anyone who can reach it may change banks");
        }
        let metrics = match args.metrics_listen {
            Some(address) => Some(serve_metrics(address, matcher.clone()).await?),
            None => None,
        };
        let defaults = ServeConfig::default();
        let config = ServeConfig {
            shutdown_grace: args.shutdown_grace,
            cpu_workers: args.cpu_workers.unwrap_or(defaults.cpu_workers),
            max_pending_checks: args.max_pending_checks.unwrap_or(defaults.max_pending_checks),
            max_pending_bytes: args.max_pending_mb << 20,
            max_message_bytes: args.max_message_bytes,
            api_keys,
            tls: tls_files(&args)?,
            max_lag: (!args.max_lag.is_zero()).then_some(args.max_lag),
            metrics,
        };
        crate::grpc::serve(listener, matcher.clone(), config, shutdown_signal())
            .await
            .map_err(|e| format!("server failed: {}", super::error_chain(e.as_ref())))?;
        tokio::task::spawn_blocking(move || matcher.flush())
            .await
            .map_err(|e| format!("flushing the store failed: {e}"))?
            .map_err(|e| format!("cannot flush the store: {}", super::error_chain(&e)))?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Starts the metrics endpoint on `address`; it serves until the process ends.
async fn serve_metrics(address: SocketAddr, matcher: Arc<Matcher>) -> Result<Arc<Metrics>, String> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen for metrics on {address}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let metrics = Arc::new(Metrics::new(matcher));
    tokio::spawn(crate::metrics::serve(listener, metrics.clone()));
    tracing::info!(metrics_address = %bound, "serving metrics at /metrics");
    Ok(metrics)
}

/// A `--store` value: only PostgreSQL URLs name another store.
fn parse_store_url(url: &str) -> Result<String, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(url.to_string())
    } else {
        Err("expected a postgres:// URL (the embedded store is the default: see --data-dir)".into())
    }
}

/// The URL with any password replaced by `***`, for logs and messages.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

/// The PEM files of `--tls-cert`, `--tls-key` and `--tls-client-ca`, read.
fn tls_files(args: &ServeArgs) -> Result<Option<TlsFiles>, String> {
    let (Some(certificate), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    Ok(Some(TlsFiles {
        certificate: super::client::read_file(certificate)?,
        key: super::client::read_file(key)?,
        client_ca: args
            .tls_client_ca
            .as_deref()
            .map(super::client::read_file)
            .transpose()?,
    }))
}

/// The keys of `--api-keys-file` and `--api-keys`.
fn api_keys(args: &ServeArgs) -> Result<ApiKeys, String> {
    let mut text = String::new();
    if let Some(path) = &args.api_keys_file {
        text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        text.push('\n');
    }
    if let Some(lines) = &args.api_keys {
        text.push_str(lines);
    }
    ApiKeys::parse(&text)
}

/// Completes on Ctrl-C or SIGTERM (what container runtimes send), so in-flight calls drain.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_are_checked_and_passwords_kept_out_of_logs() {
        assert!(parse_store_url("postgres://hs@db:5432/hashsieve").is_ok());
        assert!(parse_store_url("postgresql://hs@db/hashsieve").is_ok());
        assert!(parse_store_url("/var/lib/hashsieve").is_err());
        assert_eq!(
            without_password("postgres://hs:s3cret@db:5432/hashsieve"),
            "postgres://hs:***@db:5432/hashsieve"
        );
        assert_eq!(without_password("postgres://hs@db/x"), "postgres://hs@db/x");
    }
}
