"""minigan.distributed: synchronized batch norm (gradient checks), shards (per minibatch too),
the optimizer hook and BEGAN's controller in process; `mpiexec -n 2` runs: 2 ranks x b == 1
process x 2b in float64 for gan, pix2pix, wgan-gp, began, lightweight and projected, the ranks
bitwise equal after every step, the lightweight and projected commands on 2 ranks, exact
resume, a killed or failing rank ending the job, and the one-line errors of bad use."""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy
import pytest

from minigan import backend, distributed
from minigan import functions as F
from minigan.datasets import BatchIterator, RingDataset
from minigan.distributed import trainer as dist
from minigan.gans import began, load
from minigan.gradient_check import check_backward, check_double_backward
from minigan.links import BatchNormalization, Linear
from minigan.optimizers import SGD, WeightDecay
from helpers import error_line, run, shared

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the mpich wheel puts mpiexec beside this Python (a pyenv shim may not exist for it yet)
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or \
    shutil.which("mpiexec")
try:
    import mpi4py  # noqa: F401
    NO_MPI = None if MPIEXEC else "no mpiexec on PATH (pip install -e .[mpi])"
except ImportError:
    NO_MPI = "mpi4py is not installed (pip install -e .[mpi])"
needs_mpi = pytest.mark.skipif(NO_MPI is not None, reason=NO_MPI or "")
ONE = distributed.SingleCommunicator()


def env():
    """This checkout first on the path, one BLAS thread per rank (2 ranks share 2 cores)."""
    return {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def mpiexec(n, *args, cwd=None, timeout=120, **kw):
    """CompletedProcess of `mpiexec -n n python ARGS` (text output)."""
    cmd = [MPIEXEC, "-n", str(n), sys.executable] + [str(a) for a in args]
    return subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=timeout, **kw)


# -- in process --------------------------------------------------------------------------------

def sync_bn(comm=ONE):
    return lambda x, g, b: distributed.sync_batch_normalization(x, g, b, comm)


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 4, 5), (1, 3, 2, 2)])
def test_sync_batch_norm_gradients_on_one_rank(shape):
    rng = numpy.random.RandomState(0)
    x = rng.standard_normal(shape)
    g, b = rng.uniform(0.5, 1.5, shape[1]), rng.standard_normal(shape[1])
    check_backward(sync_bn(), (x, g, b), atol=1e-7, rtol=1e-6)
    check_double_backward(sync_bn(), (x, g, b), atol=1e-6, rtol=1e-5)


def test_sync_batch_norm_on_one_rank_is_batch_norm():
    rng = numpy.random.RandomState(1)
    x = rng.standard_normal((5, 3, 4, 4))
    a, b = BatchNormalization(3, dtype=numpy.float64), BatchNormalization(3, dtype=numpy.float64)
    assert distributed.convert_sync_batchnorm(b, ONE) == 1
    assert type(b).__name__ == "MultiNodeBatchNormalization"
    for _ in range(2):
        ya, yb = a(x), b(x)
    numpy.testing.assert_allclose(yb.array, ya.array, atol=1e-12)
    numpy.testing.assert_allclose(b.avg_mean, a.avg_mean, atol=1e-12)
    numpy.testing.assert_allclose(b.avg_var, a.avg_var, atol=1e-12)
    assert b.N == a.N == 2
    assert [k for k, _ in b.namedparams()] == [k for k, _ in a.namedparams()]


def test_shards_are_disjoint_and_together_the_single_process_batches():
    ds = RingDataset(n=60, seed=0)
    whole = BatchIterator(ds, 6, seed=3, n_workers=0)
    shards = [distributed.ShardIterator(ds, 3, r, 2, seed=3, n_workers=0) for r in range(2)]
    assert shards[0].batches_per_epoch == whole.batches_per_epoch == 10
    for _ in range(25):                             # across epochs: reshuffled alike
        parts = [next(s) for s in shards]
        numpy.testing.assert_array_equal(numpy.concatenate(parts), next(whole))
        assert not any((parts[0][:, None] == parts[1][None]).all(-1).any(1))
    assert shards[0].epoch == shards[1].epoch == whole.epoch == 2


