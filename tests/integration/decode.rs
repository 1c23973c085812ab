//! Data-driven tests of image decoding over testdata/images/ and the hostile files of
//! testdata/bad/images/ (both made by tools/make_testdata.py).
//!
//! Every file there has one expectation below, checked through `check`; a test fails if a
//! file has none, so new test data cannot go unchecked. `pillow.tsv` records what Pillow's
//! `convert("RGB")` gives for each good file, the reference the field hashes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hashsieve::hash::decode::{DecodeError, DecodeLimits, ImageFormat, decode_image};
use image::RgbImage;
use proptest::prelude::*;

use ImageFormat::{Bmp, Gif, Jpeg, Png, Tiff, WebP};

const W: u32 = 161;
const H: u32 = 121;

/// What decoding one file must give.
enum Expected {
    /// Decodes in `format` to `size`, and its pixels pass every check.
    Image {
        format: ImageFormat,
        size: (u32, u32),
        checks: &'static [Check],
    },
    /// Fails with an error matching the pattern (its text is kept for the failure message).
    Error {
        pattern: &'static str,
        matches: fn(&DecodeError) -> bool,
    },
}

/// A property of decoded pixels.
enum Check {
    /// Byte for byte what Pillow's `convert("RGB")` gives (its hash is in pillow.tsv).
    SameAsPillow,
    /// Within `max` levels of Pillow's pixels (kept in `<file>.pillow.png`), `mean` on average:
    /// lossy decoders legitimately differ a little.
    NearPillow { max: u8, mean: f64 },
    /// Byte for byte the pixels decoded from another file.
    SameAs(&'static str),
    /// R = G = B in every pixel.
    Grey,
    /// Differs from Pillow on purpose (see `decode_image`): the hash must not match.
    NotPillow,
    /// Only black and white.
    BlackAndWhite,
}

fn image(format: ImageFormat, checks: &'static [Check]) -> Expected {
    Expected::Image {
        format,
        size: (W, H),
        checks,
    }
}

macro_rules! error {
    ($pattern:pat) => {
        Expected::Error {
            pattern: stringify!($pattern),
            matches: |e| matches!(e, $pattern),
        }
    };
}

/// Valid images, then the hostile ones.
fn data_dirs() -> [PathBuf; 2] {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [root.join("testdata/images"), root.join("testdata/bad/images")]
}

fn read(file: &str) -> Vec<u8> {
    let [good, bad] = data_dirs();
    let hostile = file.starts_with("bad-") || file.starts_with("bomb-");
    let path = if hostile { bad } else { good }.join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn decode(file: &str) -> RgbImage {
    decode_image(&read(file), &DecodeLimits::default())
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .rgb
}

/// FNV-1a 64 of the pixel bytes, as tools/make_testdata.py computes it.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// pillow.tsv: file name → Pillow's RGB hash, for the files Pillow can read.
fn pillow_hashes() -> HashMap<String, u64> {
    let tsv = String::from_utf8(read("pillow.tsv")).unwrap();
    tsv.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let hash = u64::from_str_radix(fields[4], 16).ok()?;
            Some((fields[0].to_string(), hash))
        })
        .collect()
}

/// Decodes `file` with default limits and compares with `expected`; returns what is wrong.
fn check(file: &str, expected: &Expected) -> Result<(), String> {
    let result = decode_image(&read(file), &DecodeLimits::default());
    match expected {
        Expected::Image { format, size, checks } => {
            let decoded = result.map_err(|error| format!("failed: {error:?} ({error})"))?;
            let found = (decoded.format, decoded.rgb.dimensions());
            if found != (*format, *size) {
                return Err(format!("decoded {found:?}, expected {:?}", (format, size)));
            }
            checks
                .iter()
                .try_for_each(|c| check_pixels(file, &decoded.rgb, c))
        }
        Expected::Error { pattern, matches } => {
            let error = match result {
                Ok(decoded) => return Err(format!("decoded {decoded:?}, expected {pattern}")),
                Err(error) => error,
            };
            if !matches(&error) {
                return Err(format!("gave {error:?}, expected {pattern}"));
            }
            // Messages are for people: lowercase start, no trailing period, one line.
            let message = error.to_string();
            let starts_lowercase = message.chars().next().is_some_and(|c| c.is_lowercase());
            if !starts_lowercase || message.ends_with('.') || message.contains('\n') {
                return Err(format!("badly formed message {message:?}"));
            }
            Ok(())
        }
    }
}

