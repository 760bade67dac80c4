"""`python cli.py lightweight`: lucidrains' lightweight_gan command line, on minigan.

    python cli.py lightweight --data ./data --name ramen --batch-size 16 --gradient-accumulate-every 4
    python cli.py lightweight --name ramen --generate                 # results/ramen-generated-N/
    python cli.py lightweight --name ramen --generate-interpolation   # a GIF in results/ramen/
    python cli.py lightweight --name ramen --generate --load-from 12  # checkpoint 12

Layout as lucidrains': results/NAME/{n}.jpg and {n}-ema.jpg every --evaluate-every steps,
models/NAME/model_{n}.h5 every --save-every (n = ceil(step / save_every): a full snapshot, so a
run continues exactly), models/NAME/config.json, and minigan's results/NAME/log.jsonl, loss.png.
Training a NAME that exists continues it; --new moves the old folders aside (never deletes).

--transparent trains on RGBA (images without alpha are opaque) and, as lucidrains, writes the
grids, the --generate images and the interpolation frames as PNG ({n}.png, {n}-ema.png) with
alpha; the GIF is composited onto white, as his; FID sees the samples composited onto white, as
it reads the real images (metrics.read_image).

Data-parallel: `mpiexec -n K python cli.py lightweight ... --communicator mpi|nccl [--sync-bn]
[--gpu auto]`; --batch-size is per rank and per accumulation step, rank 0 writes results/ and
models/, and every rank computes its shard of each accumulation step (commands/ranks.py).
"""
import datetime
import math
import os
import sys

import click
import numpy
from PIL import Image
from tqdm.auto import tqdm

from .. import backend
from ..augment import parse_types
from ..datasets import DatasetError, ImageFolderDataset
from ..datasets.image_folder import on_white as image_on_white
from ..gans import REGISTRY, load, snapshot_meta
from ..training import TrainingError, iteration_of, snapshots
from ..visualize import tile, to_uint8
from . import ranks
from .common import (Finite, batches, make_trainer, on_rank0, run_trainer, seed_everything,
                     snapshot_config, usage_error, user_errors, writes)
from .fid_log import FIDLog, check_fid_ready

GAN = "lightweight"
MODULE = REGISTRY[GAN]


class Widths(click.ParamType):
    """lucidrains' list of widths as fire spells it: [32], [32,64], 32,64, 32 or []."""
    name = "[W,...]"

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return tuple(value)
        text = str(value).strip().strip("[]()").replace(" ", "")
        try:
            return tuple(int(w) for w in text.split(",") if w)
        except ValueError:
            self.fail(f"{value!r}: a list of widths, e.g. [32] or [32,64]", param, ctx)


def option(name, *args, **kwargs):
    """--kebab-name and --snake_name for one option (lucidrains' fire accepts both)."""
    kebab, snake = "--" + name.replace("_", "-"), "--" + name
    names = (kebab, snake) if kebab != snake else (kebab,)
    return click.option(*names, name, *args, **kwargs)


def extension(config):
    """lucidrains' image_extension: png for RGBA (--transparent), else jpg."""
    return "png" if config.channels == 4 else "jpg"


def save_picture(picture, path):
    """An (H, W, 3) uint8 picture as JPEG, or (H, W, 3 or 4) as PNG (by path), atomically."""
    tmp = path + ".tmp"
    png = path.endswith(".png")
    Image.fromarray(picture).save(tmp, format="PNG" if png else "JPEG",
                                  **({} if png else {"quality": 95}))
    os.replace(tmp, path)


def composite_on_white(picture):
    """An (H, W, 4) uint8 picture composited onto white, as (H, W, 3) (lucidrains' GIF)."""
    return numpy.asarray(image_on_white(Image.fromarray(picture, "RGBA")).convert("RGB"))


def checkpoints(models_dir):
    """[(path, n)] of models_dir/model_{n}.h5, in order of n."""
    found = snapshots(models_dir, "model_*.h5") if os.path.isdir(models_dir) else []
    return [(p, iteration_of(p)) for p in found]


