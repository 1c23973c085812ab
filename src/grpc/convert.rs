//! Wire ⇄ domain conversions. Parsing happens here, at the edge, so the core only ever sees
//! valid values; every failure is an `Error` that names the field.

use pbjson_types::Timestamp;

use crate::bank::{
    Action, BankName, BankSettings, BankUpdate, DEFAULT_MIN_QUALITY, Entry, NewEntry, Thresholds,
    ThresholdsPatch, quality,
};
use crate::error::Error;
use crate::hash::{Algorithm, ComputedHash, HashValue, Transform, View};
use crate::matcher::{BankView, CheckOutcome};
use crate::proto as pb;
use crate::store::MatchRecord;
use crate::verdict::{Match, Verdict};

pub fn algorithm(value: i32) -> Result<Algorithm, Error> {
    match pb::Algorithm::try_from(value) {
        Ok(pb::Algorithm::Pdq) => Ok(Algorithm::Pdq),
        Ok(pb::Algorithm::Phash) => Ok(Algorithm::PHash),
        Ok(pb::Algorithm::Dhash) => Ok(Algorithm::DHash),
        Ok(pb::Algorithm::Ahash) => Ok(Algorithm::AHash),
        Ok(pb::Algorithm::Md5) => Ok(Algorithm::Md5),
        Ok(pb::Algorithm::Sha256) => Ok(Algorithm::Sha256),
        Ok(pb::Algorithm::Unspecified) => Err(Error::InvalidArgument("algorithm is required".into())),
        Err(_) => Err(Error::InvalidArgument(format!("unknown algorithm value {value}"))),
    }
}

pub fn algorithms(values: &[i32]) -> Result<Vec<Algorithm>, Error> {
    values.iter().map(|v| algorithm(*v)).collect()
}

pub fn algorithm_to_pb(algorithm: Algorithm) -> pb::Algorithm {
    match algorithm {
        Algorithm::Pdq => pb::Algorithm::Pdq,
        Algorithm::PHash => pb::Algorithm::Phash,
        Algorithm::DHash => pb::Algorithm::Dhash,
        Algorithm::AHash => pb::Algorithm::Ahash,
        Algorithm::Md5 => pb::Algorithm::Md5,
        Algorithm::Sha256 => pb::Algorithm::Sha256,
    }
}

pub fn hash_value(value: &pb::HashValue) -> Result<HashValue, Error> {
    Ok(HashValue::from_hex(algorithm(value.algorithm)?, &value.hex)?)
}

pub fn hash_values(values: &[pb::HashValue]) -> Result<Vec<HashValue>, Error> {
    values.iter().map(hash_value).collect()
}

pub fn hash_value_to_pb(value: &HashValue) -> pb::HashValue {
    pb::HashValue {
        algorithm: algorithm_to_pb(value.algorithm()) as i32,
        hex: value.to_hex(),
    }
}

pub fn bank_name(name: &str) -> Result<BankName, Error> {
    Ok(BankName::new(name)?)
}

pub fn bank_names(names: &[String]) -> Result<Vec<BankName>, Error> {
    names.iter().map(|name| bank_name(name)).collect()
}

pub fn action(value: i32) -> Result<Action, Error> {
    match pb::Action::try_from(value) {
        Ok(pb::Action::Block) => Ok(Action::Block),
        Ok(pb::Action::Review) => Ok(Action::Review),
        Ok(pb::Action::Allow) => Ok(Action::Allow),
        Ok(pb::Action::Unspecified) => Err(Error::InvalidArgument(
            "action is required: block, review or allow".into(),
        )),
        Err(_) => Err(Error::InvalidArgument(format!("unknown action value {value}"))),
    }
}

fn action_to_pb(action: Action) -> pb::Action {
    match action {
        Action::Block => pb::Action::Block,
        Action::Review => pb::Action::Review,
        Action::Allow => pb::Action::Allow,
    }
}

pub fn thresholds_patch(thresholds: Option<&pb::Thresholds>) -> ThresholdsPatch {
    thresholds
        .map(|t| ThresholdsPatch {
            pdq: t.pdq,
            phash: t.phash,
            dhash: t.dhash,
            ahash: t.ahash,
        })
        .unwrap_or_default()
}

/// A new bank's name and settings; unset thresholds take the defaults, and a bank is enabled
/// unless the request says otherwise (a client that leaves the field out gets a bank that
/// matches, not one silently disabled).
pub fn new_bank(bank: Option<&pb::Bank>) -> Result<(BankName, BankSettings), Error> {
    let bank = bank.ok_or_else(|| Error::InvalidArgument("bank is required".into()))?;
    let settings = BankSettings {
        action: action(bank.action)?,
        thresholds: thresholds_patch(bank.thresholds.as_ref()).apply(Thresholds::default()),
        labels: bank.labels.clone(),
        description: bank.description.clone(),
        enabled: bank.enabled.unwrap_or(true),
        min_quality: bank
            .min_quality
            .map(|q| quality("min_quality", q))
            .transpose()?
            .unwrap_or(DEFAULT_MIN_QUALITY),
    };
    Ok((bank_name(&bank.name)?, settings))
}

