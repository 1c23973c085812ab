//! PDQ, Meta's 256-bit perceptual image hash, bit for bit as the field computes it.
//!
//! Hash-sharing tools (python-threatexchange, HMA) hash photos by feeding full-resolution pixels
//! through the `pdqhash` Python bindings of Meta's C++ reference (`facebook/ThreatExchange`,
//! `pdq/cpp`). A hash that differs from theirs by even a bit silently weakens matches against
//! shared lists, so every floating-point step below reproduces the reference's precision and
//! operation order exactly; "simplifying" any of them (fused multiply-adds, reassociated sums,
//! a reciprocal instead of a division, float64 instead of float32) changes hashes.
//!
//! Pipeline: luminance → two passes of a row/column box filter (a tent-like blur) → decimation
//! to 64×64 → quality from the 64×64 gradients → 16×16 DCT (coefficients 1..16) → one bit per
//! coefficient above the median.
//!
//! Images under 5 px on a side give the all-zero hash with quality 0, as in the reference. A pixel
//! slice whose length does not match the stated dimensions (a caller bug; an `RgbImage` cannot
//! produce one) gives the same all-zero hash with quality 0 rather than a panic: quality 0 is
//! below the field's cut-off of 50, so such a hash is discarded like any unusable one.

use std::fmt;
use std::sync::OnceLock;

/// Side of the downsampled luminance block.
pub const PDQ_DOWNSAMPLED_SIDE: usize = 64;

/// Side of the DCT block that the hash bits come from (coefficients 1..=16, DC dropped).
const DCT_SIDE: usize = 16;

/// The reference returns the all-zero hash with quality 0 below this many pixels on a side.
const MIN_HASHABLE_SIDE: usize = 5;

/// Number of (row pass, column pass) pairs of the box filter, as the reference runs it.
const BOX_FILTER_PASSES: usize = 2;

/// Rows blurred together in the row pass so that several independent running sums are in
/// flight at once (a single running sum is a serial dependency chain). 64 rows fill the
/// compiler's vectorised loop (8 lanes, unrolled 4 times, with AVX2); with 8 rows every sum
/// and division ran in the scalar remainder, and the divisions were a fifth of the hash.
const ROW_STRIP: usize = 64;

/// 256-bit PDQ hash, 32 bytes in the order the hex string prints (byte 0 = first two hex
/// digits, i.e. bits 255..248).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PdqBits(pub [u8; 32]);

impl PdqBits {
    /// The hash of an image too small to hash.
    pub const ZERO: PdqBits = PdqBits([0; 32]);

    /// 64 lowercase hex digits, the form in which hashes are shared.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(64);
        for byte in self.0 {
            hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
            hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        hex
    }

    /// Parses 64 hex digits (either case); `None` for any other input.
    pub fn from_hex(hex: &str) -> Option<PdqBits> {
        let digits = hex.as_bytes();
        if digits.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            // Both digits are below 16, so the value fits in a byte.
            *byte = (high * 16 + low) as u8;
        }
        Some(PdqBits(bytes))
    }

    /// Number of differing bits; 31 or fewer is the industry's match threshold.
    pub fn hamming_distance(&self, other: &PdqBits) -> u32 {
        self.0
            .iter()
            .zip(other.0.iter())
            .map(|(a, b)| (a ^ b).count_ones())
            .sum()
    }

    /// Bit `k` of the 256-bit big-endian integer the hex string spells; the reference sets
    /// bit `16·i + j` for DCT coefficient `(i, j)`.
    fn set_bit(&mut self, k: usize) {
        if let Some(byte) = self.0.get_mut(31 - (k / 8) % 32) {
            *byte |= 1 << (k % 8);
        }
    }

    /// One bit per coefficient: set when strictly above the median, as the reference does.
    fn from_dct(dct: &Dct16) -> PdqBits {
        let median = torben_median(dct);
        let mut bits = PdqBits::ZERO;
        for (k, &value) in dct.iter().flatten().enumerate() {
            if value > median {
                bits.set_bit(k);
            }
        }
        bits
    }
}

impl fmt::Display for PdqBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A hash and its quality, 0..=100 (the field discards hashes of quality below 50).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PdqOutput {
    pub hash: PdqBits,
    pub quality: u8,
}

impl PdqOutput {
    /// What an image too small to hash (or a mismatched pixel slice) gives.
    pub const UNUSABLE: PdqOutput = PdqOutput {
        hash: PdqBits::ZERO,
        quality: 0,
    };
}

/// The 8 dihedral variants in reference order: original, rot90, rot180, rot270, flipx, flipy,
/// flip_plus1, flip_minus1.
///
/// Each predicts (usually exactly, at worst within a few bits) the hash of the image turned that
/// way: rot90 is a quarter turn counterclockwise, like Pillow's `rotate(90)`; flipx turns it
/// upside down, flipy mirrors it left to right; flip_plus1 transposes it about the main
/// diagonal and flip_minus1 about the anti-diagonal.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PdqDihedral {
    pub hashes: [PdqBits; 8],
    pub quality: u8,
}

/// Hash of packed 8-bit RGB pixels (len == width*height*3), the field's pipeline at full
/// resolution.
pub fn pdq_from_rgb8(rgb: &[u8], width: usize, height: usize) -> PdqOutput {
    if !is_hashable(rgb.len(), width, height, 3) {
        return PdqOutput::UNUSABLE;
    }
    let (dct, quality) = dct_and_quality(RowSource::Rgb8(rgb), width, height, Filter::SkipAt64);
    PdqOutput {
        hash: PdqBits::from_dct(&dct),
        quality,
    }
}

