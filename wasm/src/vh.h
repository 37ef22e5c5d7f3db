/* The Veraltheim kernel ABI, and the shared runtime of every kernel (built-in or yours).
 *
 * The same sources build two ways: for wasm32 (clang or zig cc, -nostdlib) and natively
 * (gcc -O2 -shared -fPIC) as the benchmark's baseline. `veraltheim-kernel new NAME --lang c DIR`
 * copies this header and vh.c into a starter project; README.md, "Your own kernels", has more.
 *
 * A kernel is one exported function
 *     VH_EXPORT("my_kernel")
 *     int32_t my_kernel(const uint8_t *in, uint32_t in_len, const double *params,
 *                       int32_t n_params, vh_result *result)
 * which on wasm32 lowers to (i32, i32, i32, i32, i32) -> i32.
 * - in / in_len: the input bytes (what the spec's input kind says: RGBA8 pixels, f64 values...).
 *   The kernel may read it and, if it wants, overwrite it in place.
 * - params: n_params f64 values in the order of the spec's params (an enum param arrives as the
 *   index of its choice). The host has checked types and ranges; check them again anyway.
 * - result: set it with `return vh_done(result, out, out_len);` where out lives in wasm memory
 *   (from vh_alloc, or the input block itself).
 * - return VH_OK, or vh_fail(VH_BAD_PARAMS | VH_BAD_INPUT | VH_NO_MEMORY, "why"): the host
 *   shows "why" (vh_error) to the user. A trap (e.g. __builtin_trap) stops the job too.
 * - memory: vh_alloc is a bump allocator; the host calls vh_begin before every job, which frees
 *   everything the previous job allocated. The host caps the memory (1 GiB by default).
 * - vh_progress(done, total): call it every few milliseconds of work in a long kernel; it is the
 *   one import a module may have, and needs the "progress" grant in the spec.
 * The module exports memory, vh_alloc, vh_reset, vh_begin, vh_error (all in vh.c) and its
 * kernels; any other import is refused at install.
 */
#ifndef VH_H
#define VH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __wasm__
#define VH_EXPORT(name) __attribute__((export_name(name)))
#else
#define VH_EXPORT(name) __attribute__((visibility("default")))
#endif

#if defined(__wasm_simd128__)
#include <wasm_simd128.h>
#define VH_SIMD 1
#else
#define VH_SIMD 0
#endif

/* Return codes of a kernel. */
#define VH_OK 0
#define VH_BAD_PARAMS (-1)
#define VH_BAD_INPUT (-2)
#define VH_NO_MEMORY (-3)

/* Largest image side any kernel accepts. */
#define VH_MAX_SIDE 16384

/* {u32 out_ptr, u32 out_len} on wasm32; pointer-sized on the native build. */
typedef struct {
    uintptr_t ptr;
    uintptr_t len;
} vh_result;

void *vh_alloc(uint32_t size);
void vh_reset(void);
void *vh_begin(uint32_t size);
const char *vh_error(void);

/* Sets the error message and returns code (so kernels can `return vh_fail(...)`). */
int32_t vh_fail(int32_t code, const char *message);

/* 1 when p is an integer in lo..hi (NaN and infinities fail), storing it in *out. */
int vh_int_param(double p, int32_t lo, int32_t hi, int32_t *out);

/* 1 when p is a finite number in lo..hi. */
int vh_float_param(double p, double lo, double hi);

/* Publishes the output and returns VH_OK. */
int32_t vh_done(vh_result *result, const void *out, uint32_t out_len);

/* Progress of a long kernel; the host may stop the job at this point. */
#ifdef __wasm__
__attribute__((import_module("env"), import_name("vh_progress"))) void vh_progress(int32_t done,
                                                                                   int32_t total);
#else
void vh_progress(int32_t done, int32_t total);
#endif

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);

#endif
