#!/usr/bin/env python3
"""hashsieve's index against FAISS as HMA configures it: data, ground truth, runs, table.

Subcommands (bench/index_vs_faiss runs `run`, which does all the others as needed):
  gen     write the stored hashes and the queries of one data set (cached under bench/data/)
  truth   exact answers by brute force (FAISS flat, checked against numpy), cached
  faiss   one FAISS engine on one data set: build, query single-threaded, write its answers
  run     all of it, then one table

Files of a data set (bench/data/index/DATASET-BITS-N/):
  base.bin     N rows of BITS/8 bytes, the stored hashes (all distinct), row i has id i
  queries.bin  Q rows (default 10,000), shuffled: half near-duplicates of stored rows, half random
  kinds.npy    per query: 0 near-duplicate, 1 random
  truth-rR.npz exact answers at radius R: lims (Q+1) and ids, as FAISS range_search gives them
Answers of an engine (bench/data/index/DATASET-BITS-N/answers-ENGINE.bin): u32 count of
queries answered A, A u32 hit counts, then the hit ids (u32), query by query.

Needs: pip install -r bench/requirements.txt
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA = os.path.join(HERE, "data", "index")
QUERIES = 10_000
RADIUS = {256: 31, 64: 8}
# Near-duplicate queries flip 0..=MAX_FLIPS random bits of a stored hash.
MAX_FLIPS = {256: 31, 64: 8}
# Clustered set: bits flipped to scale real hashes up to N ("a few random bits away").
SCALE_FLIPS = (1, 6)
TILE = 128
EDITS_PER_PHOTO = 32


def dataset_dir(dataset, bits, n):
    return os.path.join(DATA, f"{dataset}-{bits}-{n}")


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def flip_bits(rows, counts, rng, chunk=1 << 16):
    """Flips counts[i] distinct random bits of rows[i] (uint8 rows), in place: the bits whose
    random keys are the counts[i] smallest of the row's."""
    counts = np.asarray(counts)
    bits = rows.shape[1] * 8
    most = int(counts.max()) if len(counts) else 0
    for start in range(0, len(rows) if most else 0, chunk):
        count = counts[start:start + chunk]
        keys = rng.random((len(count), bits))  # float64: no ties
        smallest = np.sort(np.partition(keys, most - 1, axis=1)[:, :most], axis=1)
        threshold = np.take_along_axis(smallest, np.maximum(count - 1, 0)[:, None], axis=1)
        flips = (keys <= threshold) & (count > 0)[:, None]
        rows[start:start + chunk] ^= np.packbits(flips, axis=1)
    return rows


def unique_rows(rows):
    """Distinct rows, first occurrence order kept."""
    view = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.shape[1])))[:, 0]
    _, first = np.unique(view, return_index=True)
    return rows[np.sort(first)]


def fill_distinct(rows, n, make_more):
    """Dedups rows, then tops up with make_more(k) until n distinct rows."""
    rows = unique_rows(rows)
    while len(rows) < n:
        rows = unique_rows(np.concatenate([rows, make_more(n - len(rows))]))
    return rows[:n]


# ---------------------------------------------------------------------------------------------
# Clustered set: PDQ of many edits of a few hundred real photos.


def edit_image(image, rng):
    """One random edit: a composition of 1 to 3 of jpeg, resize, crop, brightness, contrast,
    blur, noise, flip."""
    import io

    from PIL import Image, ImageEnhance, ImageFilter

    ops = ["jpeg", "resize", "crop", "brightness", "contrast", "blur", "noise", "flip"]
    for op in rng.choice(ops, size=int(rng.integers(1, 4)), replace=False):
        w, h = image.size
        if op == "jpeg":
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=int(rng.integers(20, 96)))
            image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
        elif op == "resize":
            scale = float(rng.uniform(0.5, 2.0))
            image = image.resize((max(8, round(w * scale)), max(8, round(h * scale))),
                                 Image.Resampling.BILINEAR)
        elif op == "crop":
            m = rng.uniform(0, 0.1, 4)
            image = image.crop((round(w * m[0]), round(h * m[1]),
                                w - round(w * m[2]), h - round(h * m[3])))
        elif op == "brightness":
            image = ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.6, 1.4)))
        elif op == "contrast":
            image = ImageEnhance.Contrast(image).enhance(float(rng.uniform(0.6, 1.4)))
        elif op == "blur":
            image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.5))))
        elif op == "noise":
            pixels = np.asarray(image, dtype=np.float32)
            pixels = pixels + rng.normal(0, rng.uniform(3, 20), pixels.shape)
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        elif op == "flip":
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT if rng.random() < 0.5
                                    else Image.Transpose.FLIP_TOP_BOTTOM)
    return image


