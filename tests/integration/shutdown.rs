//! Graceful shutdown of the real binary: on SIGTERM health turns NOT_SERVING, new connections
//! are refused, a call in flight finishes and is durable, and the process exits with code 0;
//! a call that outlasts the grace period does not keep the process alive.

use std::time::Duration;

use crate::common::ServerProcess;
use hashsieve::proto as pb;
use hashsieve::proto::banks_client::BanksClient;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

async fn connect(url: &str) -> Channel {
    Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn create_bank(channel: &Channel) {
    let bank = pb::Bank {
        name: "TVEC".into(),
        action: pb::Action::Block as i32,
        enabled: Some(true),
        ..Default::default()
    };
    BanksClient::new(channel.clone())
        .create_bank(pb::CreateBankRequest { bank: Some(bank) })
        .await
        .unwrap();
}

/// One message of 1,000 entries, numbered from `first`.
fn entries(first: u32) -> pb::AddEntriesRequest {
    pb::AddEntriesRequest {
        bank: "TVEC".into(),
        entries: (first..first + 1000)
            .map(|i| pb::Entry {
                hash: Some(pb::HashValue {
                    algorithm: pb::Algorithm::Md5 as i32,
                    hex: format!("{i:032x}"),
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Opens an import whose stream stays open until the sender is dropped.
fn start_import(
    channel: &Channel,
) -> (
    mpsc::Sender<pb::AddEntriesRequest>,
    tokio::task::JoinHandle<Result<tonic::Response<pb::AddEntriesResponse>, tonic::Status>>,
) {
    let (sender, receiver) = mpsc::channel(4);
    let mut banks = BanksClient::new(channel.clone());
    let call = tokio::spawn(async move { banks.add_entries(ReceiverStream::new(receiver)).await });
    (sender, call)
}

#[tokio::test]
async fn sigterm_turns_health_off_refuses_new_calls_and_drains_the_ones_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path());
    let channel = connect(&server.url).await;
    create_bank(&channel).await;
    let mut health = HealthClient::new(channel.clone())
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = health.next().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let (sender, import) = start_import(&channel);
    sender.send(entries(0)).await.unwrap();
    // Let the call reach the server before the signal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.terminate();

    let status = tokio::time::timeout(Duration::from_secs(5), health.next())
        .await
        .expect("no health update after SIGTERM")
        .unwrap()
        .unwrap();
    assert_eq!(status.status, ServingStatus::NotServing as i32);
    // A watch is a call in flight too: let it go, or the server waits for it.
    drop(health);

    // New connections are refused once the server drains.
    let refused = async {
        loop {
            if Endpoint::from_shared(server.url.clone())
                .unwrap()
                .connect()
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), refused)
        .await
        .expect("new connections still accepted while draining");

    // The import in flight goes on to the end and is acknowledged.
    sender.send(entries(1000)).await.unwrap();
    drop(sender);
    let response = import.await.unwrap().unwrap().into_inner();
    assert_eq!(response.added, 2000);
    let exit = server
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the server did not exit after draining");
    assert!(exit.success(), "exit status {exit}");

    // What was acknowledged during the drain is durable.
    let server = ServerProcess::start(dir.path());
    let bank = BanksClient::new(connect(&server.url).await)
        .get_bank(pb::GetBankRequest { name: "TVEC".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bank.entry_count, 2000);
}

#[tokio::test]
async fn a_call_outlasting_the_grace_period_does_not_keep_the_server_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start_with(dir.path(), &["--shutdown-grace", "500ms"]);
    let channel = connect(&server.url).await;
    create_bank(&channel).await;
    let (sender, import) = start_import(&channel);
    sender.send(entries(0)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.terminate();
    let exit = server
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("the server outlived its grace period");
    assert!(exit.success(), "exit status {exit}");
    // The unfinished import was never acknowledged.
    assert!(import.await.unwrap().is_err());
    drop(sender);
}
