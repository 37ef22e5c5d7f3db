/* Data kernels on little-endian arrays: statistics with a histogram, and sorting. */
#include "vh.h"

/* Elements between two progress reports (1 MiB of f64). */
#define PROGRESS_ELEMS (1u << 17)

/* ---- data.stats ------------------------------------------------------------------------- */

/* Finite values only: x - x is 0 for them, NaN for NaN and the infinities. */
static inline int is_finite(double x) { return x - x == 0.0; }

static inline uint32_t chunks(uint32_t n) { return (n + PROGRESS_ELEMS - 1) / PROGRESS_ELEMS; }

/* Running state of the statistics, four lanes: element i belongs to lane i % 4. */
typedef struct {
    double sum[4], lo[4], hi[4];
    uint32_t count;
} lanes4;

/* Pass 1 over x[start, end) with start % 4 == 0: count, lane sums, lane minima and maxima. */
static void stats_pass1(const double *x, uint32_t start, uint32_t end, lanes4 *s) {
    uint32_t i = start;
#if VH_SIMD
    const v128_t zero = wasm_f64x2_splat(0.0), inf = wasm_f64x2_splat(__builtin_inf()),
                 ninf = wasm_f64x2_splat(-__builtin_inf());
    v128_t s01 = wasm_v128_load(s->sum), s23 = wasm_v128_load(s->sum + 2);
    v128_t lo01 = wasm_v128_load(s->lo), lo23 = wasm_v128_load(s->lo + 2);
    v128_t hi01 = wasm_v128_load(s->hi), hi23 = wasm_v128_load(s->hi + 2);
    v128_t c01 = wasm_i64x2_splat(0), c23 = c01;
    for (; i + 4 <= end; i += 4) {
        v128_t a = wasm_v128_load(x + i), b = wasm_v128_load(x + i + 2);
        v128_t fa = wasm_f64x2_eq(wasm_f64x2_sub(a, a), zero);
        v128_t fb = wasm_f64x2_eq(wasm_f64x2_sub(b, b), zero);
        s01 = wasm_f64x2_add(s01, wasm_v128_and(a, fa));
        s23 = wasm_f64x2_add(s23, wasm_v128_and(b, fb));
        c01 = wasm_i64x2_sub(c01, fa);
        c23 = wasm_i64x2_sub(c23, fb);
        /* pmin(m, v) = v < m ? v : m, as the scalar code. */
        lo01 = wasm_f64x2_pmin(lo01, wasm_v128_bitselect(a, inf, fa));
        lo23 = wasm_f64x2_pmin(lo23, wasm_v128_bitselect(b, inf, fb));
        hi01 = wasm_f64x2_pmax(hi01, wasm_v128_bitselect(a, ninf, fa));
        hi23 = wasm_f64x2_pmax(hi23, wasm_v128_bitselect(b, ninf, fb));
    }
    wasm_v128_store(s->sum, s01);
    wasm_v128_store(s->sum + 2, s23);
    wasm_v128_store(s->lo, lo01);
    wasm_v128_store(s->lo + 2, lo23);
    wasm_v128_store(s->hi, hi01);
    wasm_v128_store(s->hi + 2, hi23);
    v128_t c = wasm_i64x2_add(c01, c23);
    s->count += (uint32_t)(wasm_i64x2_extract_lane(c, 0) + wasm_i64x2_extract_lane(c, 1));
#else
    double s0 = s->sum[0], s1 = s->sum[1], s2 = s->sum[2], s3 = s->sum[3];
    double l0 = s->lo[0], l1 = s->lo[1], l2 = s->lo[2], l3 = s->lo[3];
    double h0 = s->hi[0], h1 = s->hi[1], h2 = s->hi[2], h3 = s->hi[3];
    uint32_t count = 0;
    for (; i + 4 <= end; i += 4) {
        double a = x[i], b = x[i + 1], c = x[i + 2], d = x[i + 3];
        int fa = is_finite(a), fb = is_finite(b), fc = is_finite(c), fd = is_finite(d);
        s0 += fa ? a : 0.0;
        s1 += fb ? b : 0.0;
        s2 += fc ? c : 0.0;
        s3 += fd ? d : 0.0;
        count += (uint32_t)(fa + fb + fc + fd);
        l0 = (fa && a < l0) ? a : l0;
        l1 = (fb && b < l1) ? b : l1;
        l2 = (fc && c < l2) ? c : l2;
        l3 = (fd && d < l3) ? d : l3;
        h0 = (fa && a > h0) ? a : h0;
        h1 = (fb && b > h1) ? b : h1;
        h2 = (fc && c > h2) ? c : h2;
        h3 = (fd && d > h3) ? d : h3;
    }
    s->sum[0] = s0, s->sum[1] = s1, s->sum[2] = s2, s->sum[3] = s3;
    s->lo[0] = l0, s->lo[1] = l1, s->lo[2] = l2, s->lo[3] = l3;
    s->hi[0] = h0, s->hi[1] = h1, s->hi[2] = h2, s->hi[3] = h3;
    s->count += count;
#endif
    for (; i < end; i++) {
        double a = x[i];
        if (!is_finite(a)) continue;
        uint32_t j = i & 3u;
        s->sum[j] += a;
        s->lo[j] = a < s->lo[j] ? a : s->lo[j];
        s->hi[j] = a > s->hi[j] ? a : s->hi[j];
        s->count++;
    }
}

