"""The command line end to end on tiny runs: outputs, resume, translate, and one clear line (and a
non-zero exit) for each kind of bad input, with nothing earlier lost."""
import json
import os

import h5py
import numpy
import pytest
from PIL import Image

from helpers import error_line, run

TINY = ["--size", "32", "--n-down", "3", "--ngf", "8", "--ndf", "4", "--log-interval", "2",
        "--snapshot-interval", "4", "--sample-interval", "4", "--workers", "0"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_version_and_help():
    assert run("--version") == (0, "minigan, version 0.1.0\n")
    code, out = run("--help")
    assert code == 0 and "pix2pix" in out and "download" in out


def test_pix2pix_trains_on_synthetic_facades_and_writes_its_outputs():
    code, out = run("pix2pix", *TINY, "--iterations", 6, "--out", "run")
    assert code == 0, out
    assert out.splitlines()[0].startswith("no facade data in data/facade: training on "
                                          "procedurally generated facades")
    assert "minigan download facade" in out.splitlines()[0]     # as the runner names it
    files = set(os.listdir("run"))
    assert {"log.jsonl", "loss.png", "options.json", "samples", "snapshot_iter_0000004.h5",
            "snapshot_iter_0000006.h5"} <= files
    assert sorted(os.listdir("run/samples")) == ["iter_0000004.png", "iter_0000006.png"]
    grid = Image.open("run/samples/iter_0000006.png")
    assert grid.size[0] > 3 * 32                      # input | output | target


def test_resume_through_the_cli_equals_a_straight_run():
    assert run("pix2pix", *TINY, "--iterations", 8, "--out", "a")[0] == 0
    assert run("pix2pix", *TINY, "--iterations", 4, "--out", "b")[0] == 0
    code, out = run("pix2pix", *TINY, "--iterations", 8, "--out", "b", "--resume")
    assert code == 0 and "resuming" in out
    with h5py.File("a/snapshot_iter_0000008.h5") as fa, h5py.File("b/snapshot_iter_0000008.h5") as fb:
        for group in ("models", "optimizers"):
            def same(name, obj):
                if isinstance(obj, h5py.Dataset):
                    numpy.testing.assert_array_equal(obj[()], fb[f"{group}/{name}"][()], name)
            fa[group].visititems(same)


def test_an_earlier_run_is_never_overwritten():
    run("pix2pix", *TINY, "--iterations", 2, "--out", "run")
    log = open("run/log.jsonl").read()
    code, out = run("pix2pix", *TINY, "--iterations", 2, "--out", "run")
    assert code == 0 and "run holds an earlier run; this run writes to run-2" in out
    assert open("run/log.jsonl").read() == log and os.path.exists("run-2/log.jsonl")


def test_resume_keeps_the_snapshots_options():
    run("pix2pix", *TINY, "--iterations", 2, "--out", "run")
    code, out = run("pix2pix", *TINY[:6], "--ngf", "16", "--iterations", 4, "--out", "run",
                    "--resume", "--workers", 0)
    assert code == 0, out
    assert "keeping ngf=8 from the snapshot" in out


def _side_by_side(path, w=64, h=32, color=(90, 120, 200)):
    Image.new("RGB", (w, h), color).save(path)


@pytest.mark.parametrize("setup,message", [
    (lambda: None, "facade"),                                          # missing folder
    (lambda: os.makedirs("data_in"), "no facade images"),                  # empty folder
    (lambda: [os.makedirs("data_in")] + [_side_by_side(f"data_in/{i}.jpg", 50, 32)
                                         for i in range(3)], "is 50x32; a pix2pix A|B image is twice as wide"),
    (lambda: [os.makedirs("data_in")] + [_side_by_side(f"data_in/{i}.jpg") for i in range(3)]
     + [open("data_in/3.jpg", "wb").write(b"not a jpeg")], "3.jpg"),   # unreadable
])
def test_bad_data_gives_one_line_and_a_non_zero_exit(setup, message):
    setup()
    code, out = run("pix2pix", *TINY, "--iterations", 2, "--data-dir", "data_in", "--out", "run")
    assert code == 1
    assert message in error_line(out)
    assert not os.path.exists("run/log.jsonl")


def test_a_snapshot_of_another_gan_or_architecture_is_refused():
    run("pix2pix", *TINY, "--iterations", 2, "--out", "run")
    snap = "run/snapshot_iter_0000002.h5"
    with h5py.File(snap, "r+") as f:                # pretend another architecture wrote it
        config = json.loads(f["meta/config"].asstr()[()])
        config["ngf"] = 16
        del f["meta/config"]
        f["meta/config"] = json.dumps(config)
    code, out = run("pix2pix", *TINY, "--iterations", 4, "--out", "run", "--resume", snap)
    assert code == 1 and "does not fit this pix2pix model" in error_line(out)
    with h5py.File(snap, "r+") as f:
        del f["meta/gan"]
        f["meta/gan"] = "dcgan"
    code, out = run("pix2pix", *TINY, "--iterations", 4, "--out", "run", "--resume", snap)
    assert code == 1 and "is a dcgan snapshot, not pix2pix" in error_line(out)
    open("broken.h5", "wb").write(open(snap, "rb").read()[:1000])
    code, out = run("pix2pix", *TINY, "--iterations", 4, "--resume", "broken.h5")
    assert code == 1 and "not a readable snapshot" in error_line(out)


def test_gpu_without_cupy_is_one_line():
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    code, out = run("pix2pix", *TINY, "--gpu", 0, "--iterations", 2)
    assert code == 1 and "--gpu 0 needs CuPy" in error_line(out)


def test_translate_applies_a_snapshot_and_never_overwrites():
    run("pix2pix", *TINY, "--iterations", 2, "--out", "run", "--labels", "color")
    os.makedirs("inputs")
    for i in range(2):
        _side_by_side(f"inputs/{i}.jpg")
    code, out = run("translate", "--snapshot", "run/snapshot_iter_0000002.h5", "--input", "inputs",
                    "--out", "translated")
    assert code == 0, out
    assert sorted(os.listdir("translated")) == ["0.png", "1.png"]
    assert Image.open("translated/0.png").size == (32, 32)
    code, out = run("translate", "--snapshot", "run/snapshot_iter_0000002.h5", "--input", "inputs",
                    "--out", "translated")
    assert code == 1 and "exists" in error_line(out)
