"""Robustness of matching to the edits people make to flagged photos. See bench/README.md.

Takes the real photographs of bench/photos.py, makes a fixed, seeded set of edited copies of
each (re-encoding, scaling, cropping, borders, overlays, captions, colour, blur and noise,
mirroring, rotations, and combinations), starts a release hashsieve server on a free loopback
port with its store in a temporary directory, loads every original into a bank through
AddImage and checks every edited copy through CheckImage, once per matching mode. Prints, per
edit, the recall (the fraction of photos whose edited copy matches its own original's entry),
the mean recall over edits, and false matches (a copy or an original matched to another
photo's entry), beside the reference PDQ (Pillow decode + the `pdqhash` package) on the same
files at distance <= 31.

Run through bench/robustness, which installs the Python packages and builds the binary.
"""
import argparse
import datetime
import io
import json
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

import photos as photo_sources

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PDQ_THRESHOLD = 31
MIN_QUALITY = 50
RPC_TIMEOUT_S = 60


class Failure(Exception):
    """An error that makes the run's figures meaningless: reported, and the script exits 1."""


# ---- Matching modes ----
#
# One entry per mode. `bank` configures the bank the originals are loaded into:
# `algorithms` for AddImage (names of hashsieve.v1.Algorithm without the ALGORITHM_ prefix),
# `thresholds` for CreateBank (Thresholds fields; unset ones take the server's defaults).
# `request` holds CheckImageRequest fields (algorithms by name as above). Modes with the same
# `bank` share one bank. A mode for a new request option (border trimming, sub-windows…) or a
# bank holding more algorithms is one more entry here.
MODES = [
    {
        "name": "plain",
        "about": "the upload's PDQ hash against the stored PDQ hashes, distance <= 31",
        "bank": {"algorithms": ["PDQ"], "thresholds": {}},
        "request": {"algorithms": ["PDQ"], "dihedral": False},
    },
    {
        "name": "dihedral",
        "about": "also its 7 mirrored and rotated variants (CheckImage's default)",
        "bank": {"algorithms": ["PDQ"], "thresholds": {}},
        "request": {"algorithms": ["PDQ"], "dihedral": True},
    },
    {
        "name": "trim",
        "about": "dihedral, plus the picture inside its margins (borders, bars, caption bands, a blurred backdrop of itself) and the largest picture of a page (screenshots), "
                 "against originals added with their trimmed picture's PDQ too",
        "bank": {"algorithms": ["PDQ"], "thresholds": {}, "trim": True},
        "request": {"algorithms": ["PDQ"], "dihedral": True, "trim": True},
    },
    {
        "name": "derived",
        "about": "trim, against originals added also with their 7 exact turns and mirrors and "
                 "up to 74 sub-windows (crops up to 20% of each side, centred and in the corners; the "
                 "band with 20% cut from the top and the bottom; one axis alone cut by up to 40%, "
                 "centred; the centred square)",
        "bank": {"algorithms": ["PDQ"], "thresholds": {}, "trim": True, "store_dihedral": True,
                 "store_crops": True},
        "request": {"algorithms": ["PDQ"], "dihedral": True, "trim": True},
    },
    {
        "name": "derived+rot",
        "about": "derived, with the originals also turned by 1 to 10 degrees each way (40 more)",
        "bank": {"algorithms": ["PDQ"], "thresholds": {}, "trim": True, "store_dihedral": True,
                 "store_crops": True, "store_rotations": True},
        "request": {"algorithms": ["PDQ"], "dihedral": True, "trim": True},
    },
    {
        "name": "pdq+phash",
        "about": "dihedral, plus the upload's 64-bit pHash against the originals' pHash (distance <= 8)",
        "bank": {"algorithms": ["PDQ", "PHASH"], "thresholds": {}},
        "request": {"algorithms": ["PDQ", "PHASH"], "dihedral": True},
    },
    {
        "name": "pdq+dhash",
        "about": "dihedral, plus the upload's 64-bit dHash against the originals' dHash (distance <= 8)",
        "bank": {"algorithms": ["PDQ", "DHASH"], "thresholds": {}},
        "request": {"algorithms": ["PDQ", "DHASH"], "dihedral": True},
    },
    {
        "name": "windows",
        "about": "derived+rot, plus the upload's overlay windows (the four corner windows with a fifth of "
                 "two adjacent sides cut away, the band with a fifth cut from the top and the bottom) and "
                 "its trimmed picture's, against the stored sub-windows",
        "bank": {"algorithms": ["PDQ"], "thresholds": {}, "trim": True, "store_dihedral": True,
                 "store_crops": True, "store_rotations": True},
        "request": {"algorithms": ["PDQ"], "dihedral": True, "trim": True, "windows": True},
    },
]

# AddImageRequest fields a mode's bank may set: pictures derived from each original stored
# beside its own hash.
ADD_OPTIONS = ("trim", "store_dihedral", "store_crops", "store_rotations")

# The reference: Pillow decode + pdqhash, matched in Python at distance <= 31.
REFERENCE_MODES = [
    ("ref", "pdqhash PDQ of the upload against the originals' pdqhash PDQ"),
    ("ref-dih", "pdqhash's 8 dihedral variants of the upload against the originals' PDQ"),
]


# ---- Text, drawn with Pillow's own font (no font files) ----

def text_mask(text, height):
    """An L image of `text` in white on black, about `height` pixels tall."""
    height = max(4, int(round(height)))
    try:
        font = ImageFont.load_default(size=height)  # Pillow >= 10.1 with FreeType
        scale = 1
    except (TypeError, ImportError, OSError):
        font = ImageFont.load_default()  # the fixed 11-pixel bitmap font, scaled below
        scale = None
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    mask = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, font=font, fill=255)
    if scale is None:
        factor = height / mask.height
        mask = mask.resize((max(1, round(mask.width * factor)), height), Image.Resampling.BICUBIC)
    return mask


def fitted_text(text, height, max_width):
    """text_mask, shrunk to max_width when wider."""
    mask = text_mask(text, height)
    if mask.width > max_width:
        factor = max_width / mask.width
        mask = mask.resize((max(1, int(max_width)), max(1, round(mask.height * factor))),
                           Image.Resampling.LANCZOS)
    return mask


def paint(image, mask, xy, fill, opacity=1.0, outline=0, outline_fill=(0, 0, 0)):
    """Paints `fill` through `mask` at xy (top-left), with an optional outline of `outline` px."""
    x, y = int(xy[0]), int(xy[1])
    if outline:
        pad = outline
        padded = Image.new("L", (mask.width + 2 * pad, mask.height + 2 * pad), 0)
        padded.paste(mask, (pad, pad))
        grown = padded.filter(ImageFilter.MaxFilter(2 * outline + 1))
        layer = Image.new("RGB", grown.size, outline_fill)
        image.paste(layer, (x - pad, y - pad), grown.point(lambda v: int(v * opacity)))
    layer = Image.new("RGB", mask.size, fill)
    image.paste(layer, (x, y), mask.point(lambda v: int(v * opacity)))


