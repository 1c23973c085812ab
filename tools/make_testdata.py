#!/usr/bin/env python3
"""Writes the image-decoding test data (run from anywhere): valid images into testdata/images/,
the hostile ones into testdata/bad/images/.

Deterministic: every random number comes from a seeded generator and no encoder is asked to
write a timestamp, so running it twice gives byte-identical files. Needs Python 3.11, Pillow
and numpy.

What it writes (tests/integration/decode.rs is the reader; keep the two in step):
  good-*      valid images in the six supported formats and their colour modes;
  bad-*       empty, text, magic-only, truncated and corrupt files, other formats, zero-size
              images, TIFFs with absurd strips and IFD loops;
  bomb-*      headers that declare huge images over a tiny body, and bodies that inflate far
              beyond the image (decompression bombs), a GIF of 10,000 frames;
  pillow.tsv  for each good file: Pillow's `convert("RGB")` of it (width, height and an
              FNV-1a 64 hash of the pixel bytes), which is how the field's reference tools
              see an image; `*.pillow.png` holds those pixels in full for the lossy files,
              whose decoders may differ by a few levels.
"""
import io
import pathlib
import struct
import zlib

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "testdata" / "images"
BAD_OUT = ROOT / "testdata" / "bad" / "images"

# Odd sizes on purpose: they exercise partial JPEG blocks, chroma subsampling at the edge and
# BMP row padding.
W, H = 161, 121
SMALL_W, SMALL_H = 41, 31


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def base_rgb() -> np.ndarray:
    """A synthetic picture: gradients, shapes, stripes and one textured patch."""
    rng = np.random.default_rng(20240611)
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    r = 255 * x / (W - 1)
    g = 255 * y / (H - 1)
    b = 128 + 100 * np.sin(x / 9.0) * np.cos(y / 13.0)
    img = np.stack([r, g, b], axis=2)
    disc = (x - 50) ** 2 + (y - 60) ** 2 < 30**2
    img[disc] = [20, 40, 200]
    rect = (x > 95) & (x < 145) & (y > 15) & (y < 55)
    img[rect] = [240, 230, 30]
    stripes = (x > 95) & (x < 150) & (y > 70) & (y < 110) & (((x + y) // 6) % 2 == 0)
    img[stripes] = [10, 10, 10]
    patch = (x < 40) & (y < 30)
    img[patch] += rng.normal(0, 25, size=(int(patch.sum()), 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def alpha_channel() -> np.ndarray:
    """Alpha from 0 to 255 across the image, with a fully transparent band.

    The transparent band keeps its colour under the alpha, which is what proves that decoding
    drops alpha (as Pillow's convert("RGB") does) rather than compositing onto black or white.
    """
    y, x = np.mgrid[0:H, 0:W]
    a = (255 * x // (W - 1)).astype(np.uint8)
    a[(y > 40) & (y < 60)] = 0
    return a


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


# --- hand-written containers for what Pillow cannot write ---------------------------------

def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_file(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes,
             interlace: int = 0) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def png_rows(pixels: np.ndarray) -> bytes:
    """Filter type 0 before each row; `pixels` is already in PNG byte order."""
    rows = pixels.reshape(pixels.shape[0], -1)
    return b"".join(b"\x00" + row.tobytes() for row in rows)


def png_rgb16(rgb16: np.ndarray) -> bytes:
    data = png_rows(rgb16.astype(">u2").view(np.uint8))
    return png_file(W, H, 16, 2, zlib.compress(data, 9))


def png_interlaced(rgb: np.ndarray) -> bytes:
    """An Adam7-interlaced RGB PNG (Pillow can read these but not write them)."""
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
              (0, 1, 1, 2)]
    data = b""
    for x0, y0, dx, dy in passes:
        sub = rgb[y0::dy, x0::dx]
        if sub.size:
            data += png_rows(sub)
    return png_file(W, H, 8, 2, zlib.compress(data, 9), interlace=1)


def tiff_file(width: int, height: int, samples: int, bits: int, sample_format: int,
              photometric: int, data: bytes, strip_bytes: int | None = None) -> bytes:
    """A little-endian, single-strip, uncompressed TIFF: header, IFD, two arrays, pixels.

    `strip_bytes` overrides the strip's declared length (default: the length of `data`).
    """
    n_entries = 11
    ifd_offset = 8
    arrays_offset = ifd_offset + 2 + 12 * n_entries + 4
    bits_array = struct.pack("<" + "H" * samples, *[bits] * samples).ljust(8, b"\0")
    format_array = struct.pack("<" + "H" * samples, *[sample_format] * samples).ljust(8, b"\0")
    strip_offset = arrays_offset + 16

    def short(tag, value):
        return struct.pack("<HHIHH", tag, 3, 1, value, 0)

    def long(tag, value):
        return struct.pack("<HHII", tag, 4, 1, value)

    def shorts(tag, offset, array):
        # Up to two SHORTs fit in the entry itself; more live at `offset`.
        if samples <= 2:
            return struct.pack("<HHI", tag, 3, samples) + array[:4]
        return struct.pack("<HHII", tag, 3, samples, offset)

    ifd = struct.pack("<H", n_entries) + b"".join([
        long(256, width),                                  # ImageWidth
        long(257, height),                                 # ImageLength
        shorts(258, arrays_offset, bits_array),            # BitsPerSample
        short(259, 1),                                     # Compression: none
        short(262, photometric),                           # PhotometricInterpretation
        long(273, strip_offset),                           # StripOffsets
        short(277, samples),                               # SamplesPerPixel
        long(278, height),                                 # RowsPerStrip
        long(279, len(data) if strip_bytes is None else strip_bytes),  # StripByteCounts
        short(284, 1),                                     # PlanarConfiguration: chunky
        shorts(339, arrays_offset + 8, format_array),      # SampleFormat
    ]) + struct.pack("<I", 0)
    assert len(ifd) == arrays_offset - ifd_offset
    return b"II*\0" + struct.pack("<I", ifd_offset) + ifd + bits_array + format_array + data


def gif_file(screen_w: int, screen_h: int, frame_w: int, frame_h: int, lzw: bytes) -> bytes:
    """A GIF with a 2-colour global table and one image whose descriptor we choose."""
    head = b"GIF89a" + struct.pack("<HHBBB", screen_w, screen_h, 0x80, 0, 0)
    palette = b"\x00\x00\x00\xff\xff\xff"
    desc = b"\x2c" + struct.pack("<HHHHB", 0, 0, frame_w, frame_h, 0)
    body = b"\x02" + bytes([len(lzw)]) + lzw + b"\x00"
    return head + palette + desc + body + b"\x3b"


def zlib_bomb() -> bytes:
    """A zlib stream of 256 MiB of zeros (about 250 kB compressed)."""
    compressor = zlib.compressobj(9)
    block = bytes(1 << 20)
    return b"".join(compressor.compress(block) for _ in range(256)) + compressor.flush()


def png_with_chunk(kind: bytes, data: bytes, repeat: int = 1) -> bytes:
    """A valid 16x16 black greyscale PNG with a chunk (repeated) between IHDR and IDAT."""
    ihdr = struct.pack(">IIBBBBB", 16, 16, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 17 * 16)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(kind, data) * repeat
            + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))


def gif_frames(image: Image.Image, count: int) -> bytes:
    """A GIF whose one small frame is repeated `count` times, each behind a graphic control
    extension, as an animation does."""
    out = io.BytesIO()
    image.convert("1").save(out, "GIF")
    single = out.getvalue()
    start = 13 + (3 << ((single[10] & 0x07) + 1))
    while single[start] == 0x21:  # skip extensions: introducer, label, sub-blocks
        start += 2
        while single[start]:
            start += 1 + single[start]
        start += 1
    end = len(single) - 1  # the image descriptor and its data run to the trailer
    assert single[start] == 0x2C and single[end] == 0x3B
    control = b"\x21\xf9\x04\x00\x01\x00\x00\x00"
    return single[:start] + (control + single[start:end]) * count + b"\x3b"


def tiff_entries(entries: list[tuple[int, int, int, int]], tail: bytes) -> bytes:
    """A little-endian TIFF of one IFD of (tag, type, count, value or offset) entries, then
    `tail`, which starts at offset 8 + 2 + 12·len(entries) + 4."""
    ifd = (struct.pack("<H", len(entries))
           + b"".join(struct.pack("<HHII", *entry) for entry in sorted(entries))
           + struct.pack("<I", 0))
    return b"II*\0" + struct.pack("<I", 8) + ifd + tail


def tiff_strips(width: int, height: int, rows_per_strip: int, offsets: tuple[int, int],
                counts: tuple[int, int], tail: bytes) -> bytes:
    """An 8-bit greyscale TIFF whose StripOffsets and StripByteCounts are (count, value or
    offset) LONG arrays as given, however absurd."""
    return tiff_entries([
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
        (262, 3, 1, 1), (273, 4, *offsets), (277, 3, 1, 1), (278, 4, 1, rows_per_strip),
        (279, 4, *counts), (284, 3, 1, 1),
    ], tail)


def hostile_headers(jpeg: bytes, bmp: bytes) -> dict[str, bytes]:
    """Zero-size images in every format that can declare one, and TIFFs with absurd strips."""
    bmp_zero = bytearray(bmp)
    bmp_zero[18:26] = struct.pack("<ii", 0, 0)
    tail_at = 8 + 2 + 12 * 10 + 4
    looped = bytearray(tiff_file(16, 16, 1, 8, 1, 1, bytes(256)))
    entries = struct.unpack_from("<H", looped, 8)[0]
    struct.pack_into("<I", looped, 8 + 2 + 12 * entries, 8)  # next IFD: itself
    return {
        "bad-zero-png-0x0.png": png_file(0, 0, 8, 0, zlib.compress(b"")),
        "bad-zero-png-0x16.png": png_file(0, 16, 8, 0, zlib.compress(b"\x00" * 16)),
        "bad-zero-gif-0x0.gif": gif_file(0, 0, 0, 0, b"\x44\x01"),
        "bad-zero-tiff-0x0.tif": tiff_file(0, 0, 1, 8, 1, 1, b""),
        "bad-zero-jpeg-0x0.jpg": jpeg_with_size(jpeg, 0, 0),
        "bad-zero-bmp-0x0.bmp": bytes(bmp_zero),
        "bad-tiff-rows-per-strip-0.tif":
            tiff_strips(64, 64, 0, (1, tail_at), (1, 4096), bytes(4096)),
        "bad-tiff-strips-beyond-eof.tif":
            tiff_strips(64, 64, 1, (64, 1 << 31), (64, 1 << 31), bytes(64)),
        "bad-tiff-ifd-loop.tif": bytes(looped),
        # 2^30 strips, and 16384 one-row strips of 4 GB each.
        "bomb-tiff-1g-strips.tif":
            tiff_strips(64, 64, 1, (1 << 30, tail_at), (1 << 30, tail_at), bytes(64)),
        "bomb-tiff-16384-strips-of-4gb.tif":
            tiff_strips(1, 16384, 1, (16384, tail_at), (16384, tail_at),
                        struct.pack("<I", 0xFFFFFFFF) * 16384),
    }


# --- damage ---------------------------------------------------------------------------------

def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def corrupt(data: bytes, ranges: list[tuple[int, int]], seed: int) -> bytes:
    """Replaces the bytes in each [start, end) range (the body) with seeded noise."""
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    for start, end in ranges:
        out[start:end] = rng.integers(0, 256, size=end - start, dtype=np.uint8).tobytes()
    return bytes(out)


def png_idat_ranges(data: bytes) -> list[tuple[int, int]]:
    """The payload of each IDAT chunk (lengths and CRCs stay as they were)."""
    ranges, pos = [], 8
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos: pos + 4])[0]
        if data[pos + 4: pos + 8] == b"IDAT":
            ranges.append((pos + 8, pos + 8 + length))
        pos += 12 + length
    return ranges


