"""The multi-node optimizer: gradients averaged over ranks before the update rule runs."""


class AllreduceGrad:
    """An optimizer hook that replaces the gradients by their mean over the ranks of comm.

    Placed first, so the hooks after it (WeightDecay, GradientClipping) see the averaged
    gradient, exactly as in one process with the whole batch."""

    def __init__(self, comm):
        self.comm = comm

    def __call__(self, optimizer):
        self.comm.allreduce_grad(optimizer.target)


def create_multi_node_optimizer(optimizer, comm):
    """ChainerMN's create_multi_node_optimizer, as a hook: returns the same optimizer, whose
    update() all-reduces the gradients first. It stays an Optimizer (snapshots, state_dict,
    the GANs' own hooks work unchanged); gradient accumulation over several backward passes
    before one update() costs one all-reduce."""
    if not any(isinstance(h, AllreduceGrad) for h in optimizer.hooks):
        optimizer.hooks.insert(0, AllreduceGrad(comm))
    return optimizer
