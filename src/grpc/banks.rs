//! The `Banks` service: bank management and entry loading, removal and export.

use std::ops::ControlFlow;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{Caller, Core, convert, status};
use crate::bank::{BankName, BankSettings, NewEntry};
use crate::error::Error;
use crate::matcher::{AddOutcome, ImageEntry, RECENT_MATCHES, now_ms};
use crate::proto as pb;

/// Entries committed per store transaction during a bulk load.
const LOAD_BATCH: usize = 100_000;
/// Rejections listed in an `AddEntries` response; the count covers them all.
const MAX_LISTED_REJECTIONS: usize = 100;
/// Entries per exported message.
const EXPORT_BATCH: usize = 1_000;

pub struct BanksService {
    core: Core,
}

impl BanksService {
    pub(crate) fn new(core: Core) -> Self {
        BanksService { core }
    }

    /// Starts committing one batch of a bulk load at once, so the next batch can be received
    /// meanwhile; only the last commit of a load is fsynced.
    fn start_load(
        &self,
        bank: &BankName,
        entries: Vec<NewEntry>,
        durable: bool,
    ) -> tokio::task::JoinHandle<Result<AddOutcome, Status>> {
        let bank = bank.clone();
        let core = self.core.clone();
        tokio::spawn(async move {
            core.run(move |matcher| matcher.add_entries(&bank, &entries, durable))
                .await
        })
    }
}

/// The audit line of a change to a bank: who made it, what it was, how many entries it
/// touched. The log line's timestamp says when.
fn audit(caller: &Caller, action: &'static str, bank: &BankName, entries: u64) {
    tracing::info!(target: "audit", who = %caller, role = %caller.role, action, bank = %bank, entries, "bank changed");
}

/// Adds a finished batch's counts to the response.
async fn absorb(
    response: &mut pb::AddEntriesResponse,
    load: tokio::task::JoinHandle<Result<AddOutcome, Status>>,
) -> Result<(), Status> {
    let outcome = load.await.map_err(|join_error| {
        tracing::error!(error = %join_error, "load task failed");
        Status::internal("internal error")
    })??;
    response.added += outcome.added;
    response.updated += outcome.updated;
    Ok(())
}

#[tonic::async_trait]
impl pb::banks_server::Banks for BanksService {
    async fn create_bank(
        &self,
        request: Request<pb::CreateBankRequest>,
    ) -> Result<Response<pb::Bank>, Status> {
        let caller = Caller::of(&request);
        let (name, settings) = convert::new_bank(request.get_ref().bank.as_ref())?;
        let view = self
            .core
            .run(move |matcher| matcher.create_bank(name, settings))
            .await?;
        audit(&caller, "create_bank", &view.bank.name, 0);
        Ok(Response::new(convert::bank_to_pb(&view)))
    }

    async fn get_bank(&self, request: Request<pb::GetBankRequest>) -> Result<Response<pb::Bank>, Status> {
        let name = convert::bank_name(&request.get_ref().name)?;
        Ok(Response::new(convert::bank_to_pb(
            &self.core.matcher.bank(&name)?,
        )))
    }

    async fn list_banks(
        &self,
        _request: Request<pb::ListBanksRequest>,
    ) -> Result<Response<pb::ListBanksResponse>, Status> {
        let banks = self
            .core
            .matcher
            .banks()
            .iter()
            .map(convert::bank_to_pb)
            .collect();
        Ok(Response::new(pb::ListBanksResponse { banks }))
    }

    async fn update_bank(
        &self,
        request: Request<pb::UpdateBankRequest>,
    ) -> Result<Response<pb::Bank>, Status> {
        let caller = Caller::of(&request);
        let name = convert::bank_name(&request.get_ref().name)?;
        let update = convert::bank_update(request.get_ref())?;
        let view = self
            .core
            .run(move |matcher| matcher.update_bank(&name, &update))
            .await?;
        audit(&caller, "update_bank", &view.bank.name, 0);
        Ok(Response::new(convert::bank_to_pb(&view)))
    }

