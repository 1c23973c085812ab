//! Hashing: pure functions from image bytes to hashes, and the hash value types.
//!
//! Nothing here does I/O beyond the bytes handed in. Perceptual hashes (PDQ, pHash, dHash,
//! aHash) are computed from decoded pixels; MD5 and SHA-256 from the raw bytes.

pub mod backdrop;
pub mod decode;
pub mod derive;
pub mod digest;
pub mod imghash;
pub mod pdq;
pub mod region;
pub mod trim;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use self::decode::{DecodeError, DecodeLimits, decode_image};

/// An image-sized buffer a hashing thread keeps for its next image. A fresh buffer per image
/// is an `mmap` of its own (the server caps glibc's mmap threshold so that the index's freed
/// tables go back to the system): page faults and the kernel's zeroing of every page, a fifth
/// of a 1024×768 `CheckImage`'s CPU for the decoded pixels and the blur's floats together.
/// What all threads keep counts against one [`KeepBudget`], so idle threads hold a bounded
/// amount however many of them hash, and however large their last images were.
struct KeptBuffer<T: 'static> {
    buffer: Vec<T>,
    budget: &'static KeepBudget,
}

/// Bytes that [`KeptBuffer`]s may hold together.
struct KeepBudget {
    limit: usize,
    held: std::sync::atomic::AtomicUsize,
}

/// The budget of the decoded pixels and the blur's floats: four hashing threads' worth of
/// 1024×768 images (5.25 MiB each), or one 2048×1536 image.
static KEEP_BUDGET: KeepBudget = KeepBudget::new(24 << 20);

impl KeepBudget {
    const fn new(limit: usize) -> Self {
        KeepBudget {
            limit,
            held: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Takes `bytes` from the budget, if they fit.
    fn reserve(&self, bytes: usize) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.held
            .fetch_update(Relaxed, Relaxed, |held| {
                held.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        self.held.fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

impl<T> KeptBuffer<T> {
    const fn new(budget: &'static KeepBudget) -> Self {
        KeptBuffer {
            buffer: Vec::new(),
            budget,
        }
    }

    fn bytes(buffer: &Vec<T>) -> usize {
        buffer.capacity() * std::mem::size_of::<T>()
    }

    /// The kept buffer (empty if none), its contents as the last image left them.
    fn take(&mut self) -> Vec<T> {
        let buffer = std::mem::take(&mut self.buffer);
        self.budget.release(Self::bytes(&buffer));
        buffer
    }

    /// Keeps `buffer` for the next image if the budget has room for it; frees it otherwise.
    fn keep(&mut self, buffer: Vec<T>) {
        drop(self.take());
        if self.budget.reserve(Self::bytes(&buffer)) {
            self.buffer = buffer;
        }
    }
}

impl<T> Drop for KeptBuffer<T> {
    /// A thread that ends gives its share back.
    fn drop(&mut self) {
        self.budget.release(Self::bytes(&self.buffer));
    }
}

/// Longest hash we keep, in bytes (PDQ and SHA-256 are 256 bits).
pub const MAX_HASH_BYTES: usize = 32;

/// A hash algorithm. The order is the wire order and never changes: stored data uses [`code`].
///
/// [`code`]: Algorithm::code
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Algorithm {
    Pdq,
    PHash,
    DHash,
    AHash,
    Md5,
    Sha256,
}

impl Algorithm {
    pub const ALL: [Algorithm; 6] = [
        Algorithm::Pdq,
        Algorithm::PHash,
        Algorithm::DHash,
        Algorithm::AHash,
        Algorithm::Md5,
        Algorithm::Sha256,
    ];

    /// Length of the hash in bytes.
    pub fn byte_len(self) -> usize {
        match self {
            Algorithm::Pdq | Algorithm::Sha256 => 32,
            Algorithm::Md5 => 16,
            Algorithm::PHash | Algorithm::DHash | Algorithm::AHash => 8,
        }
    }

    /// Length of the hash in bits.
    pub fn bits(self) -> u32 {
        self.byte_len() as u32 * 8
    }

    /// Cryptographic digests match only when equal; perceptual hashes match within a distance.
    pub fn is_exact(self) -> bool {
        matches!(self, Algorithm::Md5 | Algorithm::Sha256)
    }

    /// Whether the hash is computed from decoded pixels rather than the raw bytes.
    pub fn needs_pixels(self) -> bool {
        !self.is_exact()
    }

    /// Lowercase name used by the CLI, CSV files and logs.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Pdq => "pdq",
            Algorithm::PHash => "phash",
            Algorithm::DHash => "dhash",
            Algorithm::AHash => "ahash",
            Algorithm::Md5 => "md5",
            Algorithm::Sha256 => "sha256",
        }
    }

    /// Stable one-byte code used in stored keys.
    pub fn code(self) -> u8 {
        match self {
            Algorithm::Pdq => 1,
            Algorithm::PHash => 2,
            Algorithm::DHash => 3,
            Algorithm::AHash => 4,
            Algorithm::Md5 => 5,
            Algorithm::Sha256 => 6,
        }
    }

    pub fn from_code(code: u8) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.code() == code)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown algorithm {0:?} (expected one of pdq, phash, dhash, ahash, md5, sha256)")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lower = text.trim().to_ascii_lowercase();
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name() == lower)
            .ok_or_else(|| UnknownAlgorithm(text.to_string()))
    }
}

