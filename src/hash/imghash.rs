//! The 64-bit img_hash family (pHash, dHash, aHash) through `image_hasher`.
//!
//! These hashes depend on the hasher's configuration (algorithm, size, resize filter, DCT, bit
//! order): a hash computed with another configuration is not comparable. The configuration is
//! therefore fixed here and recorded by the store, which refuses to open data written under a
//! different one.

use std::sync::OnceLock;

use image::RgbImage;
use image::imageops::FilterType;
use image_hasher::{BitOrder, HashAlg, Hasher, HasherConfig};

use super::Algorithm;

/// Bumped whenever a configuration below changes, so stored 64-bit hashes are never compared
/// with hashes of another configuration.
pub const HASHER_CONFIG_VERSION: u32 = 1;

fn config(algorithm: Algorithm) -> HasherConfig<[u8; 8]> {
    let base = HasherConfig::with_bytes_type::<[u8; 8]>()
        .hash_size(8, 8)
        .resize_filter(FilterType::Lanczos3)
        .bit_order(BitOrder::MsbFirst);
    match algorithm {
        // pHash: median of the low frequencies of a DCT, as the pHash literature describes.
        Algorithm::PHash => base.hash_alg(HashAlg::Median).preproc_dct(),
        Algorithm::DHash => base.hash_alg(HashAlg::Gradient),
        _ => base.hash_alg(HashAlg::Mean),
    }
}

/// Human-readable description of every configuration, stored beside the data.
pub fn describe_configuration() -> String {
    [Algorithm::PHash, Algorithm::DHash, Algorithm::AHash]
        .into_iter()
        .map(|algorithm| {
            let json = serde_json::to_string(&config(algorithm)).unwrap_or_default();
            format!("{algorithm}={json}")
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn hasher(algorithm: Algorithm) -> &'static Hasher<[u8; 8]> {
    static PHASH: OnceLock<Hasher<[u8; 8]>> = OnceLock::new();
    static DHASH: OnceLock<Hasher<[u8; 8]>> = OnceLock::new();
    static AHASH: OnceLock<Hasher<[u8; 8]>> = OnceLock::new();
    let cell = match algorithm {
        Algorithm::PHash => &PHASH,
        Algorithm::DHash => &DHASH,
        _ => &AHASH,
    };
    cell.get_or_init(|| config(algorithm).to_hasher())
}

/// The 64-bit hash of `algorithm` (one of pHash, dHash, aHash; others fall back to aHash,
/// which callers never ask for).
pub fn hash64(algorithm: Algorithm, image: &RgbImage) -> [u8; 8] {
    debug_assert!(matches!(
        algorithm,
        Algorithm::PHash | Algorithm::DHash | Algorithm::AHash
    ));
    let hash = hasher(algorithm).hash_image(image);
    let mut out = [0u8; 8];
    let bytes = hash.as_bytes();
    let len = bytes.len().min(8);
    out[..len].copy_from_slice(&bytes[..len]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth synthetic scene: low-frequency waves, like the broad shapes of a photo.
    fn gradient(width: u32, height: u32, flip: bool) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            let (u, w) = (x as f32 / width as f32, y as f32 / height as f32);
            let v = (128.0 + 100.0 * (u * 7.0).sin() * (w * 5.0 + 1.0).cos()) as u8;
            let v = if flip { 255 - v } else { v };
            image::Rgb([v, v / 2, 255 - v])
        })
    }

    #[test]
    fn resized_copy_stays_close_and_inverse_is_far() {
        let image = gradient(320, 240, false);
        let smaller = image::imageops::resize(&image, 160, 120, FilterType::Triangle);
        let inverse = gradient(320, 240, true);
        for algorithm in [Algorithm::PHash, Algorithm::DHash, Algorithm::AHash] {
            let a = u64::from_be_bytes(hash64(algorithm, &image));
            let b = u64::from_be_bytes(hash64(algorithm, &smaller));
            let c = u64::from_be_bytes(hash64(algorithm, &inverse));
            assert!(
                (a ^ b).count_ones() <= 6,
                "{algorithm}: resized copy {a:016x} vs {b:016x}"
            );
            assert!(
                (a ^ c).count_ones() >= 20,
                "{algorithm}: inverse {a:016x} vs {c:016x}"
            );
        }
    }

    #[test]
    fn configuration_is_described_for_every_algorithm() {
        let description = describe_configuration();
        assert!(
            description.contains("phash=")
                && description.contains("dhash=")
                && description.contains("ahash=")
        );
    }
}
