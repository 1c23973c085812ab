//! Crash test: the real server is killed with SIGKILL at a random moment while banks are being
//! written to (imports, updates, removals by hash and by id, bank deletion and creation), then
//! restarted on the same data directory, round after round. After every restart:
//! - every acknowledged change is there;
//! - the one change in flight when the server died is there entirely or not at all;
//! - the store is consistent: each bank's entry count equals the entries it exports, and
//!   every exported entry is found by a check.
//!
//! `HASHSIEVE_CRASH_ROUNDS` sets the number of rounds (default 20); `HASHSIEVE_CRASH_SEED`
//! the seed, printed so that a failing run can be replayed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::ServerProcess;
use hashsieve::proto as pb;
use hashsieve::proto::banks_client::BanksClient;
use hashsieve::proto::matcher_client::MatcherClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

const BANKS: [&str; 3] = ["B0", "B1", "B2"];
/// Distinct hashes the writes draw from, so that adds update and removals find entries.
const POOL: u64 = 4_000;
/// Distinct external ids, so that one id names several entries.
const IDS: u64 = 300;

/// Bank → hash hex → external id: what the store must hold.
type State = BTreeMap<String, BTreeMap<String, String>>;

#[derive(Clone, Debug)]
enum Write {
    CreateBank(String),
    DeleteBank(String),
    Add(String, Vec<(String, String)>),
    RemoveHashes(String, Vec<String>),
    RemoveIds(String, Vec<String>),
}

impl Write {
    /// The state after this write succeeds.
    fn apply(&self, state: &State) -> State {
        let mut next = state.clone();
        match self {
            Write::CreateBank(bank) => {
                next.insert(bank.clone(), BTreeMap::new());
            }
            Write::DeleteBank(bank) => {
                next.remove(bank);
            }
            Write::Add(bank, entries) => {
                let bank = next.entry(bank.clone()).or_default();
                for (hex, id) in entries {
                    bank.insert(hex.clone(), id.clone());
                }
            }
            Write::RemoveHashes(bank, hexes) => {
                if let Some(bank) = next.get_mut(bank) {
                    for hex in hexes {
                        bank.remove(hex);
                    }
                }
            }
            Write::RemoveIds(bank, ids) => {
                if let Some(bank) = next.get_mut(bank) {
                    bank.retain(|_, id| !ids.contains(id));
                }
            }
        }
        next
    }
}

/// SplitMix64: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// The `i`th hash of the pool: all 256 bits well spread, as real PDQ hashes are.
fn pdq(i: u64) -> String {
    let i = u128::from(i + 1);
    format!(
        "{:032x}{:032x}",
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
        i.wrapping_mul(0xc2b2_ae3d_27d4_eb4f_1656_67b1_9e37_79f9)
    )
}

fn hash(hex: &str) -> pb::HashValue {
    pb::HashValue {
        algorithm: pb::Algorithm::Pdq as i32,
        hex: hex.to_string(),
    }
}

/// A random write that makes sense in `state`.
fn random_write(rng: &mut Rng, state: &State) -> Write {
    let bank = BANKS[rng.below(BANKS.len() as u64) as usize].to_string();
    let Some(entries) = state.get(&bank) else {
        return Write::CreateBank(bank);
    };
    let held: Vec<&String> = entries.keys().collect();
    match rng.below(20) {
        0 => Write::DeleteBank(bank),
        1..=3 if !held.is_empty() => {
            let hexes = (0..1 + rng.below(50))
                .map(|_| held[rng.below(held.len() as u64) as usize].clone())
                .collect();
            Write::RemoveHashes(bank, hexes)
        }
        4..=5 if !held.is_empty() => {
            let ids = (0..1 + rng.below(5))
                .map(|_| format!("id-{}", rng.below(IDS)))
                .collect();
            Write::RemoveIds(bank, ids)
        }
        _ => {
            // Up to a few thousand rows in several messages: enough to take a while to commit.
            let rows = (0..1 + rng.below(3_000))
                .map(|_| (pdq(rng.below(POOL)), format!("id-{}", rng.below(IDS))))
                .collect();
            Write::Add(bank, rows)
        }
    }
}

