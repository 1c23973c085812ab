//! Arbitrary bytes as a hash list (`hashsieve entries import`, `AddEntries` from a file) and as
//! one hex hash: parsing must return, never panic, and must say the truth about lines.
//!
//! Asserts, beyond not crashing:
//! - `HashValue::from_hex` of the input, for every algorithm: a hash that prints back as the
//!   trimmed input in lowercase and parses again to itself; or an error whose length is the
//!   trimmed input's, or whose position and character point at the first non-hex character;
//! - `HashListReader` (default algorithm PDQ) yields at most one item per line break plus one,
//!   with non-decreasing line numbers, and every row has an id;
//! - line numbers are exact where a simple model knows the answer: in a bare list, line `n` of
//!   the input is the hash; in a CSV list without quotes or `\r`, line `n` has a field that is
//!   the hash.

#![no_main]

use std::io::Cursor;

use hashsieve::hash::{Algorithm, HashParseError, HashValue};
use hashsieve::hashlist::HashListReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        for algorithm in Algorithm::ALL {
            check_from_hex(algorithm, text);
        }
    }
    check_list(bytes);
});

fn check_from_hex(algorithm: Algorithm, text: &str) {
    let trimmed = text.trim();
    match HashValue::from_hex(algorithm, text) {
        Ok(value) => {
            assert_eq!(value.algorithm(), algorithm);
            assert_eq!(value.as_bytes().len(), algorithm.byte_len());
            assert_eq!(value.to_hex(), trimmed.to_ascii_lowercase());
            assert_eq!(HashValue::from_hex(algorithm, &value.to_hex()), Ok(value));
            assert_eq!(HashValue::from_bytes(algorithm, value.as_bytes()), Ok(value));
        }
        Err(HashParseError::WrongLength {
            algorithm: reported,
            expected,
            got,
        }) => {
            assert_eq!(reported, algorithm);
            assert_eq!(expected, algorithm.byte_len() * 2);
            assert_eq!(got, trimmed.len());
            assert_ne!(got, expected);
            assert!(trimmed.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        Err(HashParseError::NotHex {
            algorithm: reported,
            position,
            character,
        }) => {
            assert_eq!(reported, algorithm);
            assert!(trimmed.as_bytes()[..position].iter().all(u8::is_ascii_hexdigit));
            assert!(
                trimmed[position..].starts_with(character),
                "{character:?} at {position}"
            );
            assert!(!character.is_ascii_hexdigit());
        }
    }
}

fn check_list(bytes: &[u8]) {
    let Ok(reader) = HashListReader::new(Cursor::new(bytes.to_vec()), Algorithm::Pdq, 0) else {
        return;
    };
    let line_breaks = bytes.iter().filter(|b| **b == b'\n' || **b == b'\r').count();
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let model = model_of(bytes);
    let mut items = 0;
    let mut last_line = 0;
    for item in reader {
        items += 1;
        assert!(
            items <= line_breaks + 1,
            "{items} items from {line_breaks} line breaks"
        );
        let line = match &item {
            Ok(row) => row.line,
            Err(error) => error.line,
        };
        // 0 means the CSV reader could not say where the record was.
        if line == 0 {
            continue;
        }
        assert!(line >= last_line, "line {line} after line {last_line}");
        assert!(line as usize <= lines.len(), "line {line} of {}", lines.len());
        last_line = line;
        let Ok(row) = item else { continue };
        let hex = row.entry.hash.to_hex();
        assert!(!row.entry.meta.id.is_empty());
        assert_eq!(row.entry.meta.added_at_ms, 0);
        let text = std::str::from_utf8(lines[line as usize - 1]);
        match model {
            Model::Bare => {
                let text = text.expect("a bare row's line is UTF-8");
                assert!(
                    text.trim().eq_ignore_ascii_case(&hex),
                    "line {line} is {text:?}, not {hex}"
                );
                assert_eq!(row.entry.meta.id, hex);
            }
            Model::PlainCsv => {
                let text = text.expect("the input is UTF-8");
                assert!(
                    text.split(',')
                        .any(|field| field.trim().eq_ignore_ascii_case(&hex)),
                    "line {line} is {text:?}, without {hex}"
                );
            }
            Model::Unknown => {}
        }
    }
}

/// What the model of line numbers can check for this input.
#[derive(Clone, Copy)]
enum Model {
    /// A bare list: each row is one line.
    Bare,
    /// A CSV list whose records are exactly its lines: UTF-8, no quotes, no `\r`.
    PlainCsv,
    /// Anything else.
    Unknown,
}

/// The reader's own format detection (first line, lossy UTF-8, trimmed, BOM dropped), for
/// inputs that fit its 64 KiB buffer.
fn model_of(bytes: &[u8]) -> Model {
    if bytes.len() >= 1 << 16 {
        return Model::Unknown;
    }
    let end = bytes.iter().position(|b| *b == b'\n').unwrap_or(bytes.len());
    let first = String::from_utf8_lossy(&bytes[..end]);
    let first = first.trim().trim_start_matches('\u{feff}');
    if !first.is_empty() && first.bytes().all(|b| b.is_ascii_hexdigit()) {
        Model::Bare
    } else if std::str::from_utf8(bytes).is_ok() && !bytes.contains(&b'"') && !bytes.contains(&b'\r') {
        Model::PlainCsv
    } else {
        Model::Unknown
    }
}
