//! Decoding of uploaded image bytes into packed 8-bit RGB, the input of every hasher.
//!
//! The field's reference hashes (PDQ lists shared through GIFCT, ThreatExchange, …) are
//! computed on what Pillow's `Image.open(f).convert("RGB")` returns, so this module aims at
//! the same pixels:
//!
//! - alpha is dropped, never composited: a transparent pixel keeps the colour stored under it;
//! - grey becomes R = G = B; palette indices become their palette colour (a transparent index
//!   keeps its palette colour too);
//! - only the first frame of an animated GIF, PNG (APNG) or WebP, and the first page of a TIFF,
//!   is decoded;
//! - EXIF orientation is ignored, as `Image.open` ignores it: a rotated JPEG hashes as stored;
//! - colour profiles (ICC, PNG gAMA) are not applied, as `convert("RGB")` does not apply them.
//!
//! Known departures from Pillow are listed on [`decode_image`].
//!
//! Untrusted input is refused before it costs memory: the byte length first, then the
//! dimensions in the header, before any pixel is decoded (see [`DecodeLimits`]).

use std::fmt;
use std::io::Cursor;

use image::error::{LimitErrorKind, UnsupportedErrorKind};
use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, RgbImage, RgbaImage};

/// Limits that refuse oversized input before it costs memory (decompression bombs).
///
/// A few hundred bytes of PNG, GIF or WebP can declare an image of billions of pixels; these
/// limits are checked against the header, before pixels are decoded.
#[derive(Clone, Debug)]
pub struct DecodeLimits {
    /// Largest accepted input, in bytes; checked before anything is parsed.
    pub max_input_bytes: usize,
    /// Largest accepted width × height, from the header (and, for GIF, the first frame).
    pub max_pixels: u64,
    /// Largest accepted width or height, in pixels.
    pub max_side: u32,
}

impl Default for DecodeLimits {
    /// 32 MiB of input, 8192 × 8192 = 64 Mi pixels, 16384 pixels a side.
    ///
    /// 32 MiB holds a full-quality JPEG from a 50-megapixel camera. 64 Mi pixels covers 8K
    /// frames (33 MP) and nearly all camera sensors, yet bounds one decode: measured at the
    /// limit, 0.2 GiB and 1 s for a baseline JPEG, 0.27 GiB for an RGBA PNG, 0.4 GiB and 3 s for
    /// a progressive JPEG (more for 16-bit or float TIFFs), before hashing adds its buffers.
    /// 16384 a side admits panoramas and every WebP (whose limit is 16383) while refusing
    /// degenerate strips such as 1 × 60 000 000 that pass the pixel count.
    fn default() -> Self {
        DecodeLimits {
            max_input_bytes: 32 << 20,
            max_pixels: 1 << 26,
            max_side: 16384,
        }
    }
}

/// The image formats this module decodes, detected from the bytes, never from a file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Gif,
    WebP,
    Bmp,
    Tiff,
}

impl ImageFormat {
    /// Lowercase name, as it appears in error messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
            ImageFormat::Gif => "gif",
            ImageFormat::WebP => "webp",
            ImageFormat::Bmp => "bmp",
            ImageFormat::Tiff => "tiff",
        }
    }

    fn to_image_crate(self) -> image::ImageFormat {
        match self {
            ImageFormat::Jpeg => image::ImageFormat::Jpeg,
            ImageFormat::Png => image::ImageFormat::Png,
            ImageFormat::Gif => image::ImageFormat::Gif,
            ImageFormat::WebP => image::ImageFormat::WebP,
            ImageFormat::Bmp => image::ImageFormat::Bmp,
            ImageFormat::Tiff => image::ImageFormat::Tiff,
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A decoded image: the format it was stored in and its pixels as packed 8-bit RGB.
#[derive(Clone)]
pub struct DecodedImage {
    pub format: ImageFormat,
    pub rgb: RgbImage,
}

/// Shows the format and size only: the derived form would print every pixel into a log.
impl fmt::Debug for DecodedImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodedImage")
            .field("format", &self.format)
            .field("width", &self.rgb.width())
            .field("height", &self.rgb.height())
            .finish_non_exhaustive()
    }
}

