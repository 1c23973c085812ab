//! Recording call outcomes and summing them up: per-kind counts, error codes, verdicts and
//! an HDR latency histogram (microseconds), as one JSON object or a table for a person.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::plan::Kind;

/// Largest latency the histogram holds exactly (an hour); longer ones are recorded as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Why a call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The server answered with this gRPC status (or the call timed out: `DeadlineExceeded`).
    Status(tonic::Code),
    /// `AddEntries` acknowledged a write without adding (or updating) its entry.
    WriteNotStored,
    /// The check sent once `AddEntries` acknowledged an entry did not match it.
    WriteNotMatchable,
    /// `RemoveEntries` did not remove the entry just written and matched.
    WriteNotRemoved,
}

impl Failure {
    /// The key of the report's error counts: the gRPC code's name (`Unavailable`), or the
    /// broken expectation's (`WriteNotMatchable`).
    fn name(self) -> String {
        match self {
            Failure::Status(code) => code_name(code),
            other => format!("{other:?}"),
        }
    }
}

/// What one call came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The call's status: `Ok`, or why it failed.
    pub status: Result<(), Failure>,
    /// Hashes checked (CheckHashes), images checked (CheckImage), items answered (CheckStream)
    /// or entries written, matched and removed (write).
    pub items: u64,
    /// The verdict of every answered check (one per stream item).
    pub verdicts: Vec<crate::proto::Verdict>,
    /// Answered checks with at least one match.
    pub matched: u64,
    /// Stream items answered with an `ItemError`, by code.
    pub item_errors: Vec<tonic::Code>,
}

impl Outcome {
    pub fn failed(code: tonic::Code) -> Outcome {
        Outcome::broken(Failure::Status(code))
    }

    pub fn broken(failure: Failure) -> Outcome {
        Outcome {
            status: Err(failure),
            items: 0,
            verdicts: Vec::new(),
            matched: 0,
            item_errors: Vec::new(),
        }
    }
}

/// The running totals of one kind of call.
#[derive(Debug, Clone)]
pub struct KindStats {
    calls: u64,
    ok: u64,
    items: u64,
    matched: u64,
    errors: BTreeMap<String, u64>,
    item_errors: BTreeMap<String, u64>,
    verdicts: BTreeMap<String, u64>,
    latency: Histogram<u64>,
}

impl KindStats {
    fn new() -> Result<KindStats, String> {
        Ok(KindStats {
            calls: 0,
            ok: 0,
            items: 0,
            matched: 0,
            errors: BTreeMap::new(),
            item_errors: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            // Auto-resizing: it starts at 16 KiB and grows to the largest latency recorded.
            // A fixed range up to an hour took 188 KiB per kind and worker, and zeroing those
            // for 256 workers stalled the start of a run by 80 ms.
            latency: Histogram::new(3).map_err(|e| format!("cannot make a latency histogram: {e}"))?,
        })
    }

    fn record(&mut self, latency: Duration, outcome: &Outcome) {
        self.calls += 1;
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let micros = micros.clamp(1, MAX_LATENCY_US);
        // `record` grows the histogram to fit; `saturating_record` would cap it at its size.
        if self.latency.record(micros).is_err() {
            self.latency.saturating_record(micros);
        }
        match outcome.status {
            Ok(()) => self.ok += 1,
            Err(failure) => *self.errors.entry(failure.name()).or_default() += 1,
        }
        self.items += outcome.items;
        self.matched += outcome.matched;
        for verdict in &outcome.verdicts {
            *self
                .verdicts
                .entry(verdict.as_str_name().to_string())
                .or_default() += 1;
        }
        for code in &outcome.item_errors {
            *self.item_errors.entry(code_name(*code)).or_default() += 1;
        }
    }

    fn add(&mut self, other: &KindStats) -> Result<(), String> {
        self.calls += other.calls;
        self.ok += other.ok;
        self.items += other.items;
        self.matched += other.matched;
        add_counts(&mut self.errors, &other.errors);
        add_counts(&mut self.item_errors, &other.item_errors);
        add_counts(&mut self.verdicts, &other.verdicts);
        self.latency
            .add(&other.latency)
            .map_err(|e| format!("cannot merge latency histograms: {e:?}"))
    }

    fn summary(&self, elapsed: Duration) -> KindSummary {
        let seconds = elapsed.as_secs_f64();
        KindSummary {
            calls: self.calls,
            ok: self.ok,
            errors: self.errors.clone(),
            item_errors: self.item_errors.clone(),
            items: self.items,
            matched: self.matched,
            verdicts: self.verdicts.clone(),
            calls_per_s: per_second(self.calls, seconds),
            items_per_s: per_second(self.items, seconds),
            latency_us: Latency::of(&self.latency),
        }
    }
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (key, count) in from {
        *into.entry(key.clone()).or_default() += count;
    }
}