/// Same, plus the 8 dihedral variants, computed from the one DCT without re-hashing.
///
/// The reference's dihedral entry point always blurs, even a 64×64 input that the plain entry
/// point copies unblurred, so on exactly 64×64 images `hashes[0]` and the quality may differ
/// slightly from [`pdq_from_rgb8`]; on every other size they are equal.
pub fn pdq_dihedral_from_rgb8(rgb: &[u8], width: usize, height: usize) -> PdqDihedral {
    if !is_hashable(rgb.len(), width, height, 3) {
        return PdqDihedral {
            hashes: [PdqBits::ZERO; 8],
            quality: 0,
        };
    }
    let (dct, quality) = dct_and_quality(RowSource::Rgb8(rgb), width, height, Filter::Always);
    PdqDihedral {
        hashes: dihedral_hashes(&dct),
        quality,
    }
}

/// Hash of 8-bit greyscale pixels (len == width*height); equal to [`pdq_from_rgb8`] of the same
/// grey stacked to 3 channels, because the field's luma of `(v, v, v)` rounds to exactly `v`.
pub fn pdq_from_luma8(luma: &[u8], width: usize, height: usize) -> PdqOutput {
    if !is_hashable(luma.len(), width, height, 1) {
        return PdqOutput::UNUSABLE;
    }
    let (dct, quality) = dct_and_quality(RowSource::Luma8(luma), width, height, Filter::SkipAt64);
    PdqOutput {
        hash: PdqBits::from_dct(&dct),
        quality,
    }
}

type Block64 = [[f32; PDQ_DOWNSAMPLED_SIDE]; PDQ_DOWNSAMPLED_SIDE];
type Dct16 = [[f32; DCT_SIDE]; DCT_SIDE];

/// Whether a 64×64 input skips the blur: the reference's plain hash does, its dihedral hash
/// does not, and the blur with window 1 is not an exact identity in float32.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Filter {
    SkipAt64,
    Always,
}

/// Whether the pixels can be hashed: the slice length matches the dimensions (checked without
/// overflow) and neither side is under the reference's minimum of 5.
fn is_hashable(len: usize, width: usize, height: usize, channels: usize) -> bool {
    let expected = width
        .checked_mul(height)
        .and_then(|pixels| pixels.checked_mul(channels));
    expected == Some(len) && width >= MIN_HASHABLE_SIDE && height >= MIN_HASHABLE_SIDE
}

/// Luminance as the field computes it. The reference C++ would use float32 coefficients, but
/// the `pdqhash` bindings that hash-sharing tools call compute `R·0.299 + G·0.587 + B·0.114` in
/// numpy float64 (left to right) and round the result to float32 before calling the C++; the
/// float32 route gives different hashes on some images.
#[inline(always)]
fn luma_of(r: u8, g: u8, b: u8) -> f32 {
    (f64::from(r) * 0.299 + f64::from(g) * 0.587 + f64::from(b) * 0.114) as f32
}

/// The pixels, read a row of luma at a time: the first row pass converts pixels as it goes
/// instead of storing a separate luma image first.
#[derive(Clone, Copy)]
enum RowSource<'a> {
    Rgb8(&'a [u8]),
    Luma8(&'a [u8]),
}

impl RowSource<'_> {
    /// Writes luma row `row` into `out` (`width` samples); rows past the end are left as is.
    #[inline(always)]
    fn fill_row(self, row: usize, width: usize, out: &mut [f32]) {
        match self {
            RowSource::Rgb8(rgb) => {
                let start = row * width * 3;
                if let Some(pixels) = rgb.get(start..start + width * 3) {
                    for (y, p) in out.iter_mut().zip(pixels.chunks_exact(3)) {
                        *y = luma_of(p[0], p[1], p[2]);
                    }
                }
            }
            RowSource::Luma8(grey) => {
                let start = row * width;
                if let Some(pixels) = grey.get(start..start + width) {
                    for (y, &v) in out.iter_mut().zip(pixels) {
                        *y = f32::from(v);
                    }
                }
            }
        }
    }
}

/// Blur and decimate (unless skipped), then the quality metric and the 16×16 DCT.
fn dct_and_quality(source: RowSource<'_>, width: usize, height: usize, filter: Filter) -> (Dct16, u8) {
    let block =
        if filter == Filter::SkipAt64 && width == PDQ_DOWNSAMPLED_SIDE && height == PDQ_DOWNSAMPLED_SIDE {
            block_from_64x64(source)
        } else {
            blur_and_decimate(source, width, height)
        };
    let quality = quality_metric(&block);
    (dct_64_to_16(&block), quality)
}

fn block_from_64x64(source: RowSource<'_>) -> Block64 {
    let mut block = [[0.0f32; PDQ_DOWNSAMPLED_SIDE]; PDQ_DOWNSAMPLED_SIDE];
    for (i, out_row) in block.iter_mut().enumerate() {
        source.fill_row(i, PDQ_DOWNSAMPLED_SIDE, out_row);
    }
    block
}

/// The reference's "Jarosz" filter: box filters along rows then columns, twice, with window
/// `ceil(len / 128)` per axis, then point sampling at the centres of a 64×64 grid.
///
/// The reference filters between two full-size buffers; here every pass runs in place on one
/// full-size buffer, keeping only the last `window + 1` input lines in a ring (see
/// [`box_filter_in_place`]), which halves the memory and the page faults of a large image
/// without changing any arithmetic.
fn blur_and_decimate(source: RowSource<'_>, width: usize, height: usize) -> Block64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, as just checked.
        return unsafe { blur_and_decimate_avx2(source, width, height) };
    }
    blur_and_decimate_portable(source, width, height)
}