def checkpoint(models_dir, load_from):
    """(path, n) of models_dir/model_{n}.h5: the latest for -1, or None when there is none."""
    found = checkpoints(models_dir)
    if load_from == -1:
        return found[-1] if found else (None, None)
    path = os.path.join(models_dir, f"model_{load_from}.h5")
    if not os.path.isfile(path):
        have = ", ".join(str(n) for _, n in found) or "none"
        raise TrainingError(f"--load-from {load_from}: {path} does not exist (checkpoints: {have})")
    return path, load_from


def stamp(folder, suffix="", ext="jpg"):
    """A name lucidrains' way (generated-MM-DD-YYYY_HH-MM-SS) that is free in folder."""
    name = datetime.datetime.now().strftime("generated-%m-%d-%Y_%H-%M-%S")
    k, base = 1, name
    while any(os.path.exists(os.path.join(folder, name + s)) for s in (suffix, f"-0.{ext}", "")):
        k += 1
        name = f"{base}-{k}"
    return name


def render(G, z, rng_seed, chunk=16):
    """G(z) in test mode, in chunks, with the noise maps drawn from RandomState(rng_seed)."""
    rng = numpy.random.RandomState(rng_seed)
    xs = [backend.to_cpu(MODULE.generate(G, G.xp.asarray(z[i:i + chunk]), rng))
          for i in range(0, len(z), chunk)]
    return numpy.concatenate(xs)


def sampler(results, config, seed, tiles, interval, total, fid=None, fid_every=None):
    """Writes results/{n}.jpg and {n}-ema.jpg (.png with alpha for RGBA; tiles x tiles, the
    same z every time), and every fid_every steps the FID of G (as lucidrains: the plain G)
    into results/fid.jsonl."""
    z = MODULE.sample_z(config, tiles * tiles, numpy.random.RandomState(seed))
    ext = extension(config)

    def sample(updater):
        if updater.step % interval == 0 or updater.step == total:
            n = math.ceil(updater.step / interval)
            for suffix, G in (("", updater.models["gen"]), ("-ema", updater.models["gen_ema"])):
                picture = tile(to_uint8(render(G, z, seed + 1)), ncol=tiles)
                save_picture(picture, os.path.join(results, f"{n}{suffix}.{ext}"))
        if fid is not None and updater.step % fid_every == 0:
            rng = numpy.random.RandomState(seed + 2)
            draw = lambda k: [render(updater.models["gen"], MODULE.sample_z(config, k, rng),
                                     seed + 3)]
            click.echo(f"\nstep {updater.step}: {fid(draw, updater.step)}", err=True)
    return sample


def slerp(t, low, high):
    """Rows of spherical interpolation at t (lucidrains' slerp, t may exceed 1)."""
    a = low / numpy.linalg.norm(low, axis=1, keepdims=True)
    b = high / numpy.linalg.norm(high, axis=1, keepdims=True)
    omega = numpy.arccos(numpy.clip((a * b).sum(1), -1, 1))[:, None]
    so = numpy.sin(omega)
    return numpy.sin((1 - t) * omega) / so * low + numpy.sin(t * omega) / so * high


