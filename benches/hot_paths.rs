//! Criterion benches of the hot paths: decoding, PDQ (with and without overlay windows), and
//! the index scan.
//! Run: `cargo bench --bench hot_paths` (release profile).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hashsieve::bank::{BankId, EntryKey};
use hashsieve::hash::decode::{DecodeLimits, decode_image};
use hashsieve::hash::{Algorithm, HashOptions, HashValue, hash_image, pdq};
use hashsieve::index::{HashIndex, LinearIndex, MihConfig, MihIndex};

const PHOTO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/pdq/bridge-mods/aaa-orig.jpg"
);

fn hashing(c: &mut Criterion) {
    let jpeg = std::fs::read(PHOTO).unwrap();
    let limits = DecodeLimits::default();
    let decoded = decode_image(&jpeg, &limits).unwrap();
    let (width, height) = (decoded.rgb.width() as usize, decoded.rgb.height() as usize);
    let resized = image::imageops::resize(&decoded.rgb, 1024, 768, image::imageops::FilterType::Triangle);

    c.bench_function("decode jpeg 1600x1004", |b| {
        b.iter(|| decode_image(black_box(&jpeg), &limits).unwrap())
    });
    c.bench_function("pdq rgb 1600x1004", |b| {
        b.iter(|| pdq::pdq_from_rgb8(black_box(decoded.rgb.as_raw()), width, height))
    });
    c.bench_function("pdq rgb 1024x768", |b| {
        b.iter(|| pdq::pdq_from_rgb8(black_box(resized.as_raw()), 1024, 768))
    });
    c.bench_function("pdq + dihedral rgb 1600x1004", |b| {
        b.iter(|| pdq::pdq_dihedral_from_rgb8(black_box(decoded.rgb.as_raw()), width, height))
    });
    let options = HashOptions {
        algorithms: vec![Algorithm::Pdq, Algorithm::Md5, Algorithm::Sha256],
        pdq_dihedral: true,
        ..HashOptions::default()
    };
    c.bench_function(
        "check-image hashing 1600x1004 jpeg (decode, pdq+dihedral, md5, sha256)",
        |b| b.iter(|| hash_image(black_box(&jpeg), &options, &limits).unwrap()),
    );
    // What CheckImage's windows option adds: the PDQ of five overlay windows.
    let windows = HashOptions {
        algorithms: vec![Algorithm::Pdq],
        pdq_windows: true,
        ..HashOptions::default()
    };
    let pdq_only = HashOptions {
        algorithms: vec![Algorithm::Pdq],
        ..HashOptions::default()
    };
    let bmp = {
        let mut bytes = Vec::new();
        resized
            .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Bmp)
            .unwrap();
        bytes
    };
    c.bench_function("pdq of a 1024x768 bmp", |b| {
        b.iter(|| hash_image(black_box(&bmp), &pdq_only, &limits).unwrap())
    });
    c.bench_function("pdq and 5 overlay windows of a 1024x768 bmp", |b| {
        b.iter(|| hash_image(black_box(&bmp), &windows, &limits).unwrap())
    });
}

/// Pseudo-random hashes from a fixed seed (xorshift), so runs compare.
fn random_pdq(count: usize) -> Vec<HashValue> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let mut bytes = [0u8; 32];
            for chunk in bytes.chunks_exact_mut(8) {
                chunk.copy_from_slice(&next().to_be_bytes());
            }
            HashValue::from_bytes(Algorithm::Pdq, &bytes).unwrap()
        })
        .collect()
}

/// `hash` with `bits` of its bits flipped, spread over the code.
fn flip(hash: &HashValue, bits: usize) -> HashValue {
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(hash.as_bytes());
    for i in 0..bits {
        let bit = (i * 97 + 13) % 256;
        bytes[bit / 8] ^= 1 << (bit % 8);
    }
    HashValue::from_bytes(Algorithm::Pdq, &bytes).unwrap()
}

fn index(c: &mut Criterion) {
    for size in [10_000usize, 1_000_000] {
        let hashes = random_pdq(size + 1);
        let pairs: Vec<(HashValue, EntryKey)> = hashes[..size]
            .iter()
            .zip(0..)
            .map(|(hash, seq)| (*hash, EntryKey { bank: BankId(1), seq }))
            .collect();
        let linear = LinearIndex::<4>::new(Algorithm::Pdq);
        linear.insert_many(&pairs);
        let mih = MihIndex::<4>::new(Algorithm::Pdq, MihConfig::for_radius(31));
        mih.load_distinct(&pairs);
        mih.settle();
        let near = flip(&hashes[size / 2], 24);
        let unrelated = hashes[size];
        let mut hits = Vec::new();
        let engines: [(&str, &dyn HashIndex); 2] = [("linear", &linear), ("mih", &mih)];
        for (engine, index) in engines {
            for (kind, query) in [("near-duplicate", near), ("unrelated", unrelated)] {
                let name = format!("{engine} pdq search radius 31, {size} hashes, {kind} query");
                c.bench_function(&name, |b| {
                    b.iter(|| {
                        hits.clear();
                        index.search(black_box(&query), 31, &mut hits);
                        hits.len()
                    })
                });
            }
        }
    }
}

criterion_group!(benches, hashing, index);
criterion_main!(benches);
