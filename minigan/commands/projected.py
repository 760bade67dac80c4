"""`python cli.py projected`: projected-gan's train.py command line, on minigan.

    python cli.py projected --outdir training-runs --cfg fastgan_lite --data ./faces64 \\
        --batch 64 --batch-gpu 8 --kimg 1000 --mirror --snap 5 --metrics fid
    python cli.py projected --outdir training-runs --resume training-runs/00000-.../   # continue

Layout as projected-gan's: OUTDIR/NNNNN-CFG-DATA-gpus1-batchB[-DESC]/ with fakesKKKKKK.png
(a grid from G_ema) and network-snapshot-KKKKKK.h5 every --snap ticks of --tick kimg, KKKKKK the
thousands of images shown (KKKKKK_RRR, RRR images past it, where a tick under 1 kimg or the
last snapshot would repeat a name: nothing is overwritten); minigan adds log.jsonl, loss.png,
and with --metrics fid fid.jsonl and fid.png. A snapshot holds the full state (G, D, G_ema,
optimizers, data order, random state), so --resume continues exactly in the snapshot's folder.
--batch-gpu splits a batch into rounds whose gradients add up (gradient accumulation).

Data-parallel as projected-gan's --gpus: `mpiexec -n K python cli.py projected ...
--communicator mpi|nccl [--sync-bn] [--gpu auto]`; --batch stays the total over the K ranks
(each rank takes --batch / K images per iteration in rounds of --batch-gpu), the run folder says
gpusK, and rank 0 writes it.
"""
import math
import os
import re

import click
import numpy
from PIL import Image

from .. import backend
from ..datasets import DatasetError, ImageFolderDataset
from ..datasets.image_folder import list_images
from ..folders import writable_folder
from ..gans import REGISTRY, snapshot_meta
from ..training import TrainingError, snapshots
from ..visualize import save_image, tile, to_uint8
from . import ranks
from .common import (batches, make_trainer, on_rank0, run_trainer, seed_everything,
                     snapshot_config, usage_error, user_errors, writes)
from .fid_log import FIDLog, check_fid_ready

GAN = "projected"
MODULE = REGISTRY[GAN]
GLOB = "network-snapshot-*.h5"
METRICS = ("fid", "none")


def run_dir(outdir, desc):
    """OUTDIR/NNNNN-desc with NNNNN one more than any run there (train.py's rule)."""
    ids = [int(m.group()) for x in (os.listdir(outdir) if os.path.isdir(outdir) else [])
           if (m := re.match(r"^\d+", x)) and os.path.isdir(os.path.join(outdir, x))]
    return os.path.join(outdir, f"{max(ids, default=-1) + 1:05d}-{desc}")


def resume_path(resume):
    """The snapshot to continue: a file, or the latest network-snapshot in a run folder."""
    if os.path.isfile(resume):
        return resume
    if os.path.isdir(resume):
        found = snapshots(resume, GLOB)
        if found:
            return found[-1]
        raise TrainingError(f"--resume: no {GLOB} in {resume}")
    raise TrainingError(f"--resume: {resume} does not exist")


def image_size(data):
    """The side of the first image in data (the run's resolution unless --resolution)."""
    files = list_images(data)
    if not files:
        raise DatasetError(f"--data {data}: no images in it")
    with Image.open(os.path.join(data, files[0])) as im:   # list_images gives relative paths
        return min(im.size)


def grid_z(config, seed, n=32):
    """The fixed z of the sample grids."""
    return MODULE.sample_z(config, n, numpy.random.RandomState(seed))


def render(G, z, chunk, seed):
    """G(z) in test mode, in chunks, noise from RandomState(seed) (the 'fastgan' G's)."""
    rng = numpy.random.RandomState(seed)
    return numpy.concatenate([backend.to_cpu(MODULE.generate(G, G.xp.asarray(z[i:i + chunk]),
                                                              rng))
                              for i in range(0, len(z), chunk)])


def kimg_label(folder, prefix, suffix, nimg):
    """KKKKKK, the whole kimg of nimg images, as the official names; KKKKKK_RRR (RRR images
    past it) when FOLDER/PREFIX KKKKKK SUFFIX is already an earlier file's (ticks under 1 kimg,
    or a run's last snapshot soon after a periodic one), so nothing is overwritten. The suffixed
    names sort after the whole one, by snapshot_key and by name alike ('.' < '_')."""
    whole = f"{nimg // 1000:06d}"
    if nimg % 1000 and os.path.exists(os.path.join(folder, prefix + whole + suffix)):
        return f"{whole}_{nimg % 1000:03d}"
    return whole