fn check_pixels(file: &str, rgb: &RgbImage, check: &Check) -> Result<(), String> {
    let pillow_hash = || {
        pillow_hashes()
            .get(file)
            .copied()
            .ok_or(format!("{file} not in pillow.tsv"))
    };
    match check {
        Check::SameAsPillow => {
            if fnv1a64(rgb.as_raw()) != pillow_hash()? {
                return Err("pixels differ from Pillow's".to_string());
            }
        }
        Check::NotPillow => {
            if fnv1a64(rgb.as_raw()) == pillow_hash()? {
                return Err("pixels equal Pillow's, but a documented difference was expected".to_string());
            }
        }
        Check::NearPillow { max, mean } => {
            let reference = decode(&format!("{file}.pillow.png"));
            let diffs: Vec<u8> = reference
                .as_raw()
                .iter()
                .zip(rgb.as_raw())
                .map(|(a, b)| a.abs_diff(*b))
                .collect();
            let worst = diffs.iter().copied().max().unwrap_or(0);
            let average = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
            if worst > *max || average > *mean {
                return Err(format!(
                    "vs Pillow: max diff {worst} (allowed {max}), \
                     mean {average:.3} (allowed {mean})"
                ));
            }
        }
        Check::SameAs(other) => {
            if *rgb != decode(other) {
                return Err(format!("pixels differ from {other}'s"));
            }
        }
        Check::Grey => {
            if let Some(p) = rgb.pixels().find(|p| p[0] != p[1] || p[1] != p[2]) {
                return Err(format!("pixel {p:?} is not grey"));
            }
        }
        Check::BlackAndWhite => {
            if let Some(p) = rgb.pixels().find(|p| p.0 != [0, 0, 0] && p.0 != [255, 255, 255]) {
                return Err(format!("pixel {p:?} is neither black nor white"));
            }
        }
    }
    Ok(())
}