/// Why a hex string is not a hash of the given algorithm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashParseError {
    #[error("{algorithm} hash must be {expected} hex digits, got {got}")]
    WrongLength {
        algorithm: Algorithm,
        expected: usize,
        got: usize,
    },
    #[error("{algorithm} hash has a non-hex character {character:?} at position {position}")]
    NotHex {
        algorithm: Algorithm,
        position: usize,
        character: char,
    },
}

/// A hash of one algorithm, as bytes in the order its hex string prints.
///
/// Fixed-size and `Copy` so that hot paths never allocate for a hash; bytes past the
/// algorithm's length are always zero, which keeps the derived equality and hashing right.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HashValue {
    algorithm: Algorithm,
    bytes: [u8; MAX_HASH_BYTES],
}

impl HashValue {
    /// Wraps `bytes`, which must be exactly the algorithm's length.
    pub fn from_bytes(algorithm: Algorithm, bytes: &[u8]) -> Result<Self, HashParseError> {
        if bytes.len() != algorithm.byte_len() {
            return Err(HashParseError::WrongLength {
                algorithm,
                expected: algorithm.byte_len() * 2,
                got: bytes.len() * 2,
            });
        }
        let mut padded = [0u8; MAX_HASH_BYTES];
        padded[..bytes.len()].copy_from_slice(bytes);
        Ok(HashValue {
            algorithm,
            bytes: padded,
        })
    }

    /// Parses hex (either case, surrounding whitespace ignored).
    pub fn from_hex(algorithm: Algorithm, hex: &str) -> Result<Self, HashParseError> {
        let hex = hex.trim();
        let expected = algorithm.byte_len() * 2;
        let mut bytes = [0u8; MAX_HASH_BYTES];
        // One pass through a table for the common case, a well-formed hash (bulk loads parse
        // millions); a bad one is diagnosed below.
        if hex.len() == expected {
            let mut invalid = 0;
            for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
                let (high, low) = (HEX_VALUES[usize::from(pair[0])], HEX_VALUES[usize::from(pair[1])]);
                invalid |= high | low;
                *byte = (high << 4) | (low & 0x0f);
            }
            if invalid & NOT_HEX == 0 {
                return Ok(HashValue { algorithm, bytes });
            }
        }
        // Bytes, not chars: every byte before the first non-hex one is ASCII, so that one starts
        // a character.
        if let Some(position) = hex.bytes().position(|b| !b.is_ascii_hexdigit()) {
            let character = hex[position..]
                .chars()
                .next()
                .unwrap_or(char::REPLACEMENT_CHARACTER);
            return Err(HashParseError::NotHex {
                algorithm,
                position,
                character,
            });
        }
        Err(HashParseError::WrongLength {
            algorithm,
            expected,
            got: hex.len(),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.algorithm.byte_len()]
    }

