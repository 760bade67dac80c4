// The Adam update in one pass over p, g, m, v (NumPy twin: Adam.update_one in
// minigan/optimizers.py, whose order of operations this follows, so the two round alike).
#ifndef REAL
#define REAL float
#endif

// m <- m + (1 - b1) (g - m);  v <- v + (1 - b2) (g^2 - v);  vhat <- max(vhat, v) (amsgrad, when
// vhat is not null; the step then uses vhat);  p <- shrink p - step m / (sqrt(v) + eps_hat),
// with the bias corrections folded into step and eps_hat by the caller.
extern "C" __global__ void adam_update(REAL* __restrict__ p, const REAL* __restrict__ g,
                                       REAL* __restrict__ m, REAL* __restrict__ v,
                                       REAL* __restrict__ vhat, long long n, REAL one_minus_b1,
                                       REAL one_minus_b2, REAL step, REAL eps_hat, REAL shrink) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const REAL gi = g[i];
        const REAL mi = m[i] + (gi - m[i]) * one_minus_b1;
        REAL vi = v[i] + (gi * gi - v[i]) * one_minus_b2;
        m[i] = mi;
        v[i] = vi;
        if (vhat) {
            vi = vi > vhat[i] ? vi : vhat[i];
            vhat[i] = vi;
        }
        REAL pi = p[i];
        if (shrink != 1) pi *= shrink;
        p[i] = pi - mi / (sqrt(vi) + eps_hat) * step;
    }
}
