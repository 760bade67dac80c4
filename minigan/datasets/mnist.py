"""MNIST from IDX files (gzip or raw), scaled for a tanh or sigmoid generator."""
import gzip
import os

import numpy

from .errors import DatasetError, command_line

# IDX header: two zero bytes, a type code, the number of dimensions; then one big-endian
# uint32 per dimension, then the data, big-endian, row-major.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# split -> (images file, labels file), named as on LeCun's page and its mirrors
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
           "https://storage.googleapis.com/cvdf-datasets/mnist/")

# md5 of the original .gz files as the mirrors serve them
MD5 = {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
       "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
       "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
       "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}


def get_it():
    """How to fetch MNIST, as the user runs minigan."""
    return f"get it with: {command_line('download mnist')}"


def _read_bytes(path):
    """The file's content, gunzipped when it starts with the gzip magic (whatever its name)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError; a cut-off stream an EOFError
        raise DatasetError(f"cannot read {path}: {e}") from None
    return data


def parse_idx(data, name="IDX data"):
    """Decode IDX bytes into a numpy array of the stored type and shape."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DatasetError(f"{name} is not an IDX file (magic {data[:4].hex() or 'missing'})")
    dtype, ndim = numpy.dtype(_IDX_TYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DatasetError(f"{name}: IDX header truncated or with {ndim} dimensions")
    shape = tuple(int(d) for d in numpy.frombuffer(data, ">u4", ndim, 4))
    expected = header + int(numpy.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise DatasetError(f"{name}: {len(data)} bytes where shape {shape} needs {expected}")
    return numpy.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path):
    """Read one IDX file, gzip or raw (detected from the content, not the name)."""
    return parse_idx(_read_bytes(path), os.fspath(path))


def _find_file(root, stem):
    """The path of an IDX file in root under its usual names (.gz or not, '-' or '.' before idx)."""
    for name in (stem, stem.replace("-idx", ".idx")):
        for ext in (".gz", ""):
            path = os.path.join(root, name + ext)
            if os.path.isfile(path):
                return path
    return None


def available_splits(root):
    """The splits ('train', 'test') whose images and labels are both in root."""
    return [s for s, stems in FILES.items() if all(_find_file(root, st) for st in stems)]


def find_mnist(data_dir):
    """The folder holding MNIST IDX files: data_dir or data_dir/mnist; None when neither has them."""
    for root in (data_dir, os.path.join(data_dir, "mnist")):
        if os.path.isdir(root) and available_splits(root):
            return root
    return None


class MnistDataset:
    """MNIST digits as float32 (1, 28, 28) images (or 784-vectors), with optional int32 labels."""

    n_classes = 10
    channels = 1

    def __init__(self, root, split=None, value_range=(-1.0, 1.0), label=False, n=None, flatten=False):
        # split None takes 'train' when present, else 'test': the 10k set alone is enough to train on
        splits = available_splits(root) if os.path.isdir(root) else []
        if not splits:
            raise DatasetError(f"no MNIST IDX files in {root}; {get_it()}")
        split = split or splits[0]
        if split not in FILES:
            raise DatasetError(f"unknown MNIST split {split!r}: choose from {', '.join(FILES)}")
        if split not in splits:
            raise DatasetError(f"no MNIST {split!r} files in {root} (found: {', '.join(splits)}); {get_it()}")
        image_path, label_path = (_find_file(root, st) for st in FILES[split])
        images, labels = read_idx(image_path), read_idx(label_path)
        if images.dtype != numpy.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DatasetError(f"{image_path}: expected uint8 images of 28x28, "
                               f"got {images.dtype} {images.shape}")
        if labels.shape != images.shape[:1]:
            raise DatasetError(f"{label_path}: {labels.shape[0] if labels.ndim else 0} labels "
                               f"for {images.shape[0]} images")
        if n is not None:
            images, labels = images[:n], labels[:n]
        self.root, self.split, self.label, self.flatten = root, split, label, flatten
        self.images, self.labels = images, labels.astype(numpy.int32)  # kept as uint8: 4x less memory
        lo, hi = value_range
        self._scale, self._offset = numpy.float32((hi - lo) / 255.0), numpy.float32(lo)
        self.shape = (784,) if flatten else (1, 28, 28)

    def __len__(self):
        return len(self.images)

    def describe(self):
        """One line for the log: what is being read."""
        return f"MNIST {self.split}: {len(self)} digits of shape {self.shape} from {self.root}"

    def get_example(self, i, rng=None):
        """(x,) or (x, label); MNIST has no random augmentation, so rng is unused."""
        x = (self.images[i].astype(numpy.float32) * self._scale + self._offset).reshape(self.shape)
        return (x, self.labels[i]) if self.label else (x,)

    def __getitem__(self, i):
        return self.get_example(i, None)


def download_mnist(dest, splits=("train", "test"), mirrors=MIRRORS, progress=True):
    """Fetch the MNIST .gz files into dest (checksums verified, mirrors tried in turn); return dest."""
    from .download import download_file
    os.makedirs(dest, exist_ok=True)
    for split in splits:
        for stem in FILES[split]:
            name = stem + ".gz"
            download_file([m + name for m in mirrors], os.path.join(dest, name),
                          md5=MD5[name], progress=progress)
    return dest