/// `NotFound`, `Unavailable`…: the names the other commands print.
fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
}

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// The outcomes one worker saw, per kind. Each worker keeps its own, so recording takes no
/// lock; they are merged once at the end.
#[derive(Debug, Clone)]
pub struct Recorder {
    kinds: [KindStats; Kind::ALL.len()],
    /// Open-loop calls claimed after they were due, because every worker was busy.
    late_starts: u64,
}

impl Recorder {
    pub fn new() -> Result<Recorder, String> {
        let empty = KindStats::new()?;
        Ok(Recorder {
            kinds: std::array::from_fn(|_| empty.clone()),
            late_starts: 0,
        })
    }

    pub fn record(&mut self, kind: Kind, latency: Duration, outcome: &Outcome) {
        self.kinds[kind.index()].record(latency, outcome);
    }

    pub fn record_late_start(&mut self) {
        self.late_starts += 1;
    }

    pub fn merge(&mut self, other: &Recorder) -> Result<(), String> {
        self.late_starts += other.late_starts;
        for (mine, theirs) in self.kinds.iter_mut().zip(&other.kinds) {
            mine.add(theirs)?;
        }
        Ok(())
    }

    /// The totals over every kind.
    fn total(&self) -> Result<KindStats, String> {
        let mut total = KindStats::new()?;
        for kind in &self.kinds {
            total.add(kind)?;
        }
        Ok(total)
    }
}

/// How the run was set up, echoed in the report so a saved JSON says what it measured.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub server: String,
    /// "closed" (fixed concurrency) or "open" (fixed rate).
    pub mode: &'static str,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub connections: usize,
    pub mix: BTreeMap<&'static str, u32>,
    pub batch: usize,
    pub stream_items: usize,
    pub warmup_s: f64,
    pub seed: u64,
    /// The bank write calls add to and remove from, when the mix writes.
    pub write_bank: Option<String>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency {
                p50: 0,
                p90: 0,
                p99: 0,
                p999: 0,
                max: 0,
                mean: 0.0,
            };
        }
        Latency {
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: (histogram.mean() * 10.0).round() / 10.0,
        }
    }
}

/// One kind's figures (or the totals).
#[derive(Debug, Clone, Serialize)]
pub struct KindSummary {
    pub calls: u64,
    pub ok: u64,
    /// Failed calls by gRPC code, or by the write check that failed (`WriteNotStored`,
    /// `WriteNotMatchable`, `WriteNotRemoved`).
    pub errors: BTreeMap<String, u64>,
    /// Stream items answered with an error, by gRPC code (the call itself succeeded).
    pub item_errors: BTreeMap<String, u64>,
    pub items: u64,
    /// Answered checks with at least one match.
    pub matched: u64,
    pub verdicts: BTreeMap<String, u64>,
    pub calls_per_s: f64,
    pub items_per_s: f64,
    pub latency_us: Latency,
}

/// The whole run's report: what `--json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub setup: Setup,
    pub elapsed_s: f64,
    /// Open-loop calls that started late because `concurrency` calls were already in flight;
    /// their latency counts from when they were due. Always 0 in closed loop.
    pub late_starts: u64,
    #[serde(flatten)]
    pub total: KindSummary,
    pub per_kind: BTreeMap<&'static str, KindSummary>,
}

impl Report {
    pub fn new(setup: Setup, recorder: &Recorder, elapsed: Duration) -> Result<Report, String> {
        let per_kind = Kind::ALL
            .into_iter()
            .map(|kind| (kind.name(), recorder.kinds[kind.index()].summary(elapsed)))
            .collect();
        Ok(Report {
            setup,
            elapsed_s: elapsed.as_secs_f64(),
            late_starts: recorder.late_starts,
            total: recorder.total()?.summary(elapsed),
            per_kind,
        })
    }

    /// Failed calls over calls (0 when there were none).
    pub fn error_rate(&self) -> f64 {
        let errors: u64 = self.total.errors.values().sum();
        if self.total.calls == 0 {
            0.0
        } else {
            errors as f64 / self.total.calls as f64
        }
    }

    pub fn to_json(&self) -> Result<String, String> {
        serde_json::to_string(self).map_err(|e| format!("cannot encode JSON: {e}"))
    }