    /// Lowercase hex, the form hash-sharing programmes exchange.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(self.algorithm.byte_len() * 2);
        for byte in self.as_bytes() {
            out.push(DIGITS[usize::from(byte >> 4)] as char);
            out.push(DIGITS[usize::from(byte & 0xf)] as char);
        }
        out
    }

    /// Hamming distance in bits, or `None` across algorithms.
    pub fn distance(&self, other: &HashValue) -> Option<u32> {
        (self.algorithm == other.algorithm).then(|| {
            self.bytes
                .iter()
                .zip(other.bytes.iter())
                .map(|(a, b)| (a ^ b).count_ones())
                .sum()
        })
    }
}

/// Serialised as the algorithm and the hash's bytes: how the match log stores a match.
impl Serialize for HashValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.algorithm, self.as_bytes()).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for HashValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (algorithm, bytes) = <(Algorithm, Vec<u8>)>::deserialize(deserializer)?;
        HashValue::from_bytes(algorithm, &bytes).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for HashValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.to_hex())
    }
}

impl fmt::Display for HashValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Value of one ASCII hex digit; callers have checked `is_ascii_hexdigit`.
/// Marks a byte that is not a hex digit in [`HEX_VALUES`].
const NOT_HEX: u8 = 0x80;

/// The value of each byte as a hex digit, or [`NOT_HEX`].
const HEX_VALUES: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut digit = 0;
    while digit < 16 {
        table[b"0123456789abcdef"[digit] as usize] = digit as u8;
        table[b"0123456789ABCDEF"[digit] as usize] = digit as u8;
        digit += 1;
    }
    table
};

/// Which part of an image a query hash was computed from. Stored in the match log by variant
/// index: add variants at the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum View {
    /// The image as uploaded.
    #[default]
    Whole,
    /// The picture inside its margins (borders, bars, caption bands), see [`trim`].
    Trimmed,
    /// The largest picture in a page (a screenshot, with text beside it), see [`region`].
    Picture,
    /// A window of the upload or of a picture found in it that leaves out an edge or a corner,
    /// see [`derive::overlay_windows`].
    Window,
}

/// A query hash transformed by one of PDQ's dihedral symmetries, in the reference's order.
/// Stored in the match log by variant index: the order never changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Transform {
    Original,
    Rotate90,
    Rotate180,
    Rotate270,
    FlipX,
    FlipY,
    FlipPlus1,
    FlipMinus1,
}

impl Transform {
    /// The order of [`pdq::PdqDihedral::hashes`].
    pub const DIHEDRAL_ORDER: [Transform; 8] = [
        Transform::Original,
        Transform::Rotate90,
        Transform::Rotate180,
        Transform::Rotate270,
        Transform::FlipX,
        Transform::FlipY,
        Transform::FlipPlus1,
        Transform::FlipMinus1,
    ];
}

/// A hash computed from submitted bytes, with PDQ's quality score where the algorithm has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ComputedHash {
    pub value: HashValue,
    pub quality: Option<u8>,
}

/// Everything hashed from one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageHashes {
    /// One per requested algorithm, in [`Algorithm::ALL`] order.
    pub hashes: Vec<ComputedHash>,
    /// PDQ's 8 dihedral variants in [`Transform::DIHEDRAL_ORDER`], when asked for.
    pub pdq_dihedral: Option<[HashValue; 8]>,
    /// PDQ of the pictures found inside the image (inside its margins, the largest picture of
    /// a page), when asked for and found, at most one per view and never two of one area;
    /// then, when asked for, of the overlay windows of the image and of those pictures.
    pub pdq_views: Vec<ViewPdq>,
    /// PDQ of each picture derived from the image (see [`DerivedPictures`]), when asked for.
    pub pdq_derived: Vec<ComputedHash>,
    /// Pixel size, when the image was decoded (it is not for MD5/SHA-256 alone).
    pub dimensions: Option<(u32, u32)>,
}

