//! Banks and entries: the domain types, validated on construction so that invalid values
//! never reach the matcher or the store.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::hash::{Algorithm, HashValue};

/// Longest label, id, source; longest note; most labels per bank or entry.
pub const MAX_TEXT_LEN: usize = 256;
pub const MAX_NOTE_LEN: usize = 4096;
pub const MAX_LABELS: usize = 64;

/// Why a bank or entry field is invalid. Messages name the field so a person can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("bank name {0:?} is invalid: use 1 to 64 characters of A-Z, 0-9 and _")]
    BankName(String),
    #[error("{algorithm} threshold {value} is too large: at most {max} of {bits} bits")]
    Threshold {
        algorithm: Algorithm,
        value: u32,
        max: u32,
        bits: u32,
    },
    #[error("{field} is too long: {len} bytes, at most {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field} must not contain control characters")]
    ControlCharacter { field: &'static str },
    #[error("too many labels: {count}, at most {max}")]
    TooManyLabels { count: usize, max: usize },
    #[error("labels must not be empty")]
    EmptyLabel,
    #[error("action is required: block, review or allow")]
    MissingAction,
    #[error("{field} {value} is out of range: PDQ quality runs from 0 to 100")]
    Quality { field: &'static str, value: u32 },
}

/// The PDQ quality a bank asks of its hashes unless told otherwise: Meta's guidance is that
/// hashes under 50 come from images too flat to match reliably.
pub const DEFAULT_MIN_QUALITY: u8 = 50;

/// A PDQ quality (0–100) from the wire or a list, checked.
pub fn quality(field: &'static str, value: u32) -> Result<u8, ValidationError> {
    u8::try_from(value)
        .ok()
        .filter(|q| *q <= 100)
        .ok_or(ValidationError::Quality { field, value })
}

/// A PDQ hash below its bank's minimum quality: refused unless the caller forces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "pdq quality {quality} is below the bank's minimum {minimum}: the image is too flat to match reliably (allow_low_quality adds it anyway)"
)]
pub struct LowQuality {
    pub quality: u8,
    pub minimum: u8,
}

/// A bank's name: `[A-Z0-9_]{1,64}`, so it is safe in URLs, file names and log lines.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BankName(String);

impl BankName {
    pub fn new(name: &str) -> Result<Self, ValidationError> {
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if valid {
            Ok(BankName(name.to_string()))
        } else {
            Err(ValidationError::BankName(name.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BankName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a bank asks for when it matches. Ordered by strength for the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    Block,
    Review,
    /// Known false positives: a match here overrides every other bank.
    Allow,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Review => "review",
            Action::Allow => "allow",
        }
    }
}

/// Per-algorithm match thresholds in bits: a stored hash matches when distance <= threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thresholds {
    pub pdq: u32,
    pub phash: u32,
    pub dhash: u32,
    pub ahash: u32,
}

impl Default for Thresholds {
    /// PDQ 31 of 256 is the industry's threshold (about 12% of the bits). The 64-bit hashes are
    /// far less discriminative, so their defaults are tighter: 8 of 64 for pHash and dHash
    /// (12.5%, the usual "near duplicate" cut-off for them) and 6 for aHash, whose mean-based
    /// bits collide most on unrelated images.
    fn default() -> Self {
        Thresholds {
            pdq: 31,
            phash: 8,
            dhash: 8,
            ahash: 6,
        }
    }
}

impl Thresholds {
    /// Threshold for `algorithm`; exact algorithms always match at distance 0 only.
    pub fn get(&self, algorithm: Algorithm) -> u32 {
        match algorithm {
            Algorithm::Pdq => self.pdq,
            Algorithm::PHash => self.phash,
            Algorithm::DHash => self.dhash,
            Algorithm::AHash => self.ahash,
            Algorithm::Md5 | Algorithm::Sha256 => 0,
        }
    }

    /// Refuses thresholds above a quarter of the bits: past that, unrelated images match
    /// (two random hashes differ in half their bits), so such a value is a mistake.
    pub fn validate(&self) -> Result<(), ValidationError> {
        for algorithm in [
            Algorithm::Pdq,
            Algorithm::PHash,
            Algorithm::DHash,
            Algorithm::AHash,
        ] {
            let value = self.get(algorithm);
            let bits = algorithm.bits();
            let max = bits / 4;
            if value > max {
                return Err(ValidationError::Threshold {
                    algorithm,
                    value,
                    max,
                    bits,
                });
            }
        }
        Ok(())
    }
}

/// The settings of a bank that users choose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankSettings {
    pub action: Action,
    pub thresholds: Thresholds,
    pub labels: Vec<String>,
    pub description: String,
    pub enabled: bool,
    /// PDQ quality below which hashes are refused on adding unless forced, and a check's
    /// match is marked as coming from a low-quality upload. Older records lack it (serde
    /// default for the JSON of a shared store; the embedded store migrates).
    #[serde(default = "default_min_quality")]
    pub min_quality: u8,
}

