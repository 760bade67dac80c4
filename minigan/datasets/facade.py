"""CMP facades for pix2pix: the CMP base set (photo + indexed label PNG) or pix2pix A|B images.

Two layouts are read from one folder, found automatically:

  CMP Facade Database: cmp_bNNNN.jpg photos with cmp_bNNNN.png indexed labels, values 1..12
  (anywhere below the folder, e.g. in the zip's 'base' subfolder);
  pix2pix side-by-side: N.jpg of width 2H, photo (A) on the left, colour label map (B) on the right
  (in the folder itself or in its 'train' subfolder, as pix2pix ships them).

The label side is either `labels='onehot'` (12 channels in {0, 1}, class k -> channel k - 1, as
chainer-pix2pix feeds the CMP set) or `labels='color'` (3 channels: the pix2pix colour rendering).
Both layouts give both: CMP labels are painted with LABEL_COLORS, A|B colours are taken to the
nearest of LABEL_COLORS. Photos and colour maps are float32 CHW in [-1, 1].
"""
import os
import re

import numpy as np
from PIL import Image

from .errors import DatasetError, command_line

CLASSES = ("background", "facade", "window", "door", "cornice", "sill", "balcony", "blind",
           "deco", "molding", "pillar", "shop")  # CMP label k is CLASSES[k - 1]
NUM_CLASSES = len(CLASSES)

# The colours of the pix2pix label rendering, class 1..12: modes of the flat regions of all 400
# label halves in the pix2pix facades/train set (JPEG, +-4). They lie on the jet colormap at
# v = 0.093 + 0.078 (k - 1), not at v = (k - 1) / 11: that evener guess sends class 5 (cornice) to
# class 4's colour.
LABEL_COLORS = np.array([
    (0, 0, 222), (0, 50, 254), (0, 130, 254), (0, 206, 254), (34, 254, 226), (114, 254, 142),
    (194, 254, 62), (254, 242, 0), (254, 158, 0), (254, 82, 0), (254, 0, 0), (174, 0, 0)],
    dtype=np.uint8)

