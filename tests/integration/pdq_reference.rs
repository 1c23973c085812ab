//! PDQ against the reference table: `expected.csv` holds, for every image of the reference
//! data, the hash, quality and 8 dihedral hashes that Pillow + `pdqhash` (Meta's C++) give.
//!
//! Lossless images (PNG) decode to the same pixels here as in Pillow, so their rows must match
//! exactly. JPEGs decode through a different decoder than Pillow's libjpeg, so their pixels, and
//! hence a few hash bits, differ: those rows get a loose bound and a printed distance report.
//! Formats this build of `image` cannot decode are listed and skipped (lossy ones only).
//!
//! The data in `testdata/pdq/` is a copy of the shared reference folder, with its generator
//! `make_expected.py`. Run with `--nocapture` to see the per-file report.
use std::fs;
use std::path::{Path, PathBuf};

use hashsieve::hash::pdq::{
    PdqBits, PdqDihedral, PdqOutput, pdq_dihedral_from_rgb8, pdq_from_luma8, pdq_from_rgb8,
};
use image::{DynamicImage, ImageReader};

/// The reference data folder (images, `expected.csv`, `make_expected.py`).
fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pdq")
}

/// Loose bound for lossy rows: different JPEG decoders move a few bits of a well-textured
/// image; images of very low quality (flat, so every coefficient sits near the median) can move
/// many more, so they only get reported.
const LOSSY_MAX_DISTANCE: u32 = 16;
const LOSSY_BOUND_MIN_QUALITY: u8 = 50;

struct Row {
    path: String,
    hash: PdqBits,
    quality: u8,
    dihedral: [PdqBits; 8],
}

fn read_rows(dir: &Path) -> Vec<Row> {
    let csv = fs::read_to_string(dir.join("expected.csv")).expect("expected.csv is readable");
    let mut lines = csv.lines();
    let header = lines.next().expect("expected.csv has a header");
    assert!(
        header.starts_with("path,pdq,quality,dih_original"),
        "header: {header}"
    );
    lines
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 11, "row: {line}");
            let hex = |s: &str| PdqBits::from_hex(s).unwrap_or_else(|| panic!("bad hex {s}"));
            let mut dihedral = [PdqBits::ZERO; 8];
            for (slot, field) in dihedral.iter_mut().zip(&fields[3..]) {
                *slot = hex(field);
            }
            Row {
                path: fields[0].to_string(),
                hash: hex(fields[1]),
                quality: fields[2].parse().expect("quality is a number"),
                dihedral,
            }
        })
        .collect()
}

/// Pixels as `make_expected.py` hands them to PDQ: greyscale stays one channel (the reference
/// stacks it to three, which gives the same luma), everything else becomes RGB with any alpha
/// dropped, as Pillow's `convert("RGB")` does.
enum Pixels {
    Grey {
        luma: Vec<u8>,
        width: usize,
        height: usize,
    },
    Rgb {
        rgb: Vec<u8>,
        width: usize,
        height: usize,
    },
}

fn decode(path: &Path) -> Result<Pixels, String> {
    let image = ImageReader::open(path)
        .map_err(|e| e.to_string())?
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .decode()
        .map_err(|e| e.to_string())?;
    let (width, height) = (image.width() as usize, image.height() as usize);
    Ok(match image {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageLumaA8(_) => Pixels::Grey {
            luma: image.to_luma8().into_raw(),
            width,
            height,
        },
        other => Pixels::Rgb {
            rgb: other.to_rgb8().into_raw(),
            width,
            height,
        },
    })
}

