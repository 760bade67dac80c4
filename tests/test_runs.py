"""Runs a user can trust: translate after training on either data format, resume that follows
where the data is and never mixes histories, unusable output folders, crash leftovers, Ctrl-C,
loose values, noise; each check fails without its fix."""
import glob
import json
import os
import shutil
import subprocess
import warnings

import h5py
import numpy
import pytest
from PIL import Image

import minigan.links as L
from minigan.folders import FolderError, making
from minigan.optimizers import Adam
from minigan.training import Trainer, Updater
from helpers import error_line, run
from test_facade_data import write_ab, write_cmp

P2P = ["--size", "32", "--n-down", "3", "--ngf", "4", "--ndf", "4", "--log-interval", "1",
       "--snapshot-interval", "2", "--sample-interval", "9", "--workers", "0"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def inputs(fmt, direction):
    """(training data folder, a folder of inputs translate takes)."""
    if fmt == "ab":
        data = write_ab("data", n=3, h=40, same=False)
        return data, data                               # A|B images: the input half is cut
    data, _ = write_cmp("data", n=3)
    os.makedirs("in")
    for f in glob.glob(os.path.join(data, "*.png" if direction == "BtoA" else "*.jpg")):
        shutil.copy(f, "in")                            # label maps, or photos
    return "data", "in"


@pytest.mark.parametrize("fmt", ["cmp", "ab"])
@pytest.mark.parametrize("direction", ["BtoA", "AtoB"])
def test_translate_works_after_training_on_either_format(fmt, direction):
    data, folder = inputs(fmt, direction)
    code, out = run("pix2pix", *P2P, "--data-dir", data, "--direction", direction,
                    "--iterations", 2, "--out", "run")
    assert code == 0, out
    code, out = run("translate", "--snapshot", "run/snapshot_iter_0000002.h5", "--input", folder,
                    "--out", "translated")
    assert code == 0, out
    written = sorted(os.listdir("translated"))
    assert len(written) == len([f for f in os.listdir(folder) if f.endswith((".png", ".jpg"))])
    assert Image.open(os.path.join("translated", written[0])).size == (32, 32)


def test_a_multi_line_error_keeps_its_reason_on_its_one_line():
    data, folder = inputs("ab", "BtoA")
    assert run("pix2pix", *P2P, "--data-dir", data, "--iterations", 2, "--out", "run")[0] == 0
    snap = "run/snapshot_iter_0000002.h5"
    with h5py.File(snap, "r+") as f:                # a Config the weights do not fit
        config = json.loads(f["meta/config"].asstr()[()])
        config["ngf"] = 8
        del f["meta/config"]
        f["meta/config"] = json.dumps(config)
    code, out = run("translate", "--snapshot", snap, "--input", folder, "--out", "t")
    assert code == 1 and "does not fit this pix2pix model" in error_line(out)
    assert "/gen/enc/c0/W: shape (4, 3, 3, 3) in the file, (8, 3, 3, 3) in the object" in out
    assert not os.path.exists("t")                  # and no empty folder left behind


# -- resume ------------------------------------------------------------------------------------

def test_resume_reads_the_data_where_the_user_says_it_now_is():
    write_ab("data", n=3, h=40)
    assert run("pix2pix", *P2P, "--data-dir", "data", "--iterations", 2, "--out", "run")[0] == 0
    os.rename("data", "moved")
    code, out = run("pix2pix", *P2P, "--data-dir", "moved", "--iterations", 4, "--resume", "run")
    assert code == 0, out
    assert out.splitlines()[0].startswith("--resume: data-dir moved (the snapshot's run read ")


def test_resume_from_another_working_directory_finds_the_data(tmp_path, monkeypatch):
    write_ab("data", n=3, h=40)
    assert run("pix2pix", *P2P, "--data-dir", "data", "--iterations", 2, "--out", "run")[0] == 0
    os.makedirs("elsewhere")
    monkeypatch.chdir("elsewhere")
    code, out = run("pix2pix", *P2P, "--iterations", 4, "--resume", str(tmp_path / "run"))
    assert code == 0 and "procedurally generated" not in out, out     # the real data, found
    assert os.path.exists(tmp_path / "run" / "snapshot_iter_0000004.h5")


def test_resume_of_a_run_on_real_data_whose_folder_is_gone_says_so():
    write_ab("data", n=3, h=40)
    assert run("pix2pix", *P2P, "--data-dir", "data", "--iterations", 2, "--out", "run")[0] == 0
    shutil.rmtree("data")
    code, out = run("pix2pix", *P2P, "--iterations", 4, "--resume", "run")
    assert code == 1 and "data" in error_line(out)              # not a silent synthetic run


def test_resume_with_another_out_continues_there_with_the_log_up_to_the_snapshot():
    assert run("pix2pix", *P2P, "--iterations", 4, "--out", "run")[0] == 0
    code, out = run("pix2pix", *P2P, "--iterations", 6, "--resume", "run/snapshot_iter_0000002.h5",
                    "--out", "other")
    assert code == 0 and "continuing run/snapshot_iter_0000002.h5 in other" in out
    iterations = [json.loads(l)["iteration"] for l in open("other/log.jsonl")]
    assert iterations == [1, 2, 3, 4, 5, 6]
    assert [json.loads(l)["iteration"] for l in open("run/log.jsonl")] == [1, 2, 3, 4]
    assert os.path.exists("other/snapshot_iter_0000006.h5")
    assert not os.path.exists("run/snapshot_iter_0000006.h5")
    code, out = run("pix2pix", *P2P, "--iterations", 6, "--resume", "run", "--out", "other")
    assert code == 1 and "--out other holds another run" in error_line(out)


def test_resume_from_an_older_snapshot_moves_newer_ones_aside():
    assert run("pix2pix", *P2P, "--iterations", 6, "--out", "run")[0] == 0
    code, out = run("pix2pix", *P2P, "--iterations", 8, "--resume", "run/snapshot_iter_0000002.h5")
    assert code == 0 and "2 newer snapshot(s) moved to" in out
    aside = glob.glob("run/superseded-*/snapshot_iter_*.h5")
    assert sorted(os.path.basename(p) for p in aside) == ["snapshot_iter_0000004.h5",
                                                            "snapshot_iter_0000006.h5"]
    iterations = [json.loads(l)["iteration"] for l in open("run/log.jsonl")]
    assert iterations == list(range(1, 9))          # one history: 1..2, then 3..8 anew


# -- unusable output folders -------------------------------------------------------------------

@pytest.mark.parametrize("make, out, message", [
    (lambda: open("afile", "w").close(), "afile", "--out afile is a file"),
    (lambda: open("afile", "w").close(), "afile/run", "--out afile/run lies under the file")])
def test_an_unusable_out_is_one_line_before_any_work(make, out, message):
    make()
    code, text = run("pix2pix", *P2P, "--iterations", 2, "--out", out)
    assert code == 1 and message in error_line(text)
    code, text = run("gan", "--dataset", "toy", "--iterations", 2, "--out", out)
    assert code == 1 and message in error_line(text)
    os.makedirs("in")
    Image.new("RGB", (32, 32)).save("in/a.png")
    code, text = run("translate", "--snapshot", "afile", "--input", "in", "--out", out)
    assert code == 1 and message in error_line(text)


def test_a_read_only_out_is_one_line(monkeypatch):
    os.makedirs("locked")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.path.abspath(p).endswith(
        "locked") else real_access(p, mode))                # root may write anywhere: pretend
    code, text = run("gan", "--dataset", "toy", "--iterations", 2, "--out", "locked/run")
    assert code == 1 and "locked is not writable" in error_line(text)


