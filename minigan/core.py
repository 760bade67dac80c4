"""Define-by-run autograd: Variable, FunctionNode, backward() and grad(), and the global config.

The graph is made of two kinds of nodes. A FunctionNode remembers the VariableNodes of its inputs
and (weakly) of its outputs; a VariableNode remembers the FunctionNode that created it. A Variable
is the user's handle: an array plus its VariableNode. The graph holds no arrays except the ones a
function asked to keep (`retain_inputs` / `retain_outputs`), so intermediate results are freed as
soon as nothing needs them.

A FunctionNode's backward is written with differentiable ops on Variables, so that with
`create_graph=True` the gradient is itself a graph and can be differentiated again (WGAN-GP).
"""
import contextlib
import copy
import heapq
import itertools
import sys
import threading
import weakref

import numpy

from . import backend


class _Config(threading.local):
    """Global switches, one copy per thread; the class attributes are the defaults."""
    train = True            # dropout and batch statistics on
    enable_backprop = True  # record the graph


config = _Config()


@contextlib.contextmanager
def using_config(name, value):
    """Set config.<name> to value inside a `with` block."""
    if not hasattr(_Config, name):
        raise AttributeError(f"unknown config option {name!r}")
    old = getattr(config, name)
    setattr(config, name, value)
    try:
        yield
    finally:
        setattr(config, name, old)


def no_backprop_mode():
    """Inside this block ops record no graph (inference, EMA updates, sampling)."""
    return using_config("enable_backprop", False)


def force_backprop_mode():
    """Record the graph even inside no_backprop_mode."""
    return using_config("enable_backprop", True)


class VariableNode:
    """A variable's place in the graph: its creator and rank, but not its array."""
    __slots__ = ("creator", "rank", "requires_grad", "shape", "dtype", "_variable", "__weakref__")

    def __init__(self, variable, requires_grad):
        self.creator = None
        self.rank = 0
        self.requires_grad = requires_grad
        self.shape = variable.array.shape
        self.dtype = variable.array.dtype
        self._variable = weakref.ref(variable)

    def get_variable(self, array):
        """The Variable of this node, rebuilt around `array` if the user's one is gone."""
        var = self._variable()
        if var is None:
            var = Variable.__new__(Variable)
            var.array, var._grad, var.name, var.node = array, None, None, self
            self._variable = weakref.ref(var)
        return var


class Variable:
    """An array that remembers how it was computed."""
    __array_priority__ = 200   # numpy defers `ndarray + Variable` to Variable.__radd__
    __array_ufunc__ = None

    def __init__(self, array, requires_grad=True, name=None):
        if isinstance(array, numpy.generic):
            array = numpy.asarray(array)
        if not (isinstance(array, numpy.ndarray) or backend.is_cupy_array(array)):
            raise TypeError(f"Variable needs a numpy or cupy array, got {type(array).__name__}")
        self.array = array
        self._grad = None
        self.name = name
        self.node = VariableNode(self, requires_grad)

    # -- data and gradient -------------------------------------------------------------------
    shape = property(lambda self: self.array.shape)
    ndim = property(lambda self: self.array.ndim)
    size = property(lambda self: self.array.size)
    dtype = property(lambda self: self.array.dtype)
    creator = property(lambda self: self.node.creator)
    requires_grad = property(lambda self: self.node.requires_grad)

    @property
    def grad(self):
        """The gradient as a Variable, or None."""
        return self._grad

    @grad.setter
    def grad(self, g):
        if g is not None and not isinstance(g, Variable):
            g = Variable(g, requires_grad=False)
        self._grad = g

    def __deepcopy__(self, memo):
        """A copy of the array and gradient as a new leaf (the graph is not copied)."""
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            if k != "node":
                new.__dict__[k] = copy.deepcopy(v, memo)
        new.node = VariableNode(new, self.node.requires_grad)
        return new

    def cleargrad(self):
        self._grad = None

    def __len__(self):
        return len(self.array)

    def __repr__(self):
        name = f" {self.name!r}" if self.name else ""
        return f"Variable{name}({self.array!r})"

    def item(self):
        """The value of a one-element Variable as a Python number."""
        return self.array.item()

    # -- graph -------------------------------------------------------------------------------
    def backward(self, create_graph=False, retain_grad=False, inputs=None):
        """Accumulate d(self)/d(leaf) into the .grad of every leaf that requires it.

        The starting gradient is self.grad if set, else 1 (self must then have one element).
        With retain_grad, intermediate variables that are still alive keep their .grad too.
        With inputs (e.g. one network's parameters), only those get a .grad, and no gradient
        is computed that cannot reach them (a GAN's generator step through the discriminator).
        """
        if self._grad is not None:
            gy = self._grad
        elif self.size == 1:
            gy = Variable(backend.get_array_module(self.array).ones_like(self.array),
                          requires_grad=False)
        else:
            raise ValueError(f"backward() of a Variable of shape {self.shape} needs its .grad set "
                             "to the starting gradient (only one-element outputs default to 1)")
        if inputs is None:
            _backprop([self.node], [gy], create_graph, targets=None, retain_grad=retain_grad)
            return
        inputs = list(inputs)
        found = _backprop([self.node], [gy], create_graph, [v.node for v in inputs])
        with using_config("enable_backprop", create_graph):
            for v in inputs:
                g = found.get(v.node)
                if g is not None:
                    v._grad = g if v._grad is None else v._grad + g

    def unchain_backward(self):
        """Cut every creator link above this variable, freeing the graph that produced it."""
        stack = [self.node]
        while stack:
            node = stack.pop()
            f, node.creator = node.creator, None
            if f is not None and f.inputs is not None:
                stack.extend(f.inputs)
                f.inputs = None

    # -- operators (the ops live in minigan.functions) ---------------------------------------
    def __add__(self, other): return F.add(self, other)
    def __radd__(self, other): return F.add(other, self)
    def __sub__(self, other): return F.sub(self, other)
    def __rsub__(self, other): return F.sub(other, self)
    def __mul__(self, other): return F.mul(self, other)
    def __rmul__(self, other): return F.mul(other, self)
    def __truediv__(self, other): return F.div(self, other)
    def __rtruediv__(self, other): return F.div(other, self)
    def __pow__(self, other): return F.pow(self, other)
    def __rpow__(self, other): return F.pow(other, self)
    def __matmul__(self, other): return F.matmul(self, other)
    def __rmatmul__(self, other): return F.matmul(other, self)
    def __neg__(self): return F.neg(self)
    def __abs__(self): return F.abs(self)
    def __getitem__(self, index): return F.get_item(self, index)

    T = property(lambda self: F.transpose(self))

    def reshape(self, *shape):
        return F.reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes):
        return F.transpose(self, axes[0] if len(axes) == 1 else (axes or None))

    def sum(self, axis=None, keepdims=False):
        return F.sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return F.mean(self, axis, keepdims)


