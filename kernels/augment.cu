// DiffAugment (Zhao et al. 2020, arXiv:2006.10738): a whole policy (color, translation, cutout)
// in one launch, and its adjoint in one launch. NumPy twin and parameters: minigan/augment.py.
//
// Per image n the host draws fp[n] = (b, s, c): brightness, saturation, contrast, and
// ip[n] = (ty, tx, cy, cx): the shift and the top-left corner of the cutout square
// (cut_h x cut_w; 0 x 0 without cutout). Neutral values (0, 1, 1, 0, 0, ...) switch a part off.
// With m = mean over channels of x at a pixel and xbar = mean of the image x[n]:
//   color:       z = c (s (x - m) + m + b - M) + M, M = mean(s (x - m) + m + b) = xbar + b,
//                i.e. z = c s (x - m) + c (m - xbar) + xbar + b
//   translation: t[h, w] = z[h + ty, w + tx], 0 where that lies outside the image
//   cutout:      y = 0 inside the square, t elsewhere
// One block per image (xbar is a reduction over the image): 2 reads of x and 1 write of y;
// the mean pass is skipped for an image whose c is 1.
#ifndef REAL
#define REAL float
#endif
#ifndef DYNAMIC_SHARED
#define DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

// Sum of v over the block (blockDim slots of shared memory), returned to every thread.
__device__ REAL augment_block_sum(REAL v, REAL* slots) {
    const unsigned t = threadIdx.x;
    slots[t] = v;
    unsigned half = 1;
    while (half < blockDim.x) half <<= 1;
    __syncthreads();
    for (half >>= 1; half > 0; half >>= 1) {
        if (t < half && t + half < blockDim.x) slots[t] += slots[t + half];
        __syncthreads();
    }
    const REAL total = slots[0];
    __syncthreads();                              // slots are reused by the next call
    return total;
}

// True where output pixel (h, w) is kept: outside the cutout square and reading inside the image.
__device__ __forceinline__ bool augment_kept(int h, int w, int H, int W, const int* ip, int cut_h,
                                             int cut_w) {
    const int hs = h + ip[0], ws = w + ip[1];
    const bool cut = h >= ip[2] && h < ip[2] + cut_h && w >= ip[3] && w < ip[3] + cut_w;
    return !cut && hs >= 0 && hs < H && ws >= 0 && ws < W;
}

// y = cutout(translate(color(x))). Shared: blockDim REALs.
extern "C" __global__ void diff_augment(const REAL* __restrict__ x, REAL* __restrict__ y,
                                        const REAL* __restrict__ fp, const int* __restrict__ ip,
                                        int N, int C, int H, int W, int cut_h, int cut_w) {
    DYNAMIC_SHARED(REAL, slots);
    const int HW = H * W;
    const long long CHW = (long long)C * HW;
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const REAL* xn = x + n * CHW;
        REAL* yn = y + n * CHW;
        const REAL b = fp[3 * n], s = fp[3 * n + 1], c = fp[3 * n + 2];
        const int* in = ip + 4 * n;
        REAL xbar = 0;
        if (c != 1) {
            REAL acc = 0;
            for (long long e = threadIdx.x; e < CHW; e += blockDim.x) acc += xn[e];
            xbar = augment_block_sum(acc, slots) / (REAL)CHW;
        }
        const REAL cs = c * s;
        for (int q = threadIdx.x; q < HW; q += blockDim.x) {
            const int h = q / W, w = q - h * W;
            if (!augment_kept(h, w, H, W, in, cut_h, cut_w)) {
                for (int ch = 0; ch < C; ++ch) yn[ch * HW + q] = 0;
                continue;
            }
            const REAL* src = xn + (h + in[0]) * W + (w + in[1]);
            REAL m = 0;
            for (int ch = 0; ch < C; ++ch) m += src[ch * HW];
            m /= C;
            const REAL base = c * (m - xbar) + xbar + b;
            for (int ch = 0; ch < C; ++ch) yn[ch * HW + q] = cs * (src[ch * HW] - m) + base;
        }
    }
}

// The adjoint for fixed parameters: gx = A^T gy where y = A x + b. With g the gradient carried
// back through cutout and translation, g[h, w] = gy[h - ty, w - tx] where that output pixel is
// kept, else 0, the color map z = c s x + c (1 - s) m(x) + (1 - c) xbar(x) + b gives
//   gx = c s g + c (1 - s) mean_channels(g) + (1 - c) mean_image(g),
// since m and xbar are means that copy their value to every channel (pixel): their adjoints
// are the same means. Shared: blockDim REALs.
extern "C" __global__ void diff_augment_adjoint(const REAL* __restrict__ gy,
                                                REAL* __restrict__ gx,
                                                const REAL* __restrict__ fp,
                                                const int* __restrict__ ip, int N, int C, int H,
                                                int W, int cut_h, int cut_w) {
    DYNAMIC_SHARED(REAL, slots);
    const int HW = H * W;
    const long long CHW = (long long)C * HW;
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const REAL* gyn = gy + n * CHW;
        REAL* gxn = gx + n * CHW;
        const REAL s = fp[3 * n + 1], c = fp[3 * n + 2];
        const int* in = ip + 4 * n;
        REAL gbar = 0;                            // mean_image(g)
        if (c != 1) {
            REAL acc = 0;                         // sums of kept output pixels, over channels
            for (int q = threadIdx.x; q < HW; q += blockDim.x) {
                const int h = q / W, w = q - h * W;
                if (augment_kept(h, w, H, W, in, cut_h, cut_w))
                    for (int ch = 0; ch < C; ++ch) acc += gyn[ch * HW + q];
            }
            gbar = augment_block_sum(acc, slots) / (REAL)CHW;
        }
        const REAL cs = c * s, rest = (1 - c) * gbar;
        for (int q = threadIdx.x; q < HW; q += blockDim.x) {
            const int h = q / W, w = q - h * W;
            const int ho = h - in[0], wo = w - in[1];     // the output pixel that read (h, w)
            if (ho < 0 || ho >= H || wo < 0 || wo >= W ||
                !augment_kept(ho, wo, H, W, in, cut_h, cut_w)) {
                for (int ch = 0; ch < C; ++ch) gxn[ch * HW + q] = rest;
                continue;
            }
            const REAL* src = gyn + ho * W + wo;
            REAL m = 0;
            for (int ch = 0; ch < C; ++ch) m += src[ch * HW];
            m /= C;
            const REAL base = c * (1 - s) * m + rest;
            for (int ch = 0; ch < C; ++ch) gxn[ch * HW + q] = cs * src[ch * HW] + base;
        }
    }
}
