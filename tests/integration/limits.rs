//! Load limits: checks past the pending bound are refused at once, and a check whose deadline
//! passes while it waits for a worker is dropped, never computed.

use std::time::Duration;

use crate::common::{TestServer, read_testdata};
use hashsieve::grpc::ServeConfig;
use hashsieve::proto as pb;
use tonic::Code;

const PHOTO: &str = "pdq/bridge-mods/aaa-orig.jpg";
const OTHER_PHOTO: &str = "pdq/reg-test-input/labelme-subset/q2821.jpg";

fn one_worker(max_pending_checks: usize) -> ServeConfig {
    ServeConfig {
        cpu_workers: 1,
        max_pending_checks,
        ..ServeConfig::default()
    }
}

fn check(image: &[u8]) -> pb::CheckImageRequest {
    pb::CheckImageRequest {
        image: image.to_vec(),
        ..Default::default()
    }
}

#[tokio::test]
async fn checks_past_the_pending_bound_are_refused_at_once() {
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), one_worker(2)).await;
    let photo = read_testdata(PHOTO);
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let matcher = own_connection(&server);
            let request = check(&photo);
            tokio::spawn(async move { matcher.await.check_image(request).await })
        })
        .collect();
    let (mut answered, mut refused) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => answered += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("busy"), "{}", status.message());
                refused += 1;
            }
        }
    }
    assert!(answered >= 1, "nothing was answered");
    assert!(
        refused >= 1,
        "12 checks at once with room for 2: none was refused"
    );
    // The bound frees up as checks finish: the server answers again.
    let mut matcher = server.matcher().await;
    matcher.check_image(check(&photo)).await.unwrap();
}

/// A client on its own connection, for a spawned task, so that the calls really are
/// concurrent at the server.
fn own_connection(
    server: &TestServer,
) -> impl std::future::Future<Output = hashsieve::proto::matcher_client::MatcherClient<tonic::transport::Channel>>
+ Send
+ 'static {
    let url = server.url();
    async move {
        hashsieve::proto::matcher_client::MatcherClient::connect(url)
            .await
            .unwrap()
            .max_encoding_message_size(64 << 20)
    }
}

#[tokio::test]
async fn a_check_whose_deadline_passes_while_it_waits_is_never_computed() {
    let (server, metrics) = TestServer::start_metered(tempfile::tempdir().unwrap(), one_worker(100)).await;
    let mut banks = server.banks().await;
    let bank = pb::Bank {
        name: "TVEC".into(),
        action: pb::Action::Block as i32,
        enabled: Some(true),
        ..Default::default()
    };
    banks
        .create_bank(pb::CreateBankRequest { bank: Some(bank) })
        .await
        .unwrap();
    banks
        .add_image(pb::AddImageRequest {
            bank: "TVEC".into(),
            image: read_testdata(PHOTO),
            id: "bridge".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // Keep the one worker busy with checks that match nothing.
    let other = read_testdata(OTHER_PHOTO);
    let busy: Vec<_> = (0..4)
        .map(|_| {
            let matcher = own_connection(&server);
            let request = check(&other);
            tokio::spawn(async move { matcher.await.check_image(request).await })
        })
        .collect();
    // Until all four have reached the server, which runs them one at a time.
    let started = || {
        metrics
            .render()
            .lines()
            .find(|line| line.starts_with("grpc_server_started_total") && line.contains("CheckImage"))
            .and_then(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let waiting_since = std::time::Instant::now();
    while started() < 4 {
        assert!(
            waiting_since.elapsed() < Duration::from_secs(30),
            "the busy checks never arrived"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    // A check that would match, with a deadline it cannot meet behind them.
    let mut matcher = server.matcher().await;
    let mut late = tonic::Request::new(check(&read_testdata(PHOTO)));
    late.set_timeout(Duration::from_millis(1));
    let status = matcher.check_image(late).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{status:?}"
    );
    for call in busy {
        let response = call.await.unwrap().unwrap().into_inner();
        assert!(response.matches.is_empty());
    }
    // Had the late check been computed, its match would be listed.
    let recent = banks
        .list_recent_matches(pb::ListRecentMatchesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(recent.matches.is_empty(), "{:?}", recent.matches);
    // Without a deadline, the same check matches.
    let response = matcher
        .check_image(check(&read_testdata(PHOTO)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.verdict, pb::Verdict::Block as i32);
}
