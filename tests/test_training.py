"""The shared trainer: log, plot, snapshots (atomic, last few kept), exact resume, rollback on a
non-finite loss, Ctrl-C, and run folders that never overwrite an earlier run."""
import io
import json
import os
import signal

import numpy
import pytest

import minigan.functions as F
import minigan.links as L
from minigan.datasets import BatchIterator, RingDataset
from minigan.optimizers import Adam
from minigan.serializers import save_hdf5
from minigan.training import (Trainer, TrainingError, Updater, find_resume, fresh_run_folder,
                              snapshots)


class Regression(Updater):
    """Fit y = x W^T to the ring points with noise from numpy's global generator."""

    def __init__(self, blow_up_at=None, interrupt_at=None):
        numpy.random.seed(0)
        model = L.Linear(2, 2)
        super().__init__(None, {"model": model}, {"model": Adam(0.01).setup(model)})
        self.blow_up_at, self.interrupt_at, self.count = blow_up_at, interrupt_at, 0

    def update(self, batch):
        self.count += 1
        x = batch + numpy.random.standard_normal(batch.shape).astype(numpy.float32) * 0.1
        model = self.models["model"]
        loss = F.mean_squared_error(model(x), x[:, ::-1].copy())
        model.cleargrads()
        loss.backward()
        self.optimizers["model"].update()
        if self.count == self.interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)
        value = float(loss.array)
        return {"loss": float("nan") if self.count == self.blow_up_at else value}


def make_trainer(out, iterations, updater=None, **kw):
    updater = updater or Regression()
    it = BatchIterator(RingDataset(n=64, seed=1), 8, seed=3, n_workers=0)
    kw.setdefault("snapshot_interval", 5)
    return Trainer(updater, it, str(out), iterations, log_interval=2, meta={"gan": "test"}, **kw)


def params(trainer):
    return [p.array.copy() for p in trainer.updater.models["model"].params()]


def test_log_plot_snapshots_and_keep_last_three(tmp_path):
    t = make_trainer(tmp_path, 23)
    assert t.run() == "done"
    log = [json.loads(line) for line in open(tmp_path / "log.jsonl")]
    assert [r["iteration"] for r in log] == list(range(2, 23, 2)) + [23]
    assert {"loss", "epoch", "elapsed", "it_per_s", "data_wait"} <= set(log[0])
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert [os.path.basename(p) for p in snapshots(tmp_path)] == [
        f"snapshot_iter_{i:07d}.h5" for i in (15, 20, 23)]


def test_resume_continues_bit_for_bit(tmp_path):
    straight = make_trainer(tmp_path / "a", 20)
    straight.run()
    first = make_trainer(tmp_path / "b", 10)
    first.run()
    second = make_trainer(tmp_path / "b", 20)
    second.load_snapshot(find_resume(None, str(tmp_path / "b")))
    assert second.iteration == 10
    second.run()
    for a, b in zip(params(straight), params(second)):
        numpy.testing.assert_array_equal(a, b)
    loss = lambda p: [r["loss"] for r in map(json.loads, open(p / "log.jsonl"))]
    assert loss(tmp_path / "a") == loss(tmp_path / "b")


def test_non_finite_loss_rolls_back_then_stops(tmp_path):
    t = make_trainer(tmp_path, 30, Regression(blow_up_at=7), max_rollbacks=1)
    assert t.run() == "done"                  # rolled back to 5 once, then went on
    assert t.rollbacks == 1
    t2 = make_trainer(tmp_path / "x", 30, Regression(blow_up_at=3))
    with pytest.raises(TrainingError, match="iteration 3: loss is nan; stopped "
                                            r"\(no snapshot to roll back to\)"):
        t2.run()


def test_ctrl_c_saves_a_snapshot_and_stops(tmp_path):
    t = make_trainer(tmp_path, 100, Regression(interrupt_at=8))
    assert t.run() == "interrupted"
    assert os.path.basename(snapshots(tmp_path)[-1]) == "snapshot_iter_0000008.h5"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_new_run_never_overwrites_an_earlier_one(tmp_path):
    out = str(tmp_path / "run")
    assert fresh_run_folder(out) == out
    make_trainer(out, 3).run()
    assert fresh_run_folder(out) == out + "-2"
    os.makedirs(out + "-2")
    open(os.path.join(out + "-2", "log.jsonl"), "w").close()
    assert fresh_run_folder(out) == out + "-3"


def test_resume_errors_are_one_line(tmp_path):
    with pytest.raises(TrainingError, match="does not exist"):
        find_resume(str(tmp_path / "nope"), None)
    with pytest.raises(TrainingError, match="no snapshot_iter"):
        find_resume(None, str(tmp_path))
    other = L.Linear(3, 3)
    save_hdf5(str(tmp_path / "other.h5"), {"models": {"model": other}})
    t = make_trainer(tmp_path / "r", 5)
    with pytest.raises(TrainingError, match="does not fit this test model"):
        t.load_snapshot(str(tmp_path / "other.h5"))


# -- the progress line -------------------------------------------------------------------------

def test_eta_shows_days_past_24_hours():
    from minigan.training import eta_text
    assert eta_text(13.6 * 86400) == "13d 14:24:00"     # not 14:24:00: the day count is kept
    assert eta_text(3661) == "01:01:01" and eta_text(float("nan")) == "?"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stream", [_Terminal(), io.StringIO()], ids=["terminal", "log file"])
def test_progress_shows_rate_eta_and_scalars(stream):
    from minigan.training import Progress
    progress = Progress(200_000, stream)
    progress.show(10, 0.17, {"loss/gen": 1.5})
    progress.show(20, 0.17, {"loss/gen": 1.25}, final=True)
    text = stream.getvalue()
    assert "20/200000" in text and "it/s" in text and "loss/gen 1.25" in text and "ETA " in text
    if isinstance(stream, _Terminal):
        assert "\r" in text and "|" in text                 # tqdm's live bar
    else:
        assert "\r" not in text and "ETA 13d" in text      # plain lines; 0.17 it/s is 13.6 days


def test_without_matplotlib_training_goes_on_and_says_so_once(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_matplotlib(name, *a, **kw):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *a, **kw)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    stream = io.StringIO()
    trainer = make_trainer(tmp_path, 4, snapshot_interval=1, stream=stream)
    assert trainer.run() == "done"
    assert stream.getvalue().count("loss.png is not drawn: No module named 'matplotlib'") == 1
    assert not (tmp_path / "loss.png").exists() and (tmp_path / "log.jsonl").exists()