@pytest.mark.parametrize("n", [2, 3])
def test_shards_of_minibatches_are_the_single_process_minibatches(n):
    # WGAN-GP's n critic minibatches (Lightweight GAN's accumulation, ProjectedGAN's rounds):
    # rank r's minibatch t is the r-th slice of the one-process minibatch t at 2b
    ds = RingDataset(n=60, seed=0)
    whole = BatchIterator(ds, 4 * n, seed=3, n_workers=0)
    shards = [distributed.ShardIterator(ds, 2 * n, r, 2, n, seed=3, n_workers=0)
              for r in range(2)]
    for _ in range(12):
        parts = [next(s).reshape(n, 2, 2) for s in shards]          # (minibatch, b, 2)
        big = next(whole).reshape(n, 4, 2)
        numpy.testing.assert_array_equal(numpy.concatenate(parts, axis=1), big)


def test_shard_positions_key_the_augmentation_as_in_one_process():
    class Draws:                # an example is the first draw of its rng
        def __len__(self):
            return 24

        def get_example(self, i, rng):
            return (numpy.array([i, rng.random()]),)
    whole = next(BatchIterator(Draws(), 12, seed=1, n_workers=0)).reshape(3, 4, 2)
    parts = [next(distributed.ShardIterator(Draws(), 6, r, 2, 3, seed=1, n_workers=0))
             .reshape(3, 2, 2) for r in range(2)]
    numpy.testing.assert_array_equal(numpy.concatenate(parts, axis=1), whole)


class OtherRank(distributed.SingleCommunicator):
    """Rank 0 of 2 whose partner reports fixed values: allreduce_obj averages with them."""
    size = 2

    def __init__(self, theirs):
        self.theirs = theirs

    def allreduce_obj(self, value, op="sum"):
        total = [a + b for a, b in zip(value, self.theirs)]
        return [t / 2 for t in total] if op == "mean" else total


def test_began_k_moves_by_the_global_batch_means_even_where_the_clip_acts():
    # at k = 0 this rank's move is lambda_k (gamma 1.0 - 0.3) > 0, the other's (gamma 0.1 - 0.6)
    # < 0: one process at 2b moves by the mean losses' move, clipped to 0; the mean of the
    # ranks' clipped k would be lambda_k 0.2 / 2 > 0
    numpy.random.seed(0)
    c = began.Config.for_data((1, 16, 16), n=2, n_h=2, n_z=2)
    models, optimizers = began.build(c)
    updater = began.Updater(c, models, optimizers)
    calls = []
    updater.comm = OtherRank([0.1, 0.6])
    real = updater.global_mean

    def global_mean(*values):
        calls.append(values)
        return real(1.0, 0.3)           # this rank's L(x), L(G(z)) set for the example
    updater.global_mean = global_mean
    out = updater.update(numpy.random.uniform(-1, 1, (2, 1, 16, 16)).astype(numpy.float32))
    assert len(calls) == 1 and out["k"] == 0.0
    L_x, L_Gz = (1.0 + 0.1) / 2, (0.3 + 0.6) / 2
    assert updater.k == began.update_k(0.0, L_x, L_Gz, c.gamma, c.lambda_k) == 0.0
    assert out["M_global"] == began.convergence(L_x, L_Gz, c.gamma)
    mean_of_clipped = (began.update_k(0.0, 1.0, 0.3, c.gamma, c.lambda_k) +
                       began.update_k(0.0, 0.1, 0.6, c.gamma, c.lambda_k)) / 2
    assert mean_of_clipped > 0


def test_updater_shared_and_global_mean_in_one_process_are_the_identity():
    from minigan.training import Updater
    u = Updater(None, {}, {})
    assert u.ranks == 1 and u.global_mean(2.5) == 2.5 and u.global_mean(1, 2) == [1.0, 2.0]
    assert u.shared(lambda: 7) == 7 and u.frozen() == ()


def test_rank_seeds_differ_and_rank_0_keeps_the_seed():
    seeds = [distributed.rank_seed(5, r) for r in range(4)]
    assert seeds[0] == 5 and len(set(seeds)) == 4
    assert seeds == [distributed.rank_seed(5, r) for r in range(4)]


def test_multi_node_optimizer_averages_before_the_other_hooks():
    class Halving(distributed.SingleCommunicator):     # a 2-rank mean of g and 0
        size = 2

        def _allreduce_sum(self, flat):
            return flat
    net = Linear(3, 2)
    opt = SGD(lr=1.0).setup(net).add_hook(WeightDecay(0.5))
    distributed.create_multi_node_optimizer(opt, Halving())
    distributed.create_multi_node_optimizer(opt, Halving())        # once only
    assert len(opt.hooks) == 2 and isinstance(opt.hooks[0], distributed.AllreduceGrad)
    w = net.W.array.copy()
    net.W.grad = numpy.ones_like(w)
    opt.update()
    # g <- (1 + 0) / 2, then decay: g + 0.5 w; SGD: w - g; b had no gradient: unchanged
    numpy.testing.assert_allclose(net.W.array, w - (0.5 + 0.5 * w), atol=1e-6)
    assert net.b.grad is None


