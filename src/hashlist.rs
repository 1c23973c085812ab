//! Reading hash lists: CSV exports of hash-sharing programmes, or bare hex, one per line.
//!
//! Rows stream one at a time (constant memory for any size). A bad row is returned as an
//! error with its line number, never skipped silently; the caller counts and reports it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex, PoisonError};

use crate::bank::NewEntry;
use crate::hash::{Algorithm, HashValue};

/// A row that could not be read, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub reason: String,
}

/// A row read from a list, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub line: u64,
    pub entry: NewEntry,
}

/// Columns of a CSV hash list, found by header name (case-insensitive, any order).
#[derive(Default)]
struct Columns {
    hash: usize,
    algorithm: Option<usize>,
    id: Option<usize>,
    labels: Option<usize>,
    source: Option<usize>,
    note: Option<usize>,
    quality: Option<usize>,
}

/// Counts lines for CSV records. The csv crate skips blank lines without counting them, so its
/// line numbers drift; byte offsets stay exact, so this reader notes where each line break
/// (`\r` or `\n`) is and the iterator turns a record's byte offset into a line number. Offsets
/// already passed are dropped, so memory stays bounded by the csv crate's read-ahead.
struct NewlineTracker<R> {
    inner: R,
    offset: u64,
    newlines: Arc<Mutex<VecDeque<(u64, u8)>>>,
}

impl<R: Read> Read for NewlineTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        let mut newlines = self.newlines.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, byte) in buf[..read]
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n' || **b == b'\r')
        {
            newlines.push_back((self.offset + i as u64, *byte));
        }
        self.offset += read as u64;
        Ok(read)
    }
}

struct LineCounter {
    newlines: Arc<Mutex<VecDeque<(u64, u8)>>>,
    lines_before: u64,
}

impl LineCounter {
    /// 1-based line of the record that the csv crate says starts at `offset` (offsets must
    /// come in increasing order). The crate's offset is where the previous record ended, before
    /// any blank lines it skipped, so line breaks right at the offset are skipped here too.
    fn line_at(&mut self, offset: u64) -> u64 {
        let mut newlines = self.newlines.lock().unwrap_or_else(PoisonError::into_inner);
        let mut position = offset;
        while let Some(&(at, byte)) = newlines.front() {
            if at > position {
                break;
            }
            newlines.pop_front();
            if at == position {
                position += 1;
            }
            if byte == b'\n' {
                self.lines_before += 1;
            }
        }
        self.lines_before + 1
    }
}

enum Format {
    Csv {
        reader: Box<csv::Reader<NewlineTracker<Box<dyn BufRead>>>>,
        /// Reused for every row, so reading one allocates nothing.
        record: csv::StringRecord,
        columns: Columns,
        lines: LineCounter,
    },
    Bare {
        lines: std::io::Lines<Box<dyn BufRead>>,
        line: u64,
    },
}

/// Streams the rows of a hash list.
pub struct HashListReader {
    format: Format,
    default_algorithm: Algorithm,
    now_ms: i64,
}

