"""The zoo's commands end to end on tiny runs: outputs, data wiring, one clear line (and a non-zero
exit) for each kind of bad input, generate, and a resumed run equal to a straight one."""
import json
import os

import h5py
import numpy
import pytest
from PIL import Image

from helpers import SHARED, error_line, run


QUIET = ["--log-interval", "2", "--snapshot-interval", "2", "--sample-interval", "2",
         "--workers", "0"]
TINY_BEGAN = ["--size", "16", "--n", "4", "--batch-size", "4", *QUIET]
TINY_TOY = ["--dataset", "toy", "--batch-size", "16", *QUIET]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def image_folder(path, n=8, size=20, modes=("RGB",)):
    """n small images with smooth random colours, cycling through the given PIL modes."""
    os.makedirs(path, exist_ok=True)
    rng = numpy.random.RandomState(0)
    for i in range(n):
        a = (rng.rand(size, size, 3) * 255).astype(numpy.uint8)
        im = Image.fromarray(a).convert(modes[i % len(modes)])
        im.save(os.path.join(path, f"{i:03d}.png"))
    return path


def mnist_dir():
    path = os.path.join(SHARED, "mnist")
    if not os.path.isdir(path):
        pytest.skip(f"real data folder {path} not present")
    return path


def test_help_lists_the_zoo():
    code, out = run("--help")
    assert code == 0
    for name in ("gan", "dcgan", "wgan-gp", "began", "generate"):
        assert f"  {name} " in out


def test_gan_on_the_toy_ring_writes_log_plot_scatter_and_snapshots():
    code, out = run("gan", *TINY_TOY, "--iterations", 4, "--out", "run")
    assert code == 0, out
    assert out.splitlines()[0].startswith("data: toy ring: 100000 points from 8 Gaussians")
    assert {"log.jsonl", "loss.png", "options.json", "samples", "snapshot_iter_0000002.h5",
            "snapshot_iter_0000004.h5"} <= set(os.listdir("run"))
    assert sorted(os.listdir("run/samples")) == ["iter_0000002.png", "iter_0000004.png"]
    assert Image.open("run/samples/iter_0000004.png").size == (320, 320)    # the scatter plot
    log = [json.loads(l) for l in open("run/log.jsonl")]
    assert [r["iteration"] for r in log] == [2, 4]
    assert {"loss/gen", "loss/dis", "dis/accuracy"} <= set(log[0])


def test_dcgan_on_mnist_writes_a_grid_of_fixed_z_samples():
    code, out = run("dcgan", "--data-dir", mnist_dir(), "--batch-size", 4, "--iterations", 2,
                    *QUIET, "--out", "run")
    assert code == 0, out
    assert out.splitlines()[0].startswith("data: MNIST test: 10000 digits")
    grid = Image.open("run/samples/iter_0000002.png")
    assert grid.size == (8 * 28 + 7 * 2,) * 2                               # 8 x 8 digits


def test_wgan_gp_logs_the_gradient_norm_and_takes_n_critic_batches():
    code, out = run("wgan-gp", *TINY_TOY, "--n-critic", 3, "--iterations", 2, "--out", "run")
    assert code == 0, out
    log = json.loads(open("run/log.jsonl").readline())
    assert {"dis/grad_norm", "dis/penalty", "dis/wasserstein", "loss/gen"} <= set(log)
    with h5py.File("run/snapshot_iter_0000002.h5") as f:
        assert int(f["optimizers/dis/t"][()]) == 6 and int(f["optimizers/gen/t"][()]) == 2
        assert int(f["iterator/batch_size"][()]) == 3 * 16


def test_began_logs_its_controller_and_mixed_image_modes_are_converted():
    image_folder("faces", modes=("RGB", "L", "RGBA", "P"))
    code, out = run("began", "--data-dir", "faces", *TINY_BEGAN, "--iterations", 2, "--out", "run")
    assert code == 0, out
    assert out.splitlines()[0].startswith("data: image folder: 8 images from faces as 3x16x16")
    log = json.loads(open("run/log.jsonl").readline())
    assert {"k", "M_global", "L_x", "L_Gz", "loss/dis", "loss/gen"} <= set(log)
    assert 0 <= log["k"] <= 1
    with h5py.File("run/snapshot_iter_0000002.h5") as f:
        assert float(f["updater/k"][()]) == 0.0          # k_t is saved (still k_0 here)


