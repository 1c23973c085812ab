//! One call of each kind: build the request from the workload, send it, and reduce the answer
//! to an [`Outcome`]. Errors become outcomes, never failures of the run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::cli::client::Connection;

use super::plan::{HashQueries, Kind, Rng, write_entry};
use super::report::{Failure, Outcome};
use crate::grpc::algorithm_to_pb;
use crate::proto as pb;
use crate::proto::banks_client::BanksClient;
use crate::proto::matcher_client::MatcherClient;

/// What the calls send, shared read-only by every worker.
pub struct Workload {
    pub queries: HashQueries,
    /// Image files' bytes (empty when the mix has no image or stream calls).
    pub images: Vec<Vec<u8>>,
    /// Hashes per `CheckHashes` call.
    pub batch: usize,
    /// Images per `CheckStream` call.
    pub stream_items: usize,
    pub banks: Vec<String>,
    pub dihedral: bool,
    /// The bank write calls add their entries to (and remove them from).
    pub write_bank: String,
    /// A call not answered within this long counts as `DeadlineExceeded`.
    pub timeout: Duration,
}

/// Clients on separate connections, handed out in turn: one tonic channel multiplexes all its
/// calls on one HTTP/2 connection, which would cap the load one process can drive.
pub struct Clients {
    matchers: Vec<MatcherClient<Connection>>,
    /// Banks clients for write calls, on connections of their own; empty when the mix has no
    /// writes.
    banks: Vec<BanksClient<Connection>>,
    next: AtomicUsize,
}

impl Clients {
    /// `matchers` must not be empty, nor `banks` when the mix writes.
    pub fn new(matchers: Vec<MatcherClient<Connection>>, banks: Vec<BanksClient<Connection>>) -> Clients {
        Clients {
            matchers,
            banks,
            next: AtomicUsize::new(0),
        }
    }

    /// The next turn; each list of clients is taken in turn by it.
    fn turn(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The matcher client of `turn` (a clone is cheap: it shares the connection).
    fn matcher(&self, turn: usize) -> Option<MatcherClient<Connection>> {
        self.matchers.get(turn % self.matchers.len().max(1)).cloned()
    }

    fn banks(&self, turn: usize) -> Option<BanksClient<Connection>> {
        self.banks.get(turn % self.banks.len().max(1)).cloned()
    }
}

/// Makes one call of `kind`; the outcome says how it went.
pub async fn call(kind: Kind, clients: &Clients, workload: &Workload, rng: &mut Rng) -> Outcome {
    let turn = clients.turn();
    let Some(client) = clients.matcher(turn) else {
        return Outcome::failed(tonic::Code::Unavailable);
    };
    let answer = match kind {
        Kind::Hashes => tokio::time::timeout(workload.timeout, check_hashes(client, workload, rng)).await,
        Kind::Image => tokio::time::timeout(workload.timeout, check_image(client, workload, rng)).await,
        Kind::Stream => tokio::time::timeout(workload.timeout, check_stream(client, workload, rng)).await,
        Kind::Write => {
            let Some(banks) = clients.banks(turn) else {
                return Outcome::failed(tonic::Code::Unavailable);
            };
            tokio::time::timeout(workload.timeout, write(client, banks, workload, rng)).await
        }
    };
    match answer {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(status)) => Outcome::failed(status.code()),
        Err(_elapsed) => Outcome::failed(tonic::Code::DeadlineExceeded),
    }
}

fn hashes_request(workload: &Workload, rng: &mut Rng) -> pb::CheckHashesRequest {
    let hashes = (0..workload.batch)
        .map(|_| {
            let query = workload.queries.next(rng);
            pb::HashValue {
                algorithm: algorithm_to_pb(query.algorithm) as i32,
                hex: query.hex,
            }
        })
        .collect();
    pb::CheckHashesRequest {
        hashes,
        banks: workload.banks.clone(),
    }
}

fn image_request(workload: &Workload, rng: &mut Rng) -> pb::CheckImageRequest {
    let index = rng.below(workload.images.len() as u64) as usize;
    pb::CheckImageRequest {
        image: workload.images.get(index).cloned().unwrap_or_default(),
        banks: workload.banks.clone(),
        algorithms: Vec::new(),
        dihedral: Some(workload.dihedral),
        trim: None,
        windows: None,
    }
}

