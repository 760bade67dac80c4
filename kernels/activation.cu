// Leaky ReLU and its gradient in one pass each (NumPy twins and dispatch:
// minigan/functions/activation.py). Grid-stride loops over n values.
#ifndef REAL
#define REAL float
#endif

// y = x for x >= 0, slope x otherwise.
extern "C" __global__ void leaky_relu_forward(const REAL* __restrict__ x, REAL* __restrict__ y,
                                              long long n, REAL slope) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const REAL v = x[i];
        y[i] = v >= 0 ? v : v * slope;
    }
}

// gx = gy dy/dx, with dy/dx = 1 for x >= 0 and slope otherwise.
extern "C" __global__ void leaky_relu_backward(const REAL* __restrict__ x,
                                               const REAL* __restrict__ gy,
                                               REAL* __restrict__ gx, long long n, REAL slope) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x)
        gx[i] = gy[i] * (x[i] >= 0 ? (REAL)1 : slope);
}
