//! hashsieve matches uploads against banks of perceptual hashes of flagged media.
//!
//! # Layout
//! - [`hash`]: decoding with limits, PDQ, pHash/dHash/aHash, MD5/SHA-256. Pure functions.
//! - [`bank`]: banks and entries, validated domain types.
//! - [`index`]: exact radius search per algorithm, updated in place.
//! - [`store`]: the durable record (redb) the index is rebuilt from.
//! - [`verdict`]: what a set of matches adds up to.
//! - [`matcher`]: the core service: banks, entries, checks. Synchronous, transport-agnostic.
//! - [`error`]: the core's error vocabulary.
//! - [`grpc`]: the tonic adapter: wire types ⇄ domain types, one error mapping, the server.
//! - [`metrics`]: Prometheus metrics of calls and of the core, served over HTTP.
//! - [`cli`]: the `hashsieve` command line.
//!
//! Only `grpc` and `cli` know of gRPC; the core modules never import tonic or prost.

pub mod bank;
pub mod cli;
pub mod error;
pub mod grpc;
pub mod hash;
pub mod hashlist;
pub mod index;
pub mod matcher;
pub mod memory;
pub mod metrics;
pub mod store;
pub mod verdict;

/// Generated wire types and services of `hashsieve.v1`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("hashsieve.v1");
    include!(concat!(env!("OUT_DIR"), "/hashsieve.v1.serde.rs"));

    /// Encoded descriptors of every message and service, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/hashsieve_descriptor.bin"));
}
