//! Hashes pixel buffers streamed on stdin, for comparison with the Python reference
//! (`tools/pdq_oracle/compare_random.py`; see the README beside this file for how to build it).
//!
//! Protocol, repeated until end of input: a header line `rgb WIDTH HEIGHT` or
//! `grey WIDTH HEIGHT`, then exactly WIDTH·HEIGHT·3 (rgb) or WIDTH·HEIGHT (grey) raw bytes,
//! row-major. For each request one line is written:
//! `rgb`: `HASH QUALITY DIH0 .. DIH7 DIH_QUALITY`; `grey`: `HASH QUALITY`; or `error MESSAGE`
//! for a malformed header (after which the stream stops).
use std::io::{self, BufRead, BufWriter, Read, Write};

use hashsieve::hash::pdq::{pdq_dihedral_from_rgb8, pdq_from_luma8, pdq_from_rgb8};

fn main() -> io::Result<()> {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut output = BufWriter::new(io::stdout().lock());
    let mut header = String::new();
    loop {
        header.clear();
        if input.read_line(&mut header)? == 0 {
            break;
        }
        let fields: Vec<&str> = header.split_whitespace().collect();
        let [kind, width, height] = fields.as_slice() else {
            writeln!(output, "error bad header {header:?}")?;
            break;
        };
        let (Ok(width), Ok(height)) = (width.parse::<usize>(), height.parse::<usize>()) else {
            writeln!(output, "error bad dimensions {header:?}")?;
            break;
        };
        let channels = if *kind == "grey" { 1 } else { 3 };
        let mut pixels = vec![0u8; width * height * channels];
        input.read_exact(&mut pixels)?;
        if *kind == "grey" {
            let out = pdq_from_luma8(&pixels, width, height);
            writeln!(output, "{} {}", out.hash, out.quality)?;
        } else {
            let out = pdq_from_rgb8(&pixels, width, height);
            let dihedral = pdq_dihedral_from_rgb8(&pixels, width, height);
            write!(output, "{} {}", out.hash, out.quality)?;
            for hash in dihedral.hashes {
                write!(output, " {hash}")?;
            }
            writeln!(output, " {}", dihedral.quality)?;
        }
        output.flush()?;
    }
    Ok(())
}