pub fn bank_update(request: &pb::UpdateBankRequest) -> Result<BankUpdate, Error> {
    Ok(BankUpdate {
        action: request.action.map(action).transpose()?,
        thresholds: thresholds_patch(request.thresholds.as_ref()),
        labels: request.labels.as_ref().map(|l| l.values.clone()),
        description: request.description.clone(),
        enabled: request.enabled,
        min_quality: request
            .min_quality
            .map(|q| quality("min_quality", q))
            .transpose()?,
    })
}

pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn bank_to_pb(view: &BankView) -> pb::Bank {
    let settings = &view.bank.settings;
    let t = settings.thresholds;
    pb::Bank {
        name: view.bank.name.to_string(),
        action: action_to_pb(settings.action) as i32,
        thresholds: Some(pb::Thresholds {
            pdq: Some(t.pdq),
            phash: Some(t.phash),
            dhash: Some(t.dhash),
            ahash: Some(t.ahash),
        }),
        labels: settings.labels.clone(),
        description: settings.description.clone(),
        enabled: Some(settings.enabled),
        min_quality: Some(u32::from(settings.min_quality)),
        created_at: Some(timestamp(view.bank.created_at_ms)),
        entry_count: view.entry_count,
        match_count: view.match_count,
        last_match_at: view.last_match_ms.map(timestamp),
    }
}

/// An entry from the wire; `added_at` is the server's clock, whatever the client sent.
/// Takes the entry by value so that its labels move rather than copy: a bulk load converts
/// millions.
pub fn new_entry(entry: pb::Entry, now_ms: i64) -> Result<NewEntry, Error> {
    let hash = entry
        .hash
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("entry hash is required".into()))?;
    let quality = entry.quality.map(|q| quality("quality", q)).transpose()?;
    Ok(NewEntry::new(
        hash_value(hash)?,
        &entry.id,
        entry.labels,
        &entry.source,
        &entry.note,
        now_ms,
    )?
    .with_quality(quality))
}

pub fn entry_to_pb(entry: &Entry) -> pb::Entry {
    pb::Entry {
        hash: Some(hash_value_to_pb(&entry.hash)),
        id: entry.meta.id.clone(),
        labels: entry.meta.labels.clone(),
        source: entry.meta.source.clone(),
        note: entry.meta.note.clone(),
        added_at: Some(timestamp(entry.meta.added_at_ms)),
        quality: None,
    }
}

pub fn transform_to_pb(transform: Transform) -> pb::Transform {
    match transform {
        Transform::Original => pb::Transform::Original,
        Transform::Rotate90 => pb::Transform::Rotate90,
        Transform::Rotate180 => pb::Transform::Rotate180,
        Transform::Rotate270 => pb::Transform::Rotate270,
        Transform::FlipX => pb::Transform::FlipX,
        Transform::FlipY => pb::Transform::FlipY,
        Transform::FlipPlus1 => pb::Transform::FlipPlus1,
        Transform::FlipMinus1 => pb::Transform::FlipMinus1,
    }
}

fn match_to_pb(found: &Match) -> pb::Match {
    pb::Match {
        bank: found.bank.to_string(),
        entry_id: found.entry_id.clone(),
        algorithm: algorithm_to_pb(found.hash.algorithm()) as i32,
        hex: found.hash.to_hex(),
        distance: found.distance,
        labels: found.labels.clone(),
        action: action_to_pb(found.action) as i32,
        source: found.source.clone(),
        transform: transform_to_pb(found.transform) as i32,
        view: match found.view {
            View::Whole => pb::View::Whole,
            View::Trimmed => pb::View::Trimmed,
            View::Picture => pb::View::Picture,
            View::Window => pb::View::Window,
        } as i32,
        low_quality: found.low_quality,
    }
}

pub fn computed_hash_to_pb(hash: &ComputedHash) -> pb::ComputedHash {
    pb::ComputedHash {
        algorithm: algorithm_to_pb(hash.value.algorithm()) as i32,
        hex: hash.value.to_hex(),
        quality: hash.quality.map(i32::from).unwrap_or(-1),
    }
}

fn verdict_to_pb(verdict: Verdict) -> pb::Verdict {
    match verdict {
        Verdict::NoMatch => pb::Verdict::NoMatch,
        Verdict::Review => pb::Verdict::Review,
        Verdict::Block => pb::Verdict::Block,
        Verdict::Allowed => pb::Verdict::Allowed,
    }
}

pub fn check_response(outcome: &CheckOutcome) -> pb::CheckResponse {
    pb::CheckResponse {
        verdict: verdict_to_pb(outcome.verdict) as i32,
        matches: outcome.matches.iter().map(match_to_pb).collect(),
        hashes: outcome.hashes.iter().map(computed_hash_to_pb).collect(),
    }
}

pub fn recent_match_to_pb(recent: &MatchRecord) -> pb::RecentMatch {
    pb::RecentMatch {
        sequence: recent.sequence,
        matched_at: Some(timestamp(recent.matched_at_ms)),
        verdict: verdict_to_pb(recent.verdict) as i32,
        r#match: Some(match_to_pb(&recent.found)),
    }
}
