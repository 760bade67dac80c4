"""FID during training: fid.jsonl (one line per evaluation) and fid.png, for any command."""
import json
import os

import numpy

from .. import backend, metrics
from ..datasets import DatasetError
from ..models import WeightFileError
from ..models.weights import efficientnet_lite0_file
from ..visualize import plot_log


def check_fid_ready(real):
    """Before any work: the weights package is installed and the real folder holds images
    (a DatasetError, one line, otherwise)."""
    try:
        efficientnet_lite0_file()
        metrics.folder_files(real)
    except (WeightFileError, metrics.MetricError) as e:
        raise DatasetError(f"FID: {e}") from None


class FIDLog:
    """FID (EfficientNet-lite0) of n_images samples against the folder `real`, written to
    out/fid.jsonl and plotted in out/fid.png; the real statistics are cached (metrics.py)."""

    def __init__(self, real, out, n_images, device=-1):
        self.real, self.n_images, self.device = real, n_images, device
        self.path, self.png = os.path.join(out, "fid.jsonl"), os.path.join(out, "fid.png")
        self.stats = None

    def __call__(self, sample, iteration, **fields):
        """sample(n) -> n images (n, C, H, W) in [-1, 1]; returns the FIDResult."""
        if self.stats is None:
            self.stats = metrics.statistics(self.real, device=self.device)
        x = numpy.concatenate([backend.to_cpu(a) for a in sample(self.n_images)])
        result = metrics.fid_of_samples(x, self.stats, device=self.device)
        record = {"iteration": iteration, **fields, "fid": result.fid, "metric": result.label,
                  "n_real": result.n_real, "n_fake": result.n_fake}
        _cut_after(self.path, iteration)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        try:
            plot_log(self.path, self.png, skip=("iteration", "kimg", "n_real", "n_fake"))
        except ImportError:             # no matplotlib: the numbers are in fid.jsonl
            pass
        return result


def _cut_after(path, iteration):
    """Drop the lines at or after `iteration` (left by a run that was resumed earlier)."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        keep = [line for line in f if line.strip() and json.loads(line)["iteration"] < iteration]
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(keep)
