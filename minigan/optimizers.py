"""Optimizers (SGD, MomentumSGD, Adam), gradient hooks, and an exponential moving average.

    opt = Adam(alpha=2e-4, beta1=0.5).setup(model)
    opt.add_hook(WeightDecay(1e-5))
    opt.update(lossfun, x)          # cleargrads, loss = lossfun(x), loss.backward(), update
    # or: model.cleargrads(); loss.backward(); opt.update()

An update runs the hooks (which may rewrite gradients), increments t, then applies the rule to
every parameter that has a gradient and is not frozen (Link.disable_update). Gradients are
treated as read-only: the engine may hand two leaves the same gradient array, or a broadcast
view, so hooks assign new gradients instead of modifying them in place.

Per-parameter state (Adam's m and v) lives in `opt.state[path][name]`, path as in
Link.namedparams ('/enc/c0/W'), on the parameter's device; `state_dict()` lists it with t.
"""
import math

import numpy

from . import backend, cuda
from .functions import jit

BLOCK = 1 << 16     # elements per block of a CPU update: the temporaries stay in the L2 cache


def _blocks(xp, *arrays):
    """Matching 1-D views of the arrays, block by block on the CPU, whole on the GPU.

    A sequence of small ufuncs over a cache-sized block reads each array from memory once,
    instead of once per ufunc (about 2x faster for Adam on large parameters)."""
    flat = [a.reshape(-1) for a in arrays]
    n = flat[0].size
    step = BLOCK if xp is numpy else max(n, 1)
    for i in range(0, n, step):
        yield [a[i:i + step] for a in flat]


def _move_to(array, like):
    """`array` on the device of `like` (a no-op when they already share it)."""
    return backend.to_device(array, backend.device_of(like))


class Optimizer:
    """Base: `setup(link)`, `add_hook(hook)`, `update()`; subclasses define update_one."""
    state_names = ()    # names of the per-parameter state arrays, zeros at the start

    def __init__(self):
        self.target = None
        self.t = 0          # number of updates done
        self.hooks = []
        self.state = {}

    def setup(self, link):
        """Optimize the parameters of `link`; creates the state. Returns self."""
        self.target = link
        self.state = {}
        for path, p in link.namedparams():
            self.state_of(path, p)
        return self

    def add_hook(self, hook):
        """Run hook(optimizer) before each update (WeightDecay, GradientClipping)."""
        self.hooks.append(hook)
        return self

    def state_of(self, path, param):
        """The state dict of one parameter, created as zeros or moved to its device if needed."""
        st = self.state.get(path)
        if st is None:
            xp = backend.get_array_module(param.array)
            st = self.state[path] = {k: xp.zeros(param.shape, param.dtype)
                                     for k in self.state_names}
        for k, a in st.items():     # the model moved after setup (to_gpu): follow it
            st[k] = _move_to(a, param.array)
        return st

    def updatable_params(self):
        """(path, parameter) pairs that this update changes: with a gradient and not frozen."""
        if self.target is None:
            raise RuntimeError(f"{type(self).__name__}: call setup(link) before update()")
        return [(path, p) for path, p in self.target.namedparams()
                if p.grad is not None and getattr(p, "update_enabled", True)]

    def update(self, lossfun=None, *args, **kwargs):
        """One step. With lossfun: clear the gradients, backprop lossfun(*args, **kwargs) first."""
        if lossfun is not None:
            self.target.cleargrads()
            loss = lossfun(*args, **kwargs)
            loss.backward()
            del loss        # free the graph before the update allocates
        for hook in self.hooks:
            hook(self)
        self.t += 1
        for path, p in self.updatable_params():
            g = p.grad.array
            if g.shape != p.shape or g.dtype != p.dtype:
                raise ValueError(f"{type(self).__name__}: gradient of {path} is {g.dtype}"
                                 f"{g.shape}, the parameter {p.dtype}{p.shape}")
            self.update_one(p.array, g, self.state_of(path, p))

    def update_one(self, param, grad, state):
        """Update the array `param` in place from `grad` and the state arrays."""
        raise NotImplementedError

    def state_dict(self):
        """{'t': t, '<param path>/<state name>': array} for every parameter of the target
        (the live arrays: the serializer copies into them)."""
        if self.target is None:
            raise RuntimeError(f"{type(self).__name__}: call setup(link) before saving or loading")
        out = {"t": self.t}
        for path, p in self.target.namedparams():
            for k, a in self.state_of(path, p).items():
                out[f"{path}/{k}"] = a
        return out