class Parameter(Variable):
    """A learnable array held by a Link; it always requires a gradient."""

    def __init__(self, array, name=None):
        super().__init__(array, requires_grad=True, name=name)

    def __repr__(self):
        return f"Parameter({self.name or ''}{list(self.shape)}, {self.dtype})"


def as_variable(x):
    """x if it is a Variable, else a constant Variable (no gradient) wrapping the array x."""
    if isinstance(x, Variable):
        return x
    return Variable(x, requires_grad=False)


def as_array(x):
    """The array inside a Variable, or x itself."""
    return x.array if isinstance(x, Variable) else x


class FunctionNode:
    """One differentiable op: `forward` on arrays, `backward` on Variables with differentiable ops.

    `backward(indexes, grad_outputs)` receives the indexes of the inputs whose gradient is needed
    and one gradient Variable per output (None for an output nothing depends on). It returns one
    gradient per input (None allowed where not needed), or one per entry of `indexes`.
    """
    inputs = None       # VariableNodes of the inputs, while in a graph
    outputs = None      # weak references to the output VariableNodes
    rank = 0
    _retain_in = _retain_out = ()
    _kept_in = _kept_out = None

    @property
    def label(self):
        return type(self).__name__

    def forward(self, inputs):
        raise NotImplementedError

    def backward(self, indexes, grad_outputs):
        raise NotImplementedError(f"{self.label} has no backward")

    def retain_inputs(self, indexes):
        """Keep these inputs' arrays for backward (call inside forward)."""
        self._retain_in = tuple(indexes)

    def retain_outputs(self, indexes):
        """Keep these outputs' arrays for backward (call inside forward)."""
        self._retain_out = tuple(indexes)

    def get_retained_inputs(self):
        """The retained inputs as Variables that stay connected to the graph."""
        return tuple(self.inputs[i].get_variable(a) for i, a in zip(self._retain_in, self._kept_in))

    def get_retained_outputs(self):
        """The retained outputs as Variables whose creator is this function."""
        out = []
        for i, a in zip(self._retain_out, self._kept_out):
            node = self.outputs[i]()
            out.append(Variable(a, requires_grad=False) if node is None else node.get_variable(a))
        return tuple(out)

    def apply(self, inputs):
        """Run forward on the inputs' arrays and, if any input needs a gradient, record the graph."""
        in_vars = tuple(as_variable(x) for x in inputs)
        xs = tuple(v.array for v in in_vars)
        _check_one_device(self, xs)
        ys = self.forward(xs)
        if not isinstance(ys, tuple):
            raise TypeError(f"{self.label}.forward must return a tuple of arrays")
        xp = backend.get_array_module(*xs) if xs else numpy
        record = config.enable_backprop and any([v.node.requires_grad for v in in_vars])
        outputs = tuple(Variable(xp.asarray(y), requires_grad=record) for y in ys)
        if record:
            self.inputs = tuple(v.node for v in in_vars)
            self.rank = max(n.rank for n in self.inputs)
            for y in outputs:
                y.node.creator, y.node.rank = self, self.rank + 1
            self.outputs = tuple(weakref.ref(y.node) for y in outputs)
            self._kept_in = tuple(xs[i] for i in self._retain_in)
            self._kept_out = tuple(outputs[i].array for i in self._retain_out)
        return outputs