    async fn delete_bank(
        &self,
        request: Request<pb::DeleteBankRequest>,
    ) -> Result<Response<pb::DeleteBankResponse>, Status> {
        let caller = Caller::of(&request);
        let name = convert::bank_name(&request.get_ref().name)?;
        let deleted = name.clone();
        let entries_removed = self
            .core
            .run(move |matcher| matcher.delete_bank(&deleted))
            .await?;
        audit(&caller, "delete_bank", &name, entries_removed);
        Ok(Response::new(pb::DeleteBankResponse { entries_removed }))
    }

    /// Validates each entry as it arrives (a bad one is rejected and counted, never stored),
    /// commits valid ones in batches, and answers only after a durable commit.
    async fn add_entries(
        &self,
        request: Request<Streaming<pb::AddEntriesRequest>>,
    ) -> Result<Response<pb::AddEntriesResponse>, Status> {
        let caller = Caller::of(&request);
        let mut stream = request.into_inner();
        // The bank, and its settings as the stream started: they hold its quality gate.
        let mut bank: Option<(BankName, BankSettings)> = None;
        let mut response = pb::AddEntriesResponse::default();
        let mut batch: Vec<NewEntry> = Vec::new();
        // At most one batch commits while the next is received; batches commit in order.
        let mut committing: Option<tokio::task::JoinHandle<Result<AddOutcome, Status>>> = None;
        let mut position: u64 = 0;
        while let Some(message) = stream.message().await.map_err(status::inbound)? {
            if !message.bank.is_empty() {
                let named = convert::bank_name(&message.bank)?;
                match &bank {
                    Some((current, _)) if *current != named => {
                        return Err(Status::invalid_argument(format!(
                            "one stream loads one bank: got {named} after {current}"
                        )));
                    }
                    Some(_) => {}
                    None => {
                        // Fail fast on an unknown bank instead of after the whole upload.
                        let settings = self.core.matcher.bank(&named)?.bank.settings;
                        bank = Some((named, settings));
                    }
                }
            }
            let Some((current, settings)) = &bank else {
                return Err(Status::invalid_argument("the first message must name the bank"));
            };
            let now = now_ms();
            let allow_low_quality = message.allow_low_quality;
            for entry in message.entries {
                let admitted = convert::new_entry(entry, now).and_then(|valid| {
                    if !allow_low_quality {
                        settings.admits(valid.hash.algorithm(), valid.quality)?;
                    }
                    Ok(valid)
                });
                match admitted {
                    Ok(valid) => batch.push(valid),
                    Err(error) => {
                        response.rejected += 1;
                        if matches!(error, Error::LowQuality(_)) {
                            response.low_quality += 1;
                        }
                        if response.rejections.len() < MAX_LISTED_REJECTIONS {
                            response.rejections.push(pb::Rejection {
                                index: position,
                                reason: error.to_string(),
                            });
                        }
                    }
                }
                position += 1;
            }
            if batch.len() >= LOAD_BATCH {
                if let Some(previous) = committing.take() {
                    absorb(&mut response, previous).await?;
                }
                committing = Some(self.start_load(current, std::mem::take(&mut batch), false));
            }
        }
        if let Some(previous) = committing.take() {
            absorb(&mut response, previous).await?;
        }
        let Some((current, _)) = &bank else {
            return Err(Status::invalid_argument("the stream named no bank"));
        };
        // The last commit is durable, and makes every earlier batch durable with it.
        absorb(&mut response, self.start_load(current, batch, true)).await?;
        if position > LOAD_BATCH as u64 {
            // What the load's batches freed goes back to the system, off the async threads.
            self.core
                .run(|_| {
                    crate::memory::release_free_heap();
                    Ok(())
                })
                .await?;
        }
        audit(&caller, "add_entries", current, response.added + response.updated);
        tracing::info!(
            bank = %current,
            added = response.added,
            updated = response.updated,
            rejected = response.rejected,
            low_quality = response.low_quality,
            "entries loaded"
        );
        Ok(Response::new(response))
    }