async fn check_hashes(
    mut client: MatcherClient<Connection>,
    workload: &Workload,
    rng: &mut Rng,
) -> Result<Outcome, tonic::Status> {
    let request = hashes_request(workload, rng);
    let items = request.hashes.len() as u64;
    let response = client.check_hashes(request).await?.into_inner();
    Ok(answered(items, &[response]))
}

async fn check_image(
    mut client: MatcherClient<Connection>,
    workload: &Workload,
    rng: &mut Rng,
) -> Result<Outcome, tonic::Status> {
    let request = image_request(workload, rng);
    let response = client.check_image(request).await?.into_inner();
    Ok(answered(1, &[response]))
}

/// A stream of `stream_items` images, all sent at once; the call ends with the last answer.
async fn check_stream(
    mut client: MatcherClient<Connection>,
    workload: &Workload,
    rng: &mut Rng,
) -> Result<Outcome, tonic::Status> {
    let requests: Vec<pb::CheckStreamRequest> = (0..workload.stream_items)
        .map(|i| pb::CheckStreamRequest {
            request_id: i.to_string(),
            check: Some(pb::check_stream_request::Check::Image(image_request(
                workload, rng,
            ))),
        })
        .collect();
    let mut answers = client
        .check_stream(tokio_stream::iter(requests))
        .await?
        .into_inner();
    let mut responses = Vec::new();
    let mut item_errors = Vec::new();
    while let Some(answer) = answers.message().await? {
        match answer.result {
            Some(pb::check_stream_response::Result::Response(response)) => responses.push(response),
            Some(pb::check_stream_response::Result::Error(error)) => {
                item_errors.push(tonic::Code::from_i32(error.code));
            }
            None => item_errors.push(tonic::Code::Unknown),
        }
    }
    let items = (responses.len() + item_errors.len()) as u64;
    Ok(Outcome {
        item_errors,
        ..answered(items, &responses)
    })
}

/// One write round trip: adds a fresh entry to the write bank, checks that the acknowledged
/// entry matches at once (the index is updated before `AddEntries` answers), and removes it
/// again. The removal is sent whatever the check found, so a failed check leaves nothing
/// behind; only a call cut short by the timeout can leave its entry in the bank.
async fn write(
    mut matcher: MatcherClient<Connection>,
    mut banks: BanksClient<Connection>,
    workload: &Workload,
    rng: &mut Rng,
) -> Result<Outcome, tonic::Status> {
    let entry = write_entry(rng);
    let hash = pb::HashValue {
        algorithm: algorithm_to_pb(entry.hash.algorithm) as i32,
        hex: entry.hash.hex.clone(),
    };
    let add = add_request(workload, &hash, &entry.id);
    let added = match banks.add_entries(tokio_stream::iter([add])).await {
        Ok(added) => added.into_inner(),
        Err(status) => {
            // The entry may be stored all the same when only the answer was lost.
            let _ = remove(&mut banks, workload, &hash).await;
            return Err(status);
        }
    };
    if added.added + added.updated != 1 {
        let _ = remove(&mut banks, workload, &hash).await;
        return Ok(Outcome::broken(Failure::WriteNotStored));
    }
    let checked = matcher
        .check_hashes(pb::CheckHashesRequest {
            hashes: vec![hash.clone()],
            banks: vec![workload.write_bank.clone()],
        })
        .await;
    let removed = remove(&mut banks, workload, &hash).await;
    let response = checked?.into_inner();
    let found = matches_entry(&response, &workload.write_bank, &hash.hex, &entry.id);
    let outcome = answered(1, &[response]);
    if !found {
        return Ok(Outcome {
            status: Err(Failure::WriteNotMatchable),
            ..outcome
        });
    }
    if removed?.removed != 1 {
        return Ok(Outcome {
            status: Err(Failure::WriteNotRemoved),
            ..outcome
        });
    }
    Ok(outcome)
}

