"""lucidrains' attention (links/attention.py) and the ops it needs (erf, GELU, softmax): gradient
checks to second order in float64 (D's attention sits under the gradient penalty); its forward
against the PyTorch twin is in test_lightweight.py (the whole G and D)."""
import math

import numpy
import pytest

import minigan.functions as F
from minigan.links.attention import ChannelNorm, ResidualAttention, windows
from helpers import check_op, randn


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


@pytest.mark.parametrize("shape", [(2, 3, 3, 4), (1, 2, 1, 1)])
def test_residual_attention_gradients_first_and_second_order(shape):
    numpy.random.seed(0)
    block = ResidualAttention(shape[1], dim_head=2, heads=2, dtype=numpy.float64)
    for p in block.params():                        # away from the zero-ish start
        p.array[...] = numpy.random.randn(*p.shape) * 0.5
    check_op(block, [randn(*shape)], params=list(block.params()), eps=1e-5, atol=1e-4)