/// Why bytes could not be turned into pixels; each message says what the sender can do.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("image is empty: zero bytes received")]
    Empty,
    #[error("image is {size} bytes, more than the limit of {limit} bytes")]
    InputTooLarge { size: usize, limit: usize },
    #[error("unknown image format: expected jpeg, png, gif, webp, bmp or tiff")]
    UnknownFormat,
    /// A format recognised from its magic bytes but not decoded here (HEIC, AVIF, …).
    #[error("{name} images are not supported: convert to jpeg, png, gif, webp, bmp or tiff")]
    UnsupportedFormat { name: &'static str },
    /// A supported format using a feature its decoder lacks (a palette TIFF, for example).
    #[error("{format} image uses a feature that is not supported: {reason}")]
    Unsupported { format: ImageFormat, reason: String },
    #[error(
        "{format} image is {width}x{height} = {pixels} pixels, more than the limit of {limit}",
        pixels = u64::from(*.width) * u64::from(*.height)
    )]
    TooManyPixels {
        format: ImageFormat,
        width: u32,
        height: u32,
        limit: u64,
    },
    #[error("{format} image is {width}x{height}, a side longer than the limit of {limit} pixels")]
    SideTooLong {
        format: ImageFormat,
        width: u32,
        height: u32,
        limit: u32,
    },
    /// The decoder needed more memory than the declared size justifies: a TIFF tag or strip
    /// far larger than the image, a GIF or APNG frame far larger than its canvas.
    #[error("{format} image needs more memory to decode than its declared size allows")]
    MemoryLimit { format: ImageFormat },
    /// The data ended before the image did, as far as the decoder can tell.
    #[error("{format} image is truncated: the data ends before the image does")]
    Truncated { format: ImageFormat },
    #[error("{format} image is corrupt: {reason}")]
    Corrupt { format: ImageFormat, reason: String },
}

impl DecodeError {
    /// Whether the input was refused for its size (bytes, pixels, side or memory needed) rather
    /// than for its content; callers report these as a resource limit, not as bad input.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            DecodeError::InputTooLarge { .. }
                | DecodeError::TooManyPixels { .. }
                | DecodeError::SideTooLong { .. }
                | DecodeError::MemoryLimit { .. }
        )
    }
}

/// Memory a decoder may allocate beyond its output buffer (row, chunk and frame buffers).
///
/// Handed to `image` as `Limits::max_alloc`, on top of twice the output size: TIFF decodes
/// into an intermediate buffer as large as the output, and a GIF frame may be as large as its
/// screen. Decoders that honour the limit then refuse a frame or chunk far beyond what the
/// header declared, which the header check alone cannot see.
const DECODER_HEADROOM_BYTES: u64 = 64 << 20;

/// Refuses empty input and input over the byte limit: the checks every image takes, even one
/// only digested and never decoded.
pub fn check_input(bytes: &[u8], limits: &DecodeLimits) -> Result<(), DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() > limits.max_input_bytes {
        return Err(DecodeError::InputTooLarge {
            size: bytes.len(),
            limit: limits.max_input_bytes,
        });
    }
    Ok(())
}