/* Pass 2 over x[start, end): lane sums of squared deviations, and the histogram. Each lane has
 * its own bins (bins + 1 counters, the last one collects non-finite values), so repeated bins
 * do not serialise on one counter. */
static void stats_pass2(const double *x, uint32_t start, uint32_t end, double mean, double lo,
                        double scale, int32_t bins, double *sq, uint32_t *counts) {
    uint32_t i = start;
    uint32_t stride = (uint32_t)bins + 1u;
    uint32_t *c0 = counts, *c1 = counts + stride, *c2 = c1 + stride, *c3 = c2 + stride;
    double fbins = (double)bins;
#if VH_SIMD
    const v128_t zero = wasm_f64x2_splat(0.0), m = wasm_f64x2_splat(mean),
                 lov = wasm_f64x2_splat(lo), sc = wasm_f64x2_splat(scale),
                 fb = wasm_f64x2_splat(fbins);
    const v128_t last = wasm_i32x4_splat(bins - 1), dump = wasm_i32x4_splat(bins);
    v128_t q01 = wasm_v128_load(sq), q23 = wasm_v128_load(sq + 2);
    for (; i + 4 <= end; i += 4) {
        v128_t a = wasm_v128_load(x + i), b = wasm_v128_load(x + i + 2);
        v128_t fa = wasm_f64x2_eq(wasm_f64x2_sub(a, a), zero);
        v128_t fbm = wasm_f64x2_eq(wasm_f64x2_sub(b, b), zero);
        v128_t da = wasm_f64x2_sub(a, m), db = wasm_f64x2_sub(b, m);
        q01 = wasm_f64x2_add(q01, wasm_v128_and(wasm_f64x2_mul(da, da), fa));
        q23 = wasm_f64x2_add(q23, wasm_v128_and(wasm_f64x2_mul(db, db), fbm));
        v128_t ta = wasm_f64x2_mul(wasm_f64x2_sub(a, lov), sc);
        v128_t tb = wasm_f64x2_mul(wasm_f64x2_sub(b, lov), sc);
        /* i32 lanes 0,1 from a and 2,3 from b; t >= bins (or NaN) -> last bin. */
        v128_t ia = wasm_i32x4_trunc_sat_f64x2_zero(ta), ib = wasm_i32x4_trunc_sat_f64x2_zero(tb);
        v128_t idx = wasm_i32x4_shuffle(ia, ib, 0, 1, 4, 5);
        v128_t ok = wasm_i32x4_shuffle(wasm_f64x2_lt(ta, fb), wasm_f64x2_lt(tb, fb), 0, 2, 4, 6);
        v128_t fin = wasm_i32x4_shuffle(fa, fbm, 0, 2, 4, 6);
        idx = wasm_v128_bitselect(wasm_v128_bitselect(idx, last, ok), dump, fin);
        c0[wasm_i32x4_extract_lane(idx, 0)]++;
        c1[wasm_i32x4_extract_lane(idx, 1)]++;
        c2[wasm_i32x4_extract_lane(idx, 2)]++;
        c3[wasm_i32x4_extract_lane(idx, 3)]++;
    }
    wasm_v128_store(sq, q01);
    wasm_v128_store(sq + 2, q23);
#else
    double q0 = sq[0], q1 = sq[1], q2 = sq[2], q3 = sq[3];
    for (; i + 4 <= end; i += 4) {
        double a = x[i], b = x[i + 1], c = x[i + 2], d = x[i + 3];
        int fa = is_finite(a), fb = is_finite(b), fc = is_finite(c), fd = is_finite(d);
        double da = a - mean, db = b - mean, dc = c - mean, dd = d - mean;
        q0 += fa ? da * da : 0.0;
        q1 += fb ? db * db : 0.0;
        q2 += fc ? dc * dc : 0.0;
        q3 += fd ? dd * dd : 0.0;
        double ta = (a - lo) * scale, tb = (b - lo) * scale, tc = (c - lo) * scale,
               td = (d - lo) * scale;
        c0[fa ? (ta < fbins ? (int32_t)ta : bins - 1) : bins]++;
        c1[fb ? (tb < fbins ? (int32_t)tb : bins - 1) : bins]++;
        c2[fc ? (tc < fbins ? (int32_t)tc : bins - 1) : bins]++;
        c3[fd ? (td < fbins ? (int32_t)td : bins - 1) : bins]++;
    }
    sq[0] = q0, sq[1] = q1, sq[2] = q2, sq[3] = q3;
#endif
    for (; i < end; i++) {
        double a = x[i];
        uint32_t *c = counts + (i & 3u) * stride;
        if (!is_finite(a)) {
            c[bins]++;
            continue;
        }
        double d = a - mean;
        sq[i & 3u] += d * d;
        double t = (a - lo) * scale;
        c[t < fbins ? (int32_t)t : bins - 1]++;
    }
}

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
    uint32_t stride = (uint32_t)bins + 1u;
    double *out = vh_alloc(8u * (5u + (uint32_t)bins));
    uint32_t *counts = vh_alloc(16u * stride);
    if (!out || !counts) return VH_NO_MEMORY;
    memset(counts, 0, 16u * stride);
    int32_t total = (int32_t)(2u * chunks(n)), done = 0;

    lanes4 s = {{0.0, 0.0, 0.0, 0.0},
                {__builtin_inf(), __builtin_inf(), __builtin_inf(), __builtin_inf()},
                {-__builtin_inf(), -__builtin_inf(), -__builtin_inf(), -__builtin_inf()},
                0};
    for (uint32_t start = 0; start < n; start += PROGRESS_ELEMS) {
        uint32_t end = n - start < PROGRESS_ELEMS ? n : start + PROGRESS_ELEMS;
        stats_pass1(x, start, end, &s);
        vh_progress(++done, total);
    }
    uint32_t count = s.count;
    if (count == 0) {
        double nan = __builtin_nan("");
        out[0] = 0.0;
        out[1] = out[2] = out[3] = out[4] = nan;
        for (int32_t k = 0; k < bins; k++) out[5 + k] = 0.0;
        return vh_done(result, out, 8u * (5u + (uint32_t)bins));
    }
    /* Lanes combine in order; a lane that saw no finite value holds +-inf and never wins. */
    double lo = s.lo[0], hi = s.hi[0];
    for (int j = 1; j < 4; j++) {
        lo = s.lo[j] < lo ? s.lo[j] : lo;
        hi = s.hi[j] > hi ? s.hi[j] : hi;
    }
    double mean = ((s.sum[0] + s.sum[1]) + (s.sum[2] + s.sum[3])) / (double)count;
    double scale = hi > lo ? (double)bins / (hi - lo) : 0.0;
    double sq[4] = {0.0, 0.0, 0.0, 0.0};
    for (uint32_t start = 0; start < n; start += PROGRESS_ELEMS) {
        uint32_t end = n - start < PROGRESS_ELEMS ? n : start + PROGRESS_ELEMS;
        stats_pass2(x, start, end, mean, lo, scale, bins, sq, counts);
        vh_progress(++done, total);
    }
    out[0] = (double)count;
    out[1] = mean;
    out[2] = __builtin_sqrt(((sq[0] + sq[1]) + (sq[2] + sq[3])) / (double)count);
    out[3] = lo;
    out[4] = hi;
    for (int32_t k = 0; k < bins; k++)
        out[5 + k] = (double)(counts[k] + counts[stride + k] + counts[2 * stride + k] +
                              counts[3 * stride + k]);
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