impl ImageHashes {
    pub fn get(&self, algorithm: Algorithm) -> Option<&ComputedHash> {
        self.hashes.iter().find(|h| h.value.algorithm() == algorithm)
    }
}

/// PDQ of a picture found inside an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewPdq {
    pub view: View,
    pub area: trim::ContentBox,
    pub hash: ComputedHash,
    /// Its dihedral variants, when those were asked for.
    pub dihedral: Option<[HashValue; 8]>,
}

/// Which hashes to compute from an image.
#[derive(Clone, Debug, Default)]
pub struct HashOptions {
    pub algorithms: Vec<Algorithm>,
    /// Also compute PDQ's dihedral variants (only when PDQ is among the algorithms).
    pub pdq_dihedral: bool,
    /// Also hash, with PDQ, the pictures inside the image: inside its margins if it has any,
    /// and the largest picture if it is a page (only when PDQ is among the algorithms).
    pub pdq_trimmed: bool,
    /// Also hash, with PDQ, these pictures derived from the image (only when PDQ is among the
    /// algorithms).
    pub pdq_derived: DerivedPictures,
    /// Also hash, with PDQ, the overlay windows of the image and of each picture found inside
    /// it (only when PDQ is among the algorithms).
    pub pdq_windows: bool,
}

/// Pictures derived from an image for a bank to store (see [`derive`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DerivedPictures {
    /// The image's 7 turns and mirrors, exactly.
    pub dihedral: bool,
    /// Its sub-windows: up to a fifth of each side cropped away, centred and in the corners;
    /// one axis alone cut by up to 40%; the centred square.
    pub crops: bool,
    /// It turned by 1° to 10° each way, whole on a black canvas and cut to its inner rectangle.
    pub rotations: bool,
}

/// Hashes an encoded image. Decodes only when a perceptual algorithm is asked for, so an
/// MD5-only check of a huge file costs a digest, not a decode.
pub fn hash_image(
    bytes: &[u8],
    options: &HashOptions,
    limits: &DecodeLimits,
) -> Result<ImageHashes, DecodeError> {
    let mut algorithms = options.algorithms.clone();
    algorithms.sort();
    algorithms.dedup();
    // Checked here, not only in the decoder, because MD5/SHA-256 alone never decode.
    decode::check_input(bytes, limits)?;
    let decoded = if algorithms.iter().any(|a| a.needs_pixels()) {
        Some(decode_image(bytes, limits)?)
    } else {
        None
    };
    let mut hashes = Vec::with_capacity(algorithms.len());
    let mut pdq_dihedral = None;
    let mut pdq_views = Vec::new();
    let mut pdq_derived = Vec::new();
    for algorithm in algorithms {
        let computed = match (&decoded, algorithm) {
            (_, Algorithm::Md5) => digest_hash(algorithm, &digest::md5(bytes)),
            (_, Algorithm::Sha256) => digest_hash(algorithm, &digest::sha256(bytes)),
            (Some(image), Algorithm::Pdq) => {
                let (width, height) = (image.rgb.width() as usize, image.rgb.height() as usize);
                let (computed, dihedral) =
                    pdq_hashes(image.rgb.as_raw(), width, height, options.pdq_dihedral);
                pdq_dihedral = dihedral;
                if options.pdq_trimmed {
                    pdq_views = view_pdq(image.rgb.as_raw(), width, height, options.pdq_dihedral);
                }
                if options.pdq_windows {
                    let windows = window_pdq(image.rgb.as_raw(), width, height, &pdq_views);
                    pdq_views.extend(windows);
                }
                pdq_derived = derived_pdq(image.rgb.as_raw(), width, height, options.pdq_derived);
                computed
            }
            (Some(image), perceptual) => {
                let bytes = imghash::hash64(perceptual, &image.rgb);
                digest_hash(perceptual, &bytes)
            }
            // Unreachable: `decoded` is Some whenever a perceptual algorithm was asked for.
            (None, _) => continue,
        };
        hashes.push(computed);
    }
    let dimensions = decoded
        .as_ref()
        .map(|image| (image.rgb.width(), image.rgb.height()));
    if let Some(image) = decoded {
        decode::recycle(image);
    }
    Ok(ImageHashes {
        hashes,
        pdq_dihedral,
        pdq_views,
        pdq_derived,
        dimensions,
    })
}

