//! The service on the PostgreSQL store, through the real binary: banks and entries live in
//! the database and survive a restart. Needs `HASHSIEVE_TEST_DATABASE_URL` (`.ci/run` sets
//! it); without it these tests say they were skipped and pass.

mod common;

use common::ServerProcess;
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

    /// The URL that keeps a server's tables in this schema.
    fn store_url(&self) -> String {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}options=-csearch_path%3D{}", self.url, self.name)
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

async fn connect(server: &ServerProcess) -> Channel {
    Channel::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn pdq(hex: &str) -> pb::HashValue {
    pb::HashValue {
        algorithm: pb::Algorithm::Pdq as i32,
        hex: hex.into(),
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
    let channel = connect(&server).await;
    let mut banks = pb::banks_client::BanksClient::new(channel.clone());
    banks
        .create_bank(pb::CreateBankRequest {
            bank: Some(pb::Bank {
                name: "TVEC".into(),
                action: pb::Action::Block as i32,
                enabled: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
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
    let mut matcher = pb::matcher_client::MatcherClient::new(connect(&server).await);
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
