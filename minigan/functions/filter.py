"""blur: the fixed [1 2 1] x [1 2 1] / 16 low-pass filter, borders reflected."""
from .array import concat, get_item


def _part(x, axis, lo, hi):
    """x[..., lo:hi, ...] on axis."""
    index = [slice(None)] * x.ndim
    index[axis] = slice(lo, hi)
    return get_item(x, tuple(index))


def _smooth(x, axis):
    """y_i = (x_{i-1} + 2 x_i + x_{i+1}) / 4 along axis, reflected: x_{-1} = x_1, x_n = x_{n-2}."""
    n = x.shape[axis]
    if n < 2:
        raise ValueError(f"blur: a side of {n} pixel has nothing to reflect")
    p = concat([_part(x, axis, 1, 2), x, _part(x, axis, n - 2, n - 1)], axis)   # n + 2 long
    return (_part(p, axis, 0, n) + _part(p, axis, 2, n + 2) + 2 * _part(p, axis, 1, n + 1)) * 0.25


def blur(x):
    """(N, C, H, W) smoothed by [1 2 1]^T [1 2 1] / 16 per channel, 'same' size, reflected
    borders: kornia's filter2d(normalized=True), lucidrains' Blur (antialiasing around a
    resampling). Linear, so it differentiates to every order through slices and sums."""
    return _smooth(_smooth(x, 2), 3)
