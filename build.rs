//! Compiles `proto/` with protox, a pure-Rust protobuf compiler, so building needs no system
//! `protoc`. Emits the prost messages, the tonic services, serde impls following protobuf's JSON
//! mapping (pbjson, for the CLI's `--json`), and the descriptor set that server reflection serves.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "hashsieve/v1/types.proto",
    "hashsieve/v1/matcher.proto",
    "hashsieve/v1/banks.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let descriptor_bytes = descriptors.encode_to_vec();
    std::fs::write(out_dir.join("hashsieve_descriptor.bin"), &descriptor_bytes)?;

    tonic_prost_build::configure()
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(descriptors)?;

    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .emit_fields()
        .build(&[".hashsieve"])?;
    Ok(())
}
