/* Mandelbrot set rendered to RGBA8, one row range at a time (so a render splits into tiles).
 * All arithmetic is f64 in the order written (no FMA), so any IEEE-754 reference matches.
 */
#include "vh.h"

/* Pixel-iterations between two progress reports (a few ms of work). */
#define PROGRESS_WORK (1u << 22)

/* Bernstein-polynomial palette; n == max_iter (inside the set) is opaque black. */
static void colour(uint8_t *px, int32_t n, int32_t max_iter) {
    if (n >= max_iter) {
        px[0] = px[1] = px[2] = 0;
    } else {
        double t = (double)n / (double)max_iter;
        double u = 1.0 - t;
        px[0] = (uint8_t)(int32_t)(9.0 * u * t * t * t * 255.0);
        px[1] = (uint8_t)(int32_t)(15.0 * u * u * t * t * 255.0);
        px[2] = (uint8_t)(int32_t)(8.5 * u * u * u * t * 255.0);
    }
    px[3] = 255;
}

/* Escape count of c = (cx, cy): the first i with |z_i|^2 > 4, z_0 = 0, or max_iter. */
static int32_t escape(double cx, double cy, int32_t max_iter) {
    double zx = 0.0, zy = 0.0;
    int32_t i = 0;
    for (; i < max_iter; i++) {
        double x2 = zx * zx, y2 = zy * zy;
        if (x2 + y2 > 4.0) break;
        zy = 2.0 * zx * zy + cy;
        zx = x2 - y2 + cx;
    }
    return i;
}

#if VH_SIMD
/* One iteration on two points; a lane stops counting once it has escaped (then its z may run
 * off to inf/NaN, which keeps it escaped). */
#define STEP(zx, zy, cx, cy, active, count)                                                  \
    do {                                                                                     \
        v128_t x2_ = wasm_f64x2_mul(zx, zx), y2_ = wasm_f64x2_mul(zy, zy);                   \
        active = wasm_v128_and(active, wasm_f64x2_le(wasm_f64x2_add(x2_, y2_), four));       \
        count = wasm_i64x2_sub(count, active);                                               \
        zy = wasm_f64x2_add(wasm_f64x2_mul(wasm_f64x2_mul(two, zx), zy), cy);                \
        zx = wasm_f64x2_add(wasm_f64x2_sub(x2_, y2_), cx);                                   \
    } while (0)

/* Escape counts of four points: two independent vector chains for instruction-level
 * parallelism, four iterations per loop trip so the loop overhead (and the host's interruption
 * check on the back edge) is paid once per four iterations. */
static void escape4(const double *cx, double cy, int32_t max_iter, int32_t *n) {
    const v128_t two = wasm_f64x2_splat(2.0), four = wasm_f64x2_splat(4.0);
    v128_t ca = wasm_v128_load(cx), cb = wasm_v128_load(cx + 2), cyv = wasm_f64x2_splat(cy);
    v128_t xa = wasm_f64x2_splat(0.0), ya = xa, xb = xa, yb = xa;
    v128_t na = wasm_i64x2_splat(0), nb = na;
    v128_t aa = wasm_i64x2_splat(-1), ab = aa;
    int32_t i = 0;
    for (; i + 4 <= max_iter; i += 4) {
        STEP(xa, ya, ca, cyv, aa, na);
        STEP(xb, yb, cb, cyv, ab, nb);
        STEP(xa, ya, ca, cyv, aa, na);
        STEP(xb, yb, cb, cyv, ab, nb);
        STEP(xa, ya, ca, cyv, aa, na);
        STEP(xb, yb, cb, cyv, ab, nb);
        STEP(xa, ya, ca, cyv, aa, na);
        STEP(xb, yb, cb, cyv, ab, nb);
        if (!wasm_v128_any_true(wasm_v128_or(aa, ab))) break;
    }
    if (wasm_v128_any_true(wasm_v128_or(aa, ab))) {
        for (; i < max_iter; i++) {
            STEP(xa, ya, ca, cyv, aa, na);
            STEP(xb, yb, cb, cyv, ab, nb);
        }
    }
    n[0] = (int32_t)wasm_i64x2_extract_lane(na, 0);
    n[1] = (int32_t)wasm_i64x2_extract_lane(na, 1);
    n[2] = (int32_t)wasm_i64x2_extract_lane(nb, 0);
    n[3] = (int32_t)wasm_i64x2_extract_lane(nb, 1);
}
#endif

