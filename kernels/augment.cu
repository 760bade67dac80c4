// DiffAugment (Zhao et al. 2020, arXiv:2006.10738): a whole policy (color, translation, cutout)
// in two launches, and its adjoint in two. NumPy twin and parameters: minigan/augment.py.
//
// Per image n the host draws fp[n] = (b, s, c): brightness, saturation, contrast, and
// ip[n] = (ty, tx, cy, cx): the shift and the top-left corner of the cutout square
// (cut_h x cut_w; 0 x 0 without cutout). Neutral values (0, 1, 1, 0, 0, ...) switch a part off.
// With m = mean over channels of x at a pixel and xbar = mean of the image x[n]:
//   color:       z = c (s (x - m) + m + b - M) + M, M = mean(s (x - m) + m + b) = xbar + b,
//                i.e. z = c s (x - m) + c (m - xbar) + xbar + b
//   translation: t[h, w] = z[h + ty, w + tx], 0 where that lies outside the image
//   cutout:      y = 0 inside the square, t elsewhere
// Grid: (tiles, images): each image's pixels are cut into `tiles` ranges, one block each, so a
// batch of 64 fills every SM of a large GPU (one block per image would use 64). xbar needs the
// whole image: a first launch writes each tile's partial sum to part[n * tiles + t] (no
// atomics: the same sum in every run), and the second sums those few partials per block.
// 2 reads of x and 1 write of y in all; the sums are skipped for an image whose c is 1.
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

// The pixel range [q0, q1) of tile t of an image of HW pixels cut into `tiles` ranges.
__device__ __forceinline__ void augment_tile(int t, int tiles, int HW, int* q0, int* q1) {
    const int per = (HW + tiles - 1) / tiles;
    *q0 = t * per;
    *q1 = *q0 + per < HW ? *q0 + per : HW;
}

// part[n * tiles + t] = the sum over tile t's pixels of v[n], all channels; with kept_only,
// over the output pixels augment_kept keeps (the adjoint's), else over all (the forward's).
// 0 where c is 1 (the color needs no mean there). Shared: blockDim REALs.
__device__ void augment_sums(const REAL* v, REAL* part, const REAL* fp, const int* ip, int N,
                             int C, int H, int W, int cut_h, int cut_w, int tiles,
                             bool kept_only) {
    DYNAMIC_SHARED(REAL, slots);
    const int HW = H * W;
    int q0, q1;
    augment_tile(blockIdx.x, tiles, HW, &q0, &q1);
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        REAL acc = 0;
        if (fp[3 * n + 2] != 1) {                 // block-uniform: every thread agrees
            const REAL* vn = v + (long long)n * C * HW;
            for (int q = q0 + threadIdx.x; q < q1; q += blockDim.x) {
                const int h = q / W, w = q - h * W;
                if (!kept_only || augment_kept(h, w, H, W, ip + 4 * n, cut_h, cut_w))
                    for (int ch = 0; ch < C; ++ch) acc += vn[ch * HW + q];
            }
        }
        acc = augment_block_sum(acc, slots);
        if (threadIdx.x == 0) part[n * tiles + blockIdx.x] = acc;
    }
}

// The partial sums of x for xbar.
extern "C" __global__ void diff_augment_sums(const REAL* __restrict__ x, REAL* __restrict__ part,
                                             const REAL* __restrict__ fp,
                                             const int* __restrict__ ip, int N, int C, int H,
                                             int W, int cut_h, int cut_w, int tiles) {
    augment_sums(x, part, fp, ip, N, C, H, W, cut_h, cut_w, tiles, false);
}

// y = cutout(translate(color(x))), given part from diff_augment_sums.
extern "C" __global__ void diff_augment(const REAL* __restrict__ x, REAL* __restrict__ y,
                                        const REAL* __restrict__ part,
                                        const REAL* __restrict__ fp, const int* __restrict__ ip,
                                        int N, int C, int H, int W, int cut_h, int cut_w,
                                        int tiles) {
    const int HW = H * W;
    const long long CHW = (long long)C * HW;
    int q0, q1;
    augment_tile(blockIdx.x, tiles, HW, &q0, &q1);
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const REAL* xn = x + n * CHW;
        REAL* yn = y + n * CHW;
        const REAL b = fp[3 * n], s = fp[3 * n + 1], c = fp[3 * n + 2];
        const int* in = ip + 4 * n;
        REAL xbar = 0;
        if (c != 1) {
            for (int t = 0; t < tiles; ++t) xbar += part[n * tiles + t];
            xbar /= (REAL)CHW;
        }
        const REAL cs = c * s;
        for (int q = q0 + threadIdx.x; q < q1; q += blockDim.x) {
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
// are the same means.

// The partial sums of gy over kept output pixels, for mean_image(g).
extern "C" __global__ void diff_augment_adjoint_sums(const REAL* __restrict__ gy,
                                                     REAL* __restrict__ part,
                                                     const REAL* __restrict__ fp,
                                                     const int* __restrict__ ip, int N, int C,
                                                     int H, int W, int cut_h, int cut_w,
                                                     int tiles) {
    augment_sums(gy, part, fp, ip, N, C, H, W, cut_h, cut_w, tiles, true);
}

// gx = A^T gy, given part from diff_augment_adjoint_sums.
extern "C" __global__ void diff_augment_adjoint(const REAL* __restrict__ gy,
                                                REAL* __restrict__ gx,
                                                const REAL* __restrict__ part,
                                                const REAL* __restrict__ fp,
                                                const int* __restrict__ ip, int N, int C, int H,
                                                int W, int cut_h, int cut_w, int tiles) {
    const int HW = H * W;
    const long long CHW = (long long)C * HW;
    int q0, q1;
    augment_tile(blockIdx.x, tiles, HW, &q0, &q1);
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const REAL* gyn = gy + n * CHW;
        REAL* gxn = gx + n * CHW;
        const REAL s = fp[3 * n + 1], c = fp[3 * n + 2];
        const int* in = ip + 4 * n;
        REAL gbar = 0;                            // mean_image(g)
        if (c != 1) {
            for (int t = 0; t < tiles; ++t) gbar += part[n * tiles + t];
            gbar /= (REAL)CHW;
        }
        const REAL cs = c * s, rest = (1 - c) * gbar;
        for (int q = q0 + threadIdx.x; q < q1; q += blockDim.x) {
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
