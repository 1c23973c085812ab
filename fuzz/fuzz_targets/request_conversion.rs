//! Arbitrary bytes as the body of every request message, then through the conversions the
//! handlers run (`grpc::convert`), as the server would after tonic decodes a call.
//!
//! Asserts, beyond not crashing:
//! - every refused value maps, through the one `Error` → `Status` mapping, to
//!   INVALID_ARGUMENT with a message (a bad request is the client's fault, never INTERNAL);
//! - every accepted value survives the way back to the wire and in again unchanged: hashes,
//!   algorithms, bank names, entries (with their ids defaulted and trimmed) and banks (with
//!   timestamps that round-trip any millisecond value).

#![no_main]

use hashsieve::bank::{Action, BankId, BankName, BankSettings, Entry, NewEntry, Thresholds};
use hashsieve::error::Error;
use hashsieve::grpc::convert;
use hashsieve::hash::{Algorithm, HashValue};
use hashsieve::matcher::BankView;
use hashsieve::proto as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// The server's clock for entries, fixed so that round trips compare equal.
const NOW_MS: i64 = 1_700_000_000_123;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(request) = pb::CheckHashesRequest::decode(bytes) {
        check_hashes(&request);
    }
    if let Ok(request) = pb::CheckImageRequest::decode(bytes) {
        check_image(&request);
    }
    if let Ok(request) = pb::CheckStreamRequest::decode(bytes) {
        match &request.check {
            Some(pb::check_stream_request::Check::Image(image)) => check_image(image),
            Some(pb::check_stream_request::Check::Hashes(hashes)) => check_hashes(hashes),
            None => {}
        }
    }
    if let Ok(request) = pb::HashImageRequest::decode(bytes) {
        algorithms(&request.algorithms);
    }
    if let Ok(request) = pb::CreateBankRequest::decode(bytes) {
        create_bank(&request);
    }
    if let Ok(request) = pb::UpdateBankRequest::decode(bytes) {
        bank_name(&request.name);
        if let Some(update) = accepted(convert::bank_update(&request)) {
            // What the matcher does next: apply the change, then validate the result.
            let _ = update.apply(&settings(Action::Review)).validate();
        }
    }
    if let Ok(request) = pb::AddEntriesRequest::decode(bytes) {
        if !request.bank.is_empty() {
            bank_name(&request.bank);
        }
        for entry in request.entries {
            new_entry(entry);
        }
    }
    if let Ok(request) = pb::AddImageRequest::decode(bytes) {
        bank_name(&request.bank);
        algorithms(&request.algorithms);
        // The matcher validates the entry fields with each computed hash.
        let hash = HashValue::from_bytes(Algorithm::Pdq, &[0; 32]).expect("32 bytes are a pdq hash");
        let _ = NewEntry::new(
            hash,
            &request.id,
            request.labels,
            &request.source,
            &request.note,
            NOW_MS,
        );
    }
    if let Ok(request) = pb::RemoveEntriesRequest::decode(bytes) {
        bank_name(&request.bank);
        hash_values(&request.hashes);
    }
    if let Ok(request) = pb::ExportEntriesRequest::decode(bytes) {
        bank_name(&request.bank);
        if request.algorithm != 0 {
            algorithms(&[request.algorithm]);
        }
    }
    if let Ok(request) = pb::ListRecentMatchesRequest::decode(bytes) {
        if !request.bank.is_empty() {
            bank_name(&request.bank);
        }
    }
    if let Ok(request) = pb::GetBankRequest::decode(bytes) {
        bank_name(&request.name);
    }
    if let Ok(request) = pb::DeleteBankRequest::decode(bytes) {
        bank_name(&request.name);
    }
});

/// The value, or `None` after checking that the error is the client's: INVALID_ARGUMENT.
fn accepted<T>(result: Result<T, Error>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(error) => {
            let text = error.to_string();
            let status = tonic::Status::from(error);
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{text}");
            assert!(!status.message().is_empty());
            None
        }
    }
}

fn check_hashes(request: &pb::CheckHashesRequest) {
    hash_values(&request.hashes);
    bank_names(&request.banks);
}

fn check_image(request: &pb::CheckImageRequest) {
    bank_names(&request.banks);
    algorithms(&request.algorithms);
}