impl HashListReader {
    /// Detects the format from the first line: a lone hex string means bare hashes, anything
    /// else is a CSV header that must name a `hash` column.
    pub fn new(
        input: impl Read + 'static,
        default_algorithm: Algorithm,
        now_ms: i64,
    ) -> Result<Self, String> {
        let mut input: Box<dyn BufRead> = Box::new(BufReader::with_capacity(1 << 16, input));
        let first_line = {
            let buffer = input
                .fill_buf()
                .map_err(|e| format!("cannot read the list: {e}"))?;
            let end = buffer.iter().position(|b| *b == b'\n').unwrap_or(buffer.len());
            String::from_utf8_lossy(&buffer[..end])
                .trim()
                .trim_start_matches('\u{feff}')
                .to_string()
        };
        let format = if !first_line.is_empty() && first_line.bytes().all(|b| b.is_ascii_hexdigit()) {
            Format::Bare {
                lines: input.lines(),
                line: 0,
            }
        } else {
            let newlines = Arc::new(Mutex::new(VecDeque::new()));
            let tracker = NewlineTracker {
                inner: input,
                offset: 0,
                newlines: newlines.clone(),
            };
            let mut reader = csv::ReaderBuilder::new()
                .flexible(true)
                // Fields are trimmed as they are read: the reader's own trimming copies
                // every record.
                .trim(csv::Trim::Headers)
                .from_reader(tracker);
            let headers = reader
                .headers()
                .map_err(|e| format!("cannot read the CSV header: {e}"))?
                .clone();
            let find = |name: &str| {
                headers
                    .iter()
                    .position(|h| h.trim_start_matches('\u{feff}').eq_ignore_ascii_case(name))
            };
            let columns = Columns {
                hash: find("hash").ok_or_else(|| {
                    format!(
                        "the CSV header has no `hash` column (found: {}); give a header row with `hash` \
                         and optionally `algorithm`, `id`, `labels`, `source`, `note`, `quality`, or a file of bare hex hashes",
                        headers.iter().collect::<Vec<_>>().join(", ")
                    )
                })?,
                algorithm: find("algorithm"),
                id: find("id"),
                labels: find("labels"),
                source: find("source"),
                note: find("note"),
                quality: find("quality"),
            };
            Format::Csv {
                reader: Box::new(reader),
                record: csv::StringRecord::new(),
                columns,
                lines: LineCounter {
                    newlines,
                    lines_before: 0,
                },
            }
        };
        Ok(HashListReader {
            format,
            default_algorithm,
            now_ms,
        })
    }

    fn parse(
        default_algorithm: Algorithm,
        now_ms: i64,
        line: u64,
        algorithm: Option<&str>,
        hash: &str,
        fields: [&str; 5],
    ) -> Result<Row, RowError> {
        let fail = |reason: String| RowError { line, reason };
        let algorithm = match algorithm.map(str::trim).filter(|a| !a.is_empty()) {
            Some(name) => name.parse::<Algorithm>().map_err(|e| fail(e.to_string()))?,
            None => default_algorithm,
        };
        let hash = HashValue::from_hex(algorithm, hash).map_err(|e| fail(e.to_string()))?;
        let [id, labels, source, note, quality] = fields;
        let quality = match quality.trim() {
            "" => None,
            text => {
                let value = text
                    .parse::<u32>()
                    .map_err(|_| fail(format!("quality {text:?} is not a number from 0 to 100")))?;
                Some(crate::bank::quality("quality", value).map_err(|e| fail(e.to_string()))?)
            }
        };
        let labels = labels
            .split(';')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        let entry = NewEntry::new(hash, id, labels, source, note, now_ms)
            .map_err(|e| fail(e.to_string()))?
            .with_quality(quality);
        Ok(Row { line, entry })
    }
}

