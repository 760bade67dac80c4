"""Any folder of images as square float32 CHW arrays in [-1, 1], for the unconditional GANs.

Modes: grayscale, RGB, palette, bilevel, CMYK and YCbCr images all convert to the requested
channels (alpha is composited onto white, so transparent logos do not turn black); with 4
channels (RGBA, lucidrains' --transparent) alpha is kept and an image without one is opaque
(alpha 1), as PIL's convert('RGBA') that lucidrains' loader uses; 16-bit grayscale is scaled
to 8 bits. 32-bit integer and float images have no agreed range and are
refused. With strict=True every image must already be in the requested mode (L, RGB or RGBA).
Camera images are turned upright by their EXIF orientation before the centre crop.
"""
import os

import numpy
from PIL import Image, ImageOps

from .errors import DatasetError

EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".pnm", ".ppm", ".tif", ".tiff",
              ".webp")

_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
_16BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_REFUSED_MODES = ("I", "F")  # 32-bit: no agreed range to map to [0, 255]
_ORIENTATION = 0x0112  # the EXIF tag that says how a camera image is rotated


def list_images(root, recursive=True, extensions=EXTENSIONS):
    """Sorted relative paths of the image files under root; hidden files (e.g. '._x.jpg') skipped."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        found += [os.path.relpath(os.path.join(folder, f), root) for f in files
                  if not f.startswith(".") and f.lower().endswith(extensions)]
    return sorted(found)


MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def on_white(im):
    """im (any mode with or without alpha) as an opaque RGBA image: composited onto white."""
    return Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)),
                                 im.convert("RGBA"))


def to_mode(im, mode, path):
    """im converted to mode ('L', 'RGB' or 'RGBA'), or DatasetError when that makes no sense."""
    if im.mode == mode:
        return im
    if im.mode in _REFUSED_MODES:
        raise DatasetError(f"{path}: cannot convert a 32-bit {im.mode!r} image to {mode}; "
                           f"save it as 8-bit RGB or grayscale")
    if im.mode in _16BIT_MODES:
        # PIL's convert would clip 16-bit values at 255 (an all-white image), so scale them instead
        im = Image.fromarray((numpy.asarray(im).astype(numpy.uint32) >> 8).astype(numpy.uint8), "L")
    elif mode != "RGBA" and (im.mode in _ALPHA_MODES or "transparency" in im.info):
        im = on_white(im)
    return im.convert(mode)


class ImageFolderDataset:
    """Images of a folder, centre-cropped to a square, resized to size x size, in value_range."""

    def __init__(self, root, size=64, channels=3, recursive=True, flip=False, strict=False,
                 scan=True, cache=False, draft=True, value_range=(-1.0, 1.0)):
        if channels not in MODES:
            raise DatasetError(f"channels must be 1 (grayscale), 3 (RGB) or 4 (RGBA), "
                               f"not {channels}")
        if not os.path.isdir(root):
            raise DatasetError(f"image folder not found: {root}")
        self.files = list_images(root, recursive)
        if not self.files:
            where = "in it or its subfolders" if recursive else "in it (subfolders not searched)"
            raise DatasetError(f"no images in {root}: looked for {' '.join(EXTENSIONS)} {where}")
        self.root, self.size, self.channels = root, size, channels
        self.mode = MODES[channels]
        self.flip, self.strict, self.draft = flip, strict, draft
        self.shape = (channels, size, size)
        lo, hi = value_range
        self._scale, self._offset = numpy.float32((hi - lo) / 255.0), numpy.float32(lo)
        # decoded uint8 (size, size, C) arrays; a dict is safe to fill from several threads
        self._cache = {} if cache else None
        if scan or strict:
            self.check_headers()

    def __len__(self):
        return len(self.files)

    def describe(self):
        """One line for the log: what is being read."""
        return (f"image folder: {len(self)} images from {self.root} "
                f"as {self.channels}x{self.size}x{self.size}"
                f"{', random flips' if self.flip else ''}")

    def path(self, i):
        return os.path.join(self.root, self.files[i])

    def check_headers(self):
        """Open every file's header (cheap: no pixel decoding) so a non-image fails before training."""
        for i in range(len(self.files)):
            with self._open(i) as im:
                if self.strict and im.mode != self.mode:
                    raise DatasetError(f"{self.path(i)}: mode {im.mode}, but strict mode needs "
                                       f"{self.mode} for channels={self.channels}")
                if im.mode in _REFUSED_MODES:
                    to_mode(im, self.mode, self.path(i))  # raises the explanation

    def _open(self, i):
        path = self.path(i)
        try:
            return Image.open(path)
        except Exception as e:  # UnidentifiedImageError, DecompressionBombError, OSError
            raise DatasetError(f"cannot read image {path}: {e}") from None

    def load(self, i):
        """The i-th image as a uint8 (size, size, C) array: cropped and resized, not augmented."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        path = self.path(i)
        with self._open(i) as im:
            try:
                if self.draft:
                    # JPEG decodes at 1/2, 1/4 or 1/8 scale when that still covers size: 4-16x less work
                    im.draft(self.mode, (self.size, self.size))
                if im.getexif().get(_ORIENTATION, 1) != 1:
                    im = ImageOps.exif_transpose(im)  # phone photos are stored sideways
                im = to_mode(im, self.mode, path)
                w, h = im.size
                side = min(w, h)
                box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
                # PIL widens the bicubic kernel by the reduction factor, so downscaling averages
                # over the whole source area (no aliasing) and upscaling stays smooth; RGBA is
                # resampled premultiplied by alpha, so clear pixels do not bleed their colour
                im = im.resize((self.size, self.size), Image.Resampling.BICUBIC, box=box)
                a = numpy.asarray(im)
            except DatasetError:
                raise
            except Exception as e:  # truncated or corrupt pixel data: PIL raises many kinds
                raise DatasetError(f"cannot decode image {path}: {e}") from None
        a = a.reshape(self.size, self.size, self.channels)
        if self._cache is not None:
            a.flags.writeable = False
            self._cache[i] = a
        return a

    def get_example(self, i, rng=None):
        """(x,): float32 (C, size, size); flipped left-right with probability 1/2 when flip is set."""
        a = self.load(i)
        if self.flip and rng is not None and rng.random() < 0.5:
            a = a[:, ::-1]
        return (a.transpose(2, 0, 1).astype(numpy.float32) * self._scale + self._offset,)

    def __getitem__(self, i):
        return self.get_example(i, numpy.random.default_rng(i))
