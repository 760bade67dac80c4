"""DiffAugment on the CPU: each transform against a direct implementation of the reference code,
gradients to second order, the random parameters' distributions, and ADA's probability; the
offsets (lucidrains' circular rolls) against torch.roll, to second order, and their draws."""
import numpy
import pytest

import minigan
from minigan import Variable
from minigan import functions as F
from minigan.augment import (OFFSETS, AdaptiveProbability, DiffAugment, DiffAugmentGrad, Roll,
                             adjoint_twin, augment_twin, augment_types, diff_augment, offset,
                             parse_types, sample_offsets, sample_params)
from minigan.gradient_check import check_backward, check_double_backward


# -- the reference, transform by transform (data-efficient-gans' DiffAugment_pytorch.py) --------

def brightness(x, b):
    return x + b[:, None, None, None]


def saturation(x, s):
    m = x.mean(axis=1, keepdims=True)
    return (x - m) * s[:, None, None, None] + m


def contrast(x, c):
    m = x.mean(axis=(1, 2, 3), keepdims=True)
    return (x - m) * c[:, None, None, None] + m


def translation(x, ty, tx):
    """Gather from the image padded by one zero pixel, indices clamped into the padded image."""
    N, C, H, W = x.shape
    pad = numpy.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = numpy.empty_like(x)
    for n in range(N):
        for h in range(H):
            for w in range(W):
                out[n, :, h, w] = pad[n, :, min(max(h + ty[n] + 1, 0), H + 1),
                                      min(max(w + tx[n] + 1, 0), W + 1)]
    return out


def cutout(x, cy, cx, size):
    """Zero the square of `size` from the corner (cy, cx), its indices clamped into the image."""
    N, C, H, W = x.shape
    mask = numpy.ones((N, H, W))
    for n in range(N):
        for i in range(size[0]):
            for j in range(size[1]):
                mask[n, min(max(cy[n] + i, 0), H - 1), min(max(cx[n] + j, 0), W - 1)] = 0
    return x * mask[:, None]


def reference(x, p, policy):
    b, s, c = p.color.T
    ty, tx, cy, cx = p.ints.T
    if "color" in policy:
        x = contrast(saturation(brightness(x, b), s), c)
    if "translation" in policy:
        x = translation(x, ty, tx)
    if "cutout" in policy:
        x = cutout(x, cy, cx, p.cut)
    return x


POLICIES = ["color,translation,cutout", "color", "translation", "cutout", "translation,cutout"]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("shape,ratio", [((3, 3, 8, 8), 0.5), ((4, 3, 9, 7), 0.2),
                                         ((2, 1, 6, 5), 0.5)])
def test_each_policy_matches_the_reference(policy, shape, ratio):
    rng = numpy.random.RandomState(1)
    x = rng.standard_normal(shape)
    p = sample_params(shape, policy, ratio, rng=rng)
    numpy.testing.assert_allclose(augment_twin(x, p), reference(x, p, policy), atol=1e-12)
    y = diff_augment(x, policy, ratio, params=p)
    numpy.testing.assert_allclose(y.array, reference(x, p, policy), atol=1e-12)


def test_extreme_shifts_and_corners():
    x = numpy.random.RandomState(2).standard_normal((4, 3, 8, 8))
    p = sample_params(x.shape, "translation,cutout", 0.5, rng=numpy.random.RandomState(0))
    # the largest shifts (H / 8) and the extreme corners of the 4 x 4 cutout the reference can
    # draw (centre 0 and H, less 4 // 2), where its clamped indices still cover a clipped square
    p.ints[:] = [[1, -1, -2, -2], [-1, 1, 6, 6], [0, 0, 6, -2], [1, 1, 0, 0]]
    numpy.testing.assert_allclose(augment_twin(x, p), reference(x, p, "translation,cutout"))


def test_the_adjoint_is_the_transpose():
    # <A x, y> = <x, A^T y> for the linear part (no brightness)
    rng = numpy.random.RandomState(3)
    x, gy = rng.standard_normal((2, 2, 3, 7, 6))
    p = sample_params(x.shape, "color,translation,cutout", 0.5, rng=rng)
    lhs = (augment_twin(x, p, linear=True) * gy).sum()
    numpy.testing.assert_allclose(lhs, (x * adjoint_twin(gy, p)).sum(), rtol=1e-12)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("shape", [(2, 3, 6, 5), (1, 1, 4, 4)])
def test_gradients(policy, shape):
    rng = numpy.random.RandomState(4)
    p = sample_params(shape, policy, 0.5, rng=rng)
    x = rng.standard_normal(shape)
    fn = lambda v: diff_augment(v, policy, params=p)
    check_backward(fn, x)
    check_double_backward(fn, x)


def test_gradient_of_a_generator_through_the_augmentation():
    # the use in a GAN: D(augment(G(z))), here with G(z) = w * z
    rng = numpy.random.RandomState(5)
    z, w = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((2, 3, 5, 5))
    p = sample_params(z.shape, rng=rng)
    check_backward(lambda w: diff_augment(w * z, params=p) ** 2, w)