/// Decodes `bytes` into packed 8-bit RGB, refusing input that breaks `limits`.
///
/// Order of checks: length, format (magic bytes), header dimensions (for GIF also the first
/// frame's), and only then pixels. Conversion to RGB follows Pillow's `convert("RGB")` (see
/// the module documentation); the known departures, measured on tests/integration/decode.rs's data and
/// the reference images, are:
///
/// - JPEG pixels come from zune-jpeg, not libjpeg-turbo: on photos about a fifth of the
///   samples differ, by at most 4 to 6 levels (mean 0.3), so the same file's PDQ hash may
///   differ by a few bits. Greyscale and CMYK JPEGs are within one level.
/// - A truncated or damaged JPEG still decodes: zune-jpeg fills what is missing with mid-grey,
///   as browsers show such a file, where Pillow raises "image file is truncated". Refusing it
///   would let a cut-short copy of flagged content, which still displays, go unchecked.
/// - 16-bit samples are scaled to 8 bits as `image` does, `round(v * 255 / 65535)`. Pillow
///   takes the high byte of 16-bit RGB(A) PNGs (one level apart at most) and clips 16-bit
///   greyscale ("I;16") at 255 instead of scaling, which turns such images nearly white.
/// - Float RGB(A) TIFFs are clamped to 0..1 and scaled (Pillow cannot open them); palette,
///   float-greyscale and YCbCr TIFFs give [`DecodeError::Unsupported`] (`image` 0.25 lacks
///   them; Pillow opens them).
///
/// # Errors
///
/// Any [`DecodeError`]: the input is empty, too large, of an unknown or unsupported format,
/// declares too many pixels or too long a side, or is truncated or corrupt.
pub fn decode_image(bytes: &[u8], limits: &DecodeLimits) -> Result<DecodedImage, DecodeError> {
    check_input(bytes, limits)?;
    let format = sniff_format(bytes)?;

    // Check the size the header declares before any decoder sees it: a GIF's logical screen
    // can be small while its first frame declares 65535 × 65535 (`image` reports only the
    // screen), and the PNG and BMP decoders refuse a zero side with misleading messages.
    if let Some((width, height)) = declared_size(format, bytes) {
        check_dimensions(format, width, height, limits)?;
    }

    // Parse the header with no width or height limit so that an oversized image is reported
    // with its dimensions; the allocation limit still bounds what header parsing may buffer.
    let mut header_limits = image::Limits::default();
    header_limits.max_image_width = None;
    header_limits.max_image_height = None;
    header_limits.max_alloc = Some(DECODER_HEADROOM_BYTES);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.to_image_crate());
    reader.limits(header_limits);
    let mut decoder = reader.into_decoder().map_err(|error| classify(format, error))?;

    let (width, height) = decoder.dimensions();
    check_dimensions(format, width, height, limits)?;

    // Defence in depth: the same bounds as strict decoder limits, so a decoder that learns a
    // larger size later (a frame, a strip) refuses it instead of allocating.
    let max_alloc = decoder
        .total_bytes()
        .saturating_mul(2)
        .saturating_add(DECODER_HEADROOM_BYTES);
    let mut pixel_limits = image::Limits::default();
    pixel_limits.max_image_width = Some(limits.max_side);
    pixel_limits.max_image_height = Some(limits.max_side);
    pixel_limits.max_alloc = Some(max_alloc);
    decoder
        .set_limits(pixel_limits)
        .map_err(|error| classify(format, error))?;

    let image = if decoder.color_type() == image::ColorType::Rgb8 {
        // Most uploads (JPEG) decode straight to RGB8: into this thread's kept buffer.
        let (width, height) = decoder.dimensions();
        let wrong_length = || DecodeError::Corrupt {
            format,
            reason: "decoder returned a pixel buffer of the wrong length".to_string(),
        };
        let length = usize::try_from(decoder.total_bytes()).map_err(|_| wrong_length())?;
        let mut buffer = KEPT_PIXELS.with_borrow_mut(super::KeptBuffer::take);
        // Zeroed as a fresh buffer would be, so that bytes a decoder leaves unwritten can
        // never show an earlier image.
        buffer.clear();
        buffer.resize(length, 0);
        decoder
            .read_image(&mut buffer)
            .map_err(|error| classify(format, error))?;
        DynamicImage::ImageRgb8(RgbImage::from_raw(width, height, buffer).ok_or_else(wrong_length)?)
    } else {
        DynamicImage::from_decoder(decoder).map_err(|error| classify(format, error))?
    };
    let rgb = into_rgb8(format, image)?;
    Ok(DecodedImage { format, rgb })
}

/// Gives a decoded image's pixel buffer back to this thread for its next decode.
pub fn recycle(image: DecodedImage) {
    KEPT_PIXELS.with_borrow_mut(|kept| kept.keep(image.rgb.into_raw()));
}

