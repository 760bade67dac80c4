"""`python cli.py generate`: samples or latent interpolations from a zoo GAN's snapshot."""

import click
import numpy

from .. import backend
from ..folders import can_write_file
from ..gans import load
from ..training import TrainingError
from ..visualize import save_image
from .common import user_errors
from .zoo import picture, scatter_image


def slerp(z0, z1, t):
    """Spherical interpolation: sin((1-t) theta) / sin theta z0 + sin(t theta) / sin theta z1,
    theta the angle between z0 and z1 (White 2016, "Sampling Generative Networks")."""
    cos = numpy.dot(z0, z1) / (numpy.linalg.norm(z0) * numpy.linalg.norm(z1))
    theta = numpy.arccos(numpy.clip(cos, -1.0, 1.0))
    if theta < 1e-6:                    # (nearly) parallel: the straight line is the arc
        return lerp(z0, z1, t)
    return (numpy.sin((1 - t) * theta) * z0 + numpy.sin(t * theta) * z1) / numpy.sin(theta)


def lerp(z0, z1, t):
    """Linear interpolation (1 - t) z0 + t z1."""
    return (1 - t) * z0 + t * z1


INTERPOLATIONS = {"linear": lerp, "spherical": slerp}


def interpolation_z(module, config, rows, steps, how, rng):
    """(rows * steps, n_z): each row walks from one random z to another in `steps` steps."""
    ends = module.sample_z(config, 2 * rows, rng)
    ts = numpy.linspace(0.0, 1.0, steps)
    z = [INTERPOLATIONS[how](ends[2 * r], ends[2 * r + 1], t) for r in range(rows) for t in ts]
    return numpy.stack(z).astype(numpy.float32)


def load_generator(snapshot, device):
    """(GAN file, Config, generator) of an unconditional GAN's snapshot, on the device."""
    trained = load(snapshot, device)
    if not hasattr(trained.module, "sample_z"):
        raise TrainingError(f"{snapshot} is a {trained.name} snapshot, which is conditional: "
                            "generate draws from unconditional GANs (pix2pix: use translate)")
    return trained.module, trained.config, trained.models["gen"]


@click.command("generate")
@click.option("--snapshot", required=True, type=click.Path(exists=True, dir_okay=False),
              help="A snapshot_iter_N.h5 of gan, dcgan, wgan-gp or began.")
@click.option("--out", required=True, help="The PNG to write (an existing file is never "
                                           "overwritten).")
@click.option("--n", type=click.IntRange(1), default=64, show_default=True,
              help="Samples (points for the toy data); with --interpolate, rows x steps.")
@click.option("--interpolate", type=click.Choice(sorted(INTERPOLATIONS)), is_flag=False,
              flag_value="spherical", default=None, metavar="[linear|spherical]",
              help="Rows of interpolations between random z's (no value: spherical).")
@click.option("--steps", type=click.IntRange(2), default=8, show_default=True,
              help="With --interpolate: images per row.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds z.")
@click.option("--gpu", type=int, default=-1, show_default=True)
@user_errors
def generate_command(snapshot, out, n, interpolate, steps, seed, gpu):
    """Draw samples, or latent interpolations, from a trained unconditional GAN."""
    can_write_file(out)
    device = backend.Device(gpu)
    module, config, G = load_generator(snapshot, device)
    rng = numpy.random.RandomState(seed)
    if interpolate:
        rows = max(1, n // steps)
        z = interpolation_z(module, config, rows, steps, interpolate, rng)
    else:
        z = module.sample_z(config, n, rng)
    with device:
        x = backend.to_cpu(module.generate(G, device.send(z)))
    if interpolate and x.ndim == 2:     # toy data: each row as a path through the plane
        image = scatter_image(x.reshape(rows, steps, -1), lines=True)
    else:
        image = picture(x, ncol=steps if interpolate else None)
    save_image(image, out)
    what = f"{rows} rows of {interpolate} interpolation" if interpolate else f"{len(x)} samples"
    click.echo(f"{what} in {out}", err=True)
