"""`python cli.py fid --real DIR --fake DIR [--features inception]`: FID (and KID) of two image
folders."""
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
@click.option("--features", type=click.Choice(list(metrics.FEATURES)),
              default="efficientnet-lite0", show_default=True,
              help="The network: EfficientNet-lite0, or Inception-v3 as pytorch-fid computes "
                   "it (published FIDs; first: python cli.py download inception).")
@click.option("--kid", is_flag=True, help="Also the KID (mean ± std over 100 subsets).")
@click.option("--batch-size", type=click.IntRange(1), default=50, show_default=True)
@click.option("--gpu", type=int, default=-1, show_default=True,
              help="CUDA device id; -1 runs on the CPU.")
@click.option("--no-cache", is_flag=True, help="Compute the real statistics afresh.")
@user_errors
def fid_command(real, fake, features, kid, batch_size, gpu, no_cache):
    """FID of two image folders, labelled by the network: EfficientNet-lite0 features compare
    runs with each other; --features inception gives pytorch-fid's (published) numbers."""
    device = backend.Device(gpu)        # no CuPy or no such device: one line, before any work
    try:
        # both folders and the network's weights are checked before any work is done
        n_real, n_fake = (len(metrics.folder_files(f)) for f in (real, fake))
        metrics.feature_network(features, device)
        cached = not no_cache and os.path.exists(metrics.stats_path(real, features))
        if cached:
            click.echo(f"real statistics from the cache ({n_real} images)", err=True)
        # tqdm: a live bar on a terminal or in a notebook, nothing in a log (disable=None)
        with tqdm(total=n_fake + (0 if cached else n_real), desc="features", unit="image",
                  file=sys.stderr, disable=None, dynamic_ncols=True) as bar:
            result = metrics.fid_from_folders(real, fake, features, batch_size=batch_size,
                                              device=device, kid=kid, cache=not no_cache,
                                              progress=bar.update)
    except (metrics.MetricError, WeightFileError) as e:
        raise click.ClickException(one_line(e)) from None
    click.echo(result)
