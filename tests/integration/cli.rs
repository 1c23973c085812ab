//! The `hashsieve` binary as a user runs it: offline `hash`, and `bank`, `import`, `add`,
//! `check`, `export`, `remove` and `loadtest` against a real server.

use std::process::Output;

use crate::common::{TestServer, testdata};

const BRIDGE_PDQ: &str = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";

fn hashsieve(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hashsieve"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs the binary off the async runtime, so the in-process server keeps serving.
async fn hashsieve_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        hashsieve(&args)
    })
    .await
    .unwrap()
}

/// Runs a client command against the server at `url`.
fn against(url: &str, args: &[&str]) -> impl std::future::Future<Output = Output> + use<> {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.push(format!("--server={url}"));
    hashsieve_async(all)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn path(relative: &str) -> String {
    testdata(relative).display().to_string()
}

#[test]
fn hash_prints_one_tab_separated_line_per_file_and_algorithm() {
    let original = path("pdq/bridge-mods/aaa-orig.jpg");
    let output = hashsieve(&["hash", &original]);
    assert!(output.status.success());
    assert_eq!(stdout(&output), format!("pdq\t{BRIDGE_PDQ}\t100\t{original}\n"));

    let output = hashsieve(&["hash", "--algo", "pdq,md5", "--json", &original]);
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["algorithm"], "pdq");
    assert_eq!(lines[0]["hex"], BRIDGE_PDQ);
    assert_eq!(lines[0]["quality"], 100);
    assert_eq!(lines[0]["path"], original.as_str());
    assert_eq!(lines[1]["algorithm"], "md5");
    assert_eq!(lines[1]["quality"], serde_json::Value::Null);
}