def test_generate_into_an_unusable_path_is_one_line():
    open("afile", "w").close()
    code, text = run("generate", "--snapshot", "afile", "--out", "afile/x.png")
    assert code == 1 and "lies under the file" in error_line(text)


def test_a_failed_command_leaves_no_empty_folder_behind():
    with pytest.raises(RuntimeError):
        with making("a/b/c"):
            raise RuntimeError("the download failed")
    assert not os.path.exists("a")
    open("afile", "w").close()
    with pytest.raises(FolderError, match="lies under the file afile"):
        with making("afile/x"):
            pass


# -- crash leftovers, Ctrl-C, noise ------------------------------------------------------------

def _dead_pid():
    pid = 4_000_000
    while os.path.exists(f"/proc/{pid}"):
        pid += 1
    return pid


def test_stale_temp_files_of_crashed_writes_are_removed_and_counted():
    assert run("pix2pix", *P2P, "--iterations", 2, "--out", "run")[0] == 0
    stale = [f"run/.snapshot_iter_0000004.h5.{_dead_pid()}.0badc0de.tmp",
             "run/.snapshot_iter_0000004.h5.k2j4xz1q.tmp"]          # an older minigan's name
    live = f"run/.snapshot_iter_0000004.h5.{os.getppid()}.feedbeef.tmp"   # a running writer's
    for p in stale + [live]:
        with open(p, "wb") as f:
            f.write(b"x" * 1_000_000)
    code, out = run("pix2pix", *P2P, "--iterations", 4, "--resume", "run")
    assert code == 0 and "removed 2 temp file(s) of interrupted snapshot writes" in out
    assert "(2.0 MB)" in out and os.path.exists(live) and not any(map(os.path.exists, stale))


