"""`python cli.py download facade|mnist|inception`: fetch, verify and unpack a dataset, or the
FID Inception weights."""
import click

from ..datasets import download_facade, download_mnist
from ..folders import making, writable_folder
from ..datasets.errors import command_line
from ..models import WeightFileError, weights
from .common import one_line, user_errors


@click.group()
def download():
    """Download a dataset or weights (with a progress bar and checksums)."""


@download.command("facade")
@click.option("--data-dir", default="data/facade", show_default=True, help="Where to unpack it.")
@click.option("--sha256", default=None, help="Pin the zip's digest (the site publishes none).")
@user_errors
def facade(data_dir, sha256):
    """The CMP Facade Database base set (378 photo/label pairs)."""
    writable_folder(data_dir, "--data-dir")
    download_facade(data_dir, sha256=sha256)     # atomic: unpacked beside, renamed into place
    click.echo(f"facades in {data_dir}; train with: {command_line('pix2pix')} --data-dir {data_dir}",
               err=True)


@download.command("mnist")
@click.option("--data-dir", default="data/mnist", show_default=True)
@user_errors
def mnist(data_dir):
    """MNIST (train and test IDX files, md5-checked)."""
    with making(data_dir, "--data-dir"):      # a failed download leaves no empty folder
        download_mnist(data_dir)
    click.echo(f"MNIST in {data_dir}", err=True)


@download.command("inception")
@click.option("--url", default=weights.INCEPTION_URL, show_default=True,
              help="Where to fetch it from (a mirror); the sha256 is checked all the same.")
@user_errors
def inception(url):
    """pytorch-fid's Inception-v3 weights (95 MB, sha256-checked) for fid --features inception."""
    writable_folder(weights.home(), "$MINIGAN_HOME")
    try:
        path = weights.download_inception(url)   # atomic: nothing is left if it fails
    except WeightFileError as e:
        raise click.ClickException(one_line(e)) from None
    click.echo(f"Inception-v3 weights in {path}; use them with: "
               f"{command_line('fid')} --features inception --real DIR --fake DIR", err=True)
