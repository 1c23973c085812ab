//! An acknowledged write survives `kill -9`: the real binary is killed right after answering,
//! restarted on the same data directory, and must still match what it acknowledged.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use hashsieve::proto as pb;
use hashsieve::proto::banks_client::BanksClient;
use hashsieve::proto::matcher_client::MatcherClient;

/// Starts `hashsieve serve` on a free port and returns it with its address, read from its log.
fn start(data_dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hashsieve"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let address = loop {
        let line = lines.next().expect("server exited before serving").unwrap();
        if let Some(rest) = line.split("address=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, format!("http://{address}"))
}

fn pdq(i: u32) -> String {
    format!(
        "{:064x}",
        u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
    )
}

#[tokio::test]
async fn acknowledged_entries_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = start(dir.path());
    let mut banks = BanksClient::connect(url.clone()).await.unwrap();
    let bank = pb::Bank {
        name: "TVEC".into(),
        action: pb::Action::Block as i32,
        enabled: true,
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
        })
        .collect();
    let response = banks
        .add_entries(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.added, 25_000);
    child.kill().unwrap(); // SIGKILL: no shutdown, no flush.
    child.wait().unwrap();

    let (mut child, url) = start(dir.path());
    let bank = BanksClient::connect(url.clone())
        .await
        .unwrap()
        .get_bank(pb::GetBankRequest { name: "TVEC".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bank.entry_count, 25_000);
    let mut matcher = MatcherClient::connect(url).await.unwrap();
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
    child.kill().unwrap();
    child.wait().unwrap();
}