def centred_text(image, text, box, height, fill, **kwargs):
    """Text centred in box = (left, top, right, bottom), at most the box's width."""
    left, top, right, bottom = box
    mask = fitted_text(text, height, 0.92 * (right - left))
    x = left + (right - left - mask.width) / 2
    y = top + (bottom - top - mask.height) / 2
    paint(image, mask, (x, y), fill, **kwargs)


# ---- Edits: image, random.Random, numpy Generator -> image ----

def rgb(image):
    return image.convert("RGB")


def scale(fx, fy=None, resample=Image.Resampling.LANCZOS):
    fy = fx if fy is None else fy
    return lambda im, r, g: im.resize((max(1, round(im.width * fx)), max(1, round(im.height * fy))),
                                      resample)


def crop_centre(fraction):
    """Removes `fraction` of each side's length, half from each end."""
    def edit(im, r, g):
        dx, dy = round(im.width * fraction / 2), round(im.height * fraction / 2)
        return im.crop((dx, dy, im.width - dx, im.height - dy))
    return edit


def crop_off_centre(fraction):
    """Removes `fraction` of each side's length, all from one end (which: seeded)."""
    def edit(im, r, g):
        dx, dy = round(im.width * fraction), round(im.height * fraction)
        left = r.choice([0, dx])
        top = r.choice([0, dy])
        return im.crop((left, top, left + im.width - dx, top + im.height - dy))
    return edit


def pad(left, top, right, bottom, colour):
    """Borders, each a fraction of the photo's width (left, right) or height (top, bottom)."""
    def edit(im, r, g):
        fill = colour(r) if callable(colour) else colour
        l, t = round(im.width * left), round(im.height * top)
        w, h = im.width + l + round(im.width * right), im.height + t + round(im.height * bottom)
        canvas = Image.new("RGB", (w, h), fill)
        canvas.paste(im, (l, t))
        return canvas
    return edit


def border(fraction, colour):
    """The same border on every side, a fraction of the shorter side."""
    def edit(im, r, g):
        b = round(min(im.size) * fraction)
        canvas = Image.new("RGB", (im.width + 2 * b, im.height + 2 * b), colour)
        canvas.paste(im, (b, b))
        return canvas
    return edit


