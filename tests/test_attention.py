"""lucidrains' attention (links/attention.py) and the ops it needs (erf, GELU, softmax): gradient
checks to second order in float64 (D's attention sits under the gradient penalty); its forward
against the PyTorch twin is in test_lightweight.py (the whole G and D)."""
import math

import numpy
import pytest

import minigan.functions as F
from minigan.links.attention import ChannelNorm, ResidualAttention
from helpers import check_op, randn


def windows(t, k):
    """The k k shifted views (N, d, X, Y) of t zero-padded by k // 2, rows first: the reference
    the local products are checked against (and it against torch's unfold)."""
    X, Y = t.shape[2:]
    p = F.pad(t, ((0, 0), (0, 0), (k // 2,) * 2, (k // 2,) * 2))
    return [F.get_item(p, (slice(None), slice(None), slice(i, i + X), slice(j, j + Y)))
            for i in range(k) for j in range(k)]


def test_erf_equals_math_erf_and_its_gradients(passes):
    x = numpy.linspace(-5, 5, 41).reshape(1, 41)
    check_op(F.erf, [x], lambda a: numpy.vectorize(math.erf)(a))
    assert F.erf(x.astype(numpy.float32)).dtype == numpy.float32


def test_gelu_is_x_times_the_normal_cdf():
    x = randn(3, 7)
    phi = lambda a: 0.5 * (1 + numpy.vectorize(math.erf)(a / math.sqrt(2)))
    check_op(F.gelu, [x], lambda a: a * phi(a))


def test_softmax_sums_to_one_and_its_gradients():
    x = randn(2, 3, 4) * 5
    e = lambda a, axis: numpy.exp(a - a.max(axis, keepdims=True))
    check_op(lambda v: F.softmax(v, axis=1), [x], lambda a: e(a, 1) / e(a, 1).sum(1, keepdims=True))


def test_channel_norm_normalizes_each_pixel_over_channels():
    norm = ChannelNorm(3, dtype=numpy.float64)
    norm.g.array[...], norm.b.array[...] = [1.0, 2.0, 0.5], [0.0, 1.0, -1.0]
    x = randn(2, 3, 4, 5)

    def reference(a):
        m, v = a.mean(1, keepdims=True), a.var(1, keepdims=True)
        return (a - m) / numpy.sqrt(v + 1e-5) * norm.g.array.reshape(1, 3, 1, 1) + \
            norm.b.array.reshape(1, 3, 1, 1)
    check_op(norm, [x], reference, params=list(norm.params()))


def test_windows_are_torch_unfold_windows():
    torch = pytest.importorskip("torch")
    x = randn(2, 3, 4, 5)
    ours = numpy.stack([w.array for w in windows(x, 3)], axis=2).reshape(2, 27, 20)
    numpy.testing.assert_array_equal(ours, torch.nn.functional.unfold(
        torch.from_numpy(x), 3, padding=1).numpy())
    check_op(lambda v: tuple(windows(v, 3)), [x])     # its slices' gradients


@pytest.mark.parametrize("jit", ["1", "0"])
@pytest.mark.parametrize("k", [3, 1, 5])
def test_local_products_equal_the_windows_and_their_gradients(k, jit, monkeypatch):
    """local_dot, local_mix and local_scatter against sums over windows(): forward, and the
    first and second order gradients (each is the others' gradient), with the compiled loops
    (threaded over small blocks) and with the NumPy passes."""
    monkeypatch.setenv("MINIGAN_JIT", jit)
    monkeypatch.setattr("minigan.functions.im2col._PARALLEL_BYTES", 0)
    monkeypatch.setattr("minigan.functions.im2col._CHUNK_BYTES", 1)
    N, d, X, Y = 2, 3, 4, 5
    q, t, g = randn(N, d, X, Y), randn(N, d, X, Y, seed=1), randn(N, d, X, Y, seed=2)
    a = randn(N, k * k, X, Y, seed=3)
    win = lambda u: [w.array for w in windows(u, k)]
    dot = lambda q, t: numpy.stack([(q * w).sum(1) for w in win(t)], axis=1)
    mix = lambda a, t: sum(a[:, j:j + 1] * w for j, w in enumerate(win(t)))
    check_op(lambda q, t: F.local_dot(q, t, k), [q, t], dot)
    check_op(lambda a, t: F.local_mix(a, t, k), [a, t], mix)
    # scatter is mix's adjoint in t: <scatter(a, g), w> = <g, mix(a, w)>
    s = F.local_scatter(a, g, k).array
    assert numpy.isclose((s * t).sum(), (g * mix(a, t)).sum(), rtol=1e-12)
    check_op(lambda a, g: F.local_scatter(a, g, k), [a, g])


def test_local_products_refuse_wrong_shapes():
    x, a = numpy.zeros((2, 3, 4, 5)), numpy.zeros((2, 9, 4, 5))
    with pytest.raises(ValueError, match="must be odd"):
        F.local_dot(x, x, 2)
    with pytest.raises(ValueError, match="9 weights"):
        F.local_mix(x, x, 3)
    with pytest.raises(ValueError, match="the same channels"):
        F.local_dot(x, a, 3)
    with pytest.raises(ValueError, match="9 weights"):
        F.local_scatter(a[:, :4], x, 3)


@pytest.mark.parametrize("shape", [(2, 3, 3, 4), (1, 2, 1, 1)])
def test_residual_attention_gradients_first_and_second_order(shape):
    numpy.random.seed(0)
    block = ResidualAttention(shape[1], dim_head=2, heads=2, dtype=numpy.float64)
    for p in block.params():                        # away from the zero-ish start
        p.array[...] = numpy.random.randn(*p.shape) * 0.5
    check_op(block, [randn(*shape)], params=list(block.params()), eps=1e-5, atol=1e-4)
