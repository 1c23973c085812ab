//! API keys on the real binary: reader keys check, admin keys also change banks, calls
//! without a valid key are refused with the right code and logged without the key, health
//! stays open, and every change to a bank leaves an audit line naming who made it.

use crate::common::{ServerProcess, block_bank, with_key};
use hashsieve::grpc::{Role, key_line};
use hashsieve::proto as pb;
use hashsieve::proto::banks_client::BanksClient;
use hashsieve::proto::matcher_client::MatcherClient;
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;

const READER_KEY: &str = "hsk_reader-secret-0123456789";
const ADMIN_KEY: &str = "hsk_admin-secret-9876543210";

fn check() -> pb::CheckHashesRequest {
    pb::CheckHashesRequest {
        hashes: vec![pb::HashValue {
            algorithm: pb::Algorithm::Md5 as i32,
            hex: "0".repeat(32),
        }],
        banks: vec![],
    }
}

#[tokio::test]
async fn keys_and_roles_decide_who_may_call_what_and_changes_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let keys = format!(
        "{};{}",
        key_line(Role::Reader, "pipeline", READER_KEY),
        key_line(Role::Admin, "ops", ADMIN_KEY)
    );
    let server = ServerProcess::start_with(dir.path(), &["--api-keys", &keys]);
    let channel = server.channel().await;
    let mut matcher = MatcherClient::new(channel.clone());
    let mut banks = BanksClient::new(channel.clone());

    // No key, or a wrong one: UNAUTHENTICATED.
    for key in [None, Some("hsk_guess")] {
        let status = matcher.check_hashes(with_key(check(), key)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    // A reader checks, and may not change banks.
    matcher
        .check_hashes(with_key(check(), Some(READER_KEY)))
        .await
        .unwrap();
    let status = banks
        .create_bank(with_key(block_bank("TVEC"), Some(READER_KEY)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // An admin does both.
    banks
        .create_bank(with_key(block_bank("TVEC"), Some(ADMIN_KEY)))
        .await
        .unwrap();
    let entries = pb::AddEntriesRequest {
        bank: "TVEC".into(),
        entries: vec![pb::Entry {
            hash: Some(check().hashes[0].clone()),
            ..Default::default()
        }],
        ..Default::default()
    };
    banks
        .add_entries(with_key(tokio_stream::iter(vec![entries]), Some(ADMIN_KEY)))
        .await
        .unwrap();
    let response = matcher
        .check_hashes(with_key(check(), Some(ADMIN_KEY)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.verdict, pb::Verdict::Block as i32);
    // Health needs no key.
    HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();

    // Each change to the bank has an audit line naming its author; no line has a key.
    let audit = server.wait_for_log("bank changed", 2);
    assert_eq!(audit.len(), 2, "{audit:#?}");
    assert!(
        audit[0].contains("who=ops") && audit[0].contains("action=\"create_bank\""),
        "{}",
        audit[0]
    );
    assert!(
        audit[1].contains("action=\"add_entries\"") && audit[1].contains("entries=1"),
        "{}",
        audit[1]
    );
    let refusals = server.wait_for_log("call refused", 3);
    assert_eq!(refusals.len(), 3, "{refusals:#?}");
    assert!(refusals[2].contains("key=pipeline"), "{}", refusals[2]);
    for secret in [READER_KEY, ADMIN_KEY, "hsk_guess"] {
        assert!(server.log_lines(secret).is_empty(), "the log shows a key");
    }
}

#[tokio::test]
async fn a_server_without_keys_says_it_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let mut matcher = MatcherClient::connect(server.url.clone()).await.unwrap();
    matcher.check_hashes(check()).await.unwrap();
    assert_eq!(server.wait_for_log("no API keys configured", 1).len(), 1);
}
