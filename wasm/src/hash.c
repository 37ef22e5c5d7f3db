/* SHA-256 (FIPS 180-4) of the whole input; output is the 32-byte digest. */
#include "vh.h"

#define PROGRESS_BYTES (1u << 20)

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

static inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static inline uint32_t load_be32(const uint8_t *p) {
#ifdef __wasm__
    /* wasm has no bswap: one 32-bit load and two rotates beat four byte loads. */
    uint32_t x;
    memcpy(&x, p, 4);
    return (rotr(x, 24) & 0x00ff00ffu) | (rotr(x, 8) & 0xff00ff00u);
#else
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
#endif
}

#define S0(x) (rotr(x, 2) ^ rotr(x, 13) ^ rotr(x, 22))
#define S1(x) (rotr(x, 6) ^ rotr(x, 11) ^ rotr(x, 25))
#define s0(x) (rotr(x, 7) ^ rotr(x, 18) ^ ((x) >> 3))
#define s1(x) (rotr(x, 17) ^ rotr(x, 19) ^ ((x) >> 10))
#define CH(e, f, g) ((g) ^ ((e) & ((f) ^ (g))))
#define MAJ(a, b, c) (((a) & (b)) | ((c) & ((a) | (b))))

/* One round with the working variables renamed instead of shifted (fully unrolled). */
#define ROUND(a, b, c, d, e, f, g, h, i, wi)                   \
    do {                                                       \
        uint32_t t1 = h + S1(e) + CH(e, f, g) + K[i] + (wi);   \
        uint32_t t2 = S0(a) + MAJ(a, b, c);                    \
        d += t1;                                               \
        h = t1 + t2;                                           \
    } while (0)

#define W(i) w[(i) & 15]
#define SCHED(i) (W(i) += s1(W((i) - 2)) + W((i) - 7) + s0(W((i) - 15)))

#define ROUNDS8(i, WF)                                   \
    ROUND(a, b, c, d, e, f, g, h, (i) + 0, WF((i) + 0)); \
    ROUND(h, a, b, c, d, e, f, g, (i) + 1, WF((i) + 1)); \
    ROUND(g, h, a, b, c, d, e, f, (i) + 2, WF((i) + 2)); \
    ROUND(f, g, h, a, b, c, d, e, (i) + 3, WF((i) + 3)); \
    ROUND(e, f, g, h, a, b, c, d, (i) + 4, WF((i) + 4)); \
    ROUND(d, e, f, g, h, a, b, c, (i) + 5, WF((i) + 5)); \
    ROUND(c, d, e, f, g, h, a, b, (i) + 6, WF((i) + 6)); \
    ROUND(b, c, d, e, f, g, h, a, (i) + 7, WF((i) + 7))

static void compress(uint32_t *state, const uint8_t *block, size_t n_blocks) {
    uint32_t w[16];
    for (size_t blk = 0; blk < n_blocks; blk++, block += 64) {
        for (int i = 0; i < 16; i++) w[i] = load_be32(block + 4 * i);
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
        uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
        ROUNDS8(0, W);
        ROUNDS8(8, W);
        ROUNDS8(16, SCHED);
        ROUNDS8(24, SCHED);
        ROUNDS8(32, SCHED);
        ROUNDS8(40, SCHED);
        ROUNDS8(48, SCHED);
        ROUNDS8(56, SCHED);
        state[0] += a;
        state[1] += b;
        state[2] += c;
        state[3] += d;
        state[4] += e;
        state[5] += f;
        state[6] += g;
        state[7] += h;
    }
}

VH_EXPORT("hash_sha256")
int32_t hash_sha256(const uint8_t *in, uint32_t in_len, const double *params, int32_t n_params,
                    vh_result *result) {
    (void)params;
    if (n_params != 0) return vh_fail(VH_BAD_PARAMS, "hash.sha256 takes no params");
    uint8_t *out = vh_alloc(32 + 128);
    if (!out) return VH_NO_MEMORY;
    uint8_t *tail = out + 32;
    uint32_t state[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                         0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    uint32_t full = in_len / 64u;
    uint32_t per_band = PROGRESS_BYTES / 64u;
    for (uint32_t done = 0; done < full; done += per_band) {
        uint32_t n = full - done < per_band ? full - done : per_band;
        compress(state, in + (size_t)done * 64u, n);
        vh_progress((int32_t)(done + n), (int32_t)full); /* in 64-byte blocks */
    }
    uint32_t rest = in_len - full * 64u;
    memset(tail, 0, 128);
    memcpy(tail, in + (size_t)full * 64u, rest);
    tail[rest] = 0x80;
    uint32_t tail_len = rest + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)in_len * 8u;
    for (int i = 0; i < 8; i++) tail[tail_len - 1 - i] = (uint8_t)(bits >> (8 * i));
    compress(state, tail, tail_len / 64);
    for (int i = 0; i < 8; i++) {
        out[4 * i + 0] = (uint8_t)(state[i] >> 24);
        out[4 * i + 1] = (uint8_t)(state[i] >> 16);
        out[4 * i + 2] = (uint8_t)(state[i] >> 8);
        out[4 * i + 3] = (uint8_t)state[i];
    }
    return vh_done(result, out, 32);
}