/// PDQ of the pictures found inside packed RGB8 pixels: inside the margins (a blurred backdrop
/// made of the picture itself, or else flat ones), and the largest
/// picture of a page where that is another area (one within 2% of the trimmed one on every
/// edge would hash alike, and is not worth a second PDQ).
fn view_pdq(rgb: &[u8], width: usize, height: usize, dihedral: bool) -> Vec<ViewPdq> {
    let trimmed = trimmed_box(rgb, width, height);
    let near = |a: usize, b: usize, extent: usize| a.abs_diff(b) * 50 <= extent;
    let same_as_trimmed = |area: &trim::ContentBox| {
        trimmed.is_some_and(|t| {
            near(t.left, area.left, width)
                && near(t.right, area.right, width)
                && near(t.top, area.top, height)
                && near(t.bottom, area.bottom, height)
        })
    };
    let picture = region::picture_box(rgb, width, height).filter(|area| !same_as_trimmed(area));
    [(View::Trimmed, trimmed), (View::Picture, picture)]
        .into_iter()
        .filter_map(|(view, area)| {
            let area = area?;
            let (hash, dihedral) = area_pdq(rgb, width, area, dihedral);
            Some(ViewPdq {
                view,
                area,
                hash,
                dihedral,
            })
        })
        .collect()
}

/// The picture inside the margins of packed RGB8 pixels: on a blurred backdrop of itself
/// (looked for first, as a backdrop can hold flat stretches that trimming would stop inside),
/// then inside flat margins, within the backdrop's box when there is one (a bordered picture
/// on a backdrop; and flat bars at both ends also read as a backdrop, which leaves the other
/// axis's bars to trimming).
fn trimmed_box(rgb: &[u8], width: usize, height: usize) -> Option<trim::ContentBox> {
    let Some(outer) = backdrop::picture_box(rgb, width, height) else {
        return trim::content_box(rgb, width, height);
    };
    let inside = trim::crop(rgb, width, outer);
    let inner = trim::content_box(&inside, outer.width(), outer.height());
    Some(inner.map_or(outer, |inner| inner.within(outer)))
}

/// PDQ of the overlay windows of packed RGB8 pixels and of each picture `found` in them, with
/// the windows' areas in the whole image's coordinates.
fn window_pdq(rgb: &[u8], width: usize, height: usize, found: &[ViewPdq]) -> Vec<ViewPdq> {
    let whole = trim::ContentBox::whole(width, height);
    let bases = std::iter::once(whole).chain(found.iter().map(|view| view.area));
    bases
        .flat_map(|base| {
            derive::overlay_windows(base.width(), base.height())
                .into_iter()
                .map(move |window| window.within(base))
        })
        .map(|area| ViewPdq {
            view: View::Window,
            area,
            hash: area_pdq(rgb, width, area, false).0,
            dihedral: None,
        })
        .collect()
}