#[test]
fn hash_reports_bad_files_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jpg");
    std::fs::write(&bad, b"not an image").unwrap();
    let original = path("pdq/bridge-mods/aaa-orig.jpg");
    let output = hashsieve(&["hash", bad.to_str().unwrap(), &original, "/no/such/file.png"]);
    assert!(!output.status.success());
    assert_eq!(stdout(&output).lines().count(), 1);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(errors.contains("bad.jpg"), "{errors}");
    assert!(errors.contains("/no/such/file.png"), "{errors}");
    let output = hashsieve(&["hash", "--algo", "pdqx", &original]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown algorithm"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_check_export_remove_against_a_server() {
    let server = TestServer::start().await;
    let url = server.url();
    let run = |args: &[&str]| against(&url, args);

    let created = run(&[
        "bank",
        "create",
        "TVEC",
        "--action",
        "block",
        "--labels",
        "tvec;gifct",
    ])
    .await;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.csv");
    std::fs::write(
        &list,
        format!(
            "hash,id,labels,source,quality\n{BRIDGE_PDQ},bridge-1,violent;video,tat,88\nnot-hex,bad-1,,\n\n{},short,,\n{},flat,,,12\n",
            &BRIDGE_PDQ[..40],
            "0f".repeat(32)
        ),
    )
    .unwrap();
    let imported = run(&["import", "--bank", "TVEC", list.to_str().unwrap()]).await;
    let text = stdout(&imported);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert!(text.contains("1 added, 0 updated, 3 rejected"), "{text}");
    assert!(text.contains("line 3:"), "{text}");
    assert!(text.contains("line 5:"), "{text}");
    assert!(text.contains("line 6: pdq quality 12 is below"), "{text}");
    assert!(
        text.contains("1 of the rejected rows are PDQ hashes below"),
        "{text}"
    );

    let edited = path("pdq/bridge-mods/sharpen-a-lot.jpg");
    let unrelated = path("pdq/reg-test-input/labelme-subset/q2821.jpg");
    let checked = run(&["check", &edited, &unrelated]).await;
    let text = stdout(&checked);
    assert!(text.contains(&format!("{edited}\tVERDICT_BLOCK")), "{text}");
    assert!(text.contains("bank=TVEC\tentry=bridge-1"), "{text}");
    assert!(text.contains(&format!("{unrelated}\tVERDICT_NO_MATCH")), "{text}");

    let checked = run(&["check", "--json", &edited]).await;
    let value: serde_json::Value = serde_json::from_str(stdout(&checked).trim()).unwrap();
    assert_eq!(value["verdict"], "VERDICT_BLOCK");
    assert_eq!(value["path"], edited.as_str());
    assert_eq!(value["matches"][0]["entryId"], "bridge-1");
    assert_eq!(
        value["matches"][0]["labels"],
        serde_json::json!(["tvec", "gifct", "violent", "video"])
    );
    assert!(value["matches"][0]["distance"].as_u64().unwrap() <= 31);
    assert_eq!(value["hashes"][0]["algorithm"], "ALGORITHM_PDQ");

    let added = run(&[
        "add",
        "--bank",
        "TVEC",
        "--labels",
        "photo",
        &path("pdq/misc-images/c.png"),
    ])
    .await;
    assert!(stdout(&added).contains("3 added"), "{}", stdout(&added));

    let exported = run(&["export", "--bank", "TVEC"]).await;
    let text = stdout(&exported);
    assert_eq!(text.lines().count(), 1 + 4, "{text}");
    assert!(text.starts_with("algorithm,hash,id,labels,source,note,added_at\n"));
    assert!(
        text.contains(&format!("pdq,{BRIDGE_PDQ},bridge-1,violent;video,tat,")),
        "{text}"
    );

    // The export re-imports as is: every row is an update.
    let export_file = dir.path().join("export.csv");
    std::fs::write(&export_file, &text).unwrap();
    let reimported = run(&["import", "--bank", "TVEC", export_file.to_str().unwrap()]).await;
    assert!(
        stdout(&reimported).contains("0 added, 4 updated, 0 rejected"),
        "{}",
        stdout(&reimported)
    );

    let recent = run(&["matches", "--bank", "TVEC", "--limit", "2"]).await;
    let lines: Vec<String> = stdout(&recent).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("VERDICT_BLOCK\tbank=TVEC\tentry=bridge-1"),
        "{lines:?}"
    );
    assert!(
        lines[0].starts_with("20") && lines[0].contains('T'),
        "timestamp first: {lines:?}"
    );

    let removed = run(&["remove", "--bank", "TVEC", "--id", "bridge-1"]).await;
    assert!(
        stdout(&removed).contains("removed 1 entries"),
        "{}",
        stdout(&removed)
    );
    let checked = run(&["check", &edited]).await;
    assert!(
        stdout(&checked).contains("VERDICT_NO_MATCH"),
        "{}",
        stdout(&checked)
    );

    let unknown = run(&["import", "--bank", "NOPE", list.to_str().unwrap()]).await;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("NotFound"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_commands_create_update_show_and_delete() {
    let server = TestServer::start().await;
    let url = server.url();
    let run = |args: &[&str]| against(&url, args);
    let missing_action = run(&["bank", "create", "GIFCT"]).await;
    assert!(String::from_utf8_lossy(&missing_action.stderr).contains("--action is required"));
    let created = run(&[
        "bank",
        "create",
        "GIFCT",
        "--action",
        "review",
        "--pdq-threshold",
        "20",
    ])
    .await;
    assert!(
        stdout(&created).starts_with("GIFCT\treview\tenabled\tentries=0"),
        "{}",
        stdout(&created)
    );
    let updated = run(&[
        "bank",
        "update",
        "GIFCT",
        "--action",
        "block",
        "--disable",
        "--labels",
        "a;b",
    ])
    .await;
    let text = stdout(&updated);
    assert!(text.contains("GIFCT\tblock\tdisabled"), "{text}");
    assert!(
        text.contains("pdq:20,phash:8") && text.contains("labels=a;b"),
        "{text}"
    );
    let shown = run(&["bank", "get", "GIFCT", "--json"]).await;
    let value: serde_json::Value = serde_json::from_str(stdout(&shown).trim()).unwrap();
    assert_eq!(value["action"], "ACTION_BLOCK");
    assert_eq!(value["enabled"], false);
    let bad = run(&["bank", "update", "GIFCT", "--pdq-threshold", "200"]).await;
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("InvalidArgument"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let deleted = run(&["bank", "delete", "GIFCT"]).await;
    assert!(stdout(&deleted).contains("deleted GIFCT and 0 entries"));
    let listed = run(&["bank", "list"]).await;
    assert_eq!(stdout(&listed), "");
    let gone = run(&["bank", "get", "GIFCT"]).await;
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"));
}

#[test]
fn client_commands_explain_an_unreachable_server() {
    let output = hashsieve(&["bank", "list", "--server", "http://127.0.0.1:9"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot connect"));
}

/// Runs `loadtest` and parses its JSON report, failing with its stderr when it printed none.
async fn loadtest_json(url: &str, args: &[&str]) -> (Output, serde_json::Value) {
    let mut all = vec!["loadtest", "--json", "--quiet"];
    all.extend_from_slice(args);
    let output = against(url, &all).await;
    let text = stdout(&output);
    let report = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {text}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadtest_drives_every_kind_of_call_and_reports_json() {
    let server = TestServer::start().await;
    let url = server.url();
    let created = against(&url, &["bank", "create", "TVEC", "--action", "block"]).await;
    assert!(created.status.success());
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("flagged.txt");
    std::fs::write(&list, format!("{BRIDGE_PDQ}\n")).unwrap();
    let list = list.to_str().unwrap();
    let imported = against(&url, &["import", "--bank", "TVEC", list]).await;
    assert!(stdout(&imported).contains("1 added"), "{}", stdout(&imported));

    let images = path("pdq/bridge-mods");
    let (output, report) = loadtest_json(
        &url,
        &[
            "--count=200",
            "--threads=1",
            "--mix=hashes=3,image=1,stream=1",
            "--images",
            &images,
            "--hashes",
            list,
            "--stream-items=2",
            "--concurrency=4",
            "--connections=2",
        ],
    )
    .await;
    assert!(output.status.success(), "{report}");
    assert_eq!(report["calls"], 200, "{report}");
    assert_eq!(report["ok"], 200, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    let kinds = &report["per_kind"];
    let calls = |kind: &str| kinds[kind]["calls"].as_u64().unwrap();
    assert_eq!(calls("hashes") + calls("image") + calls("stream"), 200);
    assert!(
        calls("hashes") > calls("image") && calls("image") > 0 && calls("stream") > 0,
        "{report}"
    );
    // Every stream answers each of its items; hash calls check one hash each.
    assert_eq!(kinds["stream"]["items"].as_u64().unwrap(), 2 * calls("stream"));
    assert_eq!(kinds["stream"]["item_errors"], serde_json::json!({}));
    assert_eq!(kinds["hashes"]["items"].as_u64().unwrap(), calls("hashes"));
    // Half the hash queries are near-duplicates of the flagged hash (within PDQ's threshold):
    // they match and block; the random half matches nothing.
    let matched = kinds["hashes"]["matched"].as_u64().unwrap();
    assert!(matched > 0 && matched < calls("hashes"), "{report}");
    assert_eq!(
        kinds["hashes"]["verdicts"]["VERDICT_BLOCK"].as_u64().unwrap(),
        matched
    );
    // The edited copies of the flagged photo match too.
    assert!(
        kinds["image"]["verdicts"]["VERDICT_BLOCK"].as_u64().unwrap() > 0,
        "{report}"
    );
    let latency = &report["latency_us"];
    let at = |p: &str| latency[p].as_u64().unwrap();
    assert!(at("p50") > 0);
    assert!(at("p50") <= at("p90") && at("p90") <= at("p99"), "{latency}");
    assert!(at("p99") <= at("p999") && at("p999") <= at("max"), "{latency}");
    assert!(report["calls_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(report["setup"]["mode"], "closed");
    assert_eq!(report["late_starts"], 0, "closed-loop calls are never late");

    // Files that are not images: every call fails with the server's code, counted, not fatal,
    // until --max-error-rate turns the run into a failure (exit code 3).
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("not-an-image.jpg"), b"not an image").unwrap();
    let (output, report) = loadtest_json(
        &url,
        &[
            "--count=6",
            "--mix=image=1",
            "--images",
            bad.to_str().unwrap(),
            "--max-error-rate=0.5",
            "--rate=200",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(3), "{report}");
    assert_eq!(report["calls"], 6);
    assert_eq!(report["errors"], serde_json::json!({"InvalidArgument": 6}));
    assert_eq!(report["setup"]["mode"], "open");
}

#[test]
fn loadtest_refuses_bad_arguments_before_sending_anything() {
    let unreachable = hashsieve(&["loadtest", "--count=1", "--server", "http://127.0.0.1:9"]);
    assert!(!unreachable.status.success());
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot connect"));
    for (args, reason) in [
        (vec!["--mix=image=1"], "--images DIR is needed"),
        (vec!["--mix=video=1"], "unknown call kind"),
        (vec!["--near-fraction=0.5"], "needs --hashes"),
        (vec!["--duration=3w"], "unknown time unit"),
        (vec!["--threads=0"], "--threads"),
        (vec!["--rate=0"], "--rate must be a positive"),
        (vec!["--duration=1s", "--count=5"], "cannot be used with"),
    ] {
        let mut all = vec!["loadtest", "--server", "http://127.0.0.1:9"];
        all.extend(args.iter().copied());
        let output = hashsieve(&all);
        assert!(!output.status.success(), "{args:?}");
        let errors = String::from_utf8_lossy(&output.stderr);
        assert!(errors.contains(reason), "{args:?}: {errors}");
    }
}

#[tokio::test]
async fn key_create_makes_a_key_the_server_accepts_and_clients_send() {
    let output = hashsieve(&["key", "create", "--role", "admin", "--name", "ops"]);
    assert!(output.status.success());
    let printed = stdout(&output);
    let value = |label: &str| {
        printed
            .lines()
            .find_map(|line| line.strip_prefix(label))
            .unwrap()
            .trim()
            .to_string()
    };
    let (key, line) = (value("key:"), value("line:"));
    assert!(key.starts_with("hsk_") && key.len() == 68, "{key}");
    assert!(line.starts_with("admin ops sha256:"), "{line}");
    assert!(
        !line.contains(&key),
        "the configuration line must not hold the key"
    );

    let config = hashsieve::grpc::ServeConfig {
        api_keys: hashsieve::grpc::ApiKeys::parse(&line).unwrap(),
        ..Default::default()
    };
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), config).await;
    let refused = against(&server.url(), &["bank", "create", "TVEC", "--action", "block"]).await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Unauthenticated"),
        "{refused:?}"
    );
    let created = against(
        &server.url(),
        &["bank", "create", "TVEC", "--action", "block", "--api-key", &key],
    )
    .await;
    assert!(created.status.success(), "{created:?}");

    let bad = hashsieve(&["key", "create", "--role", "admin", "--name", "two words"]);
    assert!(!bad.status.success());
}

/// `matches --follow` lists what matched, then each new match as it is recorded, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_follow_prints_new_matches_as_they_are_recorded() {
    use std::io::{BufRead, BufReader};

    let server = TestServer::start().await;
    let mut banks = server.banks().await;
    let mut matcher = server.matcher().await;
    banks
        .create_bank(crate::common::block_bank("TVEC"))
        .await
        .unwrap();
    banks
        .add_entries(tokio_stream::iter([hashsieve::proto::AddEntriesRequest {
            bank: "TVEC".into(),
            entries: vec![hashsieve::proto::Entry {
                hash: Some(crate::common::pdq(BRIDGE_PDQ)),
                id: "bridge".into(),
                ..Default::default()
            }],
            ..Default::default()
        }]))
        .await
        .unwrap();
    let check = || hashsieve::proto::CheckHashesRequest {
        hashes: vec![crate::common::pdq(BRIDGE_PDQ)],
        banks: vec![],
    };
    matcher.check_hashes(check()).await.unwrap();

    let mut follower = std::process::Command::new(env!("CARGO_BIN_EXE_hashsieve"))
        .args(["matches", "--follow", "--json", "--interval", "50ms"])
        .arg(format!("--server={}", server.url()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, received) = std::sync::mpsc::channel::<String>();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let next = || {
        let line = received
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("a line from matches --follow");
        serde_json::from_str::<serde_json::Value>(&line).unwrap()
    };
    let first = next();
    assert_eq!(first["match"]["entryId"], "bridge");
    for _ in 0..2 {
        matcher.check_hashes(check()).await.unwrap();
    }
    let sequence = |value: &serde_json::Value| value["sequence"].as_str().unwrap().parse::<u64>().unwrap();
    let (second, third) = (next(), next());
    assert!(sequence(&first) < sequence(&second) && sequence(&second) < sequence(&third));
    assert_eq!(third["verdict"], "VERDICT_BLOCK");
    follower.kill().unwrap();
    follower.wait().unwrap();
    assert!(received.try_recv().is_err(), "no match printed twice");
}