thread_local! {
    /// The last decoded image's pixel buffer, kept by each hashing thread (see [`recycle`]):
    /// clearing it costs a tenth of what a fresh one does.
    static KEPT_PIXELS: std::cell::RefCell<super::KeptBuffer<u8>> =
        const { std::cell::RefCell::new(super::KeptBuffer::new(&super::KEEP_BUDGET)) };
}

/// Detects one of the six formats from its magic bytes; names a few others that people send.
fn sniff_format(bytes: &[u8]) -> Result<ImageFormat, DecodeError> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    let format = if bytes.starts_with(b"\xff\xd8\xff") {
        ImageFormat::Jpeg
    } else if bytes.starts_with(PNG) {
        ImageFormat::Png
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        ImageFormat::Gif
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        ImageFormat::WebP
    } else if bytes.starts_with(b"BM") {
        ImageFormat::Bmp
    } else if [b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"]
        .iter()
        .any(|magic| bytes.starts_with(*magic))
    {
        ImageFormat::Tiff
    } else {
        return Err(match other_format_name(bytes) {
            Some(name) => DecodeError::UnsupportedFormat { name },
            None => DecodeError::UnknownFormat,
        });
    };
    Ok(format)
}

/// Names formats that are commonly uploaded but not decoded, so the error can say what it saw.
fn other_format_name(bytes: &[u8]) -> Option<&'static str> {
    // ISO base media files (HEIF, AVIF, MP4) start with a box size, then "ftyp" and a brand.
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return Some(match &bytes[8..12] {
            b"avif" | b"avis" => "avif",
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1" => "heif",
            _ => "iso media (mp4, mov)",
        });
    }
    let known: [(&[u8], &str); 7] = [
        (b"\xff\x0a", "jpeg xl"),
        (b"\0\0\0\x0cJXL \r\n\x87\n", "jpeg xl"),
        (b"\0\0\0\x0cjP  \r\n\x87\n", "jpeg 2000"),
        (b"\xff\x4f\xff\x51", "jpeg 2000"),
        (b"\0\0\x01\0", "ico"),
        (b"8BPS", "psd"),
        (b"%PDF-", "pdf"),
    ];
    known
        .iter()
        .find(|(magic, _)| bytes.starts_with(magic))
        .map(|(_, name)| *name)
}

/// Refuses an empty or oversized image from its declared dimensions.
fn check_dimensions(
    format: ImageFormat,
    width: u32,
    height: u32,
    limits: &DecodeLimits,
) -> Result<(), DecodeError> {
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt {
            format,
            reason: format!("declares a size of {width}x{height}"),
        });
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(DecodeError::TooManyPixels {
            format,
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    if width.max(height) > limits.max_side {
        return Err(DecodeError::SideTooLong {
            format,
            width,
            height,
            limit: limits.max_side,
        });
    }
    Ok(())
}

/// The width and height the header declares, for the formats whose decoders report a bad size
/// poorly or late; `None` when the header is too short or not one of them (the decoder then
/// reports the damage itself).
fn declared_size(format: ImageFormat, bytes: &[u8]) -> Option<(u32, u32)> {
    let u32_at = |offset: usize, to_u32: fn([u8; 4]) -> u32| -> Option<u32> {
        Some(to_u32(bytes.get(offset..offset + 4)?.try_into().ok()?))
    };
    match format {
        ImageFormat::Gif => gif_first_frame_size(bytes),
        // IHDR is always the first chunk: width and height big-endian after its tag.
        ImageFormat::Png if bytes.get(12..16)? == b"IHDR" => {
            Some((u32_at(16, u32::from_be_bytes)?, u32_at(20, u32::from_be_bytes)?))
        }
        // The info header: 16-bit sides in the 12-byte OS/2 core header, else signed 32-bit
        // (a negative height means rows run top-down).
        ImageFormat::Bmp => {
            let header_size = u32_at(14, u32::from_le_bytes)?;
            if header_size == 12 {
                let u16_at = |offset: usize| -> Option<u32> {
                    Some(u32::from(u16::from_le_bytes(
                        bytes.get(offset..offset + 2)?.try_into().ok()?,
                    )))
                };
                Some((u16_at(18)?, u16_at(20)?))
            } else {
                let width = u32_at(18, u32::from_le_bytes)? as i32;
                let height = u32_at(22, u32::from_le_bytes)? as i32;
                Some((width.unsigned_abs(), height.unsigned_abs()))
            }
        }
        _ => None,
    }
}

/// Width and height of the first image descriptor of a GIF, or `None` if it cannot be found
/// (the decoder then reports the damage itself).
///
/// Walks the block structure without decoding: header, logical screen descriptor, global
/// colour table, extension blocks (each a chain of length-prefixed sub-blocks), descriptor.
fn gif_first_frame_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let packed = *bytes.get(10)?;
    let global_table = if packed & 0x80 != 0 {
        3usize << ((packed & 0x07) + 1)
    } else {
        0
    };
    let mut pos = 13 + global_table;
    loop {
        match *bytes.get(pos)? {
            // Extension: introducer, label, then sub-blocks until a zero length.
            0x21 => {
                pos += 2;
                loop {
                    let length = usize::from(*bytes.get(pos)?);
                    pos += 1 + length;
                    if length == 0 {
                        break;
                    }
                }
            }
            // Image descriptor: left, top, width, height as little-endian u16.
            0x2c => {
                let field = |offset: usize| -> Option<u32> {
                    let low = *bytes.get(pos + offset)?;
                    let high = *bytes.get(pos + offset + 1)?;
                    Some(u32::from(u16::from_le_bytes([low, high])))
                };
                return Some((field(5)?, field(7)?));
            }
            // Trailer or garbage: no frame to check.
            _ => return None,
        }
    }
}

