"""Tier 3, on a CUDA device: every op of minigan.functions on CuPy equals NumPy, forward and
backward; float64 gradient checks on CuPy; pix2pix on the GPU follows the CPU run.

Only test_every_op_has_a_gpu_case runs without a device: it keeps the table complete. The kernel
against twin comparisons live in test_cuda_kernels.py (its `gpu` cases).
"""
import inspect

import numpy
import pytest

import minigan.functions as F
from minigan import Variable, augment, backend
from minigan.functions import noise
from minigan.gans import pix2pix
from minigan.gradient_check import check_backward, check_double_backward


def r(*shape, seed=0, low=None):
    """float32 normal samples; with `low`, |samples| + low (positive inputs for log, sqrt)."""
    x = numpy.random.RandomState(seed).standard_normal(shape).astype(numpy.float32)
    return numpy.abs(x) + low if low is not None else x


X, A, B, POS = r(3, 4, 5), r(3, 4, 5, seed=1), r(3, 4, 5, seed=2), r(3, 4, 5, seed=3, low=0.5)
IMG, W, DW = r(2, 4, 9, 8), r(6, 2, 3, 3, seed=1), r(4, 3, 4, 4, seed=1)
C4 = [r(4, seed=s) for s in (5, 6)]
# name: (fn, arrays, number of leading arrays that are differentiable; the rest are constants)
OPS = {
    "relu": (F.relu, [X], 1), "leaky_relu": (F.leaky_relu, [X], 1), "elu": (F.elu, [X], 1),
    "relu6": (F.relu6, [X * 4], 1), "sigmoid": (F.sigmoid, [X], 1), "tanh": (F.tanh, [X], 1),
    "softplus": (F.softplus, [X], 1), "swish": (F.swish, [X], 1), "glu": (F.glu, [X[:, :4]], 1),
    "gelu": (F.gelu, [X], 1), "erf": (F.erf, [X], 1), "softmax": (F.softmax, [X], 1),
    "blur": (F.blur, [IMG], 1),
    "local_dot": (F.local_dot, [IMG, r(2, 4, 9, 8, seed=8)], 2),
    "local_mix": (F.local_mix, [r(2, 9, 9, 8, seed=9), IMG], 2),
    "local_scatter": (F.local_scatter, [r(2, 9, 9, 8, seed=9), IMG], 2),
    "scaled_noise": (lambda x, w, n: F.scaled_noise(x, w, n), [IMG, C4[0], r(2, 1, 9, 8, seed=7)], 2),
    "broadcast_to": (lambda x: F.broadcast_to(x, (3, 4, 5)), [r(3, 1, 5)], 1),
    "cast": (lambda x: F.cast(x, numpy.float64), [X], 1),
    "concat": (lambda a, b: F.concat([a, b], axis=1), [A, r(3, 2, 5)], 2),
    "expand_dims": (lambda x: F.expand_dims(x, 1), [X], 1), "flatten": (F.flatten, [X], 1),
    "get_item": (lambda x: F.get_item(x, (slice(None), 1, slice(1, 4))), [X], 1),
    "pad": (lambda x: F.pad(x, ((0, 0), (1, 2), (0, 1)), 0.5), [X], 1),
    "reshape": (lambda x: F.reshape(x, (4, 15)), [X], 1),
    "split_axis": (lambda x: F.split_axis(x, 2, axis=1), [X], 1),
    "squeeze": (lambda x: F.squeeze(x, 1), [r(3, 1, 5)], 1),
    "stack": (lambda a, b: F.stack([a, b], axis=1), [A, B], 2),
    "sum_to": (lambda x: F.sum_to(x, (1, 4, 1)), [X], 1),
    "transpose": (lambda x: F.transpose(x, (2, 0, 1)), [X], 1),
    "where": (lambda a, b, c: F.where(c, a, b), [A, B, X > 0], 2),
    "linear": (F.linear, [r(3, 5), r(4, 5, seed=1), r(4, seed=2)], 3),
    "log_softmax": (F.log_softmax, [X], 1),
    "mean_absolute_error": (F.mean_absolute_error, [A, B], 2),
    "mean_squared_error": (F.mean_squared_error, [A, B], 2),
    "sigmoid_cross_entropy": (F.sigmoid_cross_entropy, [A, (B > 0).astype("f")], 1),
    "softmax_cross_entropy": (F.softmax_cross_entropy, [r(6, 5), numpy.arange(6) % 5], 1),
    "abs": (F.abs, [X], 1), "add": (F.add, [A, B], 2), "sub": (F.sub, [A, B], 2),
    "mul": (F.mul, [A, B], 2), "div": (F.div, [A, POS], 2), "neg": (F.neg, [X], 1),
    "pow": (F.pow, [POS, A], 2), "matmul": (F.matmul, [r(2, 3, 4), r(2, 4, 5, seed=1)], 2),
    "exp": (F.exp, [X], 1), "log": (F.log, [POS], 1), "sqrt": (F.sqrt, [POS], 1),
    "square": (F.square, [X], 1), "clip": (lambda x: F.clip(x, -0.5, 0.5), [X], 1),
    "sum": (lambda x: F.sum(x, axis=1), [X], 1), "mean": (lambda x: F.mean(x, (0, 2)), [X], 1),
    "max": (lambda x: F.max(x, axis=2), [X], 1), "min": (lambda x: F.min(x, axis=0), [X], 1),
    "logsumexp": (lambda x: F.logsumexp(x, axis=1), [X], 1),
    "dropout": (lambda x, m: F.dropout(x, 0.5, mask=m), [X, (A > 0).astype("f") * 2], 1),
    "convolution_2d": (lambda x, w, b: F.convolution_2d(x, w, b, 2, 1, groups=2),
                       [IMG, W, r(6, seed=2)], 3),
    "depthwise_convolution_2d": (lambda x, w, b: F.depthwise_convolution_2d(
        x, w, b, 2, ((1, 2), (0, 1))), [IMG, r(4, 1, 3, 3, seed=1), r(4, seed=2)], 3),
    "deconvolution_2d": (lambda x, w, b: F.deconvolution_2d(x, w, b, 2, 1),
                         [IMG, DW, r(3, seed=2)], 3),
    "batch_normalization": (F.batch_normalization, [IMG] + C4, 3),
    "fixed_batch_normalization": (F.fixed_batch_normalization,
                                  [IMG] + C4 + [r(4, seed=7), r(4, seed=8, low=0.5)], 3),
    "instance_normalization": (F.instance_normalization, [IMG] + C4, 3),
    "average_pooling_2d": (lambda x: F.average_pooling_2d(x, 3, 2, 1), [IMG], 1),
    "max_pooling_2d": (lambda x: F.max_pooling_2d(x, 3, 2, 1), [IMG], 1),
    "adaptive_average_pooling_2d": (lambda x: F.adaptive_average_pooling_2d(x, (2, 3)), [IMG], 1),
    "resize_images": (lambda x: F.resize_images(x, (7, 11)), [IMG], 1),
    "upsample_nearest": (lambda x: F.upsample_nearest(x, 2), [IMG], 1),
}