def test_buckets_keep_the_order_and_split_by_dtype_and_size():
    arrays = [numpy.zeros(n, d) for n, d in [(10, "f4"), (10, "f4"), (5, "f8"), (30, "f8")]]
    runs = distributed.communicator.buckets(arrays, limit=100)
    assert [[a.size for a in r] for r in runs] == [[10, 10], [5], [30]]


def test_gpu_auto_with_more_ranks_than_gpus(monkeypatch):
    class Cupy:
        class cuda:
            class runtime:
                getDeviceCount = staticmethod(lambda: 1)
    monkeypatch.setattr(backend, "get_cupy", lambda gpu=0: Cupy)
    from minigan.commands import ranks
    comm = distributed.SingleCommunicator()
    comm.local_rank, comm.local_size, comm.host = 1, 2, "node7"
    assert ranks.auto_gpu(comm) == (None, "--gpu auto: 2 ranks on node7, which has 1 GPU(s); "
                                          "start at most 1 ranks per machine")
    comm.local_rank = 0
    assert ranks.auto_gpu(comm) == (0, None)


def test_sync_bn_without_a_communicator_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out = run("gan", "--dataset", "toy", "--iterations", 1, "--sync-bn")
    assert code == 2 and "--sync-bn needs --communicator" in error_line(out)


def test_no_mpi4py_is_one_line(tmp_path):
    code = ("import sys; sys.modules['mpi4py'] = None; from minigan.cli import main; "
            "main(['gan', '--dataset', 'toy', '--iterations', '1', '--communicator', 'mpi'])")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env(),
                       capture_output=True, text=True, timeout=60)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1, p.stderr
    assert "--communicator needs mpi4py" in lines[0] and ".[mpi]" in lines[0]
    assert not (tmp_path / "result").exists()


# -- mpiexec -n 2 ------------------------------------------------------------------------------

def helper(tmp_path, kind, n, batch, steps, sync="0", draws="shared"):
    """The parameters after `steps` steps of tests/mpi_ranks.py on n ranks (n=1: alone)."""
    out = tmp_path / f"{kind}-{n}-{sync}-{draws}.npz"
    script = os.path.join(ROOT, "tests", "mpi_ranks.py")
    if n == 1:
        p = subprocess.run([sys.executable, script, kind, "single", str(batch), str(steps),
                            str(out)], env=env(), capture_output=True, text=True, timeout=60)
    else:
        p = mpiexec(n, script, kind, "mpi", batch, steps, out, sync, draws, timeout=90)
    assert p.returncode == 0, p.stdout + p.stderr        # rc 3: the ranks' parameters differed
    return dict(numpy.load(out))


@needs_mpi
def test_gan_two_ranks_of_b_equal_one_process_of_2b(tmp_path):
    two, one = helper(tmp_path, "gan", 2, 8, 4), helper(tmp_path, "gan", 1, 16, 4)
    assert two.keys() == one.keys() and two["gen/layers/0/W"].dtype == numpy.float64
    for k in one:
        numpy.testing.assert_allclose(two[k], one[k], rtol=0, atol=1e-10, err_msg=k)


@needs_mpi
def test_pix2pix_sync_bn_two_ranks_of_b_equal_one_process_of_2b(tmp_path):
    two, one = helper(tmp_path, "pix2pix", 2, 2, 3, sync="1"), helper(tmp_path, "pix2pix", 1, 4, 3)
    # a conv bias right before batch norm has a gradient of exactly 0 (the norm subtracts any
    # constant): it moves only by rounding noise (Adam rescales ~1e-17 gradients), so it is
    # checked to stay noise, and every other parameter to 1e-10
    for k in one:
        if k.endswith("/c/b") and "c0_" not in k:
            assert abs(one[k]).max() < 1e-8 and abs(two[k]).max() < 1e-8, k
        else:
            numpy.testing.assert_allclose(two[k], one[k], rtol=0, atol=1e-10, err_msg=k)
    apart = helper(tmp_path, "pix2pix", 2, 2, 3, sync="0")     # without --sync-bn: per-rank BN
    assert max(abs(apart[k] - one[k]).max() for k in one if not k.endswith("/c/b")) > 1e-6