/// [`blur_and_decimate`] compiled for AVX2: the box filters' lanes (and their divisions, most
/// of the blur's time) run eight at a time instead of four. The same IEEE operations in the
/// same order, so the same bits: no fused multiply-add is enabled, and Rust never contracts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn blur_and_decimate_avx2(source: RowSource<'_>, width: usize, height: usize) -> Block64 {
    blur_and_decimate_portable(source, width, height)
}

#[inline(always)]
fn blur_and_decimate_portable(source: RowSource<'_>, width: usize, height: usize) -> Block64 {
    let row_window = box_window(width);
    let column_window = box_window(height);
    let mut image = BLUR_IMAGE.with_borrow_mut(super::KeptBuffer::take);
    // Every sample is written by the first row pass before it is read: stale values from an
    // earlier image never reach the result, so the buffer needs no clearing.
    image.resize(width * height, 0.0);
    let mut scratch = BlurScratch::new(width, row_window, column_window);
    // The last passes feed only the 64 sampled columns. The last row pass still runs every
    // running sum along the whole row (its rounding is part of the result) but divides and
    // stores only at those columns; the last column pass filters just them. Each line is an
    // independent running sum, so the result is the same to the bit.
    let columns: Vec<usize> = (0..PDQ_DOWNSAMPLED_SIDE)
        .map(|j| sample_index(j, width))
        .collect();
    let mut sampled = vec![0.0f32; height * PDQ_DOWNSAMPLED_SIDE];
    for pass in 0..BOX_FILTER_PASSES {
        let row_source = (pass == 0).then_some(source);
        if pass + 1 < BOX_FILTER_PASSES {
            box_along_rows(row_source, &mut image, width, row_window, &mut scratch, None);
            box_filter_in_place(
                &mut image,
                width,
                column_window,
                &mut scratch.sums,
                &mut scratch.column_ring,
                &mut Averages::InPlace,
            );
        } else {
            let kept = Some((columns.as_slice(), sampled.as_mut_slice()));
            box_along_rows(row_source, &mut image, width, row_window, &mut scratch, kept);
            box_filter_in_place(
                &mut sampled,
                PDQ_DOWNSAMPLED_SIDE,
                column_window,
                &mut scratch.sums,
                &mut scratch.column_ring,
                &mut Averages::InPlace,
            );
        }
    }
    BLUR_IMAGE.with_borrow_mut(|kept| kept.keep(image));
    decimate(&sampled, height)
}

thread_local! {
    /// The blur's full-size buffer, kept by each hashing thread for the next image (and the
    /// next window of this one, where a check hashes several).
    static BLUR_IMAGE: std::cell::RefCell<super::KeptBuffer<f32>> =
        const { std::cell::RefCell::new(super::KeptBuffer::new(&super::KEEP_BUDGET)) };
}

/// Everything the blur needs besides the image, allocated once per hash.
struct BlurScratch {
    /// [`ROW_STRIP`] rows interleaved: sample `x` of strip row `r` at `x * ROW_STRIP + r`.
    strip: Vec<f32>,
    strip_ring: Vec<f32>,
    column_ring: Vec<f32>,
    sums: Vec<f32>,
}

impl BlurScratch {
    fn new(width: usize, row_window: usize, column_window: usize) -> BlurScratch {
        BlurScratch {
            strip: vec![0.0; width * ROW_STRIP],
            strip_ring: vec![0.0; (row_window + 1) * ROW_STRIP],
            // Column passes run over `width` lanes, and the last over the 64 sampled columns.
            column_ring: vec![0.0; (column_window + 1) * width.max(PDQ_DOWNSAMPLED_SIDE)],
            sums: vec![0.0; width.max(ROW_STRIP).max(PDQ_DOWNSAMPLED_SIDE)],
        }
    }
}

/// Window of each 1-D box pass: half of the `len / 64` pixels per output cell, rounded up,
/// because two passes compound to the full cell.
fn box_window(len: usize) -> usize {
    len.div_ceil(2 * PDQ_DOWNSAMPLED_SIDE)
}

