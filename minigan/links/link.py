"""Link, Chain and Sequential: layers that own parameters, registered by attribute assignment.

    class MLP(Chain):
        def __init__(self):
            super().__init__()
            self.l1 = Linear(784, 100)      # a child link: registered as '/l1'
            self.l2 = Linear(100, 10)

A Link registers each `Parameter` assigned to it, in assignment order, and the non-parameter
arrays it must save (batch norm's running statistics) through `add_persistent`. A Chain also
registers child Links. `params()` and `namedparams()` walk the tree depth first: a link's own
parameters, then each child's, in registration order, so names and order are stable.
"""
import copy

import numpy

from .. import backend
from ..core import Parameter
from ..initializers import generate_array


class Link:
    """A layer with parameters and persistent arrays; `link(x)` calls `forward(x)`."""

    def __init__(self):
        # dicts used as ordered sets of attribute names: registration order is walk order
        object.__setattr__(self, "_params", {})
        object.__setattr__(self, "_persistent", {})
        object.__setattr__(self, "_device", -1)

    # -- registration ------------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_params" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before "
                                 f"assigning {name!r}")
        self._register(name, value)
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._unregister(name, keep=None)
        object.__delattr__(self, name)

    def _register(self, name, value):
        if isinstance(value, Link):
            raise TypeError(f"{type(self).__name__}.{name}: a Link cannot hold child links; "
                            "derive from Chain")
        if isinstance(value, Parameter):
            self._unregister(name, keep=self._params)
            self._params[name] = None
            if value.name is None:
                value.name = name
        else:   # a persistent stays one when reassigned (self.avg_mean = new array)
            self._unregister(name, keep=self._persistent)

    def _registries(self):
        return (self._params, self._persistent)

    def _unregister(self, name, keep):
        for reg in self._registries():
            if reg is not keep:
                reg.pop(name, None)

    def add_param(self, name, shape, initializer, dtype=numpy.float32):
        """Create Parameter `name` from an initializer (or a scalar, or an array) on the CPU."""
        setattr(self, name, Parameter(generate_array(initializer, shape, dtype), name=name))

    def add_persistent(self, name, value):
        """Register a non-parameter array or scalar, saved, loaded and moved with the link."""
        if name in self.__dict__ and name not in self._persistent:
            raise AttributeError(f"{type(self).__name__} already has an attribute {name!r}")
        self._unregister(name, keep=None)
        self._persistent[name] = None
        object.__setattr__(self, name, value)

    # -- walking the tree --------------------------------------------------------------------
    def namedparams(self):
        """(path, Parameter) pairs, e.g. ('/enc/c0/W', W); a parameter shared twice comes once."""
        seen = set()
        for link_path, link in self.namedlinks():
            for name in link._params:
                p = link.__dict__[name]
                if id(p) not in seen:
                    seen.add(id(p))
                    yield f"{link_path}/{name}", p

    def params(self):
        """The Parameters of this link and its descendants, in a stable order."""
        return (p for _, p in self.namedparams())

    def namedpersistents(self):
        """(path, value) pairs of the persistent values, e.g. ('/bn/avg_mean', array)."""
        for link_path, link in self.namedlinks():
            for name in link._persistent:
                yield f"{link_path}/{name}", link.__dict__[name]

    def namedlinks(self, skipself=False):
        """(path, link) pairs, this link first (path '') and then its descendants, depth first."""
        if not skipself:
            yield "", self

    def links(self, skipself=False):
        """This link (unless skipself) and its descendants, depth first."""
        return (link for _, link in self.namedlinks(skipself))

    def children(self):
        """The direct child links, in registration order."""
        return iter(())

    def count_params(self):
        """The number of scalars in all parameters."""
        return sum(p.size for p in self.params())

    def cleargrads(self):
        """Set every parameter's .grad to None (before a new backward)."""
        for p in self.params():
            p.cleargrad()

    def disable_update(self):
        """Freeze the parameters: optimizers skip them (they still get gradients)."""
        for p in self.params():
            p.update_enabled = False

    def enable_update(self):
        """Undo disable_update."""
        for p in self.params():
            p.update_enabled = True

    # -- devices -----------------------------------------------------------------------------
    @property
    def device(self):
        """-1 on the CPU, else the CUDA device id."""
        return self._device

    @property
    def xp(self):
        """numpy or cupy, wherever the parameters live."""
        return numpy if self._device < 0 else backend.get_cupy(self._device)

    def to_gpu(self, device=0):
        """Move parameters, gradients and persistent arrays to CUDA device `device`."""
        return self.to_device(device)

    def to_cpu(self):
        """Move parameters, gradients and persistent arrays to the CPU."""
        return self._move(backend.to_cpu, -1)

    def to_device(self, device):
        """Move everything to `device`: a backend.Device, or an id (-1 for the CPU)."""
        device = backend.as_device(device)
        return self._move(device.send, device.id)

    def _move(self, move, device):
        for link in self.links():
            for name in link._params:
                p = link.__dict__[name]
                p.array = move(p.array)
                if p.grad is not None:
                    p.grad = move(p.grad.array)
            for name in link._persistent:
                value = link.__dict__[name]
                if backend.is_array(value):
                    object.__setattr__(link, name, move(value))
            object.__setattr__(link, "_device", device)
        return self

    # -- the rest ----------------------------------------------------------------------------
    def copy(self):
        """A deep copy with new parameters (without gradients) and persistents; used for EMA."""
        new = copy.deepcopy(self)
        new.cleargrads()
        return new

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} defines no forward")

    def __repr__(self):
        own = ", ".join(f"{n}{tuple(self.__dict__[n].shape)}" for n in self._params)
        kids = [f"  ({n}): " + repr(getattr(self, n)).replace("\n", "\n  ")
                for n in getattr(self, "_children", ())]
        if not kids:
            return f"{type(self).__name__}({own})"
        return "\n".join([f"{type(self).__name__}({own}"] + kids + [")"])


