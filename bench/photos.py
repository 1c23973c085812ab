"""Real photographs for the benchmarks, from files that pip-installable packages and this
repository ship (no download at run time).

Sources, in this order (each loaded as 8-bit RGB; grey photos stacked to 3 channels):
- scikit-image's bundled samples: astronaut, chelsea, coffee, rocket, hubble_deep_field,
  retina, immunohistochemistry, camera, moon, coins, grass, gravel, brick, cell,
  motorcycle_left (skimage/data/*.png|jpg inside the wheel);
- scikit-learn's bundled samples: china.jpg, flower.jpg (sklearn/datasets/images/);
- this repository's testdata: the bridge photo (testdata/pdq/bridge-mods/aaa-orig.jpg), the
  LabelMe photos (testdata/pdq/reg-test-input/labelme-subset/q*.jpg) and
  testdata/pdq/misc-images/small.jpg.
Distractors (`load_distractors`): the sample images of Debian's opencv-doc package.

A held-out set (`load_held_out_photos`), never looked at while the matching modes were built:
the photographs among the desktop wallpapers of Debian's lomiri-wallpapers-16.04,
lomiri-wallpapers-20.04 and mate-backgrounds packages (the drawings and renders beside them
left out), scaled down to 1024 px on the longer side, as platforms scale uploads.
"""
import glob
import os
import subprocess

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SKIMAGE_NAMES = [
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina",
    "immunohistochemistry", "camera", "moon", "coins", "grass", "gravel", "brick", "cell",
]


def _rgb(array):
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3].astype(np.uint8))


def load_photos():
    """[(name, HxWx3 uint8 array)] of every source photo."""
    import skimage
    import skimage.data
    import sklearn

    photos = []
    for name in SKIMAGE_NAMES:
        photos.append((f"skimage-{name}", _rgb(getattr(skimage.data, name)())))
    skdir = os.path.join(os.path.dirname(skimage.__file__), "data")
    photos.append(("skimage-motorcycle_left",
                   _rgb(Image.open(os.path.join(skdir, "motorcycle_left.png")).convert("RGB"))))
    sldir = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images")
    for name in ["china.jpg", "flower.jpg"]:
        photos.append((f"sklearn-{name[:-4]}",
                       _rgb(Image.open(os.path.join(sldir, name)).convert("RGB"))))
    testdata = [os.path.join("testdata/pdq/bridge-mods/aaa-orig.jpg"),
                os.path.join("testdata/pdq/misc-images/small.jpg")]
    labelme = os.path.join(REPO, "testdata/pdq/reg-test-input/labelme-subset")
    testdata += [os.path.join("testdata/pdq/reg-test-input/labelme-subset", f)
                 for f in sorted(os.listdir(labelme)) if f.endswith(".jpg")]
    for path in testdata:
        name = "testdata-" + os.path.splitext(os.path.basename(path))[0]
        photos.append((name, _rgb(Image.open(os.path.join(REPO, path)).convert("RGB"))))
    return photos


OPENCV_SAMPLES = "/usr/share/doc/opencv-doc/examples/data"
CACHE = os.path.join(REPO, "bench", ".cache")


def package_dir(package, folder, needs=""):
    """`folder` as Debian's `package` installs it: on this machine (if it holds `needs`), or
    from the package fetched with `apt-get download` and unpacked into bench/.cache (once).
    None when neither works."""
    if os.path.exists(os.path.join(folder, needs)):
        return folder
    unpacked = os.path.join(CACHE, package)
    local = os.path.join(unpacked, folder.lstrip("/"))
    if os.path.isdir(local):
        return local
    os.makedirs(CACHE, exist_ok=True)
    try:
        subprocess.run(["apt-get", "download", package], cwd=CACHE, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deb = sorted(glob.glob(os.path.join(CACHE, f"{package}_*.deb")))[-1]
        subprocess.run(["dpkg-deb", "-x", deb, unpacked], check=True)
        os.remove(deb)
    except (OSError, subprocess.CalledProcessError, IndexError):
        return None
    return local if os.path.isdir(local) else None


def opencv_samples_dir():
    """The sample images of Debian's opencv-doc (about 96 MB when fetched)."""
    return package_dir("opencv-doc", OPENCV_SAMPLES)


# The photographs of each wallpaper package (file names under /usr/share/backgrounds), chosen
# by looking at them: the packages also hold drawings and renders, which are not photos.
HELD_OUT_PHOTOS = {
    "lomiri-wallpapers-16.04": [
        "Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Picture_0B_by_freespace.jpg",
        "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg",
        "aitzgorri_by_Aitzol_Berasategi.jpg", "analogpattern_by_Peter_Nerlich.jpg",
        "free_by_Peter_Nerlich.jpg", "friends_by_Aitzol_Berasategi.jpg",
        "greentock_by_Peter_Nerlich.jpg", "life_by_Aitzol_Berasategi.jpg",
        "picosdeeuropa_by_Aitzol_Berasategi.jpg", "seeding_by_Clements_Engelhardt.jpg",
        "sunset_by_Aitzol_Berasategi.jpg",
    ],
    "lomiri-wallpapers-20.04": ["Infinite-Sea_by_Aury88.jpg", "Kleiber_by_Lukas_Baubkus.jpg"],
    "mate-backgrounds": [f"mate/nature/{name}.jpg" for name in [
        "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird",
        "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower"]],
}


def load_held_out_photos(max_side=1024):
    """[(name, HxWx3 uint8 array)] of the held-out photos, each scaled down (Lanczos) so that
    its longer side is at most `max_side`. Fails when a package cannot be had."""
    photos = []
    for package, files in HELD_OUT_PHOTOS.items():
        folder = package_dir(package, "/usr/share/backgrounds", needs=files[0])
        if folder is None:
            raise OSError(f"cannot install or fetch Debian package {package}")
        for file in files:
            image = Image.open(os.path.join(folder, file)).convert("RGB")
            image.thumbnail((max_side, max_side), Image.LANCZOS)
            name = "wallpaper-" + os.path.splitext(os.path.basename(file))[0].split("_by_")[0]
            photos.append((name, _rgb(image)))
    return photos


def load_distractors(min_side=128):
    """[(name, HxWx3 uint8 array)]: unrelated images that are stored but never edited, to
    give false matches more chances: the JPEG and PNG samples of Debian's opencv-doc (photos,
    and some drawings and test charts) with both sides at least `min_side`."""
    folder = opencv_samples_dir()
    if folder is None:
        return []
    out = []
    for path in sorted(glob.glob(os.path.join(folder, "*"))):
        if not path.lower().endswith((".jpg", ".jpeg", ".png")):
            continue
        try:
            image = Image.open(path).convert("RGB")
        except OSError:
            continue
        if min(image.size) >= min_side:
            out.append(("opencv-" + os.path.splitext(os.path.basename(path))[0], _rgb(image)))
    return out


def tiles(photos, side):
    """Non-overlapping side x side crops of every photo, row-major: [(name, array)]."""
    out = []
    for name, photo in photos:
        height, width, _ = photo.shape
        for top in range(0, height - side + 1, side):
            for left in range(0, width - side + 1, side):
                out.append((f"{name}@{left},{top}",
                            np.ascontiguousarray(photo[top:top + side, left:left + side])))
    return out
