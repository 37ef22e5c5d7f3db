/* Data kernels on little-endian arrays: statistics with a histogram, and sorting. */
#include "vh.h"

/* Elements between two progress reports (1 MiB of f64). */
#define PROGRESS_ELEMS (1u << 17)

/* ---- data.stats ------------------------------------------------------------------------- */

/* Finite values only: x - x is 0 for them, NaN for NaN and the infinities. */
static inline int finite(double x) { return x - x == 0.0; }

static inline uint32_t chunks(uint32_t n) { return (n + PROGRESS_ELEMS - 1) / PROGRESS_ELEMS; }

VH_EXPORT("data_stats")
int32_t data_stats(const uint8_t *in, uint32_t in_len, const double *params, int32_t n_params,
                   vh_result *result) {
    int32_t bins;
    if (n_params != 1) return vh_fail(VH_BAD_PARAMS, "wrong number of params");
    if (!vh_int_param(params[0], 1, 65536, &bins))
        return vh_fail(VH_BAD_PARAMS, "bins must be an integer in 1..65536");
    if (in_len % 8u) return vh_fail(VH_BAD_INPUT, "input length must be a multiple of 8 (f64)");
    const double *x = (const double *)in;
    uint32_t n = in_len / 8u;
    double *out = vh_alloc(8u * (5u + (uint32_t)bins));
    uint32_t *counts = vh_alloc(4u * (uint32_t)bins);
    if (!out || !counts) return VH_NO_MEMORY;
    memset(counts, 0, 4u * (uint32_t)bins);
    int32_t total = (int32_t)(2u * chunks(n)), done = 0;

    /* Pass 1: count, four interleaved partial sums (element i goes to lane i % 4), min, max. */
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    double mn = __builtin_inf(), mx = -__builtin_inf();
    uint32_t count = 0;
    for (uint32_t start = 0; start < n; start += PROGRESS_ELEMS) {
        uint32_t end = n - start < PROGRESS_ELEMS ? n : start + PROGRESS_ELEMS;
        uint32_t i = start;
        for (; i + 4 <= end; i += 4) {
            double a = x[i], b = x[i + 1], c = x[i + 2], d = x[i + 3];
            int fa = finite(a), fb = finite(b), fc = finite(c), fd = finite(d);
            s0 += fa ? a : 0.0;
            s1 += fb ? b : 0.0;
            s2 += fc ? c : 0.0;
            s3 += fd ? d : 0.0;
            count += (uint32_t)(fa + fb + fc + fd);
            mn = (fa && a < mn) ? a : mn;
            mx = (fa && a > mx) ? a : mx;
            mn = (fb && b < mn) ? b : mn;
            mx = (fb && b > mx) ? b : mx;
            mn = (fc && c < mn) ? c : mn;
            mx = (fc && c > mx) ? c : mx;
            mn = (fd && d < mn) ? d : mn;
            mx = (fd && d > mx) ? d : mx;
        }
        for (; i < end; i++) {
            double a = x[i];
            if (!finite(a)) continue;
            if ((i & 3u) == 0) s0 += a;
            else if ((i & 3u) == 1) s1 += a;
            else s2 += a;
            count++;
            mn = a < mn ? a : mn;
            mx = a > mx ? a : mx;
        }
        vh_progress(++done, total);
    }
    if (count == 0) {
        double nan = __builtin_nan("");
        out[0] = 0.0;
        out[1] = out[2] = out[3] = out[4] = nan;
        for (int32_t k = 0; k < bins; k++) out[5 + k] = 0.0;
        return vh_done(result, out, 8u * (5u + (uint32_t)bins));
    }
    double mean = ((s0 + s1) + (s2 + s3)) / (double)count;

    /* Pass 2: squared deviations (same lanes) and the histogram over [min, max]. */
    double q0 = 0.0, q1 = 0.0, q2 = 0.0, q3 = 0.0;
    double scale = mx > mn ? (double)bins / (mx - mn) : 0.0;
    double fbins = (double)bins;
    int32_t last = bins - 1;
    for (uint32_t start = 0; start < n; start += PROGRESS_ELEMS) {
        uint32_t end = n - start < PROGRESS_ELEMS ? n : start + PROGRESS_ELEMS;
        uint32_t i = start;
        for (; i + 4 <= end; i += 4) {
            double a = x[i] - mean, b = x[i + 1] - mean, c = x[i + 2] - mean,
                   d = x[i + 3] - mean;
            q0 += finite(x[i]) ? a * a : 0.0;
            q1 += finite(x[i + 1]) ? b * b : 0.0;
            q2 += finite(x[i + 2]) ? c * c : 0.0;
            q3 += finite(x[i + 3]) ? d * d : 0.0;
        }
        for (; i < end; i++) {
            if (!finite(x[i])) continue;
            double a = x[i] - mean;
            if ((i & 3u) == 0) q0 += a * a;
            else if ((i & 3u) == 1) q1 += a * a;
            else q2 += a * a;
        }
        for (i = start; i < end; i++) {
            double v = x[i];
            if (!finite(v)) continue;
            double t = (v - mn) * scale;
            counts[t < fbins ? (int32_t)t : last]++;
        }
        vh_progress(++done, total);
    }
    out[0] = (double)count;
    out[1] = mean;
    out[2] = __builtin_sqrt(((q0 + q1) + (q2 + q3)) / (double)count);
    out[3] = mn;
    out[4] = mx;
    for (int32_t k = 0; k < bins; k++) out[5 + k] = (double)counts[k];
    return vh_done(result, out, 8u * (5u + (uint32_t)bins));
}

