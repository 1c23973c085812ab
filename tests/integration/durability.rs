//! An acknowledged write survives `kill -9`: the real binary is killed right after answering,
//! restarted on the same data directory, and must still match what it acknowledged.

use crate::common::ServerProcess;
use hashsieve::proto as pb;
use hashsieve::proto::banks_client::BanksClient;
use hashsieve::proto::matcher_client::MatcherClient;

fn pdq(i: u32) -> String {
    format!(
        "{:064x}",
        u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
    )
}

#[tokio::test]
async fn acknowledged_entries_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let mut banks = BanksClient::connect(server.url.clone()).await.unwrap();
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
    // Large enough to span several non-durable batches before the final durable commit.
    let messages: Vec<pb::AddEntriesRequest> = (0..25)
        .map(|chunk| pb::AddEntriesRequest {
            bank: "TVEC".into(),
            entries: (0..1000)
                .map(|i| pb::Entry {
                    hash: Some(pb::HashValue {
                        algorithm: pb::Algorithm::Pdq as i32,
                        hex: pdq(chunk * 1000 + i),
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    let response = banks
        .add_entries(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.added, 25_000);
    server.kill();

    let server = ServerProcess::start(dir.path());
    let bank = BanksClient::connect(server.url.clone())
        .await
        .unwrap()
        .get_bank(pb::GetBankRequest { name: "TVEC".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bank.entry_count, 25_000);
    let mut matcher = MatcherClient::connect(server.url.clone()).await.unwrap();
    for i in [0, 12_345, 24_999] {
        let request = pb::CheckHashesRequest {
            hashes: vec![pb::HashValue {
                algorithm: pb::Algorithm::Pdq as i32,
                hex: pdq(i),
            }],
            banks: vec![],
        };
        let response = matcher.check_hashes(request).await.unwrap().into_inner();
        assert_eq!(response.verdict, pb::Verdict::Block as i32, "entry {i} lost");
    }
    server.kill();
}
