//! Hostile input against the real binary: the request corpus of `testdata/bad/requests.json`
//! (malformed hashes, unknown enum values, empty and contradictory requests), every file of
//! `testdata/bad/images/`, and oversize messages. Each gets its precise status and message,
//! the server stays up, and its peak memory stays bounded.

use std::sync::LazyLock;

use crate::common::{ServerProcess, block_bank, read_testdata, testdata};
use bytes::{Buf, BufMut};
use hashsieve::hash::decode::{DecodeLimits, decode_image};
use hashsieve::proto as pb;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};
use serde_json::Value;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

const BRIDGE_PDQ: &str = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";

/// Memory the server may reach after all of it: a few decoders' working sets. Inflating any
/// one bomb would take gigabytes.
const PEAK_RSS_LIMIT_KIB: u64 = 256 << 10;

static POOL: LazyLock<DescriptorPool> =
    LazyLock::new(|| DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).unwrap());

/// One case of the request corpus.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    why: String,
    /// `package.Service/Method`.
    rpc: String,
    /// The request in protobuf's JSON mapping (enum fields may be out-of-range numbers).
    request: Value,
    /// The status code's name, as in `tonic::Code`'s description (`INVALID_ARGUMENT`, `OK`…).
    code: String,
    /// Text the status message must contain.
    message: Option<String>,
    /// For `OK`: fields the response must have, in the JSON mapping.
    response: Option<Value>,
}

/// Passes messages through as encoded bytes, so a request can carry what the generated types
/// would not let a client build.
#[derive(Default)]
struct RawCodec;

struct RawCoder;

impl Encoder for RawCoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCoder;
    type Decoder = RawCoder;
    fn encoder(&mut self) -> RawCoder {
        RawCoder
    }
    fn decoder(&mut self) -> RawCoder {
        RawCoder
    }
}

fn method(rpc: &str) -> MethodDescriptor {
    let (service, name) = rpc.split_once('/').unwrap();
    let service = POOL
        .get_service_by_name(service)
        .unwrap_or_else(|| panic!("no service {service}"));
    service
        .methods()
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("no method {rpc}"))
}

/// Sends one encoded request to `rpc` (client-streaming methods get a stream of one); the
/// response as JSON, or the status.
async fn call(channel: &Channel, rpc: &str, request: Vec<u8>) -> Result<Value, tonic::Status> {
    let method = method(rpc);
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::try_from(format!("/{rpc}")).unwrap();
    let response = if method.is_client_streaming() {
        let stream = tokio_stream::iter([request]);
        grpc.client_streaming(tonic::Request::new(stream), path, RawCodec)
            .await?
    } else {
        grpc.unary(tonic::Request::new(request), path, RawCodec).await?
    };
    let message = DynamicMessage::decode(method.output(), response.into_inner().as_slice()).unwrap();
    Ok(serde_json::to_value(&message).unwrap())
}

/// Whether every field of `expected` is in `actual` with the same value.
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(actual), Value::Object(expected)) => expected
            .iter()
            .all(|(key, value)| actual.get(key).is_some_and(|a| contains(a, value))),
        _ => actual == expected,
    }
}

/// Runs one case; what went wrong, if anything.
async fn check(channel: &Channel, case: &Case) -> Result<(), String> {
    let input = method(&case.rpc).input();
    let text = case.request.to_string();
    let mut deserializer = serde_json::Deserializer::from_str(&text);
    let request = DynamicMessage::deserialize(input, &mut deserializer)
        .map_err(|e| format!("the request does not parse: {e}"))?;
    let code = match call(channel, &case.rpc, request.encode_to_vec()).await {
        Ok(response) => {
            if let Some(expected) = &case.response
                && !contains(&response, expected)
            {
                return Err(format!("answered {response}, expected {expected}"));
            }
            Code::Ok
        }
        Err(status) => {
            if let Some(text) = &case.message
                && !status.message().contains(text.as_str())
            {
                return Err(format!("message {:?} lacks {text:?}", status.message()));
            }
            status.code()
        }
    };
    let name = code_name(code);
    if name != case.code {
        return Err(format!("got {name}, expected {}", case.code));
    }
    Ok(())
}

