//! The service on the PostgreSQL store, through the real binary: banks and entries live in
//! the database and survive a restart. Needs `HASHSIEVE_TEST_DATABASE_URL` (`.ci/run` sets
//! it); without it these tests say they were skipped and pass.

use crate::common::{ServerProcess, block_bank, pdq};
use hashsieve::proto as pb;
use tonic::transport::Channel;

const BRIDGE_PDQ: &str = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";

/// Runs `work` on a plain thread: the synchronous PostgreSQL client refuses to run on an
/// async runtime's threads.
fn off_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| scope.spawn(work).join().unwrap())
}

/// A fresh schema of the test database, dropped afterwards; `None` when no database is set.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn create(test: &str) -> Option<Schema> {
        let Some(url) = std::env::var("HASHSIEVE_TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            eprintln!("HASHSIEVE_TEST_DATABASE_URL is unset: {test} was skipped");
            return None;
        };
        let name = format!("hs_e2e_{}_{test}", std::process::id());
        off_runtime(|| {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let sql = format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}");
            client.batch_execute(&sql).unwrap();
        });
        Some(Schema { url, name })
    }

    /// The URL that keeps a server's tables in this schema; its connections carry the
    /// schema's name as their application name, so a test can find and terminate them.
    fn store_url(&self) -> String {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-csearch_path%3D{name}&application_name={name}",
            self.url,
            name = self.name
        )
    }

    /// The single `bigint` that `sql` selects, run in this schema.
    fn query_i64(&self, sql: &str) -> i64 {
        off_runtime(|| {
            let mut client = postgres::Client::connect(&self.url, postgres::NoTls).unwrap();
            client
                .batch_execute(&format!("SET search_path TO {}", self.name))
                .unwrap();
            client.query_one(sql, &[]).unwrap().get(0)
        })
    }

    /// Terminates every server connection of this schema's servers, as a database restart or
    /// a network failure would; returns how many there were.
    fn terminate_connections(&self) -> i64 {
        self.query_i64(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = '{}'",
            self.name
        ))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        off_runtime(|| {
            if let Ok(mut client) = postgres::Client::connect(&self.url, postgres::NoTls) {
                let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
            }
        });
    }
}

