/* Shared runtime for Veraltheim kernels: allocator, error message, params, progress.
 *
 * The same sources build two ways: for wasm32 (clang, -nostdlib, the kernel ABI of
 * README.md, "Kernels") and natively (gcc -O2 -shared -fPIC) as the benchmark's baseline.
 * A kernel is  int32_t name(const uint8_t *in, uint32_t in_len, const double *params,
 *                           int32_t n_params, vh_result *result)
 * which on wasm32 lowers to (i32, i32, i32, i32, i32) -> i32.
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
