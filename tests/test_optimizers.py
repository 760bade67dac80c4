"""Optimizers against hand-computed updates and torch.optim; hooks; the moving average."""
import numpy
import pytest

import minigan.functions as F
import minigan.links as L
from minigan import Parameter, optimizers as O

TORCH_REASON = "PyTorch reference tests need: pip install torch==2.13.0"


class Model(L.Chain):
    """Two parameters, one larger than an update block (so blocked updates are covered)."""

    def __init__(self, rng):
        super().__init__()
        self.lin = L.Linear(3, 2)
        self.big = Parameter(rng.standard_normal((300, 250)).astype(numpy.float32))


def _grads(rng, model):
    return [rng.standard_normal(p.shape).astype(p.dtype) for p in model.params()]


def _set_grads(model, grads):
    for p, g in zip(model.params(), grads):
        p.grad = g.copy()


def _run(opt, model, grads_per_step):
    for grads in grads_per_step:
        _set_grads(model, grads)
        opt.update()
    return [p.array.copy() for p in model.params()]


def _adam_reference(p, grads, alpha=1e-3, b1=0.9, b2=0.999, eps=1e-8, rate=0.0, amsgrad=False):
    """The paper's Adam in float64, step by step."""
    p = p.astype(numpy.float64)
    m = v = vhat = numpy.zeros_like(p)
    for t, g in enumerate(grads, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vhat = numpy.maximum(vhat, v) if amsgrad else v
        m_hat, v_hat = m / (1 - b1 ** t), vhat / (1 - b2 ** t)
        p = p - (alpha * m_hat / (numpy.sqrt(v_hat) + eps) + rate * p)
    return p


# -- rules against hand-computed updates --------------------------------------------------------

def test_sgd_and_momentum_sgd():
    p = Parameter(numpy.array([1.0, 2.0], numpy.float32))
    link = L.Link()
    link.p = p
    opt = O.SGD(lr=0.1).setup(link)
    p.grad = numpy.array([1.0, -2.0], numpy.float32)
    opt.update()
    numpy.testing.assert_allclose(p.array, [0.9, 2.2], rtol=1e-6)
    assert opt.t == 1

    p.array[...] = [1.0, 2.0]
    opt = O.MomentumSGD(lr=0.1, momentum=0.5).setup(link)
    for _ in range(2):      # v1 = -0.1 g, v2 = 0.5 v1 - 0.1 g = -0.15 g
        p.grad = numpy.array([1.0, -2.0], numpy.float32)
        opt.update()
    numpy.testing.assert_allclose(p.array, [1 - 0.25, 2 + 0.5], rtol=1e-6)


@pytest.mark.parametrize("kw", [{}, {"amsgrad": True, "beta2": 0.9}, {"weight_decay_rate": 0.01},
                                {"alpha": 0.01, "beta1": 0.5, "beta2": 0.99, "eps": 1e-3}])
def test_adam_matches_the_paper(kw):
    rng = numpy.random.RandomState(0)
    model = Model(rng)
    start = [p.array.copy() for p in model.params()]
    steps = [_grads(rng, model) for _ in range(4)]
    steps[2] = [g * 0.01 for g in steps[2]]     # small gradients: amsgrad keeps the old max
    got = _run(O.Adam(**kw).setup(model), model, steps)
    ref_kw = {"b1": kw.get("beta1", 0.9), "b2": kw.get("beta2", 0.999),
              "rate": kw.get("weight_decay_rate", 0.0), **{k: v for k, v in kw.items()
                                                          if k in ("alpha", "eps", "amsgrad")}}
    for i, p0 in enumerate(start):
        want = _adam_reference(p0, [s[i] for s in steps], **ref_kw)
        numpy.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-6)


# -- against PyTorch --------------------------------------------------------------------------

def _torch_run(torch_opt_cls, start, steps, **kw):
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    ps = [torch.nn.Parameter(torch.tensor(p)) for p in start]
    opt = torch_opt_cls(ps, **kw)
    for grads in steps:
        for p, g in zip(ps, grads):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in ps]