def sampler(out, config, seed, fid):
    """At each snapshot tick: fakesKKKKKK.png from G_ema (and the FID when asked)."""
    z = grid_z(config, seed)

    def sample(updater):
        G, k = updater.models["gen_ema"], kimg_label(out, "fakes", ".png", updater.nimg)
        picture = tile(to_uint8(render(G, z, config.batch_gpu, seed + 1)), ncol=8)
        save_image(picture, os.path.join(out, f"fakes{k}.png"))
        if fid is not None:
            rng = numpy.random.RandomState(seed + 2)

            def draw(n):
                zs = MODULE.sample_z(config, n, rng)
                return [render(G, zs, config.batch_gpu, seed + 3)]
            result = fid(draw, updater.nimg // config.batch, kimg=updater.nimg / 1000)
            click.echo(f"\nkimg {updater.nimg / 1000:.1f}: {result}", err=True)
    return sample


@click.command("projected")
@click.option("--outdir", required=True, metavar="DIR", help="Where to save the results.")
@click.option("--cfg", type=click.Choice(["fastgan", "fastgan_lite"]), default="fastgan_lite",
              show_default=True, help="Base configuration (the G's up-blocks).")
@click.option("--data", required=True, metavar="DIR", help="Folder of training images.")
@click.option("--gpus", type=click.IntRange(1), default=None,
              help="GPUs (ranks) [default: 1, or K under mpiexec -n K with --communicator; "
                   "minigan: --gpu picks the device].")
@click.option("--batch", type=click.IntRange(1), default=64, show_default=True,
              help="Total batch size.")
@click.option("--batch-gpu", type=click.IntRange(1), default=None,
              help="Images per round; --batch / --batch-gpu rounds per step [default: --batch].")
@click.option("--cbase", type=click.IntRange(1), default=128, show_default=True,
              help="minigan: FastGAN's ngf (the official fastgan configs fix it at 128).")
@click.option("--ndf", type=click.IntRange(0), default=0, show_default=True,
              help="minigan: one width for every D layer; 0: the official channel table.")
@click.option("--mirror", type=bool, is_flag=False, flag_value=True, default=False,
              show_default=True, help="Random x-flips of the data (--mirror or --mirror=1).")
@click.option("--resume", default=None, metavar="PATH",
              help="Continue a run exactly: a snapshot or a run folder.")
@click.option("--resolution", type=click.IntRange(16), default=None,
              help="minigan: train at this size [default: the first image's].")
@click.option("--desc", default=None, help="String to include in the run folder's name.")
@click.option("--metrics", default="fid", show_default=True,
              help="fid (FID (EfficientNet-lite0) at each snapshot) or none.")
@click.option("--fid-images", type=click.IntRange(2), default=1000, show_default=True,
              help="minigan: generated images per FID (the official fid50k: 50000).")
@click.option("--kimg", type=click.FloatRange(0, min_open=True), default=25000,
              show_default=True, help="Training length in thousands of images.")
@click.option("--tick", type=click.FloatRange(0, min_open=True), default=4, show_default=True,
              help="Progress tick in kimg.")
@click.option("--snap", type=click.IntRange(1), default=50, show_default=True,
              help="Snapshots, samples and metrics every this many ticks.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--gpu", type=ranks.GpuId(), default=-1, show_default=True,
              help="CUDA device; -1: the CPU; auto: the rank's local GPU (under mpiexec).")
@click.option("--workers", type=click.IntRange(0), default=1, show_default=True,
              help="Threads preparing batches.")
@click.option("--communicator", type=click.Choice(ranks.distributed.COMMUNICATORS),
              default=None, help="Data-parallel training under mpiexec -n K: mpi or nccl "
                                 "(--batch is the total over the ranks).")
@click.option("--sync-bn", is_flag=True,
              help="With --communicator: batch norm statistics over all ranks' rounds.")
@user_errors
def projected_command(**o):
    """Train ProjectedGAN with projected-gan's train.py flags."""
    metric_names = [m for m in o["metrics"].split(",") if m]
    bad = [m for m in metric_names if m not in METRICS]
    if bad:
        raise click.UsageError(f"--metrics {','.join(bad)}: minigan computes fid or none")
    comm = ranks.setup_ranks(o)     # under mpiexec: the communicator, the options check
    k = 1 if comm is None else comm.size
    if o["gpus"] not in (None, k):
        raise usage_error(f"--gpus {o['gpus']}: this run has {k} rank(s) (start K ranks "
                          f"with mpiexec -n K ... --communicator mpi|nccl)")
    batch_gpu = o["batch_gpu"] or max(1, o["batch"] // k)
    if o["batch"] % (batch_gpu * k):
        raise usage_error(f"--batch {o['batch']} must be a multiple of --batch-gpu "
                          f"{batch_gpu}" + (f" times {k} ranks" if k > 1 else ""))
    device = backend.Device(o["gpu"])
    path, config, out = on_rank0(lambda: run_folder(o, k))
    size = config.size if config else (o["resolution"] or image_size(o["data"]))
    dataset = ImageFolderDataset(o["data"], size=size, flip=o["mirror"])
    fid = "fid" in metric_names
    if config is None:
        config = MODULE.Config.for_data(dataset.shape, ngf=o["cbase"], ndf=o["ndf"],
                                        lite=o["cfg"] == "fastgan_lite", batch=o["batch"],
                                        batch_gpu=batch_gpu)
    click.echo(f"data: {dataset.describe()}", err=True)
    click.echo(f"output directory: {out}", err=True)
    seed_everything(o["seed"])
    models, optimizers = MODULE.build(config)
    updater = MODULE.Updater(config, models, optimizers, device)
    per_rank = config.batch // k          # in rounds of batch_gpu
    iterator = batches(dataset, config.batch_gpu, per_rank // config.batch_gpu, o["seed"],
                       o["workers"])
    tick = max(1, round(o["tick"] * 1000 / config.batch))             # iterations
    every = tick * o["snap"]
    log = FIDLog(o["data"], out, o["fid_images"], device) if fid else None
    trainer = make_trainer(updater, iterator, out, math.ceil(o["kimg"] * 1000 / config.batch),
                           o, log_interval=tick, snapshot_interval=every, sample_interval=every,
                           sample=sampler(out, config, o["seed"], log),
                           meta=snapshot_meta(GAN, config, {**o,
                                                            "data": os.path.abspath(o["data"])}),
                           seed=o["seed"], keep_snapshots=10 ** 9, snapshot_glob=GLOB,
                           snapshot_name=lambda it: "network-snapshot-" + kimg_label(
                               out, "network-snapshot-", ".h5", it * config.batch) + ".h5")
    run_trainer(trainer, iterator, path, writes(os.path.join(out, "training_options.json")),
                {"config": config.to_dict(), "options": o},
                lambda t: f"resuming {path} at kimg {updater.nimg / 1000:.1f}", f"results in {out}")


def run_folder(o, k):
    """(snapshot to resume or None, its Config or None, the run folder): the checks of the disk
    and the folder's name (OUTDIR/NNNNN-...-gpusK-...), decided once (on rank 0 under mpiexec)."""
    if not os.path.isdir(o["data"]):
        raise DatasetError(f"--data {o['data']}: no such folder")
    path = resume_path(o["resume"]) if o["resume"] else None
    config = snapshot_config(path, MODULE) if path else None
    if config is not None:
        click.echo("--resume: the networks, batch and resolution are the snapshot's", err=True)
        if config.batch % (config.batch_gpu * k):
            raise TrainingError(f"--resume: the snapshot's batch {config.batch} in rounds of "
                                f"{config.batch_gpu} cannot be split over {k} ranks")
    if "fid" in o["metrics"].split(","):
        check_fid_ready(o["data"])
    if path:
        return path, config, os.path.dirname(os.path.abspath(path))
    writable_folder(o["outdir"], "--outdir")
    name = os.path.basename(os.path.normpath(o["data"]))
    desc = f"{o['cfg']}-{name}-gpus{k}-batch{o['batch']}" + (f"-{o['desc']}" if o["desc"]
                                                            else "")
    return None, None, run_dir(o["outdir"], desc)
