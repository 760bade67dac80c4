"""`python cli.py fid --real DIR --fake DIR`: FID (and KID) of two image folders."""
import os
import sys

import click
from tqdm.auto import tqdm

from .. import backend, metrics
from ..models import WeightFileError
from .common import one_line, user_errors


@click.command("fid")
@click.option("--real", required=True, help="Folder of real images (statistics cached in "
                                             "$MINIGAN_HOME/fid_stats, ~/.cache/minigan by "
                                             "default).")
@click.option("--fake", required=True, help="Folder of generated images.")
@click.option("--kid", is_flag=True, help="Also the KID (mean ± std over 100 subsets).")
@click.option("--batch-size", type=click.IntRange(1), default=50, show_default=True)
@click.option("--gpu", type=int, default=-1, show_default=True,
              help="CUDA device id; -1 runs on the CPU.")
@click.option("--no-cache", is_flag=True, help="Compute the real statistics afresh.")
@user_errors
def fid_command(real, fake, kid, batch_size, gpu, no_cache):
    """FID on EfficientNet-lite0 features: compare runs with it, not with published
    (Inception-v3) FIDs."""
    device = backend.Device(gpu)        # no CuPy or no such device: one line, before any work
    try:
        # both folders are checked before any work is done
        n_real, n_fake = (len(metrics.folder_files(f)) for f in (real, fake))
        cached = not no_cache and os.path.exists(metrics.stats_path(real))
        if cached:
            click.echo(f"real statistics from the cache ({n_real} images)", err=True)
        # tqdm: a live bar on a terminal or in a notebook, nothing in a log (disable=None)
        with tqdm(total=n_fake + (0 if cached else n_real), desc="features", unit="image",
                  file=sys.stderr, disable=None, dynamic_ncols=True) as bar:
            result = metrics.fid_from_folders(real, fake, batch_size=batch_size, device=device,
                                              kid=kid, cache=not no_cache, progress=bar.update)
    except (metrics.MetricError, WeightFileError) as e:
        raise click.ClickException(one_line(e)) from None
    click.echo(result)