/// `INVALID_ARGUMENT` for `Code::InvalidArgument`: the names the corpus uses.
fn code_name(code: Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// A bank `TVEC` holding the bridge photo's PDQ hash, which the corpus refers to.
async fn set_up(channel: &Channel) {
    let mut banks = pb::banks_client::BanksClient::new(channel.clone());
    banks.create_bank(block_bank("TVEC")).await.unwrap();
    let entry = pb::Entry {
        hash: Some(pb::HashValue {
            algorithm: pb::Algorithm::Pdq as i32,
            hex: BRIDGE_PDQ.into(),
        }),
        id: "bridge-1".into(),
        ..Default::default()
    };
    let added = banks
        .add_entries(tokio_stream::iter([pb::AddEntriesRequest {
            bank: "TVEC".into(),
            entries: vec![entry],
            ..Default::default()
        }]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.added, 1);
}

/// The server's peak resident memory so far, in KiB.
fn peak_rss_kib(server: &ServerProcess) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The bridge photo's PDQ still matches: the server is up and its bank intact.
async fn still_serves(channel: &Channel) {
    let mut matcher = pb::matcher_client::MatcherClient::new(channel.clone());
    let response = matcher
        .check_hashes(pb::CheckHashesRequest {
            hashes: vec![pb::HashValue {
                algorithm: pb::Algorithm::Pdq as i32,
                hex: BRIDGE_PDQ.into(),
            }],
            banks: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.verdict, pb::Verdict::Block as i32);
}

#[tokio::test]
async fn every_bad_request_gets_its_precise_status() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data_dir.path());
    let channel = server.channel().await;
    set_up(&channel).await;
    let corpus = read_testdata("bad/requests.json");
    let cases: Vec<Case> = serde_json::from_slice(&corpus).unwrap();
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(error) = check(&channel, case).await {
            failures.push(format!("{} ({}): {error}", case.why, case.rpc));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    still_serves(&channel).await;
}

/// What the server must answer for an image: what decoding it here gives, mapped as the
/// service maps it (the decode tests pin each file's error).
fn expected_for(image: &[u8]) -> (Code, String) {
    match decode_image(image, &DecodeLimits::default()) {
        Ok(_) => (Code::Ok, String::new()),
        Err(error) if error.is_limit() => (Code::ResourceExhausted, error.to_string()),
        Err(error) => (Code::InvalidArgument, error.to_string()),
    }
}

#[tokio::test]
async fn every_bad_image_gets_its_precise_status_and_memory_stays_bounded() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data_dir.path());
    let channel = server.channel().await;
    set_up(&channel).await;
    let mut files: Vec<_> = std::fs::read_dir(testdata("bad/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 50, "the corpus has {} files", files.len());

    // Four at a time, through each RPC that decodes, so decoders run side by side.
    let mut failures = Vec::new();
    for chunk in files.chunks(4) {
        let mut calls = tokio::task::JoinSet::new();
        for path in chunk {
            let channel = channel.clone();
            let image = std::fs::read(path).unwrap();
            let path = path.clone();
            calls.spawn(async move {
                let (code, message) = expected_for(&image);
                let mut matcher = pb::matcher_client::MatcherClient::new(channel.clone());
                let mut banks = pb::banks_client::BanksClient::new(channel);
                let check = matcher
                    .check_image(pb::CheckImageRequest {
                        image: image.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ());
                let hash = matcher
                    .hash_image(pb::HashImageRequest {
                        image: image.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ());
                let add = banks
                    .add_image(pb::AddImageRequest {
                        bank: "TVEC".into(),
                        image,
                        allow_low_quality: true,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ());
                let mut wrong = Vec::new();
                for (rpc, result) in [("CheckImage", check), ("HashImage", hash), ("AddImage", add)] {
                    let (got, text) = match result {
                        Ok(()) => (Code::Ok, String::new()),
                        Err(status) => (status.code(), status.message().to_string()),
                    };
                    if got != code || !text.contains(&message) {
                        wrong.push(format!(
                            "{}: {rpc} gave {got:?} {text:?}, expected {code:?} {message:?}",
                            path.display()
                        ));
                    }
                }
                wrong
            });
        }
        for wrong in calls.join_all().await {
            failures.extend(wrong);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    still_serves(&channel).await;
    let peak = peak_rss_kib(&server);
    assert!(
        peak < PEAK_RSS_LIMIT_KIB,
        "the server peaked at {} MiB",
        peak >> 10
    );
}

#[tokio::test]
async fn oversize_messages_are_refused_and_the_server_carries_on() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(data_dir.path(), &["--max-message-bytes", "1048576"]);
    let channel = server.channel().await;
    set_up(&channel).await;
    let mut matcher = pb::matcher_client::MatcherClient::new(channel.clone());
    // An image past the message limit.
    let status = matcher
        .check_image(pb::CheckImageRequest {
            image: vec![0xff; 2 << 20],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // 40,000 hashes: a message past the limit made of small valid parts.
    let hash = pb::HashValue {
        algorithm: pb::Algorithm::Pdq as i32,
        hex: BRIDGE_PDQ.into(),
    };
    let status = matcher
        .check_hashes(pb::CheckHashesRequest {
            hashes: vec![hash; 40_000],
            banks: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("limit of 1048576"), "{status:?}");
    // The same inside streams: a load whose second message is too large, a stream check
    // whose second item is.
    let mut banks = pb::banks_client::BanksClient::new(channel.clone());
    let small = pb::AddEntriesRequest {
        bank: "TVEC".into(),
        entries: vec![],
        ..Default::default()
    };
    let large = pb::AddEntriesRequest {
        bank: "TVEC".into(),
        entries: vec![pb::Entry {
            note: "x".repeat(2 << 20),
            ..Default::default()
        }],
        ..Default::default()
    };
    let status = banks
        .add_entries(tokio_stream::iter([small, large]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let item = |image: Vec<u8>| pb::CheckStreamRequest {
        request_id: String::new(),
        check: Some(pb::check_stream_request::Check::Image(pb::CheckImageRequest {
            image,
            ..Default::default()
        })),
    };
    let photo = read_testdata("pdq/bridge-mods/aaa-orig.jpg");
    let mut answers = matcher
        .check_stream(tokio_stream::iter([item(photo), item(vec![0xff; 2 << 20])]))
        .await
        .unwrap()
        .into_inner();
    assert!(
        answers.message().await.unwrap().is_some(),
        "the first item is answered"
    );
    let status = answers.message().await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    still_serves(&channel).await;
}
