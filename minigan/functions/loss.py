"""Losses, each averaged over all elements (or over the batch for softmax cross entropy)."""
from .. import backend
from ..core import as_array, as_variable
from .activation import softplus
from .array import get_item
from .math import _operands, abs, exp, logsumexp, mean, square, sum


def _same_shape(name, x, t):
    if as_array(x).shape != as_array(t).shape:
        raise ValueError(f"{name}: x {as_array(x).shape} and t {as_array(t).shape} differ in shape")
    return _operands(name, x, t)


def mean_absolute_error(x, t):
    """mean |x - t| (the L1 loss)."""
    x, t = _same_shape("mean_absolute_error", x, t)
    return mean(abs(x - t))


def mean_squared_error(x, t):
    """mean (x - t)^2."""
    x, t = _same_shape("mean_squared_error", x, t)
    return mean(square(x - t))


def sigmoid_cross_entropy(x, t):
    """mean of -t log sigma(x) - (1 - t) log(1 - sigma(x)) = softplus(x) - t x, for logits x and
    targets t in [0, 1]."""
    x, t = _same_shape("sigmoid_cross_entropy", x, t)
    return mean(softplus(x) - x * t)


def log_softmax(x, axis=1):
    """x - log sum exp x along axis."""
    return x - logsumexp(x, axis, keepdims=True)


def softmax(x, axis=1):
    """e^x / sum e^x along axis (through log_softmax: stable for large x)."""
    return exp(log_softmax(x, axis))


def softmax_cross_entropy(x, t):
    """mean over the batch of -log softmax(x)[t], for logits x (N, K) and class labels t (N,)."""
    x, t = as_variable(x), as_array(t)
    if x.ndim != 2 or t.shape != (x.shape[0],):
        raise ValueError(f"softmax_cross_entropy: x must be (N, K) and t (N,), got x {x.shape} "
                         f"and t {t.shape}")
    xp = backend.get_array_module(x.array)
    picked = get_item(log_softmax(x), (xp.arange(len(t)), t))
    return -sum(picked) * (1.0 / len(t))
