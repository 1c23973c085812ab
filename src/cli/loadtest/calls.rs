//! One call of each kind: build the request from the workload, send it, and reduce the answer
//! to an [`Outcome`]. Errors become outcomes, never failures of the run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::cli::client::Connection;

use super::plan::{HashQueries, Kind, Rng};
use super::report::Outcome;
use crate::grpc::algorithm_to_pb;
use crate::proto as pb;
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
    /// A call not answered within this long counts as `DeadlineExceeded`.
    pub timeout: Duration,
}

/// Clients on separate connections, handed out in turn: one tonic channel multiplexes all its
/// calls on one HTTP/2 connection, which would cap the load one process can drive.
pub struct Clients {
    clients: Vec<MatcherClient<Connection>>,
    next: AtomicUsize,
}

impl Clients {
    /// `clients` must not be empty.
    pub fn new(clients: Vec<MatcherClient<Connection>>) -> Clients {
        Clients {
            clients,
            next: AtomicUsize::new(0),
        }
    }

    /// The next client in turn (a clone is cheap: it shares the connection).
    fn next(&self) -> Option<MatcherClient<Connection>> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        self.clients.get(turn % self.clients.len().max(1)).cloned()
    }
}

/// Makes one call of `kind`; the outcome says how it went.
pub async fn call(kind: Kind, clients: &Clients, workload: &Workload, rng: &mut Rng) -> Outcome {
    let Some(client) = clients.next() else {
        return Outcome::failed(tonic::Code::Unavailable);
    };
    let answer = match kind {
        Kind::Hashes => tokio::time::timeout(workload.timeout, check_hashes(client, workload, rng)).await,
        Kind::Image => tokio::time::timeout(workload.timeout, check_image(client, workload, rng)).await,
        Kind::Stream => tokio::time::timeout(workload.timeout, check_stream(client, workload, rng)).await,
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
