"""The zoo's registry and its snapshots: a Config per GAN, stored in the snapshot, rebuilt by
minigan.load without the command line; snapshots of minigan 0.1.0 (options only) still load."""
import json

import h5py
import numpy
import pytest

import minigan
from minigan.gans import REGISTRY, began, dcgan, gan, pix2pix, wgan_gp
from minigan.gans.base import ConfigError
from minigan.training import TrainingError

from helpers import run

DATA = {"gan": [(1, 28, 28), (2,)], "dcgan": [(1, 28, 28), (3, 32, 32)],
        "wgan-gp": [(1, 28, 28), (3, 16, 16), (2,)], "began": [(3, 16, 16), (1, 28, 28)],
        "pix2pix": [((12, 256, 256), (3, 256, 256)), ((3, 128, 128), (12, 128, 128))]}
QUIET = ["--log-interval", "1", "--snapshot-interval", "1", "--sample-interval", "5",
         "--workers", "0"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("name", sorted(DATA))
def test_every_config_round_trips_through_json(name):
    module = REGISTRY[name]
    for shape in DATA[name]:
        c = module.Config.for_data(shape)
        again = module.Config.from_dict(json.loads(json.dumps(c.to_dict())))
        assert again == c and type(again) is module.Config


def test_for_data_picks_the_papers_networks_and_takes_overrides():
    assert dcgan.Config.for_data((1, 28, 28)).arch == "mnist"
    assert dcgan.Config.for_data((3, 64, 64), ngf=8).arch == "radford"
    assert gan.Config.for_data((2,)).n_z == 2 and gan.Config.for_data((2,), n_z=5).n_z == 5
    assert wgan_gp.Config.for_data((2,)).arch == "mlp"
    assert wgan_gp.Config.for_data((3, 64, 64)).minibatches() == 5
    assert began.Config.for_data((1, 28, 28)).size == 28
    c = pix2pix.Config.for_data(((3, 256, 256), (12, 256, 256)))
    assert (c.in_channels, c.out_channels) == (3, 12)


def test_configs_refuse_what_they_cannot_build():
    with pytest.raises(ConfigError, match="unknown Config field.*ngff"):
        dcgan.Config.for_data((1, 28, 28), ngff=3)
    with pytest.raises(ConfigError, match="try --n-down 6"):
        pix2pix.Config.for_data(((3, 64, 64), (3, 64, 64)))
    with pytest.raises(ConfigError, match="square images"):
        began.Config.for_data((3, 16, 20))


def test_minigan_load_rebuilds_a_cli_snapshot(tmp_path):
    assert run("dcgan", "--dataset", "folder", "--data-dir", _faces(tmp_path), "--size", "16",
               "--ngf", "4", "--ndf", "4", "--batch-size", "4", "--iterations", "2",
               "--out", "run", *QUIET)[0] == 0
    path = "run/snapshot_iter_0000002.h5"
    trained = minigan.load(path)
    assert trained.name == "dcgan" and trained.config == dcgan.Config(
        arch="radford", size=16, channels=3, ngf=4, ndf=4)
    with h5py.File(path, "r") as f:             # the weights are the file's
        W = f["models/gen/net/0/W"][()]
    numpy.testing.assert_array_equal(trained.models["gen"].net[0].W.array, W)
    z = trained.module.sample_z(trained.config, 3, numpy.random.RandomState(0))
    assert trained.module.generate(trained.models["gen"], z).shape == (3, 3, 16, 16)


def _faces(tmp_path, n=8):
    from PIL import Image
    folder = tmp_path / "faces"
    folder.mkdir()
    rng = numpy.random.RandomState(0)
    for i in range(n):
        Image.fromarray((rng.rand(16, 16, 3) * 255).astype(numpy.uint8)).save(folder / f"{i}.png")
    return str(folder)


def _as_format_1(path):
    """Rewrite a snapshot's meta as minigan 0.1.0 wrote it: the options, no Config, no format."""
    with h5py.File(path, "r+") as f:
        del f["meta/config"], f["meta/format"]


@pytest.mark.parametrize("name, args", [
    ("wgan-gp", ["--dataset", "toy", "--batch-size", "8", "--n-z", "3"]),
    ("pix2pix", ["--size", "32", "--n-down", "3", "--ngf", "4", "--ndf", "4", "--direction",
                 "AtoB"])])
def test_snapshots_of_format_1_still_load(name, args):
    assert run(name, *args, "--iterations", "1", "--out", "run", *QUIET)[0] == 0
    path = "run/snapshot_iter_0000001.h5"
    new = minigan.load(path)
    _as_format_1(path)
    old = minigan.load(path)
    assert old.config == new.config
    for a, b in zip(old.models["gen"].params(), new.models["gen"].params()):
        numpy.testing.assert_array_equal(a.array, b.array)


def test_a_snapshot_of_a_newer_format_says_so():
    assert run("gan", "--dataset", "toy", "--batch-size", "8", "--iterations", "1", "--out",
               "run", *QUIET)[0] == 0
    path = "run/snapshot_iter_0000001.h5"
    with h5py.File(path, "r+") as f:
        del f["meta/format"]
        f["meta/format"] = "9"
    with pytest.raises(TrainingError, match="newer minigan .*format 9"):
        minigan.load(path)


def test_a_snapshot_that_does_not_fit_its_config_says_why_in_one_line():
    assert run("gan", "--dataset", "toy", "--batch-size", "8", "--iterations", "1", "--out",
               "run", *QUIET)[0] == 0
    path = "run/snapshot_iter_0000001.h5"
    with h5py.File(path, "r+") as f:
        config = json.loads(f["meta/config"].asstr()[()])
        config["n_hidden"] = 7
        del f["meta/config"]
        f["meta/config"] = json.dumps(config)
    with pytest.raises(TrainingError) as e:
        minigan.load(path)
    assert "\n" not in str(e.value) and "shape (128, 2) in the file, (7, 2) in the object" in \
        str(e.value)