fn default_min_quality() -> u8 {
    DEFAULT_MIN_QUALITY
}

impl BankSettings {
    pub fn validate(&self) -> Result<(), ValidationError> {
        quality("min_quality", u32::from(self.min_quality))?;
        self.thresholds.validate()?;
        validate_labels(&self.labels)?;
        validate_text("description", &self.description, MAX_NOTE_LEN)
    }

    /// Whether this bank takes a hash of `algorithm` with this quality (known only for PDQ
    /// hashes: computed ones, and list rows that give it). Unknown quality passes: the hash
    /// alone cannot tell.
    pub fn admits(&self, algorithm: Algorithm, quality: Option<u8>) -> Result<(), LowQuality> {
        match quality {
            Some(quality) if self.is_low_quality(algorithm, Some(quality)) => Err(LowQuality {
                quality,
                minimum: self.min_quality,
            }),
            _ => Ok(()),
        }
    }

    /// Whether a PDQ hash of this quality is below the bank's minimum.
    pub fn is_low_quality(&self, algorithm: Algorithm, quality: Option<u8>) -> bool {
        algorithm == Algorithm::Pdq && quality.is_some_and(|q| q < self.min_quality)
    }
}

/// Compact internal id of a bank, used in the index and in stored keys. Never reused, so a
/// bank deleted and created again under the same name cannot inherit stale entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BankId(pub u32);

/// Where an entry is stored: its bank, and its sequence number, which the store draws from one
/// counter for every new entry, so it is never reused and follows the order of insertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryKey {
    pub bank: BankId,
    pub seq: u64,
}

/// The largest bank id the store hands out: bank ids fit 24 bits and sequence numbers 40, so
/// the index keeps both in one `u64` per hash. That is 16 million banks and a trillion entries
/// over a store's life.
pub const MAX_BANK_ID: u32 = (1 << 24) - 1;
/// The largest sequence number the store hands out (all ones is left free for the index).
pub const MAX_SEQ: u64 = (1 << 40) - 2;

/// A bank as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bank {
    pub id: BankId,
    pub name: BankName,
    pub settings: BankSettings,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// The metadata of an entry; an entry is unique by (bank, algorithm, hash). `id` comes first:
/// removal by id reads only that much of each stored record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryMeta {
    /// External id; not unique (one media item may carry several hashes). Never empty: it
    /// defaults to the hash's hex.
    pub id: String,
    pub labels: Vec<String>,
    pub source: String,
    pub note: String,
    /// Milliseconds since the Unix epoch.
    pub added_at_ms: i64,
}

/// An entry to add: a validated hash and its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEntry {
    pub hash: HashValue,
    pub meta: EntryMeta,
    /// The hash's PDQ quality where the list gave it, for the bank's quality gate. Not
    /// stored: once admitted, an entry matches like any other.
    pub quality: Option<u8>,
}

impl NewEntry {
    /// Builds an entry, checking every field; an empty id becomes the hash's hex.
    pub fn new(
        hash: HashValue,
        id: &str,
        labels: Vec<String>,
        source: &str,
        note: &str,
        added_at_ms: i64,
    ) -> Result<Self, ValidationError> {
        let id = id.trim();
        validate_text("id", id, MAX_TEXT_LEN)?;
        validate_text("source", source, MAX_TEXT_LEN)?;
        validate_text("note", note, MAX_NOTE_LEN)?;
        validate_labels(&labels)?;
        let id = if id.is_empty() {
            hash.to_hex()
        } else {
            id.to_string()
        };
        Ok(NewEntry {
            hash,
            meta: EntryMeta {
                id,
                labels,
                source: source.to_string(),
                note: note.to_string(),
                added_at_ms,
            },
            quality: None,
        })
    }

    /// The same entry, with the quality its list gave.
    pub fn with_quality(self, quality: Option<u8>) -> Self {
        NewEntry { quality, ..self }
    }
}

/// A stored entry, as exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub hash: HashValue,
    pub meta: EntryMeta,
}

impl From<NewEntry> for Entry {
    fn from(entry: NewEntry) -> Entry {
        Entry {
            hash: entry.hash,
            meta: entry.meta,
        }
    }
}

fn validate_text(field: &'static str, text: &str, max: usize) -> Result<(), ValidationError> {
    if text.len() > max {
        return Err(ValidationError::TooLong {
            field,
            len: text.len(),
            max,
        });
    }
    // Notes may span lines; nothing else may carry control characters into logs and CSVs.
    let allowed = |c: char| field == "note" && (c == '\n' || c == '\t');
    if text.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(ValidationError::ControlCharacter { field });
    }
    Ok(())
}