#[rustfmt::skip] // a table: one file a line
fn good_files() -> Vec<(&'static str, Expected)> {
    use Check::*;
    const RGB: &str = "good-png-rgb.png";
    const JPEG_NEAR: Check = NearPillow { max: 6, mean: 0.5 };
    vec![
        // JPEG: zune-jpeg differs from libjpeg-turbo by a few levels at most.
        ("good-jpeg-rgb.jpg", image(Jpeg, &[JPEG_NEAR])),
        ("good-jpeg-progressive.jpg", image(Jpeg, &[JPEG_NEAR])),
        ("good-jpeg-grey.jpg", image(Jpeg, &[Grey, NearPillow { max: 2, mean: 0.05 }])),
        ("good-jpeg-cmyk.jpg", image(Jpeg, &[NearPillow { max: 2, mean: 0.05 }])),
        // EXIF orientation 6 is ignored, as Image.open ignores it: same size, same pixels.
        ("good-jpeg-exif-rotated.jpg", image(Jpeg, &[SameAs("good-jpeg-rgb.jpg"), JPEG_NEAR])),
        // PNG: lossless, so exactly Pillow's pixels, except for 16-bit samples.
        ("good-png-rgb.png", image(Png, &[SameAsPillow])),
        // Alpha dropped, not composited: the RGB under alpha 0 survives unchanged.
        ("good-png-rgba.png", image(Png, &[SameAsPillow, SameAs(RGB)])),
        ("good-png-l.png", image(Png, &[SameAsPillow, Grey])),
        ("good-png-la.png", image(Png, &[SameAsPillow, Grey, SameAs("good-png-l.png")])),
        ("good-png-p.png", image(Png, &[SameAsPillow])),
        // A transparent palette index keeps its palette colour.
        ("good-png-p-trns.png", image(Png, &[SameAsPillow, SameAs("good-png-p.png")])),
        ("good-png-1.png", image(Png, &[SameAsPillow, BlackAndWhite])),
        // 16-bit grey is scaled (v * 257 → v); Pillow clips it at 255 instead.
        ("good-png-i16.png", image(Png, &[Grey, SameAs("good-png-l.png"), NotPillow])),
        // 16-bit RGB is rounded (v * 257 + 90 → v); Pillow takes the high byte (v + 1, v ≥ 166).
        ("good-png-rgb16.png", image(Png, &[SameAs(RGB), NotPillow])),
        ("good-png-interlaced.png", image(Png, &[SameAsPillow, SameAs(RGB)])),
        // First frame of an animation; the second frame is the negative.
        ("good-png-apng.png", image(Png, &[SameAsPillow, SameAs(RGB)])),
        // GIF: first frame; a transparent index keeps its palette colour.
        ("good-gif-anim.gif", image(Gif, &[SameAsPillow, SameAs("good-png-p.png")])),
        ("good-gif-transparent.gif", image(Gif, &[SameAsPillow, SameAs("good-png-p.png")])),
        // WebP: image-webp gives exactly libwebp's pixels on these.
        ("good-webp-lossy.webp", image(WebP, &[NearPillow { max: 0, mean: 0.0 }])),
        ("good-webp-lossy-alpha.webp", image(WebP, &[NearPillow { max: 0, mean: 0.0 }])),
        ("good-webp-lossless.webp", image(WebP, &[SameAsPillow, SameAs(RGB)])),
        ("good-webp-alpha.webp", image(WebP, &[SameAsPillow, SameAs(RGB)])),
        ("good-webp-anim.webp", image(WebP, &[SameAsPillow, SameAs(RGB)])),
        // BMP
        ("good-bmp-rgb.bmp", image(Bmp, &[SameAsPillow, SameAs(RGB)])),
        ("good-bmp-p.bmp", image(Bmp, &[SameAsPillow, SameAs("good-png-p.png")])),
        ("good-bmp-1.bmp", image(Bmp, &[SameAsPillow, SameAs("good-png-1.png")])),
        // TIFF: first page; CMYK converted exactly as Pillow does.
        ("good-tiff-rgb.tif", image(Tiff, &[SameAsPillow, SameAs(RGB)])),
        ("good-tiff-lzw.tif", image(Tiff, &[SameAsPillow, SameAs(RGB)])),
        ("good-tiff-deflate.tif", image(Tiff, &[SameAsPillow, SameAs(RGB)])),
        ("good-tiff-l.tif", image(Tiff, &[SameAsPillow, SameAs("good-png-l.png")])),
        ("good-tiff-cmyk.tif", image(Tiff, &[SameAsPillow])),
        ("good-tiff-i16.tif", image(Tiff, &[SameAs("good-png-l.png"), NotPillow])),
        ("good-tiff-jpeg.tif", image(Tiff, &[NearPillow { max: 2, mean: 0.05 }])),
        ("good-tiff-multipage.tif", image(Tiff, &[SameAsPillow, SameAs(RGB)])),
        // Float RGB, which Pillow cannot open; see `float_tiff_is_clamped_and_scaled`.
        ("good-tiff-f32-rgb.tif", Expected::Image { format: Tiff, size: (41, 31), checks: &[] }),
    ]
}

