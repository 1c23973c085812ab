//! The integration tests, as one binary: the generic client and server code they share is
//! compiled and linked once instead of once per file (most of CI's build time before).
//! Run one group with `cargo test --test integration <module>::`.

mod common;

mod architecture;
mod auth;
mod cli;
mod crash;
mod decode;
mod durability;
mod grpc;
mod hostile;
mod limits;
mod metrics;
mod pdq_reference;
mod postgres;
mod shutdown;
mod tls;