/// Converts to packed RGB8: moves the buffer when it already is RGB8, compacts RGBA8 in
/// place (the common case for GIF, WebP and PNG with alpha), and lets `image` convert the
/// rest, which drops alpha, replicates grey and scales 16-bit and float samples.
fn into_rgb8(format: ImageFormat, image: DynamicImage) -> Result<RgbImage, DecodeError> {
    match image {
        DynamicImage::ImageRgba8(rgba) => rgba8_into_rgb8(format, rgba),
        other => Ok(other.into_rgb8()),
    }
}

/// Drops alpha from RGBA8 without a second full-size buffer: each pixel's RGB moves to
/// offset 3·i, never ahead of where pixel i is read from (4·i), so the copy is safe in place.
fn rgba8_into_rgb8(format: ImageFormat, rgba: RgbaImage) -> Result<RgbImage, DecodeError> {
    let (width, height) = rgba.dimensions();
    let mut buffer = rgba.into_raw();
    let pixels = buffer.len() / 4;
    for i in 0..pixels {
        buffer.copy_within(4 * i..4 * i + 3, 3 * i);
    }
    buffer.truncate(3 * pixels);
    buffer.shrink_to_fit();
    RgbImage::from_raw(width, height, buffer).ok_or_else(|| DecodeError::Corrupt {
        format,
        reason: "decoder returned a pixel buffer of the wrong length".to_string(),
    })
}

/// Maps an `image` error to ours.
fn classify(format: ImageFormat, error: ImageError) -> DecodeError {
    match error {
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Truncated { format }
        }
        ImageError::IoError(io) => DecodeError::Corrupt {
            format,
            reason: io.to_string(),
        },
        ImageError::Decoding(decoding) => {
            // `image` prefixes "Format error decoding <Format>:"; the decoder's own words are
            // in the source.
            let reason = match std::error::Error::source(&decoding) {
                Some(source) => source.to_string(),
                None => decoding.to_string(),
            };
            if reports_end_of_data(&reason) {
                DecodeError::Truncated { format }
            } else {
                DecodeError::Corrupt {
                    format,
                    reason: reason.trim_end().to_string(),
                }
            }
        }
        ImageError::Unsupported(unsupported) => {
            let reason = match unsupported.kind() {
                UnsupportedErrorKind::Color(colour) => format!("colour type {colour:?}"),
                UnsupportedErrorKind::GenericFeature(feature) => feature,
                _ => unsupported.to_string(),
            };
            DecodeError::Unsupported { format, reason }
        }
        ImageError::Limits(limit) => match limit.kind() {
            LimitErrorKind::InsufficientMemory => DecodeError::MemoryLimit { format },
            _ => DecodeError::Corrupt {
                format,
                reason: limit.to_string(),
            },
        },
        ImageError::Parameter(parameter) => DecodeError::Corrupt {
            format,
            reason: parameter.to_string(),
        },
        ImageError::Encoding(encoding) => DecodeError::Corrupt {
            format,
            reason: encoding.to_string(),
        },
    }
}