#[rustfmt::skip] // a table: one file a line
fn bad_files() -> Vec<(&'static str, Expected)> {
    use DecodeError::*;
    vec![
        ("bad-empty.bin", error!(Empty)),
        ("bad-text.txt", error!(UnknownFormat)),
        ("bad-html.html", error!(UnknownFormat)),
        ("bad-avif.avif", error!(UnsupportedFormat { name: "avif" })),
        ("bad-heic.heic", error!(UnsupportedFormat { name: "heif" })),
        ("bad-jpeg2000.jp2", error!(UnsupportedFormat { name: "jpeg 2000" })),
        ("bad-ico.ico", error!(UnsupportedFormat { name: "ico" })),
        ("bad-tiff-palette.tif", error!(Unsupported { format: Tiff, .. })),
        ("bad-tiff-f32-grey.tif", error!(Unsupported { format: Tiff, .. })),
        ("bad-magic-only.jpg", error!(Truncated { format: Jpeg })),
        ("bad-magic-only.png", error!(Truncated { format: Png })),
        ("bad-magic-only.gif", error!(Truncated { format: Gif })),
        ("bad-magic-only.webp", error!(Truncated { format: WebP })),
        ("bad-magic-only.bmp", error!(Truncated { format: Bmp })),
        ("bad-magic-only.tif", error!(Truncated { format: Tiff })),
        // zune-jpeg decodes what is there and fills the rest with grey, as browsers show a
        // partial JPEG; Pillow refuses it ("image file is truncated"). See `decode_image`.
        ("bad-truncated.jpg", image(Jpeg, &[])),
        ("bad-truncated.png", error!(Truncated { format: Png })),
        ("bad-truncated.gif", error!(Truncated { format: Gif })),
        // The VP8 decoder cannot tell a short stream from a damaged one.
        ("bad-truncated.webp", error!(Corrupt { format: WebP, .. })),
        ("bad-truncated.bmp", error!(Truncated { format: Bmp })),
        ("bad-truncated.tif", error!(Truncated { format: Tiff })),
        // Noise in JPEG entropy data or in a BMP palette and pixels still decodes (to noise):
        // neither format has a checksum. Pillow refuses the JPEG.
        ("bad-corrupt.jpg", image(Jpeg, &[])),
        ("bad-corrupt.png", error!(Corrupt { format: Png, .. })),
        ("bad-corrupt.gif", error!(Corrupt { format: Gif, .. })),
        ("bad-corrupt.webp", error!(Corrupt { format: WebP, .. })),
        ("bad-corrupt.bmp", image(Bmp, &[])),
        ("bad-corrupt.tif", error!(Corrupt { format: Tiff, .. })),
        // Zero-size images, refused from the header whatever the decoder would say.
        ("bad-zero-png-0x0.png", error!(Corrupt { format: Png, .. })),
        ("bad-zero-png-0x16.png", error!(Corrupt { format: Png, .. })),
        ("bad-zero-gif-0x0.gif", error!(Corrupt { format: Gif, .. })),
        ("bad-zero-bmp-0x0.bmp", error!(Corrupt { format: Bmp, .. })),
        ("bad-zero-tiff-0x0.tif", error!(Corrupt { format: Tiff, .. })),
        ("bad-zero-jpeg-0x0.jpg", error!(Corrupt { format: Jpeg, .. })),
        // TIFFs whose strips make no sense: none may divide by zero, seek past the end or loop.
        ("bad-tiff-rows-per-strip-0.tif", error!(Corrupt { format: Tiff, .. })),
        ("bad-tiff-strips-beyond-eof.tif", error!(Truncated { format: Tiff })),
        ("bad-tiff-ifd-loop.tif", error!(Corrupt { format: Tiff, .. })),
    ]
}

#[rustfmt::skip] // a table: one file a line
fn bomb_files() -> Vec<(&'static str, Expected)> {
    use DecodeError::*;
    const LIMIT: u64 = 1 << 26;
    vec![
        ("bomb-png-30000x30000.png",
            error!(TooManyPixels { format: Png, width: 30000, height: 30000, limit: LIMIT })),
        ("bomb-png-20000x1.png", error!(SideTooLong { format: Png, width: 20000, height: 1, limit: 16384 })),
        ("bomb-gif-screen.gif", error!(TooManyPixels { format: Gif, width: 65535, height: 65535, .. })),
        // A 16x16 screen whose first frame declares 65535x65535.
        ("bomb-gif-frame.gif", error!(TooManyPixels { format: Gif, width: 65535, height: 65535, .. })),
        // Within the pixel limit, but a frame 250 000 times its 16x16 screen, and a 64x64 TIFF
        // whose strip claims 2 GB: the allocation limits set on the decoders refuse these.
        ("bomb-gif-frame-8000x8000.gif", error!(MemoryLimit { format: Gif })),
        ("bomb-tiff-strip-2gb.tif", error!(MemoryLimit { format: Tiff })),
        ("bomb-jpeg-65500x65500.jpg",
            error!(TooManyPixels { format: Jpeg, width: 65500, height: 65500, .. })),
        ("bomb-tiff-100000x100000.tif",
            error!(TooManyPixels { format: Tiff, width: 100000, height: 100000, .. })),
        ("bomb-bmp-30000x30000.bmp", error!(TooManyPixels { format: Bmp, width: 30000, height: 30000, .. })),
        ("bomb-webp-16000x16000.webp",
            error!(TooManyPixels { format: WebP, width: 16000, height: 16000, .. })),
        // Strip tables of 2^30 entries, and 16384 strips each claiming 4 GB.
        ("bomb-tiff-1g-strips.tif", error!(MemoryLimit { format: Tiff })),
        ("bomb-tiff-16384-strips-of-4gb.tif", error!(MemoryLimit { format: Tiff })),
    ]
}