def assert_equal_runs(two, one, atol=1e-10):
    assert two.keys() == one.keys()
    assert all(a.dtype == numpy.float64 for a in one.values())
    for k in one:
        numpy.testing.assert_allclose(two[k], one[k], rtol=0, atol=atol, err_msg=k)


@needs_mpi
def test_wgan_gp_two_ranks_of_b_equal_one_process_of_2b(tmp_path):
    # 2 critic minibatches per iteration, each rank's penalty on its own x_hat (its eps are
    # the 1-process eps of the same examples)
    two, one = helper(tmp_path, "wgan-gp", 2, 4, 3), helper(tmp_path, "wgan-gp", 1, 8, 3)
    assert_equal_runs(two, one)


@needs_mpi
def test_began_two_ranks_of_b_equal_one_process_of_2b_and_k_t_too(tmp_path):
    two, one = helper(tmp_path, "began", 2, 4, 4), helper(tmp_path, "began", 1, 8, 4)
    assert one["state/k"] != 0              # the controller moved
    assert_equal_runs(two, one)             # k_t among them (equal on the ranks: the digest)


@needs_mpi
def test_lightweight_two_ranks_of_b_equal_one_process_of_2b(tmp_path):
    # gradient accumulation 2, augmentation p 0.5, the penalty at steps 0 and 2, EMA every
    # step (reset to G at step 2); synchronized batch norm (G's and D's statistics over 2b)
    two = helper(tmp_path, "lightweight", 2, 2, 4, sync="1")
    one = helper(tmp_path, "lightweight", 1, 4, 4)
    penalty = "state/last_penalty"          # about 1e3: its float64 rounding is ~1e-13
    numpy.testing.assert_allclose(two.pop(penalty), one.pop(penalty), rtol=1e-13)
    assert any(not numpy.array_equal(one[k], one["gen" + k[7:]]) for k in one
               if k.startswith("gen_ema/"))     # the EMA averaged something
    assert_equal_runs(two, one)


@needs_mpi
def test_projected_two_ranks_of_batch_gpu_b_equal_one_process_of_2b(tmp_path):
    # the same total batch: 2 rounds of b on each rank, 2 rounds of 2b alone; the frozen
    # projections and the frozen feature stand-in are in the comparison and the digests
    two = helper(tmp_path, "projected", 2, 2, 3, sync="1")
    one = helper(tmp_path, "projected", 1, 4, 3)
    assert any(k.startswith("frozen0/") for k in one) and one["state/nimg"] == 24
    assert_equal_runs(two, one)


@needs_mpi
@pytest.mark.parametrize("kind", ["lightweight", "projected"])
def test_own_random_streams_keep_the_ranks_parameters_identical(tmp_path, kind):
    # as real runs draw: each rank its own z, noise and augmentation (rank 0's per-batch
    # decisions shared); mpi_ranks.py exits 3 if the ranks' digests differ after any step
    two = helper(tmp_path, kind, 2, 2, 3, sync="1", draws="own")
    shared_run = helper(tmp_path, kind, 2, 2, 3, sync="1")
    assert max(abs(two[k] - shared_run[k]).max() for k in two if k.startswith("gen/")) > 1e-6


PIX = ["pix2pix", "--size", 16, "--n-down", 2, "--ngf", 4, "--ndf", 2, "--batch-size", 1,
       "--communicator", "mpi", "--sync-bn", "--snapshot-interval", 2, "--log-interval", 1,
       "--sample-interval", 100, "--keep", 5]


def leaves(path):
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda k, v: out.__setitem__(k, v[()]) if hasattr(v, "shape") else None)
    return out