/// Running-sum box filter, in place, over `lanes` independent lines at once. `data` holds the
/// lines interleaved: element `t` of lane `l` is at `t * lanes + l`. `ring` keeps the last
/// `window + 1` input steps, since an output overwrites its step before the step leaves the
/// window.
///
/// For each lane this is exactly the reference's `box1DFloat`: a float32 running sum that adds
/// the incoming sample and then subtracts the outgoing one, divided by the number of samples
/// actually in the window, which shrinks at both ends. The sum is never recomputed from
/// scratch, so its accumulated rounding is part of the hash (even window 1 is not an exact
/// identity: `(a + b) - a` need not be `b`).
#[inline(always)]
fn box_filter_in_place(
    data: &mut [f32],
    lanes: usize,
    window: usize,
    sums: &mut [f32],
    ring: &mut [f32],
    averages: &mut Averages<'_>,
) {
    if lanes == 0 {
        return;
    }
    let len = data.len() / lanes;
    let ring_steps = window + 1;
    let (Some(sums), Some(ring)) = (sums.get_mut(..lanes), ring.get_mut(..ring_steps * lanes)) else {
        debug_assert!(false, "box filter scratch too small");
        return;
    };
    if window == 0 || window > len {
        debug_assert!(false, "box window {window} outside 1..={len}");
        return;
    }
    // Samples summed before the first output: for window 7 the first output already covers
    // samples 0..=3, for window 8 samples 0..=4.
    let lead = (window + 2) / 2 - 1;
    sums.fill(0.0);
    let mut count = 0usize;

    for t in 0..len {
        let slot = t % ring_steps;
        step_mut(ring, slot, lanes).copy_from_slice(step(data, t, lanes));
        let incoming = step(ring, slot, lanes);
        if t < window {
            // The window grows: the reference's phases 1 (no output yet) and 2.
            count += 1;
            for (sum, &x) in sums.iter_mut().zip(incoming) {
                *sum += x;
            }
            if t >= lead {
                averages.write(data, lanes, t - lead, sums, count);
            }
        } else {
            // Full window: add the incoming sample, then subtract the outgoing one.
            let outgoing = step(ring, (t - window) % ring_steps, lanes);
            if let Averages::InPlace = averages {
                let divisor = count as f32;
                let out = step_mut(data, t - lead, lanes);
                for (((sum, &x), &old), y) in sums.iter_mut().zip(incoming).zip(outgoing).zip(out) {
                    *sum += x;
                    *sum -= old;
                    *y = *sum / divisor;
                }
            } else {
                for ((sum, &x), &old) in sums.iter_mut().zip(incoming).zip(outgoing) {
                    *sum += x;
                    *sum -= old;
                }
                averages.write(data, lanes, t - lead, sums, count);
            }
        }
    }
    // The window shrinks at the far edge.
    for t in len - window..len - window + lead {
        count -= 1;
        for (sum, &old) in sums.iter_mut().zip(step(ring, t % ring_steps, lanes)) {
            *sum -= old;
        }
        averages.write(data, lanes, t + window - lead, sums, count);
    }
}

/// Where a box filter's averages go.
enum Averages<'a> {
    /// Over the input, at every step.
    InPlace,
    /// Only at `steps` (ascending, repeats allowed): the `j`-th kept step of lane `l` goes to
    /// `out[l * steps.len() + j]`, and lanes past the end of `out` are dropped. The input is
    /// left as it was.
    At {
        steps: &'a [usize],
        out: &'a mut [f32],
        next: usize,
    },
}

impl Averages<'_> {
    /// Stores the averages `sums / count` of output step `t`, where they are wanted.
    #[inline(always)]
    fn write(&mut self, data: &mut [f32], lanes: usize, t: usize, sums: &[f32], count: usize) {
        match self {
            Averages::InPlace => write_average(sums, count, step_mut(data, t, lanes)),
            Averages::At { steps, out, next } => {
                let divisor = count as f32;
                while steps.get(*next) == Some(&t) {
                    for (lane, &sum) in sums.iter().enumerate() {
                        if let Some(y) = out.get_mut(lane * steps.len() + *next) {
                            *y = sum / divisor;
                        }
                    }
                    *next += 1;
                }
            }
        }
    }
}

#[inline(always)]
fn write_average(sums: &[f32], count: usize, out: &mut [f32]) {
    let divisor = count as f32;
    for (y, &sum) in out.iter_mut().zip(sums) {
        *y = sum / divisor;
    }
}

/// Step `t` of interleaved lines; empty (so loops over it do nothing) if out of range, which
/// the callers' index arithmetic rules out.
#[inline(always)]
fn step(data: &[f32], t: usize, lanes: usize) -> &[f32] {
    data.get(t * lanes..(t + 1) * lanes).unwrap_or(&[])
}

#[inline(always)]
fn step_mut(data: &mut [f32], t: usize, lanes: usize) -> &mut [f32] {
    data.get_mut(t * lanes..(t + 1) * lanes).unwrap_or(&mut [])
}

/// Box filter along each row, [`ROW_STRIP`] rows at a time: the strip is interleaved so that
/// [`box_filter_in_place`] advances one independent running sum per row in lockstep (as many
/// lanes as vector registers take, so the divisions run vectorised too), then copied back,
/// or, given `sampled` (ascending columns and an output of `columns.len()` values per row),
/// only those columns are kept, there. The first pass converts its rows from the pixels into
/// the image first. A short last strip leaves its unused lanes holding stale (finite) values
/// whose results are never stored.
#[inline(always)]
fn box_along_rows(
    source: Option<RowSource<'_>>,
    image: &mut [f32],
    width: usize,
    window: usize,
    scratch: &mut BlurScratch,
    mut sampled: Option<(&[usize], &mut [f32])>,
) {
    if width == 0 {
        return;
    }
    for (strip_index, rows) in image.chunks_mut(width * ROW_STRIP).enumerate() {
        if let Some(source) = source {
            for (lane, row) in rows.chunks_exact_mut(width).enumerate() {
                source.fill_row(strip_index * ROW_STRIP + lane, width, row);
            }
        }
        interleave(rows, width, &mut scratch.strip);
        let mut averages = match sampled.as_mut() {
            None => Averages::InPlace,
            Some((columns, out)) => Averages::At {
                steps: columns,
                out: out
                    .get_mut(strip_index * ROW_STRIP * columns.len()..)
                    .unwrap_or(&mut []),
                next: 0,
            },
        };
        box_filter_in_place(
            &mut scratch.strip,
            ROW_STRIP,
            window,
            &mut scratch.sums,
            &mut scratch.strip_ring,
            &mut averages,
        );
        if sampled.is_none() {
            deinterleave(&scratch.strip, width, rows);
        }
    }
}

