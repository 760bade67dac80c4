"""`python cli.py pix2pix` (train) and `python cli.py translate` (apply a snapshot to images)."""
import os

import click
import numpy

from .. import backend
from ..datasets import DatasetError, SyntheticFacadeDataset, label_image, open_facade
from ..datasets.errors import command_line
from ..gans import load, pix2pix
from ..folders import making, writable_folder
from ..gans.base import ConfigError
from ..training import TrainingError
from ..visualize import save_image, tile, to_uint8
from .common import (given, make_iterator, resolve_run, seed_everything, start,
                     snapshot_config, train, training_options, user_errors)



def facade_data(opts, data_dir_given):
    """(train set, validation set, first line to print): the real facades, else synthetic ones."""
    kw = dict(size=opts["size"], direction=opts["direction"], labels=opts["labels"])
    train_set = open_facade(opts["data_dir"], "train", required=data_dir_given, **kw)
    if train_set is not None:
        return train_set, open_facade(opts["data_dir"], "val", required=True, **kw), \
            f"data: {train_set.describe()}"
    labels = opts["labels"] or ("onehot" if opts["direction"] == "BtoA" else "color")
    kw["labels"] = labels
    note = (f"no facade data in {opts['data_dir']}: training on procedurally generated facades "
            f"({labels} labels); for the real CMP facades run: {command_line('download facade')}")
    return (SyntheticFacadeDataset(split="train", seed=opts["seed"], **kw),
            SyntheticFacadeDataset(split="val", seed=opts["seed"], **kw), note)


# Config fields the command line sets (the channels come from the data)
FLAGS = ("n_down", "ngf", "ndf", "discriminator", "output")


def sampler(val_set, n=4):
    """input | output | target rows for the first n validation examples (fixed across the run)."""
    pairs = [val_set.get_example(i) for i in range(min(n, len(val_set)))]
    x = numpy.stack([p[0] for p in pairs])
    x_real = numpy.stack([p[1] for p in pairs])

    def sample(updater):
        G = updater.models["gen"]
        x_fake = backend.to_cpu(pix2pix.translate(G, updater.to_device(x)))
        cells = [[_picture(a), _picture(b), _picture(c)] for a, b, c in zip(x, x_fake, x_real)]
        return tile(numpy.stack([c for row in cells for c in row]), ncol=3)
    return sample


def _picture(x):
    """A network input or output as an (H, W, 3) uint8 picture (label maps in their colours)."""
    return to_uint8(label_image(x) if x.shape[0] not in (1, 3) else x)


@click.command("pix2pix")
@click.option("--dataset", type=click.Choice(["facade"]), default="facade", show_default=True)
@click.option("--data-dir", default="data/facade", show_default=True,
              help="CMP base set or pix2pix A|B images; without data, synthetic facades.")
@click.option("--direction", type=click.Choice(["BtoA", "AtoB"]), default="BtoA", show_default=True,
              help="BtoA: label map -> photo; AtoB: photo -> label map.")
@click.option("--labels", type=click.Choice(["onehot", "color"]), default=None,
              help="Label maps as 12 one-hot channels or 3 colour channels "
                   "[default: one-hot for CMP data, colour for A|B images].")
@click.option("--size", type=click.IntRange(16), default=256, show_default=True,
              help="Crop size (images are resized to size * 286 / 256 first).")
@click.option("--discriminator", type=click.Choice(sorted(pix2pix.DISCRIMINATORS)),
              default="chainer", show_default=True,
              help="chainer-pix2pix's two-stem D, or the paper's 70x70 PatchGAN.")
@click.option("--output", type=click.Choice(["linear", "tanh"]), default="linear",
              show_default=True, help="Generator output: chainer-pix2pix's linear or the paper's tanh.")
@click.option("--n-down", type=click.IntRange(1), default=7, show_default=True,
              help="U-Net depth (the bottleneck is size / 2^n-down).")