def pad_to_aspect(aspect):
    """Centred, unscaled, in the smallest black frame of that aspect (width / height)."""
    def edit(im, r, g):
        w, h = im.size
        if w / h < aspect:
            w = math.ceil(h * aspect)
        else:
            h = math.ceil(w / aspect)
        canvas = Image.new("RGB", (w, h), (0, 0, 0))
        canvas.paste(im, ((w - im.width) // 2, (h - im.height) // 2))
        return canvas
    return edit


def random_colour(r):
    return (r.randrange(256), r.randrange(256), r.randrange(256))


def logo_corner(im, r, g):
    im = im.copy()
    w = max(24, round(im.width * 0.25))
    h = max(8, round(w * 0.3))
    margin = round(min(im.size) * 0.03)
    x, y = im.width - w - margin, im.height - h - margin
    logo = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(logo)
    d.rounded_rectangle((0, 0, w - 1, h - 1), radius=h // 4, fill=255)
    paint(im, logo, (x, y), (255, 255, 255), opacity=0.6)
    disc = Image.new("L", (h, h), 0)
    ImageDraw.Draw(disc).ellipse((h * 0.15, h * 0.15, h * 0.85, h * 0.85), fill=255)
    paint(im, disc, (x, y), (200, 20, 30), opacity=0.8)
    centred_text(im, "NEWS 24", (x + h, y, x + w, y + h), h * 0.55, (20, 20, 20), opacity=0.8)
    return im


def text_corner(im, r, g):
    im = im.copy()
    mask = fitted_text(f"@user_{r.randrange(10000):04d} reposted", im.height * 0.06, im.width * 0.6)
    margin = round(min(im.size) * 0.03)
    paint(im, mask, (margin, im.height - mask.height - margin), (255, 255, 255), opacity=0.7,
          outline=max(1, mask.height // 12))
    return im


def watermark_tiled(im, r, g):
    side = math.ceil(math.hypot(*im.size))
    layer = Image.new("L", (side, side), 0)
    word = text_mask("\u00a9 stockphoto", max(8, min(im.size) * 0.06))
    step_x, step_y = round(word.width * 1.5), round(word.height * 3)
    for row, y in enumerate(range(0, side, step_y)):
        for x in range(-(row % 2) * step_x // 2, side, step_x):
            layer.paste(word, (x, y))
    layer = layer.rotate(30, resample=Image.Resampling.BICUBIC)
    left, top = (side - im.width) // 2, (side - im.height) // 2
    layer = layer.crop((left, top, left + im.width, top + im.height))
    im = im.copy()
    paint(im, layer, (0, 0), (255, 255, 255), opacity=0.3)
    return im


def watermark_centre(im, r, g):
    im = im.copy()
    mask = fitted_text("SAMPLE", im.height * 0.25, im.width * 0.6)
    paint(im, mask, ((im.width - mask.width) / 2, (im.height - mask.height) / 2), (255, 255, 255),
          opacity=0.4)
    return im


def caption_top_bottom(im, r, g):
    band = round(im.height * 0.2)
    canvas = Image.new("RGB", (im.width, im.height + 2 * band), (255, 255, 255))
    canvas.paste(im, (0, band))
    centred_text(canvas, "WHEN YOU SEE IT", (0, 0, im.width, band), band * 0.55, (0, 0, 0))
    centred_text(canvas, "YOU CAN'T UNSEE IT", (0, band + im.height, im.width, canvas.height),
                 band * 0.55, (0, 0, 0))
    return canvas


def caption_top(im, r, g):
    band = round(im.height * 0.3)
    canvas = Image.new("RGB", (im.width, im.height + band), (255, 255, 255))
    canvas.paste(im, (0, band))
    centred_text(canvas, "nobody:", (0, 0, im.width, band // 2), band * 0.3, (0, 0, 0))
    centred_text(canvas, "absolutely nobody: me at 3am", (0, band // 2, im.width, band), band * 0.3,
                 (0, 0, 0))
    return canvas


def text_over(im, r, g):
    im = im.copy()
    band = round(im.height * 0.14)
    outline = max(1, band // 14)
    centred_text(im, "ONE DOES NOT SIMPLY", (0, 0, im.width, band), band * 0.7, (255, 255, 255),
                 outline=outline)
    centred_text(im, "UPLOAD THE SAME PHOTO", (0, im.height - band, im.width, im.height),
                 band * 0.7, (255, 255, 255), outline=outline)
    return im


def enhance(kind, factor):
    return lambda im, r, g: kind(im).enhance(factor)


def grayscale(im, r, g):
    return ImageOps.grayscale(im)


def gamma(value):
    table = [round(255 * (i / 255) ** value) for i in range(256)] * 3
    return lambda im, r, g: im.point(table)


def hue_shift(degrees):
    def edit(im, r, g):
        h, s, v = im.convert("HSV").split()
        shift = round(degrees / 360 * 256)
        h = h.point(lambda x: (x + shift) % 256)
        return Image.merge("HSV", (h, s, v)).convert("RGB")
    return edit


def sepia(im, r, g):
    grey = np.asarray(ImageOps.grayscale(im), dtype=np.float64)
    tone = np.stack([grey * 1.07, grey * 0.74, grey * 0.43], axis=2) + np.array([20, 10, 0])
    return Image.fromarray(np.clip(tone, 0, 255).astype(np.uint8))


def gaussian_noise(sigma):
    def edit(im, r, g):
        pixels = np.asarray(im, dtype=np.float64)
        return Image.fromarray(np.clip(pixels + g.normal(0, sigma, pixels.shape), 0, 255)
                               .round().astype(np.uint8))
    return edit


def salt_and_pepper(fraction):
    def edit(im, r, g):
        pixels = np.array(im)
        draw = g.random(pixels.shape[:2])
        pixels[draw < fraction / 2] = 0
        pixels[draw > 1 - fraction / 2] = 255
        return Image.fromarray(pixels)
    return edit


def transpose(method):
    return lambda im, r, g: im.transpose(method)


def rotate(degrees, crop):
    """Rotated counter-clockwise: the whole photo on a larger black canvas, or (crop) the
    largest centred rectangle of the photo's aspect that holds no black corner."""
    def edit(im, r, g):
        if not crop:
            return im.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True,
                             fillcolor=(0, 0, 0))
        w, h = im.size
        turned = im.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=False)
        c, s = math.cos(math.radians(degrees)), abs(math.sin(math.radians(degrees)))
        factor = min(w / (w * c + h * s), h / (w * s + h * c))
        cw, ch = int(w * factor), int(h * factor)
        left, top = (w - cw) // 2, (h - ch) // 2
        return turned.crop((left, top, left + cw, top + ch))
    return edit


def chain(*edits):
    def edit(im, r, g):
        for step in edits:
            im = step(im, r, g)
        return im
    return edit


def fit(im, width, height):
    factor = min(width / im.width, height / im.height)
    return im.resize((max(1, round(im.width * factor)), max(1, round(im.height * factor))),
                     Image.Resampling.LANCZOS)


def screenshot_browser(im, r, g):
    """The photo on a news page in a browser window (1280x800), as a screen grab."""
    width, height = 1280, 800
    page = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(page)
    d.rectangle((0, 0, width, 42), fill=(222, 225, 230))
    d.rounded_rectangle((10, 6, 320, 48), radius=8, fill=(255, 255, 255))
    paint(page, fitted_text("Photo of the day - News", 15, 280), (26, 17), (40, 40, 40))
    d.rectangle((0, 42, width, 88), fill=(255, 255, 255))
    d.line((0, 88, width, 88), fill=(205, 205, 205))
    for i in range(3):
        d.ellipse((16 + 30 * i, 55, 36 + 30 * i, 75), fill=(120, 120, 120))
    d.rounded_rectangle((120, 50, width - 140, 80), radius=15, fill=(241, 243, 244))
    paint(page, text_mask("https://news.example.com/world/photo-of-the-day", 14), (140, 58),
          (70, 70, 70))
    paint(page, text_mask("Photo of the day", 34), (60, 112), (20, 20, 20))
    photo = fit(im, round(width * 0.58), height - 170 - 50)
    page.paste(photo, (60, 170))
    x = 60 + photo.width + 40
    for i in range(16):
        length = r.randrange(200, width - x - 60)
        d.rectangle((x, 180 + 28 * i, x + length, 192 + 28 * i), fill=(215, 215, 215))
    return page


def screenshot_phone(im, r, g):
    """The photo in a social app's feed on a phone (540x1170), as a screen grab."""
    width, height = 540, 1170
    screen = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(screen)
    paint(screen, text_mask("9:41", 20), (28, 14), (0, 0, 0))
    d.rectangle((width - 70, 16, width - 30, 32), outline=(0, 0, 0), width=2)
    d.line((0, 100, width, 100), fill=(225, 225, 225))
    d.ellipse((16, 112, 64, 160), fill=(r.randrange(256), 120, 180))
    paint(screen, text_mask(f"user_{r.randrange(10000):04d}", 20), (76, 126), (0, 0, 0))
    photo = fit(im, width, 700)
    screen.paste(photo, ((width - photo.width) // 2, 176))
    y = 176 + photo.height + 16
    for i in range(4):
        d.ellipse((16 + 48 * i, y, 48 + 48 * i, y + 32), outline=(0, 0, 0), width=3)
    paint(screen, fitted_text("1,024 likes", 20, 300), (16, y + 48), (0, 0, 0))
    for i in range(3):
        d.rectangle((16, y + 86 + 26 * i, 16 + r.randrange(200, 500), y + 98 + 26 * i),
                    fill=(200, 200, 200))
    return screen


PNG = ("png", {})


class Edit:
    def __init__(self, family, name, edit, encoding=PNG):
        self.family, self.name, self.edit, self.encoding = family, name, edit, encoding


def jpeg(quality):
    return ("jpeg", {"quality": quality})


T = Image.Transpose
EDITS = [
    Edit("re-encode", "jpeg-90", None, jpeg(90)),
    Edit("re-encode", "jpeg-70", None, jpeg(70)),
    Edit("re-encode", "jpeg-50", None, jpeg(50)),
    Edit("re-encode", "jpeg-30", None, jpeg(30)),
    Edit("re-encode", "webp-80", None, ("webp", {"quality": 80})),
    Edit("re-encode", "webp-40", None, ("webp", {"quality": 40})),
    Edit("re-encode", "gif-256", None, ("gif", {"colors": 256})),
    Edit("re-encode", "gif-32", None, ("gif", {"colors": 32})),
    Edit("scale", "down-50", scale(0.5)),
    Edit("scale", "down-25", scale(0.25)),
    Edit("scale", "up-150", scale(1.5, resample=Image.Resampling.BICUBIC)),
    Edit("scale", "squash-x70", scale(0.7, 1.0)),
    Edit("scale", "squash-y60", scale(1.0, 0.6)),
    Edit("crop", "crop-centre-5", crop_centre(0.05)),
    Edit("crop", "crop-centre-10", crop_centre(0.10)),
    Edit("crop", "crop-centre-15", crop_centre(0.15)),
    Edit("crop", "crop-centre-20", crop_centre(0.20)),
    Edit("crop", "crop-off-5", crop_off_centre(0.05)),
    Edit("crop", "crop-off-10", crop_off_centre(0.10)),
    Edit("crop", "crop-off-15", crop_off_centre(0.15)),
    Edit("crop", "crop-off-20", crop_off_centre(0.20)),
    Edit("pad", "border-black-5", border(0.05, (0, 0, 0))),
    Edit("pad", "border-white-10", border(0.10, (255, 255, 255))),
    Edit("pad", "letterbox", pad(0, 1 / 6, 0, 1 / 6, (0, 0, 0))),
    Edit("pad", "pillarbox", pad(1 / 6, 0, 1 / 6, 0, (0, 0, 0))),
    Edit("pad", "pad-16x9", pad_to_aspect(16 / 9)),
    Edit("pad", "pad-colour-15", pad(0.15, 0.15, 0.15, 0.15, random_colour)),
    Edit("pad", "pad-bottom-white-20", pad(0, 0, 0, 0.2, (255, 255, 255))),
    Edit("overlay", "logo-corner", logo_corner),
    Edit("overlay", "text-corner", text_corner),
    Edit("overlay", "watermark-tiled", watermark_tiled),
    Edit("overlay", "watermark-centre", watermark_centre),
    Edit("meme", "caption-top-bottom", caption_top_bottom),
    Edit("meme", "caption-top", caption_top),
    Edit("meme", "text-over", text_over),
    Edit("colour", "brighter-30", enhance(ImageEnhance.Brightness, 1.3)),
    Edit("colour", "darker-30", enhance(ImageEnhance.Brightness, 0.7)),
    Edit("colour", "contrast-150", enhance(ImageEnhance.Contrast, 1.5)),
    Edit("colour", "contrast-60", enhance(ImageEnhance.Contrast, 0.6)),
    Edit("colour", "saturate-180", enhance(ImageEnhance.Color, 1.8)),
    Edit("colour", "grayscale", grayscale),
    Edit("colour", "gamma-0.7", gamma(0.7)),
    Edit("colour", "gamma-1.4", gamma(1.4)),
    Edit("colour", "hue-30", hue_shift(30)),
    Edit("colour", "sepia", sepia),
    Edit("blur-noise", "blur-1", lambda im, r, g: im.filter(ImageFilter.GaussianBlur(1))),
    Edit("blur-noise", "blur-3", lambda im, r, g: im.filter(ImageFilter.GaussianBlur(3))),
    Edit("blur-noise", "noise-10", gaussian_noise(10)),
    Edit("blur-noise", "noise-25", gaussian_noise(25)),
    Edit("blur-noise", "salt-pepper-2", salt_and_pepper(0.02)),
    Edit("blur-noise", "sharpen", lambda im, r, g: im.filter(
        ImageFilter.UnsharpMask(radius=2, percent=200, threshold=0))),
    Edit("dihedral", "flip-h", transpose(T.FLIP_LEFT_RIGHT)),
    Edit("dihedral", "flip-v", transpose(T.FLIP_TOP_BOTTOM)),
    Edit("dihedral", "rot90", transpose(T.ROTATE_90)),
    Edit("dihedral", "rot180", transpose(T.ROTATE_180)),
    Edit("dihedral", "rot270", transpose(T.ROTATE_270)),
    Edit("dihedral", "transpose", transpose(T.TRANSPOSE)),
    Edit("dihedral", "transverse", transpose(T.TRANSVERSE)),
    Edit("rotate", "rot-2", rotate(2, crop=False)),
    Edit("rotate", "rot-5", rotate(5, crop=False)),
    Edit("rotate", "rot-10", rotate(10, crop=False)),
    Edit("rotate", "rot-2-crop", rotate(2, crop=True)),
    Edit("rotate", "rot-5-crop", rotate(5, crop=True)),
    Edit("rotate", "rot-10-crop", rotate(10, crop=True)),
    Edit("combo", "screenshot-browser", screenshot_browser, jpeg(80)),
    Edit("combo", "screenshot-phone", screenshot_phone, jpeg(85)),
    Edit("combo", "crop-caption", chain(crop_centre(0.10), caption_top)),
    Edit("combo", "flip-crop", chain(transpose(T.FLIP_LEFT_RIGHT), crop_off_centre(0.10))),
    Edit("combo", "down-jpeg", scale(0.5), jpeg(50)),
    Edit("combo", "rot-crop-jpeg", rotate(5, crop=True), jpeg(70)),
    Edit("combo", "repost", chain(scale(0.5), text_corner, border(0.05, (255, 255, 255))),
         jpeg(70)),
]

ORIGINAL = Edit("original", "original", None)


def crop_to_aspect(aspect):
    """The centred crop of that aspect (width / height): what apps do to fit a square."""
    def edit(im, r, g):
        w, h = im.size
        cw, ch = min(w, round(h * aspect)), min(h, round(w / aspect))
        left, top = (w - cw) // 2, (h - ch) // 2
        return im.crop((left, top, left + cw, top + ch))
    return edit


def vignette(im, r, g):
    """Edges darkened towards the corners (to 35 % of their brightness), as photo filters do."""
    w, h = im.size
    y, x = np.ogrid[:h, :w]
    distance = np.hypot((x - w / 2) / (w / 2), (y - h / 2) / (h / 2)) / math.sqrt(2)
    factor = 1 - 0.65 * np.clip((distance - 0.3) / 0.7, 0, 1) ** 2
    return Image.fromarray((np.asarray(im) * factor[:, :, None]).astype(np.uint8))


def keystone(im, r, g):
    """Seen from slightly below: the top edge 12 % narrower than the bottom, on black."""
    w, h = im.size
    inset = 0.06 * w
    # PERSPECTIVE maps output to input: the output's top corners come from further out.
    src = [(0, 0), (w, 0), (w, h), (0, h)]
    dst = [(inset, 0), (w - inset, 0), (w, h), (0, h)]
    matrix = np.linalg.solve(
        np.array([[x, y, 1, 0, 0, 0, -u * x, -u * y] for (x, y), (u, _) in zip(dst, src)]
                 + [[0, 0, 0, x, y, 1, -v * x, -v * y] for (x, y), (_, v) in zip(dst, src)]),
        np.array([u for u, _ in src] + [v for _, v in src], dtype=float))
    return im.transform((w, h), Image.Transform.PERSPECTIVE, tuple(matrix),
                        Image.Resampling.BICUBIC, fillcolor=(0, 0, 0))


def sticker_centre(im, r, g):
    """An opaque round sticker with a word on it, a fifth of the width, over the middle."""
    im = im.copy()
    side = max(16, round(im.width * 0.2))
    x, y = (im.width - side) // 2, (im.height - side) // 2
    disc = Image.new("L", (side, side), 0)
    ImageDraw.Draw(disc).ellipse((0, 0, side - 1, side - 1), fill=255)
    paint(im, disc, (x, y), random_colour(r))
    centred_text(im, "LOL", (x, y, x + side, y + side), side * 0.35, (255, 255, 255))
    return im


def blurred_fill(aspect):
    """Fitted into a frame of that aspect whose margins are the photo itself, zoomed to fill
    the frame and blurred: how short-video apps show a landscape photo in portrait."""
    def edit(im, r, g):
        w, h = im.size
        fw, fh = (w, math.ceil(w / aspect)) if w / h > aspect else (math.ceil(h * aspect), h)
        zoom = max(fw / w, fh / h)
        back = im.resize((math.ceil(w * zoom), math.ceil(h * zoom)), Image.Resampling.BILINEAR)
        left, top = (back.width - fw) // 2, (back.height - fh) // 2
        frame = back.crop((left, top, left + fw, top + fh)).filter(ImageFilter.GaussianBlur(20))
        frame.paste(im, ((fw - w) // 2, (fh - h) // 2))
        return frame
    return edit


def crop_sides(left, top, right, bottom):
    """Removes those fractions of the width (left, right) and height (top, bottom); a pair
    (low, high) draws a seeded fraction in that range."""
    def edit(im, r, g):
        cut = [r.uniform(*f) if isinstance(f, tuple) else f for f in (left, top, right, bottom)]
        w, h = im.size
        return im.crop((round(w * cut[0]), round(h * cut[1]),
                        w - round(w * cut[2]), h - round(h * cut[3])))
    return edit


# Edits past what the modes were built for (`--beyond`): bigger crops and turns, framings and
# overlays the 71 edits lack. Reported as their own family, to see where the modes stop.
BEYOND_EDITS = [
    Edit("beyond", "square-centre", crop_to_aspect(1.0)),
    Edit("beyond", "crop-centre-9", crop_centre(0.09)),
    Edit("beyond", "crop-off-6", crop_off_centre(0.06)),
    Edit("beyond", "crop-off-14", crop_off_centre(0.14)),
    Edit("beyond", "crop-width-10", crop_sides(0.05, 0, 0.05, 0)),
    Edit("beyond", "crop-uneven-8", crop_sides(*[(0, 0.08)] * 4)),
    Edit("beyond", "crop-centre-30", crop_centre(0.30)),
    Edit("beyond", "crop-off-30", crop_off_centre(0.30)),
    Edit("beyond", "rot-15-crop", rotate(15, crop=True)),
    Edit("beyond", "keystone", keystone),
    Edit("beyond", "vignette", vignette),
    Edit("beyond", "sticker-centre", sticker_centre),
    Edit("beyond", "blurred-fill-9x16", blurred_fill(9 / 16)),
    Edit("beyond", "down-10-jpeg", scale(0.1), jpeg(75)),
    Edit("beyond", "jpeg-10", None, jpeg(10)),
    Edit("beyond", "flip-caption", chain(transpose(T.FLIP_LEFT_RIGHT), caption_top)),
    Edit("beyond", "square-caption-jpeg", chain(crop_to_aspect(1.0), caption_top), jpeg(70)),
]


def encode(image, encoding):
    fmt, options = encoding
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, "PNG", compress_level=1)  # lossless all the same; level 6 is 4x slower
    elif fmt == "jpeg":
        rgb(image).save(out, "JPEG", quality=options["quality"])
    elif fmt == "webp":
        rgb(image).save(out, "WEBP", quality=options["quality"])
    elif fmt == "gif":
        rgb(image).quantize(colors=options["colors"]).save(out, "GIF")
    else:
        raise ValueError(fmt)
    return out.getvalue(), fmt


def make_copy(edit, name, photo, seed):
    """(bytes, extension, (width, height)) of photo `name` under `edit`, seeded by both."""
    key = f"{seed}/{edit.name}/{name}"
    r = random.Random(key)
    g = np.random.default_rng(zlib.crc32(key.encode()))
    image = Image.fromarray(photo)
    if edit.edit is not None:
        image = edit.edit(image, r, g)
    data, ext = encode(image, edit.encoding)
    return data, ext, image.size


# ---- The reference ----

def reference_hashes(data):
    """(8 dihedral PDQ bit vectors, the first being the plain hash; quality) via Pillow."""
    import pdqhash

    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image.convert("RGB"))
    hashes, quality = pdqhash.compute_dihedral(pixels)
    return np.array(hashes, dtype=bool), int(quality)


def to_hex(bits):
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


# ---- The server and the client ----

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Server:
    """`hashsieve serve` on 127.0.0.1:0 with its store in `workdir`; its address from its log."""

    def __init__(self, binary, workdir):
        self.log_path = os.path.join(workdir, "serve.log")
        self.log = open(self.log_path, "wb")
        env = dict(os.environ, NO_COLOR="1", RUST_LOG="info")
        self.process = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", os.path.join(workdir, "data")],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env)
        deadline = time.monotonic() + 60
        while True:
            match = re.search(r"serving.*?address=(\S+)", self.log_text())
            if match:
                self.address = match.group(1)
                return
            if self.process.poll() is not None:
                raise Failure(f"server exited with status {self.process.returncode} at start:\n"
                              + self.log_tail())
            if time.monotonic() > deadline:
                self.process.kill()
                self.process.wait()
                raise Failure("server did not log 'serving' within 60 s:\n" + self.log_tail())
            time.sleep(0.05)

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return ANSI.sub("", f.read().decode("utf-8", "replace"))

    def log_tail(self, lines=20):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def check_alive(self):
        if self.process.poll() is not None:
            raise Failure(f"server exited with status {self.process.returncode}:\n" + self.log_tail())

    def stop(self):
        """SIGTERM, as an orchestrator stops it; returns its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise Failure("server did not stop within 60 s of SIGTERM")
        self.log.close()
        return self.process.returncode


def load_stubs(workdir):
    """Generates the Python gRPC stubs of proto/ into workdir and imports them."""
    import grpc_tools
    from grpc_tools import protoc

    out = os.path.join(workdir, "stubs")
    os.makedirs(out)
    proto_root = os.path.join(REPO, "proto")
    files = sorted(os.path.relpath(os.path.join(d, f), proto_root)
                   for d, _, names in os.walk(proto_root) for f in names if f.endswith(".proto"))
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    status = protoc.main(["grpc_tools.protoc", f"-I{proto_root}", f"-I{include}",
                          f"--python_out={out}", f"--grpc_python_out={out}", *files])
    if status != 0:
        raise Failure(f"grpc_tools.protoc failed ({status}) on {files}")
    sys.path.insert(0, out)
    from hashsieve.v1 import banks_pb2, banks_pb2_grpc, matcher_pb2, matcher_pb2_grpc, types_pb2
    return types_pb2, matcher_pb2, matcher_pb2_grpc, banks_pb2, banks_pb2_grpc


class Client:
    def __init__(self, address, stubs):
        import grpc

        self.grpc = grpc
        (self.types, self.matcher_pb2, matcher_grpc, self.banks_pb2, banks_grpc) = stubs
        options = [("grpc.max_send_message_length", 64 << 20),
                   ("grpc.max_receive_message_length", 64 << 20)]
        self.channel = grpc.insecure_channel(address, options=options)
        try:
            grpc.channel_ready_future(self.channel).result(timeout=30)
        except grpc.FutureTimeoutError:
            raise Failure(f"no gRPC connection to {address} within 30 s")
        self.matcher = matcher_grpc.MatcherStub(self.channel)
        self.banks = banks_grpc.BanksStub(self.channel)

    def algorithms(self, names):
        return [self.types.Algorithm.Value("ALGORITHM_" + name) for name in names]

    def call(self, what, method, request):
        try:
            return method(request, timeout=RPC_TIMEOUT_S)
        except self.grpc.RpcError as error:
            raise Failure(f"{what}: {error.code().name}: {error.details()}")

    def create_bank(self, name, thresholds):
        bank = self.types.Bank(name=name, action=self.types.ACTION_BLOCK, enabled=True,
                               thresholds=self.types.Thresholds(**thresholds),
                               description="bench/robustness")
        return self.call(f"CreateBank {name}", self.banks.CreateBank,
                         self.banks_pb2.CreateBankRequest(bank=bank))

    def add_image(self, bank, entry_id, data, algorithms, options):
        request = self.banks_pb2.AddImageRequest(bank=bank, image=data, id=entry_id,
                                                 algorithms=self.algorithms(algorithms),
                                                 source="bench/robustness", **options)
        return self.call(f"AddImage {entry_id}", self.banks.AddImage, request)

    def entry_count(self, bank):
        return self.call(f"GetBank {bank}", self.banks.GetBank,
                         self.banks_pb2.GetBankRequest(name=bank)).entry_count

    def check_image(self, what, bank, data, options):
        fields = dict(options)
        if "algorithms" in fields:
            fields["algorithms"] = self.algorithms(fields["algorithms"])
        request = self.matcher_pb2.CheckImageRequest(image=data, banks=[bank], **fields)
        start = time.perf_counter()
        response = self.call(f"CheckImage {what}", self.matcher.CheckImage, request)
        return response, time.perf_counter() - start


# ---- The run ----

def bank_key(mode):
    return json.dumps(mode["bank"], sort_keys=True)


def pdq_of(response, types):
    for computed in response.hashes:
        if computed.algorithm == types.ALGORITHM_PDQ:
            return computed.hex, computed.quality
    return None, None


def progress(message):
    print(message, file=sys.stderr, flush=True)


def run(args):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                            stdout=subprocess.PIPE, text=True).stdout.strip() or "unknown"
    modes = [m for m in MODES if not args.modes or m["name"] in args.modes]
    unknown = set(args.modes or []) - {m["name"] for m in MODES}
    if unknown or not modes:
        raise Failure(f"unknown mode(s) {sorted(unknown)}; modes: {[m['name'] for m in MODES]}")
    edits = [e for e in EDITS + (BEYOND_EDITS if args.beyond else [])
             if not args.edits or any(s in e.name or s == e.family for s in args.edits)]
    if not edits:
        raise Failure(f"no edit matches {args.edits}")
    if not os.access(args.binary, os.X_OK):
        raise Failure(f"no executable at {args.binary} (build it, or pass --binary)")

    # Originals: lossless PNG of each photo's pixels. Photos whose PDQ quality is under 50 are
    # left out, as AddImage refuses them by default and hash-sharing programmes discard them.
    progress("loading photos")
    photos, skipped = [], []
    try:
        sources = (photo_sources.load_held_out_photos() if args.set == "held-out"
                   else photo_sources.load_photos())
    except OSError as error:
        raise Failure(str(error)) from error
    for name, pixels in sources:
        data, _, _ = make_copy(ORIGINAL, name, pixels, args.seed)
        hashes, quality = reference_hashes(data)
        if quality < MIN_QUALITY:
            skipped.append((name, quality))
            continue
        photos.append({"name": name, "pixels": pixels, "png": data, "ref": hashes[0],
                       "quality": quality})
    if args.photos:
        photos = photos[:args.photos]
    if len(photos) < 2:
        raise Failure("need at least 2 photos")
    names = [p["name"] for p in photos]
    ref_originals = np.stack([p["ref"] for p in photos])  # photos x 256

    # Distractors: stored like the originals, never edited or checked, so that every copy
    # has more unrelated images to match by mistake. Those too flat, and any that is one of
    # the photos (within the threshold of its PDQ), are left out.
    distractors = []
    if not args.no_distractors:
        progress("loading distractors")
        # The held-out photos also have the development photos to match by mistake.
        unrelated = photo_sources.load_distractors()
        if args.set == "held-out":
            unrelated += photo_sources.load_photos()
        for name, pixels in unrelated:
            data, _, _ = make_copy(ORIGINAL, name, pixels, args.seed)
            hashes, quality = reference_hashes(data)
            nearest = int((hashes[0][None, :] != ref_originals).sum(axis=1).min())
            if quality >= MIN_QUALITY and nearest > PDQ_THRESHOLD:
                distractors.append({"name": name, "png": data, "ref": hashes[0]})
    # What a copy may match by mistake, for the reference too: the photos, then the distractors.
    candidates = names + [d["name"] for d in distractors]
    ref_candidates = np.concatenate([ref_originals] + [d["ref"][None, :] for d in distractors])

    with tempfile.TemporaryDirectory(prefix="hashsieve-robustness-") as workdir:
        stubs = load_stubs(workdir)
        server = Server(args.binary, workdir)
        progress(f"server at {server.address}")
        try:
            client = Client(server.address, stubs)
            types = client.types
            banks = {}
            for mode in modes:
                key = bank_key(mode)
                if key not in banks:
                    banks[key] = f"ROBUSTNESS_{len(banks) + 1}"
                    client.create_bank(banks[key], mode["bank"]["thresholds"])
                    options = {k: v for k, v in mode["bank"].items() if k in ADD_OPTIONS}
                    expected = 0
                    for photo in photos + distractors:
                        response = client.add_image(banks[key], photo["name"], photo["png"],
                                                    mode["bank"]["algorithms"], options)
                        expected += response.added
                        # Derived pictures add more (some may coincide or be too flat).
                        if response.added < len(mode["bank"]["algorithms"]) or (
                                not options and response.added != len(mode["bank"]["algorithms"])):
                            raise Failure(
                                f"AddImage {photo['name']} into {banks[key]}: added "
                                f"{response.added}, updated {response.updated} (another photo "
                                "with the same hash?)")
                    count = client.entry_count(banks[key])
                    if count != expected:
                        raise Failure(f"{banks[key]} holds {count} entries, expected {expected}")
            progress(f"loaded {len(photos)} originals and {len(distractors)} distractors "
                     f"into {len(banks)} bank(s)")

            cases = []
            latencies = {m["name"]: [] for m in modes}
            agreement = []  # (format, bits apart) of the service's and pdqhash's PDQ of each file
            for index, photo in enumerate(photos):
                progress(f"[{index + 1}/{len(photos)}] {photo['name']}")
                for edit in [ORIGINAL] + edits:
                    data, ext, size = make_copy(edit, photo["name"], photo["pixels"], args.seed)
                    if args.keep:
                        folder = os.path.join(args.keep, edit.name)
                        os.makedirs(folder, exist_ok=True)
                        with open(os.path.join(folder, f"{photo['name']}.{ext}"), "wb") as f:
                            f.write(data)
                    case = {"photo": photo["name"], "edit": edit.name, "format": ext,
                            "bytes": len(data), "size": list(size), "modes": {}}
                    try:
                        hashes, quality = reference_hashes(data)
                    except Exception as error:  # noqa: BLE001 - any decode error is fatal here
                        raise Failure(f"Pillow cannot decode {edit.name} of {photo['name']}: {error}")
                    distances = (hashes[:, None, :] != ref_candidates[None, :, :]).sum(axis=2)
                    plain, best = distances[0], distances.min(axis=0)
                    for label, row in (("ref", plain), ("ref-dih", best)):
                        case["modes"][label] = {
                            "own": int(row[index]) if row[index] <= PDQ_THRESHOLD else None,
                            "false": [candidates[j] for j in np.flatnonzero(row <= PDQ_THRESHOLD)
                                      if j != index],
                        }
                    case["ref_distance"] = int(plain[index])
                    case["ref_dihedral_distance"] = int(best[index])
                    case["ref_quality"] = quality
                    others = np.delete(distances, index, axis=1)
                    case["ref_nearest_other"] = int(others[0].min())
                    case["ref_dihedral_nearest_other"] = int(others.min())
                    # Alternate the order of the modes, so neither gets the warmer server.
                    for mode in modes if len(cases) % 2 == 0 else modes[::-1]:
                        response, elapsed = client.check_image(
                            f"{edit.name} of {photo['name']} ({mode['name']})",
                            banks[bank_key(mode)], data, mode["request"])
                        latencies[mode["name"]].append(elapsed)
                        own = [m for m in response.matches if m.entry_id == photo["name"]]
                        others = sorted({m.entry_id for m in response.matches} - {photo["name"]})
                        result = {"own": min(m.distance for m in own) if own else None,
                                  "false": others}
                        if own:
                            nearest = min(own, key=lambda m: m.distance)
                            result["transform"] = types.Transform.Name(nearest.transform)
                        hex_, pdq_quality = pdq_of(response, types)
                        result["quality"] = pdq_quality
                        case["modes"][mode["name"]] = result
                        if hex_ is not None and "hex" not in case:
                            case["hex"] = hex_
                            bits = np.unpackbits(np.frombuffer(bytes.fromhex(hex_), np.uint8))
                            case["ref_hex"] = to_hex(hashes[0])
                            agreement.append((ext, int((bits.astype(bool) != hashes[0]).sum())))
                    cases.append(case)
                server.check_alive()
        except BaseException:
            server.stop()
            raise
        status = server.stop()
        if status != 0:
            raise Failure(f"server exited with status {status} on SIGTERM:\n{server.log_tail()}")

    return {
        "date": stamp, "commit": commit, "binary": args.binary, "seed": args.seed,
        "set": args.set,
        "threshold": PDQ_THRESHOLD,
        "photos": names, "distractors": [d["name"] for d in distractors],
        "skipped_low_quality": [{"photo": n, "quality": q} for n, q in skipped],
        "modes": [{k: m[k] for k in ("name", "about", "bank", "request")} for m in modes]
                 + [{"name": n, "about": a} for n, a in REFERENCE_MODES],
        "edits": [{"family": e.family, "name": e.name, "encoding": e.encoding[0]} for e in edits],
        "latency_ms": {name: {"median": 1e3 * statistics.median(times),
                              "p90": 1e3 * float(np.percentile(times, 90)), "calls": len(times)}
                       for name, times in latencies.items()},
        "hash_agreement": {
            "files": len(agreement), "equal": sum(bits == 0 for _, bits in agreement),
            "max_bits": max((bits for _, bits in agreement), default=0),
            "differ_by_format": {fmt: sum(f == fmt and bits > 0 for f, bits in agreement)
                                 for fmt in sorted({f for f, _ in agreement})}},
        "cases": cases,
    }


def summarise(result):
    """Adds recall per edit and mode, means, false matches; returns the printed report."""
    modes = [m["name"] for m in result["modes"]]
    photos = result["photos"]
    n = len(photos)
    # Each copy or original could match any other photo or any distractor by mistake.
    others = n - 1 + len(result.get("distractors", []))
    by_edit = {}
    for case in result["cases"]:
        by_edit.setdefault(case["edit"], []).append(case)
    rows = []
    for edit in [{"family": "original", "name": "original"}] + result["edits"]:
        cases = by_edit[edit["name"]]
        row = {"family": edit["family"], "edit": edit["name"], "photos": len(cases),
               "matched": {m: sum(c["modes"][m]["own"] is not None for c in cases) for m in modes},
               "false": {m: sum(len(c["modes"][m]["false"]) for c in cases) for m in modes},
               "ref_median_distance": statistics.median(c["ref_distance"] for c in cases),
               "ref_low_quality": sum(c["ref_quality"] < MIN_QUALITY for c in cases)}
        row["recall"] = {m: row["matched"][m] / len(cases) for m in modes}
        rows.append(row)
    edit_rows = rows[1:]
    families = {}
    for row in edit_rows:
        families.setdefault(row["family"], []).append(row)
    summary = {"rows": rows, "modes": {}, "families": {}}
    for m in modes:
        edited_false = sum(r["false"][m] for r in edit_rows)
        original_false = rows[0]["false"][m]
        edited_pairs = sum(r["photos"] for r in edit_rows) * others
        original_pairs = n * others
        summary["modes"][m] = {
            "mean_recall": statistics.mean(r["recall"][m] for r in edit_rows) if edit_rows else None,
            "originals_self_matched": rows[0]["matched"][m],
            "false_matches": edited_false + original_false,
            "pairs": edited_pairs + original_pairs,
            "false_rate": (edited_false + original_false) / (edited_pairs + original_pairs),
            "false_edited_vs_originals": edited_false, "edited_pairs": edited_pairs,
            "false_originals_vs_originals": original_false, "original_pairs": original_pairs,
        }
        if m in result["latency_ms"]:
            summary["modes"][m]["latency_ms"] = result["latency_ms"][m]
    for family, members in families.items():
        summary["families"][family] = {
            m: statistics.mean(r["recall"][m] for r in members) for m in modes}
    result["summary"] = summary

    lines = [f"# bench/robustness, {result['date']}, commit {result['commit']}", ""]
    held_out = result.get("set") == "held-out"
    lines.append(f"{n} {'held-out ' if held_out else ''}photos (bench/photos.py; left out for PDQ quality < {MIN_QUALITY}: "
                 + (", ".join(f"{s['photo']} ({s['quality']})" for s in result["skipped_low_quality"])
                    or "none") + f"), {len(edit_rows)} edits, seed {result['seed']}, "
                 f"match at distance <= {result['threshold']}; "
                 f"{len(result.get('distractors', []))} distractors (opencv-doc samples"
                 f"{' and the development photos' if held_out else ''}, "
                 "stored in every bank, never checked).")
    lines.append("Modes: " + "; ".join(f"`{m['name']}`: {m['about']}" for m in result["modes"]) + ".")
    lines.append("Recall: the fraction of photos whose edited copy matched its own original.")
    lines.append("")
    header = ["family", "edit"] + modes + ["ref dist", "q<50"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in rows:
        cells = [row["family"], row["edit"]] + [f"{row['recall'][m]:.2f}" for m in modes]
        cells += [f"{row['ref_median_distance']:g}", str(row["ref_low_quality"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("`ref dist`: median Hamming distance between the copy's and its original's "
                 "pdqhash PDQ; `q<50`: copies whose pdqhash quality is under 50.")
    lines.append("")
    lines.append("| family | edits | " + " | ".join(modes) + " |")
    lines.append("|---|---|" + "---|" * len(modes))
    for family, means in summary["families"].items():
        lines.append(f"| {family} | {len(families[family])} | "
                     + " | ".join(f"{means[m]:.2f}" for m in modes) + " |")
    if summary["families"]:
        lines.append(f"| mean of families | {len(edit_rows)} | " + " | ".join(
            f"{statistics.mean(f[m] for f in summary['families'].values()):.2f}" for m in modes)
            + " |")
    lines.append("")
    lines.append("| mode | mean recall | false matches | of pairs | rate | copies vs others "
                 "| originals vs others | CheckImage p50 ms | p90 ms |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for m, s in summary["modes"].items():
        latency = s.get("latency_ms")
        lines.append(
            f"| {m} | {s['mean_recall']:.3f} | {s['false_matches']} | {s['pairs']:,} "
            f"| {s['false_rate']:.2e} | {s['false_edited_vs_originals']} of {s['edited_pairs']:,} "
            f"| {s['false_originals_vs_originals']} of {s['original_pairs']:,} "
            + (f"| {latency['median']:.2f} | {latency['p90']:.2f} |" if latency else "| - | - |"))
    lines.append("")
    for m, s in summary["modes"].items():
        if s["originals_self_matched"] != n:
            lines.append(f"WARNING: in mode {m} only {s['originals_self_matched']} of {n} "
                         "originals matched their own entry")
    false_pairs = {}
    for case in result["cases"]:
        for m in modes:
            for other in case["modes"][m]["false"]:
                false_pairs.setdefault((case["edit"], case["photo"], other), []).append(m)
    if false_pairs:
        lines.append("False matches (copy of photo -> other photo's entry: modes):")
        for (edit, photo, other), in_modes in sorted(false_pairs.items()):
            lines.append(f"- {edit} of {photo} -> {other}: {', '.join(in_modes)}")
        lines.append("")
    nearest = sorted(c["ref_nearest_other"] for c in result["cases"])
    nearest_dihedral = sorted(c["ref_dihedral_nearest_other"] for c in result["cases"])
    lines.append(f"Nearest different photo (pdqhash PDQ of a file against every other photo's and distractor's "
                 f"original, over {len(nearest)} files): plain {nearest[0]} bits, 1st percentile "
                 f"{nearest[len(nearest) // 100]}, median {statistics.median(nearest):g}; dihedral "
                 f"{nearest_dihedral[0]} bits, 1st percentile "
                 f"{nearest_dihedral[len(nearest_dihedral) // 100]}.")
    agreement = result["hash_agreement"]
    differ = ", ".join(f"{fmt} {count}" for fmt, count in agreement["differ_by_format"].items()
                       if count)
    lines.append(f"Hash agreement, service PDQ vs pdqhash on the same files: {agreement['equal']} of "
                 f"{agreement['files']} equal" + (f"; the others ({differ}) at most "
                                                   f"{agreement['max_bits']} bits apart" if differ else "")
                 + ".")
    return "\n".join(lines)


def write_json(path, result):
    """Indented, except one line per case, so the file stays small and diffs by case."""
    cases = result["cases"]
    text = json.dumps({**result, "cases": None}, indent=1)
    lines = ",\n".join("  " + json.dumps(case, separators=(",", ":")) for case in cases)
    text = text.replace('"cases": null', '"cases": [\n' + lines + "\n ]")
    with open(path, "w") as f:
        f.write(text + "\n")


def main():
    default_binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")),
                                  "release", "hashsieve")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, help="only the first N photos")
    parser.add_argument("--edits", type=lambda s: s.split(","),
                        help="only edits whose name contains one of these (comma-separated) "
                             "substrings, or whose family is one of them")
    parser.add_argument("--modes", type=lambda s: s.split(","), help="only these modes")
    parser.add_argument("--keep", metavar="DIR", help="write every file checked to DIR/EDIT/PHOTO.EXT")
    parser.add_argument("--binary", default=default_binary, help="the hashsieve binary")
    parser.add_argument("--json", metavar="FILE", help="write the whole result as JSON")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--beyond", action="store_true",
                        help="add the edits past what the modes were built for (family beyond)")
    parser.add_argument("--set", choices=["dev", "held-out"], default="dev",
                        help="the photos to edit: those the modes were developed on, or the "
                             "held-out wallpaper photos (bench/photos.py)")
    parser.add_argument("--list", action="store_true", help="list the modes and edits and exit")
    parser.add_argument("--no-distractors", action="store_true",
                        help="store only the photos (no opencv-doc samples as distractors)")
    args = parser.parse_args()
    if args.list:
        for m in MODES:
            print(f"mode\t{m['name']}\t{m['about']}")
        for e in EDITS + BEYOND_EDITS:
            print(f"edit\t{e.family}\t{e.name}\t{e.encoding[0]}")
        return 0
    try:
        result = run(args)
    except Failure as error:
        print(f"bench/robustness: {error}", file=sys.stderr)
        return 1
    report = summarise(result)
    print(report)
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