impl Iterator for HashListReader {
    type Item = Result<Row, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (default_algorithm, now_ms) = (self.default_algorithm, self.now_ms);
        loop {
            match &mut self.format {
                Format::Bare { lines, line } => {
                    *line += 1;
                    let number = *line;
                    let text = match lines.next()? {
                        Ok(text) => text,
                        Err(e) => {
                            return Some(Err(RowError {
                                line: number,
                                reason: format!("unreadable line: {e}"),
                            }));
                        }
                    };
                    // A byte order mark (spreadsheets write one) is not part of the first hash.
                    let text = text.trim_start_matches('\u{feff}').trim();
                    if text.is_empty() || text.starts_with('#') {
                        continue;
                    }
                    return Some(Self::parse(
                        default_algorithm,
                        now_ms,
                        number,
                        None,
                        text,
                        ["", "", "", "", ""],
                    ));
                }
                Format::Csv {
                    reader,
                    record,
                    columns,
                    lines,
                } => {
                    match reader.read_record(record) {
                        Ok(true) => {}
                        Ok(false) => return None,
                        Err(e) => {
                            let line = e.position().map(|p| lines.line_at(p.byte())).unwrap_or(0);
                            return Some(Err(RowError {
                                line,
                                reason: format!("bad CSV row: {e}"),
                            }));
                        }
                    }
                    let line = record.position().map(|p| lines.line_at(p.byte())).unwrap_or(0);
                    if record.iter().all(|field| field.trim().is_empty()) {
                        continue;
                    }
                    let get = |column: Option<usize>| column.and_then(|c| record.get(c)).unwrap_or("").trim();
                    let hash = get(Some(columns.hash));
                    let algorithm = columns.algorithm.map(|c| get(Some(c)));
                    let fields = [
                        get(columns.id),
                        get(columns.labels),
                        get(columns.source),
                        get(columns.note),
                        get(columns.quality),
                    ];
                    return Some(Self::parse(
                        default_algorithm,
                        now_ms,
                        line,
                        algorithm,
                        hash,
                        fields,
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (line, hex, id) of a row, or (line, reason) of a rejection.
    type Outcome = Result<(u64, String, String), (u64, String)>;

    fn read(text: &str) -> Vec<Outcome> {
        HashListReader::new(
            std::io::Cursor::new(text.to_string().into_bytes()),
            Algorithm::Pdq,
            0,
        )
        .unwrap()
        .map(|row| match row {
            Ok(row) => Ok((row.line, row.entry.hash.to_hex(), row.entry.meta.id)),
            Err(e) => Err((e.line, e.reason)),
        })
        .collect()
    }

    #[test]
    fn csv_with_columns_in_any_order_and_bad_rows_reported_by_line() {
        let pdq = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";
        let text = format!(
            "id,labels,Hash,algorithm\nitem-1,a;b,{pdq},pdq\nitem-2,,zz,pdq\n\nitem-3,,900150983cd24fb0d6963f7d28e17f72,md5\nitem-4,,00,sha1\n"
        );
        let rows = read(&text);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0], Ok((2, pdq.to_string(), "item-1".to_string())));
        assert!(matches!(&rows[1], Err((3, reason)) if reason.contains("non-hex")));
        assert_eq!(rows[2].as_ref().unwrap().0, 5);
        assert!(matches!(&rows[3], Err((6, reason)) if reason.contains("unknown algorithm")));
    }

    #[test]
    fn crlf_and_blank_lines_keep_line_numbers_exact() {
        let a = "0000000000000000";
        let b = "00000000000000ff";
        let rows = read(&format!("hash,algorithm\r\n{a},phash\r\n\r\n\r\n{b},phash\r\n"));
        let lines: Vec<u64> = rows.iter().map(|r| r.as_ref().unwrap().0).collect();
        assert_eq!(lines, vec![2, 5]);
    }

    #[test]
    fn bare_hex_lines_use_the_default_algorithm() {
        let pdq = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";
        let rows = read(&format!("{pdq}\n\n# comment\n{}\n", &pdq[..10]));
        assert_eq!(rows[0], Ok((1, pdq.to_string(), pdq.to_string())));
        assert!(matches!(&rows[1], Err((4, reason)) if reason.contains("64 hex digits")));
    }

    #[test]
    fn a_byte_order_mark_before_bare_hashes_is_not_part_of_the_first() {
        let pdq = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";
        let rows = read(&format!("\u{feff}{pdq}\n"));
        assert_eq!(rows, vec![Ok((1, pdq.to_string(), pdq.to_string()))]);
    }

    #[test]
    fn a_quality_column_is_read_and_checked() {
        let pdq = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";
        let text = format!("hash,quality\n{pdq},77\n{pdq},\n{pdq},high\n{pdq},101\n");
        let rows: Vec<_> = HashListReader::new(std::io::Cursor::new(text.into_bytes()), Algorithm::Pdq, 0)
            .unwrap()
            .collect();
        assert_eq!(rows[0].as_ref().unwrap().entry.quality, Some(77));
        assert_eq!(rows[1].as_ref().unwrap().entry.quality, None);
        assert!(matches!(&rows[2], Err(e) if e.line == 4 && e.reason.contains("not a number")));
        assert!(matches!(&rows[3], Err(e) if e.line == 5 && e.reason.contains("0 to 100")));
    }

    #[test]
    fn a_header_without_hash_is_refused() {
        assert!(
            HashListReader::new(std::io::Cursor::new(b"id,label\n".to_vec()), Algorithm::Pdq, 0).is_err()
        );
    }
}
