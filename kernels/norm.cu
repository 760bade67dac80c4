// Batch and instance normalization, forward and backward (NumPy twins and dispatch:
// minigan/functions/normalization.py).
//
// x is seen as rows of S = H W values. Statistic k reads rows r < nrows at x + k S + r rstride:
//   batch norm:    k = c,          nrows = N, rstride = C S   (all images, one channel)
//   instance norm: k = n C + c,    nrows = 1                  (one plane)
// so the channel of statistic k is k % C. Each statistic's count = nrows S values are split into
// `splits` contiguous ranges, one block each (blockIdx.x = range; blockIdx.y strides over the
// nstat statistics): a few channels of a large batch still fill the device. A pass first
// writes one partial result per block; the next kernel merges a statistic's partials in a
// fixed order (deterministic) and then works on its range.
//
//   forward:  2 reads of x + 1 write of y  (norm_stats, norm_forward)
//   backward: 2 reads of x, gy + 1 write of gx  (norm_backward_sums, norm_backward)
#ifndef REAL
#define REAL float
#endif
#ifndef DYNAMIC_SHARED
#define DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

// Address of value e of statistic k.
__device__ __forceinline__ long long norm_at(long long k, int e, int S, long long rstride) {
    const int r = e / S;
    return k * S + r * rstride + (e - r * S);
}

// The range [lo, hi) of block j out of `splits` over `count` values.
__device__ __forceinline__ void norm_range(int count, int splits, int j, int* lo, int* hi) {
    *lo = (int)((long long)count * j / splits);
    *hi = (int)((long long)count * (j + 1) / splits);
}

// Merge (nb, mb, m2b) into (n, m, m2): count, mean and sum of squared deviations of two sets
// (Chan, Golub and LeVeque): d = mb - m, m += d nb / (n + nb), m2 += m2b + d^2 n nb / (n + nb).
// No cancellation, however large the mean.
__device__ __forceinline__ void merge_moments(REAL* n, REAL* m, REAL* m2, REAL nb, REAL mb,
                                              REAL m2b) {
    if (nb == 0) return;
    const REAL total = *n + nb, d = mb - *m, f = nb / total;
    *m += d * f;
    *m2 += m2b + d * d * *n * f;
    *n = total;
}

// Tree over the block's slots; afterwards slot 0 holds the merge of all (ends synchronized).
__device__ void block_moments(REAL* sn, REAL* sm, REAL* sm2) {
    const unsigned t = threadIdx.x;
    unsigned half = 1;
    while (half < blockDim.x) half <<= 1;
    __syncthreads();
    for (half >>= 1; half > 0; half >>= 1) {
        if (t < half && t + half < blockDim.x)
            merge_moments(&sn[t], &sm[t], &sm2[t], sn[t + half], sm[t + half], sm2[t + half]);
        __syncthreads();
    }
}

// Sums of two values over the block, into slots 0 (ends synchronized).
__device__ void block_sum2(REAL* a, REAL* b) {
    const unsigned t = threadIdx.x;
    unsigned half = 1;
    while (half < blockDim.x) half <<= 1;
    __syncthreads();
    for (half >>= 1; half > 0; half >>= 1) {
        if (t < half && t + half < blockDim.x) {
            a[t] += a[t + half];
            b[t] += b[t + half];
        }
        __syncthreads();
    }
}

// part[k, j] = (count, mean, M2) of range j of statistic k. Shared: 3 blockDim REALs.
extern "C" __global__ void norm_stats(const REAL* __restrict__ x, REAL* __restrict__ part,
                                      int nstat, int nrows, int S, long long rstride,
                                      int splits) {
    DYNAMIC_SHARED(REAL, shared);
    REAL *sn = shared, *sm = shared + blockDim.x, *sm2 = shared + 2 * blockDim.x;
    int lo, hi;
    norm_range(nrows * S, splits, blockIdx.x, &lo, &hi);
    for (long long k = blockIdx.y; k < nstat; k += gridDim.y) {
        // Welford within a thread: m += (v - m) / n, m2 += (v - m_old)(v - m_new)
        REAL n = 0, m = 0, m2 = 0;
        for (int e = lo + threadIdx.x; e < hi; e += blockDim.x) {
            const REAL v = x[norm_at(k, e, S, rstride)];
            n += 1;
            const REAL d = v - m;
            m += d / n;
            m2 += d * (v - m);
        }
        sn[threadIdx.x] = n;
        sm[threadIdx.x] = m;
        sm2[threadIdx.x] = m2;
        block_moments(sn, sm, sm2);
        if (threadIdx.x == 0) {
            REAL* out = part + (k * splits + blockIdx.x) * 3;
            out[0] = sn[0];
            out[1] = sm[0];
            out[2] = sm2[0];
        }
        __syncthreads();                            // the slots are reused for the next k
    }
}

