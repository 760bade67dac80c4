"""FID and KID of image sets, on the features of a frozen ImageNet network (models/).

The default network is EfficientNet-lite0 (1280 pooled features), so the numbers are labelled
"FID (EfficientNet-lite0)": they rank models and runs against each other, and are not comparable
to published FIDs, which use Inception-v3's 2048 pool features. features="inception" (after
`python cli.py download inception`) is that network, pytorch-fid's port of the TensorFlow graph,
labelled "FID (Inception-v3)".

  FID = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))            (Heusel et al. 2017)

of the features' means mu and covariances S. S1 S2 is similar to the symmetric PSD matrix
M = S1^(1/2) S2 S1^(1/2) (conjugate by S1^(1/2)), so Tr (S1 S2)^(1/2) = sum_i sqrt(lambda_i(M)),
computed as the singular values of S1^(1/2) S2^(1/2) (trace_sqrt_product): symmetric
eigendecompositions and one SVD, no general matrix square root (and no scipy).

  KID = MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3             (Binkowski et al. 2018)

unbiased, averaged over random subsets (100 of up to 1000 features each, as clean-fid and
torch-fidelity); reported as mean and standard deviation over the subsets.

Images are 8-bit RGB, converted as the image folder loader does (alpha composited onto white,
16-bit grey scaled); generated arrays take the path of a saved image after its 8-bit rounding
(visualize.to_uint8), RGBA ones (lightweight's --transparent) composited onto white like the
real images. Each network has its preparation (FEATURES):
- EfficientNet-lite0, as clean-fid recommends (Parmar et al. 2022): resized to 224 x 224 with
  PIL's bicubic filter on float pixels (no 8-bit rounding after the resize, antialiased when
  shrinking), then mapped to [-1, 1];
- Inception-v3, as pytorch-fid does, to reproduce its numbers: mapped to [-1, 1], then resized
  to 299 x 299 bilinearly (align_corners=False, no antialias: torch's F.interpolate, which
  pytorch-fid's network applies to its input at the image's own size). The resize is done per
  image before batching, which is the same map and lets a folder mix image sizes (pytorch-fid
  cannot batch those); resize(2 x - 1) = 2 resize(x) - 1, as each row of the resize sums to 1.
"""
import dataclasses
import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy
from PIL import Image

from . import backend
from .core import no_backprop_mode, using_config
from .datasets.errors import DatasetError
from .datasets.image_folder import EXTENSIONS, list_images, on_white, to_mode
from .functions.resize import resize_images
from .models.weights import atomic_h5, cache_path
from .visualize import to_uint8

NETWORK = "EfficientNet-lite0"
LABEL = f"FID ({NETWORK})"
STATS_VERSION = 2       # bump when features or preprocessing change: old caches are ignored


class MetricError(ValueError):
    """Features that cannot give a metric (too few, not finite); one line for the user."""


def _efficientnet(device):
    from .models.efficientnet_lite import efficientnet_lite0
    return efficientnet_lite0(device)


def _inception(device):
    from .models.inception import inception_v3
    return inception_v3(device)


def resize_clean(rgb, size):
    """(H, W, 3) uint8 -> (3, size, size) float32 in [-1, 1]: PIL bicubic on float pixels."""
    planes = rgb.astype(numpy.float32).transpose(2, 0, 1)
    if rgb.shape[:2] != (size, size):
        # a float32 array is a PIL "F" image: resized without rounding to 8 bits
        planes = numpy.stack([numpy.asarray(Image.fromarray(p).resize(
            (size, size), Image.Resampling.BICUBIC)) for p in planes])
        planes = numpy.clip(planes, 0, 255)     # bicubic overshoots at edges
    return planes * numpy.float32(1 / 127.5) - numpy.float32(1)


def resize_bilinear(rgb, size):
    """(H, W, 3) uint8 -> (3, size, size) float32: [-1, 1], then torch's bilinear resize
    (align_corners=False) by resize_images."""
    planes = rgb.astype(numpy.float32).transpose(2, 0, 1) * numpy.float32(1 / 127.5) \
        - numpy.float32(1)
    if rgb.shape[:2] != (size, size):
        with no_backprop_mode():        # the op's matrices are built once per size
            planes = resize_images(planes[None], (size, size), align_corners=False).array[0]
    return numpy.ascontiguousarray(planes)


