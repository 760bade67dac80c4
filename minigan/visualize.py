"""Pictures of a run: image grids of samples and the plot of the logged losses."""
import json
import math
import os

import numpy

from . import backend


def to_uint8(x, value_range=(-1.0, 1.0)):
    """(N, C, H, W) or (C, H, W) floats in value_range -> (..., H, W, 3) uint8 (grey -> RGB;
    RGBA stays (..., H, W, 4))."""
    x = backend.to_cpu(getattr(x, "array", x)).astype(numpy.float32)
    lo, hi = value_range
    x = numpy.clip((x - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(numpy.uint8)
    x = numpy.moveaxis(x, -3, -1)
    if x.shape[-1] == 1:
        x = numpy.repeat(x, 3, axis=-1)
    return x


def tile(images, ncol=None, pad=2, fill=255):
    """Arrange (N, H, W, C) uint8 images in a grid with ncol columns and `pad` pixels between
    (filled with `fill`: opaque white for RGBA)."""
    n, h, w, c = images.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    grid = numpy.full((nrow * (h + pad) - pad, ncol * (w + pad) - pad, c), fill, numpy.uint8)
    for i, im in enumerate(images):
        r, q = divmod(i, ncol)
        grid[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = im
    return grid


def save_image(array, path):
    """Write an (H, W, 3) uint8 array as PNG, atomically (a partial file never replaces one)."""
    from PIL import Image
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp.png"
    Image.fromarray(array).save(tmp)
    os.replace(tmp, path)


def read_log(path):
    """The records of a log.jsonl file (a torn last line, as after a kill, is skipped)."""
    records = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return records


def plot_log(log_path, png_path, skip=("iteration", "epoch", "elapsed", "data_wait", "it_per_s")):
    """Plot every logged scalar against the iteration into png_path, one small panel each (their
    scales differ: an L1 term weighted 100 beside a GAN loss near 1). matplotlib's Agg backend
    draws without a display."""
    records = read_log(log_path)
    if not records:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [k for k in records[0] if k not in skip and isinstance(records[0][k], (int, float))]
    if not names:
        return
    ncol = 2 if len(names) > 1 else 1
    nrow = math.ceil(len(names) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5 * ncol, 2.4 * nrow), squeeze=False,
                             sharex=True)
    it = [r["iteration"] for r in records]
    for ax, name in zip(axes.flat, names):
        ax.plot(it, [r.get(name, float("nan")) for r in records], lw=1)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("iteration")
    fig.tight_layout()
    tmp = f"{png_path}.tmp.png"
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, png_path)