fn add_request(workload: &Workload, hash: &pb::HashValue, id: &str) -> pb::AddEntriesRequest {
    pb::AddEntriesRequest {
        bank: workload.write_bank.clone(),
        entries: vec![pb::Entry {
            hash: Some(hash.clone()),
            id: id.to_string(),
            source: "hashsieve loadtest".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn remove(
    banks: &mut BanksClient<Connection>,
    workload: &Workload,
    hash: &pb::HashValue,
) -> Result<pb::RemoveEntriesResponse, tonic::Status> {
    let request = pb::RemoveEntriesRequest {
        bank: workload.write_bank.clone(),
        hashes: vec![hash.clone()],
        ids: Vec::new(),
    };
    Ok(banks.remove_entries(request).await?.into_inner())
}

/// Whether a check's answer holds the entry a write just added: its bank, hash and id.
fn matches_entry(response: &pb::CheckResponse, bank: &str, hex: &str, id: &str) -> bool {
    response
        .matches
        .iter()
        .any(|m| m.bank == bank && m.hex.eq_ignore_ascii_case(hex) && m.entry_id == id)
}

/// A successful call's outcome from its check responses.
fn answered(items: u64, responses: &[pb::CheckResponse]) -> Outcome {
    let verdicts = responses
        .iter()
        .map(|r| pb::Verdict::try_from(r.verdict).unwrap_or(pb::Verdict::Unspecified))
        .collect();
    let matched = responses.iter().filter(|r| !r.matches.is_empty()).count() as u64;
    Outcome {
        status: Ok(()),
        items,
        verdicts,
        matched,
        item_errors: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{Algorithm, HashValue};

    fn workload(batch: usize) -> Workload {
        let known = HashValue::from_hex(Algorithm::Pdq, &"ab".repeat(32)).unwrap();
        Workload {
            queries: HashQueries::new(vec![known], 1.0).unwrap(),
            images: vec![b"one".to_vec(), b"two".to_vec()],
            batch,
            stream_items: 3,
            banks: vec!["TVEC".into()],
            dihedral: false,
            write_bank: "LOADTEST_WRITES".into(),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn requests_carry_the_batch_banks_and_an_image_from_the_folder() {
        let workload = workload(5);
        let mut rng = Rng::new(3);
        let request = hashes_request(&workload, &mut rng);
        assert_eq!(request.hashes.len(), 5);
        assert_eq!(request.banks, ["TVEC"]);
        assert!(
            request
                .hashes
                .iter()
                .all(|h| h.algorithm == pb::Algorithm::Pdq as i32)
        );
        let image = image_request(&workload, &mut rng);
        assert!(workload.images.contains(&image.image));
        assert_eq!(image.dihedral, Some(false));
    }

    #[test]
    fn a_write_adds_one_entry_to_the_write_bank_and_looks_for_exactly_it() {
        let workload = workload(1);
        let entry = write_entry(&mut Rng::new(9));
        let hash = pb::HashValue {
            algorithm: pb::Algorithm::Pdq as i32,
            hex: entry.hash.hex.clone(),
        };
        let request = add_request(&workload, &hash, &entry.id);
        assert_eq!(request.bank, "LOADTEST_WRITES");
        assert_eq!(request.entries.len(), 1);
        assert_eq!(request.entries[0].hash.as_ref(), Some(&hash));
        assert_eq!(request.entries[0].id, entry.id);

        let found = |bank: &str, hex: &str, id: &str| pb::CheckResponse {
            verdict: pb::Verdict::Review as i32,
            matches: vec![pb::Match {
                bank: bank.into(),
                hex: hex.into(),
                entry_id: id.into(),
                ..Default::default()
            }],
            hashes: Vec::new(),
        };
        let (hex, id) = (entry.hash.hex.as_str(), entry.id.as_str());
        for (response, expected) in [
            (found("LOADTEST_WRITES", hex, id), true),
            (found("LOADTEST_WRITES", &hex.to_uppercase(), id), true),
            (found("OTHER", hex, id), false),
            (found("LOADTEST_WRITES", &"00".repeat(32), id), false),
            (found("LOADTEST_WRITES", hex, "someone-else"), false),
            (pb::CheckResponse::default(), false),
        ] {
            assert_eq!(
                matches_entry(&response, "LOADTEST_WRITES", hex, id),
                expected,
                "{response:?}"
            );
        }
    }

    #[test]
    fn an_answer_counts_its_verdicts_and_matches() {
        let block = pb::CheckResponse {
            verdict: pb::Verdict::Block as i32,
            matches: vec![pb::Match::default()],
            hashes: Vec::new(),
        };
        let none = pb::CheckResponse {
            verdict: pb::Verdict::NoMatch as i32,
            ..Default::default()
        };
        let outcome = answered(2, &[block, none]);
        assert_eq!(outcome.status, Ok(()));
        assert_eq!(outcome.matched, 1);
        assert_eq!(outcome.verdicts, [pb::Verdict::Block, pb::Verdict::NoMatch]);
    }
}
