"""Synchronized batch normalization: the statistics of the batch of all ranks together.

At pix2pix's batch 1 per GPU, each rank's own statistics would be one image's (instance norm,
not batch norm). Here the per-channel sums are all-reduced, so K ranks of b examples normalize
exactly as one process with K b would:

    mean = allreduce(sum_i x_i) / M,   var = allreduce(sum_i (x_i - mean)^2) / M,
    y = gamma (x - mean) / sqrt(var + eps) + beta,      M = K b H W

The layer is written with differentiable ops around one op, allreduce_sum, whose adjoint is
itself: with the K losses L_r, S = sum_r s_r, and every rank's L_r reading S,
d(sum_r L_r)/d s_r = sum_r' dL_r'/dS, an all-reduce of the incoming gradients. The backward pass
therefore all-reduces the same two sums ChainerMN's MultiNodeBatchNormalization does, and the
gradient of a gradient (a penalty through the layer) is exact as well. Every rank runs the same
graph, so the collectives of forward and backward meet in the same order.
"""
from .. import functions as F
from ..core import FunctionNode, config
from ..links.normalization import BatchNormalization


class AllreduceSum(FunctionNode):
    """y = sum over ranks of x (the same y on every rank); its backward is the same sum."""

    def __init__(self, comm):
        self.comm = comm

    def forward(self, inputs):
        x, = inputs
        return self.comm.allreduce(x, op="sum"),

    def backward(self, indexes, grad_outputs):
        gy, = grad_outputs
        return allreduce_sum(gy, self.comm),


def allreduce_sum(x, comm):
    """The sum over the ranks of comm of x, differentiable."""
    return AllreduceSum(comm).apply((x,))[0]


def sync_batch_normalization(x, gamma, beta, comm, eps=2e-5, running_mean=None,
                             running_var=None, decay=0.9):
    """Training-mode batch norm over axis 1 with the statistics of every rank's batch.

    The running averages move as batch_normalization's do (unbiased variance M / (M - 1)),
    from the global statistics, so they stay equal on every rank."""
    axes = (0,) + tuple(range(2, x.ndim))
    c = x.shape[1]
    pshape = (1, c) + (1,) * (x.ndim - 2)
    m = comm.allreduce_obj(x.size // c)                            # M = K b H W
    mean = allreduce_sum(F.sum(x, axis=axes, keepdims=True), comm) * (1.0 / m)   # (1, C, 1, 1)
    d = x - mean
    var = allreduce_sum(F.sum(d * d, axis=axes, keepdims=True), comm) * (1.0 / m)
    y = d * (var + eps) ** -0.5 * F.reshape(gamma, pshape) + F.reshape(beta, pshape)
    if running_mean is not None:
        running_mean *= decay
        running_mean += mean.array.reshape(-1) * (1 - decay)
    if running_var is not None:
        running_var *= decay
        running_var += var.array.reshape(-1) * ((1 - decay) * m / max(m - 1, 1))
    return y


class MultiNodeBatchNormalization(BatchNormalization):
    """BatchNormalization whose training statistics come from all ranks (ChainerMN's name).

    The same parameters and persistents as BatchNormalization, so a snapshot loads into
    either; test mode uses the running statistics, which are equal on every rank."""

    comm = None

    def forward(self, x):
        if not config.train:
            return super().forward(x)
        gamma, beta = self._affine()
        self.N += 1
        return sync_batch_normalization(x, gamma, beta, self.comm, self.eps, self.avg_mean,
                                        self.avg_var, self.decay)


def convert_sync_batchnorm(model, comm):
    """Make every BatchNormalization in model synchronized over comm (in place); the count."""
    n = 0
    for _, link in model.namedlinks():
        if type(link) is BatchNormalization:
            # the class changes, the registered parameters and persistents stay as they are
            object.__setattr__(link, "__class__", MultiNodeBatchNormalization)
            object.__setattr__(link, "comm", comm)
            n += 1
    return n
