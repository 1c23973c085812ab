//! Prometheus metrics for operators: calls by method and status and how long they took, each
//! bank's entries and matches, a replica's lag behind its shared store, resident memory.
//!
//! Served as text (exposition format 0.0.4) on a port of its own (`--metrics-listen`), so a
//! scraper needs neither gRPC nor an API key, and the port can stay inside the cluster. The call
//! metrics keep the names and labels of go-grpc-prometheus (`grpc_server_handled_total` …),
//! which existing dashboards and alerts already know. The core's figures are read when a
//! scrape comes, so checks pay nothing for them.

mod http;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::matcher::Matcher;

pub use http::serve;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds of the call-latency buckets, in seconds: from 100 µs (a check of hashes) to
/// 10 s (a large image, an import stream), about 2.5× apart.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A gRPC method as the call metrics label it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Method {
    /// `unary`, `client_stream`, `server_stream` or `bidi_stream`.
    pub grpc_type: &'static str,
    /// The service's full name, e.g. `hashsieve.v1.Matcher`.
    pub grpc_service: &'static str,
    pub grpc_method: &'static str,
}

impl Method {
    /// What a call to a path no service serves is counted as, so that clients sending made-up
    /// paths cannot make the metrics grow.
    pub const UNKNOWN: Method = Method {
        grpc_type: "unknown",
        grpc_service: "unknown",
        grpc_method: "unknown",
    };
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Handled {
    #[prometheus(flatten)]
    method: Method,
    grpc_code: &'static str,
}

/// The server's metrics: call counters and latencies recorded as calls end, and the core's
/// figures read at each scrape.
pub struct Metrics {
    registry: Registry,
    started: Family<Method, Counter>,
    handled: Family<Handled, Counter>,
    handling: Family<Method, Histogram, fn() -> Histogram>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics of a server over `matcher`.
    pub fn new(matcher: Arc<Matcher>) -> Metrics {
        let mut registry = Registry::default();
        let started = Family::<Method, Counter>::default();
        let handled = Family::<Handled, Counter>::default();
        let handling = Family::<Method, Histogram, fn() -> Histogram>::new_with_constructor(|| {
            Histogram::new(LATENCY_BUCKETS)
        });
        registry.register(
            "grpc_server_started",
            "RPCs started on the server",
            started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "RPCs completed on the server, whatever their status",
            handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Time from an RPC's arrival to its last response byte",
            handling.clone(),
        );
        registry.register_collector(Box::new(CoreFigures { matcher }));
        Metrics {
            registry,
            started,
            handled,
            handling,
        }
    }

    pub fn call_started(&self, method: Method) {
        self.started.get_or_create(&method).inc();
    }

    /// Records a call that ended with gRPC status `code` (go-grpc-prometheus's spelling, e.g.
    /// `OK`, `NotFound`) after `elapsed`.
    pub fn call_handled(&self, method: Method, code: &'static str, elapsed: Duration) {
        self.handled
            .get_or_create(&Handled {
                method,
                grpc_code: code,
            })
            .inc();
        self.handling
            .get_or_create(&method)
            .observe(elapsed.as_secs_f64());
    }

    /// Every metric, in Prometheus's text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail, and every value here encodes.
        if let Err(error) = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "cannot encode the metrics");
        }
        text
    }
}

/// The core's figures, read from the matcher at each scrape.
struct CoreFigures {
    matcher: Arc<Matcher>,
}

impl fmt::Debug for CoreFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoreFigures").finish_non_exhaustive()
    }
}