def test_nodes_chain_to_every_order():
    p = sample_params((1, 3, 4, 4), rng=numpy.random.RandomState(0))
    y = DiffAugment(p).apply((Variable(numpy.ones((1, 3, 4, 4))),))[0]
    assert isinstance(y.creator, DiffAugment)
    g = DiffAugmentGrad(p).apply((Variable(numpy.ones((1, 3, 4, 4))),))[0]
    assert isinstance(g.creator, DiffAugmentGrad)


# -- the random parameters ------------------------------------------------------------------------

def test_parameter_distributions():
    N = 20000
    p = sample_params((N, 3, 32, 30), "color,translation,cutout", 0.5,
                      rng=numpy.random.RandomState(6))
    b, s, c = p.color.T
    for v, lo, hi in ((b, -0.5, 0.5), (s, 0.0, 2.0), (c, 0.5, 1.5)):
        assert lo <= v.min() and v.max() < hi
        assert abs(v.mean() - (lo + hi) / 2) < 0.02 and abs(v.std() - (hi - lo) / 12 ** 0.5) < 0.02
    ty, tx, cy, cx = p.ints.T
    # shifts: every integer in [-round(H/8), round(H/8)] about equally often (H = 32: 4, W = 30: 4)
    for t, k in ((ty, 4), (tx, 4)):
        counts = numpy.bincount(t + k)
        assert len(counts) == 2 * k + 1 and counts.min() > 0.8 * N / (2 * k + 1)
    # cutout 16 x 15: centre uniform on [0, H] (even side) or [0, W - 1] (odd side)
    assert p.cut == (16, 15)
    for corner, side, n_centres in ((cy, 16, 33), (cx, 15, 30)):
        centres = corner + side // 2
        assert centres.min() == 0 and centres.max() == n_centres - 1
        assert numpy.bincount(centres).min() > 0.7 * N / n_centres


def test_projected_gan_ratio_and_untouched_images():
    p = sample_params((10000, 3, 64, 64), ratio=0.2, rng=numpy.random.RandomState(7), prob=0.3)
    assert p.cut == (13, 13)                                   # int(64 * 0.2 + 0.5)
    no_color = (p.color == [0.0, 1.0, 1.0]).all(axis=1)
    no_shift = (p.ints[:, :2] == 0).all(axis=1)
    no_cut = (p.ints[:, 2:] == 64).all(axis=1)
    assert abs(no_color.mean() - 0.7) < 0.02 and abs(no_cut.mean() - 0.7) < 0.02
    assert no_shift.mean() > 0.7                               # plus the draws of 0 shifts
    x = numpy.random.RandomState(0).standard_normal((3, 3, 64, 64))
    off = sample_params(x.shape, rng=numpy.random.RandomState(0), prob=0)   # all switched off
    numpy.testing.assert_allclose(augment_twin(x, off), x, atol=1e-12)


def test_sampling_is_reproducible_and_uses_numpys_global_generator():
    x = numpy.random.RandomState(0).standard_normal((2, 3, 8, 8))
    numpy.random.seed(3)
    a = diff_augment(x).array
    numpy.random.seed(3)
    b = diff_augment(x).array
    c = diff_augment(x, rng=numpy.random.default_rng(3)).array        # a Generator works too
    numpy.testing.assert_array_equal(a, b)
    assert c.shape == a.shape and not numpy.array_equal(a, c)


def test_policy_and_shape_errors():
    x = numpy.zeros((1, 3, 8, 8))
    with pytest.raises(ValueError, match="unknown transform"):
        diff_augment(x, "color,flip")
    with pytest.raises(ValueError, match="in the order color,translation,cutout"):
        diff_augment(x, "cutout,color")
    with pytest.raises(ValueError, match="in the order"):
        diff_augment(x, "color,color")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        diff_augment(numpy.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="params for 2 images"):
        diff_augment(x, params=sample_params((2, 3, 8, 8)))
    numpy.testing.assert_array_equal(diff_augment(x + 1, "").array, x + 1)


# -- lucidrains' offsets -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", OFFSETS)
@pytest.mark.parametrize("shape", [(5, 3, 8, 8), (4, 4, 7, 9), (3, 1, 1, 6)])
def test_offset_equals_torch_roll(kind, shape):
    torch = pytest.importorskip("torch")
    rng = numpy.random.RandomState(8)
    x = rng.standard_normal(shape)
    shifts = sample_offsets(shape, kind, rng=rng)
    shifts[0] = (-shape[2] - 3, 2 * shape[3] + 1)       # any integer rolls, as torch.roll's
    if kind == "offset_h":
        shifts[:, 0] = 0
    elif kind == "offset_v":
        shifts[:, 1] = 0
    # his rand_offset on an image (C, H, W): roll dim 2 by the horizontal, dim 1 by the vertical
    t = torch.tensor(x)
    expected = torch.stack([torch.roll(torch.roll(img, int(dx), 2), int(dy), 1)
                            for img, (dy, dx) in zip(t.unbind(0), shifts)]).numpy()
    numpy.testing.assert_array_equal(offset(x, kind, shifts=shifts).array, expected)


