// Exercises the host harness itself: shared memory, __syncthreads, dynamic shared memory,
// atomicAdd and threads that return early (tests/test_cuda_host.py).
#ifndef REAL
#define REAL float
#endif
#ifndef DYNAMIC_SHARED
#define DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

// total += sum of x, by a shared-memory tree per block and one atomicAdd per block.
extern "C" __global__ void block_sum(const REAL* __restrict__ x, REAL* __restrict__ total,
                                     int n) {
    __shared__ REAL slots[1024];
    const unsigned t = threadIdx.x;
    REAL acc = 0;
    for (int i = blockIdx.x * blockDim.x + t; i < n; i += blockDim.x * gridDim.x) acc += x[i];
    slots[t] = acc;
    __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half >>= 1) {  // blockDim: a power of 2
        if (t < half) slots[t] += slots[t + half];
        __syncthreads();
    }
    if (t == 0) atomicAdd(total, slots[0]);
}

// out[b, t] = value thread blockDim - 1 - t of block b wrote into dynamic shared memory, after
// a __syncthreads; threads t >= active return first (they must not hold back the barrier).
extern "C" __global__ void reverse(REAL* __restrict__ out, int active) {
    DYNAMIC_SHARED(REAL, slots);
    const unsigned t = threadIdx.x;
    if ((int)t >= active) return;
    slots[t] = (REAL)(blockIdx.x * 1000 + t);
    __syncthreads();
    out[blockIdx.x * blockDim.x + t] = slots[active - 1 - t];
}

// a[i] = 1: with i outside the array, the harness must report the stray write.
extern "C" __global__ void write_at(REAL* __restrict__ a, int i) {
    if (threadIdx.x == 0 && blockIdx.x == 0) a[i] = 1;
}
