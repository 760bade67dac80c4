"""What every training command shares: options, device and data setup, the run folder, errors."""
import functools
import json
import math
import os
import shutil
import sys

import click
import numpy

from .. import backend
from ..datasets import BatchIterator, DatasetError
from ..gans import config_of, snapshot_meta
from ..gans.base import ConfigError
from ..serializers import SerializationError
from ..folders import FolderError, move_aside, writable_folder
from ..training import (Trainer, TrainingError, find_resume, fresh_run_folder, holds_run,
                        iteration_of, read_meta, snapshot_key, snapshots)
from ..distributed import ShardIterator
from ..distributed import trainer as dist
from . import ranks

# options of this invocation, never taken from a snapshot on --resume
RUN_FIXED = ("gpu", "iterations", "epochs", "resume", "workers", "out", "keep", "communicator")
# where things are (not what is trained): on --resume the user's value wins
USER_PLACES = ("data_dir",)


class Finite(click.ParamType):
    """A finite float >= low (> low when strict): --lr nan, inf or -1 are refused."""
    name = "float"

    def __init__(self, low=0.0, strict=False):
        self.low, self.strict = low, strict

    def convert(self, value, param, ctx):
        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(v) or v < self.low or (self.strict and v == self.low):
            self.fail(f"{value} must be a finite number {'>' if self.strict else '>='} "
                      f"{self.low:g}", param, ctx)
        return v


def training_options(default_out, iterations=None, batch_size=1, snapshot_interval=1000,
                     sample_interval=500, log_interval=20):
    """The options every training command takes, with the command's own defaults."""
    def decorate(f):
        options = ranks.OPTIONS[:1] + [
            click.option("--out", default=default_out, show_default=True,
                         help="Run folder; a folder holding an earlier run is never overwritten "
                              "(a new one, OUT-2, is made)."),
            click.option("--iterations", type=click.IntRange(1), default=iterations,
                         help="Stop after this many iterations" +
                              (f" [default: {iterations}]" if iterations else "") + "."),
            click.option("--epochs", type=click.IntRange(1), default=None,
                         help="Stop after this many passes over the data (instead of --iterations)."),
            click.option("--batch-size", type=click.IntRange(1), default=batch_size,
                         show_default=True),
            click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
                         help="Seeds initialization, data order, augmentation and noise."),
            click.option("--resume", is_flag=False, flag_value="latest", default=None,
                         metavar="[PATH]",
                         help="Continue a run: a snapshot file, a run folder, or (no value) the "
                              "latest snapshot in --out."),
            click.option("--snapshot-interval", type=click.IntRange(1), default=snapshot_interval,
                         show_default=True),
            click.option("--keep", type=click.IntRange(1), default=3, show_default=True,
                         help="Snapshots kept (the newest; a pix2pix snapshot at 256 x 256 is "
                              "686 MB)."),
            click.option("--sample-interval", type=click.IntRange(1), default=sample_interval,
                         show_default=True),
            click.option("--log-interval", type=click.IntRange(1), default=log_interval,
                         show_default=True),
            click.option("--workers", type=click.IntRange(0), default=None,
                         help="Background threads preparing batches [default: 2 on a GPU, "
                              "1 on the CPU]."),
        ] + ranks.OPTIONS[1:]
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


# the errors a user can fix: each becomes one line and exit status 1
USER_ERRORS = (DatasetError, TrainingError, SerializationError, ConfigError, backend.DeviceError,
               FolderError)