// y = (x - mean) scale + beta, scale = gamma inv_std, inv_std = 1 / sqrt(var + eps), var = M2 / n
// (biased). The first block of each statistic writes mean, var and inv_std. Shared: 2 REALs.
extern "C" __global__ void norm_forward(const REAL* __restrict__ x, const REAL* __restrict__ part,
                                        const REAL* __restrict__ gamma,
                                        const REAL* __restrict__ beta, REAL* __restrict__ y,
                                        REAL* __restrict__ mean, REAL* __restrict__ var,
                                        REAL* __restrict__ inv_std, int nstat, int nrows,
                                        int S, long long rstride, int C, int splits, REAL eps) {
    DYNAMIC_SHARED(REAL, shared);
    int lo, hi;
    norm_range(nrows * S, splits, blockIdx.x, &lo, &hi);
    for (long long k = blockIdx.y; k < nstat; k += gridDim.y) {
        if (threadIdx.x == 0) {
            REAL n = 0, m = 0, m2 = 0;
            for (int j = 0; j < splits; ++j) {
                const REAL* p = part + (k * splits + j) * 3;
                merge_moments(&n, &m, &m2, p[0], p[1], p[2]);
            }
            const REAL v = m2 / n, inv = (REAL)1 / sqrt(v + eps);
            shared[0] = m;
            shared[1] = inv;
            if (blockIdx.x == 0) {
                mean[k] = m;
                var[k] = v;
                inv_std[k] = inv;
            }
        }
        __syncthreads();
        const REAL m = shared[0], scale = gamma[k % C] * shared[1], b = beta[k % C];
        for (int e = lo + threadIdx.x; e < hi; e += blockDim.x) {
            const long long a = norm_at(k, e, S, rstride);
            y[a] = (x[a] - m) * scale + b;
        }
        __syncthreads();                            // shared is rewritten for the next k
    }
}

// part[k, j] = (sum gy, sum gy (x - mean)) over range j of statistic k. Shared: 2 blockDim REALs.
extern "C" __global__ void norm_backward_sums(const REAL* __restrict__ x,
                                              const REAL* __restrict__ gy,
                                              const REAL* __restrict__ mean,
                                              REAL* __restrict__ part, int nstat, int nrows,
                                              int S, long long rstride, int splits) {
    DYNAMIC_SHARED(REAL, shared);
    REAL *sa = shared, *sb = shared + blockDim.x;
    int lo, hi;
    norm_range(nrows * S, splits, blockIdx.x, &lo, &hi);
    for (long long k = blockIdx.y; k < nstat; k += gridDim.y) {
        const REAL m = mean[k];
        REAL a = 0, b = 0;
        for (int e = lo + threadIdx.x; e < hi; e += blockDim.x) {
            const long long i = norm_at(k, e, S, rstride);
            a += gy[i];
            b += gy[i] * (x[i] - m);
        }
        sa[threadIdx.x] = a;
        sb[threadIdx.x] = b;
        block_sum2(sa, sb);
        if (threadIdx.x == 0) {
            REAL* out = part + (k * splits + blockIdx.x) * 2;
            out[0] = sa[0];
            out[1] = sb[0];
        }
        __syncthreads();
    }
}

// gx = scale (gy - mean(gy) - xhat mean(gy xhat)), xhat = (x - mean) inv_std, scale = gamma
// inv_std: as gx = scale gy + (x - mean) (-scale inv_std m2) - scale m1 with m1 = mean(gy),
// m2 = mean(gy xhat). The first block of each statistic writes sums[k] = (sum gy, sum gy xhat),
// the gradients of beta and gamma before the sum over images (instance norm). Shared: 2 REALs.
extern "C" __global__ void norm_backward(const REAL* __restrict__ x, const REAL* __restrict__ gy,
                                         const REAL* __restrict__ mean,
                                         const REAL* __restrict__ inv_std,
                                         const REAL* __restrict__ scale,
                                         const REAL* __restrict__ part, REAL* __restrict__ gx,
                                         REAL* __restrict__ sums, int nstat, int nrows,
                                         int S, long long rstride, int splits) {
    DYNAMIC_SHARED(REAL, shared);
    const int count = nrows * S;
    int lo, hi;
    norm_range(count, splits, blockIdx.x, &lo, &hi);
    for (long long k = blockIdx.y; k < nstat; k += gridDim.y) {
        if (threadIdx.x == 0) {
            REAL a = 0, b = 0;
            for (int j = 0; j < splits; ++j) {
                a += part[(k * splits + j) * 2];
                b += part[(k * splits + j) * 2 + 1];
            }
            b *= inv_std[k];                        // sum gy xhat
            shared[0] = a / count;
            shared[1] = b / count;
            if (blockIdx.x == 0) {
                sums[k * 2] = a;
                sums[k * 2 + 1] = b;
            }
        }
        __syncthreads();
        const REAL m = mean[k], s = scale[k], m1 = shared[0];
        const REAL c = -s * inv_std[k] * shared[1];
        for (int e = lo + threadIdx.x; e < hi; e += blockDim.x) {
            const long long i = norm_at(k, e, S, rstride);
            gx[i] = s * gy[i] + ((x[i] - m) * c - s * m1);
        }
        __syncthreads();
    }
}