/// PDQ of each picture `wanted` of packed RGB8 pixels.
fn derived_pdq(rgb: &[u8], width: usize, height: usize, wanted: DerivedPictures) -> Vec<ComputedHash> {
    let mut hashes = Vec::new();
    if wanted.dihedral {
        for (pixels, w, h) in derive::dihedral(rgb, width, height) {
            hashes.push(pdq_hashes(&pixels, w, h, false).0);
        }
    }
    if wanted.rotations {
        for (pixels, w, h) in derive::small_rotations(rgb, width, height) {
            hashes.push(pdq_hashes(&pixels, w, h, false).0);
        }
    }
    if wanted.crops {
        for window in derive::crop_windows(width, height) {
            hashes.push(area_pdq(rgb, width, window, false).0);
        }
    }
    hashes
}

/// PDQ of the `area` of packed RGB8 pixels `width` wide, and its dihedral variants when asked
/// for.
fn area_pdq(
    rgb: &[u8],
    width: usize,
    area: trim::ContentBox,
    dihedral: bool,
) -> (ComputedHash, Option<[HashValue; 8]>) {
    let pixels = trim::crop(rgb, width, area);
    pdq_hashes(&pixels, area.width(), area.height(), dihedral)
}

/// PDQ of packed RGB8 pixels, and its dihedral variants when asked for.
fn pdq_hashes(
    rgb: &[u8],
    width: usize,
    height: usize,
    dihedral: bool,
) -> (ComputedHash, Option<[HashValue; 8]>) {
    let (hash, quality, variants) = if dihedral {
        let output = pdq::pdq_dihedral_from_rgb8(rgb, width, height);
        (
            output.hashes[0],
            output.quality,
            Some(output.hashes.map(|bits| pdq_value(&bits))),
        )
    } else {
        let output = pdq::pdq_from_rgb8(rgb, width, height);
        (output.hash, output.quality, None)
    };
    let computed = ComputedHash {
        value: pdq_value(&hash),
        quality: Some(quality),
    };
    (computed, variants)
}

fn pdq_value(bits: &pdq::PdqBits) -> HashValue {
    let mut bytes = [0u8; MAX_HASH_BYTES];
    bytes.copy_from_slice(&bits.0);
    HashValue {
        algorithm: Algorithm::Pdq,
        bytes,
    }
}