@pytest.mark.parametrize("kind", OFFSETS)
@pytest.mark.parametrize("shape", [(3, 2, 5, 4), (2, 4, 3, 3)])
def test_offset_gradients(kind, shape):
    rng = numpy.random.RandomState(9)
    shifts = sample_offsets(shape, kind, rng=rng)
    shifts[-1] += (1, -3)               # odd shifts too: the roll back must undo any roll
    fn = lambda v: offset(v, shifts=shifts) * v         # non-linear, so the second order counts
    x = rng.standard_normal(shape)
    check_backward(fn, x)
    check_double_backward(fn, x)
    check_double_backward(lambda v: offset(v, shifts=shifts), x)


def test_roll_back_is_the_inverse_and_chains_to_every_order():
    rng = numpy.random.RandomState(10)
    x, w = rng.standard_normal((2, 3, 2, 6, 5))
    shifts = numpy.array([[1, -2], [5, 4], [-7, 0]])
    y = Roll(shifts).apply((Variable(x),))[0]
    numpy.testing.assert_array_equal(Roll(-shifts).apply((y,))[0].array, x)
    v = Variable(x)
    g, = minigan.grad(F.sum(offset(v, shifts=shifts) * Variable(w)), [v], create_graph=True)
    assert isinstance(g.creator, Roll)                      # the gradient is another Roll node
    numpy.testing.assert_array_equal(g.array, Roll(-shifts).apply((Variable(w),))[0].array)


@pytest.mark.parametrize("size", [8, 7])
def test_offset_draws_as_lucidrains(size):
    # 2 k - S, k uniform in {0..S}, S = size (ratio 1): the even (S even) or odd values in [-S, S]
    N = 18000
    for kind, on in (("offset", (0, 1)), ("offset_h", (1,)), ("offset_v", (0,))):
        s = sample_offsets((N, 3, size, size), kind, rng=numpy.random.RandomState(11))
        for axis in (0, 1):
            if axis not in on:
                assert (s[:, axis] == 0).all()
                continue
            values, counts = numpy.unique(s[:, axis], return_counts=True)
            numpy.testing.assert_array_equal(values, numpy.arange(-size, size + 1, 2))
            assert counts.min() > 0.85 * N / (size + 1)
    half = sample_offsets((N, 3, 8, 8), "offset", ratio=0.5, rng=numpy.random.RandomState(0))
    numpy.testing.assert_array_equal(numpy.unique(half), [-4, -2, 0, 2, 4])


def test_offsets_draw_from_numpys_global_generator():
    x = numpy.random.RandomState(0).standard_normal((4, 3, 8, 8))
    numpy.random.seed(5)
    a = offset(x).array
    numpy.random.seed(5)
    numpy.testing.assert_array_equal(offset(x).array, a)
    numpy.random.seed(5)
    numpy.testing.assert_array_equal(a, offset(x, shifts=sample_offsets(x.shape)).array)


def test_augment_types_in_order():
    x = numpy.random.RandomState(1).standard_normal((4, 3, 8, 8))
    numpy.random.seed(2)
    got = augment_types(x, "offset_v,cutout,translation,offset").array
    numpy.random.seed(2)
    want = offset(x, "offset_v")
    want = diff_augment(want, "translation,cutout")     # a run: one DiffAugment, canonical order
    want = offset(want, "offset").array
    numpy.testing.assert_array_equal(got, want)
    assert augment_types(x, "") is x


def test_parse_types_accepts_lucidrains_names_and_refuses_others():
    assert parse_types("cutout, translation,offset_h") == ("cutout", "translation", "offset_h")
    assert parse_types("color,offset,offset_v") == ("color", "offset", "offset_v")
    with pytest.raises(ValueError, match="unknown aug type.s. flip,zoom; choose from color,"
                                         "translation,cutout,offset,offset_h,offset_v$"):
        parse_types("color,flip,zoom")
    with pytest.raises(ValueError, match="unknown kind 'roll'"):
        sample_offsets((1, 3, 4, 4), "roll")
    with pytest.raises(ValueError, match=r"shifts must be \(2, 2\)"):
        offset(numpy.zeros((2, 3, 4, 4)), shifts=[[0, 1]])


# -- ADA ------------------------------------------------------------------------------------------

def test_adaptive_probability_follows_the_overfitting_measure():
    ada = AdaptiveProbability(target=0.6, interval=2, speed=1000)
    overfit, fine = numpy.ones((10, 1, 4, 4)), -numpy.ones((10, 1, 4, 4))
    assert ada.update(overfit) == 0.0                  # not yet at the interval
    assert ada.update(overfit) == pytest.approx(0.02)  # + 20 images / 1000
    for _ in range(200):
        ada.update(overfit)
    assert ada.p == 1.0                                # clipped
    for _ in range(4):
        ada.update(fine)
    assert ada.p == pytest.approx(0.96)