def generate(o, results_root, models_dir, device):
    """--generate (JPEGs, or PNGs with alpha for RGBA, into results/NAME-generated-{n}/) or
    --generate-interpolation (a GIF, RGBA composited onto white; --save-frames: its frames)."""
    path, n = checkpoint(models_dir, o["load_from"])
    if path is None:
        raise TrainingError(f"no model to generate from: no model_*.h5 in {models_dir} (train "
                            f"first: --data DIR --name {o['name']})")
    trained = load(path, device)
    c, tiles = trained.config, o["num_image_tiles"]
    ext = extension(c)
    rng = numpy.random.RandomState(o["seed"])
    if o["generate"]:
        out = os.path.join(results_root, f"{o['name']}-generated-{n}")
        os.makedirs(out, exist_ok=True)
        name = stamp(out, ext=ext)
        types = [t.strip() for t in o["generate_types"].split(",") if t.strip()]
        for kind in types:
            G = trained.models["gen" if kind == "default" else "gen_ema"]
            x = render(G, MODULE.sample_z(c, tiles, rng), o["seed"])
            for i, image in enumerate(to_uint8(x)):
                tag = "" if kind == "default" else "-ema"
                save_picture(image, os.path.join(out, f"{name}-{i}{tag}.{ext}"))
        click.echo(f"sample images generated at {out}", err=True)
        return
    out = os.path.join(results_root, o["name"])
    os.makedirs(out, exist_ok=True)
    name = stamp(out, ".gif")
    low, high = (MODULE.sample_z(c, tiles * tiles, rng) for _ in range(2))
    frames = []
    for t in numpy.linspace(0.0, 8.0, o["interpolation_num_steps"]):
        z = slerp(t, low, high).astype(numpy.float32)
        frame = tile(to_uint8(render(trained.models["gen_ema"], z, o["seed"])), ncol=tiles)
        frames.append(composite_on_white(frame) if frame.shape[-1] == 4 else frame)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(os.path.join(out, name + ".gif"), save_all=True, append_images=images[1:],
                   duration=80, loop=0)
    if o["save_frames"]:
        os.makedirs(os.path.join(out, name))
        for i, f in enumerate(frames):
            save_picture(f, os.path.join(out, name, f"{i}.{ext}"))
    click.echo(f"interpolation generated at {os.path.join(out, name)}.gif", err=True)


def show_progress(o, results_root, models_dir, device, num_images=4):
    """--show-progress: the same num_images latents through every checkpoint, as lucidrains:
    results/NAME-progress/{n}.jpg and {n}-ema.jpg (n zero-padded; .png with alpha for RGBA),
    one row of num_images per checkpoint, so the files play as the run's progress."""
    found = checkpoints(models_dir)
    if not found:
        raise TrainingError(f"--show-progress: no model_*.h5 in {models_dir} (train first: "
                            f"--data DIR --name {o['name']})")
    out = os.path.join(results_root, f"{o['name']}-progress")
    os.makedirs(out, exist_ok=True)
    width = len(str(found[-1][1]))
    z = None
    for path, n in tqdm(found, desc="progress images", file=sys.stderr, disable=None):
        trained = load(path, device)
        c = trained.config
        if z is None:                   # drawn once: every checkpoint renders the same latents
            z = MODULE.sample_z(c, num_images, numpy.random.RandomState(o["seed"]))
        for suffix, key in (("", "gen"), ("-ema", "gen_ema")):
            x = render(trained.models[key], z, o["seed"])
            save_picture(tile(to_uint8(x), ncol=num_images),
                         os.path.join(out, f"{str(n).zfill(width)}{suffix}.{extension(c)}"))
    click.echo(f"progress images of {len(found)} checkpoints in {out}", err=True)


def move_aside(folder):
    """folder -> folder-old-K (the first free K); returns the new name."""
    k = 1
    while os.path.exists(f"{folder}-old-{k}"):
        k += 1
    os.rename(folder, f"{folder}-old-{k}")
    return f"{folder}-old-{k}"


def find_checkpoint(o, models_dir):
    """(path, its Config) of the checkpoint to continue, or (None, None); the checks of the
    disk before any work (under mpiexec run on rank 0, which writes)."""
    path, _ = (None, None) if o["new"] else checkpoint(models_dir, o["load_from"])
    if not os.path.isdir(o["data"]):
        raise DatasetError(f"--data {o['data']}: no such folder")
    if o["calculate_fid_every"]:
        check_fid_ready(o["data"])
    return path, snapshot_config(path, MODULE) if path else None


def move_old(o, results, models_dir):
    """--new: the earlier folders of NAME moved aside."""
    if o["new"]:
        for folder in (results, models_dir):
            if os.path.exists(folder):
                click.echo(f"--new: moved the earlier {folder} to {move_aside(folder)}", err=True)