# name -> (network loader, input size, network name for the labels, image preparation)
FEATURES = {"efficientnet-lite0": (_efficientnet, 224, NETWORK, resize_clean),
            "inception": (_inception, 299, "Inception-v3", resize_bilinear)}


def _feature_net(features):
    if features not in FEATURES:
        raise MetricError(f"unknown features {features!r}; choose from {', '.join(FEATURES)}")
    return FEATURES[features]


def feature_network(features, device=-1):
    """The frozen network of features on device (missing weights: one WeightFileError line)."""
    return _feature_net(features)[0](backend.as_device(device))


# -- the two distances --------------------------------------------------------------------------

def _sqrt_psd(S):
    """S^(1/2) of a symmetric PSD matrix (eigenvalues below 0 by rounding are taken as 0)."""
    w, V = numpy.linalg.eigh(S)
    return (V * numpy.sqrt(numpy.clip(w, 0, None))) @ V.T


def trace_sqrt_product(S1, S2):
    """Tr (S1 S2)^(1/2) of symmetric PSD S1, S2, as the sum of the singular values of
    A = S1^(1/2) S2^(1/2): A A^T = S1^(1/2) S2 S1^(1/2) is similar to S1 S2, so its eigenvalues are
    those of S1 S2, and they are the squares of A's singular values. Taking the singular values
    directly skips the squaring: an eigenvalue 0 of the product comes out as ~1e-16 |A|, where
    the square root of a rounded eigenvalue would be ~1e-8 |A| (summed over the 1000 or so null
    directions of a covariance of fewer images than features)."""
    A = _sqrt_psd(S1) @ _sqrt_psd(S2)
    return numpy.linalg.svd(A, compute_uv=False).sum()


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) of two Gaussians."""
    mu1, mu2 = (numpy.atleast_1d(m).astype(numpy.float64) for m in (mu1, mu2))
    S1, S2 = (numpy.atleast_2d(S).astype(numpy.float64) for S in (sigma1, sigma2))
    if mu1.shape != mu2.shape or S1.shape != S2.shape or S1.shape != mu1.shape * 2:
        raise MetricError(f"frechet_distance: means {mu1.shape}, {mu2.shape} and covariances "
                          f"{S1.shape}, {S2.shape} do not match")
    if not all(numpy.isfinite(a).all() for a in (mu1, mu2, S1, S2)):
        raise MetricError("frechet_distance: the statistics hold NaN or inf (features of "
                          "non-finite images?)")
    try:
        tr_sqrt = trace_sqrt_product(S1, S2)
    except numpy.linalg.LinAlgError:
        # as pytorch-fid does when the product's square root fails: regularize both diagonals
        warnings.warn(f"FID: the covariance product is singular; adding {eps} to the diagonals")
        offset = eps * numpy.eye(len(S1))
        tr_sqrt = trace_sqrt_product(S1 + offset, S2 + offset)
    diff = mu1 - mu2
    return float(diff @ diff + numpy.trace(S1) + numpy.trace(S2) - 2 * tr_sqrt)


def kernel_distance(f1, f2, n_subsets=100, subset_size=1000, seed=0):
    """(mean, std) over random subsets of the unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3.

    Per subset of m features each: (sum_{i != j} k(x_i, x_j) + sum_{i != j} k(y_i, y_j)) /
    (m (m - 1)) - 2 sum_ij k(x_i, y_j) / m^2; m = min(subset_size, len(f1), len(f2)). When
    both sets have m features every subset is the whole set, and the std is 0.
    """
    f1, f2 = numpy.asarray(f1, numpy.float64), numpy.asarray(f2, numpy.float64)
    m = min(subset_size, len(f1), len(f2))
    if m < 2:
        raise MetricError(f"KID needs at least 2 images in each set, got {len(f1)} and {len(f2)}")
    d = f1.shape[1]
    rng = numpy.random.RandomState(seed)
    mmd = numpy.empty(n_subsets)
    for s in range(n_subsets):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        same = kxx.sum() - numpy.trace(kxx) + kyy.sum() - numpy.trace(kyy)
        mmd[s] = same / (m * (m - 1)) - 2 * kxy.sum() / m ** 2
    return float(mmd.mean()), float(mmd.std())


# -- statistics ---------------------------------------------------------------------------------

@dataclasses.dataclass
class Statistics:
    """Features of one image set and their mean and covariance (float64)."""
    features: numpy.ndarray        # (n, d) float32
    mu: numpy.ndarray              # (d,)
    sigma: numpy.ndarray           # (d, d), unbiased (n - 1)

    @classmethod
    def of(cls, features):
        f = numpy.asarray(features, numpy.float32)
        if f.ndim != 2 or len(f) < 2:
            raise MetricError(f"FID needs at least 2 images per set, got {len(f)}")
        f64 = f.astype(numpy.float64)
        return cls(f, f64.mean(axis=0), numpy.cov(f64, rowvar=False))

    @property
    def n(self):
        return len(self.features)


@dataclasses.dataclass
class FIDResult:
    """FID (and optionally KID) of a fake set against a real one, named by their network."""
    fid: float
    n_real: int
    n_fake: int
    kid: float = None
    kid_std: float = None
    network: str = NETWORK

    @property
    def label(self):
        return f"FID ({self.network})"

    def __str__(self):
        text = f"{self.label}: {self.fid:.4f}"
        if self.kid is not None:
            text += f"   KID ({self.network}): {self.kid:.6f} ± {self.kid_std:.6f}"
        return text + f"   ({self.n_real} real, {self.n_fake} fake images)"


def _frechet_of_features(s1, s2):
    """The Fréchet distance from few features (n1, n2 < d), exactly and in O(n^2 d).

    With S = A^T A, A = centred features / sqrt(n - 1), the nonzero eigenvalues of
    S1 S2 = A1^T (A1 A2^T A2) are those of (A1 A2^T)(A2 A1^T) = C C^T: the squared singular
    values of the n1 x n2 matrix C = A1 A2^T, so Tr (S1 S2)^(1/2) = sum_i sigma_i(C).
    """
    A1, A2 = ((s.features - s.mu) / numpy.sqrt(s.n - 1) for s in (s1, s2))
    tr_sqrt = numpy.linalg.svd(A1 @ A2.T, compute_uv=False).sum()
    diff = s1.mu - s2.mu
    return float(diff @ diff + numpy.trace(s1.sigma) + numpy.trace(s2.sigma) - 2 * tr_sqrt)


def compare(real, fake, kid=False, network=NETWORK, **kid_options):
    """FIDResult of two Statistics (from their features when both sets are smaller than d)."""
    if max(real.n, fake.n) < real.mu.shape[0]:
        fid = _frechet_of_features(real, fake)
    else:
        fid = frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)
    result = FIDResult(fid, real.n, fake.n, network=network)
    if kid:
        result.kid, result.kid_std = kernel_distance(real.features, fake.features, **kid_options)
    return result


# -- images -> features -------------------------------------------------------------------------

def read_image(path, size, prepare=resize_clean):
    """The image file as (3, size, size) float32 in [-1, 1] (by prepare), or a DatasetError."""
    try:
        with Image.open(path) as im:
            rgb = numpy.asarray(to_mode(im, "RGB", path))
    except DatasetError:
        raise
    except Exception as e:      # UnidentifiedImageError, truncated data, OSError
        raise DatasetError(f"cannot read image {path}: {e}") from None
    return prepare(rgb, size)


def folder_files(folder):
    """The sorted image paths under folder, or a DatasetError saying what is wrong."""
    if not os.path.isdir(folder):
        raise DatasetError(f"image folder not found: {folder}")
    files = [os.path.join(folder, f) for f in list_images(folder)]
    if not files:
        raise DatasetError(f"no images in {folder} (looked for {' '.join(EXTENSIONS)})")
    return files


def _batches(items, load, batch_size):
    """Batches of load(item), the next one decoded in threads while the caller computes."""
    chunks = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    # one thread: decoding takes a few ms per image, and more threads than cores stall BLAS
    with ThreadPoolExecutor(1, thread_name_prefix="minigan-fid") as pool:
        ahead = [pool.submit(load, it) for it in chunks[0]] if chunks else []
        for n in range(len(chunks)):
            current = ahead
            if n + 1 < len(chunks):
                ahead = [pool.submit(load, it) for it in chunks[n + 1]]
            yield numpy.stack([f.result() for f in current])


def _features(batches, features, device, progress=None):
    """(n, d) float32 features of (B, 3, size, size) batches in [-1, 1], computed on device."""
    device = backend.as_device(device)
    net = feature_network(features, device)
    out = []
    with device, no_backprop_mode(), using_config("train", False):
        for x in batches:
            out.append(backend.to_cpu(net(device.send(x), resize=False).array))
            if progress is not None:
                progress(len(x))
    return numpy.concatenate(out).astype(numpy.float32)


def folder_features(folder, features="efficientnet-lite0", batch_size=50, device=-1,
                    progress=None):
    """(n, d) features of every image under folder."""
    _, size, _, prepare = _feature_net(features)
    files = folder_files(folder)
    return _features(_batches(files, lambda p: read_image(p, size, prepare), batch_size),
                     features, device, progress)


def array_features(x, features="efficientnet-lite0", batch_size=50, device=-1):
    """(n, d) features of generated images (N, C, H, W) in [-1, 1] (NumPy or CuPy)."""
    _, size, _, prepare = _feature_net(features)
    x = getattr(x, "array", x)
    if x.ndim != 4 or x.shape[1] not in (1, 3, 4):
        raise MetricError(f"images must be (N, 1, 3 or 4, H, W), got {tuple(x.shape)}")
    rgb = to_uint8(x)               # (N, H, W, 3 or 4): the 8-bit rounding of a saved sample
    if rgb.shape[-1] == 4:          # RGBA: seen on white, as read_image sees the real ones
        rgb = numpy.stack([numpy.asarray(on_white(Image.fromarray(a, "RGBA")).convert("RGB"))
                           for a in rgb])
    return _features(_batches(list(rgb), lambda a: prepare(a, size), batch_size), features,
                     device)


# -- cached statistics of a real folder ---------------------------------------------------------

def folder_key(folder, features):
    """Hash of the sorted relative file names, sizes and modification times (not the bytes:
    a rewrite that keeps both the size and the mtime goes unnoticed), the features and the
    statistics version."""
    h = hashlib.sha256(f"{features}|{STATS_VERSION}".encode())
    for path in folder_files(folder):
        st = os.stat(path)
        h.update(f"\n{os.path.relpath(path, folder)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def stats_path(folder, features="efficientnet-lite0"):
    """Where the cached statistics of folder live (the file may not exist yet)."""
    return cache_path("fid_stats", f"{features}-{folder_key(folder, features)}.h5")


def statistics(folder, features="efficientnet-lite0", batch_size=50, device=-1, cache=True,
               progress=None):
    """Statistics of the images under folder; with cache, kept in $MINIGAN_HOME/fid_stats."""
    path = None
    if cache:
        path = stats_path(folder, features)
        if os.path.exists(path):
            try:
                with h5py.File(path, "r") as f:
                    return Statistics(f["features"][()], f["mu"][()], f["sigma"][()])
            except (OSError, KeyError):     # a damaged entry: compute it again
                pass
    stats = Statistics.of(folder_features(folder, features, batch_size, device, progress))
    if path is not None:
        def write(f):
            f.attrs["folder"], f.attrs["network"] = os.path.abspath(folder), FEATURES[features][2]
            for name in ("features", "mu", "sigma"):
                f.create_dataset(name, data=getattr(stats, name))
        atomic_h5(path, write)
    return stats


def fid_from_folders(real, fake, features="efficientnet-lite0", batch_size=50, device=-1,
                     kid=False, cache=True, progress=None):
    """FIDResult of the images under fake against those under real (real's statistics cached)."""
    real_stats = statistics(real, features, batch_size, device, cache, progress)
    fake_stats = Statistics.of(folder_features(fake, features, batch_size, device, progress))
    return compare(real_stats, fake_stats, kid, FEATURES[features][2])


def fid_of_samples(x_fake, real, features="efficientnet-lite0", batch_size=50, device=-1,
                   kid=False):
    """FIDResult of generated images (N, C, H, W) in [-1, 1] against real: a folder (its
    statistics cached) or Statistics; what a training loop calls every so many iterations."""
    if not isinstance(real, Statistics):
        real = statistics(real, features, batch_size, device)
    fake = Statistics.of(array_features(x_fake, features, batch_size, device))
    return compare(real, fake, kid, FEATURES[features][2])
