//! `serve --metrics-listen` on the real binary: every call counted by method and status (those
//! refused for want of a key too), latencies, banks' entries and matches, over plain HTTP.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;

use crate::common::{ServerProcess, block_bank, pdq, with_key};
use hashsieve::grpc::{Role, key_line};
use hashsieve::proto as pb;
use hashsieve::proto::banks_client::BanksClient;
use hashsieve::proto::matcher_client::MatcherClient;

const ADMIN_KEY: &str = "hsk_admin-secret-for-metrics";
const STORED: &str = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";

fn keyed<T>(message: T) -> tonic::Request<T> {
    with_key(message, Some(ADMIN_KEY))
}

fn check(hex: &str) -> pb::CheckHashesRequest {
    pb::CheckHashesRequest {
        hashes: vec![pdq(hex)],
        banks: vec![],
    }
}

/// One HTTP/1.1 request; the head and the body of the answer. It asks for no `Connection:
/// close`: the server closes every connection after one answer, or this fails.
pub async fn http_get(address: &str, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let read = stream.read_to_string(&mut answer);
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("the metrics server kept the connection open")
        .unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

/// The value of the sample `series` (name and labels exactly as exposed), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Where a server started with `--metrics-listen` serves its metrics, from its log.
pub fn metrics_address(server: &ServerProcess) -> String {
    let line = server.wait_for_log("serving metrics", 1).remove(0);
    line.split("metrics_address=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string()
}

fn handled(service: &str, method: &str, kind: &str, code: &str) -> String {
    format!(
        r#"grpc_server_handled_total{{grpc_type="{kind}",grpc_service="{service}",grpc_method="{method}",grpc_code="{code}"}}"#
    )
}

#[tokio::test]
async fn calls_banks_and_memory_are_exposed_for_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_line(Role::Admin, "ops", ADMIN_KEY);
    let server = ServerProcess::start_with(
        dir.path(),
        &["--api-keys", &keys, "--metrics-listen", "127.0.0.1:0"],
    );
    let address = metrics_address(&server);
    let channel = server.channel().await;
    let mut matcher = MatcherClient::new(channel.clone());
    let mut banks = BanksClient::new(channel.clone());

    // Refused by the key check before any service sees it.
    let refused = matcher.check_hashes(check(STORED)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    banks.create_bank(keyed(block_bank("TVEC"))).await.unwrap();
    let entries = ["0".repeat(64), STORED.to_string()].map(|hex| pb::Entry {
        hash: Some(pdq(&hex)),
        ..Default::default()
    });
    let add = pb::AddEntriesRequest {
        bank: "TVEC".into(),
        entries: entries.to_vec(),
        ..Default::default()
    };
    banks
        .add_entries(keyed(tokio_stream::iter(vec![add])))
        .await
        .unwrap();
    for _ in 0..3 {
        let verdict = matcher
            .check_hashes(keyed(check(STORED)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(verdict.matches.len(), 1);
    }
    let bad = matcher.check_hashes(keyed(check("not hex"))).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let missing = banks
        .get_bank(keyed(pb::GetBankRequest { name: "NOPE".into() }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let exported: Vec<_> = banks
        .export_entries(keyed(pb::ExportEntriesRequest {
            bank: "TVEC".into(),
            algorithm: 0,
        }))
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert!(exported.iter().all(Result::is_ok));
    HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();

    let (head, text) = http_get(&address, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let matcher_service = "hashsieve.v1.Matcher";
    let banks_service = "hashsieve.v1.Banks";
    let expected = [
        (handled(matcher_service, "CheckHashes", "unary", "OK"), 3.0),
        (
            handled(matcher_service, "CheckHashes", "unary", "Unauthenticated"),
            1.0,
        ),
        (
            handled(matcher_service, "CheckHashes", "unary", "InvalidArgument"),
            1.0,
        ),
        (handled(banks_service, "CreateBank", "unary", "OK"), 1.0),
        (handled(banks_service, "AddEntries", "client_stream", "OK"), 1.0),
        (handled(banks_service, "GetBank", "unary", "NotFound"), 1.0),
        (
            handled(banks_service, "ExportEntries", "server_stream", "OK"),
            1.0,
        ),
        (handled("grpc.health.v1.Health", "Check", "unary", "OK"), 1.0),
        (r#"hashsieve_bank_entries{bank="TVEC"}"#.to_string(), 2.0),
        (r#"hashsieve_bank_matches_total{bank="TVEC"}"#.to_string(), 3.0),
        ("hashsieve_match_log_dropped_total".to_string(), 0.0),
    ];
    for (series, value) in expected {
        assert_eq!(sample(&text, &series), Some(value), "{series} in\n{text}");
    }
    let checks = r#"grpc_type="unary",grpc_service="hashsieve.v1.Matcher",grpc_method="CheckHashes""#;
    assert_eq!(
        sample(&text, &format!("grpc_server_started_total{{{checks}}}")),
        Some(5.0)
    );
    assert_eq!(
        sample(&text, &format!("grpc_server_handling_seconds_count{{{checks}}}")),
        Some(5.0)
    );
    assert!(sample(&text, "process_resident_memory_bytes").is_some_and(|bytes| bytes > 1e6));

    let (head, _) = http_get(&address, "/").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}