    /// A table for a person: one line per kind that made calls, then the totals.
    pub fn to_text(&self) -> String {
        let setup = &self.setup;
        let pace = match setup.rate {
            Some(rate) => format!(
                "open loop at {rate} calls/s, at most {} in flight",
                setup.concurrency
            ),
            None => format!("closed loop, {} workers", setup.concurrency),
        };
        let mut text = format!(
            "{} calls in {:.2} s against {} ({pace}, {} connections)\n\n",
            self.total.calls, self.elapsed_s, setup.server, setup.connections
        );
        text.push_str(&format!(
            "{:<7} {:>8} {:>7} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            "kind",
            "calls",
            "errors",
            "calls/s",
            "items/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms"
        ));
        let rows = self
            .per_kind
            .iter()
            .filter(|(_, summary)| summary.calls > 0)
            .map(|(name, summary)| (*name, summary))
            .chain([("total", &self.total)]);
        for (name, summary) in rows {
            let errors: u64 = summary.errors.values().sum();
            let l = summary.latency_us;
            text.push_str(&format!(
                "{name:<7} {:>8} {errors:>7} {:>9.1} {:>9.1} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
                summary.calls,
                summary.calls_per_s,
                summary.items_per_s,
                millis(l.p50),
                millis(l.p90),
                millis(l.p99),
                millis(l.p999),
                millis(l.max),
            ));
        }
        text.push('\n');
        text.push_str(&format!("errors: {}\n", counts(&self.total.errors)));
        if !self.total.item_errors.is_empty() {
            text.push_str(&format!(
                "stream item errors: {}\n",
                counts(&self.total.item_errors)
            ));
        }
        text.push_str(&format!(
            "verdicts: {} ({} checks matched)\n",
            counts(&self.total.verdicts),
            self.total.matched
        ));
        if self.late_starts > 0 {
            text.push_str(&format!(
                "behind schedule: {} calls started late, with {} already in flight \
                 (latency counts from when they were due; raise --concurrency or lower --rate)\n",
                self.late_starts, setup.concurrency
            ));
        }
        text
    }
}

fn millis(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1000.0)
}

