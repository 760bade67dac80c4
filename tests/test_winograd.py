"""winograd.py: the F(4, 3) matrices, the 3 x 3 convolutions through them close to im2col's in
float32 and taken only where meant (equal in float64, to second order: test_convolution.py)."""
import numpy
import pytest

import minigan.functions as F
from minigan import Variable
from minigan.functions import jit
from minigan.functions import winograd as wg

needs_numba = pytest.mark.skipif(jit.numba is None, reason="numba (minigan[jit]) is absent")


@pytest.mark.parametrize("r", [2, 3, 4])
def test_matrices_compute_a_correlation_exactly(r):
    """y = A^T [(G g) . (B^T d)] is the m-output correlation of d with g (float64)."""
    AT, G, BT = wg.matrices(r)
    m = AT.shape[0]
    assert AT.shape == (m, wg.ALPHA) and G.shape == (wg.ALPHA, r) and m == wg.ALPHA - r + 1
    rng = numpy.random.default_rng(0)
    for _ in range(5):
        d, g = rng.standard_normal(wg.ALPHA), rng.standard_normal(r)
        want = [sum(g[k] * d[i + k] for k in range(r)) for i in range(m)]
        numpy.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), want, rtol=1e-13, atol=1e-13)


@needs_numba
def test_winograd_float32_is_close_at_a_real_size(monkeypatch):
    """Lightweight GAN's 32 x 32 layer, 128 channels: within 1e-4 of the scale of im2col's."""
    monkeypatch.setenv("MINIGAN_JIT", "1")
    rng = numpy.random.default_rng(2)
    x = rng.standard_normal((8, 128, 32, 32)).astype(numpy.float32)
    W = (rng.standard_normal((128, 128, 3, 3)) / 34).astype(numpy.float32)
    gy = rng.standard_normal((8, 128, 32, 32)).astype(numpy.float32)
    assert wg.takes(x.shape, 128, (3, 3), (1, 1), (1, 1), (1, 1), 1, x)

    def run():
        xv, Wv = Variable(x), Variable(W)
        y = F.convolution_2d(xv, Wv, None, 1, 1)
        y.grad = gy
        y.backward()
        return y.array, xv.grad.array, Wv.grad.array
    got = run()
    monkeypatch.setenv("MINIGAN_WINOGRAD", "0")
    for g, w in zip(got, run()):
        assert numpy.abs(g - w).max() <= 1e-4 * numpy.abs(w).max()


S1, P1 = (1, 1), (1, 1)
INTEL_CASES = [         # measured on the Intel Xeon: 16 x 16 per sample, 1024 over the batch
    ((8, 512, 16, 16), 1024, (3, 3), S1, P1, S1, 1, True),
    ((4, 64, 16, 16), 64, (3, 3), S1, P1, S1, 1, True),
    ((2, 128, 16, 16), 128, (3, 3), S1, P1, S1, 1, False),      # 512 pixels in all
    ((1, 64, 32, 32), 64, (3, 3), S1, P1, S1, 1, True),
    ((16, 512, 8, 8), 512, (3, 3), S1, P1, S1, 1, False),       # small per sample
    ((8, 32, 32, 32), 64, (3, 3), S1, P1, S1, 1, False),        # few channels
    ((8, 128, 34, 34), 128, (3, 3), (2, 2), P1, S1, 1, False),
]


@pytest.mark.parametrize("kind, shape, co, ksize, s, p, d, groups, want", [
    ("intel-avx512", *case) for case in INTEL_CASES] + [("default", *case) for case in [
    ((8, 128, 32, 32), 128, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),     # Zen 4: 8192 pixels
    ((1, 256, 128, 128), 64, (3, 3), (1, 1), (1, 1), (1, 1), 1, False),   # 64: 65536 wanted
    ((4, 64, 128, 128), 64, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),
    ((4, 128, 32, 32), 128, (3, 3), (1, 1), (1, 1), (1, 1), 1, False),    # 4096 pixels in all
    ((64, 128, 16, 16), 128, (3, 3), (1, 1), (1, 1), (1, 1), 1, False),   # small per sample
    ((8, 32, 128, 128), 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, False),    # few channels
    ((8, 128, 32, 32), 128, (5, 5), (1, 1), (2, 2), (1, 1), 1, False),
    ((8, 128, 66, 66), 128, (3, 3), (2, 2), (1, 1), (1, 1), 1, False),
    ((8, 128, 32, 32), 128, (3, 3), (1, 1), (2, 2), (2, 2), 1, False),
    ((8, 128, 32, 32), 128, (3, 3), (1, 1), (1, 1), (1, 1), 2, False),
]])
def test_winograd_takes_only_its_geometry(kind, shape, co, ksize, s, p, d, groups, want,
                                          monkeypatch):
    """The thresholds of each CPU kind (MINIGAN_CPU_KIND pins one), and only 3 x 3, stride 1,
    dilation 1, one group, float32/64 with the compiled loops on."""
    monkeypatch.setenv("MINIGAN_CPU_KIND", kind)
    monkeypatch.setattr(wg.jit, "enabled", lambda: True)
    a = numpy.zeros(shape[:2] + (1, 1), numpy.float32)
    assert wg.takes(shape, co, ksize, s, p, d, groups, a) == want
    assert not wg.takes(shape, co, ksize, s, p, d, groups, a.astype(numpy.float16))
    monkeypatch.setenv("MINIGAN_WINOGRAD", "0")
    assert not wg.takes(shape, co, ksize, s, p, d, groups, a)
    monkeypatch.setattr(wg.jit, "enabled", lambda: False)
    monkeypatch.delenv("MINIGAN_WINOGRAD")
    assert not wg.takes(shape, co, ksize, s, p, d, groups, a)


def test_cpu_kind_is_detected_or_pinned(monkeypatch):
    from minigan.functions import cpu
    assert cpu.kind() in cpu.KINDS
    intel = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 avx512f amx_tile\n"
    assert cpu.kind_of(intel) == "intel-avx512"
    assert cpu.kind_of(intel.replace(" avx512f", "")) == "default"           # a laptop
    assert cpu.kind_of(intel.replace("GenuineIntel", "AuthenticAMD")) == "default"   # Zen 4
    assert cpu.kind_of("") == "default"
    monkeypatch.setenv("MINIGAN_CPU_KIND", "default")
    assert cpu.kind() == "default"
    monkeypatch.setenv("MINIGAN_CPU_KIND", "pentium")
    with pytest.raises(ValueError, match="expected one of default, intel-avx512"):
        cpu.kind()