def _check_one_device(f, xs):
    if "cupy" not in sys.modules:       # no CuPy array can exist: nothing to mix
        return
    kinds = {backend.array_kind(x) for x in xs}
    if len(kinds) > 1:
        types = ", ".join(f"{backend.array_kind(x)}{tuple(x.shape)}" for x in xs)
        raise TypeError(f"{f.label}: inputs mix NumPy and CuPy arrays ({types}); move them to one "
                        "device first (to_gpu / to_cpu)")


def _add_grad(grads, node, g):
    """Sum gradients arriving at one node before its creator runs."""
    old = grads.get(node)
    grads[node] = g if old is None else old + g


def _reaching(roots, targets):
    """The nodes between roots and targets: those from which some target is an ancestor."""
    funcs, stack, seen = [], [n.creator for n in roots], set()
    while stack:
        f = stack.pop()
        if f is None or f in seen or f.inputs is None:
            continue
        seen.add(f)
        funcs.append(f)
        stack.extend(n.creator for n in f.inputs)
    reach = set(targets)
    for f in sorted(funcs, key=lambda f: f.rank):    # inputs' creators have lower ranks
        if any(n in reach for n in f.inputs):
            reach.update(r() for r in f.outputs if r() is not None)
    return reach


def _backprop(roots, root_grads, create_graph, targets, retain_grad=False):
    """Reverse-mode sweep from roots, in decreasing rank so each node's gradient is complete
    (summed over all its consumers) before its creator runs.

    targets=None: accumulate into the .grad of every leaf that requires a gradient.
    targets=[nodes]: touch no .grad; return {node: gradient} for those nodes only, and compute
    no input gradient that cannot reach one of them.
    """
    reach = None if targets is None else _reaching(roots, targets)
    want = set(targets or ())
    found = {}
    grads, heap, queued, tie = {}, [], set(), itertools.count()

    def push(f):
        if f is not None and f not in queued and f.inputs is not None:
            queued.add(f)
            heapq.heappush(heap, (-f.rank, next(tie), f))

    for node, g in zip(roots, root_grads):
        if g.shape != node.shape:
            raise ValueError(f"grad_outputs shape {g.shape} does not match output shape {node.shape}")
        _add_grad(grads, node, g)
        push(node.creator)

    with using_config("enable_backprop", create_graph):
        while heap:
            f = heapq.heappop(heap)[2]
            gys = []
            for ref in f.outputs:
                node = ref()
                g = None if node is None else grads.pop(node, None)
                if g is not None and node in want:
                    found[node] = g
                if g is not None and retain_grad and node._variable() is not None:
                    node._variable()._grad = g
                gys.append(g)
            indexes = tuple(i for i, x in enumerate(f.inputs)
                            if x.requires_grad and (reach is None or x in reach))
            if not indexes:
                continue
            gxs = f.backward(indexes, tuple(gys))
            if len(gxs) != len(f.inputs):
                if len(gxs) != len(indexes):
                    raise ValueError(f"{f.label}.backward returned {len(gxs)} gradients for "
                                     f"{len(f.inputs)} inputs")
                gxs = dict(zip(indexes, gxs))
                gxs = [gxs.get(i) for i in range(len(f.inputs))]
            for i in indexes:
                gx, x = gxs[i], f.inputs[i]
                if gx is None:
                    continue
                gx = as_variable(gx)
                if gx.shape != x.shape:
                    raise ValueError(f"{f.label}.backward: gradient of input {i} has shape "
                                     f"{gx.shape}, the input has shape {x.shape}")
                _add_grad(grads, x, gx)
                push(x.creator)

        # what remains in grads belongs to leaves (or to roots nothing consumed)
        for node, g in grads.items():
            if node in want:
                found[node] = g
            elif targets is None and node.creator is None and node.requires_grad:
                var = node._variable()
                if var is not None:
                    var._grad = g if var._grad is None else var._grad + g
    return found


def grad(outputs, inputs, grad_outputs=None, create_graph=False):
    """Gradients of sum(outputs * grad_outputs) w.r.t. inputs, as Variables (None if unreachable).

    No .grad attribute is touched. With create_graph=True the result is itself differentiable.
    """
    outputs = [outputs] if isinstance(outputs, Variable) else list(outputs)
    inputs = [inputs] if isinstance(inputs, Variable) else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]
    gys = []
    for y, gy in zip(outputs, grad_outputs):
        if gy is None:
            if y.size != 1:
                raise ValueError(f"grad(): output of shape {y.shape} needs a grad_output")
            gy = backend.get_array_module(y.array).ones_like(y.array)
        gys.append(as_variable(gy))
    found = _backprop([y.node for y in outputs], gys, create_graph, [x.node for x in inputs])
    return [found.get(x.node) for x in inputs]


from . import functions as F  # noqa: E402  (the ops are built on the classes above)
