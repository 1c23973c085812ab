//! `hashsieve loadtest`: drives a running server with a mix of `CheckHashes`, `CheckImage` and
//! `CheckStream` calls and writes (add an entry, check that it matches, remove it), at a fixed
//! concurrency (closed loop) or a fixed rate (open loop), and reports throughput, errors by
//! gRPC code and latency percentiles.
//!
//! - [`plan`]: the mix, durations, pacing and the queries (deterministic for a seed).
//! - [`calls`]: one call of each kind, reduced to an outcome.
//! - [`report`]: per-worker recording, merged into the report (JSON or a table).
//!
//! Workers each claim the next call from a shared schedule, make it, and record it in their
//! own recorder, so the hot loop takes no lock. In open loop a call's latency counts from when
//! it was due, not from when a free worker sent it, so a server that falls behind shows it.

mod calls;
mod plan;
mod report;

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use self::calls::{Clients, Workload};
use self::plan::{HashQueries, Kind, Mix, Pace, Rng, Schedule, Stop, parse_duration};
use self::report::{Outcome, Recorder, Report, Setup};
use super::CliResult;
use super::client::{Connection, ServerArgs, describe};
use crate::proto as pb;
use crate::proto::banks_client::BanksClient;

/// Exit code of a run that finished but failed more calls than `--max-error-rate` allows
/// (1 means it could not run at all).
const TOO_MANY_ERRORS: u8 = 3;

/// An open-loop call claimed this long after it was due found every worker busy.
const LATE: Duration = Duration::from_millis(1);
/// The resolution of tokio's timer.
const TIMER_TICK: Duration = Duration::from_millis(1);

#[derive(Debug, clap::Args)]
pub struct LoadtestArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Relative weights of the calls: hashes (CheckHashes), image (CheckImage), stream
    /// (CheckStream of images), write (AddEntries of a new random PDQ entry to --write-bank,
    /// CheckHashes that must match it, RemoveEntries of it), e.g. hashes=8,image=1,write=1.
    #[arg(long, default_value = "hashes=1")]
    mix: Mix,
    /// Bank the write calls add to and remove from; made (action review) if missing. Writes
    /// need an admin API key.
    #[arg(long, value_name = "BANK", default_value = "LOADTEST_WRITES")]
    write_bank: String,
    /// Folder whose files are sent as images (read once at start); needed by image and stream.
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// Hash list (CSV or bare hex, as `import` reads) to make near-duplicate queries of.
    #[arg(long, value_name = "FILE")]
    hashes: Option<PathBuf>,
    /// Fraction of hash queries that are near-duplicates (0 to 31 bits off a PDQ hash) of
    /// --hashes; the rest are random PDQ hashes. Default 0.5 with --hashes, else 0.
    #[arg(long, value_name = "F")]
    near_fraction: Option<f64>,
    /// Seed of the query generator (same seed, same queries per worker).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Hashes per CheckHashes call.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch: u32,
    /// Images per CheckStream call.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    stream_items: u32,
    /// Only these banks (comma-separated); all enabled banks by default.
    #[arg(long, value_delimiter = ',')]
    banks: Vec<String>,
    /// Do not match PDQ's mirrored and rotated variants in image checks.
    #[arg(long)]
    no_dihedral: bool,
    /// Workers, each with one call in flight; with --rate, the most calls in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    concurrency: u32,
    /// Open loop: start this many calls per second, whatever the answers.
    #[arg(long, value_name = "CALLS_PER_S")]
    rate: Option<f64>,
    /// How long to send calls (ms, s, m, h) [default: 10s].
    #[arg(long, value_parser = parse_duration, conflicts_with = "count")]
    duration: Option<Duration>,
    /// Make exactly this many calls instead of running for a duration.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Send calls for this long first, left out of the report.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    warmup: Duration,
    /// Threads that drive the load [default: one per core]. On the server's own machine, 1
    /// leaves the server more of the CPU: measured at 1M entries, 7% more CheckHashes calls/s
    /// than two threads on two cores.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// HTTP/2 connections the calls are spread over, in turn.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    connections: u32,
    /// A call not answered within this long counts as DeadlineExceeded.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    timeout: Duration,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// No progress bar (it is hidden anyway when stderr is not a terminal).
    #[arg(long, short)]
    quiet: bool,
    /// Write one line per second of the load to FILE (tab-separated: seconds since the start,
    /// calls answered, failed calls, failed stream items, slowest answer in ms, all over that
    /// second), to see when errors or stalls happened in a long run.
    #[arg(long, value_name = "FILE")]
    timeline: Option<PathBuf>,
    /// Exit with code 3 when more than this fraction of calls failed.
    #[arg(long, value_name = "F")]
    max_error_rate: Option<f64>,
}