/// `Unavailable=3, NotFound=1`, or `none`.
fn counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(key, count)| format!("{key}={count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Verdict;

    fn ok(items: u64, verdicts: Vec<Verdict>) -> Outcome {
        let matched = verdicts.iter().filter(|v| **v != Verdict::NoMatch).count() as u64;
        Outcome {
            status: Ok(()),
            items,
            verdicts,
            matched,
            item_errors: Vec::new(),
        }
    }

    fn setup() -> Setup {
        Setup {
            server: "http://127.0.0.1:1".into(),
            mode: "closed",
            concurrency: 2,
            rate: None,
            connections: 1,
            mix: BTreeMap::new(),
            batch: 1,
            stream_items: 4,
            warmup_s: 0.0,
            seed: 0,
            write_bank: None,
        }
    }

    #[test]
    fn workers_merge_into_per_kind_and_total_figures() {
        let mut first = Recorder::new().unwrap();
        let mut second = Recorder::new().unwrap();
        for micros in 1..=100u64 {
            first.record(
                Kind::Hashes,
                Duration::from_micros(micros * 10),
                &ok(2, vec![Verdict::NoMatch]),
            );
        }
        second.record(
            Kind::Stream,
            Duration::from_millis(50),
            &Outcome {
                item_errors: vec![tonic::Code::InvalidArgument],
                ..ok(3, vec![Verdict::Block, Verdict::NoMatch])
            },
        );
        second.record(
            Kind::Image,
            Duration::from_millis(5),
            &Outcome::failed(tonic::Code::Unavailable),
        );
        second.record_late_start();
        first.merge(&second).unwrap();

        let report = Report::new(setup(), &first, Duration::from_secs(2)).unwrap();
        assert_eq!(report.total.calls, 102);
        assert_eq!(report.late_starts, 1);
        assert!(report.to_text().contains("1 calls started late"));
        assert_eq!(report.total.ok, 101);
        assert_eq!(
            report.total.errors,
            BTreeMap::from([("Unavailable".to_string(), 1)])
        );
        assert_eq!(report.total.item_errors["InvalidArgument"], 1);
        assert_eq!(report.total.items, 203);
        assert_eq!(report.total.matched, 1);
        assert_eq!(report.total.verdicts["VERDICT_NO_MATCH"], 101);
        assert_eq!(report.total.calls_per_s, 51.0);
        assert_eq!(report.per_kind["hashes"].items_per_s, 100.0);
        assert_eq!(report.per_kind["stream"].items, 3);
        assert!((report.error_rate() - 1.0 / 102.0).abs() < 1e-12);

        let hashes = report.per_kind["hashes"].latency_us;
        // 10 µs … 1000 µs in steps of 10: exact to 3 significant digits.
        assert_eq!(hashes.p50, 500);
        assert_eq!(hashes.p90, 900);
        assert_eq!(hashes.p99, 990);
        assert_eq!(hashes.max, 1000);
        assert_eq!(hashes.mean, 505.0);
        let total = report.total.latency_us;
        assert!(total.p50 <= total.p90 && total.p90 <= total.p99 && total.p99 <= total.p999);
        assert!(total.p999 <= total.max);
        assert!(total.max >= 50_000 && total.max < 50_100, "{total:?}");
    }

    #[test]
    fn an_empty_run_reports_zeros_not_nonsense() {
        let report = Report::new(setup(), &Recorder::new().unwrap(), Duration::ZERO).unwrap();
        assert_eq!(report.total.calls, 0);
        assert_eq!(report.total.calls_per_s, 0.0);
        assert_eq!(report.total.latency_us.max, 0);
        assert_eq!(report.error_rate(), 0.0);
        assert!(report.to_text().contains("errors: none"));
    }

    #[test]
    fn json_has_the_documented_fields() {
        let mut recorder = Recorder::new().unwrap();
        recorder.record(
            Kind::Hashes,
            Duration::from_micros(700),
            &ok(1, vec![Verdict::Block]),
        );
        let report = Report::new(setup(), &recorder, Duration::from_secs(1)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
        for field in [
            "calls",
            "ok",
            "errors",
            "elapsed_s",
            "calls_per_s",
            "items_per_s",
            "latency_us",
            "per_kind",
        ] {
            assert!(value.get(field).is_some(), "{field} missing: {value}");
        }
        assert_eq!(value["per_kind"]["hashes"]["verdicts"]["VERDICT_BLOCK"], 1);
        assert_eq!(value["per_kind"]["stream"]["calls"], 0);
        assert_eq!(value["per_kind"]["write"]["calls"], 0);
        assert_eq!(value["latency_us"]["p999"], 700);
        assert_eq!(value["setup"]["mode"], "closed");
        assert!(recorder.kinds[0].errors.is_empty());
    }

    #[test]
    fn broken_writes_count_as_errors_named_for_what_broke() {
        let mut recorder = Recorder::new().unwrap();
        recorder.record(
            Kind::Write,
            Duration::from_millis(4),
            &ok(1, vec![Verdict::Review]),
        );
        recorder.record(
            Kind::Write,
            Duration::from_millis(6),
            &Outcome {
                matched: 0,
                ..Outcome::broken(Failure::WriteNotMatchable)
            },
        );
        recorder.record(
            Kind::Write,
            Duration::from_millis(30),
            &Outcome::failed(tonic::Code::Unavailable),
        );
        let report = Report::new(setup(), &recorder, Duration::from_secs(1)).unwrap();
        let write = &report.per_kind["write"];
        assert_eq!((write.calls, write.ok, write.items), (3, 1, 1));
        assert_eq!(
            write.errors,
            BTreeMap::from([
                ("Unavailable".to_string(), 1),
                ("WriteNotMatchable".to_string(), 1)
            ])
        );
        let text = report.to_text();
        assert!(text.contains("\nwrite "), "{text}");
        assert!(
            text.contains("errors: Unavailable=1, WriteNotMatchable=1"),
            "{text}"
        );
        let value: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
        assert_eq!(value["per_kind"]["write"]["errors"]["WriteNotMatchable"], 1);
        let max = value["per_kind"]["write"]["latency_us"]["max"].as_u64().unwrap();
        assert!((30_000..30_100).contains(&max), "{max}");
    }

    #[test]
    fn latencies_past_the_histogram_s_first_range_are_recorded_exactly() {
        let mut recorder = Recorder::new().unwrap();
        for millis in [50, 1, 2_000] {
            recorder.record(Kind::Hashes, Duration::from_millis(millis), &ok(1, vec![]));
        }
        let report = Report::new(setup(), &recorder, Duration::from_secs(1)).unwrap();
        let max = report.total.latency_us.max;
        assert!((1_999_000..=2_001_000).contains(&max), "max {max} µs");
        let p50 = report.total.latency_us.p50;
        assert!((49_900..=50_100).contains(&p50), "p50 {p50} µs");
    }

    #[test]
    fn latencies_beyond_the_histogram_are_clamped_not_lost() {
        let mut recorder = Recorder::new().unwrap();
        recorder.record(
            Kind::Hashes,
            Duration::from_secs(10_000),
            &Outcome::failed(tonic::Code::DeadlineExceeded),
        );
        recorder.record(Kind::Hashes, Duration::ZERO, &ok(1, vec![]));
        let report = Report::new(setup(), &recorder, Duration::from_secs(1)).unwrap();
        assert_eq!(report.total.calls, 2);
        assert!(report.total.latency_us.max >= MAX_LATENCY_US);
    }
}