/* ---- data.sort -------------------------------------------------------------------------- */

/* LSD radix sort on order-preserving unsigned keys, 11-bit digits; a pass is skipped when all
 * keys share its digit. Stable, so equal keys (identical bit patterns) keep their order. */
#define DIGIT_BITS 11
#define DIGITS (1u << DIGIT_BITS)

static inline uint64_t f64_key(uint64_t u) {
    return (u >> 63) ? ~u : (u | 0x8000000000000000ull);
}
static inline uint64_t f64_unkey(uint64_t k) {
    return (k >> 63) ? (k & 0x7fffffffffffffffull) : ~k;
}
static inline int is_nan_bits(uint64_t u) {
    return (u & 0x7fffffffffffffffull) > 0x7ff0000000000000ull;
}

/* Sorts n keys; returns the buffer holding them (a or b). */
static uint64_t *radix64(uint64_t *a, uint64_t *b, uint32_t n, int key_bits, uint32_t *hist) {
    int passes = (key_bits + DIGIT_BITS - 1) / DIGIT_BITS;
    memset(hist, 0, 4u * DIGITS * (uint32_t)passes);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t k = a[i];
        for (int p = 0; p < passes; p++) hist[p * DIGITS + ((k >> (p * DIGIT_BITS)) & (DIGITS - 1))]++;
    }
    for (int p = 0; p < passes; p++) {
        uint32_t *h = hist + p * DIGITS;
        int trivial = 0;
        uint32_t sum = 0;
        for (uint32_t d = 0; d < DIGITS; d++) {
            if (h[d] == n) trivial = 1;
            uint32_t c = h[d];
            h[d] = sum;
            sum += c;
        }
        if (trivial) continue;
        int shift = p * DIGIT_BITS;
        for (uint32_t i = 0; i < n; i++) {
            uint64_t k = a[i];
            b[h[(k >> shift) & (DIGITS - 1)]++] = k;
        }
        uint64_t *t = a;
        a = b;
        b = t;
        vh_progress(p + 1, passes);
    }
    return a;
}

static uint32_t *radix32(uint32_t *a, uint32_t *b, uint32_t n, uint32_t *hist) {
    const int passes = 3;
    memset(hist, 0, 4u * DIGITS * passes);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = a[i];
        for (int p = 0; p < passes; p++) hist[p * DIGITS + ((k >> (p * DIGIT_BITS)) & (DIGITS - 1))]++;
    }
    for (int p = 0; p < passes; p++) {
        uint32_t *h = hist + p * DIGITS;
        int trivial = 0;
        uint32_t sum = 0;
        for (uint32_t d = 0; d < DIGITS; d++) {
            if (h[d] == n) trivial = 1;
            uint32_t c = h[d];
            h[d] = sum;
            sum += c;
        }
        if (trivial) continue;
        int shift = p * DIGIT_BITS;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t k = a[i];
            b[h[(k >> shift) & (DIGITS - 1)]++] = k;
        }
        uint32_t *t = a;
        a = b;
        b = t;
        vh_progress(p + 1, passes);
    }
    return a;
}

VH_EXPORT("data_sort")
int32_t data_sort(const uint8_t *in, uint32_t in_len, const double *params, int32_t n_params,
                  vh_result *result) {
    int32_t dtype;
    if (n_params != 1) return vh_fail(VH_BAD_PARAMS, "wrong number of params");
    if (!vh_int_param(params[0], 0, 1, &dtype))
        return vh_fail(VH_BAD_PARAMS, "dtype must be f64 (0) or i32 (1)");
    uint32_t size = dtype == 0 ? 8u : 4u;
    if (in_len % size)
        return vh_fail(VH_BAD_INPUT, dtype == 0 ? "input length must be a multiple of 8 (f64)"
                                                : "input length must be a multiple of 4 (i32)");
    uint32_t n = in_len / size;
    uint32_t *hist = vh_alloc(4u * DIGITS * 6u);
    uint8_t *work = vh_alloc(in_len);
    uint8_t *out = vh_alloc(in_len);
    if (!hist || !work || !out) return VH_NO_MEMORY;

    if (dtype == 1) {
        uint32_t *k = (uint32_t *)work;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, in + 4u * i, 4);
            k[i] = u ^ 0x80000000u;
        }
        uint32_t *sorted = radix32(k, (uint32_t *)out, n, hist);
        for (uint32_t i = 0; i < n; i++) sorted[i] ^= 0x80000000u;
        return vh_done(result, sorted, in_len);
    }
    /* Keys of the non-NaN values go to the front of work; NaNs keep their bits and order and go
     * to the back of out, which is where they end up. */
    uint64_t *k = (uint64_t *)work, *o = (uint64_t *)out;
    uint32_t m = 0, nans = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t u;
        memcpy(&u, in + 8u * i, 8);
        if (is_nan_bits(u)) nans++;
        else k[m++] = f64_key(u);
    }
    if (nans) {
        for (uint32_t i = 0, j = m; i < n; i++) {
            uint64_t u;
            memcpy(&u, in + 8u * i, 8);
            if (is_nan_bits(u)) o[j++] = u;
        }
    }
    uint64_t *sorted = radix64(k, o, m, 64, hist);
    if (sorted != o) memcpy(o, sorted, 8u * m);
    for (uint32_t i = 0; i < m; i++) o[i] = f64_unkey(o[i]);
    return vh_done(result, out, in_len);
}