impl Collector for CoreFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let banks = self.matcher.banks();
        let bank_label = |name: &str| [("bank".to_string(), name.to_string())];
        let mut family = encoder.encode_descriptor(
            "hashsieve_bank_entries",
            "Entries stored in the bank.",
            None,
            MetricType::Gauge,
        )?;
        for bank in &banks {
            let value = ConstGauge::new(saturating_i64(bank.entry_count));
            value.encode(family.encode_family(&bank_label(bank.bank.name.as_str()))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "hashsieve_bank_matches",
            "Checks that matched the bank since this process started.",
            None,
            MetricType::Counter,
        )?;
        for bank in &banks {
            let value = ConstCounter::new(bank.matches_here);
            value.encode(family.encode_family(&bank_label(bank.bank.name.as_str()))?)?;
        }
        let metric = encoder.encode_descriptor(
            "hashsieve_match_log_dropped",
            "Matches dropped unwritten because the store could not take the match log for too long.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.matcher.match_log_dropped()).encode(metric)?;
        let mut family = encoder.encode_descriptor(
            "hashsieve_index_scanned_codes",
            "Stored hashes every search compares one by one, beside the index's tables (all of them where there are too few for tables); high after a load means it was not folded in.",
            None,
            MetricType::Gauge,
        )?;
        for (algorithm, scanned) in self.matcher.index_scanned() {
            let label = [("algorithm".to_string(), algorithm.name().to_string())];
            ConstGauge::new(saturating_i64(scanned as u64)).encode(family.encode_family(&label)?)?;
        }
        if let Some(feed) = self.matcher.feed_status() {
            let gauges = [
                (
                    "hashsieve_feed_position",
                    "The last change of the shared store applied here.",
                    saturating_i64(feed.position) as f64,
                ),
                (
                    "hashsieve_feed_behind",
                    "Changes committed to the shared store and not yet applied here.",
                    saturating_i64(feed.behind()) as f64,
                ),
                (
                    "hashsieve_feed_lag_seconds",
                    "Every change committed longer ago than this is applied here.",
                    feed.lag.as_secs_f64(),
                ),
            ];
            for (name, help, value) in gauges {
                let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                ConstGauge::new(value).encode(metric)?;
            }
        }
        if let Some(bytes) = resident_bytes() {
            let metric = encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(saturating_i64(bytes)).encode(metric)?;
        }
        Ok(())
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// This process's resident memory, where the platform tells it (Linux's `/proc`).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    #[cfg(unix)]
    let page_size = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    #[cfg(not(unix))]
    let page_size = 4096;
    Some(pages * page_size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bank::{Action, BankName, BankSettings, Thresholds};
    use crate::matcher::MatcherConfig;

    const CHECK: Method = Method {
        grpc_type: "unary",
        grpc_service: "hashsieve.v1.Matcher",
        grpc_method: "CheckHashes",
    };

    fn metrics() -> (Metrics, Arc<Matcher>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let matcher = Arc::new(Matcher::open(MatcherConfig::new(dir.path())).unwrap());
        (Metrics::new(matcher.clone()), matcher, dir)
    }

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|line| line.starts_with(prefix))
    }

    #[test]
    fn calls_are_counted_by_method_and_status_and_timed() {
        let (metrics, _matcher, _dir) = metrics();
        for _ in 0..3 {
            metrics.call_started(CHECK);
        }
        metrics.call_handled(CHECK, "OK", Duration::from_micros(300));
        metrics.call_handled(CHECK, "OK", Duration::from_millis(3));
        metrics.call_handled(CHECK, "InvalidArgument", Duration::from_micros(50));
        let text = metrics.render();
        let labels = r#"grpc_type="unary",grpc_service="hashsieve.v1.Matcher",grpc_method="CheckHashes""#;
        assert_eq!(
            line(&text, &format!("grpc_server_started_total{{{labels}}}")),
            Some(format!("grpc_server_started_total{{{labels}}} 3").as_str())
        );
        assert!(text.contains(&format!(
            r#"grpc_server_handled_total{{{labels},grpc_code="OK"}} 2"#
        )));
        assert!(text.contains(&format!(
            r#"grpc_server_handled_total{{{labels},grpc_code="InvalidArgument"}} 1"#
        )));
        // Buckets are cumulative: 50 µs and 300 µs are within 0.5 ms, all three within 5 ms.
        assert!(text.contains(&format!(
            r#"grpc_server_handling_seconds_bucket{{{labels},le="0.0005"}} 2"#
        )));
        assert!(text.contains(&format!(
            r#"grpc_server_handling_seconds_bucket{{{labels},le="0.005"}} 3"#
        )));
        assert!(text.contains(&format!("grpc_server_handling_seconds_count{{{labels}}} 3")));
    }

    #[test]
    fn banks_entries_and_matches_are_read_at_each_scrape() {
        let (metrics, matcher, _dir) = metrics();
        let name = BankName::new("TVEC").unwrap();
        let settings = BankSettings {
            action: Action::Block,
            thresholds: Thresholds::default(),
            labels: Vec::new(),
            description: String::new(),
            enabled: true,
            min_quality: 50,
        };
        matcher.create_bank(name.clone(), settings).unwrap();
        let before = metrics.render();
        assert!(
            before.contains(r#"hashsieve_bank_entries{bank="TVEC"} 0"#),
            "{before}"
        );
        assert!(
            before.contains(r#"hashsieve_bank_matches_total{bank="TVEC"} 0"#),
            "{before}"
        );
        // A standalone store has no feed to report.
        assert!(!before.contains("hashsieve_feed_"), "{before}");
        assert!(
            before.contains(r#"hashsieve_index_scanned_codes{algorithm="pdq"} 0"#),
            "{before}"
        );
        let hash = crate::hash::HashValue::from_bytes(crate::hash::Algorithm::Pdq, &[0x5a; 32]).unwrap();
        let entry = crate::bank::NewEntry::new(hash, "one", Vec::new(), "", "", 0).unwrap();
        matcher.add_entries(&name, &[entry], true).unwrap();
        let after = metrics.render();
        assert!(
            after.contains(r#"hashsieve_index_scanned_codes{algorithm="pdq"} 1"#),
            "{after}"
        );
        matcher.delete_bank(&name).unwrap();
        assert!(!metrics.render().contains(r#"bank="TVEC""#));
    }

    #[test]
    fn resident_memory_is_reported_where_the_platform_tells_it() {
        let (metrics, _matcher, _dir) = metrics();
        let text = metrics.render();
        if cfg!(target_os = "linux") {
            let value: f64 = line(&text, "process_resident_memory_bytes ")
                .and_then(|line| line.split(' ').nth(1))
                .and_then(|value| value.parse().ok())
                .unwrap();
            assert!(value > 1e6, "{value}");
        }
    }
}