def tiff_strip_ranges(data: bytes) -> list[tuple[int, int]]:
    """The pixel data of each strip of the first page."""
    with Image.open(io.BytesIO(data)) as img:
        offsets, counts = img.tag_v2[273], img.tag_v2[279]
    return [(o, o + c) for o, c in zip(offsets, counts)]


def jpeg_header_end(data: bytes) -> int:
    """Offset just past the first SOS segment: everything a decoder reads before pixels."""
    pos = 2
    while pos + 4 <= len(data):
        marker = data[pos + 1]
        length = struct.unpack(">H", data[pos + 2: pos + 4])[0]
        pos += 2 + length
        if marker == 0xDA:
            return pos
    raise ValueError("no SOS")


def jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrites the dimensions in the SOF segment."""
    pos = 2
    while pos + 4 <= len(data):
        marker = data[pos + 1]
        length = struct.unpack(">H", data[pos + 2: pos + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            sof = bytearray(data)
            sof[pos + 5: pos + 9] = struct.pack(">HH", height, width)
            return bytes(sof)
        pos += 2 + length
    raise ValueError("no SOF")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    BAD_OUT.mkdir(parents=True, exist_ok=True)
    # Remove what an earlier run wrote, so a renamed case leaves no stale file behind.
    for old in [*OUT.iterdir(), *BAD_OUT.iterdir()]:
        if old.name.startswith(("good-", "bad-", "bomb-")) or old.name == "pillow.tsv":
            old.unlink()

    rgb = base_rgb()
    alpha = alpha_channel()
    im_rgb = Image.fromarray(rgb, "RGB")
    im_rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    im_l = im_rgb.convert("L")
    im_la = Image.fromarray(np.dstack([np.asarray(im_l), alpha]), "LA")
    im_p = im_rgb.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    im_1 = im_l.point(lambda v: 255 if v > 110 else 0).convert("1", dither=Image.Dither.NONE)
    # 16-bit grey spanning the full range: the case where Pillow and `image` differ most.
    grey16 = (np.asarray(im_l).astype(np.uint32) * 257).astype(np.uint16)
    im_i16 = Image.frombytes("I;16", (W, H), grey16.astype("<u2").tobytes())
    im_small = im_rgb.resize((SMALL_W, SMALL_H), Image.Resampling.BILINEAR)
    # Float RGB in 0..1 with one sample out of range each way, which conversion must clamp.
    small_f32 = np.asarray(im_small).astype("<f4") / 255.0
    small_f32[0, 0] = [-0.5, 1.5, 0.5]
    # A second frame that differs everywhere, so a decoder that returns it is caught.
    im_rgb2 = Image.fromarray(255 - rgb, "RGB")
    im_p2 = im_rgb2.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)

    p_trns = im_p.copy()
    p_trns.info["transparency"] = 0  # palette index 0 is transparent; its colour must remain

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW; Pillow's open + convert ignores it, so do we

    good = {
        # JPEG
        "good-jpeg-rgb.jpg": encode(im_rgb, "JPEG", quality=90),
        "good-jpeg-progressive.jpg": encode(im_rgb, "JPEG", quality=85, progressive=True),
        "good-jpeg-grey.jpg": encode(im_l, "JPEG", quality=90),
        "good-jpeg-cmyk.jpg": encode(im_rgb.convert("CMYK"), "JPEG", quality=90),
        "good-jpeg-exif-rotated.jpg": encode(im_rgb, "JPEG", quality=90, exif=exif.tobytes()),
        # PNG
        "good-png-rgb.png": encode(im_rgb, "PNG", optimize=True),
        "good-png-rgba.png": encode(im_rgba, "PNG", optimize=True),
        "good-png-l.png": encode(im_l, "PNG", optimize=True),
        "good-png-la.png": encode(im_la, "PNG", optimize=True),
        "good-png-p.png": encode(im_p, "PNG", optimize=True),
        "good-png-p-trns.png": encode(p_trns, "PNG", transparency=0),
        "good-png-1.png": encode(im_1, "PNG"),
        "good-png-i16.png": encode(im_i16, "PNG"),
        # v * 257 is the exact 16-bit v; + 90 makes rounding (`image`: back to v) and taking
        # the high byte (Pillow: v + 1 when v >= 166) disagree.
        "good-png-rgb16.png": png_rgb16(np.minimum(rgb.astype(np.uint32) * 257 + 90, 65535)),
        "good-png-interlaced.png": png_interlaced(rgb),
        "good-png-apng.png": encode(im_rgb, "PNG", save_all=True, append_images=[im_rgb2],
                                    duration=100, loop=0),
        # GIF
        "good-gif-anim.gif": encode(im_p, "GIF", save_all=True, append_images=[im_p2],
                                    duration=100, loop=0),
        "good-gif-transparent.gif": encode(p_trns, "GIF", transparency=0),
        # WebP
        "good-webp-lossy.webp": encode(im_rgb, "WEBP", quality=80, method=4),
        "good-webp-lossless.webp": encode(im_rgb, "WEBP", lossless=True),
        "good-webp-alpha.webp": encode(im_rgba, "WEBP", lossless=True, exact=True),
        "good-webp-lossy-alpha.webp": encode(im_rgba, "WEBP", quality=80, method=4),
        "good-webp-anim.webp": encode(im_rgb, "WEBP", save_all=True, append_images=[im_rgb2],
                                      lossless=True, duration=100, loop=0),
        # BMP
        "good-bmp-rgb.bmp": encode(im_rgb, "BMP"),
        "good-bmp-p.bmp": encode(im_p, "BMP"),
        "good-bmp-1.bmp": encode(im_1, "BMP"),
        # TIFF
        "good-tiff-rgb.tif": encode(im_rgb, "TIFF"),
        "good-tiff-lzw.tif": encode(im_rgb, "TIFF", compression="tiff_lzw"),
        "good-tiff-deflate.tif": encode(im_rgba, "TIFF", compression="tiff_adobe_deflate"),
        "good-tiff-l.tif": encode(im_l, "TIFF", compression="packbits"),
        "good-tiff-cmyk.tif": encode(im_rgb.convert("CMYK"), "TIFF",
                                     compression="tiff_adobe_deflate"),
        "good-tiff-i16.tif": encode(im_i16, "TIFF"),
        "good-tiff-jpeg.tif": encode(im_rgb, "TIFF", compression="jpeg"),
        "good-tiff-multipage.tif": encode(im_rgb, "TIFF", compression="tiff_adobe_deflate",
                                          save_all=True, append_images=[im_rgb2]),
        # Float samples are 4 bytes each, so this one is small to keep the data set small.
        "good-tiff-f32-rgb.tif": tiff_file(SMALL_W, SMALL_H, 3, 32, 3, 2, small_f32.tobytes()),
    }

    # Formats or modes that are valid but that the `image` crate cannot decode.
    unsupported = {
        "bad-tiff-palette.tif": encode(im_p, "TIFF"),
        "bad-tiff-f32-grey.tif": encode(im_small.convert("L").convert("F"), "TIFF"),
        "bad-avif.avif": encode(im_rgb.resize((32, 24)), "AVIF", quality=50, speed=8),
        "bad-jpeg2000.jp2": encode(im_rgb.resize((32, 24)), "JPEG2000"),
        "bad-ico.ico": encode(im_rgb.resize((32, 32)), "ICO", sizes=[(32, 32)]),
        # An ISO-BMFF HEIC header: what an iPhone uploads.
        "bad-heic.heic": struct.pack(">I", 24) + b"ftypheic" + bytes(4) + b"mif1heic" + bytes(64),
    }

    bad = {
        "bad-empty.bin": b"",
        "bad-text.txt": b"this is not an image, it is a line of text\n",
        "bad-html.html": b"<!DOCTYPE html><html><body><img src=x></body></html>\n",
        "bad-magic-only.jpg": b"\xff\xd8\xff",
        "bad-magic-only.png": b"\x89PNG\r\n\x1a\n",
        "bad-magic-only.gif": b"GIF89a",
        "bad-magic-only.webp": b"RIFF\x04\x00\x00\x00WEBP",
        "bad-magic-only.bmp": b"BM",
        "bad-magic-only.tif": b"II*\x00",
    }
    # The GIF is single-frame: half of an animated one can still hold a whole first frame.
    truncated_from = {"jpg": "good-jpeg-rgb.jpg", "png": "good-png-rgb.png",
                      "gif": "good-gif-transparent.gif", "webp": "good-webp-lossy.webp",
                      "bmp": "good-bmp-rgb.bmp", "tif": "good-tiff-rgb.tif"}
    for ext, name in truncated_from.items():
        bad[f"bad-truncated.{ext}"] = truncated(good[name])
    # Headers stay intact (the size is still readable); the body becomes noise.
    jpeg = good["good-jpeg-rgb.jpg"]
    gif = good["good-gif-anim.gif"]
    png = good["good-png-rgb.png"]
    webp = good["good-webp-lossless.webp"]
    bmp = good["good-bmp-p.bmp"]
    tiff = good["good-tiff-lzw.tif"]
    corrupt_from = {
        "jpg": (jpeg, [(jpeg_header_end(jpeg), len(jpeg) - 2)]),  # entropy-coded data
        "png": (png, png_idat_ranges(png)),                       # IDAT payloads
        "gif": (gif, [(13 + 3 * 64, len(gif))]),                  # all after the palette
        "webp": (webp, [(25, len(webp))]),                        # all after the VP8L size
        "bmp": (bmp, [(54, len(bmp))]),                           # palette and pixels
        "tif": (tiff, tiff_strip_ranges(tiff)),                   # LZW strips
    }
    for seed, (ext, (data, ranges)) in enumerate(corrupt_from.items()):
        bad[f"bad-corrupt.{ext}"] = corrupt(data, ranges, seed)

    # Decompression bombs: each header declares a huge image over a tiny body.
    zero_rows = zlib.compress(b"\x00" * (1 + 30000) * 4, 9)
    bmp_bomb = bytearray(good["good-bmp-rgb.bmp"])
    bmp_bomb[18:26] = struct.pack("<ii", 30000, 30000)
    webp_bomb = bytearray(good["good-webp-lossless.webp"])
    # VP8L header at offset 20: signature 0x2f then 14 bits width-1 and 14 bits height-1.
    # (16000, not 16384: image-webp 0.2 wraps a lossless width of 16384 to 0.)
    flags = int.from_bytes(webp_bomb[21:25], "little") & ~((1 << 28) - 1)
    bits = (16000 - 1) | ((16000 - 1) << 14) | flags
    webp_bomb[21:25] = bits.to_bytes(4, "little")
    bombs = {
        "bomb-png-30000x30000.png": png_file(30000, 30000, 8, 0, zero_rows),
        "bomb-png-20000x1.png": png_file(20000, 1, 8, 0, zlib.compress(b"\x00" * 20001, 9)),
        "bomb-gif-screen.gif": gif_file(65535, 65535, 1, 1, b"\x44\x01"),
        "bomb-gif-frame.gif": gif_file(16, 16, 65535, 65535, b"\x44\x01"),
        # Within the pixel limit, but a frame 250 000 times its screen: refused by the
        # allocation limit rather than by the header check.
        "bomb-gif-frame-8000x8000.gif": gif_file(16, 16, 8000, 8000, b"\x44\x01"),
        # A 64x64 image whose one strip claims 2 GB.
        "bomb-tiff-strip-2gb.tif": tiff_file(64, 64, 1, 8, 1, 1, bytes(64),
                                             strip_bytes=2_000_000_000),
        # The SOF of a real JPEG rewritten, and 64 bytes of its scan kept.
        "bomb-jpeg-65500x65500.jpg":
            jpeg_with_size(jpeg, 65500, 65500)[:jpeg_header_end(jpeg) + 64],
        "bomb-tiff-100000x100000.tif": tiff_file(100000, 100000, 1, 8, 1, 1, b"\0" * 64),
        "bomb-bmp-30000x30000.bmp": bytes(bmp_bomb[:4096]),
        "bomb-webp-16000x16000.webp": bytes(webp_bomb),
        # Small images whose compressed data inflates to 256 MiB: in the pixel data past the
        # last row, in a compressed text chunk, in an ICC profile.
        "bomb-png-idat-256mib.png": png_file(16, 16, 8, 0, zlib_bomb()),
        "bomb-png-ztxt-256mib.png": png_with_chunk(b"zTXt", b"Comment\x00\x00" + zlib_bomb()),
        "bomb-png-iccp-256mib.png": png_with_chunk(b"iCCP", b"icc\x00\x00" + zlib_bomb()),
        "bomb-png-20000-chunks.png": png_with_chunk(b"tEXt", b"k\x00v", repeat=20_000),
        "bomb-gif-10000-frames.gif": gif_frames(Image.new("L", (16, 16)), 10_000),
    }
    bad.update(hostile_headers(jpeg, good["good-bmp-rgb.bmp"]))

    for name, data in sorted(good.items()):
        (OUT / name).write_bytes(data)
    for name, data in sorted({**unsupported, **bad, **bombs}.items()):
        (BAD_OUT / name).write_bytes(data)

    lossy = {"good-jpeg-rgb.jpg", "good-jpeg-progressive.jpg", "good-jpeg-grey.jpg",
             "good-jpeg-cmyk.jpg", "good-jpeg-exif-rotated.jpg", "good-webp-lossy.webp",
             "good-webp-lossy-alpha.webp", "good-tiff-jpeg.tif"}
    rows = ["file\tpillow_mode\twidth\theight\tfnv1a64_rgb"]
    for name in sorted(good):
        try:
            with Image.open(OUT / name) as img:
                mode = img.mode
                converted = img.convert("RGB")
        except OSError:
            # Pillow cannot read it (RGB float32 TIFF): nothing to compare against.
            rows.append(f"{name}\t-\t-\t-\t-")
            continue
        rows.append(f"{name}\t{mode}\t{converted.width}\t{converted.height}\t"
                    f"{fnv1a64(converted.tobytes()):016x}")
        if name in lossy:
            converted.save(OUT / (name + ".pillow.png"), optimize=True)
    (OUT / "pillow.tsv").write_text("\n".join(rows) + "\n")

    for folder in (OUT, BAD_OUT):
        total = sum(p.stat().st_size for p in folder.iterdir())
        print(f"wrote {len(list(folder.iterdir()))} files, {total} bytes, into {folder}")


if __name__ == "__main__":
    main()
