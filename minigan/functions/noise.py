"""Dropout."""
from .. import backend
from ..core import FunctionNode, as_variable, config


class Dropout(FunctionNode):
    def __init__(self, ratio, mask=None):
        self.ratio, self.mask = ratio, mask

    def forward(self, inputs):
        x, = inputs
        if self.mask is None:
            xp = backend.get_array_module(x)
            keep = xp.random.random_sample(x.shape) >= self.ratio
            # inverted dropout: scale the kept units by 1 / (1 - p) so E[y] = x
            self.mask = keep.astype(x.dtype) * x.dtype.type(1 / (1 - self.ratio))
        return x * self.mask,

    def backward(self, indexes, grad_outputs):
        return grad_outputs[0] * self.mask,


def dropout(x, ratio=0.5, mask=None):
    """Zero each unit with probability `ratio` and scale the rest by 1 / (1 - ratio), in training
    (config.train); the identity otherwise. `mask` fixes the pattern (for tests)."""
    if not config.train or ratio == 0:
        return as_variable(x)
    if not 0 <= ratio < 1:
        raise ValueError(f"dropout: ratio must be in [0, 1), got {ratio}")
    return Dropout(ratio, mask).apply((x,))[0]
