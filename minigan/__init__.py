"""minigan: a compact define-by-run deep learning framework on NumPy and CuPy, and a zoo of GANs."""
__version__ = "0.1.0"

from .core import (FunctionNode, Parameter, Variable, as_array, as_variable, config,  # noqa
                   force_backprop_mode, grad, no_backprop_mode, using_config)
from . import backend, functions  # noqa
from . import initializers, links, optimizers, serializers  # noqa


def load(path, device=-1):
    """A trained GAN from a snapshot file: Trained(name, module, config, models, options)."""
    from .gans import load as load_snapshot    # the zoo imports the trainer: only when asked
    return load_snapshot(path, device)