def real_pdq_hashes(seed):
    """(hashes uint8 [R, 32], photo index per hash): PDQ of the original and EDITS_PER_PHOTO - 1
    random edits of every TILE x TILE non-overlapping crop (quality >= 50) of the real photos."""
    cache = os.path.join(DATA, f"clustered-real-pdq-seed{seed}.npz")
    if os.path.exists(cache):
        saved = np.load(cache)
        return saved["hashes"], saved["photo"]
    import pdqhash
    from PIL import Image

    sys.path.insert(0, HERE)
    import photos

    rng = np.random.default_rng(seed)
    bases = [(name, tile) for name, tile in photos.tiles(photos.load_photos(), TILE)
             if pdqhash.compute(tile)[1] >= 50]
    print(f"clustered: {len(bases)} distinct photos ({TILE}x{TILE} crops), "
          f"{EDITS_PER_PHOTO} versions each", file=sys.stderr)
    hashes, photo = [], []
    for index, (_, tile) in enumerate(bases):
        original = Image.fromarray(tile)
        for edit in range(EDITS_PER_PHOTO):
            image = original if edit == 0 else edit_image(original, rng)
            bits, _ = pdqhash.compute(np.ascontiguousarray(np.asarray(image.convert("RGB"))))
            hashes.append(np.packbits(bits.astype(np.uint8)))
            photo.append(index)
    hashes, photo = np.array(hashes, dtype=np.uint8), np.array(photo, dtype=np.int32)
    os.makedirs(DATA, exist_ok=True)
    np.savez(cache, hashes=hashes, photo=photo)
    return hashes, photo


def clustered_base(n, seed, rng):
    """The real hashes, then copies of them a few random bits away up to n rows. Each copy's
    source photo is drawn with weight 1/sqrt(rank) (a few photos are re-uploaded far more),
    then one of that photo's hashes uniformly: buckets fill unevenly."""
    real, photo = real_pdq_hashes(seed)
    photos_count = int(photo.max()) + 1
    weight = 1.0 / np.sqrt(1 + rng.permutation(photos_count))
    by_photo = [np.flatnonzero(photo == p) for p in range(photos_count)]

    def more(k):
        chosen = rng.choice(photos_count, size=k, p=weight / weight.sum())
        source = np.array([by_photo[p][rng.integers(len(by_photo[p]))] for p in chosen])
        rows = real[source].copy()
        return flip_bits(rows, rng.integers(SCALE_FLIPS[0], SCALE_FLIPS[1] + 1, k), rng)

    # Identical edits (two lossless ones, say) hash alike: fill_distinct drops the repeats.
    return fill_distinct(real, n, more)


# ---------------------------------------------------------------------------------------------


def generate(dataset, bits, n, seed=1):
    out = dataset_dir(dataset, bits, n)
    if os.path.exists(os.path.join(out, "kinds.npy")):
        return out
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    width = bits // 8
    t0 = time.time()
    random_rows = lambda k: rng.integers(0, 256, (k, width), dtype=np.uint8)  # noqa: E731
    if dataset == "random":
        base = fill_distinct(random_rows(n), n, random_rows)
    elif dataset == "clustered":
        if bits != 256:
            sys.exit("the clustered set is PDQ (256 bits) only")
        base = clustered_base(n, seed, rng)
    else:
        sys.exit(f"unknown data set {dataset!r}")
    half = QUERIES // 2
    near = base[rng.integers(0, n, half)].copy()
    flip_bits(near, rng.integers(0, MAX_FLIPS[bits] + 1, half), rng)
    queries = np.concatenate([near, random_rows(QUERIES - half)])
    kinds = np.concatenate([np.zeros(half, np.int8), np.ones(QUERIES - half, np.int8)])
    order = rng.permutation(QUERIES)
    base.tofile(os.path.join(out, "base.bin"))
    queries[order].tofile(os.path.join(out, "queries.bin"))
    np.save(os.path.join(out, "kinds.npy"), kinds[order])
    print(f"generated {out}: {n} stored, {QUERIES} queries in {time.time() - t0:.1f} s",
          file=sys.stderr)
    return out


def load(out, bits):
    width = bits // 8
    base = np.fromfile(os.path.join(out, "base.bin"), dtype=np.uint8).reshape(-1, width)
    queries = np.fromfile(os.path.join(out, "queries.bin"), dtype=np.uint8).reshape(-1, width)
    return base, queries


def brute_force(base, query, radius):
    """Ids within radius of one query, by numpy popcount over XOR."""
    words = base.view(np.uint64)
    q = query.view(np.uint64)
    distance = np.bitwise_count(words ^ q).sum(axis=1, dtype=np.int32)
    return np.flatnonzero(distance <= radius)