#define F64_PASSES ((64 + DIGIT_BITS - 1) / DIGIT_BITS)
#define I32_PASSES ((32 + DIGIT_BITS - 1) / DIGIT_BITS)
#define DIGIT(k, p) ((uint32_t)((k) >> ((p) * DIGIT_BITS)) & (DIGITS - 1u))

/* Counts of one digit -> start offsets. Returns 0 when one value holds all n keys: that pass
 * would not move anything and is skipped. */
static int digit_offsets(uint32_t *h, uint32_t n) {
    int useful = 1;
    uint32_t sum = 0;
    for (uint32_t d = 0; d < DIGITS; d++) {
        uint32_t c = h[d];
        if (c == n) useful = 0;
        h[d] = sum;
        sum += c;
    }
    return useful;
}

/* One stable counting-sort pass; unrolled so loop overhead (and the host's interruption check
 * on every back edge) is paid once per four keys. */
#define SCATTER(a, b, n, p, h, out)                     \
    do {                                                \
        uint32_t i_ = 0;                                \
        for (; i_ + 4 <= (n); i_ += 4) {                \
            SCATTER1(a[i_], b, p, h, out);              \
            SCATTER1(a[i_ + 1], b, p, h, out);          \
            SCATTER1(a[i_ + 2], b, p, h, out);          \
            SCATTER1(a[i_ + 3], b, p, h, out);          \
        }                                               \
        for (; i_ < (n); i_++) SCATTER1(a[i_], b, p, h, out); \
    } while (0)