def train(o, results, models_dir, device):
    """Train NAME: continue its latest (or --load-from) checkpoint unless --new."""
    size = o["image_size"]
    if size < 32 or size & (size - 1):
        raise usage_error(f"--image-size {size} must be a power of 2, at least 32")
    path, config = on_rank0(lambda: find_checkpoint(o, models_dir))
    seed_everything(o["seed"])
    size = config.size if config else size
    channels = config.channels if config else 4 if o["transparent"] else 1 if o["greyscale"] else 3
    dataset = ImageFolderDataset(o["data"], size=size, channels=channels,
                                 flip=o["dataset_aug_prob"] > 0)
    fid_every = o["calculate_fid_every"]
    if config is None:
        aug_prob = o["aug_prob"]
        if aug_prob is None:        # lucidrains' rule for small datasets
            aug_prob = min(0.5, (1e5 - len(dataset)) * 3e-6) if len(dataset) < 1e5 else 0.0
            click.echo(f"autosetting augmentation probability to {round(aug_prob * 100)}%",
                       err=True)
        config = MODULE.Config.for_data(
            dataset.shape, aug_prob=aug_prob, aug_types=o["aug_types"], alpha=o["learning_rate"],
            gradient_accumulate_every=o["gradient_accumulate_every"],
            disc_output_size=o["disc_output_size"], fmap_max=o["fmap_max"], n_z=o["latent_dim"],
            antialias=o["antialias"], dual_contrast_loss=o["dual_contrast_loss"],
            attn_res_layers=o["attn_res_layers"])
    click.echo(f"data: {dataset.describe()}", err=True)
    on_rank0(lambda: move_old(o, results, models_dir))
    models, optimizers = MODULE.build(config)
    updater = MODULE.Updater(config, models, optimizers, device)
    iterator = batches(dataset, o["batch_size"], config.minibatches(), o["seed"], o["workers"])
    every = o["save_every"]
    trainer = make_trainer(updater, iterator, results, o["num_train_steps"], o,
                           log_interval=o["log_every"], snapshot_interval=every,
                           sample_interval=math.gcd(o["evaluate_every"], fid_every or 0) or
                           o["evaluate_every"],
                           sample=sampler(results, config, o["seed"], o["num_image_tiles"],
                                          o["evaluate_every"], o["num_train_steps"],
                                          fid_every=fid_every, fid=FIDLog(
                                              o["data"], results, o["calculate_fid_num_images"],
                                              device) if fid_every else None),
                           meta=snapshot_meta(GAN, config, o), seed=o["seed"],
                           keep_snapshots=10 ** 9,
                           snapshot_dir=models_dir, snapshot_glob="model_*.h5",
                           snapshot_name=lambda step: f"model_{math.ceil(step / every)}.h5")
    run_trainer(trainer, iterator, path, writes(os.path.join(models_dir, "config.json")),
                {"config": config.to_dict(), "options": o},
                lambda t: f"continuing from {path} (step {t.iteration})",
                f"results in {results}, models in {models_dir}")


@click.command("lightweight")
@option("data", default="./data", show_default=True, help="Folder of training images.")
@option("results_dir", default="./results", show_default=True)
@option("models_dir", default="./models", show_default=True)
@option("name", default="default", show_default=True, help="Run name: results/NAME, models/NAME.")
@option("new", is_flag=True, help="Start over; the old folders move to NAME-old-K (kept).")
@option("load_from", type=int, default=-1, show_default=True,
        help="Checkpoint number to continue or generate from; -1: the latest.")
@option("image_size", type=int, default=256, show_default=True, help="A power of 2, >= 32.")
@option("batch_size", type=click.IntRange(1), default=10, show_default=True)
@option("gradient_accumulate_every", type=click.IntRange(1), default=4, show_default=True)
@option("num_train_steps", type=click.IntRange(1), default=150_000, show_default=True)
@option("learning_rate", type=Finite(strict=True), default=2e-4, show_default=True)
@option("save_every", type=click.IntRange(1), default=1000, show_default=True)
@option("evaluate_every", type=click.IntRange(1), default=1000, show_default=True)
@option("generate", is_flag=True, help="Write images of G and its EMA, then exit.")
@option("generate_types", default="default,ema", show_default=True)
@option("num_image_tiles", type=click.IntRange(1), default=8, show_default=True)
@option("generate_interpolation", is_flag=True, help="Write a GIF of latent walks, then exit.")
@option("interpolation_num_steps", type=click.IntRange(2), default=100, show_default=True)
@option("save_frames", is_flag=True, help="With --generate-interpolation: the frames too.")
@option("aug_prob", type=click.FloatRange(0, 1), default=None,
        help="Probability per batch of augmenting D's input [default: lucidrains' rule, from "
             "the dataset size].")