@click.option("--ngf", type=click.IntRange(1), default=64, show_default=True)
@click.option("--ndf", type=click.IntRange(1), default=32, show_default=True)
@training_options("result/pix2pix", iterations=200_000, batch_size=1)
@click.pass_context
@user_errors
def pix2pix_command(ctx, **opts):
    """Train pix2pix (U-Net + PatchGAN) on facades: label map -> photo."""
    start(ctx, opts)
    device = backend.Device(opts["gpu"])
    out, resume_path, opts = resolve_run(ctx, "pix2pix", opts)
    size = opts["size"]
    try:        # before any data is read: a size the U-Net cannot take is a usage error
        pix2pix.Config.for_data(((3, size, size), (3, size, size)),
                                **{k: opts[k] for k in FLAGS})
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    # a run on real facades resumes on real facades: their folder gone is an error, not a
    # silent switch to synthetic ones
    required = given(ctx, "data_dir") or (resume_path is not None and
                                          opts.get("synthetic") is False)
    train_set, val_set, note = facade_data(opts, required)
    opts["synthetic"] = isinstance(train_set, SyntheticFacadeDataset)
    click.echo(note, err=True)
    seed_everything(opts["seed"])
    if resume_path:
        config = snapshot_config(resume_path, pix2pix)
    else:
        x, x_real = train_set.get_example(0)
        config = pix2pix.Config.for_data((x.shape, x_real.shape), **{k: opts[k] for k in FLAGS})
    models, optimizers = pix2pix.build(config)
    updater = pix2pix.Updater(config, models, optimizers, device)
    train("pix2pix", opts, updater, make_iterator(train_set, opts), sampler(val_set), out,
          resume_path)


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


@click.command("translate")
@click.option("--snapshot", required=True, type=click.Path(exists=True, dir_okay=False),
              help="A pix2pix snapshot_iter_N.h5.")
@click.option("--input", "input_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="A folder of inputs: colour label maps or photos, or pix2pix A|B images "
                   "(the input half is taken by --direction).")
@click.option("--out", required=True, help="Folder for the outputs (created; files never overwritten).")
@click.option("--gpu", type=int, default=-1, show_default=True)
@click.option("--deterministic", is_flag=True,
              help="Use running batch statistics and no dropout. By default G runs as the paper "
                   "tests it: dropout on and the statistics of the test batch.")
@user_errors
def translate_command(snapshot, input_dir, out, gpu, deterministic):
    """Apply a trained pix2pix generator to every image in a folder."""
    device = backend.Device(gpu)
    writable_folder(out)
    files = sorted(f for f in os.listdir(input_dir) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise DatasetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {input_dir}")
    targets = [os.path.join(out, os.path.splitext(name)[0] + ".png") for name in files]
    taken = [t for t in targets if os.path.exists(t)]
    if taken:
        raise DatasetError(f"{taken[0]} exists; choose another --out (nothing is overwritten)")
    trained = load(snapshot, device)
    if trained.name != "pix2pix":
        raise TrainingError(f"{snapshot} is a {trained.name} snapshot, not pix2pix")
    G, c, opts = trained.models["gen"], trained.config, trained.options
    with making(out), device:
        for name, target in zip(files, targets):
            x = _load_input(os.path.join(input_dir, name), opts.get("direction", "BtoA"),
                            opts.get("size", 256), c.in_channels)
            x_fake = pix2pix.translate(G, device.send(x[None]), paper_mode=not deterministic)
            save_image(_picture(backend.to_cpu(x_fake)[0]), target)
    click.echo(f"translated {len(files)} images into {out}", err=True)


def _load_input(path, direction, size, in_channels):
    """An input image as the network takes it: 12 one-hot channels from a colour label map, or
    3 colour channels; of a pix2pix A|B image, the half that --direction reads."""
    from PIL import Image
    from ..datasets.facade import colors_to_classes, onehot, to_chw
    try:
        im = Image.open(path).convert("RGB")
    except Exception as e:
        raise DatasetError(f"cannot read image {path}: {e}") from None
    w, h = im.size
    if w == 2 * h:      # a pix2pix A|B image: photo left, label map right
        im = im.crop((w // 2, 0, w, h)) if direction == "BtoA" else im.crop((0, 0, w // 2, h))
    resample = Image.NEAREST if in_channels == 12 else Image.BICUBIC
    rgb = numpy.asarray(im.resize((size, size), resample))
    return onehot(colors_to_classes(rgb)) if in_channels == 12 else to_chw(rgb)
