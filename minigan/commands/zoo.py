"""`python cli.py gan|dcgan|wgan-gp|began`: train the unconditional GANs on MNIST, a folder of
images, or the 2-D toy ring.

Each command is built from its chapter in the registry (minigan.gans.REGISTRY): the chapter's
FLAGS become options that set Config fields, DATASETS the accepted --dataset values, TRAINING
the run's defaults, and Config.for_data(shape, **flags) the networks. This module only parses.
"""
import dataclasses

import click
import numpy

from .. import backend
from ..datasets import DatasetError, ImageFolderDataset, MnistDataset, RingDataset, find_mnist
from ..datasets.mnist import get_it
from ..datasets.toy import ring_centers
from ..gans import REGISTRY
from ..visualize import tile, to_uint8
from .common import (Finite, make_iterator, resolve_run, seed_everything, snapshot_config, start,
                     train, training_options, user_errors)


# -- data --------------------------------------------------------------------------------------

def load_data(opts):
    """(dataset, first line to print) for --dataset mnist|folder|toy."""
    kind = opts["dataset"]
    if kind == "toy":
        ds = RingDataset(seed=opts["seed"])
    elif kind == "mnist":
        data_dir = opts["data_dir"] or "data/mnist"
        root = find_mnist(data_dir)
        if root is None:
            raise DatasetError(f"no MNIST in {data_dir}: {get_it()} (or point --data-dir at a "
                               "folder of MNIST IDX files)")
        ds = MnistDataset(root)
    else:
        if opts["data_dir"] is None:
            raise click.UsageError("--dataset folder needs --data-dir DIR (a folder of images)")
        ds = ImageFolderDataset(opts["data_dir"], size=opts["size"], channels=opts["channels"])
    return ds, f"data: {ds.describe()}"


_DATASET_HELP = {"mnist": "mnist: IDX files", "folder": "folder: any folder of images",
                 "toy": "toy: the 2-D ring of 8 Gaussians"}


def data_options(choices, default):
    """--dataset, --data-dir, --size, --channels."""
    def decorate(f):
        options = [
            click.option("--dataset", type=click.Choice(choices), default=default,
                         show_default=True,
                         help="; ".join(_DATASET_HELP[c] for c in choices) + "."),
            click.option("--data-dir", default=None,
                         help="Where the data is [default: data/mnist for mnist; required for "
                              "folder]."),
            click.option("--size", type=click.IntRange(4), default=64, show_default=True,
                         help="folder: images are centre-cropped and resized to SIZE x SIZE."),
            click.option("--channels", type=click.Choice(["1", "3"]), default="3",
                         show_default=True, help="folder: 1 (grayscale) or 3 (RGB)."),
        ]
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


# -- flags from the chapters -------------------------------------------------------------------

def flag_option(module, field):
    """--field-name for a Config field listed in the chapter's FLAGS; its default is the
    Config's (None on the command line: the chapter decides, from the data too)."""
    f = next(f for f in dataclasses.fields(module.Config) if f.name == field)
    kind = click.IntRange(1) if isinstance(f.default, int) else Finite()
    text = module.FLAGS[field]
    if "[default" not in text:
        text += f" [default: {f.default}]"
    return click.option("--" + field.replace("_", "-"), field, type=kind, default=None,
                        help=text)


LR = click.option("--lr", type=Finite(strict=True), default=None,
                  help="Adam's learning rate [default: the paper's, see the GAN's file].")


def overrides(module, opts):
    """The Config fields the command line sets (flags left out keep the chapter's defaults)."""
    fields = {k: opts[k] for k in module.FLAGS if opts.get(k) is not None}
    if opts.get("lr") is not None:
        fields["alpha"] = opts["lr"]
    return fields


# -- pictures ----------------------------------------------------------------------------------

def scatter_image(points, lines=False, radius=2.0, inches=4, dpi=80):
    """2-D points over the ring's modes (red crosses) as an (H, W, 3) uint8 picture; with lines,
    points is (rows, steps, 2) and each row is drawn as a path (an interpolation)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(inches, inches), dpi=dpi)
    centers = ring_centers(radius=radius)
    if lines:
        for row in points:
            ax.plot(row[:, 0], row[:, 1], "-o", ms=2, lw=0.8)
    else:
        ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.4, lw=0)
    ax.scatter(centers[:, 0], centers[:, 1], c="red", marker="x", s=30)
    lim = 1.5 * radius
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    fig.tight_layout()
    fig.canvas.draw()
    picture = numpy.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return picture


def picture(samples, ncol=None):
    """Generated samples as one picture: a grid of images, or a scatter plot of 2-D points."""
    samples = backend.to_cpu(samples)
    if samples.ndim == 2:
        return scatter_image(samples)
    return tile(to_uint8(samples), ncol=ncol)


def sampler(module, config, seed, n):
    """samples/iter_N.png of G(z) for a FIXED z, drawn once from its own generator."""
    z = module.sample_z(config, n, numpy.random.RandomState(seed))

    def sample(updater):
        return picture(module.generate(updater.models["gen"], updater.to_device(z)))
    return sample


# -- the commands ------------------------------------------------------------------------------

def run(ctx, name, opts):
    """Everything a zoo command does: options, data, networks, trainer."""
    module = REGISTRY[name]
    opts["channels"] = int(opts["channels"])
    start(ctx, opts)
    device = backend.Device(opts["gpu"])
    out, resume_path, opts = resolve_run(ctx, name, opts)
    dataset, note = load_data(opts)
    click.echo(note, err=True)
    opts["shape"] = list(dataset.shape)
    seed_everything(opts["seed"])
    try:
        config = snapshot_config(resume_path, module) if resume_path else \
            module.Config.for_data(dataset.shape, **overrides(module, opts))
        models, optimizers = module.build(config)
    except ValueError as e:                     # e.g. an image size the networks cannot take
        raise click.UsageError(str(e)) from None
    updater = module.Updater(config, models, optimizers, device)
    n_samples = 1000 if len(dataset.shape) == 1 else 64
    train(name, opts, updater, make_iterator(dataset, opts, config.minibatches()),
          sampler(module, config, opts["seed"], n_samples), out, resume_path)


def zoo_command(name):
    """The click command `name` from its chapter: data options, its FLAGS, the shared ones."""
    module = REGISTRY[name]

    def command(ctx, **opts):
        run(ctx, name, opts)
    summary = module.__doc__.splitlines()[0]
    command.__doc__ = "Train " + (summary[0].lower() + summary[1:] if summary.startswith("The ")
                                  else summary)
    command = user_errors(command)
    command = click.pass_context(command)
    command = training_options(f"result/{name}", **module.TRAINING)(command)
    for option in reversed([flag_option(module, field) for field in module.FLAGS] + [LR]):
        command = option(command)
    command = data_options(module.DATASETS, module.DATASETS[0])(command)
    return click.command(name, short_help=command.__doc__)(command)


# every chapter that lists FLAGS gets its zoo command: a new one needs no line here
COMMANDS = tuple(zoo_command(name) for name, module in REGISTRY.items()
                 if hasattr(module, "FLAGS"))