def test_every_op_has_a_gpu_case():
    ops = {n for n, f in vars(F).items() if inspect.isfunction(f) and not n.startswith("_")}
    assert ops == set(OPS), f"add GPU cases for {sorted(ops - set(OPS))}"
    for name, (fn, arrays, n_diff) in OPS.items():      # and each case runs (here on NumPy)
        assert _run(fn, arrays, n_diff, numpy.asarray), name


def _run(fn, arrays, n_diff, to):
    """Outputs and input gradients (as NumPy) of sum_k <fn(...)_k, weights_k> on one device."""
    vs = [Variable(to(a)) for a in arrays[:n_diff]]
    ys = fn(*vs, *[to(a) for a in arrays[n_diff:]])
    ys = ys if isinstance(ys, tuple) else (ys,)
    loss = sum(F.sum(y * to(r(*y.shape, seed=9 + k).astype(y.dtype))) for k, y in enumerate(ys))
    loss.backward()
    return [backend.to_cpu(y.array) for y in ys] + [backend.to_cpu(v.grad.array) for v in vs]


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(OPS))
def test_cupy_matches_numpy(name):
    import cupy
    fn, arrays, n_diff = OPS[name]
    want = _run(fn, arrays, n_diff, numpy.asarray)
    got = _run(fn, arrays, n_diff, cupy.asarray)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        numpy.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * max(1, numpy.abs(w).max()))