class Chain(Link):
    """A Link that also holds child links, registered by assignment."""

    def __init__(self, **links):
        super().__init__()
        object.__setattr__(self, "_children", {})
        for name, link in links.items():
            setattr(self, name, link)

    def _registries(self):
        return (self._params, self._persistent, self._children)

    def _register(self, name, value):
        if isinstance(value, Link):
            self._unregister(name, keep=self._children)
            self._children[name] = None
        else:
            super()._register(name, value)

    def namedlinks(self, skipself=False):
        seen = set()
        stack = [("", self)]
        while stack:    # depth first, children in registration order
            path, link = stack.pop()
            if id(link) in seen:
                continue
            seen.add(id(link))
            if link is not self or not skipself:
                yield path, link
            kids = [(f"{path}/{n}", link.__dict__[n]) for n in getattr(link, "_children", ())]
            stack.extend(reversed(kids))

    def children(self):
        return (self.__dict__[n] for n in self._children)


class Sequential(Chain):
    """Layers applied in turn; links among them are children named by position ('0', '2', ...).

    A plain callable (F.relu, a lambda) takes a place but no name, so `seq[i]` is the layer whose
    parameters are saved under '/i', as in PyTorch's nn.Sequential.
    """

    def __init__(self, *layers):
        super().__init__()
        object.__setattr__(self, "_layers", [])
        for layer in layers:
            self.append(layer)

    def append(self, layer):
        """Add a link or a callable at the end."""
        if not callable(layer):
            raise TypeError(f"Sequential: a layer must be a Link or a callable, got "
                            f"{type(layer).__name__}")
        if isinstance(layer, Link):
            setattr(self, str(len(self._layers)), layer)
        self._layers.append(layer)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*self._layers[index])   # shares the layers
        return self._layers[index]

    def __len__(self):
        return len(self._layers)

    def __iter__(self):
        return iter(self._layers)

    def forward(self, x):
        for layer in self._layers:
            x = layer(x)
        return x

    def __repr__(self):
        lines = [f"  ({i}): " + (repr(layer) if isinstance(layer, Link) else
                                 getattr(layer, "__name__", repr(layer))).replace("\n", "\n  ")
                 for i, layer in enumerate(self._layers)]
        return "\n".join(["Sequential("] + lines + [")"])
