#!/usr/bin/env python3
"""Compares the Rust PDQ with the reference (`pdqhash`, bindings of Meta's C++) on random images.

Every image must match bit for bit: hash, quality, the 8 dihedral hashes and their quality,
and, for greyscale images, the Rust grey entry point against the reference on stacked grey.

The Rust side is the `pdq_oracle` binary (pdq_oracle.rs beside this file, built as described
in README.md), spoken to over a pipe (see its doc comment).
Usage: compare_random.py --oracle PATH_TO_BINARY [--count N] [--count-64 N] [--seed S]
                         [--max-side N]
Needs: pip install numpy pdqhash
"""
import argparse
import subprocess
import sys

import numpy as np
import pdqhash


def to_hex(bits):
    return "%064x" % int("".join(str(int(b)) for b in bits), 2)


# Sizes that exercise the edges of the pipeline: under the 5 px minimum, exactly 5, the
# 64x64 shortcut, window sizes 1 and 2 (<= 128 and 129..256), 1xN strips, odd and large sizes.
FIXED_SIZES = [
    (1, 1), (1, 7), (4, 4), (4, 100), (100, 4), (5, 5), (5, 1000), (1000, 5), (6, 7),
    (63, 64), (64, 63), (64, 64), (64, 65), (65, 65), (127, 128), (128, 128), (129, 129),
    (128, 129), (255, 256), (256, 257), (1, 300), (300, 1), (5, 3000), (333, 777),
    (1004, 1600), (1600, 1004), (768, 1024), (2048, 1537),
]


def random_image(rng, height, width):
    """Assorted content: noise, smooth gradients, blocks, flat and low-contrast images."""
    kind = rng.integers(0, 7)
    if kind == 0:  # uniform noise
        img = rng.integers(0, 256, (height, width, 3))
    elif kind == 1:  # smooth gradient plus a little noise
        y = np.linspace(0, 1, height)[:, None, None]
        x = np.linspace(0, 1, width)[None, :, None]
        w = rng.random((1, 1, 3))
        img = 255 * (w * x + (1 - w) * y) + rng.normal(0, rng.uniform(0, 20), (height, width, 3))
    elif kind == 2:  # random blocks, upsampled
        bh, bw = rng.integers(1, 9, 2)
        small = rng.integers(0, 256, (bh, bw, 3))
        img = np.repeat(np.repeat(small, -(-height // bh), 0), -(-width // bw), 1)[:height, :width]
    elif kind == 3:  # flat: every coefficient ties near zero (median edge cases)
        img = np.broadcast_to(rng.integers(0, 256, 3), (height, width, 3))
    elif kind == 4:  # low contrast: quality near the 50 cut-off region
        base = rng.integers(0, 230)
        img = base + rng.integers(0, rng.integers(1, 26), (height, width, 3))
    elif kind == 5:  # sinusoidal texture
        yy, xx = np.mgrid[0:height, 0:width]
        f = rng.uniform(0.001, 0.3, 2)
        img = 127.5 + 127.5 * np.sin(f[0] * yy + f[1] * xx)[:, :, None] * rng.random(3)
    else:  # two values only
        a, b = rng.integers(0, 256, 2)
        img = np.where(rng.random((height, width, 1)) < 0.5, a, b).repeat(3, 2)
    return np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))


def random_size(rng, max_side):
    roll = rng.random()
    if roll < 0.15:
        return tuple(int(v) for v in rng.integers(1, 12, 2))
    if roll < 0.3:
        return tuple(int(v) for v in rng.integers(60, 140, 2))
    if roll < 0.4:
        return (1, int(rng.integers(1, 2000))) if rng.random() < 0.5 else (int(rng.integers(1, 2000)), 1)
    if roll < 0.9:
        return tuple(int(v) for v in rng.integers(5, 700, 2))
    return tuple(int(v) for v in rng.integers(700, max_side + 1, 2))


class Oracle:
    def __init__(self, path):
        self.proc = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ask(self, kind, pixels, height, width):
        self.proc.stdin.write(f"{kind} {width} {height}\n".encode())
        self.proc.stdin.write(pixels.tobytes())
        self.proc.stdin.flush()
        return self.proc.stdout.readline().decode().split()


def reference(img):
    h, q = pdqhash.compute(img)
    dih, dq = pdqhash.compute_dihedral(img)
    return [to_hex(h), str(q)] + [to_hex(d) for d in dih] + [str(dq)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oracle", required=True, help="path to the built pdq_oracle example")
    parser.add_argument("--count", type=int, default=500, help="random images after the fixed sizes")
    parser.add_argument("--count-64", type=int, default=40,
                        help="extra 64x64 images (the plain hash skips the blur, dihedral does not)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-side", type=int, default=2500)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    oracle = Oracle(args.oracle)
    sizes = (FIXED_SIZES + [(64, 64)] * args.count_64
             + [random_size(rng, args.max_side) for _ in range(args.count)])
    checked = mismatches = greys = dih64 = 0
    for height, width in sizes:
        img = random_image(rng, height, width)
        expected = reference(img)
        got = oracle.ask("rgb", img, height, width)
        checked += 1
        if got != expected:
            mismatches += 1
            print(f"MISMATCH rgb {width}x{height}\n  expected {expected}\n  got      {got}")
        if (height, width) == (64, 64) and expected[0:2] != expected[2:3] + expected[-1:]:
            dih64 += 1
        if rng.random() < 0.25:  # greyscale path: Rust grey vs reference on stacked grey
            grey = np.ascontiguousarray(img[:, :, 1])
            stacked = np.ascontiguousarray(np.stack([grey] * 3, axis=2))
            h, q = pdqhash.compute(stacked)
            got = oracle.ask("grey", grey, height, width)
            greys += 1
            if got != [to_hex(h), str(q)]:
                mismatches += 1
                print(f"MISMATCH grey {width}x{height}: expected {to_hex(h)} {q}, got {got}")
    oracle.proc.stdin.close()
    oracle.proc.wait()
    print(f"{checked} rgb images ({len(FIXED_SIZES)} fixed sizes, {args.count_64} extra 64x64) and "
          f"{greys} greyscale images; "
          f"{mismatches} mismatches; {dih64} 64x64 images where the reference's dihedral "
          f"original differs from its plain hash")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
