#include "vh.h"

static const char *last_error;

int32_t vh_fail(int32_t code, const char *message) {
    last_error = message;
    return code;
}

VH_EXPORT("vh_error") const char *vh_error(void) { return last_error; }

int vh_int_param(double p, int32_t lo, int32_t hi, int32_t *out) {
    if (!(p >= (double)lo && p <= (double)hi)) return 0;
    int32_t v = (int32_t)p;
    if ((double)v != p) return 0;
    *out = v;
    return 1;
}

int vh_float_param(double p, double lo, double hi) { return p >= lo && p <= hi; }

int32_t vh_done(vh_result *result, const void *out, uint32_t out_len) {
    result->ptr = (uintptr_t)out;
    result->len = out_len;
    return VH_OK;
}

#ifdef __wasm__

/* Bump allocator over linear memory: everything above __heap_base belongs to the current job. */
extern unsigned char __heap_base;
static uintptr_t heap_top;

VH_EXPORT("vh_reset") void vh_reset(void) {
    heap_top = ((uintptr_t)&__heap_base + 15u) & ~(uintptr_t)15u;
    last_error = 0;
}

VH_EXPORT("vh_alloc") void *vh_alloc(uint32_t size) {
    if (heap_top == 0) heap_top = ((uintptr_t)&__heap_base + 15u) & ~(uintptr_t)15u;
    uint64_t start = heap_top;
    uint64_t end = (start + (uint64_t)size + 15u) & ~(uint64_t)15u;
    if (end > 0xFFFFFFFFull) {
        last_error = "out of memory: allocation exceeds 4 GiB";
        return 0;
    }
    uint64_t have = (uint64_t)__builtin_wasm_memory_size(0) * 65536u;
    if (end > have) {
        size_t pages = (size_t)((end - have + 65535u) / 65536u);
        if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) {
            last_error = "out of memory: the memory limit was reached";
            return 0;
        }
    }
    heap_top = (uintptr_t)end;
    return (void *)(uintptr_t)start;
}

/* With -mbulk-memory these builtins become memory.copy / memory.fill, not calls. */
void *memcpy(void *dst, const void *src, size_t n) {
    __builtin_memcpy(dst, src, n);
    return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
    __builtin_memmove(dst, src, n);
    return dst;
}

void *memset(void *dst, int c, size_t n) {
    __builtin_memset(dst, c, n);
    return dst;
}

#else /* native baseline: a list of malloc'd blocks freed on reset */

#include <stdlib.h>

typedef struct block {
    struct block *next;
    uint8_t pad[8];
} block;
static block *blocks;

void vh_reset(void) {
    while (blocks) {
        block *next = blocks->next;
        free(blocks);
        blocks = next;
    }
    last_error = 0;
}

void *vh_alloc(uint32_t size) {
    block *b = malloc(sizeof(block) + (size_t)size + 16u);
    if (!b) {
        last_error = "out of memory";
        return 0;
    }
    b->next = blocks;
    blocks = b;
    return (uint8_t *)b + sizeof(block);
}

void vh_progress(int32_t done, int32_t total) {
    (void)done;
    (void)total;
}

#endif

VH_EXPORT("vh_begin") void *vh_begin(uint32_t size) {
    vh_reset();
    return vh_alloc(size);
}