def one_line(error):
    """An error's message on one line, its reason kept (a multi-line message is joined)."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def user_errors(f):
    """Turn the errors a user can fix into one line and exit status 1 (Ctrl-C into 130)."""
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except USER_ERRORS as e:
            dist.fail(e, one_line(e), expected=True)    # on K ranks: the others must not wait
            raise click.ClickException(one_line(e)) from None
        except KeyboardInterrupt as e:
            dist.fail(e, "interrupted", expected=True)
            click.echo("\naborted", err=True)
            sys.exit(130)
        except Exception as e:
            dist.fail(e, f"{type(e).__name__}: {one_line(e)}")
            raise
    return wrapper


def given(ctx, key):
    """True where the user typed the option (not a default)."""
    source = ctx.get_parameter_source(key)
    return source is not None and source.name == "COMMANDLINE"


def resolve_run(ctx, gan, opts):
    """The run folder, the snapshot to resume (or None), and the options in force.

    On --resume the options that shape the run (architecture, data set, seed...) are those saved
    in the snapshot, so a resumed run cannot silently change them (a differing command-line
    value is reported and ignored); where the data lives is the user's (USER_PLACES: an explicit
    flag wins, and says so). Snapshots store data folders absolute, so a resume from another
    working directory finds them. --out given with --resume resumes into that folder.
    Under mpiexec rank 0 decides (and prints) and every rank takes its answer.
    """
    comm = dist.active()
    if comm is not None:
        return dist.on_rank0(comm, lambda: _resolve_run(ctx, gan, opts),
                             USER_ERRORS + (click.ClickException,))
    return _resolve_run(ctx, gan, opts)


def _resolve_run(ctx, gan, opts):
    if opts["resume"] is None:
        writable_folder(opts["out"])
        out = fresh_run_folder(opts["out"])
        if out != opts["out"]:
            click.echo(f"{opts['out']} holds an earlier run; this run writes to {out} "
                       f"(continue the earlier one with --resume {opts['out']})", err=True)
        return out, None, opts
    path = find_resume(opts["resume"], opts["out"])
    meta = read_meta(path)
    if meta.get("gan") not in (None, gan):
        raise TrainingError(f"{path} is a {meta['gan']} snapshot, not {gan}")
    saved = json.loads(meta.get("options", "{}"))
    for key, value in saved.items():
        if key in RUN_FIXED or key not in opts:
            continue
        if key in USER_PLACES and given(ctx, key):
            if opts[key] != value:
                click.echo(f"--resume: {key.replace('_', '-')} {opts[key]} (the snapshot's "
                           f"run read {value})", err=True)
            continue
        if given(ctx, key) and opts[key] != value:
            click.echo(f"--resume: keeping {key}={value!r} from the snapshot (ignoring "
                       f"{opts[key]!r})", err=True)
        opts[key] = value
    return resume_folder(ctx, path, opts["out"]), path, opts


def resume_folder(ctx, path, out):
    """Where a resumed run writes, with one history per folder: the snapshot's own folder (newer
    snapshots there are moved aside), or an explicit --out that holds no other run (the log up to
    the snapshot is copied in)."""
    home = os.path.dirname(os.path.abspath(path))
    if given(ctx, "out") and os.path.abspath(out) != home:
        writable_folder(out)
        if holds_run(out):
            raise TrainingError(f"--out {out} holds another run; resuming {path} there would mix "
                                f"two histories (give an empty --out, or none to continue in "
                                f"{home})")
        os.makedirs(out, exist_ok=True)
        log = os.path.join(home, "log.jsonl")
        if os.path.exists(log):         # the Trainer cuts it back to the snapshot's iteration
            shutil.copy(log, os.path.join(out, "log.jsonl"))
        click.echo(f"--resume: continuing {path} in {out}", err=True)
        return out
    writable_folder(home)
    newer = [s for s in snapshots(home) if snapshot_key(s) > snapshot_key(path)]
    if newer:
        aside = move_aside(newer, home, "superseded")
        click.echo(f"--resume from an older snapshot: {len(newer)} newer snapshot(s) moved to "
                   f"{aside}; the log is cut back to iteration {iteration_of(path)}", err=True)
    return home


def make_iterator(dataset, opts, minibatches=1):
    """The background batch iterator for the training set: batch-size examples in each of the
    iteration's minibatches (WGAN-GP's n_critic)."""
    workers = opts["workers"]
    if workers is None:
        workers = 2 if opts["gpu"] >= 0 else 1     # a GPU needs its batches sooner
    return batches(dataset, opts["batch_size"], minibatches, opts["seed"], workers)


def batches(dataset, batch_size, minibatches, seed, workers):
    """Iterations of `minibatches` minibatches of batch_size examples; under mpiexec -n K this
    rank's slice of each global minibatch of K * batch_size (so K ranks see, step by step, the
    examples one process at K * batch_size sees)."""
    comm = dist.active()
    if comm is not None:
        return ShardIterator(dataset, batch_size * minibatches, comm.rank, comm.size,
                             minibatches, shuffle=True, seed=seed, n_workers=workers)
    return BatchIterator(dataset, batch_size * minibatches, shuffle=True, seed=seed,
                         n_workers=workers)


def on_rank0(work):
    """work() on rank 0 alone under mpiexec (a folder decision, a check of the disk), its
    result or its one-line error on every rank; work() itself in one process."""
    comm = dist.active()
    if comm is None:
        return work()
    return dist.on_rank0(comm, work, USER_ERRORS + (click.ClickException,))


def usage_error(message):
    """A bad option found after the ranks met: a CollectiveError under mpiexec (every rank
    finds it, rank 0 says it once, no abort), a click.UsageError in one process."""
    return dist.CollectiveError(message) if dist.active() else click.UsageError(message)


def make_trainer(updater, iterator, out, iterations, opts, **kwargs):
    """A Trainer; under mpiexec the models made data-parallel (ranks.prepare) and a
    DistributedTrainer (rank 0 writes, the ranks agree every iteration)."""
    comm = dist.active()
    if comm is None:
        return Trainer(updater, iterator, out, iterations, **kwargs)
    ranks.prepare(comm, updater, opts)
    return dist.DistributedTrainer(updater, iterator, out, iterations, comm, **kwargs)


def writes(path):
    """path on the rank that writes (rank 0, or the only process), None on the others."""
    comm = dist.active()
    return path if comm is None or comm.rank == 0 else None


def start(ctx, opts):
    """What every training command checks first: under mpiexec the ranks meet here
    (ranks.setup_ranks: the communicator, the options check, --gpu auto); --iterations and
    --epochs exclude each other."""
    ranks.setup_ranks(opts)
    if opts["epochs"] is not None and ctx.get_parameter_source("iterations").name == "COMMANDLINE":
        raise click.UsageError("give --iterations or --epochs, not both")


def snapshot_config(path, module):
    """The Config a snapshot was trained with (its networks are what it holds)."""
    name, config = config_of(path)
    if not isinstance(config, module.Config):
        raise TrainingError(f"{path} is a {name} snapshot")
    return config


def train(gan, opts, updater, iterator, sample, out, resume_path):
    """Run the Trainer for --iterations or --epochs; exit 130 after a Ctrl-C snapshot."""
    iterations = opts["iterations"]
    if opts["epochs"] is not None:
        iterations = opts["epochs"] * iterator.batches_per_epoch
    places = {k: os.path.abspath(opts[k]) for k in USER_PLACES if opts.get(k)}
    meta = snapshot_meta(gan, updater.config, {**opts, **places})
    kwargs = dict(log_interval=opts["log_interval"], snapshot_interval=opts["snapshot_interval"],
                  keep_snapshots=opts["keep"], sample_interval=opts["sample_interval"],
                  sample=sample, meta=meta, seed=opts["seed"])
    trainer = make_trainer(updater, iterator, out, iterations, opts, **kwargs)
    run_trainer(trainer, iterator, resume_path, writes(os.path.join(out, "options.json")), opts,
                lambda t: f"resuming {resume_path} at iteration {t.iteration}",
                f"results in {out}")


def run_trainer(trainer, iterator, resume_path, options_path, options, resumed, done):
    """Resume from resume_path (saying resumed(trainer)), record the options (a JSON file;
    None: not on this rank), train, say `done`; exit 130 after a Ctrl-C snapshot."""
    if resume_path:
        trainer.load_snapshot(resume_path)
        click.echo(resumed(trainer), err=True)
    if options_path:
        with open(options_path, "w", encoding="utf-8") as f:
            json.dump(options, f, indent=1)
    with iterator:
        status = trainer.run()
    click.echo(done, err=True)
    if status == "interrupted":
        sys.exit(130)


def seed_everything(seed):
    """NumPy's global generator drives initialization, dropout and noise."""
    numpy.random.seed(seed)