@pytest.mark.parametrize("case", ["adam", "amsgrad", "decoupled_decay", "l2_hook", "betas"])
def test_adam_matches_torch(case):
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    rng = numpy.random.RandomState(1)
    model = Model(rng)
    start = [p.array.copy() for p in model.params()]
    steps = [_grads(rng, model) for _ in range(5)]
    lr = 2e-3
    ours = O.Adam(alpha=lr)
    theirs = dict(cls=torch.optim.Adam, lr=lr)
    if case == "amsgrad":
        steps[3] = [g * 0.01 for g in steps[3]]
        ours = O.Adam(alpha=lr, beta2=0.9, amsgrad=True)    # v forgets fast: vhat differs
        theirs.update(amsgrad=True, betas=(0.9, 0.9))
    elif case == "decoupled_decay":   # Chainer's rate is not scaled by alpha; AdamW's is
        ours = O.Adam(alpha=lr, weight_decay_rate=1e-3)
        theirs.update(cls=torch.optim.AdamW, weight_decay=1e-3 / lr)
    elif case == "l2_hook":           # g + rate p before the rule: torch's Adam weight_decay
        ours.add_hook(O.WeightDecay(0.1))
        theirs["weight_decay"] = 0.1
    elif case == "betas":
        ours = O.Adam(alpha=lr, beta1=0.5, beta2=0.99, eps=1e-6)
        theirs.update(betas=(0.5, 0.99), eps=1e-6)
    got = _run(ours.setup(model), model, steps)
    want = _torch_run(theirs.pop("cls"), start, steps, **theirs)
    for a, b in zip(got, want):
        numpy.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# -- the update loop -----------------------------------------------------------------------------

def test_update_with_lossfun_clears_grads_and_backprops():
    rng = numpy.random.RandomState(0)
    lin = L.Linear(3, 1)
    x = rng.standard_normal((4, 3)).astype(numpy.float32)
    lin.W.grad = numpy.full(lin.W.shape, 100, numpy.float32)       # stale: must be cleared
    W0, b0 = lin.W.array.copy(), lin.b.array.copy()
    O.SGD(lr=0.5).setup(lin).update(lambda x: F.sum(lin(x)), x)
    numpy.testing.assert_allclose(lin.W.array, W0 - 0.5 * x.sum(0, keepdims=True), rtol=1e-6)
    numpy.testing.assert_allclose(lin.b.array, b0 - 0.5 * 4, rtol=1e-6)


def test_params_without_grad_or_frozen_are_skipped():
    net = L.Chain(a=L.Linear(2, 2), b=L.Linear(2, 2))
    opt = O.Adam().setup(net)
    before = [p.array.copy() for p in net.params()]
    net.a.W.grad = numpy.ones((2, 2), numpy.float32)
    net.b.W.grad = numpy.ones((2, 2), numpy.float32)
    net.b.disable_update()
    opt.update()
    changed = [not numpy.array_equal(b, p.array) for b, p in zip(before, net.params())]
    assert changed == [True, False, False, False]
    net.b.enable_update()
    opt.update()
    assert not numpy.array_equal(before[2], net.b.W.array)


def test_hooks_run_before_the_rule_and_t_counts():
    seen = []
    link = L.Linear(2, 2)
    opt = O.SGD(lr=1.0).setup(link)
    opt.add_hook(lambda o: seen.append((o.t, float(link.W.array.sum()))))
    link.W.grad = numpy.ones((2, 2), numpy.float32)
    w_sum = float(link.W.array.sum())
    opt.update()
    opt.update()
    assert [t for t, _ in seen] == [0, 1] and seen[0][1] == w_sum and opt.t == 2


def test_hooks_do_not_corrupt_shared_gradients():
    # d(sum(a + b))/da and /db are one and the same array in the engine
    link = L.Link()
    link.a = Parameter(numpy.full(3, 1.0, numpy.float32))
    link.b = Parameter(numpy.full(3, 2.0, numpy.float32))
    F.sum(link.a + link.b).backward()
    opt = O.SGD(lr=1.0).setup(link).add_hook(O.WeightDecay(0.5))
    opt.update()
    numpy.testing.assert_allclose(link.a.array, 1 - (1 + 0.5 * 1))
    numpy.testing.assert_allclose(link.b.array, 2 - (1 + 0.5 * 2))


def test_gradient_clipping_global_norm():
    link = L.Link()
    link.a = Parameter(numpy.zeros(2, numpy.float32))
    link.b = Parameter(numpy.zeros(1, numpy.float32))
    opt = O.SGD(lr=1.0).setup(link).add_hook(O.GradientClipping(2.5))
    link.a.grad = numpy.array([3.0, 0.0], numpy.float32)
    link.b.grad = numpy.array([4.0], numpy.float32)      # global norm 5 -> scaled by 1/2
    opt.update()
    numpy.testing.assert_allclose(link.a.array, [-1.5, 0])
    numpy.testing.assert_allclose(link.b.array, [-2.0])
    link.a.grad = numpy.array([1.0, 0.0], numpy.float32)   # norm 1: untouched
    link.b.grad = numpy.zeros(1, numpy.float32)
    opt.update()
    numpy.testing.assert_allclose(link.a.array, [-2.5, 0])


