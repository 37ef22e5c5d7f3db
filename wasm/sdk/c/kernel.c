/* {{NAME}}: a starter kernel. It inverts the colours of an RGBA8 image; change it to compute
 * what you need, keeping the signature (the ABI is described in vh.h). */
#include "vh.h"

VH_EXPORT("{{EXPORT}}")
int32_t {{EXPORT}}(const uint8_t *in, uint32_t in_len, const double *params, int32_t n_params,
                   vh_result *result) {
    int32_t width, height;
    if (n_params != 2 || !vh_int_param(params[0], 1, VH_MAX_SIDE, &width) ||
        !vh_int_param(params[1], 1, VH_MAX_SIDE, &height))
        return vh_fail(VH_BAD_PARAMS, "width and height must be integers in 1..16384");
    if ((uint64_t)width * (uint64_t)height * 4u != in_len)
        return vh_fail(VH_BAD_INPUT, "the input is not width x height RGBA8 pixels");
    uint8_t *out = vh_alloc(in_len);
    if (!out) return vh_fail(VH_NO_MEMORY, "out of memory");
    uint32_t row = (uint32_t)width * 4u;
    for (int32_t y = 0; y < height; y++) {
        const uint8_t *src = in + (uint32_t)y * row;
        uint8_t *dst = out + (uint32_t)y * row;
        for (uint32_t x = 0; x < row; x += 4) {
            dst[x] = (uint8_t)(255 - src[x]);
            dst[x + 1] = (uint8_t)(255 - src[x + 1]);
            dst[x + 2] = (uint8_t)(255 - src[x + 2]);
            dst[x + 3] = src[x + 3];
        }
        if ((y & 63) == 63) vh_progress(y + 1, height); /* the host may stop the job here */
    }
    vh_progress(height, height);
    return vh_done(result, out, in_len);
}
