"""HDF5 snapshots: round trips, exact Adam resume, strict refusal, corrupt files, atomic saves."""
import os

import h5py
import numpy
import pytest

import minigan.functions as F
import minigan.links as L
from minigan import Parameter, optimizers as O
from minigan.serializers import SerializationError, load_hdf5, save_hdf5


class Encoder(L.Chain):
    def __init__(self, ch=4):
        super().__init__()
        self.c0 = L.Convolution2D(1, ch, 3, pad=1)
        self.bn = L.BatchNormalization(ch)

    def forward(self, x):
        return F.relu(self.bn(self.c0(x)))


class Net(L.Chain):
    def __init__(self, ch=4):
        super().__init__()
        self.enc = Encoder(ch)
        self.out = L.Linear(ch * 4 * 4, 1)

    def forward(self, x):
        return self.out(self.enc(x))


def _make(seed, ch=4):
    numpy.random.seed(seed)
    return Net(ch)


def _batch(seed):
    return numpy.random.RandomState(seed).standard_normal((3, 1, 4, 4)).astype(numpy.float32)


def _loss(net, x):
    return F.mean(F.square(net(x)))


def _train(net, opt, seeds):
    for s in seeds:
        opt.update(_loss, net, _batch(s))


def _arrays(net):
    return {**{k: p.array.copy() for k, p in net.namedparams()},
            **{k: numpy.array(v) for k, v in net.namedpersistents()}}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        numpy.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_round_trip_of_a_nested_chain(tmp_path):
    net = _make(0)
    _train(net, O.SGD(0.1).setup(net), [1, 2])    # running statistics away from 0 and 1
    path = tmp_path / "net.h5"
    save_hdf5(path, net)
    with h5py.File(path, "r") as f:
        assert f["enc/c0/W"].shape == (4, 1, 3, 3) and int(f["enc/bn/N"][()]) == 2
        assert sorted(f["enc/bn"]) == ["N", "avg_mean", "avg_var", "beta", "gamma"]
    other = _make(1)
    W = other.enc.c0.W.array
    assert load_hdf5(path, other) is other
    _assert_same(_arrays(other), _arrays(net))
    assert other.enc.c0.W.array is W and other.enc.bn.N == 2      # loaded in place


def test_adam_resume_equals_uninterrupted_training(tmp_path):
    net = _make(0)
    opt = O.Adam(alpha=1e-2, amsgrad=True).setup(net)
    _train(net, opt, [1, 2, 3])
    path = tmp_path / "snap.h5"
    save_hdf5(path, {"model": net, "opt": opt, "iteration": 3})
    _train(net, opt, [4, 5, 6])

    net2 = _make(7)
    opt2 = O.Adam(alpha=1e-2, amsgrad=True).setup(net2)
    state = load_hdf5(path, {"model": net2, "opt": opt2, "iteration": None})
    assert state["iteration"] == 3 and opt2.t == 3
    _train(net2, opt2, [4, 5, 6])
    _assert_same(_arrays(net2), _arrays(net))
    for k, v in opt.state_dict().items():
        numpy.testing.assert_array_equal(opt2.state_dict()[k], v)
    with h5py.File(path, "r") as f:
        assert f["opt/t"][()] == 3 and f["opt/enc/c0/W/vhat"].shape == (4, 1, 3, 3)


def test_plain_values_in_a_snapshot(tmp_path):
    numpy.random.seed(5)
    rs = numpy.random.get_state()
    values = {"iteration": 12, "lr": 0.5, "done": False, "name": "facade", "nothing": None,
              "random_state": rs, "order": [3, 1, 2], "z": numpy.arange(6.0).reshape(2, 3),
              "nested": {"epoch": 2}}
    save_hdf5(tmp_path / "s.h5", values)
    got = load_hdf5(tmp_path / "s.h5", {k: None for k in values} | {"nested": {"epoch": 0}})
    assert got["iteration"] == 12 and type(got["iteration"]) is int
    assert got["lr"] == 0.5 and got["done"] is False and got["name"] == "facade"
    assert got["nothing"] is None and got["order"] == [3, 1, 2] and got["nested"] == {"epoch": 2}
    numpy.testing.assert_array_equal(got["z"], values["z"])
    numpy.random.seed(99)
    numpy.random.set_state(got["random_state"])
    expected = numpy.random.RandomState()
    expected.set_state(rs)
    assert numpy.random.random_sample() == expected.random_sample()


