"""Fully connected layer: y = x W^T + b."""
from ..core import FunctionNode, as_variable
from .array import reshape
from .math import matmul, sum


class LinearFunction(FunctionNode):
    def forward(self, inputs):
        self.retain_inputs((0, 1))
        x, W = inputs[:2]
        y = x @ W.T
        if len(inputs) == 3:
            y += inputs[2]
        return y,

    def backward(self, indexes, grad_outputs):
        x, W = self.get_retained_inputs()
        gy, = grad_outputs
        gx = matmul(gy, W) if 0 in indexes else None            # (N, out) (out, in)
        gW = matmul(gy.T, x) if 1 in indexes else None          # (out, N) (N, in)
        gb = sum(gy, axis=0) if len(self.inputs) == 3 else None
        return (gx, gW, gb)[:len(self.inputs)]


def linear(x, W, b=None, n_batch_axes=1):
    """x W^T + b; x is flattened to (N, in) after its first n_batch_axes axes."""
    x, W = as_variable(x), as_variable(W)
    batch = x.shape[:n_batch_axes]
    if x.ndim != n_batch_axes + 1:
        x = reshape(x, (-1, x.size // max(1, _prod(batch)) if x.size else 0))
    if x.shape[1] != W.shape[1]:
        raise ValueError(f"linear: input {x.shape} has {x.shape[1]} features but W {W.shape} "
                         f"expects {W.shape[1]}")
    y = LinearFunction().apply((x, W) if b is None else (x, W, b))[0]
    return y if len(batch) == 1 else reshape(y, batch + (W.shape[0],))


def _prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n
