"""Normalization layers: BatchNormalization (running statistics) and InstanceNormalization."""
import numpy

from .. import functions as F
from ..core import config
from ..initializers import One, Zero
from .link import Link


class BatchNormalization(Link):
    """y = gamma (x - mean) / sqrt(var + eps) + beta per channel (axis 1) (Ioffe and Szegedy 2015).

    In training (config.train) mean and var are the batch's, and the running averages
    avg_mean, avg_var move toward them by 1 - decay each call; in test mode they are used instead.
    """

    def __init__(self, size, decay=0.9, eps=2e-5, use_gamma=True, use_beta=True,
                 dtype=numpy.float32):
        super().__init__()
        self.size, self.decay, self.eps, self.dtype = size, decay, eps, numpy.dtype(dtype)
        self.gamma = self.beta = None
        if use_gamma:
            self.add_param("gamma", (size,), One(), dtype)
        if use_beta:
            self.add_param("beta", (size,), Zero(), dtype)
        self.add_persistent("avg_mean", numpy.zeros(size, dtype))
        self.add_persistent("avg_var", numpy.ones(size, dtype))
        self.add_persistent("N", 0)     # number of batches seen in training (as in Chainer)

    def _affine(self):
        # without a learnable gamma / beta the op still takes them, as constants 1 and 0
        xp = self.xp
        gamma = self.gamma if self.gamma is not None else xp.ones(self.size, self.dtype)
        beta = self.beta if self.beta is not None else xp.zeros(self.size, self.dtype)
        return gamma, beta

    def forward(self, x):
        gamma, beta = self._affine()
        if config.train:
            self.N += 1
            return F.batch_normalization(x, gamma, beta, eps=self.eps, running_mean=self.avg_mean,
                                         running_var=self.avg_var, decay=self.decay)
        return F.fixed_batch_normalization(x, gamma, beta, self.avg_mean, self.avg_var,
                                           eps=self.eps)


class InstanceNormalization(Link):
    """Normalize each sample's channel over its spatial axes (Ulyanov et al. 2016); no running
    statistics (PyTorch's default); affine adds a learnable per-channel gamma and beta."""

    def __init__(self, size, eps=1e-5, affine=True, dtype=numpy.float32):
        super().__init__()
        self.size, self.eps = size, eps
        self.gamma = self.beta = None
        if affine:
            self.add_param("gamma", (size,), One(), dtype)
            self.add_param("beta", (size,), Zero(), dtype)

    def forward(self, x):
        return F.instance_normalization(x, self.gamma, self.beta, eps=self.eps)