def truth(out, bits, check=200):
    path = os.path.join(out, f"truth-r{RADIUS[bits]}.npz")
    if os.path.exists(path):
        saved = np.load(path)
        return saved["lims"], saved["ids"]
    import faiss

    radius = RADIUS[bits]
    base, queries = load(out, bits)
    t0 = time.time()
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    flat = faiss.IndexBinaryFlat(bits)
    flat.add(base)
    # FAISS keeps distance < radius (strict): radius + 1 gives distance <= radius.
    lims, dist, ids = flat.range_search(queries, radius + 1)
    assert dist.size == 0 or dist.max() <= radius
    # Independent check on a sample (every near-duplicate has at least its source).
    for i in np.random.default_rng(0).choice(len(queries), check, replace=False):
        expected = brute_force(base, queries[i], radius)
        got = np.sort(ids[lims[i]:lims[i + 1]])
        assert np.array_equal(expected, got), f"ground truth disagrees with numpy on query {i}"
    np.savez(path, lims=lims, ids=ids)
    print(f"ground truth: {lims[-1]} pairs within {radius} in {time.time() - t0:.1f} s "
          f"(FAISS flat, {check} queries checked against numpy)", file=sys.stderr)
    return lims, ids


def write_answers(path, counts, ids):
    with open(path, "wb") as f:
        np.array([len(counts)], np.uint32).tofile(f)
        np.asarray(counts, np.uint32).tofile(f)
        np.asarray(ids, np.uint32).tofile(f)


def read_answers(path):
    raw = np.fromfile(path, dtype=np.uint32)
    answered = int(raw[0])
    counts = raw[1:1 + answered].astype(np.int64)
    return counts, raw[1 + answered:].astype(np.int64)


FAISS_ENGINES = ["faiss-hma-mih", "faiss-flat"]


def faiss_engine(out, bits, engine, budget):
    """Builds one FAISS index on one thread, then queries one hash at a time (as HMA's
    PDQIndex.query does) until done or `budget` seconds. Prints a JSON line."""
    import faiss

    faiss.omp_set_num_threads(1)
    base, queries = load(out, bits)
    rss_before = rss_bytes()
    t0 = time.perf_counter()
    if engine == "faiss-hma-mih":
        # python-threatexchange PDQMultiHashIndex: IndexBinaryIDMap2 over
        # IndexBinaryMultiHash(256, nhash=16, b=256 // 16); search sets nflip = threshold // nhash
        # and calls range_search(queries, threshold + 1).
        nhash, b = (16, 16) if bits == 256 else (3, 21)
        mih = faiss.IndexBinaryMultiHash(bits, nhash, b)
        index = faiss.IndexBinaryIDMap2(mih)
        index.add_with_ids(base, np.arange(len(base), dtype=np.int64))
        mih.nflip = RADIUS[bits] // nhash
    elif engine == "faiss-flat":
        index = faiss.IndexBinaryFlat(bits)
        index.add(base)
    else:
        sys.exit(f"unknown engine {engine!r}")
    build = time.perf_counter() - t0
    rss_after = rss_bytes()
    radius = RADIUS[bits] + 1
    counts, chunks = [], []
    # Only the range_search calls are timed (as on the Rust side, the search calls).
    elapsed = 0.0
    deadline = time.perf_counter() + budget
    for i in range(len(queries)):
        query = queries[i:i + 1]
        t0 = time.perf_counter()
        _, _, ids = index.range_search(query, radius)
        elapsed += time.perf_counter() - t0
        counts.append(len(ids))
        chunks.append(ids)
        if time.perf_counter() > deadline:
            break
    ids = np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
    write_answers(os.path.join(out, f"answers-{engine}.bin"), counts, ids)
    print(json.dumps({
        "engine": engine, "n": len(base), "build_s": build,
        "memory_mb": (rss_after - rss_before) / 2**20, "peak_mb": peak_rss_bytes() / 2**20,
        "queries": len(counts), "query_s": elapsed, "qps": len(counts) / elapsed,
    }))


def recall(lims, true_ids, counts, ids, n):
    """Found true pairs / all true pairs over the queries answered; also wrong hits."""
    answered = len(counts)
    lims, true_ids = lims.astype(np.int64), true_ids.astype(np.int64)
    true_pairs = np.repeat(np.arange(answered), np.diff(lims[:answered + 1])) * n \
        + true_ids[:lims[answered]]
    found = np.repeat(np.arange(answered), counts) * n + ids
    found = np.unique(found)
    hit = np.intersect1d(found, true_pairs, assume_unique=False)
    total = len(np.unique(true_pairs))
    return (len(hit) / total if total else 1.0), len(found) - len(hit)


