"""The training loop every GAN shares: progress, log, samples, snapshots, exact resume, safety.

A run folder holds log.jsonl (one JSON line per logged iteration), loss.png, samples/iter_N.png
and the last few snapshot_iter_N.h5. A snapshot holds the models, the optimizers, the updater's
own state (BEGAN's k), the data iterator's position and NumPy's random state, so that N
iterations, a resume and N more equal 2N straight on the CPU, bit for bit.
"""
import glob
import importlib.util
import json
import math
import os
import re
import signal
import sys
import time

import h5py
import numpy

from . import backend
from .core import no_backprop_mode
from .serializers import SerializationError, load_hdf5, save_hdf5
from .visualize import plot_log, read_log, save_image

SNAPSHOT = "snapshot_iter_{:07d}.h5"


class TrainingError(RuntimeError):
    """A problem that ends a run, stated in one line for the user."""


class Updater:
    """One iteration of a GAN's algorithm: subclasses define update(batch) -> {name: float}.

    It holds the GAN's Config, its models and optimizers ({'gen': ..., 'dis': ...}) and the
    device they live on (a backend.Device, or an id: -1 for the CPU). Under data parallelism
    `comm` is the run's communicator (commands/ranks.prepare sets it): what the algorithm
    computes from a whole batch (BEGAN's k_t, a per-batch augmentation decision) goes through
    global_mean and shared, so K ranks at b decide as one process at K b."""

    comm = None     # one process: global_mean and shared are the identity

    def __init__(self, config, models, optimizers, device=-1):
        self.config, self.models, self.optimizers = config, models, optimizers
        self.device = backend.as_device(device)
        for net in models.values():
            net.to_device(self.device)

    @property
    def ranks(self):
        """The number of ranks training together (1 without a communicator)."""
        return 1 if self.comm is None else self.comm.size

    def global_mean(self, *values):
        """Floats averaged over the ranks: batch means of equal shards become the mean over the
        whole global batch (one small all-reduce; the values themselves in one process)."""
        values = [float(v) for v in values]
        if self.ranks > 1:
            values = self.comm.allreduce_obj(values, op="mean")
        return values if len(values) > 1 else values[0]

    def shared(self, draw):
        """draw() made on rank 0 and broadcast: a decision about the whole global batch (its
        random state is rank 0's, which snapshots keep); draw() itself in one process."""
        if self.ranks == 1:
            return draw()
        return self.comm.bcast_obj(draw() if self.comm.rank == 0 else None)

    def frozen(self):
        """Links outside models that must be the same on every rank (a frozen pretrained
        network): rank 0's are broadcast when a data-parallel run starts."""
        return ()

    def to_device(self, *arrays):
        """The arrays (a batch, noise drawn on the host) on the training device."""
        moved = tuple(self.device.send(a) for a in arrays)
        return moved if len(moved) > 1 else moved[0]

    def update(self, batch):
        raise NotImplementedError

    def state_dict(self):
        """Extra state to snapshot besides models and optimizers (plain values)."""
        return {}

    def load_state_dict(self, state):
        """Restore what state_dict returned."""


# -- run folders and snapshots -----------------------------------------------------------------

def snapshot_key(path):
    """The order of snapshot files: (N, M) of NAME_N.h5 (M = 0) or NAME_N_M.h5 (ProjectedGAN's
    network-snapshot-K_R.h5, R images past kimg K, when K's own name is taken)."""
    n, m = re.findall(r"(\d+)(?:_(\d+))?\.h5$", path)[0]
    return int(n), int(m or 0)


def iteration_of(path):
    """N of a snapshot_iter_N.h5 (or of any NAME_N.h5)."""
    return snapshot_key(path)[0]


def snapshots(folder, pattern="snapshot_iter_*.h5"):
    """The snapshot files in a run folder, oldest first."""
    return sorted(glob.glob(os.path.join(folder, pattern)), key=snapshot_key)


def holds_run(folder):
    """True if the folder already holds a run's results."""
    return os.path.exists(os.path.join(folder, "log.jsonl")) or bool(snapshots(folder))


def fresh_run_folder(out):
    """out, or out-2, out-3 ... when out already holds a run: a new run never overwrites one."""
    path, k = out, 1
    while holds_run(path):
        k += 1
        path = f"{out.rstrip(os.sep)}-{k}"
    return path