def test_mismatched_file_is_refused_and_target_unchanged(tmp_path):
    path = tmp_path / "net.h5"
    save_hdf5(path, {"gen": _make(0), "iteration": 1})
    with h5py.File(path, "a") as f:
        del f["gen/out/b"]                             # missing in the file
        f["gen/enc/extra"] = numpy.zeros(2)            # not in the object
    target = _make(1, ch=4)
    target.out.W = Parameter(numpy.zeros((1, 32), numpy.float32))   # mis-shaped: (1, 64) in file
    before = _arrays(target)
    with pytest.raises(SerializationError) as err:
        load_hdf5(path, {"gen": target, "iteration": None})
    msg = str(err.value)
    assert str(path) in msg
    assert "/gen/out/b" in msg and "/gen/enc/extra" in msg
    assert "/gen/out/W" in msg and "(1, 64)" in msg and "(1, 32)" in msg
    assert isinstance(err.value, ValueError)
    _assert_same(_arrays(target), before)


def test_missing_plain_key_and_optimizer_mismatch(tmp_path):
    net = _make(0)
    save_hdf5(tmp_path / "a.h5", {"opt": O.Adam().setup(net)})
    with pytest.raises(SerializationError, match="/opt/enc/c0/W/vhat"):
        load_hdf5(tmp_path / "a.h5", {"opt": O.Adam(amsgrad=True).setup(net)})
    with pytest.raises(SerializationError, match="/iteration"):
        load_hdf5(tmp_path / "a.h5", {"opt": O.Adam().setup(net), "iteration": None})


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_file_gives_a_clear_error(tmp_path, damage):
    path = tmp_path / "snap.h5"
    net = _make(0)
    save_hdf5(path, {"gen": net, "opt": O.Adam().setup(net)})
    size = os.path.getsize(path)
    if damage == "truncate":
        with open(path, "r+b") as f:
            f.truncate(size // 2)
    else:
        path.write_bytes(b"" if damage == "empty" else b"not an hdf5 file\n" * 100)
    target = _make(1)
    before = _arrays(target)
    with pytest.raises(SerializationError, match="is not a readable HDF5 snapshot") as err:
        load_hdf5(path, {"gen": target, "opt": O.Adam().setup(target)})
    assert str(path) in str(err.value)
    _assert_same(_arrays(target), before)
    with pytest.raises(FileNotFoundError, match="no such"):
        load_hdf5(tmp_path / "absent.h5", target)


class Exploding(L.Link):
    """A link whose parameters cannot all be read: the save fails halfway."""

    def __init__(self):
        super().__init__()
        self.W = Parameter(numpy.ones(3, numpy.float32))

    def namedparams(self):
        yield "/W", self.W
        raise RuntimeError("disk on fire")


def test_failed_save_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "snap.h5"
    good = _make(0)
    save_hdf5(path, {"gen": good, "iteration": 1})
    with pytest.raises(RuntimeError, match="disk on fire"):
        save_hdf5(path, {"gen": Exploding(), "iteration": 2})
    with pytest.raises(TypeError, match="cannot write"):
        save_hdf5(path, {"gen": good, "iteration": object()})
    assert os.listdir(tmp_path) == ["snap.h5"]          # no temporary file left behind
    target = _make(1)
    state = load_hdf5(path, {"gen": target, "iteration": None})
    assert state["iteration"] == 1
    _assert_same(_arrays(target), _arrays(good))


def test_unsupported_objects_are_refused(tmp_path):
    with pytest.raises(TypeError, match="cannot save or load"):
        save_hdf5(tmp_path / "x.h5", 3)
    with pytest.raises(TypeError, match="without '/'"):
        save_hdf5(tmp_path / "x.h5", {"a/b": 1})


@pytest.mark.gpu
def test_load_into_a_model_on_the_gpu(tmp_path):
    import cupy
    net = _make(0)
    opt = O.Adam().setup(net)
    _train(net, opt, [1])
    save_hdf5(tmp_path / "s.h5", {"gen": net, "opt": opt})
    gpu_net = _make(1).to_gpu(0)
    gpu_opt = O.Adam().setup(gpu_net)
    load_hdf5(tmp_path / "s.h5", {"gen": gpu_net, "opt": gpu_opt})
    assert isinstance(gpu_net.enc.c0.W.array, cupy.ndarray)
    assert isinstance(gpu_opt.state["/enc/c0/W"]["m"], cupy.ndarray)
    numpy.testing.assert_array_equal(gpu_net.enc.c0.W.array.get(), net.enc.c0.W.array)
    numpy.testing.assert_array_equal(gpu_net.enc.bn.avg_var.get(), net.enc.bn.avg_var)
    _train(net, opt, [2])
    gpu_opt.update(_loss, gpu_net, cupy.asarray(_batch(2)))
    numpy.testing.assert_allclose(gpu_net.out.W.array.get(), net.out.W.array, rtol=1e-4,
                                  atol=1e-6)