async fn perform(banks: &mut BanksClient<Channel>, write: &Write) -> Result<(), tonic::Status> {
    match write {
        Write::CreateBank(name) => {
            let bank = pb::Bank {
                name: name.clone(),
                action: pb::Action::Block as i32,
                enabled: Some(true),
                ..Default::default()
            };
            banks
                .create_bank(pb::CreateBankRequest { bank: Some(bank) })
                .await?;
        }
        Write::DeleteBank(name) => {
            banks
                .delete_bank(pb::DeleteBankRequest { name: name.clone() })
                .await?;
        }
        Write::Add(name, rows) => {
            let messages: Vec<pb::AddEntriesRequest> = rows
                .chunks(500)
                .map(|chunk| pb::AddEntriesRequest {
                    bank: name.clone(),
                    entries: chunk
                        .iter()
                        .map(|(hex, id)| pb::Entry {
                            hash: Some(hash(hex)),
                            id: id.clone(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect();
            let response = banks
                .add_entries(tokio_stream::iter(messages))
                .await?
                .into_inner();
            assert_eq!(response.rejected, 0, "valid rows were rejected");
            assert_eq!(response.added + response.updated, rows.len() as u64);
        }
        Write::RemoveHashes(name, hexes) => {
            banks
                .remove_entries(pb::RemoveEntriesRequest {
                    bank: name.clone(),
                    hashes: hexes.iter().map(|hex| hash(hex)).collect(),
                    ids: vec![],
                })
                .await?;
        }
        Write::RemoveIds(name, ids) => {
            banks
                .remove_entries(pb::RemoveEntriesRequest {
                    bank: name.clone(),
                    hashes: vec![],
                    ids: ids.clone(),
                })
                .await?;
        }
    }
    Ok(())
}

/// What the restarted server holds, checked for consistency on the way: each bank's count
/// equals its export, and a check of every exported hash matches its bank.
async fn read_state(url: &str) -> State {
    let mut banks = BanksClient::connect(url.to_string()).await.unwrap();
    let mut matcher = MatcherClient::connect(url.to_string()).await.unwrap();
    let listed = banks
        .list_banks(pb::ListBanksRequest {})
        .await
        .unwrap()
        .into_inner()
        .banks;
    let mut state = State::new();
    for bank in listed {
        let mut entries = BTreeMap::new();
        let mut stream = banks
            .export_entries(pb::ExportEntriesRequest {
                bank: bank.name.clone(),
                algorithm: 0,
            })
            .await
            .unwrap()
            .into_inner();
        while let Some(message) = stream.next().await {
            for entry in message.unwrap().entries {
                let hex = entry.hash.unwrap().hex;
                assert!(
                    entries.insert(hex.clone(), entry.id).is_none(),
                    "{hex} exported twice from {}",
                    bank.name
                );
            }
        }
        assert_eq!(
            bank.entry_count,
            entries.len() as u64,
            "bank {}: count and export disagree",
            bank.name
        );
        for hexes in entries.keys().collect::<Vec<_>>().chunks(100) {
            let response = matcher
                .check_hashes(pb::CheckHashesRequest {
                    hashes: hexes.iter().map(|hex| hash(hex)).collect(),
                    banks: vec![bank.name.clone()],
                })
                .await
                .unwrap()
                .into_inner();
            let matched: std::collections::BTreeSet<String> =
                response.matches.into_iter().map(|m| m.hex).collect();
            for hex in hexes {
                assert!(
                    matched.contains(*hex),
                    "{hex} is exported by {} but does not match",
                    bank.name
                );
            }
        }
        state.insert(bank.name, entries);
    }
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_kill_9_at_random_moments() {
    let rounds: u32 = std::env::var("HASHSIEVE_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("HASHSIEVE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("crash test: {rounds} rounds, HASHSIEVE_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged = State::new();
    let mut in_flight: Option<Write> = None;
    let mut writes_done = 0;
    let mut in_flight_applied = 0;
    for round in 0..=rounds {
        let server = ServerProcess::start(dir.path());
        let found = read_state(&server.url).await;
        // The write in flight at the kill is there entirely or not at all.
        match in_flight.take() {
            Some(write) if found == write.apply(&acknowledged) && found != acknowledged => {
                in_flight_applied += 1;
            }
            Some(write) => assert_eq!(
                found, acknowledged,
                "round {round}: neither the state before nor after {write:?}"
            ),
            None => assert_eq!(found, acknowledged, "round {round}: acknowledged writes lost"),
        }
        acknowledged = found;
        if round == rounds {
            server.kill();
            break;
        }

        // Write until killed, recording each acknowledged write and the one in flight.
        let shared = Arc::new(Mutex::new((acknowledged.clone(), None::<Write>, 0u32)));
        let writer = {
            let shared = shared.clone();
            let url = server.url.clone();
            let mut rng = Rng(rng.next());
            tokio::spawn(async move {
                let mut banks = BanksClient::connect(url).await.unwrap();
                loop {
                    let write = {
                        let mut guard = shared.lock().unwrap();
                        let write = random_write(&mut rng, &guard.0);
                        guard.1 = Some(write.clone());
                        write
                    };
                    if perform(&mut banks, &write).await.is_err() {
                        return;
                    }
                    let mut guard = shared.lock().unwrap();
                    guard.0 = write.apply(&guard.0);
                    guard.1 = None;
                    guard.2 += 1;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(20 + rng.below(400))).await;
        server.kill();
        writer.await.unwrap();
        let (state, write, done) = Arc::into_inner(shared).unwrap().into_inner().unwrap();
        acknowledged = state;
        in_flight = write;
        writes_done += done;
    }
    eprintln!(
        "crash test: {rounds} kills survived, {writes_done} acknowledged writes, \
         {in_flight_applied} writes in flight at a kill found applied"
    );
    assert!(writes_done > rounds, "too few writes to test anything");
}