@needs_mpi
def test_resume_of_two_ranks_equals_the_straight_run_bit_for_bit(tmp_path):
    cli = os.path.join(ROOT, "cli.py")
    p = mpiexec(2, cli, *PIX, "--iterations", 4, "--out", "a", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "data-parallel on 2 ranks (mpi): rank 0 pid" in p.stderr
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    os.remove(tmp_path / "b" / "snapshot_iter_0000004.h5")
    p = mpiexec(2, cli, *PIX, "--iterations", 4, "--resume", "b/snapshot_iter_0000002.h5",
                cwd=tmp_path)
    assert p.returncode == 0 and "resuming" in p.stderr, p.stderr
    a, b = (leaves(tmp_path / d / "snapshot_iter_0000004.h5") for d in "ab")
    assert a.keys() == b.keys() and "random/rank_1/1" in a      # rank 1's random state too
    differ = [k for k in a if k != "elapsed" and not k.startswith("meta")
              and not numpy.array_equal(a[k], b[k])]
    assert differ == []
    log = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert len(log) == 4            # rank 0 alone writes the log


def start(tmp_path, *args, argv=None):
    """A background `mpiexec ARGS` job writing into tmp_path/job.txt."""
    log = open(tmp_path / "job.txt", "w")
    return subprocess.Popen([MPIEXEC] + [str(a) for a in args], cwd=tmp_path, env=env(),
                            stdout=log, stderr=subprocess.STDOUT)


def wait_for(condition, seconds):
    deadline = time.time() + seconds
    while not condition() and time.time() < deadline:
        time.sleep(0.1)
    return condition()


GAN = [sys.executable, os.path.join(ROOT, "cli.py"), "gan", "--dataset", "toy", "--iterations",
       10 ** 6, "--batch-size", 8, "--communicator", "mpi", "--snapshot-interval", 25]


@needs_mpi
def test_a_killed_rank_ends_the_job_and_the_last_snapshot_loads(tmp_path):
    import re
    job = start(tmp_path, "-n", 2, *GAN)
    try:
        text = lambda: (tmp_path / "job.txt").read_text()
        folder = tmp_path / "result" / "gan"
        assert wait_for(lambda: len(list(folder.glob("snapshot_iter_*.h5"))) >= 2, 60), text()
        pid = int(re.search(r"rank 1 pid (\d+)", text()).group(1))
        os.kill(pid, signal.SIGKILL)
        t0 = time.time()
        job.wait(timeout=30)
        assert time.time() - t0 < 10 and job.returncode != 0
    finally:
        if job.poll() is None:
            job.kill()
    # the launcher's line names the dead process (its pid, which the first line maps to rank 1)
    assert f"PID {pid}" in text() and "Killed" in text()
    last = sorted(folder.glob("snapshot_iter_*.h5"))[-1]
    trained = load(str(last))
    assert trained.name == "gan" and trained.models["gen"] is not None


@needs_mpi
def test_a_rank_that_raises_ends_the_job_with_its_rank_and_reason(tmp_path):
    # rank 1 runs the same command with an updater that fails at its 5th step
    boom = ("import sys; from minigan.gans import gan; n = [0]; u = gan.Updater.update\n"
            "def update(self, batch):\n    n[0] += 1\n    if n[0] == 5: raise RuntimeError('boom')\n"
            "    return u(self, batch)\n"
            "gan.Updater.update = update; from minigan.cli import main; main(sys.argv[1:])")
    job = start(tmp_path, "-n", 1, *GAN, ":", "-n", 1, sys.executable, "-c", boom, *GAN[2:])
    try:
        job.wait(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    out = (tmp_path / "job.txt").read_text()
    assert job.returncode != 0
    assert "Error: rank 1 of 2 on" in out and "failed: RuntimeError: boom; ending all ranks" in out


@needs_mpi
def test_mismatched_options_between_ranks_are_one_line(tmp_path):
    a, b = GAN, GAN + ["--batch-size", 4]       # the last --batch-size counts
    p = subprocess.run([MPIEXEC, "-n", "1"] + [str(x) for x in a] + [":", "-n", "1"] +
                       [str(x) for x in b], cwd=tmp_path, env=env(), capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [
        "Error: the ranks were started with different options: --batch-size 8 on rank 0 but "
        "4 on rank 1"], p.stderr
    assert not (tmp_path / "result").exists()


@needs_mpi
@pytest.mark.skipif(backend._import_cupy() is not None, reason="CuPy is installed")
def test_nccl_without_cupy_is_one_line(tmp_path):
    p = mpiexec(2, *GAN[1:-2], "--communicator", "nccl", "--iterations", 1, cwd=tmp_path,
                timeout=60)
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --communicator nccl needs CuPy"), \
        p.stderr


# -- the lightweight and projected commands on 2 ranks -----------------------------------------

def some_faces(tmp_path, n=16):
    src = shared("faces64")         # skips without ../shared/data
    os.makedirs(tmp_path / "data")
    for name in sorted(os.listdir(src))[:n]:
        os.symlink(os.path.join(src, name), tmp_path / "data" / name)
    return "data"


LIGHT = ["lightweight", "--image-size", 32, "--batch-size", 2, "--gradient-accumulate-every", 2,
         "--fmap-max", 8, "--latent-dim", 8, "--num-image-tiles", 2, "--aug-prob", 0.5,
         "--workers", 0, "--log-every", 1, "--save-every", 2, "--evaluate-every", 2,
         "--communicator", "mpi", "--sync-bn", "--attn-res-layers", "[]"]


@needs_mpi
def test_lightweight_command_on_two_ranks_writes_once_and_resumes_exactly(tmp_path):
    data, cli = some_faces(tmp_path), os.path.join(ROOT, "cli.py")
    p = mpiexec(2, cli, *LIGHT, "--data", data, "--name", "a", "--num-train-steps", 4,
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "data-parallel on 2 ranks (mpi)" in p.stderr
    assert {"1.jpg", "1-ema.jpg", "2.jpg", "2-ema.jpg", "log.jsonl"} <= \
        set(os.listdir(tmp_path / "results" / "a"))
    assert sorted(os.listdir(tmp_path / "models" / "a")) == ["config.json", "model_1.h5",
                                                             "model_2.h5"]
    assert len((tmp_path / "results" / "a" / "log.jsonl").read_text().splitlines()) == 4
    # 2 steps, then a 2-rank continue to 4: the straight run's checkpoint, bit for bit
    for steps in (2, 4):
        p = mpiexec(2, cli, *LIGHT, "--data", data, "--name", "b", "--num-train-steps", steps,
                    cwd=tmp_path)
        assert p.returncode == 0, p.stderr
    assert "continuing from" in p.stderr
    a, b = (leaves(tmp_path / "models" / d / "model_2.h5") for d in "ab")
    differ = [k for k in a if k != "elapsed" and not k.startswith("meta")
              and not numpy.array_equal(a[k], b[k])]
    assert a.keys() == b.keys() and differ == []


def test_lightweight_generate_refuses_a_communicator(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out = run("lightweight", "--generate", "--communicator", "mpi")
    assert code == 2 and "run in one process: drop --communicator" in error_line(out)


PROJ = ["projected", "--cfg", "fastgan_lite", "--resolution", 32, "--batch", 4, "--batch-gpu", 1,
        "--cbase", 4, "--ndf", 8, "--tick", 0.004, "--snap", 1, "--workers", 0,
        "--metrics", "none", "--communicator", "mpi", "--sync-bn"]


@needs_mpi
def test_projected_command_on_two_ranks(tmp_path):
    try:
        minigan_weights = __import__("minigan.models.weights", fromlist=["x"])
        minigan_weights.efficientnet_lite0_file()
    except Exception as e:      # the weights package ([projected] extra) is not installed
        pytest.skip(str(e))
    data, cli = some_faces(tmp_path), os.path.join(ROOT, "cli.py")
    p = mpiexec(2, cli, *PROJ, "--data", data, "--outdir", "runs", "--kimg", 0.008, cwd=tmp_path,
                timeout=180)
    assert p.returncode == 0, p.stderr
    assert os.listdir(tmp_path / "runs") == ["00000-fastgan_lite-data-gpus2-batch4"]
    run_dir = tmp_path / "runs" / "00000-fastgan_lite-data-gpus2-batch4"
    assert {"fakes000000.png", "log.jsonl", "network-snapshot-000000.h5",
            "network-snapshot-000000_008.h5", "training_options.json"} <= set(os.listdir(run_dir))
    assert len((run_dir / "log.jsonl").read_text().splitlines()) == 2
    first, last = (leaves(run_dir / f"network-snapshot-000000{r}.h5") for r in ("", "_008"))
    assert int(first["updater/nimg"]) == 4 and int(last["updater/nimg"]) == 8  # both ranks'



@needs_mpi
@pytest.mark.parametrize("args, message", [
    (["--gpus", 3], "--gpus 3: this run has 2 rank(s)"),
    (["--batch", 6, "--batch-gpu", 2], "--batch 6 must be a multiple of --batch-gpu 2 times 2"),
])
def test_projected_bad_rank_options_are_one_line(tmp_path, args, message):
    data = some_faces(tmp_path, 4)
    cli = os.path.join(ROOT, "cli.py")
    p = mpiexec(2, cli, *PROJ, "--data", data, "--outdir", "runs", "--kimg", 0.004, *args,
                cwd=tmp_path, timeout=60)
    lines = [l for l in p.stderr.strip().splitlines() if not l.startswith("data-parallel on")]
    assert p.returncode == 1 and len(lines) == 1 and message in lines[0], p.stderr
    assert not (tmp_path / "runs").exists()