DIRECTIONS = ("BtoA", "AtoB")
LABEL_MODES = ("onehot", "color")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def natural_key(name):
    """Sort key that orders '2.jpg' before '10.jpg'."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _nearest_lut():
    """Class index (0..11) of every colour quantized to 5 bits a channel: a 32 KiB table."""
    q = (np.arange(32) * 8 + 4).astype(np.float32)
    grid = np.stack(np.meshgrid(q, q, q, indexing="ij"), -1).reshape(-1, 1, 3)
    return ((grid - LABEL_COLORS.astype(np.float32)) ** 2).sum(-1).argmin(-1).astype(np.uint8)


_LUT = _nearest_lut()


def colors_to_classes(rgb):
    """Nearest label colour of each pixel of an (H, W, 3) uint8 image: class indices 0..11."""
    q = rgb >> 3
    return _LUT[(q[..., 0].astype(np.int32) << 10) | (q[..., 1].astype(np.int32) << 5) | q[..., 2]]


def onehot(classes):
    """(H, W) class indices 0..11 -> (12, H, W) float32 in {0, 1}."""
    return (classes[None] == np.arange(NUM_CLASSES)[:, None, None]).astype(np.float32)


_PALETTE = np.ascontiguousarray(LABEL_COLORS.T, dtype=np.float32) / 127.5 - 1  # (3, 12) in [-1, 1]


def colorize(classes):
    """(H, W) class indices 0..11 -> their label colours, (3, H, W) float32 in [-1, 1]."""
    return np.take(_PALETTE, classes, axis=1)


def to_chw(rgb):
    """(H, W, 3) uint8 image -> (3, H, W) float32 in [-1, 1]."""
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 127.5 - 1.0


def label_image(x):
    """A label input, one-hot (12, H, W) or colour (3, H, W), as a colour image (3, H, W) in [-1, 1]."""
    x = np.asarray(x)
    if x.shape[0] == NUM_CLASSES:
        return colorize(x.argmax(0))
    return x.astype(np.float32)


def randint(rng, high):
    """Uniform integer in [0, high) from a numpy Generator or RandomState."""
    return int(rng.integers(high)) if hasattr(rng, "integers") else int(rng.randint(high))


def crop_flip(arrays, size, rng):
    """The same random size x size crop and horizontal flip of each (H, W, ...) array."""
    h, w = arrays[0].shape[:2]
    x0, y0 = randint(rng, w - size + 1), randint(rng, h - size + 1)
    flip = rng.random() < 0.5
    out = [a[y0:y0 + size, x0:x0 + size] for a in arrays]
    return [a[:, ::-1] for a in out] if flip else out


def split_indices(n, split):
    """The fixed split of n sorted items: the last 10% (at least 1) validate, the rest train."""
    n_val = max(1, n // 10)
    if split == "train":
        return range(0, n - n_val)
    if split == "val":
        return range(n - n_val, n)
    raise DatasetError(f"unknown split {split!r}; use 'train' or 'val'")


def check_options(direction, labels):
    """Reject unknown directions and label modes, and one-hot targets (a tanh cannot make them)."""
    if direction not in DIRECTIONS:
        raise DatasetError(f"unknown direction {direction!r}; use 'BtoA' (labels -> photo) or 'AtoB'")
    if labels not in LABEL_MODES:
        raise DatasetError(f"unknown label mode {labels!r}; use 'onehot' or 'color'")
    if labels == "onehot" and direction == "AtoB":
        raise DatasetError("one-hot labels are an input only; use labels='color' with direction AtoB")


def _header(path):
    """Open an image lazily (header only) and return its size; a bad header is a DatasetError."""
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
        raise DatasetError(f"cannot read image {path}: {type(e).__name__}: {e}") from None


def _decode(path, mode=None, draft=None):
    """Decode a whole image (optionally converted); a corrupt or truncated file is a DatasetError."""
    try:
        with Image.open(path) as im:
            if draft:  # let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still covers `draft`
                im.draft("RGB", draft)
            im.load()
            return im.convert(mode) if mode and im.mode != mode else im.copy()
    except Exception as e:
        raise DatasetError(f"cannot decode image {path}: {type(e).__name__}: {e}") from None


def _find_layout(root):
    """('cmp', [(photo, label), ...]) or ('ab', [file, ...]), both in natural order; else ('', [])."""
    cmp_photos = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        cmp_photos += [os.path.join(folder, f) for f in files
                       if f.lower().startswith("cmp_") and f.lower().endswith((".jpg", ".jpeg"))]
    if cmp_photos:
        cmp_photos.sort(key=lambda p: natural_key(os.path.relpath(p, root)))
        return "cmp", [(p, os.path.splitext(p)[0] + ".png") for p in cmp_photos]
    for folder in (root, os.path.join(root, "train")):
        if os.path.isdir(folder):
            files = sorted((f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS)),
                           key=natural_key)
            if files:
                return "ab", [os.path.join(folder, f) for f in files]
    return "", []


class FacadeDataset:
    """Facade photos and label maps from a CMP or pix2pix A|B folder, as (x, y) = (input, target)."""

    def __init__(self, root, split="train", size=256, direction="BtoA", labels=None, seed=0):
        self.root, self.split, self.size, self.direction, self.seed = str(root), split, size, direction, seed
        if not os.path.isdir(self.root):
            raise DatasetError(f"facade data folder {self.root} does not exist "
                               f"({command_line('download facade')} fetches the CMP base set)")
        self.layout, items = _find_layout(self.root)
        if not items:
            raise DatasetError(f"no facade images in {self.root} (expected cmp_bNNNN.jpg + .png label "
                               "pairs, or pix2pix A|B .jpg files)")
        # one-hot is the CMP set's natural input; A|B files carry colours, so colours stay the default
        self.labels = labels or ("onehot" if self.layout == "cmp" and direction == "BtoA" else "color")
        check_options(direction, self.labels)
        if len(items) < 2:
            raise DatasetError(f"only one facade image in {self.root}; a train/val split needs two")
        self.items = [items[i] for i in split_indices(len(items), split)]
        self.load_size = size * 286 // 256  # pix2pix: resize to 286, crop 256
        for item in self.items:
            self._check_header(item)
        n_label = NUM_CLASSES if self.labels == "onehot" else 3
        self.in_channels, self.out_channels = (n_label, 3) if direction == "BtoA" else (3, n_label)

    def _check_header(self, item):
        if self.layout == "cmp":
            photo, label = item
            if not os.path.exists(label):
                raise DatasetError(f"CMP photo {photo} has no label image {os.path.basename(label)}")
            (w, h), (lw, lh) = _header(photo), _header(label)
            if (w, h) != (lw, lh):
                raise DatasetError(f"CMP photo {photo} is {w}x{h} but its label is {lw}x{lh}")
        else:
            w, h = _header(item)
            if w != 2 * h:
                raise DatasetError(f"{item} is {w}x{h}; a pix2pix A|B image is twice as wide as high "
                                   "(photo left, label map right)")

    def __len__(self):
        return len(self.items)

    def describe(self):
        """One line for the log: what is being read."""
        kind = "CMP base set" if self.layout == "cmp" else "pix2pix A|B"
        return (f"facade data: {len(self)} {self.split} images ({kind}, {self.direction}, "
                f"{self.labels} labels) from {self.root}")

    def _read(self, i, side):
        """(photo (side, side, 3) uint8, label) with label (side, side) classes 0..11 (CMP) or RGB."""
        resize = lambda im, how: np.asarray(im.resize((side, side), how))  # noqa: E731
        if self.layout == "cmp":
            photo_path, label_path = self.items[i]
            photo = _decode(photo_path, "RGB", draft=(side, side))
            label = _decode(label_path)
            if label.mode not in ("P", "L"):
                raise DatasetError(f"CMP label {label_path} is mode {label.mode}; expected an indexed PNG")
            lo, hi = label.getextrema()
            if lo < 1 or hi > NUM_CLASSES:
                raise DatasetError(f"CMP label {label_path} holds values {lo}..{hi}; expected 1..12")
            # nearest keeps classes exact; the photo is bicubic as in pix2pix
            return resize(photo, Image.BICUBIC), resize(label, Image.NEAREST) - 1
        path = self.items[i]
        im = _decode(path, "RGB")
        w, h = im.size
        if w != 2 * h:
            raise DatasetError(f"{path} is {w}x{h}; a pix2pix A|B image is twice as wide as high")
        a, b = im.crop((0, 0, w // 2, h)), im.crop((w // 2, 0, w, h))
        return resize(a, Image.BICUBIC), resize(b, Image.BICUBIC)

    def _label(self, label):
        """Label array of the layout -> the chosen label mode, CHW float32."""
        if label.ndim == 2:  # CMP classes
            return onehot(label) if self.labels == "onehot" else colorize(label)
        return onehot(colors_to_classes(label)) if self.labels == "onehot" else to_chw(label)

    def get_example(self, i, rng=None):
        """(x, y) of item i; training items get a crop and flip drawn from `rng` (default: fixed by i)."""
        if self.split == "train":
            rng = rng if rng is not None else np.random.default_rng([self.seed, i])
            photo, label = crop_flip(self._read(i, self.load_size), self.size, rng)
        else:
            photo, label = self._read(i, self.size)
        photo, label = to_chw(photo), self._label(np.ascontiguousarray(label))
        return (label, photo) if self.direction == "BtoA" else (photo, label)

    def __getitem__(self, i):
        return self.get_example(i)


def open_facade(data_dir="data/facade", split="train", size=256, direction="BtoA", labels=None,
                required=False):
    """The facade dataset in data_dir, or None when it holds no data (and `required` is False)."""
    if not required and (not os.path.isdir(data_dir) or not _find_layout(str(data_dir))[1]):
        return None
    return FacadeDataset(data_dir, split=split, size=size, direction=direction, labels=labels)