    async fn add_image(
        &self,
        request: Request<pb::AddImageRequest>,
    ) -> Result<Response<pb::AddImageResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let name = convert::bank_name(&request.bank)?;
        let bank = name.clone();
        let entry = ImageEntry {
            algorithms: convert::algorithms(&request.algorithms)?,
            id: request.id,
            labels: request.labels,
            source: request.source,
            note: request.note,
            allow_low_quality: request.allow_low_quality,
            trim: request.trim,
            derived: crate::hash::DerivedPictures {
                dihedral: request.store_dihedral,
                crops: request.store_crops,
                rotations: request.store_rotations,
            },
        };
        let image = request.image;
        let (hashes, outcome) = self
            .core
            .run(move |matcher| matcher.add_image(&name, &image, &entry))
            .await?;
        audit(&caller, "add_image", &bank, outcome.added + outcome.updated);
        Ok(Response::new(pb::AddImageResponse {
            hashes: hashes.hashes.iter().map(convert::computed_hash_to_pb).collect(),
            added: outcome.added,
            updated: outcome.updated,
        }))
    }

    async fn remove_entries(
        &self,
        request: Request<pb::RemoveEntriesRequest>,
    ) -> Result<Response<pb::RemoveEntriesResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let name = convert::bank_name(&request.bank)?;
        let bank = name.clone();
        if request.hashes.is_empty() && request.ids.is_empty() {
            return Err(Status::invalid_argument("give at least one hash or id to remove"));
        }
        let hashes = convert::hash_values(&request.hashes)?;
        let ids = request.ids;
        let removed = self
            .core
            .run(move |matcher| matcher.remove_entries(&name, &hashes, &ids))
            .await?;
        audit(&caller, "remove_entries", &bank, removed);
        Ok(Response::new(pb::RemoveEntriesResponse { removed }))
    }

    type ExportEntriesStream = ReceiverStream<Result<pb::ExportEntriesResponse, Status>>;

    /// Reads one store snapshot on a blocking thread and streams it in batches; a client that
    /// goes away stops the read.
    async fn export_entries(
        &self,
        request: Request<pb::ExportEntriesRequest>,
    ) -> Result<Response<Self::ExportEntriesStream>, Status> {
        let request = request.into_inner();
        let name = convert::bank_name(&request.bank)?;
        let algorithm = match request.algorithm {
            0 => None,
            value => Some(convert::algorithm(value)?),
        };
        self.core.matcher.bank(&name)?;
        let (tx, rx) = mpsc::channel(4);
        let matcher = self.core.matcher.clone();
        tokio::task::spawn_blocking(move || {
            let mut batch = Vec::with_capacity(EXPORT_BATCH);
            let result = matcher.export(&name, algorithm, |entry| {
                batch.push(convert::entry_to_pb(&entry));
                if batch.len() < EXPORT_BATCH {
                    return ControlFlow::Continue(());
                }
                let entries = std::mem::replace(&mut batch, Vec::with_capacity(EXPORT_BATCH));
                match tx.blocking_send(Ok(pb::ExportEntriesResponse { entries })) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(_) => ControlFlow::Break(()),
                }
            });
            let last = match result {
                Ok(()) if batch.is_empty() => return,
                Ok(()) => Ok(pb::ExportEntriesResponse { entries: batch }),
                Err(error) => Err(Status::from(error)),
            };
            let _ = tx.blocking_send(last);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_recent_matches(
        &self,
        request: Request<pb::ListRecentMatchesRequest>,
    ) -> Result<Response<pb::ListRecentMatchesResponse>, Status> {
        let request = request.get_ref();
        let bank = match request.bank.as_str() {
            "" => None,
            name => Some(convert::bank_name(name)?),
        };
        let limit = match request.limit as usize {
            0 => RECENT_MATCHES,
            limit => limit.min(RECENT_MATCHES),
        };
        // The store's match log: a network round trip on a shared store.
        let recent = self
            .core
            .run(move |matcher| matcher.recent_matches(bank.as_ref(), limit))
            .await?;
        Ok(Response::new(pb::ListRecentMatchesResponse {
            matches: recent.iter().map(convert::recent_match_to_pb).collect(),
        }))
    }
}
