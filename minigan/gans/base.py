"""What every GAN chapter shares: the Config base that snapshots store, noise, build, generate.

Not a GAN itself: chapters import from here and from links/, never from each other.
"""
import dataclasses

import numpy

from ..core import no_backprop_mode, using_config


class ConfigError(ValueError):
    """A Config that cannot be built (an unknown field, a size the networks cannot take)."""


class Config:
    """Base of each GAN's dataclass Config: built from the data, saved as a dict, rebuilt from it.

    A snapshot stores config.to_dict(); GAN.Config.from_dict(d) rebuilds the same networks, so
    no tool needs the command line that trained them.
    """

    @classmethod
    def for_data(cls, shape, **overrides):
        """The paper's Config for data of one example's `shape`, with some fields overridden."""
        return cls.create(**overrides)

    @classmethod
    def create(cls, **fields):
        """cls(**fields), with an unknown field named in a ConfigError instead of a TypeError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ConfigError(f"{cls.__module__.rsplit('.', 1)[-1]}: unknown Config field(s) "
                              f"{', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**fields)

    def to_dict(self):
        """The fields as plain JSON-able values (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """The Config to_dict() wrote; lists go back to tuples where the field is a tuple, and
        fields the dict lacks (added after it was written) keep their defaults."""
        types = {f.name: f.default for f in dataclasses.fields(cls)}
        fixed = {k: tuple(v) if isinstance(types.get(k), tuple) and isinstance(v, list) else v
                 for k, v in d.items()}
        return cls.create(**fixed)

    def minibatches(self):
        """Minibatches one iteration consumes (WGAN-GP's critic takes n_critic of them)."""
        return 1


def square_images(shape, gan, min_size=None):
    """(C, S) of data of square images (C, S, S), or a ConfigError; with min_size, S must also
    be a power of 2 of at least min_size (the networks double or halve it step by step)."""
    shape = tuple(shape)
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ConfigError(f"{gan} needs square images (C, S, S), not data of shape {shape}")
    ch, size, _ = shape
    if min_size is not None and (size < min_size or size & (size - 1)):
        raise ConfigError(f"{gan}: image size {size}x{size} must be a power of 2 and at least "
                          f"{min_size}")
    return ch, size


def sample_z(c, n, rng=numpy.random):
    """n noise vectors z ~ N(0, I), float32 (N, n_z), from rng (numpy's global one by default)."""
    return rng.standard_normal((n, c.n_z)).astype(numpy.float32)


def build(G, D, optimizer):
    """The models {'gen': G, 'dis': D} and an optimizer for each, optimizer(link) set up on it."""
    models = {"gen": G, "dis": D}
    return models, {name: optimizer(net) for name, net in models.items()}


def generate(G, z):
    """G(z) as an array, in test mode (no dropout, BN's running statistics), without a graph."""
    with no_backprop_mode(), using_config("train", False):
        return G(z).array
