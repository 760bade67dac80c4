"""The device is one value a run enters once: on the CPU, a stand-in CuPy records which device
each call is made on, so a run that ignored --gpu 1 would be seen computing on device 0."""
import types

import numpy
import pytest

import minigan.links as L
from minigan import backend
from minigan.optimizers import Adam
from minigan.training import Trainer, Updater

from helpers import error_line, run


class FakeCupy:
    """Just enough of cupy to say which device is current when each call is made."""

    def __init__(self, n_devices=2, runtime=13000, driver=13010, broken=None):
        self.current, self.calls = 0, []
        fake = self

        def library(name, result=None):
            def call(*a):
                if name == broken:
                    raise OSError(f"lib{name}.so.13: cannot open shared object file")
                return result
            return call

        class Device:
            def __init__(self, id):
                self.id = id

            def __enter__(self):
                self.previous, fake.current = fake.current, self.id

            def __exit__(self, *exc):
                fake.current = self.previous

        self.cuda = types.SimpleNamespace(
            Device=Device, runtime=types.SimpleNamespace(
                getDeviceCount=lambda: n_devices, getDevice=lambda: fake.current,
                runtimeGetVersion=lambda: runtime, driverGetVersion=lambda: driver),
            device=types.SimpleNamespace(get_cublas_handle=library("cublas", 1)),
            nvrtc=types.SimpleNamespace(getVersion=library("nvrtc", (13, 0))))
        self.seeds = []
        self.random = types.SimpleNamespace(
            seed=lambda s: self.calls.append(("seed", fake.current)) or self.seeds.append(s),
            RandomState=lambda seed: types.SimpleNamespace(
                standard_normal=library("curand", numpy.zeros(1))))

    def asarray(self, x):
        self.calls.append(("asarray", self.current))
        return numpy.asarray(x)         # the numbers stay on the host: only the device matters


@pytest.fixture
def cupy(monkeypatch):
    fake = FakeCupy()
    monkeypatch.setattr(backend, "_cupy", fake)
    monkeypatch.setattr(backend, "_probed", set())
    return fake


class Recording(Updater):
    """An updater that notes the current device at each update."""

    def update(self, batch):
        self.seen.append(self.device.xp.cuda.runtime.getDevice())
        self.to_device(batch)
        return {"loss": 0.0}


class Batches:
    epoch, wait_time, batches_per_epoch = 0, 0.0, 1

    def __next__(self):
        return numpy.zeros((2, 2), numpy.float32)

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_a_run_on_device_1_computes_on_device_1(cupy, tmp_path):
    model = L.Linear(2, 2)
    updater = Recording(None, {"model": model}, {"model": Adam().setup(model)}, backend.Device(1))
    updater.seen = []
    assert model.device == 1 and {d for _, d in cupy.calls} == {1}      # parameters moved there
    cupy.calls.clear()
    Trainer(updater, Batches(), str(tmp_path), 3, snapshot_interval=100).run()
    assert updater.seen == [1, 1, 1]                    # every update inside device 1
    assert cupy.calls and {d for _, d in cupy.calls} == {1}   # batches and cupy.random.seed too
    assert ("seed", 1) in cupy.calls and cupy.current == 0    # and the run left it as it was


def test_send_and_enter(cupy):
    dev = backend.Device(1)
    dev.send(numpy.zeros(3))
    assert cupy.calls == [("asarray", 1)] and cupy.current == 0
    with dev:
        assert cupy.current == 1
        with backend.Device(0):
            assert cupy.current == 0
        assert cupy.current == 1
    assert cupy.current == 0
    assert backend.Device(-1).send(numpy.ones(2)).sum() == 2 and backend.Device(-1).xp is numpy


@pytest.mark.parametrize("gpu, message", [(2, "this machine has 2 CUDA device"),
                                          (-5, "give -1 for the CPU or a CUDA device id")])
def test_devices_that_do_not_exist_are_one_clear_error(cupy, gpu, message):
    with pytest.raises(backend.DeviceError, match=message):
        backend.Device(gpu)


def test_cli_refuses_a_negative_gpu_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out = run("wgan-gp", "--dataset", "toy", "--iterations", 1, "--gpu", -5)
    assert code == 1 and "--gpu -5: give -1 for the CPU" in error_line(out)
    assert not (tmp_path / "result").exists()


@pytest.mark.parametrize("broken, library", [("cublas", "cuBLAS"), ("curand", "cuRAND"),
                                             ("nvrtc", "NVRTC")])
def test_a_missing_cuda_library_is_one_line_naming_the_extra(monkeypatch, broken, library):
    monkeypatch.setattr(backend, "_cupy", FakeCupy(broken=broken))
    monkeypatch.setattr(backend, "_probed", set())
    with pytest.raises(backend.DeviceError) as e:
        backend.Device(0)
    message = str(e.value)
    assert f"the CUDA library {library} is missing" in message and "\n" not in message
    assert f"lib{broken}.so.13: cannot open" in message and "pip install -e .[cuda13]" in message


def test_a_driver_too_old_for_cupys_cuda_says_so(monkeypatch):
    monkeypatch.setattr(backend, "_cupy", FakeCupy(runtime=13000, driver=12080))
    monkeypatch.setattr(backend, "_probed", set())
    with pytest.raises(backend.DeviceError, match=r"driver supports CUDA 12\.8, this CuPy needs "
                                                  r"CUDA 13.*\.\[cuda12\]"):
        backend.Device(0)


def test_a_rollback_on_the_gpu_draws_a_new_random_stream(cupy, tmp_path):
    model = L.Linear(2, 2)
    updater = Recording(None, {"model": model}, {"model": Adam().setup(model)}, backend.Device(1))
    updater.seen = []
    trainer = Trainer(updater, Batches(), str(tmp_path), 1, snapshot_interval=100)
    trainer._device_seed()
    trainer.rollbacks = 1                               # as after a rollback to this iteration
    trainer._device_seed()
    assert len(cupy.seeds) == 2 and cupy.seeds[0] != cupy.seeds[1]
