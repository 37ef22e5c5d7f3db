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
/* The same iteration on two points at once; a lane stops counting once it escapes. */
static void escape2(double cx0, double cx1, double cy, int32_t max_iter, int32_t *n0,
                    int32_t *n1) {
    v128_t cx = wasm_f64x2_make(cx0, cx1), cyv = wasm_f64x2_splat(cy);
    v128_t zx = wasm_f64x2_splat(0.0), zy = zx, count = wasm_i64x2_splat(0);
    v128_t active = wasm_i64x2_splat(-1);
    const v128_t two = wasm_f64x2_splat(2.0), four = wasm_f64x2_splat(4.0);
    for (int32_t i = 0; i < max_iter; i++) {
        v128_t x2 = wasm_f64x2_mul(zx, zx), y2 = wasm_f64x2_mul(zy, zy);
        active = wasm_v128_and(active, wasm_f64x2_le(wasm_f64x2_add(x2, y2), four));
        if (!wasm_v128_any_true(active)) break;
        count = wasm_i64x2_sub(count, active);
        zy = wasm_f64x2_add(wasm_f64x2_mul(wasm_f64x2_mul(two, zx), zy), cyv);
        zx = wasm_f64x2_add(wasm_f64x2_sub(x2, y2), cx);
    }
    *n0 = (int32_t)wasm_i64x2_extract_lane(count, 0);
    *n1 = (int32_t)wasm_i64x2_extract_lane(count, 1);
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
        for (; px + 2 <= w; px += 2) {
            double cx0 = center_x + (((double)px + 0.5) - half_w) * step;
            double cx1 = center_x + (((double)px + 1.5) - half_w) * step;
            int32_t n0, n1;
            escape2(cx0, cx1, cy, max_iter, &n0, &n1);
            colour(row + 4 * px, n0, max_iter);
            colour(row + 4 * px + 4, n1, max_iter);
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
    return vh_done(result, out, out_len);
}