/// The run as validated from the arguments, before any connection.
struct Plan {
    workload: Workload,
    mix: Mix,
    stop: Stop,
    pace: Pace,
    setup: Setup,
}

/// What every worker of every phase shares.
struct Shared {
    clients: Clients,
    workload: Workload,
    mix: Mix,
    seed: u64,
    /// No progress bar.
    quiet: bool,
    /// Set by Ctrl-C: no new call starts, and the report covers what was done.
    interrupted: AtomicBool,
}

/// Counters the progress bar and the timeline read while workers run.
#[derive(Default)]
struct Live {
    calls: AtomicU64,
    errors: AtomicU64,
    item_errors: AtomicU64,
    /// The slowest answer since the timeline last looked, in µs.
    slowest_us: AtomicU64,
}

pub fn run(args: LoadtestArgs) -> CliResult {
    let plan = plan_run(&args)?;
    // Many calls in flight and request encoding want every core, unlike the other commands,
    // unless the server shares them. One thread runs everything itself: a multi-threaded
    // runtime of one worker would still hand wake-ups between it and this thread (measured
    // at 1M entries: 36 µs of the load generator's CPU per CheckHashes call, 52 on two threads).
    let mut runtime = match args.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            runtime.worker_threads(threads.into());
            runtime
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    runtime
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?
        .block_on(drive(args, plan))
}

/// Checks every argument, then reads the inputs, so mistakes show before any load is sent.
fn plan_run(args: &LoadtestArgs) -> Result<Plan, String> {
    let pace = match args.rate {
        Some(rate) if rate.is_finite() && rate > 0.0 => Pace::Open { rate },
        Some(rate) => return Err(format!("--rate must be a positive number of calls/s, got {rate}")),
        None => Pace::Closed,
    };
    let stop = match (args.count, args.duration) {
        (Some(count), _) => Stop::Count(count),
        (None, Some(duration)) if duration.is_zero() => return Err("--duration must be positive".into()),
        (None, duration) => Stop::After(duration.unwrap_or(Duration::from_secs(10))),
    };
    if args.timeout.is_zero() {
        return Err("--timeout must be positive".into());
    }
    if let Some(limit) = args.max_error_rate
        && !(0.0..=1.0).contains(&limit)
    {
        return Err(format!("--max-error-rate must be between 0 and 1, got {limit}"));
    }
    let images = match &args.images {
        Some(dir) => plan::read_images(dir)?,
        None if args.mix.needs_images() => {
            return Err("--images DIR is needed when the mix has image or stream calls".into());
        }
        None => Vec::new(),
    };
    let known = match &args.hashes {
        Some(path) => plan::read_hash_list(path)?,
        None => Vec::new(),
    };
    let near_fraction = args
        .near_fraction
        .unwrap_or(if known.is_empty() { 0.0 } else { 0.5 });
    let setup = Setup {
        server: args.server.server.clone(),
        mode: match pace {
            Pace::Closed => "closed",
            Pace::Open { .. } => "open",
        },
        concurrency: args.concurrency as usize,
        rate: args.rate,
        connections: args.connections as usize,
        mix: Kind::ALL
            .into_iter()
            .map(|k| (k.name(), args.mix.weight(k)))
            .collect(),
        batch: args.batch as usize,
        stream_items: args.stream_items as usize,
        warmup_s: args.warmup.as_secs_f64(),
        seed: args.seed,
        write_bank: args.mix.writes().then(|| args.write_bank.clone()),
    };
    let workload = Workload {
        queries: HashQueries::new(known, near_fraction)?,
        images,
        batch: args.batch as usize,
        stream_items: args.stream_items as usize,
        banks: args.banks.clone(),
        dihedral: !args.no_dihedral,
        write_bank: args.write_bank.clone(),
        timeout: args.timeout,
    };
    Ok(Plan {
        workload,
        mix: args.mix,
        stop,
        pace,
        setup,
    })
}