def _gradcheck_cases():
    rng = numpy.random.RandomState(0)
    x, p = rng.standard_normal((2, 4, 6, 5)), augment.sample_params((2, 4, 6, 5), rng=rng)
    g, b = rng.standard_normal(4), rng.standard_normal(4)
    return {
        "convolution_2d": (lambda x, W: F.convolution_2d(x, W, None, 2, 1, groups=2),
                           (x, rng.standard_normal((6, 2, 3, 3)))),
        "deconvolution_2d": (lambda x, W: F.deconvolution_2d(x, W, None, 2, 1),
                             (x, rng.standard_normal((4, 3, 4, 4)))),
        "batch_normalization": (F.batch_normalization, (x, g, b)),
        "instance_normalization": (F.instance_normalization, (x, g, b)),
        "diff_augment": (lambda x: augment.diff_augment(x, params=p), (x,)),
        "offset": (lambda x: augment.offset(x, shifts=[[3, -2], [-6, 5]]) * x, (x,)),
    }


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(_gradcheck_cases()))
def test_float64_gradients_on_cupy(name):
    import cupy
    fn, arrays = _gradcheck_cases()[name]
    arrays = tuple(cupy.asarray(a) for a in arrays)
    check_backward(fn, arrays)
    check_double_backward(fn, arrays)


def _numpy_dropout(self, inputs):
    """Dropout drawing its mask from NumPy's generator on either device (same masks)."""
    x, = inputs
    if self.mask is None:
        keep = numpy.random.random_sample(x.shape) >= self.ratio
        mask = keep.astype(x.dtype) * x.dtype.type(1 / (1 - self.ratio))
        self.mask = backend.get_array_module(x).asarray(mask)
    return x * self.mask,


@pytest.mark.gpu
def test_pix2pix_on_the_gpu_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(noise.Dropout, "forward", _numpy_dropout)
    c = pix2pix.Config(in_channels=12, n_down=4, ngf=16, ndf=8)
    rng = numpy.random.RandomState(0)
    batches = []
    for _ in range(20):
        labels = rng.randint(0, 12, (2, 1, 32, 32))
        x = (labels == numpy.arange(12)[:, None, None]).astype(numpy.float32)
        batches.append((x, rng.uniform(-1, 1, (2, 3, 32, 32)).astype(numpy.float32)))

    def train(device):
        numpy.random.seed(0)
        models, optimizers = pix2pix.build(c)
        up = pix2pix.Updater(c, models, optimizers, device)
        return [up.update(b) for b in batches]
    cpu, gpu = train(-1), train(0)
    for it, (g, w) in enumerate(zip(gpu, cpu)):
        for k in w:
            # float32 sums in another order drift a little further each Adam step
            numpy.testing.assert_allclose(g[k], w[k], rtol=1e-4 if it == 0 else 2e-2,
                                          err_msg=f"{k} at iteration {it}")


@pytest.mark.gpu
def test_pix2pix_and_translate_commands_on_the_gpu(tmp_path, monkeypatch):
    """`cli.py pix2pix --gpu 0` end to end: samples, snapshots of CuPy arrays, resume, translate."""
    from click.testing import CliRunner
    from PIL import Image
    from minigan.cli import main
    monkeypatch.chdir(tmp_path)
    tiny = ["--size", "32", "--n-down", "3", "--ngf", "8", "--ndf", "4", "--log-interval", "2",
            "--snapshot-interval", "4", "--sample-interval", "4", "--workers", "0",
            "--labels", "color", "--out", "run", "--gpu", "0"]
    run = lambda *args: CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    first = run("pix2pix", *tiny, "--iterations", 4)
    assert first.exit_code == 0, first.output
    resumed = run("pix2pix", *tiny, "--iterations", 8, "--resume")
    assert resumed.exit_code == 0 and "resuming" in resumed.output, resumed.output
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"log.jsonl", "loss.png", "snapshot_iter_0000008.h5"} <= files
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == [
        "iter_0000004.png", "iter_0000008.png"]
    (tmp_path / "inputs").mkdir()
    Image.new("RGB", (64, 32), (90, 120, 200)).save(tmp_path / "inputs" / "0.jpg")
    out = run("translate", "--snapshot", "run/snapshot_iter_0000008.h5", "--input", "inputs",
              "--out", "translated", "--gpu", 0)
    assert out.exit_code == 0, out.output
    assert Image.open(tmp_path / "translated" / "0.png").size == (32, 32)