/// The plain hash and the dihedral set of decoded pixels; greyscale goes through the grey entry
/// point and must agree with the RGB entry point on the stacked grey.
fn hash(pixels: &Pixels) -> (PdqOutput, PdqDihedral) {
    match pixels {
        Pixels::Grey { luma, width, height } => {
            let stacked: Vec<u8> = luma.iter().flat_map(|&v| [v, v, v]).collect();
            let grey = pdq_from_luma8(luma, *width, *height);
            let rgb = pdq_from_rgb8(&stacked, *width, *height);
            assert_eq!(grey, rgb, "grey and stacked-grey hashes differ");
            (grey, pdq_dihedral_from_rgb8(&stacked, *width, *height))
        }
        Pixels::Rgb { rgb, width, height } => (
            pdq_from_rgb8(rgb, *width, *height),
            pdq_dihedral_from_rgb8(rgb, *width, *height),
        ),
    }
}

fn is_lossless(path: &str) -> bool {
    path.to_ascii_lowercase().ends_with(".png")
}

#[test]
fn reference_table() {
    let dir = data_dir();
    let rows = read_rows(&dir);
    assert!(!rows.is_empty());
    let mut exact_checked = 0;
    let mut failures = Vec::new();
    let mut undecodable = Vec::new();
    let mut largest_lossy = (0u32, String::new());

    println!("{:<58} {:>4} {:>4}  dihedral distances", "path", "dist", "dq");
    for row in &rows {
        let pixels = match decode(&dir.join(&row.path)) {
            Ok(pixels) => pixels,
            Err(error) => {
                println!("{:<58} undecodable here: {error}", row.path);
                undecodable.push(row.path.clone());
                continue;
            }
        };
        let (plain, dihedral) = hash(&pixels);
        let distance = plain.hash.hamming_distance(&row.hash);
        let dihedral_distances: Vec<u32> = dihedral
            .hashes
            .iter()
            .zip(&row.dihedral)
            .map(|(a, b)| a.hamming_distance(b))
            .collect();
        let quality_diff = i32::from(plain.quality) - i32::from(row.quality);
        println!(
            "{:<58} {distance:>4} {quality_diff:>4}  {dihedral_distances:?}",
            row.path
        );

        if is_lossless(&row.path) {
            exact_checked += 1;
            if plain.hash != row.hash
                || plain.quality != row.quality
                || dihedral.hashes != row.dihedral
                || dihedral.quality != row.quality
            {
                failures.push(format!("{}: not bit-exact", row.path));
            }
        } else {
            let worst = dihedral_distances
                .iter()
                .copied()
                .chain([distance])
                .max()
                .unwrap_or(0);
            if worst > largest_lossy.0 {
                largest_lossy = (worst, row.path.clone());
            }
            if row.quality >= LOSSY_BOUND_MIN_QUALITY && worst > LOSSY_MAX_DISTANCE {
                failures.push(format!("{}: distance {worst} > {LOSSY_MAX_DISTANCE}", row.path));
            }
        }
    }
    println!(
        "{} rows: {exact_checked} lossless rows checked bit for bit; largest lossy distance {} \
         ({}); undecodable here: {undecodable:?}",
        rows.len(),
        largest_lossy.0,
        largest_lossy.1
    );
    assert!(
        exact_checked >= 15,
        "only {exact_checked} lossless rows were checked"
    );
    assert!(
        undecodable.iter().all(|path| !is_lossless(path)),
        "lossless images failed to decode: {undecodable:?}"
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The known values quoted in PDQ.md, on exact Pillow pixels of `bridge-mods/aaa-orig.jpg`
/// (the same image as `reg-test-input/dih/bridge-1-original.jpg`).
#[test]
fn known_bridge_hash() {
    let pixels = decode(&data_dir().join("pixels/bridge-mods__aaa-orig.png")).expect("decodes");
    let (plain, dihedral) = hash(&pixels);
    assert_eq!(
        plain.hash.to_hex(),
        "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
    );
    assert_eq!(plain.quality, 100);
    let rot90 = dihedral.hashes[1];
    assert_eq!(
        rot90.to_hex(),
        "30a10efd71c83f429013d48d0ffffc52e34e0e17ada952a9d29685211ea9e5af"
    );
    // PDQ.md says 120; the two hex strings it quotes (and expected.csv) are 122 bits apart.
    assert_eq!(plain.hash.hamming_distance(&rot90), 122);
}