class SGD(Optimizer):
    """p <- p - lr * g."""

    def __init__(self, lr=0.01):
        super().__init__()
        self.lr = lr

    def update_one(self, param, grad, state):
        param -= self.lr * grad


class MomentumSGD(Optimizer):
    """v <- momentum * v - lr * g;  p <- p + v (Chainer's form; PyTorch's for a fixed lr)."""
    state_names = ("v",)

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__()
        self.lr, self.momentum = lr, momentum

    def update_one(self, param, grad, state):
        v = state["v"]
        v *= self.momentum
        v -= self.lr * grad
        param += v


class Adam(Optimizer):
    """Adam (Kingma and Ba 2015), AMSGrad (Reddi et al. 2018), decoupled weight decay
    (Loshchilov and Hutter 2019) as in Chainer's Adam.

        m <- beta1 m + (1 - beta1) g
        v <- beta2 v + (1 - beta2) g^2
        vhat <- max(vhat, v)               (amsgrad; else vhat = v)
        m_hat = m / (1 - beta1^t),  v_hat = vhat / (1 - beta2^t)
        p <- p - eta (alpha m_hat / (sqrt(v_hat) + eps) + weight_decay_rate p)

    This is the paper's form, the same as torch.optim.Adam (eps outside the bias correction).
    eta is a schedule multiplier (Chainer's); the decay is not scaled by alpha, so
    weight_decay_rate = r equals torch.optim.AdamW with weight_decay = r / lr.
    """

    def __init__(self, alpha=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, eta=1.0,
                 weight_decay_rate=0.0, amsgrad=False):
        super().__init__()
        self.alpha, self.beta1, self.beta2, self.eps = alpha, beta1, beta2, eps
        self.eta, self.weight_decay_rate, self.amsgrad = eta, weight_decay_rate, amsgrad
        self.state_names = ("m", "v", "vhat") if amsgrad else ("m", "v")
        self._buffers = {}      # one scratch block per dtype, reused across parameters

    def update_one(self, param, grad, state):
        xp = backend.get_array_module(param)
        if not (param.flags.c_contiguous and grad.flags.c_contiguous):
            if not param.flags.c_contiguous:   # reshape(-1) would copy and lose the update
                raise ValueError("Adam: parameter arrays must be C-contiguous")
            grad = xp.ascontiguousarray(grad)
        b1, b2 = self.beta1, self.beta2
        bc1, bc2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        # alpha m_hat / (sqrt(v_hat) + eps) = step * m / (sqrt(v) + eps_hat), folding the bias
        # corrections into two scalars: step = eta alpha sqrt(bc2) / bc1, eps_hat = eps sqrt(bc2)
        step = self.eta * self.alpha * math.sqrt(bc2) / bc1
        eps_hat = self.eps * math.sqrt(bc2)
        shrink = 1 - self.eta * self.weight_decay_rate
        if cuda.enabled(param):     # one pass over p, g, m, v (kernels/optimizer.cu)
            return _adam_kernel(param, grad, state, self.amsgrad, b1, b2, step, eps_hat, shrink)
        states = [state[k] for k in self.state_names]
        if jit.takes(param, grad, *states) and all(a.flags.c_contiguous for a in states) and \
                len({a.dtype for a in [param, grad] + states}) == 1:    # that pass, compiled
            flat = [a.reshape(-1) for a in [param, grad] + states]      # views: updated in place
            return jit.adam(*flat[:4], flat[4] if self.amsgrad else None, b1, b2, step, eps_hat,
                            shrink)
        for p, g, m, v, *vhat in _blocks(xp, param, grad, *states):
            buf = self._buffer(xp, p.dtype, p.size)
            xp.subtract(g, m, out=buf)      # m <- m + (1 - b1) (g - m)
            buf *= 1 - b1
            m += buf
            xp.multiply(g, g, out=buf)      # v <- v + (1 - b2) (g^2 - v)
            buf -= v
            buf *= 1 - b2
            v += buf
            if vhat:                        # vhat <- max(vhat, v)
                v = xp.maximum(vhat[0], v, out=vhat[0])
            xp.sqrt(v, out=buf)             # p <- p - step m / (sqrt(v) + eps_hat)
            buf += eps_hat
            xp.divide(m, buf, out=buf)
            buf *= step
            if shrink != 1:                 # decoupled decay: p <- p - eta rate p
                p *= shrink
            p -= buf

    def _buffer(self, xp, dtype, n):
        if xp is not numpy:         # the GPU's memory pool makes a fresh temporary cheap
            return xp.empty(n, dtype)
        buf = self._buffers.get(dtype)
        if buf is None:
            buf = self._buffers[dtype] = numpy.empty(BLOCK, dtype)
        return buf[:n]