async fn drive(args: LoadtestArgs, plan: Plan) -> CliResult {
    let matchers = args.server.matchers(args.connections as usize).await?;
    let banks = if plan.mix.writes() {
        prepare_write_bank(&args.server, &args.write_bank).await?;
        let mut banks = Vec::with_capacity(args.connections as usize);
        for _ in 0..args.connections {
            banks.push(args.server.banks().await?);
        }
        banks
    } else {
        Vec::new()
    };
    let shared = Arc::new(Shared {
        clients: Clients::new(matchers, banks),
        workload: plan.workload,
        mix: plan.mix,
        seed: args.seed,
        quiet: args.quiet,
        interrupted: AtomicBool::new(false),
    });
    let on_interrupt = tokio::spawn({
        let shared = shared.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                shared.interrupted.store(true, Ordering::Relaxed);
            }
        }
    });
    let timeline = match &args.timeline {
        Some(path) => Some(BufWriter::new(
            File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
        )),
        None => None,
    };
    let workers = args.concurrency as usize;
    if !args.warmup.is_zero() {
        run_phase(
            &shared,
            Stop::After(args.warmup),
            plan.pace,
            workers,
            0,
            "warmup",
            None,
        )
        .await?;
    }
    let (recorder, elapsed) = run_phase(&shared, plan.stop, plan.pace, workers, 1, "load", timeline).await?;
    on_interrupt.abort();

    let report = Report::new(plan.setup, &recorder, elapsed)?;
    if args.json {
        println!("{}", report.to_json()?);
    } else {
        print!("{}", report.to_text());
    }
    if shared.interrupted.load(Ordering::Relaxed) {
        eprintln!("hashsieve: interrupted: the report covers the calls made until then");
    }
    match args.max_error_rate {
        Some(limit) if report.error_rate() > limit => {
            eprintln!(
                "hashsieve: {:.2}% of calls failed, over --max-error-rate {limit}",
                report.error_rate() * 100.0
            );
            Ok(ExitCode::from(TOO_MANY_ERRORS))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Makes the write bank unless it exists, and checks that it is enabled: a disabled bank
/// matches nothing, so every write would fail its check.
async fn prepare_write_bank(server: &ServerArgs, name: &str) -> Result<(), String> {
    let mut client: BanksClient<Connection> = server.banks().await?;
    let bank = pb::Bank {
        name: name.to_string(),
        action: pb::Action::Review as i32,
        description: "entries added, matched and removed by hashsieve loadtest".into(),
        enabled: Some(true),
        ..Default::default()
    };
    match client
        .create_bank(pb::CreateBankRequest { bank: Some(bank) })
        .await
    {
        Ok(_) => {}
        Err(status) if status.code() == tonic::Code::AlreadyExists => {}
        Err(status) => {
            return Err(format!(
                "cannot create the write bank {name}: {}",
                describe(status)
            ));
        }
    }
    let bank = client
        .get_bank(pb::GetBankRequest {
            name: name.to_string(),
        })
        .await
        .map_err(|status| format!("write bank {name}: {}", describe(status)))?
        .into_inner();
    if bank.enabled == Some(false) {
        return Err(format!(
            "the write bank {name} is disabled, so writes could not match: enable it or name another with --write-bank"
        ));
    }
    Ok(())
}

/// Runs `workers` workers until `stop`, and returns their merged record and the phase's
/// length (from its start until the last call answered).
async fn run_phase(
    shared: &Arc<Shared>,
    stop: Stop,
    pace: Pace,
    workers: usize,
    phase: u64,
    name: &str,
    timeline: Option<BufWriter<File>>,
) -> Result<(Recorder, Duration), String> {
    // Each worker's record is made before the clock starts: making them is not load.
    let recorders = (0..workers)
        .map(|_| Recorder::new())
        .collect::<Result<Vec<_>, _>>()?;
    let schedule = Arc::new(Schedule::new(Instant::now(), stop, pace));
    let live = Arc::new(Live::default());
    let progress = progress_bar(shared.quiet, stop, name);
    let ticker = tokio::spawn(show_progress(
        progress.clone(),
        schedule.clone(),
        live.clone(),
        stop,
    ));
    let (finished, on_finish) = tokio::sync::oneshot::channel();
    let timeline =
        timeline.map(|out| tokio::spawn(write_timeline(out, schedule.clone(), live.clone(), on_finish)));
    let handles: Vec<_> = recorders
        .into_iter()
        .zip(0..workers as u64)
        .map(|(recorder, worker)| {
            let seed = worker_seed(shared.seed, phase * workers as u64 + worker);
            tokio::spawn(work(
                shared.clone(),
                schedule.clone(),
                live.clone(),
                recorder,
                seed,
            ))
        })
        .collect();
    let mut merged = Recorder::new()?;
    for handle in handles {
        let recorder = handle.await.map_err(|e| format!("a load worker failed: {e}"))??;
        merged.merge(&recorder)?;
    }
    let elapsed = schedule.start().elapsed();
    ticker.abort();
    progress.finish_and_clear();
    if let Some(timeline) = timeline {
        let _ = finished.send(());
        timeline
            .await
            .map_err(|e| format!("the timeline writer failed: {e}"))??;
    }
    Ok((merged, elapsed))
}

/// Distinct, reproducible query streams per worker.
fn worker_seed(seed: u64, worker: u64) -> u64 {
    Rng::new(seed ^ worker.wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

/// One worker: claims calls until the schedule says the phase is over.
async fn work(
    shared: Arc<Shared>,
    schedule: Arc<Schedule>,
    live: Arc<Live>,
    mut recorder: Recorder,
    seed: u64,
) -> Result<Recorder, String> {
    let mut rng = Rng::new(seed);
    while !shared.interrupted.load(Ordering::Relaxed)
        && let Some(due) = schedule.claim()
    {
        // Only an open-loop call can start late: a closed-loop one is due when claimed.
        if schedule.is_open_loop() && due.elapsed() > LATE {
            recorder.record_late_start();
        }
        // tokio's timer fires on millisecond ticks, rounding a deadline up: sleeping until the
        // due time would start calls up to 1 ms late and count that as the server's latency.
        // So a call starts up to 1 ms early instead, and its latency counts from when it was
        // sent, or from when it was due if it went out late.
        let wake = due.checked_sub(TIMER_TICK).unwrap_or(due);
        if wake > Instant::now() {
            tokio::time::sleep_until(wake.into()).await;
        }
        let sent = Instant::now().min(due);
        let kind = shared.mix.pick(&mut rng);
        let outcome: Outcome = calls::call(kind, &shared.clients, &shared.workload, &mut rng).await;
        let latency = sent.elapsed();
        live.calls.fetch_add(1, Ordering::Relaxed);
        if outcome.status.is_err() {
            live.errors.fetch_add(1, Ordering::Relaxed);
        }
        if !outcome.item_errors.is_empty() {
            live.item_errors
                .fetch_add(outcome.item_errors.len() as u64, Ordering::Relaxed);
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        live.slowest_us.fetch_max(micros, Ordering::Relaxed);
        recorder.record(kind, latency, &outcome);
    }
    Ok(recorder)
}

/// A bar on stderr, or a hidden one when asked for quiet or when stderr is not a terminal
/// (a harness capturing output wants no control characters).
fn progress_bar(quiet: bool, stop: Stop, name: &str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let length = match stop {
        Stop::Count(count) => count,
        Stop::After(duration) => u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
    };
    let bar = ProgressBar::new(length);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>6} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    bar
}

/// Refreshes the bar five times a second: calls done, errors, rate so far.
async fn show_progress(bar: ProgressBar, schedule: Arc<Schedule>, live: Arc<Live>, stop: Stop) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        let calls = live.calls.load(Ordering::Relaxed);
        let errors = live.errors.load(Ordering::Relaxed);
        let elapsed = schedule.start().elapsed();
        bar.set_position(match stop {
            Stop::Count(_) => calls,
            Stop::After(_) => u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        });
        let rate = calls as f64 / elapsed.as_secs_f64().max(1e-3);
        bar.set_message(format!(
            "{:.1} s, {calls} calls, {errors} errors, {rate:.0} calls/s",
            elapsed.as_secs_f64()
        ));
    }
}

/// Writes one line per second of the phase (and one for the last part second, once
/// `finished` fires): what was answered in that second, and the slowest answer.
async fn write_timeline(
    mut out: BufWriter<File>,
    schedule: Arc<Schedule>,
    live: Arc<Live>,
    mut finished: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("cannot write the timeline: {e}");
    writeln!(out, "t_s\tcalls\terrors\titem_errors\tslowest_ms").map_err(failed)?;
    let second = Duration::from_secs(1);
    let mut tick = tokio::time::interval_at((schedule.start() + second).into(), second);
    let mut before = [0u64; 3];
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = &mut finished => true,
        };
        let now = [&live.calls, &live.errors, &live.item_errors].map(|c| c.load(Ordering::Relaxed));
        let slowest_ms = live.slowest_us.swap(0, Ordering::Relaxed) as f64 / 1000.0;
        writeln!(
            out,
            "{:.1}\t{}\t{}\t{}\t{slowest_ms:.1}",
            schedule.start().elapsed().as_secs_f64(),
            now[0] - before[0],
            now[1] - before[1],
            now[2] - before[2],
        )
        .map_err(failed)?;
        // Small writes, once a second: buffered, flushed so a run cut short keeps its lines.
        out.flush().map_err(failed)?;
        before = now;
        if last {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_timeline_ends_with_what_the_last_part_second_saw() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timeline.tsv");
        let schedule = Arc::new(Schedule::new(Instant::now(), Stop::Count(1), Pace::Closed));
        let live = Arc::new(Live::default());
        live.calls.store(7, Ordering::Relaxed);
        live.errors.store(2, Ordering::Relaxed);
        live.item_errors.store(3, Ordering::Relaxed);
        live.slowest_us.store(1_500, Ordering::Relaxed);
        let (finished, on_finish) = tokio::sync::oneshot::channel();
        finished.send(()).unwrap();
        let out = BufWriter::new(File::create(&path).unwrap());
        write_timeline(out, schedule, live, on_finish).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "t_s\tcalls\terrors\titem_errors\tslowest_ms");
        let fields: Vec<&str> = lines[1].split('\t').collect();
        assert_eq!(fields[1..], ["7", "2", "3", "1.5"]);
        assert_eq!(lines.len(), 2);
    }
}
