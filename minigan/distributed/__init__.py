"""Data-parallel training over MPI (mpi4py) and NCCL (cupy.cuda.nccl), as ChainerMN did."""
from .batchnorm import (MultiNodeBatchNormalization, allreduce_sum, convert_sync_batchnorm,
                        sync_batch_normalization)
from .communicator import (MPI_HINT, Communicator, CommunicatorError, MpiCommunicator,
                           SingleCommunicator, import_mpi)
from .data import ShardIterator, rank_seed, scatter_dataset
from .optimizer import AllreduceGrad, create_multi_node_optimizer

COMMUNICATORS = ("mpi", "nccl")


def create_communicator(name="mpi"):
    """The communicator of this process: 'mpi' (host arrays over MPI) or 'nccl' (GPU arrays over
    NCCL, the rest over MPI)."""
    if name == "nccl":
        from .nccl import NcclCommunicator, import_nccl
        import_nccl()               # before MPI starts: a missing CuPy is one line on each rank
        return NcclCommunicator()
    if name != "mpi":
        raise CommunicatorError(f"--communicator {name}: choose one of {', '.join(COMMUNICATORS)}")
    return MpiCommunicator()
