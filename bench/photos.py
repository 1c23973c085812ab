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
"""
import os

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