/// Samples moved at a time along each row between the rows and the interleaved strip: the
/// strip's lines one tile touches (`TILE × ROW_STRIP` samples, 4 KiB) stay in L1 while every
/// row's part passes, where a whole row at a time would sweep the strip through L2 per row.
const TILE: usize = 16;

/// Copies `rows` (of `width` samples each) into `strip`, sample `x` of row `r` at
/// `x * ROW_STRIP + r`.
#[inline(always)]
fn interleave(rows: &[f32], width: usize, strip: &mut [f32]) {
    let (slots, _) = strip.as_chunks_mut::<ROW_STRIP>();
    for (tile, x0) in slots.chunks_mut(TILE).zip((0..width).step_by(TILE)) {
        for (lane, row) in rows.chunks_exact(width).take(ROW_STRIP).enumerate() {
            for (slot, &v) in tile.iter_mut().zip(row.get(x0..).unwrap_or(&[])) {
                if let Some(sample) = slot.get_mut(lane) {
                    *sample = v;
                }
            }
        }
    }
}

/// The inverse of [`interleave`].
#[inline(always)]
fn deinterleave(strip: &[f32], width: usize, rows: &mut [f32]) {
    let (slots, _) = strip.as_chunks::<ROW_STRIP>();
    for (tile, x0) in slots.chunks(TILE).zip((0..width).step_by(TILE)) {
        for (lane, row) in rows.chunks_exact_mut(width).take(ROW_STRIP).enumerate() {
            for (slot, y) in tile.iter().zip(row.get_mut(x0..).unwrap_or(&mut [])) {
                if let Some(&sample) = slot.get(lane) {
                    *y = sample;
                }
            }
        }
    }
}

/// The centre of output cell `out` of 64 along an axis of `len` pixels, computed in float64
/// and truncated as the reference does.
fn sample_index(out: usize, len: usize) -> usize {
    let index = ((out as f64 + 0.5) * len as f64 / PDQ_DOWNSAMPLED_SIDE as f64) as usize;
    // Cannot trigger: 63.5·len/64 < len exactly in float64 for any realistic len.
    index.min(len.saturating_sub(1))
}

/// Samples the blurred, already column-sampled image (64 interleaved columns of `height`) at
/// the rows of the 64×64 grid.
fn decimate(columns: &[f32], height: usize) -> Block64 {
    let mut block = [[0.0f32; PDQ_DOWNSAMPLED_SIDE]; PDQ_DOWNSAMPLED_SIDE];
    for (i, out_row) in block.iter_mut().enumerate() {
        let start = sample_index(i, height) * PDQ_DOWNSAMPLED_SIDE;
        if let Some(row) = columns.get(start..start + PDQ_DOWNSAMPLED_SIDE) {
            out_row.copy_from_slice(row);
        }
    }
    block
}

fn quality_metric(block: &Block64) -> u8 {
    let step = |u: f32, v: f32| -> i64 { i64::from((((u - v) * 100.0) / 255.0) as i32).abs() };
    let mut gradient_sum: i64 = 0;
    for pair in block.windows(2) {
        for (&u, &v) in pair[0].iter().zip(pair[1].iter()) {
            gradient_sum += step(u, v);
        }
    }
    for row in block {
        for pair in row.windows(2) {
            gradient_sum += step(pair[0], pair[1]);
        }
    }
    // Bounded by 100 just above, so the narrowing cannot truncate.
    (gradient_sum / 90).min(100) as u8
}

/// DCT-II rows 1..=16 of a 64-point transform (the DC row dropped), in float32 as the reference
/// stores them, and the same matrix transposed for the second product.
struct DctMatrix {
    rows: [[f32; PDQ_DOWNSAMPLED_SIDE]; DCT_SIDE],
    transposed: [[f32; DCT_SIDE]; PDQ_DOWNSAMPLED_SIDE],
}

/// The reference computes each entry as float32 `sqrt(2/64)` times a float64 cosine, rounding
/// the float64 product to float32; computing it once per process keeps that exact recipe.
fn dct_matrix() -> &'static DctMatrix {
    static MATRIX: OnceLock<DctMatrix> = OnceLock::new();
    MATRIX.get_or_init(|| {
        let n = PDQ_DOWNSAMPLED_SIDE as f64;
        let scale = (2.0 / n).sqrt() as f32;
        let mut rows = [[0.0f32; PDQ_DOWNSAMPLED_SIDE]; DCT_SIDE];
        let mut transposed = [[0.0f32; DCT_SIDE]; PDQ_DOWNSAMPLED_SIDE];
        for (i, row) in rows.iter_mut().enumerate() {
            for (j, entry) in row.iter_mut().enumerate() {
                let angle = (std::f64::consts::PI / 2.0 / n) * (i + 1) as f64 * (2 * j + 1) as f64;
                *entry = (f64::from(scale) * angle.cos()) as f32;
                transposed[j][i] = *entry;
            }
        }
        DctMatrix { rows, transposed }
    })
}

/// `B = D·A·Dᵀ` in float32 with each dot product summed in ascending `k` from 0.0, the
/// reference's order; the loops are arranged so that independent sums sit in the inner loop
/// (vectorisable) without changing any single sum's order.
fn dct_64_to_16(block: &Block64) -> Dct16 {
    let matrix = dct_matrix();
    let mut partial = [[0.0f32; PDQ_DOWNSAMPLED_SIDE]; DCT_SIDE];
    for (t_row, d_row) in partial.iter_mut().zip(matrix.rows.iter()) {
        for (&d, a_row) in d_row.iter().zip(block.iter()) {
            for (t, &a) in t_row.iter_mut().zip(a_row.iter()) {
                *t += d * a;
            }
        }
    }
    let mut dct = [[0.0f32; DCT_SIDE]; DCT_SIDE];
    for (b_row, t_row) in dct.iter_mut().zip(partial.iter()) {
        for (&t, dt_row) in t_row.iter().zip(matrix.transposed.iter()) {
            for (b, &d) in b_row.iter_mut().zip(dt_row.iter()) {
                *b += t * d;
            }
        }
    }
    dct
}