#define SCATTER1(k, b, p, h, out)                       \
    do {                                                \
        __typeof__(k) k_ = (k);                         \
        b[h[DIGIT(k_, p)]++] = out(k_);                 \
    } while (0)
#define KEEP(k) (k)
#define I32_UNKEY(k) ((k) ^ 0x80000000u)

/* One stable counting-sort pass; unrolled so loop overhead (and the host's interruption check
 * on every back edge) is paid once per four keys. The last pass turns keys back into values. */
static void scatter64(const uint64_t *a, uint64_t *b, uint32_t n, int p, uint32_t *h, int last) {
    if (last) SCATTER(a, b, n, p, h, f64_unkey);
    else SCATTER(a, b, n, p, h, KEEP);
}

static void scatter32(const uint32_t *a, uint32_t *b, uint32_t n, int p, uint32_t *h, int last) {
    if (last) SCATTER(a, b, n, p, h, I32_UNKEY);
    else SCATTER(a, b, n, p, h, KEEP);
}

/* Offsets for every pass; returns the last pass that moves anything, or -1. */
static int plan_passes(uint32_t *hist, int passes, uint32_t n, int *useful) {
    int last = -1;
    for (int p = 0; p < passes; p++) {
        useful[p] = digit_offsets(hist + p * DIGITS, n);
        if (useful[p]) last = p;
    }
    return last;
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
    uint32_t *hist = vh_alloc(4u * DIGITS * F64_PASSES);
    uint8_t *work = vh_alloc(in_len);
    if (!hist || !work) return VH_NO_MEMORY;
    memset(hist, 0, 4u * DIGITS * F64_PASSES);
    /* The input block belongs to this job: sort in it and one more buffer, not three. */
    uint8_t *buf = (uint8_t *)(uintptr_t)in;

    if (dtype == 1) {
        uint32_t *a = (uint32_t *)buf, *b = (uint32_t *)work;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t k = a[i] ^ 0x80000000u;
            a[i] = k;
            for (int p = 0; p < I32_PASSES; p++) hist[p * DIGITS + DIGIT(k, p)]++;
        }
        int useful[I32_PASSES];
        int last = plan_passes(hist, I32_PASSES, n, useful);
        for (int p = 0; p < I32_PASSES; p++) {
            if (!useful[p]) continue;
            scatter32(a, b, n, p, hist + p * DIGITS, p == last);
            uint32_t *t = a;
            a = b;
            b = t;
            vh_progress(p + 1, I32_PASSES);
        }
        if (last < 0)
            for (uint32_t i = 0; i < n; i++) a[i] = I32_UNKEY(a[i]);
        vh_progress(I32_PASSES, I32_PASSES);
        return vh_done(result, a, in_len);
    }
    /* Keys of the non-NaN values are packed at the front of buf; NaNs (bits and order kept) go
     * to the back of work, last one first. */
    uint64_t *a = (uint64_t *)buf, *b = (uint64_t *)work;
    uint32_t m = 0, nans = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t u = a[i];
        if (is_nan_bits(u)) {
            b[n - 1 - nans++] = u;
            continue;
        }
        uint64_t k = f64_key(u);
        a[m++] = k;
        for (int p = 0; p < F64_PASSES; p++) hist[p * DIGITS + DIGIT(k, p)]++;
    }
    uint64_t *keys = a;
    int useful[F64_PASSES];
    int last = plan_passes(hist, F64_PASSES, m, useful);
    for (int p = 0; p < F64_PASSES; p++) {
        if (!useful[p]) continue;
        scatter64(a, b, m, p, hist + p * DIGITS, p == last);
        uint64_t *t = a;
        a = b;
        b = t;
        vh_progress(p + 1, F64_PASSES);
    }
    if (last < 0)
        for (uint32_t i = 0; i < m; i++) a[i] = f64_unkey(a[i]);
    if (a == keys) {
        for (uint32_t j = 0; j < nans; j++) a[m + j] = b[n - 1 - j];
    } else {
        for (uint32_t i = m, j = n - 1; i < j; i++, j--) {
            uint64_t t = a[i];
            a[i] = a[j];
            a[j] = t;
        }
    }
    vh_progress(F64_PASSES, F64_PASSES);
    return vh_done(result, a, in_len);
}