def run(args):
    engines = [e for e in args.engines.split(",") if e]
    rows = []
    for dataset in args.dataset:
        for bits in args.bits:
            if dataset == "clustered" and bits != 256:
                print(f"skipped clustered-{bits}: the clustered set is PDQ only", file=sys.stderr)
                continue
            for n in args.n:
                rows += run_one(dataset, bits, n, engines, args)
    print_table(rows)
    if args.json:
        with open(args.json, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")


def run_one(dataset, bits, n, engines, args):
    rows = []
    out = generate(dataset, bits, n, args.seed)
    lims, true_ids = truth(out, bits)
    kinds = np.load(os.path.join(out, "kinds.npy"))
    print(f"\n{dataset}, {bits} bits, N={n:,}, radius {RADIUS[bits]}: "
          f"{lims[-1]:,} true pairs over {len(kinds)} queries "
          f"({int((kinds == 0).sum())} near-duplicates)", file=sys.stderr)
    for engine in engines:
        if engine in FAISS_ENGINES:
            command = [sys.executable, os.path.abspath(__file__), "faiss", "--dataset",
                       dataset, "--bits", str(bits), "--n", str(n),
                       "--engine", engine, "--budget", str(args.budget)]
        else:
            command = [args.rust_bin, "--bits", str(bits),
                       "--data", os.path.join(out, "base.bin"),
                       "--queries", os.path.join(out, "queries.bin"),
                       "--radius", str(RADIUS[bits]), "--engine", engine,
                       "--budget", str(args.budget),
                       "--out", os.path.join(out, f"answers-{engine}.bin")]
        print("  $ " + " ".join(command), file=sys.stderr)
        result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
        stats = json.loads(result.stdout.strip().splitlines()[-1])
        counts, ids = read_answers(os.path.join(out, f"answers-{engine}.bin"))
        stats["recall"], stats["wrong"] = recall(lims, true_ids, counts, ids, n)
        stats["dataset"], stats["bits"] = dataset, bits
        stats["true_pairs"] = int(lims[len(counts)])
        print("  " + json.dumps(stats), file=sys.stderr)
        rows.append(stats)
    return rows


def print_table(rows):
    print()
    header = ("engine", "data", "N", "build s", "memory MB", "queries/s", "recall",
              "vs HMA", "queries")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        hma = next((r for r in rows if r["engine"] == "faiss-hma-mih" and r["n"] == row["n"]
                    and r["dataset"] == row["dataset"] and r["bits"] == row["bits"]), None)
        ratio = f"{row['qps'] / hma['qps']:.2f}x" if hma else "-"
        print(f"| {row['engine']} | {row['dataset']}-{row['bits']} | {row['n']:,} "
              f"| {row['build_s']:.2f} | {row['memory_mb']:.0f} | {row['qps']:,.0f} "
              f"| {row['recall']:.4f}{'' if not row['wrong'] else ' (%d wrong)' % row['wrong']} "
              f"| {ratio} | {row['queries']:,} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ["gen", "truth", "faiss", "run"]:
        p = sub.add_parser(name)
        many = "+" if name == "run" else None
        p.add_argument("--dataset", choices=["random", "clustered"], nargs=many,
                       default=["random"] if many else "random")
        p.add_argument("--bits", type=int, choices=[256, 64], nargs=many,
                       default=[256] if many else 256)
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--budget", type=float, default=60.0,
                       help="seconds of queries per engine; slower engines answer a prefix")
        if name == "run":
            p.add_argument("--n", type=int, nargs="+", default=[1_000_000])
            p.add_argument("--engines", default="faiss-hma-mih,faiss-flat,linear,mih",
                           help="comma-separated: faiss-hma-mih, faiss-flat, and the Rust "
                                "example's engines (linear, mih)")
            p.add_argument("--rust-bin", default=os.path.join(
                os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")),
                "release", "examples", "index_bench"))
            p.add_argument("--json", help="append every result row to this JSON-lines file")
        else:
            p.add_argument("--n", type=int, default=1_000_000)
        if name == "faiss":
            p.add_argument("--engine", choices=FAISS_ENGINES, required=True)
    args = parser.parse_args()
    if args.command == "gen":
        generate(args.dataset, args.bits, args.n, args.seed)
    elif args.command == "truth":
        truth(generate(args.dataset, args.bits, args.n, args.seed), args.bits)
    elif args.command == "faiss":
        faiss_engine(dataset_dir(args.dataset, args.bits, args.n), args.bits, args.engine,
                     args.budget)
    else:
        run(args)


if __name__ == "__main__":
    main()