/// Wraps bytes produced by our own hashers, whose length always fits the algorithm.
fn digest_hash(algorithm: Algorithm, bytes: &[u8]) -> ComputedHash {
    let mut padded = [0u8; MAX_HASH_BYTES];
    let len = bytes.len().min(MAX_HASH_BYTES);
    padded[..len].copy_from_slice(&bytes[..len]);
    debug_assert_eq!(len, algorithm.byte_len());
    ComputedHash {
        value: HashValue {
            algorithm,
            bytes: padded,
        },
        quality: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kept buffers hold no more than their budget together, and give their share back when
    /// taken or when their thread ends.
    #[test]
    fn kept_buffers_stay_within_their_shared_budget() {
        static BUDGET: KeepBudget = KeepBudget::new(1000);
        let held = || BUDGET.held.load(std::sync::atomic::Ordering::Relaxed);
        let mut first = KeptBuffer::new(&BUDGET);
        first.keep(vec![0u8; 600]);
        assert_eq!(held(), 600);
        let mut second = KeptBuffer::new(&BUDGET);
        second.keep(vec![0u8; 600]);
        assert_eq!(
            (held(), second.take().capacity()),
            (600, 0),
            "over the budget: freed"
        );
        second.keep(vec![0u8; 400]);
        assert_eq!(held(), 1000);
        let taken = first.take();
        assert_eq!((taken.len(), held()), (600, 400));
        first.keep(taken);
        assert_eq!(held(), 1000);
        drop(first);
        std::thread::spawn(|| {
            let mut other = KeptBuffer::new(&BUDGET);
            other.keep(vec![1u8; 500]);
            assert_eq!(BUDGET.held.load(std::sync::atomic::Ordering::Relaxed), 900);
        })
        .join()
        .unwrap();
        drop(second);
        assert_eq!(held(), 0);
    }

    /// A bordered picture reads as a backdrop above and below (flat bars are smooth); trimming
    /// inside that box takes the side borders off too. And a picture on a blurred backdrop of
    /// itself is found where trimming alone finds nothing.
    #[test]
    fn trimmed_box_finds_borders_all_round_and_blurred_backdrops() {
        let photo = backdrop::bridge();
        let (w, h) = photo.dimensions();
        let mut bordered = image::RgbImage::from_pixel(w + 100, h + 100, image::Rgb([0, 0, 0]));
        image::imageops::replace(&mut bordered, &photo, 50, 50);
        let found = trimmed_box(bordered.as_raw(), w as usize + 100, h as usize + 100);
        let expected = trim::ContentBox {
            left: 50,
            top: 50,
            right: w as usize + 50,
            bottom: h as usize + 50,
        };
        assert_eq!(found, Some(expected));
        assert!(backdrop::picture_box(bordered.as_raw(), w as usize + 100, h as usize + 100).is_some());

        let (framed, top) = backdrop::on_blurred_backdrop(&photo);
        let (fw, fh) = (framed.width() as usize, framed.height() as usize);
        assert_eq!(trim::content_box(framed.as_raw(), fw, fh), None);
        let expected = trim::ContentBox {
            left: 0,
            top: top as usize,
            right: w as usize,
            bottom: (top + h) as usize,
        };
        assert_eq!(trimmed_box(framed.as_raw(), fw, fh), Some(expected));
    }

    #[test]
    fn hex_round_trips_and_accepts_upper_case() {
        let hex = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";
        let value = HashValue::from_hex(Algorithm::Pdq, &hex.to_uppercase()).unwrap();
        assert_eq!(value.to_hex(), hex);
        assert_eq!(value.as_bytes().len(), 32);
    }

    #[test]
    fn hex_errors_name_the_problem() {
        assert_eq!(
            HashValue::from_hex(Algorithm::PHash, "abc"),
            Err(HashParseError::WrongLength {
                algorithm: Algorithm::PHash,
                expected: 16,
                got: 3
            })
        );
        assert_eq!(
            HashValue::from_hex(Algorithm::PHash, "00000000000000zz"),
            Err(HashParseError::NotHex {
                algorithm: Algorithm::PHash,
                position: 14,
                character: 'z'
            })
        );
        assert!(HashValue::from_hex(Algorithm::Md5, "é").is_err());
    }

    #[test]
    fn distance_counts_differing_bits_within_one_algorithm() {
        let a = HashValue::from_hex(Algorithm::DHash, "0000000000000000").unwrap();
        let b = HashValue::from_hex(Algorithm::DHash, "000000000000010f").unwrap();
        let c = HashValue::from_hex(Algorithm::AHash, "000000000000010f").unwrap();
        assert_eq!(a.distance(&b), Some(5));
        assert_eq!(b.distance(&c), None);
        assert_ne!(b, c);
    }

    #[test]
    fn empty_input_is_refused_even_for_digests_alone() {
        let options = HashOptions {
            algorithms: vec![Algorithm::Md5],
            ..HashOptions::default()
        };
        let result = hash_image(&[], &options, &DecodeLimits::default());
        assert!(matches!(result, Err(DecodeError::Empty)));
        assert!(hash_image(b"x", &options, &DecodeLimits::default()).is_ok());
    }

    #[test]
    fn algorithm_names_and_codes_round_trip() {
        for algorithm in Algorithm::ALL {
            assert_eq!(algorithm.name().parse::<Algorithm>(), Ok(algorithm));
            assert_eq!(Algorithm::from_code(algorithm.code()), Some(algorithm));
        }
        assert!("PDQ".parse::<Algorithm>().is_ok());
        assert!("pdqf".parse::<Algorithm>().is_err());
    }
}