VH_EXPORT("fractal_mandelbrot")
int32_t fractal_mandelbrot(const uint8_t *in, uint32_t in_len, const double *params,
                           int32_t n_params, vh_result *result) {
    (void)in;
    (void)in_len;
    int32_t w, h, max_iter, row_start, row_end;
    if (n_params != 8) return vh_fail(VH_BAD_PARAMS, "wrong number of params");
    if (!vh_int_param(params[0], 1, VH_MAX_SIDE, &w))
        return vh_fail(VH_BAD_PARAMS, "width must be an integer in 1..16384");
    if (!vh_int_param(params[1], 1, VH_MAX_SIDE, &h))
        return vh_fail(VH_BAD_PARAMS, "height must be an integer in 1..16384");
    double center_x = params[2], center_y = params[3], scale = params[4];
    if (!vh_float_param(center_x, -4.0, 4.0) || !vh_float_param(center_y, -4.0, 4.0))
        return vh_fail(VH_BAD_PARAMS, "center_x and center_y must be numbers in -4..4");
    if (!vh_float_param(scale, 1e-12, 16.0))
        return vh_fail(VH_BAD_PARAMS, "scale must be a number in 1e-12..16");
    if (!vh_int_param(params[5], 1, 1000000, &max_iter))
        return vh_fail(VH_BAD_PARAMS, "max_iter must be an integer in 1..1000000");
    if (!vh_int_param(params[6], 0, VH_MAX_SIDE, &row_start) ||
        !vh_int_param(params[7], 0, VH_MAX_SIDE, &row_end))
        return vh_fail(VH_BAD_PARAMS, "row_start and row_end must be integers in 0..16384");
    if (row_end == 0) row_end = h;
    if (row_end > h || row_start >= row_end)
        return vh_fail(VH_BAD_PARAMS, "need row_start < row_end <= height (row_end 0 = height)");

    uint32_t out_len = (uint32_t)(row_end - row_start) * (uint32_t)w * 4u;
    uint8_t *out = vh_alloc(out_len);
    if (!out) return VH_NO_MEMORY;
    double step = scale / (double)w;
    double half_w = (double)w * 0.5, half_h = (double)h * 0.5;
    uint32_t work = 0;
    for (int32_t py = row_start; py < row_end; py++) {
        double cy = center_y - (((double)py + 0.5) - half_h) * step;
        uint8_t *row = out + (size_t)(py - row_start) * w * 4u;
        int32_t px = 0;
#if VH_SIMD
        for (; px + 4 <= w; px += 4) {
            double cx[4];
            int32_t n[4];
            for (int k = 0; k < 4; k++)
                cx[k] = center_x + (((double)(px + k) + 0.5) - half_w) * step;
            escape4(cx, cy, max_iter, n);
            for (int k = 0; k < 4; k++) colour(row + 4 * (px + k), n[k], max_iter);
        }
#endif
        for (; px < w; px++) {
            double cx = center_x + (((double)px + 0.5) - half_w) * step;
            colour(row + 4 * px, escape(cx, cy, max_iter), max_iter);
        }
        work += (uint32_t)w * (uint32_t)(max_iter < 4096 ? max_iter : 4096);
        if (work >= PROGRESS_WORK) {
            work = 0;
            vh_progress(py + 1 - row_start, row_end - row_start);
        }
    }
    vh_progress(row_end - row_start, row_end - row_start);
    return vh_done(result, out, out_len);
}