def _adam_kernel(param, grad, state, amsgrad, b1, b2, step, eps_hat, shrink):
    """Adam.update_one by kernels/optimizer.cu: one thread per element, all arrays in one pass."""
    n, t = param.size, param.dtype.type
    if n:
        args = (param, grad, state["m"], state["v"], state["vhat"] if amsgrad else None,
                numpy.int64(n), t(1 - b1), t(1 - b2), t(step), t(eps_hat), t(shrink))
        cuda.launch("optimizer", "adam_update", param.dtype, cuda.grid_for(n),
                    cuda.threads_per_block, args)


class WeightDecay:
    """L2 regularization as a gradient hook: g <- g + rate * p (Chainer's WeightDecay)."""

    def __init__(self, rate):
        self.rate = rate

    def __call__(self, optimizer):
        for _, p in optimizer.updatable_params():
            p.grad = p.grad.array + self.rate * p.array


class GradientClipping:
    """Rescale all gradients together so their global L2 norm is at most `threshold`."""

    def __init__(self, threshold):
        self.threshold = threshold

    def __call__(self, optimizer):
        params = [p for _, p in optimizer.updatable_params()]
        if not params:
            return
        xp = backend.get_array_module(params[0].grad.array)
        # the squared norm stays on the device: one host sync for the whole model, not one per
        # parameter
        sq = sum(xp.vdot(g, g) for g in (p.grad.array.reshape(-1) for p in params))
        norm = math.sqrt(float(sq))
        if norm > self.threshold:       # g <- g * threshold / ||g||
            rate = self.threshold / norm
            for p in params:
                p.grad = p.grad.array * p.dtype.type(rate)


class ExponentialMovingAverage:
    """A shadow copy of a link whose parameters follow avg <- decay avg + (1 - decay) p
    (Polyak averaging; the generator average of ProGAN and StyleGAN). Persistent values
    (batch norm statistics) are copied as they are. Call update() after each optimizer step;
    use `ema.avg` (or `ema(x)`) to sample, and save `ema.avg` like any link."""

    def __init__(self, link, decay=0.999):
        self.link, self.decay = link, decay
        self.avg = link.copy()

    def __call__(self, *args, **kwargs):
        return self.avg(*args, **kwargs)

    def reset(self):
        """avg <- the link's current parameters and persistents (restart the average)."""
        self._follow(1.0)

    def update(self):
        """One step of the average (array arithmetic only, so no graph is recorded)."""
        self._follow(1 - self.decay)

    def _follow(self, rate):
        if self.avg.device != self.link.device:
            self.avg.to_device(self.link.device)
        for (path, a), (_, p) in zip(self.avg.namedparams(), self.link.namedparams()):
            if rate == 1.0:                 # a copy, exactly
                a.array[...] = p.array
                continue
            d = p.array - a.array           # avg <- avg + (1 - decay) (p - avg)
            d *= rate
            a.array += d
        for avg_link, link in zip(self.avg.links(), self.link.links()):
            for name in link._persistent:
                value = getattr(link, name)
                if backend.is_array(value):
                    getattr(avg_link, name)[...] = value
                else:
                    setattr(avg_link, name, value)
