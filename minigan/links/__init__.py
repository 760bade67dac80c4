"""Layers with parameters: `import minigan.links as L`."""
from .cbr import CBR  # noqa
from .connection import Convolution2D, Deconvolution2D, Linear  # noqa
from .link import Chain, Link, Sequential  # noqa
from .normalization import BatchNormalization, InstanceNormalization  # noqa
from . import dcgan  # noqa: the DCGAN networks DCGAN and WGAN-GP share