/// Whether a decoder's message says the data ran out: the gif crate and zune-jpeg report it
/// as a format error in words, not as an I/O `UnexpectedEof`. A wording change only turns a
/// `Truncated` into a `Corrupt`, which tests/integration/decode.rs would notice.
fn reports_end_of_data(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    ["unexpected end of file", "not enough bytes", "unexpected eof"]
        .iter()
        .any(|words| reason.contains(words))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread's kept pixel buffer, full of an earlier image, changes nothing in the next
    /// decode: good, truncated and corrupt JPEGs give the pixels (or the failure) that a
    /// fresh thread, with no kept buffer, gives.
    #[test]
    fn a_kept_pixel_buffer_never_shows_through() {
        let limits = DecodeLimits::default();
        let decode_fresh = |bytes: Vec<u8>| {
            std::thread::spawn(move || {
                decode_image(&bytes, &DecodeLimits::default())
                    .ok()
                    .map(|image| image.rgb.into_raw())
            })
            .join()
            .unwrap()
        };
        let bright = RgbImage::from_pixel(400, 300, image::Rgb([250, 240, 230]));
        let mut bright_jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut bright_jpeg)
            .encode_image(&bright)
            .unwrap();
        let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        for file in [
            "images/good-jpeg-rgb.jpg",
            "bad/images/bad-truncated.jpg",
            "bad/images/bad-corrupt.jpg",
        ] {
            recycle(decode_image(&bright_jpeg, &limits).unwrap());
            let bytes = std::fs::read(testdata.join(file)).unwrap();
            let here = decode_image(&bytes, &limits)
                .ok()
                .map(|image| image.rgb.into_raw());
            assert_eq!(here, decode_fresh(bytes), "{file}");
            if file.starts_with("images/") {
                assert!(here.is_some(), "{file} decodes");
            }
        }
    }

    #[test]
    fn rgba_compaction_matches_image_crate() {
        let rgba = RgbaImage::from_fn(7, 5, |x, y| {
            image::Rgba([x as u8, y as u8, (x * y) as u8, (x + y) as u8])
        });
        let expected = DynamicImage::ImageRgba8(rgba.clone()).to_rgb8();
        let actual = rgba8_into_rgb8(ImageFormat::Png, rgba).unwrap();
        assert_eq!(actual, expected);
    }

    #[test]
    fn debug_does_not_print_pixels() {
        let decoded = DecodedImage {
            format: ImageFormat::Png,
            rgb: RgbImage::new(300, 200),
        };
        assert_eq!(
            format!("{decoded:?}"),
            "DecodedImage { format: Png, width: 300, height: 200, .. }"
        );
    }

    #[test]
    fn gif_frame_size_walks_extensions() {
        // Screen 10x10 with a 2-colour table, a graphic control extension, then a 300x200 frame.
        let mut gif = b"GIF89a\x0a\x00\x0a\x00\x80\x00\x00".to_vec();
        gif.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
        gif.extend_from_slice(&[0x21, 0xf9, 4, 0, 0, 0, 0, 0]);
        gif.extend_from_slice(&[0x2c, 0, 0, 0, 0, 0x2c, 0x01, 0xc8, 0x00, 0]);
        assert_eq!(gif_first_frame_size(&gif), Some((300, 200)));
        assert_eq!(gif_first_frame_size(&gif[..gif.len() - 3]), None);
    }
}