/// Bombs that are valid small images: decoding reads what the image needs and stops, so a
/// 16x16 picture costs what a 16x16 picture costs however much its chunks would inflate to.
#[rustfmt::skip] // a table: one file a line
fn harmless_bomb_files() -> Vec<(&'static str, Expected)> {
    let small = |format| Expected::Image { format, size: (16, 16), checks: &[] };
    vec![
        // 256 MiB of zeros after the last row, in a zTXt chunk, in an ICC profile.
        ("bomb-png-idat-256mib.png", small(Png)),
        ("bomb-png-ztxt-256mib.png", small(Png)),
        ("bomb-png-iccp-256mib.png", small(Png)),
        ("bomb-png-20000-chunks.png", small(Png)),
        // Only the first frame is decoded.
        ("bomb-gif-10000-frames.gif", small(Gif)),
    ]
}

fn check_all(cases: &[(&str, Expected)]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(file, expected)| check(file, expected).err().map(|e| format!("{file}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} files failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn good_files_decode_to_the_pixels_pillow_gives() {
    check_all(&good_files());
}

#[test]
fn bad_files_give_a_precise_error() {
    check_all(&bad_files());
}

#[test]
fn bombs_are_refused_from_the_header_quickly() {
    let started = Instant::now();
    check_all(&bomb_files());
    // Decoding even one of them would allocate gigabytes and take seconds.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn bombs_that_are_valid_small_images_decode_as_small_images_quickly() {
    let started = Instant::now();
    check_all(&harmless_bomb_files());
    // Inflating any of them in full would take seconds.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn every_test_file_has_an_expectation() {
    let mut known: Vec<String> = good_files()
        .into_iter()
        .chain(bad_files())
        .chain(bomb_files())
        .chain(harmless_bomb_files())
        .map(|(f, _)| f.to_string())
        .collect();
    known.push("pillow.tsv".to_string());
    let on_disk = data_dirs()
        .into_iter()
        .flat_map(|dir| std::fs::read_dir(dir).unwrap())
        .map(|e| e.unwrap().file_name().into_string().unwrap());
    let unchecked: Vec<String> = on_disk
        .filter(|name| !name.ends_with(".pillow.png") && !known.contains(name))
        .collect();
    assert!(
        unchecked.is_empty(),
        "files without an expectation: {unchecked:?}"
    );
}

#[test]
fn float_tiff_is_clamped_and_scaled() {
    // The first pixel is stored as (-0.5, 1.5, 0.5); the others are 8-bit values / 255.
    let rgb = decode("good-tiff-f32-rgb.tif");
    assert_eq!(rgb.get_pixel(0, 0).0, [0, 255, 128]);
    let scaled = rgb.pixels().skip(1).all(|p| p.0 != [0, 0, 0]);
    assert!(scaled, "float samples were not scaled to 0..255");
}

#[test]
fn limits_are_checked_in_order_and_inclusive() {
    let png = read("good-png-rgb.png");
    let pixels = u64::from(W * H);
    let limits = |max_input_bytes, max_pixels, max_side| DecodeLimits {
        max_input_bytes,
        max_pixels,
        max_side,
    };

    // Exactly at every limit is accepted.
    assert!(decode_image(&png, &limits(png.len(), pixels, W)).is_ok());
    // The input size is checked before anything else, even the format.
    let too_long = decode_image(b"not an image at all", &limits(4, pixels, W));
    assert!(
        matches!(too_long, Err(DecodeError::InputTooLarge { size: 19, limit: 4 })),
        "{too_long:?}"
    );
    assert!(matches!(
        decode_image(&png, &limits(png.len() - 1, pixels, W)),
        Err(DecodeError::InputTooLarge { .. })
    ));
    // Pixels, then sides, reported with the declared dimensions.
    assert!(matches!(
        decode_image(&png, &limits(png.len(), pixels - 1, W)),
        Err(DecodeError::TooManyPixels {
            format: Png,
            width: W,
            height: H,
            ..
        })
    ));
    assert!(matches!(
        decode_image(&png, &limits(png.len(), pixels, W - 1)),
        Err(DecodeError::SideTooLong {
            format: Png,
            width: W,
            height: H,
            limit: 160
        })
    ));
}

#[test]
fn default_limits_are_the_documented_ones() {
    let limits = DecodeLimits::default();
    assert_eq!(limits.max_input_bytes, 32 << 20);
    assert!(7680 * 4320 <= limits.max_pixels && limits.max_pixels == 8192 * 8192);
    assert_eq!(limits.max_side, 16384);
}

#[test]
fn error_messages_read_well() {
    let cases = [
        (DecodeError::Empty, "image is empty: zero bytes received"),
        (
            DecodeError::InputTooLarge {
                size: 40_000_000,
                limit: 33_554_432,
            },
            "image is 40000000 bytes, more than the limit of 33554432 bytes",
        ),
        (
            DecodeError::TooManyPixels {
                format: Png,
                width: 30000,
                height: 30000,
                limit: 1 << 26,
            },
            "png image is 30000x30000 = 900000000 pixels, more than the limit of 67108864",
        ),
        (
            DecodeError::SideTooLong {
                format: WebP,
                width: 20000,
                height: 1,
                limit: 16384,
            },
            "webp image is 20000x1, a side longer than the limit of 16384 pixels",
        ),
        (
            DecodeError::Truncated { format: Gif },
            "gif image is truncated: the data ends before the image does",
        ),
        (
            DecodeError::UnsupportedFormat { name: "heif" },
            "heif images are not supported: convert to jpeg, png, gif, webp, bmp or tiff",
        ),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
    }
}

#[test]
fn size_refusals_are_limits_and_content_errors_are_not() {
    let limits = [
        DecodeError::InputTooLarge { size: 2, limit: 1 },
        DecodeError::TooManyPixels {
            format: Png,
            width: 2,
            height: 2,
            limit: 1,
        },
        DecodeError::SideTooLong {
            format: Png,
            width: 2,
            height: 1,
            limit: 1,
        },
        DecodeError::MemoryLimit { format: Gif },
    ];
    let content = [
        DecodeError::Empty,
        DecodeError::UnknownFormat,
        DecodeError::UnsupportedFormat { name: "heif" },
        DecodeError::Unsupported {
            format: Tiff,
            reason: String::new(),
        },
        DecodeError::Truncated { format: Png },
        DecodeError::Corrupt {
            format: Png,
            reason: String::new(),
        },
    ];
    assert!(limits.iter().all(DecodeError::is_limit));
    assert!(!content.iter().any(DecodeError::is_limit));
}

/// Limits small enough that a mutated header cannot make a debug-build test decode for long.
fn fuzz_limits() -> DecodeLimits {
    DecodeLimits {
        max_input_bytes: 1 << 20,
        max_pixels: 1 << 20,
        max_side: 4096,
    }
}

/// The good files, read once: proptest runs many cases.
fn good_inputs() -> &'static [Vec<u8>] {
    static INPUTS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    INPUTS.get_or_init(|| good_files().iter().map(|(file, _)| read(file)).collect())
}

proptest! {
    // 256 cases each keep the debug-build run near a second.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(
        magic in prop::sample::select(vec![
            &b""[..], b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\0\0\0\0WEBPVP8 ",
            b"RIFF\0\0\0\0WEBPVP8L", b"RIFF\0\0\0\0WEBPVP8X", b"BM", b"II*\0", b"MM\0*",
        ]),
        body in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let bytes = [magic, &body[..]].concat();
        let _ = decode_image(&bytes, &fuzz_limits());
    }

    #[test]
    fn damaged_good_files_never_panic(
        index in any::<prop::sample::Index>(),
        keep in 0.0..=1.0f64,
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..8),
        // Whole numbers written over the first 64 bytes, where the sizes and offsets are.
        overwrites in prop::collection::vec((0usize..64, any::<u32>()), 0..3),
    ) {
        let original = index.get(good_inputs());
        let mut bytes = original[..(original.len() as f64 * keep) as usize].to_vec();
        for (at, value) in &overwrites {
            if let Some(field) = bytes.get_mut(*at..*at + 4) {
                field.copy_from_slice(&value.to_le_bytes());
            }
        }
        if !bytes.is_empty() {
            for (at, bit) in &flips {
                let i = at.index(bytes.len());
                bytes[i] ^= 1 << bit;
            }
        }
        let _ = decode_image(&bytes, &fuzz_limits());
    }
}