def test_gradient_clipping_matches_torch():
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    rng = numpy.random.RandomState(0)
    grads = [rng.standard_normal(s).astype(numpy.float32) for s in [(4, 3), (3,)]]
    lin = L.Linear(3, 4)
    for p, g in zip(lin.params(), grads):
        p.grad = g
    O.GradientClipping(1.0)(O.SGD().setup(lin))
    tps = [torch.nn.Parameter(torch.zeros(g.shape)) for g in grads]
    for p, g in zip(tps, grads):
        p.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_norm_(tps, 1.0)
    for p, t in zip(lin.params(), tps):
        numpy.testing.assert_allclose(p.grad.array, t.grad.numpy(), rtol=1e-5)


def test_state_layout_and_setup_errors():
    net = L.Chain(enc=L.Linear(2, 3))
    opt = O.Adam(amsgrad=True).setup(net)
    state = opt.state_dict()
    assert list(state) == ["t", "/enc/W/m", "/enc/W/v", "/enc/W/vhat", "/enc/b/m", "/enc/b/v",
                           "/enc/b/vhat"]
    assert state["/enc/W/m"].shape == (3, 2) and state["/enc/W/m"].dtype == numpy.float32
    with pytest.raises(RuntimeError, match="setup"):
        O.Adam().update()


# -- exponential moving average -------------------------------------------------------------

def test_exponential_moving_average():
    gen = L.Sequential(L.Linear(2, 2), L.BatchNormalization(2))
    lin, bn = gen[0], gen[1]
    start = lin.W.array.copy()
    ema = O.ExponentialMovingAverage(gen, decay=0.9)
    assert ema.avg[0].W is not lin.W
    want = start
    for k in range(3):
        lin.W.array[...] = k + 1.0
        ema.update()
        want = 0.9 * want + 0.1 * (k + 1.0)     # avg <- decay avg + (1 - decay) p
    numpy.testing.assert_allclose(ema.avg[0].W.array, want, rtol=1e-6)
    numpy.testing.assert_array_equal(lin.W.array, 3.0)      # the source is untouched
    bn.avg_mean[...] = [3, 4]                   # persistents are copied as they are
    bn.N = 7
    ema.update()
    assert ema.avg[1].avg_mean.tolist() == [3, 4] and ema.avg[1].N == 7
    assert bn.avg_mean is not ema.avg[1].avg_mean
    assert ema(numpy.ones((4, 2), numpy.float32)).shape == (4, 2)


def test_adam_accepts_read_only_broadcast_gradients():
    # d sum(p)/dp arrives as a read-only stride-0 view of one number
    link = L.Link()
    link.p = Parameter(numpy.zeros((3, 4), numpy.float32))
    F.sum(link.p).backward()
    assert not link.p.grad.array.flags.writeable
    O.Adam(alpha=0.1).setup(link).update()
    numpy.testing.assert_allclose(link.p.array, -0.1, rtol=1e-5)   # first step: -alpha sign(g)


# -- Adam's compiled update (minigan[jit]) against the NumPy passes -------------------------------

@pytest.mark.skipif(O.jit.numba is None, reason="numba is not installed (minigan[jit])")
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("kw", [{}, dict(amsgrad=True), dict(weight_decay_rate=1e-3, eta=0.5)])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # the NaN and inf gradients below
def test_jit_adam_equals_numpy_passes(dtype, kw, threads, monkeypatch):
    """The one-pass loop gives the NumPy passes' bits for parameters, m, v and vhat, over steps
    with NaN and inf gradients, threaded or not, on sizes off the block length."""
    monkeypatch.setattr("minigan.functions.im2col._threads", lambda: threads)
    monkeypatch.setattr("minigan.functions.im2col._PARALLEL_BYTES", 0)

    def run(flag):
        monkeypatch.setenv("MINIGAN_JIT", flag)
        rng = numpy.random.RandomState(0)
        link = L.Link()
        link.a = Parameter(rng.standard_normal((70001,)).astype(dtype))
        link.b = Parameter(rng.standard_normal((3, 5)).astype(dtype))
        opt = O.Adam(alpha=1e-2, beta1=0.5, eps=1e-6, **kw).setup(link)
        for t in range(4):
            ga = rng.standard_normal(link.a.shape).astype(dtype)
            if t == 2:
                ga[:4] = [numpy.nan, numpy.inf, -numpy.inf, 0.0]
            link.a.grad, link.b.grad = ga, rng.standard_normal((3, 5)).astype(dtype)[:, ::-1]
            opt.update()
        return [p.array for p in link.params()] + list(opt.state_dict().values())[1:]

    jit, plain = run("1"), run("0")
    assert len(jit) == len(plain) == 2 + 2 * len(O.Adam(**kw).state_names)
    for a, b in zip(jit, plain):
        assert a.dtype == b.dtype == dtype
        numpy.testing.assert_array_equal(a, b)
