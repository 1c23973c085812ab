#!/usr/bin/env python3
"""Decode + PDQ per image: hashsieve (in process, the hash_bench example) against Pillow +
`pdqhash` (the PyPI bindings of Meta's C++ PDQ, the path python-threatexchange/HMA use), on
the same files in one run. Both sides take the median of --repeat runs per file, one thread.

Image set (bench/data/hashing/, made once, seeded):
  photo-NN.jpg  --count (default 50) 1024x768 JPEGs, quality 85: photo i % 26 of bench/photos.py,
                a random 4:3 crop (60-100 % of the largest that fits), resized with Lanczos,
                saved by Pillow (4:2:0 subsampling, Pillow's default)
plus, reported apart, the decodable images in testdata/ (testdata/images/good-*,
testdata/pdq/**/*.jpg|png): other formats, sizes and JPEG modes.

Hash agreement: per file, the Hamming distance between the two PDQ hashes (the two JPEG
decoders, zune-jpeg and libjpeg, may differ by a few pixel values, hence a few bits).

Needs: pip install -r bench/requirements.txt
"""
import argparse
import glob
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA = os.path.join(HERE, "data", "hashing")


def make_images(count, seed=1):
    paths = [os.path.join(DATA, f"photo-{i:02d}.jpg") for i in range(count)]
    if all(os.path.exists(p) for p in paths):
        return paths
    from PIL import Image

    sys.path.insert(0, HERE)
    import photos

    os.makedirs(DATA, exist_ok=True)
    sources = photos.load_photos()
    rng = np.random.default_rng(seed)
    for i, path in enumerate(paths):
        _, pixels = sources[i % len(sources)]
        height, width, _ = pixels.shape
        fit_w = min(width, height * 4 // 3)
        crop_w = max(4, int(fit_w * rng.uniform(0.6, 1.0)))
        crop_h = crop_w * 3 // 4
        left = int(rng.integers(0, width - crop_w + 1))
        top = int(rng.integers(0, height - crop_h + 1))
        image = Image.fromarray(pixels[top:top + crop_h, left:left + crop_w])
        image.resize((1024, 768), Image.Resampling.LANCZOS).save(path, "JPEG", quality=85)
    return paths


def testdata_images():
    files = sorted(glob.glob(os.path.join(REPO, "testdata/images/good-*")))
    files += sorted(glob.glob(os.path.join(REPO, "testdata/pdq/**/*.jpg"), recursive=True))
    files += sorted(glob.glob(os.path.join(REPO, "testdata/pdq/**/*.png"), recursive=True))
    return [f for f in files if not f.endswith(".pillow.png")]


def median_ms(work, repeat):
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def reference(path, repeat):
    """(hash hex, quality, decode ms, pdq ms, total ms) with Pillow + pdqhash."""
    import pdqhash
    from PIL import Image

    def decode():
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))

    pixels = decode()
    bits, quality = pdqhash.compute(pixels)
    digest = np.packbits(bits.astype(np.uint8)).tobytes().hex()
    decode_ms = median_ms(decode, repeat)
    pdq_ms = median_ms(lambda: pdqhash.compute(pixels), repeat)
    total_ms = median_ms(lambda: pdqhash.compute(decode()), repeat)
    return digest, int(quality), decode_ms, pdq_ms, total_ms


def ours(binary, paths, repeat):
    out = subprocess.run([binary, "--repeat", str(repeat), *paths], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    results = {}
    for line in out.splitlines():
        path, digest, quality, decode_ms, pdq_ms, total_ms = line.split("\t")
        results[path] = (digest, int(quality), float(decode_ms), float(pdq_ms), float(total_ms))
    return results


def distance(a, b):
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def report(title, paths, rust, ref):
    paths = [p for p in paths if p in rust and p in ref]
    if not paths:
        return
    distances = [distance(rust[p][0], ref[p][0]) for p in paths]
    print(f"\n## {title}: {len(paths)} files")
    print("| | hashsieve | Pillow + pdqhash | ratio |")
    print("|---|---|---|---|")
    for label, column in [("decode", 2), ("PDQ", 3), ("decode + PDQ", 4)]:
        for stat_name, stat in [("median", statistics.median), ("mean", statistics.mean)]:
            a = stat([rust[p][column] for p in paths])
            b = stat([ref[p][column] for p in paths])
            print(f"| {label}, {stat_name} per image | {a:.2f} ms | {b:.2f} ms | {b / a:.1f}x |")
    differing = [d for d in distances if d]
    print(f"\nhashes equal: {len(paths) - len(differing)} of {len(paths)}; "
          f"differing: {len(differing)}"
          + (f" (bits: max {max(differing)}, mean {statistics.mean(differing):.1f}; "
             f"histogram {dict(sorted({d: differing.count(d) for d in differing}.items()))})"
             if differing else ""))
    for p, d in zip(paths, distances):
        if d:
            print(f"  {os.path.relpath(p, REPO)}: {d} bits"
                  f" (quality {rust[p][1]} vs {ref[p][1]})")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-testdata", action="store_true")
    parser.add_argument("--rust-bin", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")),
        "release", "examples", "hash_bench"))
    args = parser.parse_args()
    photos = make_images(args.count)
    extra = [] if args.no_testdata else testdata_images()
    everything = photos + extra
    rust = ours(args.rust_bin, everything, args.repeat)
    ref = {}
    for path in everything:
        try:
            ref[path] = reference(path, args.repeat)
        except Exception as error:  # a format Pillow or pdqhash refuses: left out of both
            print(f"{path}: reference skipped: {error}", file=sys.stderr)
    report("1024x768 JPEG photos (quality 85, bench/data/hashing/)", photos, rust, ref)
    if extra:
        report("testdata images (mixed formats and sizes)", extra, rust, ref)


if __name__ == "__main__":
    main()
