"""`python cli.py gan|dcgan|wgan-gp|began`: train the unconditional GANs on MNIST, a folder of
images, or the 2-D toy ring.

Every GAN goes through one registry entry (ZOO): how its Config follows from the options and the
data's shape, which data it accepts, and how many examples one iteration takes. The same entry
lets `generate` rebuild a generator from a snapshot alone: the options and the data's shape are
saved in the snapshot's meta group.
"""
import dataclasses

import click
import numpy

from .. import backend
from ..datasets import DatasetError, ImageFolderDataset, MnistDataset, RingDataset, find_mnist
from ..datasets.mnist import GET_IT
from ..datasets.toy import ring_centers
from ..gans import began, dcgan, gan, wgan_gp
from ..visualize import tile, to_uint8
from .common import (check_device, check_stop, make_iterator, resolve_run, seed_everything,
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
            raise DatasetError(f"no MNIST in {data_dir}: {GET_IT} (or point --data-dir at a "
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


# -- the registry ------------------------------------------------------------------------------

def _pick(value, default):
    return default if value is None else value


def _lr(opts, c):
    return dataclasses.replace(c, alpha=opts["lr"]) if opts.get("lr") is not None else c


def gan_config(opts, shape):
    if len(shape) == 1:             # toy data: the small MLPs with the data's dimensions
        c = gan.toy_config(x_dim=shape[0], n_z=_pick(opts["n_z"], 2),
                           n_hidden=_pick(opts["n_hidden"], 128))     # 2-D noise, as toy_config
    else:
        c = gan.Config(x_shape=tuple(shape), n_z=_pick(opts["n_z"], 20),
                       n_hidden=_pick(opts["n_hidden"], 100))
    return _lr(opts, c)


def dcgan_config(opts, shape):
    ch, h, w = _image(shape, "dcgan")
    arch = "mnist" if (h, w) == (28, 28) else "radford"
    return _lr(opts, dcgan.Config(arch=arch, size=h, channels=ch, ngf=opts["ngf"],
                                  ndf=opts["ndf"]))


def wgan_gp_config(opts, shape):
    if len(shape) == 1:
        arch = "mlp"
    else:
        arch = "mnist" if tuple(shape[1:]) == (28, 28) else "radford"
    c = wgan_gp.Config(arch=arch, x_shape=tuple(shape), n_z=_pick(opts["n_z"], 128),
                       n_critic=opts["n_critic"], lam=opts["lam"], ngf=opts["ngf"],
                       ndf=opts["ndf"])
    if arch == "mlp":               # the toy's small MLPs take 2-D noise
        c = dataclasses.replace(c, n_z=_pick(opts["n_z"], 2))
    return _lr(opts, c)


def began_config(opts, shape):
    ch, h, _ = _image(shape, "began")
    return _lr(opts, began.Config(size=h, channels=ch, n=opts["n"], gamma=opts["gamma"]))


def _image(shape, name):
    if len(shape) != 3 or shape[1] != shape[2]:
        raise click.UsageError(f"{name} needs square images, not data of shape {tuple(shape)}")
    return shape


@dataclasses.dataclass
class Entry:
    module: object              # the GAN file: Config, Generator, build, sample_z, generate
    updater: type
    config: object              # (opts, data shape) -> Config
    datasets: tuple             # accepted --dataset values, the first the default
    batch_factor: object = lambda c: 1      # minibatches per iteration (WGAN-GP: n_critic)


ZOO = {
    "gan": Entry(gan, gan.GANUpdater, gan_config, ("mnist", "folder", "toy")),
    "dcgan": Entry(dcgan, dcgan.DCGANUpdater, dcgan_config, ("mnist", "folder")),
    "wgan-gp": Entry(wgan_gp, wgan_gp.WGANGPUpdater, wgan_gp_config, ("mnist", "folder", "toy"),
                     batch_factor=lambda c: c.n_critic),
    "began": Entry(began, began.BEGANUpdater, began_config, ("folder", "mnist")),
}


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


def sampler(entry, config, device, seed, n):
    """samples/iter_N.png of G(z) for a FIXED z, drawn once from its own generator."""
    z = entry.module.sample_z(config, n, numpy.random.RandomState(seed))

    def sample(updater):
        zd = z if device < 0 else backend.to_gpu(z, device)
        return picture(entry.module.generate(updater.models["gen"], zd))
    return sample


# -- the commands ------------------------------------------------------------------------------

def run(ctx, name, opts):
    """Everything a zoo command does: options, data, networks, trainer."""
    entry = ZOO[name]
    opts["channels"] = int(opts["channels"])
    check_stop(ctx, opts)
    check_device(opts["gpu"])
    out, resume_path, opts = resolve_run(ctx, name, opts)
    dataset, note = load_data(opts)
    click.echo(note, err=True)
    opts["shape"] = list(dataset.shape)         # saved in the snapshot: generate needs it
    seed_everything(opts["seed"])
    try:
        config = entry.config(opts, dataset.shape)
        models, optimizers = entry.module.build(config, opts["gpu"])
    except ValueError as e:                     # e.g. an image size the networks cannot take
        raise click.UsageError(str(e)) from None
    updater = entry.updater(config, models, optimizers, opts["gpu"])
    per_iteration = {**opts, "batch_size": opts["batch_size"] * entry.batch_factor(config)}
    n_samples = 1000 if len(dataset.shape) == 1 else 64
    train(name, opts, updater, make_iterator(dataset, per_iteration),
          sampler(entry, config, opts["gpu"], opts["seed"], n_samples), out, resume_path)


def zoo_command(name, summary, options, iterations, batch_size):
    """The click command `name`: data options, the GAN's own options, the shared ones."""
    entry = ZOO[name]

    def command(ctx, **opts):
        run(ctx, name, opts)
    command.__doc__ = summary
    command = user_errors(command)
    command = click.pass_context(command)
    command = training_options(f"result/{name}", iterations=iterations,
                               batch_size=batch_size)(command)
    for option in reversed(options + [LR]):
        command = option(command)
    command = data_options(entry.datasets, entry.datasets[0])(command)
    # short_help: click would cut the summary at the first full stop, in "et al."
    return click.command(name, short_help=summary.split(": ")[0])(command)


LR = click.option("--lr", type=float, default=None,
                  help="Adam's learning rate [default: the paper's, see the GAN's file].")
NGF = click.option("--ngf", type=click.IntRange(1), default=64, show_default=True,
                   help="Generator width (64 x 64 DCGAN layout).")
NDF = click.option("--ndf", type=click.IntRange(1), default=64, show_default=True,
                   help="Discriminator width (64 x 64 DCGAN layout).")
N_Z = click.option("--n-z", type=click.IntRange(1), default=None,
                   help="Noise dimensions [default: the paper's; 2 on the toy data].")

gan_command = zoo_command(
    "gan", "Train the vanilla GAN (Goodfellow et al. 2014): MLPs on MNIST, images or the 2-D ring.",
    [N_Z, click.option("--n-hidden", type=click.IntRange(1), default=None,
                       help="Hidden units [default: 100; 128 on the toy data].")],
    iterations=50_000, batch_size=64)
dcgan_command = zoo_command(
    "dcgan", "Train DCGAN (Radford et al. 2015): MNIST or a folder of 64 x 64 images.",
    [NGF, NDF], iterations=20_000, batch_size=64)
wgan_gp_command = zoo_command(
    "wgan-gp", "Train WGAN-GP (Gulrajani et al. 2017): a critic with a gradient penalty.",
    [N_Z, NGF, NDF,
     click.option("--n-critic", type=click.IntRange(1), default=5, show_default=True,
                  help="Critic steps per generator step (each on its own minibatch)."),
     click.option("--lam", type=click.FloatRange(0), default=10.0, show_default=True,
                  help="lambda, the gradient penalty's weight.")],
    iterations=20_000, batch_size=64)
began_command = zoo_command(
    "began", "Train BEGAN (Berthelot et al. 2017): an autoencoder discriminator, k_t control.",
    [click.option("--n", type=click.IntRange(1), default=64, show_default=True,
                  help="Filters per convolution (the encoder grows n, 2n, 3n, ...)."),
     click.option("--gamma", type=click.FloatRange(0, 1), default=0.5, show_default=True,
                  help="Diversity ratio E[L(G(z))] / E[L(x)].")],
    iterations=100_000, batch_size=16)

COMMANDS = (gan_command, dcgan_command, wgan_gp_command, began_command)