#[tokio::test]
async fn banks_and_entries_live_in_postgres_and_survive_a_restart() {
    let Some(schema) = Schema::create("restart") else {
        return;
    };
    let data_dir = tempfile::tempdir().unwrap();
    let url = schema.store_url();
    let args = ["--store", url.as_str()];
    let server = ServerProcess::start_with(data_dir.path(), &args);
    let channel = server.channel().await;
    let mut banks = pb::banks_client::BanksClient::new(channel.clone());
    banks.create_bank(block_bank("TVEC")).await.unwrap();
    let entries = vec![
        pb::Entry {
            hash: Some(pdq(BRIDGE_PDQ)),
            id: "bridge".into(),
            ..Default::default()
        },
        pb::Entry {
            hash: Some(pdq(&"0f".repeat(32))),
            id: "other".into(),
            ..Default::default()
        },
    ];
    let added = banks
        .add_entries(tokio_stream::iter([pb::AddEntriesRequest {
            bank: "TVEC".into(),
            entries,
            ..Default::default()
        }]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.added, 2);
    let removed = banks
        .remove_entries(pb::RemoveEntriesRequest {
            bank: "TVEC".into(),
            ids: vec!["other".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.removed, 1);

    // The rows are in the database, and the change feed recorded every change in order.
    let column = |sql: &str| -> Vec<String> {
        off_runtime(|| {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            client
                .query(sql, &[])
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect()
        })
    };
    assert_eq!(column("SELECT external_id FROM entries"), ["bridge"]);
    let kinds = column("SELECT kind FROM changes ORDER BY seq");
    assert_eq!(
        kinds,
        ["bank_created", "entry_added", "entry_added", "entry_removed"]
    );

    // A new process on the same database (and an empty data directory) has it all.
    server.kill();
    let empty_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(empty_dir.path(), &args);
    let mut matcher = pb::matcher_client::MatcherClient::new(server.channel().await);
    let response = matcher
        .check_hashes(pb::CheckHashesRequest {
            hashes: vec![pdq(BRIDGE_PDQ)],
            banks: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.verdict, pb::Verdict::Block as i32);
    assert_eq!(response.matches.len(), 1);
    assert_eq!(response.matches[0].entry_id, "bridge");
}

// ---- Replicas following one database ----

/// Distinct pseudo-random PDQ hashes (splitmix64), the same for a seed on every run.
fn random_hashes(seed: u64, count: usize) -> Vec<String> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..count)
        .map(|_| (0..4).map(|_| format!("{:016x}", next())).collect())
        .collect()
}

async fn add(
    banks: &mut pb::banks_client::BanksClient<Channel>,
    hash: &str,
    id: &str,
) -> pb::AddEntriesResponse {
    banks
        .add_entries(tokio_stream::iter([pb::AddEntriesRequest {
            bank: "TVEC".into(),
            entries: vec![pb::Entry {
                hash: Some(pdq(hash)),
                id: id.into(),
                ..Default::default()
            }],
            ..Default::default()
        }]))
        .await
        .unwrap()
        .into_inner()
}

/// Whether `hash` matches an entry on the server behind `matcher`.
async fn matches(matcher: &mut pb::matcher_client::MatcherClient<Channel>, hash: &str) -> bool {
    let response = matcher
        .check_hashes(pb::CheckHashesRequest {
            hashes: vec![pdq(hash)],
            banks: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    response.matches.iter().any(|m| m.hex == hash)
}

/// Polls `matcher` until `hash` matches (or, with `present` false, no longer does); returns
/// how long that took. Fails the test past a generous limit: a lost change never arrives.
async fn until(
    matcher: &mut pb::matcher_client::MatcherClient<Channel>,
    hash: &str,
    present: bool,
) -> std::time::Duration {
    let started = std::time::Instant::now();
    while matches(matcher, hash).await != present {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{hash} never became {} on a replica",
            if present { "matchable" } else { "unmatched" }
        );
        tokio::time::sleep(std::time::Duration::from_micros(200)).await;
    }
    started.elapsed()
}

fn percentile(sorted: &[std::time::Duration], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

fn report(what: &str, mut delays: Vec<std::time::Duration>) {
    delays.sort();
    eprintln!(
        "propagation of {what} to other replicas over {} observations: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        delays.len(),
        percentile(&delays, 50.0),
        percentile(&delays, 99.0),
        percentile(&delays, 100.0),
    );
}

async fn status(server: &ServerProcess) -> pb::GetStatusResponse {
    let mut matcher = pb::matcher_client::MatcherClient::new(server.channel().await);
    matcher
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn a_replicas_progress_through_the_feed_is_exposed_as_metrics() {
    let Some(schema) = Schema::create("metrics") else {
        return;
    };
    let url = schema.store_url();
    let args = ["--store", url.as_str(), "--metrics-listen", "127.0.0.1:0"];
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(dir.path(), &args);
    let address = crate::metrics::metrics_address(&server);
    let mut banks = pb::banks_client::BanksClient::new(server.channel().await);
    banks.create_bank(block_bank("TVEC")).await.unwrap();
    add(&mut banks, BRIDGE_PDQ, "bridge").await;
    // Bank creation and the entry are two changes; the feed applies its own writes too.
    let started = std::time::Instant::now();
    let text = loop {
        let (_, text) = crate::metrics::http_get(&address, "/metrics").await;
        if crate::metrics::sample(&text, "hashsieve_feed_position").is_some_and(|p| p >= 2.0) {
            break text;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{text}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        crate::metrics::sample(&text, "hashsieve_feed_behind"),
        Some(0.0),
        "{text}"
    );
    assert!(crate::metrics::sample(&text, "hashsieve_feed_lag_seconds").is_some_and(|lag| lag < 20.0));
    assert_eq!(
        crate::metrics::sample(&text, r#"hashsieve_bank_entries{bank="TVEC"}"#),
        Some(1.0)
    );
}

/// A match on one replica is listed, and counted, on another: the match log lives in the
/// database, not in each process.
#[tokio::test]
async fn a_match_on_one_replica_is_listed_and_counted_on_another() {
    let Some(schema) = Schema::create("match_log") else {
        return;
    };
    let url = schema.store_url();
    let args = ["--store", url.as_str()];
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let replicas: Vec<ServerProcess> = ["127.0.0.1:0", "127.0.0.2:0"]
        .iter()
        .zip(&dirs)
        .map(|(listen, dir)| ServerProcess::start_on(listen, dir.path(), &args))
        .collect();
    let mut banks = pb::banks_client::BanksClient::new(replicas[0].channel().await);
    let mut matcher = pb::matcher_client::MatcherClient::new(replicas[1].channel().await);
    banks.create_bank(block_bank("TVEC")).await.unwrap();
    add(&mut banks, BRIDGE_PDQ, "bridge").await;
    until(&mut matcher, BRIDGE_PDQ, true).await;

    let started = std::time::Instant::now();
    loop {
        let recent = banks
            .list_recent_matches(pb::ListRecentMatchesRequest {
                bank: "TVEC".into(),
                limit: 10,
            })
            .await
            .unwrap()
            .into_inner()
            .matches;
        let count = banks
            .get_bank(pb::GetBankRequest { name: "TVEC".into() })
            .await
            .unwrap()
            .into_inner()
            .match_count;
        if let Some(found) = recent.first() {
            let found = found.r#match.as_ref().unwrap();
            assert_eq!((found.entry_id.as_str(), found.distance), ("bridge", 0));
            if count >= 1 {
                break;
            }
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the match never reached the other replica: {recent:?}, count {count}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(schema.query_i64("SELECT count(*) FROM match_log") >= 1);
}

#[tokio::test]
async fn three_replicas_see_each_others_additions_and_removals() {
    const CHANGES: usize = 1000;
    let Some(schema) = Schema::create("replicas") else {
        return;
    };
    let url = schema.store_url();
    let args = ["--store", url.as_str()];
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let replicas: Vec<ServerProcess> = ["127.0.0.1:0", "127.0.0.2:0", "127.0.0.3:0"]
        .iter()
        .zip(&dirs)
        .map(|(listen, dir)| ServerProcess::start_on(listen, dir.path(), &args))
        .collect();
    let mut banks = Vec::new();
    let mut matchers = Vec::new();
    for replica in &replicas {
        let channel = replica.channel().await;
        banks.push(pb::banks_client::BanksClient::new(channel.clone()));
        matchers.push(pb::matcher_client::MatcherClient::new(channel));
    }
    banks[0].create_bank(block_bank("TVEC")).await.unwrap();
    // The bank reaches the others through the feed too.
    for bank in &mut banks[1..] {
        let started = std::time::Instant::now();
        while bank
            .get_bank(pb::GetBankRequest { name: "TVEC".into() })
            .await
            .is_err()
        {
            assert!(
                started.elapsed().as_secs() < 20,
                "the bank never reached a replica"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    // Each addition goes through one replica, round robin, and is polled for on the other two
    // at once; the writer matches it on acknowledgement.
    let hashes = random_hashes(7, CHANGES);
    let mut delays = Vec::new();
    for (i, hash) in hashes.iter().enumerate() {
        let writer = i % 3;
        assert_eq!(add(&mut banks[writer], hash, &format!("e{i}")).await.added, 1);
        assert!(
            matches(&mut matchers[writer], hash).await,
            "not matchable on acknowledgement"
        );
        let (a, b) = ((writer + 1) % 3, (writer + 2) % 3);
        let (mut first, mut second) = (matchers[a].clone(), matchers[b].clone());
        let (x, y) = tokio::join!(until(&mut first, hash, true), until(&mut second, hash, true));
        delays.extend([x, y]);
    }
    report("additions", delays);

    // A replica that has not yet seen another's addition still decides a write on the
    // latest state: adding the same hash again through another replica updates it.
    let twice = random_hashes(8, 1).remove(0);
    assert_eq!(add(&mut banks[0], &twice, "first").await.added, 1);
    let again = add(&mut banks[1], &twice, "second").await;
    assert_eq!((again.added, again.updated), (0, 1));

    let mut delays = Vec::new();
    for (i, hash) in hashes.iter().enumerate() {
        let writer = (i + 1) % 3;
        let removed = banks[writer]
            .remove_entries(pb::RemoveEntriesRequest {
                bank: "TVEC".into(),
                ids: vec![format!("e{i}")],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(removed.removed, 1);
        assert!(
            !matches(&mut matchers[writer], hash).await,
            "matchable after its removal"
        );
        let (a, b) = ((writer + 1) % 3, (writer + 2) % 3);
        let (mut first, mut second) = (matchers[a].clone(), matchers[b].clone());
        let (x, y) = tokio::join!(until(&mut first, hash, false), until(&mut second, hash, false));
        delays.extend([x, y]);
    }
    report("removals", delays);

    // All three hold the same: one entry, and the same feed position. A replica may have taken
    // the last removal out of its index a moment before its counts and position say so (it
    // applies a batch, then records it): wait for it to report the head it knows as applied.
    let mut positions = Vec::new();
    for replica in &replicas {
        let started = std::time::Instant::now();
        let status = loop {
            let status = status(replica).await;
            if status.feed.as_ref().is_some_and(|feed| feed.behind == 0) {
                break status;
            }
            assert!(started.elapsed().as_secs() < 20, "{status:?}");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        assert_eq!((status.banks, status.entries), (1, 1), "{status:?}");
        let feed = status.feed.unwrap();
        assert!(feed.error.is_empty() && feed.within_bound, "{feed:?}");
        positions.push(feed.position);
    }
    let head = positions[0].max(positions[1]).max(positions[2]);
    for (replica, matcher) in replicas.iter().zip(&mut matchers) {
        until(matcher, &twice, true).await;
        let started = std::time::Instant::now();
        while status(replica).await.feed.unwrap().position < head {
            assert!(
                started.elapsed().as_secs() < 20,
                "a replica stopped short of the head"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test]
async fn a_restarted_replica_catches_up_and_dropped_connections_lose_nothing() {
    let Some(schema) = Schema::create("catchup") else {
        return;
    };
    let url = schema.store_url();
    let args = ["--store", url.as_str(), "--feed-poll", "200ms"];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = ServerProcess::start_on("127.0.0.1:0", dir_a.path(), &args);
    let b = ServerProcess::start_on("127.0.0.2:0", dir_b.path(), &args);
    let mut banks_a = pb::banks_client::BanksClient::new(a.channel().await);
    banks_a.create_bank(block_bank("TVEC")).await.unwrap();
    let hashes = random_hashes(11, 300);
    for (i, hash) in hashes[..100].iter().enumerate() {
        add(&mut banks_a, hash, &format!("e{i}")).await;
    }
    let mut matcher_b = pb::matcher_client::MatcherClient::new(b.channel().await);
    until(&mut matcher_b, &hashes[99], true).await;

    // B is killed; A goes on adding, removing, and making and deleting another bank.
    b.kill();
    for (i, hash) in hashes[100..200].iter().enumerate() {
        add(&mut banks_a, hash, &format!("e{}", 100 + i)).await;
    }
    banks_a
        .remove_entries(pb::RemoveEntriesRequest {
            bank: "TVEC".into(),
            ids: (0..50).map(|i| format!("e{i}")).collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut other = block_bank("TVEC");
    other.bank.as_mut().unwrap().name = "OTHER".into();
    banks_a.create_bank(other).await.unwrap();
    banks_a
        .delete_bank(pb::DeleteBankRequest { name: "OTHER".into() })
        .await
        .unwrap();

    // Restarted, B has it all from its snapshot.
    let b = ServerProcess::start_on("127.0.0.2:0", dir_b.path(), &args);
    let mut matcher_b = pb::matcher_client::MatcherClient::new(b.channel().await);
    for (i, hash) in hashes[..200].iter().enumerate() {
        assert_eq!(
            matches(&mut matcher_b, hash).await,
            i >= 50,
            "entry e{i} after the restart"
        );
    }
    let status_b = status(&b).await;
    assert_eq!((status_b.banks, status_b.entries), (1, 150));

    // Every connection of both replicas is terminated. Writes through either, and the feed,
    // carry on over new connections; nothing is lost.
    let terminated = schema.terminate_connections();
    assert!(terminated >= 2, "only {terminated} connections were terminated");
    let mut banks_b = pb::banks_client::BanksClient::new(b.channel().await);
    for (i, hash) in hashes[200..300].iter().enumerate() {
        let banks = if i % 2 == 0 { &mut banks_a } else { &mut banks_b };
        assert_eq!(add(banks, hash, &format!("e{}", 200 + i)).await.added, 1);
        if i == 50 {
            schema.terminate_connections();
        }
    }
    let mut matcher_a = pb::matcher_client::MatcherClient::new(a.channel().await);
    for hash in &hashes[200..300] {
        until(&mut matcher_a, hash, true).await;
        until(&mut matcher_b, hash, true).await;
    }
    for server in [&a, &b] {
        let status = status(server).await;
        assert_eq!((status.banks, status.entries), (1, 250), "{status:?}");
    }
}

#[tokio::test]
async fn a_replica_whose_unapplied_changes_were_pruned_reloads_a_fresh_snapshot_in_place() {
    let Some(schema) = Schema::create("pruned") else {
        return;
    };
    let url = schema.store_url();
    let common = ["--store", url.as_str(), "--feed-poll", "200ms"];
    let pruning = [&common[..], &["--feed-retention", "1s"]].concat();
    let keeping = [&common[..], &["--feed-retention", "0s"]].concat();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = ServerProcess::start_on("127.0.0.1:0", dir_a.path(), &pruning);
    let mut b = ServerProcess::start_on("127.0.0.2:0", dir_b.path(), &keeping);
    let mut banks_a = pb::banks_client::BanksClient::new(a.channel().await);
    banks_a.create_bank(block_bank("TVEC")).await.unwrap();
    let hashes = random_hashes(21, 4);
    add(&mut banks_a, &hashes[0], "e0").await;
    let mut matcher_b = pb::matcher_client::MatcherClient::new(b.channel().await);
    until(&mut matcher_b, &hashes[0], true).await;

    // B stalls; A adds three entries, removes the one B has, and, a second later, prunes all
    // changes but the newest, among them those B has not applied.
    b.signal("STOP");
    for (i, hash) in hashes.iter().enumerate().skip(1) {
        add(&mut banks_a, hash, &format!("e{i}")).await;
    }
    banks_a
        .remove_entries(pb::RemoveEntriesRequest {
            bank: "TVEC".into(),
            ids: vec!["e0".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while schema.query_i64("SELECT count(*) FROM changes") > 1 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "A never pruned the feed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        schema.query_i64("SELECT value::bigint FROM hashsieve_meta WHERE key = 'feed_horizon'"),
        schema.query_i64("SELECT max(seq) FROM changes") - 1,
        "the horizon is the last change pruned"
    );

    // Resumed, B finds its next changes gone: it loads a fresh snapshot in place, with the
    // removal, and serves on without a restart.
    b.signal("CONT");
    for hash in &hashes[1..] {
        until(&mut matcher_b, hash, true).await;
    }
    until(&mut matcher_b, &hashes[0], false).await;
    assert!(
        !b.wait_for_log("loading a fresh snapshot", 1).is_empty(),
        "B's log gives the reason"
    );
    assert!(b.child.try_wait().unwrap().is_none(), "B is still running");
    let status_b = status(&b).await;
    assert_eq!((status_b.banks, status_b.entries), (1, 3), "{status_b:?}");

    // And it follows the feed again from there.
    let extra = random_hashes(22, 1);
    add(&mut banks_a, &extra[0], "e4").await;
    until(&mut matcher_b, &extra[0], true).await;
    assert_eq!(status(&a).await.entries, 4);
}

/// A TCP relay to the test database that a test can cut, as a network partition would:
/// while cut it closes every relayed connection and every new one at once.
struct Partition {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Partition {
    fn relay_to(upstream: String) -> Partition {
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::<TcpStream>::new()));
        let (cut_flag, open_list) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut_flag.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut list = open_list.lock().unwrap();
                list.extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Partition { port, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn heal(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn health(server: &ServerProcess) -> i32 {
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

/// Polls until `condition` holds of the server's health and status, failing past a limit.
async fn until_health(server: &ServerProcess, serving: bool) -> pb::GetStatusResponse {
    use tonic_health::ServingStatus;
    let wanted = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    } as i32;
    let started = std::time::Instant::now();
    loop {
        if health(server).await == wanted {
            return status(server).await;
        }
        assert!(started.elapsed().as_secs() < 30, "health never became {wanted}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_replica_cut_off_from_the_database_stops_serving_and_recovers() {
    let Some(schema) = Schema::create("partition") else {
        return;
    };
    let direct = schema.store_url();
    let config: postgres::Config = direct.parse().unwrap();
    let (Some(postgres::config::Host::Tcp(host)), Some(port)) = (
        config.get_hosts().first().cloned(),
        config.get_ports().first().copied(),
    ) else {
        eprintln!("the test database is not reached over TCP: the partition test was skipped");
        return;
    };
    let Some(through) = direct
        .contains(&format!("@{host}:{port}/"))
        .then(|| direct.replace(&format!("@{host}:{port}/"), "@127.0.0.1:PORT/"))
    else {
        eprintln!("the test database URL names no host:port: the partition test was skipped");
        return;
    };
    let partition = Partition::relay_to(format!("{host}:{port}"));
    let through = through.replace("PORT", &partition.port.to_string());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let writer = ServerProcess::start_on("127.0.0.1:0", dir_a.path(), &["--store", &direct]);
    let cut_off = ServerProcess::start_on(
        "127.0.0.2:0",
        dir_b.path(),
        &["--store", &through, "--max-lag", "1s", "--feed-poll", "100ms"],
    );
    let mut banks = pb::banks_client::BanksClient::new(writer.channel().await);
    banks.create_bank(block_bank("TVEC")).await.unwrap();
    let hashes = random_hashes(13, 2);
    add(&mut banks, &hashes[0], "before").await;
    let mut matcher = pb::matcher_client::MatcherClient::new(cut_off.channel().await);
    until(&mut matcher, &hashes[0], true).await;
    until_health(&cut_off, true).await;

    // Cut off, it cannot follow: past --max-lag it says so, and health turns NOT_SERVING.
    partition.cut();
    add(&mut banks, &hashes[1], "during").await;
    let status = until_health(&cut_off, false).await;
    let feed = status.feed.unwrap();
    assert!(!feed.within_bound && feed.lag_ms >= 1000, "{feed:?}");
    assert!(!feed.error.is_empty(), "{feed:?}");

    // Healed, it catches up with what it missed and serves again.
    partition.heal();
    let status = until_health(&cut_off, true).await;
    assert!(status.feed.unwrap().error.is_empty());
    until(&mut matcher, &hashes[1], true).await;
    assert_eq!(status.entries, 2);
}
