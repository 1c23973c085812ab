//! Arbitrary bytes as an uploaded image: decoding and every hash must return, never panic,
//! abort or allocate past the limits, and what they return must hold together.
//!
//! Asserts, beyond not crashing:
//! - a decoded image respects `DecodeLimits::default()` and its buffer is width × height × 3;
//! - `hash_image` succeeds exactly when `decode_image` does (it decodes the same bytes), and
//!   then returns one hash per algorithm in `Algorithm::ALL` order, the decoded size, a PDQ
//!   quality of at most 100, dihedral variants whose first is the PDQ hash, and digests equal
//!   to `digest::md5`/`digest::sha256` of the bytes;
//! - PDQ's dihedral entry point agrees with the plain one on every size but 64 × 64 (where the
//!   reference's dihedral path blurs and the plain one does not), checked up to a megapixel;
//! - MD5/SHA-256 alone never decode, so they succeed on any non-empty input within the limit.

#![no_main]

use hashsieve::hash::decode::{DecodeLimits, decode_image};
use hashsieve::hash::{Algorithm, HashOptions, digest, hash_image, pdq};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let limits = DecodeLimits::default();

    let digests_only = HashOptions {
        algorithms: vec![Algorithm::Sha256, Algorithm::Md5, Algorithm::Md5],
        pdq_dihedral: true,
        pdq_trimmed: true,
        ..HashOptions::default()
    };
    match hash_image(bytes, &digests_only, &limits) {
        Ok(hashes) => {
            assert!(hashes.dimensions.is_none(), "digests alone must not decode");
            assert!(hashes.pdq_dihedral.is_none(), "no dihedral without pdq");
            assert_eq!(hashes.hashes.len(), 2);
            assert_eq!(hashes.hashes[0].value.as_bytes(), digest::md5(bytes));
            assert_eq!(hashes.hashes[1].value.as_bytes(), digest::sha256(bytes));
        }
        Err(error) => assert!(
            bytes.is_empty(),
            "digests of {} bytes failed: {error}",
            bytes.len()
        ),
    }

    let decoded = decode_image(bytes, &limits);
    if let Ok(image) = &decoded {
        let (width, height) = image.rgb.dimensions();
        assert!(width > 0 && height > 0, "decoded an empty {width}x{height} image");
        assert!(u64::from(width) * u64::from(height) <= limits.max_pixels);
        assert!(width.max(height) <= limits.max_side);
        assert_eq!(image.rgb.as_raw().len(), width as usize * height as usize * 3);

        // The extra PDQ pair only on images up to a megapixel: larger ones (a few hundred bytes
        // of JPEG can declare 8192 × 8192) would slow every run without reaching other code.
        let (w, h) = (width as usize, height as usize);
        if w * h <= 1 << 20 {
            let plain = pdq::pdq_from_rgb8(image.rgb.as_raw(), w, h);
            let dihedral = pdq::pdq_dihedral_from_rgb8(image.rgb.as_raw(), w, h);
            assert!(plain.quality <= 100 && dihedral.quality <= 100);
            if (w, h) != (64, 64) {
                assert_eq!(
                    plain.hash, dihedral.hashes[0],
                    "dihedral original differs at {w}x{h}"
                );
                assert_eq!(
                    plain.quality, dihedral.quality,
                    "dihedral quality differs at {w}x{h}"
                );
            }
        }
    }

    let everything = HashOptions {
        algorithms: Algorithm::ALL.iter().rev().copied().collect(),
        pdq_dihedral: true,
        pdq_trimmed: true,
        pdq_windows: true,
        ..HashOptions::default()
    };
    match (hash_image(bytes, &everything, &limits), &decoded) {
        (Ok(hashes), Ok(image)) => {
            let algorithms: Vec<Algorithm> = hashes.hashes.iter().map(|h| h.value.algorithm()).collect();
            assert_eq!(algorithms, Algorithm::ALL);
            assert_eq!(hashes.dimensions, Some(image.rgb.dimensions()));
            let pdq = hashes.get(Algorithm::Pdq).expect("pdq was asked for");
            assert!(
                pdq.quality.is_some_and(|q| q <= 100),
                "pdq quality {:?}",
                pdq.quality
            );
            let dihedral = hashes.pdq_dihedral.expect("dihedral was asked for");
            assert_eq!(dihedral[0], pdq.value);
            for computed in &hashes.hashes {
                let algorithm = computed.value.algorithm();
                assert_eq!(computed.value.as_bytes().len(), algorithm.byte_len());
                assert_eq!(computed.quality.is_some(), algorithm == Algorithm::Pdq);
            }
            let md5 = hashes.get(Algorithm::Md5).expect("md5 was asked for");
            assert_eq!(md5.value.as_bytes(), digest::md5(bytes));
        }
        (Err(_), Err(_)) => {}
        (Ok(_), Err(error)) => panic!("hash_image succeeded where decode_image failed: {error}"),
        (Err(error), Ok(_)) => panic!("hash_image failed where decode_image succeeded: {error}"),
    }
});
