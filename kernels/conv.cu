// im2col / col2im for NCHW convolutions: the gathers that turn a convolution into one cuBLAS
// matrix product (minigan/functions/im2col.py holds the NumPy twins and the dispatch).
//
// A plane p = n C + c is one channel of one image. Columns are (planes, kh, kw, oh, ow):
//   col[p, i, j, y, x] = img[p, sy y + dy i - ph, sx x + dx j - pw]   (0 outside the image)
// Groups need nothing here: they only split the channel axis of the matrix product.
// REAL is float or double (minigan/cuda.py compiles the file once for each).
#ifndef REAL
#define REAL float
#endif

// One thread per output pixel (y, x) of a plane, looping over the taps: the writes of
// neighbouring threads are neighbours for every tap, and the index arithmetic (one division)
// is done once per pixel rather than once per column element.
// Grid: blockIdx.x strides over pixels, blockIdx.y over planes.
extern "C" __global__ void im2col(const REAL* __restrict__ img, REAL* __restrict__ col,
                                  int planes, int H, int W, int kh, int kw, int sy, int sx,
                                  int ph, int pw, int dy, int dx, int oh, int ow) {
    const int pixels = oh * ow;
    const long long plane_cols = (long long)kh * kw * pixels;
    for (int p = blockIdx.y; p < planes; p += gridDim.y) {
        const REAL* src = img + (long long)p * H * W;
        REAL* dst = col + p * plane_cols;
        for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < pixels;
             q += blockDim.x * gridDim.x) {
            const int y = q / ow, x = q - y * ow;
            const int h0 = sy * y - ph, w0 = sx * x - pw;
            for (int i = 0; i < kh; ++i) {
                const int h = h0 + dy * i;
                const bool row_in = h >= 0 && h < H;
                for (int j = 0; j < kw; ++j) {
                    const int w = w0 + dx * j;
                    dst[(long long)(i * kw + j) * pixels + q] =
                        row_in && w >= 0 && w < W ? src[h * W + w] : (REAL)0;
                }
            }
        }
    }
}

// The adjoint: img[p, h, w] = sum of the taps that read (h, w), i.e. of col[p, i, j, y, x]
// with sy y = h + ph - dy i and sx x = w + pw - dx j. One thread per pixel gathers them
// (no atomics, so the sum is deterministic; taps are added in (i, j) order, as on the CPU).
extern "C" __global__ void col2im(const REAL* __restrict__ col, REAL* __restrict__ img,
                                  int planes, int H, int W, int kh, int kw, int sy, int sx,
                                  int ph, int pw, int dy, int dx, int oh, int ow) {
    const int pixels = oh * ow;
    const long long plane_cols = (long long)kh * kw * pixels;
    for (int p = blockIdx.y; p < planes; p += gridDim.y) {
        const REAL* src = col + p * plane_cols;
        REAL* dst = img + (long long)p * H * W;
        for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < H * W;
             q += blockDim.x * gridDim.x) {
            const int h = q / W, w = q - h * W;
            REAL acc = 0;
            for (int i = 0; i < kh; ++i) {
                const int t = h + ph - dy * i;      // = sy y
                if (t < 0) break;                   // t only decreases with i
                const int y = t / sy;
                if (y * sy != t || y >= oh) continue;
                for (int j = 0; j < kw; ++j) {
                    const int u = w + pw - dx * j;  // = sx x
                    if (u < 0) break;
                    const int x = u / sx;
                    if (x * sx != u || x >= ow) continue;
                    acc += src[(long long)(i * kw + j) * pixels + y * ow + x];
                }
            }
            dst[q] = acc;
        }
    }
}