fn hash_values(values: &[pb::HashValue]) {
    let Some(parsed) = accepted(convert::hash_values(values)) else {
        // Find the refused one and check each value on its own.
        for value in values {
            accepted(convert::hash_value(value));
        }
        return;
    };
    assert_eq!(parsed.len(), values.len());
    for hash in parsed {
        let wire = convert::hash_value_to_pb(&hash);
        assert_eq!(convert::hash_value(&wire).ok(), Some(hash));
    }
}

fn algorithms(values: &[i32]) {
    let Some(parsed) = accepted(convert::algorithms(values)) else {
        return;
    };
    for (algorithm, value) in parsed.iter().zip(values) {
        assert_eq!(convert::algorithm_to_pb(*algorithm) as i32, *value);
    }
}

fn bank_names(names: &[String]) {
    if let Some(parsed) = accepted(convert::bank_names(names)) {
        assert_eq!(parsed.len(), names.len());
        for (name, text) in parsed.iter().zip(names) {
            assert_eq!(name.as_str(), text);
        }
    }
}

fn bank_name(name: &str) -> Option<BankName> {
    let parsed = accepted(convert::bank_name(name))?;
    assert_eq!(parsed.as_str(), name);
    Some(parsed)
}

fn new_entry(entry: pb::Entry) {
    let Some(parsed) = accepted(convert::new_entry(entry, NOW_MS)) else {
        return;
    };
    assert!(!parsed.meta.id.is_empty());
    assert_eq!(parsed.meta.added_at_ms, NOW_MS);
    let wire = convert::entry_to_pb(&Entry::from(parsed.clone()));
    assert!(parsed.quality.is_none_or(|q| q <= 100));
    let again = convert::new_entry(wire, NOW_MS).expect("an exported entry imports again");
    // The quality a list gives is for the gate on adding, not stored, so not exported.
    assert_eq!(again, parsed.with_quality(None));
}

fn create_bank(request: &pb::CreateBankRequest) {
    let Some((name, settings)) = accepted(convert::new_bank(request.bank.as_ref())) else {
        return;
    };
    // The matcher refuses invalid settings; it must say why, not panic.
    let _ = settings.validate();
    // Timestamps from the wire's, so that the conversion meets any millisecond value.
    let wire = request.bank.as_ref().expect("a converted bank was given");
    let created_at_ms = (wire.created_at.as_ref())
        .map(|t| millis(t.seconds, t.nanos))
        .unwrap_or(0);
    let last_match_ms = (wire.last_match_at.as_ref()).map(|t| millis(t.seconds, t.nanos));
    let view = BankView {
        bank: hashsieve::bank::Bank {
            id: BankId(1),
            name: name.clone(),
            settings: settings.clone(),
            created_at_ms,
        },
        entry_count: wire.entry_count,
        match_count: wire.match_count,
        last_match_ms,
        matches_here: 0,
    };
    let echoed = convert::bank_to_pb(&view);
    let created_at = echoed.created_at.as_ref().expect("created_at is always set");
    check_timestamp(created_at.seconds, created_at.nanos, created_at_ms);
    match (last_match_ms, echoed.last_match_at.as_ref()) {
        (Some(ms), Some(t)) => check_timestamp(t.seconds, t.nanos, ms),
        (None, None) => {}
        (sent, echoed) => panic!("last match {sent:?} came back as {echoed:?}"),
    }
    let again = convert::new_bank(Some(&echoed)).expect("a bank as sent back is a valid new bank");
    assert_eq!(again, (name, settings));
}

/// Milliseconds from a wire timestamp, any value (wrapping, as only variety matters here).
fn millis(seconds: i64, nanos: i32) -> i64 {
    seconds.wrapping_mul(1000).wrapping_add(i64::from(nanos))
}

/// A timestamp the server sends is normalised and means exactly `ms`.
fn check_timestamp(seconds: i64, nanos: i32, ms: i64) {
    assert!((0..1_000_000_000).contains(&nanos), "nanos {nanos}");
    assert_eq!(nanos % 1_000_000, 0);
    let back = i128::from(seconds) * 1000 + i128::from(nanos / 1_000_000);
    assert_eq!(back, i128::from(ms));
}

/// Settings of an existing bank, as updates are applied to.
fn settings(action: Action) -> BankSettings {
    BankSettings {
        action,
        thresholds: Thresholds::default(),
        labels: vec!["seed".into()],
        description: String::new(),
        enabled: true,
        min_quality: 50,
    }
}
