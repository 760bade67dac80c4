"""Datasets: each gives len(ds) and ds.get_example(i, rng) -> arrays, plus the download helpers."""
from .errors import DatasetError  # noqa: F401
from .facade import (CLASSES, LABEL_COLORS, NUM_CLASSES, FacadeDataset, colors_to_classes,  # noqa: F401
                     label_image, open_facade)
from .synthetic_facade import SyntheticFacadeDataset, make_facade  # noqa: F401
from .download import CMP_BASE_URL, download, download_facade, download_file  # noqa: F401
from .mnist import MnistDataset, download_mnist, find_mnist, read_idx  # noqa: F401
from .image_folder import ImageFolderDataset  # noqa: F401
from .toy import RingDataset, mode_coverage, ring_centers, sample_ring  # noqa: F401
from .iterator import BatchIterator  # noqa: F401