def find_resume(resume, out):
    """The snapshot to resume from: a file, the latest in a folder, or the latest in out."""
    target = out if resume in (None, "", "latest") else resume
    if os.path.isfile(target):
        return target
    if os.path.isdir(target):
        found = snapshots(target)
        if found:
            return found[-1]
        raise TrainingError(f"--resume: no snapshot_iter_*.h5 in {target}")
    raise TrainingError(f"--resume: {target} does not exist")


def read_meta(path):
    """The meta group of a snapshot (GAN name, Config, options) as strings, or a TrainingError."""
    try:
        with h5py.File(path, "r") as f:
            meta = f.get("meta")
            return {} if meta is None else {k: meta[k].asstr()[()] for k in meta}
    except OSError as e:
        raise TrainingError(f"{path} is not a readable snapshot (truncated or corrupt?): {e}") \
            from None


def _truncate_log(path, iteration):
    """Drop log lines after `iteration` (they belong to a future the resume replaces)."""
    records = [r for r in read_log(path) if r.get("iteration", 0) <= iteration]
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    os.replace(tmp, path)


def eta_text(seconds):
    """Seconds left as H:MM:SS, with days in front past 24 hours ('13d 14:05:09'); '?' if unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    days, rest = divmod(int(seconds), 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text


def _interactive(stream):
    """A terminal or a notebook: a live bar; anything else (a log file, a pipe): plain lines."""
    return (hasattr(stream, "isatty") and stream.isatty()) or "ipykernel" in sys.modules


class Progress:
    """it/s, ETA and the logged scalars: tqdm's live bar on a terminal or in a notebook (tqdm.auto:
    terminal width, widgets, smoothed rate), the same figures as a plain line every 10 s in a log
    file."""

    def __init__(self, total, stream=None, start=0):
        self.total, self.stream, self.last_line = total, stream or sys.stderr, 0.0
        self.bar = None
        if _interactive(self.stream) and importlib.util.find_spec("tqdm"):
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=start, file=self.stream, dynamic_ncols=True,
                            smoothing=0.05, mininterval=0.2, unit="it",
                            bar_format="{n_fmt}/{total_fmt} |{bar}| {percentage:3.0f}% "
                                       "{rate_fmt}{postfix}")

    def show(self, iteration, rate, scalars, final=False):
        values = "  ".join(f"{k} {v:.4g}" for k, v in scalars.items())
        if self.bar is not None:
            rate = self.bar.format_dict.get("rate") or rate     # tqdm's smoothed rate
            eta = eta_text((self.total - iteration) / rate if rate > 0 else float("nan"))
            self.bar.set_postfix_str(f"ETA {eta}  {values}".rstrip(), refresh=False)
            self.bar.update(iteration - self.bar.n)             # negative after a rollback
            if final:
                self.bar.close()
            return
        now = time.time()
        if not final and now - self.last_line < 10.0:
            return
        self.last_line = now
        eta = eta_text((self.total - iteration) / rate if rate > 0 else float("nan"))
        pct = 100 * iteration / self.total if self.total else 100.0
        self.stream.write(f"{iteration:>7}/{self.total} {pct:3.0f}% {rate:.2f} it/s ETA {eta}  "
                          f"{values}".rstrip() + "\n")
        self.stream.flush()


class Trainer:
    """Runs updater.update(next(iterator)) up to `iterations`, with everything around it."""

    def __init__(self, updater, iterator, out, iterations, log_interval=20,
                 snapshot_interval=1000, sample_interval=None, sample=None, keep_snapshots=3,
                 meta=None, seed=0, max_rollbacks=2, stream=None, snapshot_dir=None,
                 snapshot_name=None, snapshot_glob="snapshot_iter_*.h5"):
        self.updater, self.iterator, self.out = updater, iterator, out
        self.iterations, self.log_interval = iterations, log_interval
        self.snapshot_interval, self.sample_interval = snapshot_interval, sample_interval
        self.sample, self.keep_snapshots, self.meta = sample, keep_snapshots, meta or {}
        self.seed, self.max_rollbacks = seed, max_rollbacks
        self.stream = stream or sys.stderr      # looked up now: a test or notebook may swap it
        self.iteration, self.elapsed, self.rollbacks = 0, 0.0, 0
        self._stop_requested = False
        self._last_plot = 0.0
        os.makedirs(out, exist_ok=True)
        self.log_path = os.path.join(out, "log.jsonl")
        # where snapshots go and how they are named (lightweight: models/NAME/model_{n}.h5)
        self.snapshot_dir = snapshot_dir or out
        self.snapshot_name = snapshot_name or SNAPSHOT.format
        self.snapshot_glob = snapshot_glob
        os.makedirs(self.snapshot_dir, exist_ok=True)

    # -- snapshots -----------------------------------------------------------------------------
    def _state(self):
        return {"iteration": self.iteration, "elapsed": self.elapsed,
                "models": dict(self.updater.models), "optimizers": dict(self.updater.optimizers),
                "updater": self.updater.state_dict(), "iterator": self.iterator.state_dict(),
                "random": {"numpy": numpy.random.get_state()},
                "meta": {k: str(v) for k, v in self.meta.items()}}

    def save_snapshot(self):
        """Write snapshot_iter_N.h5 atomically, then drop all but the last few."""
        path = os.path.join(self.snapshot_dir, self.snapshot_name(self.iteration))
        save_hdf5(path, self._state())
        for old in snapshots(self.snapshot_dir, self.snapshot_glob)[:-self.keep_snapshots]:
            os.remove(old)
        return path

    def load_snapshot(self, path):
        """Restore everything from a snapshot; the log is cut back to its iteration."""
        state = self._state()
        try:
            load_hdf5(path, state)
        except SerializationError as e:
            raise TrainingError(mismatch_line(path, e, self.meta.get("gan"))) from None
        except OSError as e:
            raise TrainingError(f"cannot read snapshot {path}: {e}") from None
        self.iteration, self.elapsed = int(state["iteration"]), float(state["elapsed"])
        self.updater.load_state_dict(state["updater"])
        self.iterator.load_state_dict(state["iterator"])
        numpy.random.set_state(state["random"]["numpy"])
        _truncate_log(self.log_path, self.iteration)

    # -- the loop ------------------------------------------------------------------------------
    def _agree(self, scalars):
        """The scalars every process acts on (on K ranks, DistributedTrainer's mean over them)."""
        return scalars

    def _request_stop(self, signum, frame):
        if self._stop_requested:
            # a second Ctrl-C ends the process now: an exception raised here could land inside
            # h5py's write (which swallows it); the last complete snapshot stays, and the next
            # run removes the half-written temp file
            self.stream.write("\nCtrl-C again: aborted without saving\n")
            self.stream.flush()
            os._exit(130)
        self._stop_requested = True
        self.stream.write("\nCtrl-C: finishing this iteration, then saving a snapshot "
                          "(press again to abort without saving)\n")

    def _device_seed(self):
        """CuPy's generator state cannot be saved, so it is reseeded from (seed, iteration,
        rollbacks): after a rollback the same seed would replay the same blow-up."""
        if self.updater.device.is_gpu:
            seed = self.seed * 1_000_003 + self.iteration + 7919 * self.rollbacks
            self.updater.device.xp.random.seed(seed % 2 ** 32)

    def run(self):
        """Train to self.iterations. Returns 'done' or 'interrupted' (after a snapshot)."""
        with self.updater.device:       # ops, cuBLAS, kernels and cupy.random on device N
            return self._run()

    def _run(self):
        in_main = hasattr(signal, "SIGINT") and _is_main_thread()
        old_handler = signal.signal(signal.SIGINT, self._request_stop) if in_main else None
        self._remove_stale_temp_files()
        progress = Progress(self.iterations, self.stream, start=self.iteration)
        sums, count, t_log, wait_log = {}, 0, time.time(), self.iterator.wait_time
        last_snapshot, rate = None, 0.0
        try:
            while self.iteration < self.iterations:
                t0 = time.time()
                self._device_seed()
                batch = next(self.iterator)
                # a blow-up to inf/nan is reported below (and rolled back): not as warnings too
                with numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    scalars = self._agree(self.updater.update(batch))
                self.iteration += 1
                self.elapsed += time.time() - t0
                bad = [k for k, v in scalars.items() if not math.isfinite(v)]
                if bad:
                    self._rollback(bad[0], scalars[bad[0]])
                    sums, count = {}, 0
                    continue
                for k, v in scalars.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                rate = count / max(time.time() - t_log, 1e-9)
                progress.show(self.iteration, rate, {k: v / count for k, v in sums.items()})
                end = self.iteration == self.iterations
                if self.iteration % self.log_interval == 0 or end or self._stop_requested:
                    self._write_log(sums, count, rate, self.iterator.wait_time - wait_log)
                    sums, count, t_log, wait_log = {}, 0, time.time(), self.iterator.wait_time
                if self.sample and self.sample_interval and (
                        self.iteration % self.sample_interval == 0 or end):
                    self.save_samples()
                if self.iteration % self.snapshot_interval == 0 or end or self._stop_requested:
                    last_snapshot = self.save_snapshot()
                    self._plot(force=end or self._stop_requested)
                if self._stop_requested:
                    progress.show(self.iteration, rate, {}, final=True)
                    self.stream.write(f"stopped at iteration {self.iteration}; snapshot "
                                      f"{last_snapshot}; continue with --resume {self.out}\n")
                    return "interrupted"
            progress.show(self.iteration, rate, {}, final=True)
            return "done"
        finally:
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)

    def _remove_stale_temp_files(self):
        """Delete the temp files of snapshot writes that crashed (their process is gone)."""
        folders = sorted({self.out, self.snapshot_dir})
        stale = [p for d in folders for p in glob.glob(os.path.join(d, ".*.tmp"))
                 if not _writer_alive(p)]
        if stale:
            size = sum(os.path.getsize(p) for p in stale)
            for p in stale:
                os.remove(p)
            self.stream.write(f"removed {len(stale)} temp file(s) of interrupted snapshot "
                              f"writes in {' and '.join(folders)} ({size / 1e6:.1f} MB)\n")

    def _plot(self, force=False):
        """Redraw loss.png at snapshots, at most once a minute (a redraw takes a second or two);
        without matplotlib (a bare machine) say so once and train on."""
        if self._last_plot is None or not (force or time.time() - self._last_plot >= 60):
            return
        try:
            plot_log(self.log_path, os.path.join(self.out, "loss.png"))
            self._last_plot = time.time()
        except ImportError as e:
            self.stream.write(f"loss.png is not drawn: {e} (pip install matplotlib); the "
                              "losses are in log.jsonl\n")
            self._last_plot = None

    def _write_log(self, sums, count, rate, wait):
        record = {"iteration": self.iteration, "epoch": self.iterator.epoch,
                  "elapsed": round(self.elapsed, 3), "it_per_s": round(rate, 4),
                  "data_wait": round(wait, 4)}
        record.update({k: v / count for k, v in sums.items()})
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def save_samples(self):
        """samples/iter_N.png from the GAN's sample function (no graph recorded); a function
        that writes its own files returns None."""
        with no_backprop_mode():
            grid = self.sample(self.updater)
        if grid is not None:
            save_image(grid, os.path.join(self.out, "samples", f"iter_{self.iteration:07d}.png"))

    def _rollback(self, name, value):
        """A non-finite loss: go back to the last snapshot with a new random stream, or stop."""
        where = f"iteration {self.iteration}: {name} is {value}"
        found = snapshots(self.snapshot_dir, self.snapshot_glob)
        if not found or self.rollbacks >= self.max_rollbacks:
            why = "no snapshot to roll back to" if not found else \
                f"{self.rollbacks} rollbacks already"
            keep = f"; the last snapshot {found[-1]} is intact" if found else ""
            raise TrainingError(f"{where}; stopped ({why}){keep}")
        self.rollbacks += 1
        self.load_snapshot(found[-1])
        # the same random stream would reproduce the same blow-up: draw a different one
        numpy.random.seed((self.seed + 7919 * self.rollbacks) % 2 ** 32)
        self.stream.write(f"\n{where}; rolled back to iteration {self.iteration} "
                          f"(retry {self.rollbacks}/{self.max_rollbacks})\n")


def _writer_alive(tmp):
    """True while the process that named temp file '.NAME.PID.RANDOM.tmp' still runs."""
    parts = os.path.basename(tmp).split(".")
    pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
    if pid is None or pid == os.getpid():
        return False            # an older minigan's name (no pid), or this process's leftover
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:     # alive, another user's
        return True


def _is_main_thread():
    import threading
    return threading.current_thread() is threading.main_thread()


def mismatch_line(path, error, gan=None):
    """A SerializationError as the one line a user needs, its first reasons kept."""
    lines = str(error).splitlines()
    if len(lines) == 1:
        return lines[0]
    detail = "; ".join(line.strip() for line in lines[1:3])
    what = f" this {gan} model" if gan else " this model"
    return f"{path} does not fit{what} (another architecture or options?): {detail[:300]}"