@option("aug_types", default="cutout,translation", show_default=True,
        help="Of color, cutout, translation, offset, offset_h, offset_v, applied in this "
             "order (color, translation and cutout next to each other: in that order).")
@option("dataset_aug_prob", type=click.FloatRange(0, 1), default=0.0, show_default=True,
        help="> 0: random horizontal flips of the real images (with probability 1/2).")
@option("greyscale", is_flag=True)
@option("transparent", is_flag=True,
        help="RGBA images (4 channels); samples and --generate images as PNG with alpha.")
@option("fmap_max", type=click.IntRange(8), default=512, show_default=True,
        help="The widest feature map.")
@option("latent_dim", type=click.IntRange(1), default=256, show_default=True,
        help="minigan: dimensions of z.")
@option("disc_output_size", type=click.Choice(["1", "5"]), default="5", show_default=True)
@option("calculate_fid_every", type=click.IntRange(1), default=None,
        help="FID (EfficientNet-lite0) of G every N steps, into results/NAME/fid.jsonl.")
@option("calculate_fid_num_images", type=click.IntRange(2), default=12800, show_default=True,
        help="Generated images per FID.")
@option("attn_res_layers", type=Widths(), default="[32]", show_default=True,
        help="Widths of the feature maps that get attention ([] for none).")
@option("antialias", is_flag=True, help="Blur after each upsampling of G and before each "
        "downsampling of D.")
@option("dual_contrast_loss", is_flag=True, help="The dual contrastive loss in place of the "
        "hinge (with --disc-output-size 1).")
@option("show_progress", is_flag=True, help="Render the same latents through every checkpoint "
        "into results/NAME-progress/, then exit.")
@option("seed", type=click.IntRange(0), default=42, show_default=True)
@option("gpu", type=ranks.GpuId(), default=-1, show_default=True,
        help="CUDA device; -1: the CPU; auto: the rank's local GPU (under mpiexec).")
@option("communicator", type=click.Choice(ranks.distributed.COMMUNICATORS), default=None,
        help="Data-parallel training under mpiexec -n K: mpi or nccl; --batch-size is per rank.")
@option("sync_bn", is_flag=True,
        help="With --communicator: batch norm statistics over all ranks' batches.")
@option("log_every", type=click.IntRange(1), default=50, show_default=True,
        help="minigan: a log.jsonl line every N steps.")
@option("workers", type=click.IntRange(0), default=1, show_default=True,
        help="minigan: threads preparing batches.")
@user_errors
def lightweight_command(**o):
    """Train Lightweight GAN (FastGAN) with lucidrains' lightweight_gan flags."""
    o["disc_output_size"] = int(o["disc_output_size"])
    if o["transparent"] and o["greyscale"]:
        raise click.UsageError("--transparent and --greyscale: choose one (as lucidrains)")
    try:
        parse_types(o["aug_types"])
    except ValueError as e:
        raise click.UsageError(f"--aug-types: {e}") from None
    one_process = o["generate"] or o["generate_interpolation"] or o["show_progress"]
    if one_process and o["communicator"]:
        raise click.UsageError("--generate, --generate-interpolation and --show-progress run in "
                               "one process: drop --communicator")
    ranks.setup_ranks(o)        # under mpiexec: the communicator, the options check, --gpu auto
    device = backend.Device(o["gpu"])
    results = os.path.join(o["results_dir"], o["name"])
    models_dir = os.path.join(o["models_dir"], o["name"])
    if o["generate"] or o["generate_interpolation"]:
        generate(o, o["results_dir"], models_dir, device)
        return
    if o["show_progress"]:
        show_progress(o, o["results_dir"], models_dir, device)
        return
    train(o, results, models_dir, device)