class Counting(Updater):
    """An updater that asks the trainer to stop (as a Ctrl-C would) at iteration `stop`."""

    def update(self, batch):
        self.n += 1
        if self.n == self.stop:
            self.trainer._stop_requested = True
        big = numpy.float32(3e38) * numpy.float32(10)   # overflows, as in a blow-up
        return {"loss": float(self.n), "big": float(big) if self.n > 99 else 0.0}


class Batches:
    epoch, wait_time, batches_per_epoch = 0, 0.0, 1

    def __next__(self):
        return None

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _trainer(tmp_path, stop):
    model = L.Linear(1, 1)
    up = Counting(None, {"m": model}, {"m": Adam().setup(model)})
    up.n, up.stop = 0, stop
    trainer = Trainer(up, Batches(), str(tmp_path / "run"), 100, log_interval=20,
                      snapshot_interval=50)
    up.trainer = trainer
    return trainer


def test_ctrl_c_flushes_the_partial_log_interval_with_its_snapshot(tmp_path):
    trainer = _trainer(tmp_path, stop=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # no RuntimeWarning reaches the user
        assert trainer.run() == "interrupted"
    records = [json.loads(l) for l in open(tmp_path / "run" / "log.jsonl")]
    assert [r["iteration"] for r in records] == [7] and records[0]["loss"] == 4.0
    assert os.path.exists(tmp_path / "run" / "snapshot_iter_0000007.h5")


def test_a_second_ctrl_c_really_aborts(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path, stop=0)
    monkeypatch.setattr(os, "_exit", lambda code: (_ for _ in ()).throw(SystemExit(code)))
    trainer._request_stop(2, None)
    with pytest.raises(SystemExit) as e:
        trainer._request_stop(2, None)
    assert e.value.code == 130


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_lr_must_be_a_finite_positive_number(value):
    code, out = run("gan", "--dataset", "toy", "--iterations", 1, "--lr", value)
    assert code == 2 and "--lr" in out and "finite number > 0" in out
    assert not os.path.exists("result")


def test_an_installed_script_names_itself_in_its_hints():
    script = shutil.which("minigan")
    if script is None:
        pytest.skip("the minigan console script is not installed (pip install -e .)")
    done = subprocess.run([script, "gan", "--iterations", "1"], capture_output=True, text=True)
    assert done.returncode == 1 and "get it with: minigan download mnist" in done.stderr
