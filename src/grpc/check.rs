//! The `Matcher` service: checks of images and hashes, unary and streaming.

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{Core, convert, status};
use crate::error::Error;
use crate::hash::{Algorithm, HashOptions};
use crate::matcher::{ImageCheck, Matcher};
use crate::proto as pb;

/// Items of one `CheckStream` processed at once; responses still leave in request order.
const STREAM_CONCURRENCY: usize = 16;

/// `CheckHashes` calls with at most this many hashes run on the async thread that received
/// them. Each search costs a fraction of a millisecond (about 0.2 ms at 10M PDQ hashes), no
/// more than handing the work to the blocking pool and back costs in thread wake-ups; measured
/// with the client on the same 2 cores, running them inline raised throughput by 40%.
const INLINE_MAX_HASHES: usize = 4;

pub struct MatcherService {
    core: Core,
}

impl MatcherService {
    pub(crate) fn new(core: Core) -> Self {
        MatcherService { core }
    }
}

fn image_check(request: &pb::CheckImageRequest) -> Result<ImageCheck, Error> {
    Ok(ImageCheck {
        banks: convert::bank_names(&request.banks)?,
        algorithms: convert::algorithms(&request.algorithms)?,
        dihedral: request.dihedral.unwrap_or(true),
        trim: request.trim.unwrap_or(false),
        windows: request.windows.unwrap_or(false),
    })
}

async fn check_image(core: Core, request: pb::CheckImageRequest) -> Result<pb::CheckResponse, Status> {
    let check = image_check(&request)?;
    core.run_check(request.image.len(), move |matcher| {
        matcher
            .check_image(&request.image, &check)
            .map(|o| convert::check_response(&o))
    })
    .await
}

async fn check_hashes(core: Core, request: pb::CheckHashesRequest) -> Result<pb::CheckResponse, Status> {
    if request.hashes.is_empty() {
        return Err(Status::invalid_argument("at least one hash is required"));
    }
    let hashes = convert::hash_values(&request.hashes)?;
    let banks = convert::bank_names(&request.banks)?;
    let work = move |matcher: &Matcher| {
        matcher
            .check_hashes(&hashes, &banks)
            .map(|o| convert::check_response(&o))
    };
    if request.hashes.len() <= INLINE_MAX_HASHES && core.matcher.store_is_local() {
        core.run_inline(work)
    } else {
        core.run_check(0, work).await
    }
}

async fn check_item(core: Core, request: pb::CheckStreamRequest) -> pb::CheckStreamResponse {
    use pb::check_stream_request::Check;
    use pb::check_stream_response::Result as ItemResult;
    let outcome = match request.check {
        Some(Check::Image(image)) => check_image(core, image).await,
        Some(Check::Hashes(hashes)) => check_hashes(core, hashes).await,
        None => Err(Status::invalid_argument("check is required: image or hashes")),
    };
    let result = match outcome {
        Ok(response) => ItemResult::Response(response),
        Err(status) => ItemResult::Error(pb::ItemError {
            code: status.code() as i32,
            message: status.message().into(),
        }),
    };
    pb::CheckStreamResponse {
        request_id: request.request_id,
        result: Some(result),
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl pb::matcher_server::Matcher for MatcherService {
    async fn check_image(
        &self,
        request: Request<pb::CheckImageRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        check_image(self.core.clone(), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn check_hashes(
        &self,
        request: Request<pb::CheckHashesRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        check_hashes(self.core.clone(), request.into_inner())
            .await
            .map(Response::new)
    }

    type CheckStreamStream = ResponseStream<pb::CheckStreamResponse>;

    /// Items run concurrently (up to [`STREAM_CONCURRENCY`]); a reader task queues their
    /// handles in arrival order and a writer task awaits them in that order, so responses keep
    /// the order of requests and a slow client bounds the work in flight.
    async fn check_stream(
        &self,
        request: Request<Streaming<pb::CheckStreamRequest>>,
    ) -> Result<Response<Self::CheckStreamStream>, Status> {
        let mut incoming = request.into_inner();
        let core = self.core.clone();
        let (pending_tx, mut pending_rx) = mpsc::channel(STREAM_CONCURRENCY);
        let (out_tx, out_rx) = mpsc::channel(STREAM_CONCURRENCY);
        tokio::spawn(async move {
            loop {
                match incoming.message().await {
                    Ok(Some(item)) => {
                        let core = core.clone();
                        let handle = tokio::spawn(async move { Ok(check_item(core, item).await) });
                        if pending_tx.send(handle).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        // Surface a broken request stream after the items already queued.
                        let status = status::inbound(status);
                        let _ = pending_tx.send(tokio::spawn(async move { Err(status) })).await;
                        break;
                    }
                }
            }
        });
        tokio::spawn(async move {
            while let Some(handle) = pending_rx.recv().await {
                let response = handle
                    .await
                    .unwrap_or_else(|_| Err(Status::internal("internal error")));
                if out_tx.send(response).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let matcher = &self.core.matcher;
        let banks = matcher.banks();
        Ok(Response::new(pb::GetStatusResponse {
            banks: banks.len() as u64,
            entries: banks.iter().map(|view| view.entry_count).sum(),
            store: if matcher.store_is_local() {
                "embedded"
            } else {
                "postgres"
            }
            .into(),
            feed: matcher.feed_status().map(|feed| pb::FeedStatus {
                position: feed.position,
                head: feed.head,
                behind: feed.behind(),
                lag_ms: feed.lag.as_millis() as u64,
                error: feed.error.clone().unwrap_or_default(),
                within_bound: super::within_lag_bound(&feed, self.core.max_lag),
            }),
        }))
    }

    async fn hash_image(
        &self,
        request: Request<pb::HashImageRequest>,
    ) -> Result<Response<pb::HashImageResponse>, Status> {
        let request = request.into_inner();
        let mut algorithms = convert::algorithms(&request.algorithms)?;
        if algorithms.is_empty() {
            algorithms.push(Algorithm::Pdq);
        }
        let options = HashOptions {
            algorithms,
            pdq_dihedral: request.dihedral,
            ..HashOptions::default()
        };
        let hashes = self
            .core
            .run_check(request.image.len(), move |matcher| {
                matcher.hash_image(&request.image, &options)
            })
            .await?;
        let (width, height) = hashes.dimensions.unwrap_or((0, 0));
        Ok(Response::new(pb::HashImageResponse {
            hashes: hashes.hashes.iter().map(convert::computed_hash_to_pb).collect(),
            pdq_dihedral: hashes
                .pdq_dihedral
                .map(|variants| {
                    variants
                        .iter()
                        .zip(crate::hash::Transform::DIHEDRAL_ORDER)
                        .map(|(hash, transform)| pb::TransformedHash {
                            transform: convert::transform_to_pb(transform) as i32,
                            hex: hash.to_hex(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            width,
            height,
        }))
    }
}