/// Torben Mogensen's median as the reference implements it: for 256 values it returns the
/// 128th smallest (the lower median), found by bisecting on value without sorting.
fn torben_median(dct: &Dct16) -> f32 {
    let values = dct.as_flattened();
    let half = values.len().div_ceil(2);
    let Some(&first) = values.first() else {
        return 0.0;
    };
    let (mut min, mut max) = (first, first);
    for &v in values {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    loop {
        let guess = (min + max) / 2.0;
        let (mut less, mut greater, mut equal) = (0usize, 0usize, 0usize);
        let (mut max_below, mut min_above) = (min, max);
        for &v in values {
            if v < guess {
                less += 1;
                if v > max_below {
                    max_below = v;
                }
            } else if v > guess {
                greater += 1;
                if v < min_above {
                    min_above = v;
                }
            } else {
                equal += 1;
            }
        }
        if less <= half && greater <= half {
            return if less >= half {
                max_below
            } else if less + equal >= half {
                guess
            } else {
                min_above
            };
        }
        // Each step moves a bound strictly inside the previous range onto one of the values,
        // so the loop ends after at most 256 steps on finite input. Non-finite input (not
        // reachable from 8-bit pixels) would stop narrowing; bail out instead of spinning.
        let (next_min, next_max) = if less > greater {
            (min, max_below)
        } else {
            (min_above, max)
        };
        if next_min == min && next_max == max {
            return guess;
        }
        (min, max) = (next_min, next_max);
    }
}

/// The reference's dihedral transforms of the DCT: a rotation or flip of the image transposes
/// the coefficient block and/or negates the odd-frequency rows or columns (even indices here,
/// since index 0 is frequency 1).
fn dihedral_hashes(dct: &Dct16) -> [PdqBits; 8] {
    let transform = |transpose: bool, negate: fn(usize, usize) -> bool| -> PdqBits {
        let mut out = [[0.0f32; DCT_SIDE]; DCT_SIDE];
        for (i, row) in dct.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let v = if negate(i, j) { -v } else { v };
                if transpose {
                    out[j][i] = v;
                } else {
                    out[i][j] = v;
                }
            }
        }
        PdqBits::from_dct(&out)
    };
    [
        PdqBits::from_dct(dct),
        transform(true, |_, j| j % 2 == 0),
        transform(false, |i, j| (i + j) % 2 == 1),
        transform(true, |i, _| i % 2 == 0),
        transform(false, |i, _| i % 2 == 0),
        transform(false, |_, j| j % 2 == 0),
        transform(true, |_, _| false),
        transform(true, |i, j| (i + j) % 2 == 1),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 build of the blur is what runs wherever the CPU has it, the tests included;
    /// the portable build must give the same bits, down to the float values of the block.
    #[test]
    fn the_portable_blur_equals_the_one_that_runs_here() {
        for (seed, (width, height)) in [(5, 5), (63, 200), (64, 64), (130, 70), (1023, 767)]
            .into_iter()
            .enumerate()
        {
            let rgb = noise(width * height * 3, seed as u64);
            let source = RowSource::Rgb8(&rgb);
            let here = blur_and_decimate(source, width, height);
            let portable = blur_and_decimate_portable(source, width, height);
            let bits =
                |block: &Block64| -> Vec<u32> { block.iter().flatten().map(|v| v.to_bits()).collect() };
            assert_eq!(bits(&here), bits(&portable), "{width}x{height}");
        }
    }

    /// Deterministic pseudo-random pixels (xorshift), so tests need no external crate.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    /// A smooth gradient with some texture, so that quality is high.
    fn picture(width: usize, height: usize) -> Vec<u8> {
        let mut rgb = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            for x in 0..width {
                let r = (x * 255 / width.max(1)) as u8;
                let g = (y * 255 / height.max(1)) as u8;
                let b = (((x / 7 + y / 5) % 2) * 200) as u8;
                rgb.extend_from_slice(&[r, g, b]);
            }
        }
        rgb
    }

    #[test]
    fn hex_round_trips_and_orders_bits_big_endian() {
        let mut bits = PdqBits::ZERO;
        bits.set_bit(0);
        bits.set_bit(255);
        bits.set_bit(12);
        let hex = bits.to_hex();
        assert_eq!(hex, format!("80{}1001", "0".repeat(58)));
        assert_eq!(PdqBits::from_hex(&hex), Some(bits));
        assert_eq!(PdqBits::from_hex(&hex.to_uppercase()), Some(bits));
        assert_eq!(PdqBits::from_hex("abc"), None);
        assert_eq!(PdqBits::from_hex(&"g".repeat(64)), None);
        assert_eq!(bits.to_string(), hex);
    }

    #[test]
    fn hamming_distance_counts_differing_bits() {
        let a = PdqBits::ZERO;
        let b = PdqBits([0xff; 32]);
        let mut c = PdqBits::ZERO;
        c.set_bit(3);
        c.set_bit(200);
        assert_eq!(a.hamming_distance(&a), 0);
        assert_eq!(a.hamming_distance(&b), 256);
        assert_eq!(a.hamming_distance(&c), 2);
        assert_eq!(c.hamming_distance(&b), 254);
    }

    #[test]
    fn images_under_five_pixels_give_zero_hash_and_quality() {
        for (width, height) in [(0, 0), (1, 1), (4, 100), (100, 4), (4, 4), (0, 10)] {
            let rgb = noise(width * height * 3, 7);
            assert_eq!(pdq_from_rgb8(&rgb, width, height), PdqOutput::UNUSABLE);
            assert_eq!(
                pdq_from_luma8(&rgb[..width * height], width, height),
                PdqOutput::UNUSABLE
            );
            let dihedral = pdq_dihedral_from_rgb8(&rgb, width, height);
            assert_eq!(
                dihedral,
                PdqDihedral {
                    hashes: [PdqBits::ZERO; 8],
                    quality: 0
                }
            );
        }
        assert_ne!(pdq_from_rgb8(&noise(5 * 5 * 3, 1), 5, 5).hash, PdqBits::ZERO);
    }

    #[test]
    fn length_mismatch_gives_zero_hash_and_quality() {
        let rgb = picture(10, 10);
        assert_ne!(pdq_from_rgb8(&rgb, 10, 10), PdqOutput::UNUSABLE);
        assert_eq!(pdq_from_rgb8(&rgb[1..], 10, 10), PdqOutput::UNUSABLE);
        assert_eq!(pdq_from_rgb8(&rgb, 10, 9), PdqOutput::UNUSABLE);
        assert_eq!(pdq_dihedral_from_rgb8(&rgb[1..], 10, 10).quality, 0);
        assert_eq!(
            pdq_dihedral_from_rgb8(&rgb[1..], 10, 10).hashes,
            [PdqBits::ZERO; 8]
        );
        assert_eq!(pdq_from_luma8(&rgb[..101], 10, 10), PdqOutput::UNUSABLE);
        // Dimensions whose product overflows must not panic either.
        assert_eq!(pdq_from_rgb8(&rgb, usize::MAX, 2), PdqOutput::UNUSABLE);
        assert_eq!(pdq_from_luma8(&rgb, usize::MAX / 2 + 1, 2), PdqOutput::UNUSABLE);
    }

    #[test]
    fn grey_luma_of_stacked_channels_is_exact() {
        for v in 0..=255u8 {
            assert_eq!(luma_of(v, v, v), f32::from(v));
        }
    }

    #[test]
    fn grey_equals_rgb_of_stacked_grey() {
        for (width, height, seed) in [(5, 5, 1), (64, 64, 2), (130, 77, 3), (300, 257, 4)] {
            let grey = noise(width * height, seed);
            let rgb: Vec<u8> = grey.iter().flat_map(|&v| [v, v, v]).collect();
            assert_eq!(
                pdq_from_luma8(&grey, width, height),
                pdq_from_rgb8(&rgb, width, height)
            );
        }
    }

    #[test]
    fn dihedral_original_equals_plain_hash_except_at_64x64() {
        for (width, height) in [(5, 9), (63, 64), (65, 64), (200, 150), (1024, 3)] {
            let rgb = picture(width, height);
            let plain = pdq_from_rgb8(&rgb, width, height);
            let dihedral = pdq_dihedral_from_rgb8(&rgb, width, height);
            assert_eq!(dihedral.hashes[0], plain.hash, "{width}x{height}");
            assert_eq!(dihedral.quality, plain.quality, "{width}x{height}");
        }
    }

    /// Rotating or flipping the 64×64 block exactly must match the DCT-domain transform up to
    /// float rounding, so recomputing the DCT of the transformed block must give nearly the
    /// same hash as the corresponding dihedral variant.
    /// Where output pixel `(y, x)` of a rotated or flipped 64×64 block comes from.
    type SourcePixel = fn(usize, usize, usize) -> (usize, usize);

    #[test]
    fn each_dihedral_variant_matches_a_transformed_block() {
        let rgb = picture(64, 64);
        let block = block_from_64x64(RowSource::Rgb8(&rgb));
        let dct = dct_64_to_16(&block);
        let variants = dihedral_hashes(&dct);
        let n = PDQ_DOWNSAMPLED_SIDE - 1;
        // out[y][x] = block[f(y, x)] for each transform, in reference order.
        let maps: [SourcePixel; 8] = [
            |y, x, _| (y, x),
            |y, x, n| (x, n - y), // rot90: counterclockwise, like Pillow's rotate(90)
            |y, x, n| (n - y, n - x),
            |y, x, n| (n - x, y),
            |y, x, n| (n - y, x), // flipx: upside down
            |y, x, n| (y, n - x), // flipy: mirrored
            |y, x, _| (x, y),
            |y, x, n| (n - x, n - y),
        ];
        for (index, (map, variant)) in maps.iter().zip(variants.iter()).enumerate() {
            let mut moved = [[0.0f32; PDQ_DOWNSAMPLED_SIDE]; PDQ_DOWNSAMPLED_SIDE];
            for (y, row) in moved.iter_mut().enumerate() {
                for (x, v) in row.iter_mut().enumerate() {
                    let (sy, sx) = map(y, x, n);
                    *v = block[sy][sx];
                }
            }
            let rehashed = PdqBits::from_dct(&dct_64_to_16(&moved));
            let distance = rehashed.hamming_distance(variant);
            assert!(distance <= 4, "variant {index}: distance {distance}");
        }
        assert_eq!(variants[0], PdqBits::from_dct(&dct));
    }

    #[test]
    fn torben_returns_the_lower_median() {
        let mut dct = [[0.0f32; DCT_SIDE]; DCT_SIDE];
        for (k, v) in dct.iter_mut().flatten().enumerate() {
            *v = ((k * 37) % 256) as f32;
        }
        assert_eq!(torben_median(&dct), 127.0);
        let constant = [[3.5f32; DCT_SIDE]; DCT_SIDE];
        assert_eq!(torben_median(&constant), 3.5);
        assert_eq!(PdqBits::from_dct(&constant), PdqBits::ZERO);
    }

    #[test]
    fn flat_image_has_quality_zero() {
        let rgb = vec![128u8; 100 * 80 * 3];
        assert_eq!(pdq_from_rgb8(&rgb, 100, 80).quality, 0);
    }

    #[test]
    fn textured_image_has_quality_100() {
        let rgb = picture(300, 200);
        assert_eq!(pdq_from_rgb8(&rgb, 300, 200).quality, 100);
    }

    #[test]
    fn box_filter_matches_reference_phases() {
        // Window 3 over 1..=6: sums of the reference's growing, sliding and shrinking windows.
        let input = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let check = |window: usize, expected: [f32; 6]| {
            let mut data = input;
            let mut sums = [0.0f32; 1];
            let mut ring = vec![0.0f32; window + 1];
            box_filter_in_place(&mut data, 1, window, &mut sums, &mut ring, &mut Averages::InPlace);
            assert_eq!(data, expected, "window {window}");
        };
        check(1, input);
        check(3, [1.5, 2.0, 3.0, 4.0, 5.0, 5.5]);
        check(4, [2.0, 2.5, 3.5, 4.5, 5.0, 5.5]);
        check(6, [2.5, 3.0, 3.5, 4.0, 4.5, 5.0]);
        // Two interleaved lanes filter independently.
        let mut data = [1.0f32, 10.0, 2.0, 20.0, 3.0, 30.0];
        let mut sums = [0.0f32; 2];
        let mut ring = [0.0f32; 6];
        box_filter_in_place(&mut data, 2, 2, &mut sums, &mut ring, &mut Averages::InPlace);
        assert_eq!(data, [1.5, 15.0, 2.5, 25.0, 3.0, 30.0]);
    }

    /// The reference's `box1DFloat`, transcribed: `n` samples `stride` apart, four phases.
    fn reference_box_1d(
        input: &[f32],
        output: &mut [f32],
        start: usize,
        n: usize,
        stride: usize,
        window: usize,
    ) {
        let half = (window + 2) / 2;
        let (mut left, mut right, mut out) = (start, start, start);
        let (mut sum, mut count) = (0.0f32, 0.0f32);
        for _ in 0..half - 1 {
            sum += input[right];
            count += 1.0;
            right += stride;
        }
        for _ in 0..window - half + 1 {
            sum += input[right];
            count += 1.0;
            output[out] = sum / count;
            right += stride;
            out += stride;
        }
        for _ in 0..n - window {
            sum += input[right];
            sum -= input[left];
            output[out] = sum / count;
            left += stride;
            right += stride;
            out += stride;
        }
        for _ in 0..half - 1 {
            sum -= input[left];
            count -= 1.0;
            output[out] = sum / count;
            left += stride;
            out += stride;
        }
    }

    /// The reference's `jaroszFilterFloat` then `decimateFloat`, between two full buffers.
    fn reference_blur_and_decimate(luma: &[u8], width: usize, height: usize) -> Block64 {
        let mut image: Vec<f32> = luma.iter().map(|&v| f32::from(v)).collect();
        let mut other = vec![0.0f32; image.len()];
        let (row_window, column_window) = (box_window(width), box_window(height));
        for _ in 0..BOX_FILTER_PASSES {
            for row in 0..height {
                reference_box_1d(&image, &mut other, row * width, width, 1, row_window);
            }
            for column in 0..width {
                reference_box_1d(&other, &mut image, column, height, width, column_window);
            }
        }
        let mut block = [[0.0f32; PDQ_DOWNSAMPLED_SIDE]; PDQ_DOWNSAMPLED_SIDE];
        for (i, out_row) in block.iter_mut().enumerate() {
            for (j, y) in out_row.iter_mut().enumerate() {
                *y = image[sample_index(i, height) * width + sample_index(j, width)];
            }
        }
        block
    }

    /// Every shortcut of the blur (passes in place, strips, only the sampled columns kept by
    /// the last passes) gives the reference's float values to the bit, on sizes with repeated
    /// sample columns (under 64), short last strips and odd windows.
    #[test]
    fn the_blur_equals_the_reference_transcription() {
        // The largest first: the smaller ones then reuse its buffer, stale samples and all.
        for (seed, (width, height)) in [
            (517, 389),
            (5, 5),
            (7, 300),
            (31, 64),
            (64, 64),
            (100, 37),
            (129, 130),
        ]
        .into_iter()
        .enumerate()
        {
            let luma = noise(width * height, seed as u64 + 11);
            let ours = blur_and_decimate(RowSource::Luma8(&luma), width, height);
            let reference = reference_blur_and_decimate(&luma, width, height);
            let bits =
                |block: &Block64| -> Vec<u32> { block.iter().flatten().map(|v| v.to_bits()).collect() };
            assert_eq!(bits(&ours), bits(&reference), "{width}x{height}");
        }
    }

    #[test]
    fn window_sizes_follow_the_reference() {
        assert_eq!(box_window(5), 1);
        assert_eq!(box_window(128), 1);
        assert_eq!(box_window(129), 2);
        assert_eq!(box_window(1024), 8);
        assert_eq!(box_window(1600), 13);
    }
}
