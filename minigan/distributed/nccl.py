"""NCCL all-reduce of GPU arrays through cupy.cuda.nccl; MPI launches, ranks and small values.

NCCL needs one id shared by all ranks before they can talk: rank 0 draws it
(nccl.get_unique_id) and MPI broadcasts it, then every rank joins with (size, id, rank). Arrays
on the GPU are reduced by NCCL on the current stream, without a trip through host memory;
host arrays (the loss scalars, the flags) still go through MPI.

Not run in this project's CI (no GPU there): written against CuPy's documented NCCL binding.
"""
from .. import backend
from .communicator import CommunicatorError, MpiCommunicator


def import_nccl():
    """cupy.cuda.nccl, or a CommunicatorError saying what to install."""
    cupy = backend._import_cupy()
    if cupy is None:
        raise CommunicatorError(f"--communicator nccl needs CuPy with NCCL on a GPU: "
                                f"{backend._CUPY_HINT}; on CPU ranks use --communicator mpi")
    try:
        from cupy.cuda import nccl
        if not nccl.available:
            raise ImportError("CuPy was built without NCCL")
    except (ImportError, AttributeError) as e:
        raise CommunicatorError(f"--communicator nccl: {e}; install NCCL (pip install "
                                f"nvidia-nccl-cu12) or use --communicator mpi") from None
    return cupy, nccl


class NcclCommunicator(MpiCommunicator):
    """MpiCommunicator whose array collectives run in NCCL when the arrays are on the GPU."""

    def __init__(self, mpi_comm=None):
        super().__init__(mpi_comm)
        self.cupy, self.nccl = import_nccl()
        self._nccl = None           # joined on first use, on the device the run has entered

    def _join(self):
        if self._nccl is None:
            uid = self.nccl.get_unique_id() if self.rank == 0 else None
            uid = self.bcast_obj(uid)
            self._nccl = self.nccl.NcclCommunicator(self.size, uid, self.rank)
        return self._nccl

    def _dtype(self, dtype):
        table = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32",
                 "float64": "NCCL_FLOAT64", "int32": "NCCL_INT32", "int64": "NCCL_INT64"}
        return getattr(self.nccl, table[dtype.name])

    def _allreduce_sum(self, flat):
        if not backend.is_cupy_array(flat):
            return super()._allreduce_sum(flat)
        flat = self.cupy.ascontiguousarray(flat)
        stream = self.cupy.cuda.get_current_stream().ptr
        self._join().allReduce(flat.data.ptr, flat.data.ptr, flat.size, self._dtype(flat.dtype),
                               self.nccl.NCCL_SUM, stream)
        return flat

    def _bcast(self, flat, root=0):
        if not backend.is_cupy_array(flat):
            return super()._bcast(flat, root)
        flat = self.cupy.ascontiguousarray(flat)
        stream = self.cupy.cuda.get_current_stream().ptr
        self._join().bcast(flat.data.ptr, flat.size, self._dtype(flat.dtype), root, stream)
        return flat