@pytest.mark.parametrize("prog, how", [("cli.py", "python cli.py"), ("minigan", "minigan")])
def test_no_mnist_says_so_and_how_to_get_it_as_the_user_runs_minigan(prog, how):
    code, out = run("gan", "--iterations", 2, "--out", "run", prog_name=prog)
    assert code == 1
    assert out.splitlines()[0] == (f"Error: no MNIST in data/mnist: get it with: {how} "
                                   "download mnist (or point --data-dir at a folder of MNIST IDX "
                                   "files)")
    assert not os.path.exists("run")


def _float_image(path):
    Image.fromarray(numpy.zeros((20, 20), numpy.float32), "F").save(path)


def _truncated_jpeg(path):
    buf = path + ".full.jpg"
    Image.fromarray((numpy.random.RandomState(1).rand(64, 64, 3) * 255).astype(numpy.uint8)) \
        .save(buf, quality=95)
    data = open(buf, "rb").read()
    os.remove(buf)
    open(path, "wb").write(data[:len(data) // 2])


@pytest.mark.parametrize("setup,message", [
    (lambda: None, "image folder not found: data_in"),
    (lambda: os.makedirs("data_in"), "no images in data_in"),
    (lambda: [image_folder("data_in", modes=("RGB", "L")), _float_image("data_in/x.tif")],
     "x.tif: cannot convert a 32-bit 'F' image to RGB"),
    (lambda: [image_folder("data_in"), open("data_in/bad.jpg", "wb").write(b"not a jpeg")],
     "cannot read image data_in/bad.jpg"),
    (lambda: [image_folder("data_in", n=3), _truncated_jpeg("data_in/cut.jpg")],
     "cannot decode image data_in/cut.jpg"),
])
def test_bad_folders_give_one_line_and_a_non_zero_exit(setup, message):
    setup()
    code, out = run("began", "--data-dir", "data_in", *TINY_BEGAN, "--batch-size", 4,
                    "--iterations", 2, "--out", "run")
    assert code == 1, out
    assert message in error_line(out)
    assert not os.path.exists("run/snapshot_iter_0000002.h5")


def test_usage_errors():
    code, out = run("dcgan", "--dataset", "folder", "--iterations", 2)
    assert code == 2 and "--dataset folder needs --data-dir DIR" in out
    code, out = run("dcgan", "--dataset", "toy")
    assert code == 2 and "'toy' is not one of 'mnist', 'folder'" in out
    image_folder("imgs")
    code, out = run("dcgan", "--dataset", "folder", "--data-dir", "imgs", "--size", 48,
                    "--iterations", 2)
    assert code == 2 and "image size 48 must be 4 * 2^k" in out


# -- generate ----------------------------------------------------------------------------------

@pytest.fixture
def began_snapshot():
    image_folder("faces")
    code, out = run("began", "--data-dir", "faces", *TINY_BEGAN, "--iterations", 2, "--out", "run")
    assert code == 0, out
    return "run/snapshot_iter_0000002.h5"


def test_generate_a_grid_and_interpolations_and_never_overwrite(began_snapshot):
    code, out = run("generate", "--snapshot", began_snapshot, "--n", 9, "--out", "grid.png")
    assert code == 0, out
    assert Image.open("grid.png").size == (3 * 16 + 2 * 2,) * 2             # 3 x 3 faces
    code, out = run("generate", "--snapshot", began_snapshot, "--n", 12, "--steps", 6,
                    "--interpolate", "--out", "slerp.png")
    assert code == 0 and "2 rows of spherical interpolation" in out
    assert Image.open("slerp.png").size == (6 * 16 + 5 * 2, 2 * 16 + 2)     # 2 rows of 6
    code, out = run("generate", "--snapshot", began_snapshot, "--interpolate", "linear",
                    "--steps", 4, "--n", 4, "--out", "lerp.png")
    assert code == 0 and "1 rows of linear interpolation" in out
    before = open("grid.png", "rb").read()
    code, out = run("generate", "--snapshot", began_snapshot, "--out", "grid.png")
    assert code == 1 and "grid.png exists" in error_line(out)
    assert open("grid.png", "rb").read() == before


def test_generate_is_reproducible_and_interpolation_ends_are_samples(began_snapshot):
    from minigan.commands.generate import interpolation_z, lerp, slerp
    from minigan.gans import began
    for i in (1, 2):
        assert run("generate", "--snapshot", began_snapshot, "--out", f"{i}.png")[0] == 0
    assert open("1.png", "rb").read() == open("2.png", "rb").read()
    c = began.Config(n_z=5)
    z = interpolation_z(began, c, 2, 5, "spherical", numpy.random.RandomState(0))
    ends = began.sample_z(c, 4, numpy.random.RandomState(0))
    numpy.testing.assert_allclose(z[[0, 4, 5, 9]], ends, atol=1e-6)
    a, b = numpy.array([1.0, 0.0]), numpy.array([0.0, 1.0])
    numpy.testing.assert_allclose(slerp(a, b, 0.5), [0.5 ** 0.5] * 2)      # on the unit circle
    numpy.testing.assert_allclose(lerp(a, b, 0.5), [0.5, 0.5])


def test_generate_on_toy_and_refusing_other_snapshots():
    assert run("wgan-gp", *TINY_TOY, "--iterations", 2, "--out", "run")[0] == 0
    code, out = run("generate", "--snapshot", "run/snapshot_iter_0000002.h5", "--interpolate",
                    "--out", "paths.png")
    assert code == 0 and Image.open("paths.png").size == (320, 320)
    pix2pix = ["--size", "32", "--n-down", "3", "--ngf", "4", "--ndf", "4", *QUIET]
    assert run("pix2pix", *pix2pix, "--iterations", 1, "--out", "p2p")[0] == 0
    code, out = run("generate", "--snapshot", "p2p/snapshot_iter_0000001.h5", "--out", "x.png")
    assert code == 1 and "is a pix2pix snapshot, which is conditional" in error_line(out)
    assert not os.path.exists("x.png")
    with h5py.File("run/snapshot_iter_0000002.h5", "r+") as f:
        del f["meta/gan"]
        f["meta/gan"] = "stylegan"
    code, out = run("generate", "--snapshot", "run/snapshot_iter_0000002.h5", "--out", "x.png")
    assert code == 1 and "is a stylegan snapshot; minigan knows gan, dcgan" in error_line(out)


# -- resume ------------------------------------------------------------------------------------

def _same_snapshots(a, b):
    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert set(fa) == set(fb)
        for group in set(fa) - {"meta", "iteration", "elapsed"}:
            def same(name, obj):
                if isinstance(obj, h5py.Dataset):
                    numpy.testing.assert_array_equal(obj[()], fb[f"{group}/{name}"][()], name)
            fa[group].visititems(same)


@pytest.mark.parametrize("command,args", [
    ("began", ["--data-dir", "faces", *TINY_BEGAN]),
    ("wgan-gp", [*TINY_TOY, "--n-critic", 2]),
])
def test_resume_through_the_cli_equals_a_straight_run(command, args):
    image_folder("faces")
    args = args + ["--snapshot-interval", 4, "--sample-interval", 4]
    assert run(command, *args, "--iterations", 8, "--out", "a")[0] == 0
    assert run(command, *args, "--iterations", 4, "--out", "b")[0] == 0
    code, out = run(command, *args, "--iterations", 8, "--out", "b", "--resume")
    assert code == 0 and "resuming" in out, out
    _same_snapshots("a/snapshot_iter_0000008.h5", "b/snapshot_iter_0000008.h5")
    losses = lambda p: [{k: v for k, v in r.items() if k not in ("elapsed", "it_per_s",
                                                                  "data_wait")}
                        for r in map(json.loads, open(p))]
    assert losses("a/log.jsonl") == losses("b/log.jsonl")
    assert open("a/samples/iter_0000008.png", "rb").read() == \
        open("b/samples/iter_0000008.png", "rb").read()
