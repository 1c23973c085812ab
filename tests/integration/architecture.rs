//! Architecture invariants that are easiest to keep when a test checks them.

use std::path::Path;

/// Every core file: hashing, index, store and the domain around them.
fn core_files() -> Vec<std::path::PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut pending = vec![
        src.join("hash"),
        src.join("index"),
        src.join("store"),
        src.join("matcher"),
    ];
    for file in ["bank.rs", "error.rs", "hashlist.rs", "matcher.rs", "verdict.rs"] {
        files.push(src.join(file));
    }
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn the_core_knows_nothing_of_grpc() {
    for file in core_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for forbidden in ["tonic", "prost", "crate::proto", "crate::grpc", "tokio"] {
            assert!(
                !text.contains(forbidden),
                "{} mentions {forbidden}",
                file.display()
            );
        }
    }
}