fn validate_labels(labels: &[String]) -> Result<(), ValidationError> {
    if labels.len() > MAX_LABELS {
        return Err(ValidationError::TooManyLabels {
            count: labels.len(),
            max: MAX_LABELS,
        });
    }
    for label in labels {
        if label.trim().is_empty() {
            return Err(ValidationError::EmptyLabel);
        }
        validate_text("label", label, MAX_TEXT_LEN)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bank_names() {
        for good in ["A", "GIFCT_TVEC", "X1", &"Z".repeat(64)] {
            assert!(BankName::new(good).is_ok(), "{good}");
        }
        for bad in ["", "lower", "WITH SPACE", "DASH-ED", &"Z".repeat(65), "É"] {
            assert!(BankName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn thresholds_bound_at_a_quarter_of_the_bits() {
        assert!(Thresholds::default().validate().is_ok());
        assert!(
            Thresholds {
                pdq: 64,
                ..Thresholds::default()
            }
            .validate()
            .is_ok()
        );
        assert!(
            Thresholds {
                pdq: 65,
                ..Thresholds::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Thresholds {
                ahash: 17,
                ..Thresholds::default()
            }
            .validate()
            .is_err()
        );
        assert_eq!(Thresholds::default().get(Algorithm::Sha256), 0);
    }

    #[test]
    fn the_quality_gate_holds_back_known_low_pdq_quality_only() {
        let settings = BankSettings {
            action: Action::Block,
            thresholds: Thresholds::default(),
            labels: vec![],
            description: String::new(),
            enabled: true,
            min_quality: 50,
        };
        assert_eq!(
            settings.admits(Algorithm::Pdq, Some(49)),
            Err(LowQuality {
                quality: 49,
                minimum: 50
            })
        );
        assert_eq!(settings.admits(Algorithm::Pdq, Some(50)), Ok(()));
        assert_eq!(settings.admits(Algorithm::Pdq, None), Ok(()));
        assert_eq!(settings.admits(Algorithm::PHash, Some(0)), Ok(()));
        assert!(quality("quality", 100).is_ok());
        assert!(quality("quality", 101).is_err());
        assert!(
            BankSettings {
                min_quality: 101,
                ..settings.clone()
            }
            .validate()
            .is_err()
        );
        // A shared store's bank written before the minimum existed reads with the default.
        let mut json = serde_json::to_value(&settings).unwrap();
        json.as_object_mut().unwrap().remove("min_quality");
        let old: BankSettings = serde_json::from_value(json).unwrap();
        assert_eq!(old.min_quality, DEFAULT_MIN_QUALITY);
    }

    #[test]
    fn entry_id_defaults_to_hex_and_fields_are_checked() {
        let hash = HashValue::from_hex(Algorithm::Md5, "900150983cd24fb0d6963f7d28e17f72").unwrap();
        let entry = NewEntry::new(hash, " ", vec![], "", "", 0).unwrap();
        assert_eq!(entry.meta.id, hash.to_hex());
        assert!(NewEntry::new(hash, "a\u{7}", vec![], "", "", 0).is_err());
        assert!(NewEntry::new(hash, "", vec!["".into()], "", "", 0).is_err());
        assert!(NewEntry::new(hash, "", vec![], "", "line one\nline two", 0).is_ok());
        assert!(NewEntry::new(hash, &"x".repeat(257), vec![], "", "", 0).is_err());
    }
}

/// Thresholds to change; unset ones keep their value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThresholdsPatch {
    pub pdq: Option<u32>,
    pub phash: Option<u32>,
    pub dhash: Option<u32>,
    pub ahash: Option<u32>,
}

impl ThresholdsPatch {
    pub fn apply(&self, base: Thresholds) -> Thresholds {
        Thresholds {
            pdq: self.pdq.unwrap_or(base.pdq),
            phash: self.phash.unwrap_or(base.phash),
            dhash: self.dhash.unwrap_or(base.dhash),
            ahash: self.ahash.unwrap_or(base.ahash),
        }
    }
}

/// A change to a bank's settings; unset fields keep their value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BankUpdate {
    pub action: Option<Action>,
    pub thresholds: ThresholdsPatch,
    pub labels: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub min_quality: Option<u8>,
}

impl BankUpdate {
    pub fn apply(&self, base: &BankSettings) -> BankSettings {
        BankSettings {
            action: self.action.unwrap_or(base.action),
            thresholds: self.thresholds.apply(base.thresholds),
            labels: self.labels.clone().unwrap_or_else(|| base.labels.clone()),
            description: self
                .description
                .clone()
                .unwrap_or_else(|| base.description.clone()),
            enabled: self.enabled.unwrap_or(base.enabled),
            min_quality: self.min_quality.unwrap_or(base.min_quality),
        }
    }
}
