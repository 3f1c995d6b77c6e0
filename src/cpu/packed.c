/*
 * packed.c - packing of weight panels, activation rows and the panel loop of
 * cpu_packed_matmul, on top of the panel kernel of the current ISA.
 */
#include <string.h>

#include "cpu/packed_impl.h"
#include "cpu/quant_impl.h"

/* activation rows per pass over a row range: their quants stay in L2 while
 * the range's panels stream through L1 */
#define PK_M_CHUNK 64

static int pk_kind(rt_type_t t, pk_kind_t *k)
{
    switch (t) {
    case RT_TYPE_Q4_0: *k = PK_Q4_0; return 1;
    case RT_TYPE_Q4_1: *k = PK_Q4_1; return 1;
    case RT_TYPE_Q8_0: *k = PK_Q8_0; return 1;
    case RT_TYPE_Q4_K: *k = PK_Q4_K; return 1;
    case RT_TYPE_Q6_K: *k = PK_Q6_K; return 1;
    case RT_TYPE_Q5_0: *k = PK_Q5_0; return 1;
    case RT_TYPE_Q5_1: *k = PK_Q5_1; return 1;
    case RT_TYPE_Q5_K: *k = PK_Q5_K; return 1;
    default: return 0;
    }
}

bool cpu_packed_supported(rt_type_t t)
{
    pk_kind_t k;
    if (!pk_kind(t, &k)) return false;
    /* the K-quants and Q5 only where a fast kernel exists (AVX2, AVX-512; the scalar one is the reference) */
    return (k == PK_Q4_0 || k == PK_Q4_1 || k == PK_Q8_0) || cpu_quant_get_isa() >= CPU_ISA_AVX2;
}

size_t cpu_packed_size(rt_type_t t, int64_t n_out, int64_t n_in)
{
    pk_kind_t k;
    if (!cpu_packed_supported(t) || !pk_kind(t, &k) || n_in <= 0 || n_out <= 0 ||
        n_in % (pk_is_super(k) || k == PK_Q6_K ? 256 : 32) != 0)
        return 0;
    const int64_t panels = (n_out + CPU_PACK_ROWS - 1) / CPU_PACK_ROWS;
    return (size_t)panels * pk_panel_bytes(k, n_in / 32);
}

/* one 32-block of rows [r, r + nr) of W into a panel block */
static void pack_block(pk_kind_t k, const char *W, size_t w_stride, int64_t b, int nr, uint8_t *dst)
{
    const size_t qbytes = pk_d_offset(k);
    memset(dst, 0, pk_block_bytes(k)); /* padding rows: scale 0, never stored */
    for (int r = 0; r < nr; r++) {
        const char *row = W + (size_t)r * w_stride;
        rt_half d, m = 0;
        const uint8_t *qs;
        if (k == PK_Q4_0) {
            const block_q4_0 *blk = (const block_q4_0 *)row + b;
            memcpy(&d, &blk->d, 2);
            qs = blk->qs;
        } else if (k == PK_Q4_1) {
            const block_q4_1 *blk = (const block_q4_1 *)row + b;
            memcpy(&d, &blk->d, 2);
            memcpy(&m, &blk->m, 2);
            qs = blk->qs;
        } else if (k == PK_Q5_0 || k == PK_Q5_1) {
            uint8_t qh[4];
            if (k == PK_Q5_0) {
                const block_q5_0 *blk = (const block_q5_0 *)row + b;
                memcpy(&d, &blk->d, 2);
                memcpy(qh, blk->qh, 4);
                qs = blk->qs;
            } else {
                const block_q5_1 *blk = (const block_q5_1 *)row + b;
                memcpy(&d, &blk->d, 2);
                memcpy(&m, &blk->m, 2);
                memcpy(qh, blk->qh, 4);
                qs = blk->qs;
            }
            const uint32_t h = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
            for (int g = 0; g < 8; g++)
                for (int t = 0; t < 4; t++) dst[PK_Q5_H + r * 4 + t] |= (uint8_t)(((h >> (4 * g + t)) & 1) << g);
        } else {
            const block_q8_0 *blk = (const block_q8_0 *)row + b;
            memcpy(&d, &blk->d, 2);
            qs = (const uint8_t *)blk->qs;
        }
        if (k == PK_Q8_0) {
            for (int g = 0; g < 8; g++)
                for (int t = 0; t < 4; t++) dst[g * 64 + r * 4 + t] = (uint8_t)((int8_t)qs[4 * g + t] + 128);
        } else {
            for (int p = 0; p < 4; p++) memcpy(dst + p * 64 + r * 4, qs + 4 * p, 4);
        }
        memcpy(dst + qbytes + 2 * r, &d, 2);
        if (pk_has_min(k)) memcpy(dst + qbytes + 32 + 2 * r, &m, 2);
    }
}

/* one 256-element super-block of rows [r, r + nr) of a Q4_K or Q5_K matrix */
static void pack_superblock_q4k(pk_kind_t k, const char *W, size_t w_stride, int64_t B, int nr, uint8_t *dst)
{
    memset(dst, 0, pk_super_bytes(k));
    for (int r = 0; r < nr; r++) {
        const uint8_t *scales, *qs, *qh = NULL;
        if (k == PK_Q5_K) {
            const block_q5_K *blk = (const block_q5_K *)(W + (size_t)r * w_stride) + B;
            memcpy(dst + PK_Q4K_D + 2 * r, &blk->d, 2);
            memcpy(dst + PK_Q4K_D + 32 + 2 * r, &blk->dmin, 2);
            scales = blk->scales, qs = blk->qs, qh = blk->qh;
        } else {
            const block_q4_K *blk = (const block_q4_K *)(W + (size_t)r * w_stride) + B;
            memcpy(dst + PK_Q4K_D + 2 * r, &blk->d, 2);
            memcpy(dst + PK_Q4K_D + 32 + 2 * r, &blk->dmin, 2);
            scales = blk->scales, qs = blk->qs;
        }
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            cpu_scale_min_k4(j, scales, &sc, &m);
            dst[PK_Q4K_SC + 16 * j + r] = sc;
            dst[PK_Q4K_M + 16 * j + r] = m;
            /* sub-block j: elements 32j..32j+31 = low (j even) or high (j
             * odd) nibbles of qs[32 (j/2) .. +31]; Q5_K's 5th bit of element
             * e is bit j of qh[e] */
            uint8_t q[32];
            for (int e = 0; e < 32; e++) {
                const uint8_t v = qs[32 * (j / 2) + e];
                q[e] = j % 2 ? v >> 4 : v & 0x0F;
                if (qh) dst[PK_Q5K_H + 64 * j + r * 4 + e % 4] |= (uint8_t)(((qh[e] >> j) & 1) << (e / 4));
            }
            for (int p = 0; p < 4; p++)
                for (int t = 0; t < 4; t++)
                    dst[256 * j + p * 64 + r * 4 + t] = (uint8_t)(q[4 * p + t] | (q[16 + 4 * p + t] << 4));
        }
    }
}

/* 32-block b of rows [r, r + nr) of a Q6_K matrix */
static void pack_block_q6k(const char *W, size_t w_stride, int64_t b, int nr, uint8_t *dst)
{
    memset(dst, 0, PK_Q6K_BYTES);
    const int e0 = (int)(b % 8) * 32; /* first element in the super-block */
    for (int r = 0; r < nr; r++) {
        const block_q6_K *blk = (const block_q6_K *)(W + (size_t)r * w_stride) + b / 8;
        uint8_t q[32]; /* 0..63, ggml's dequantize_row_q6_K order */
        for (int i = 0; i < 32; i++) {
            const int e = e0 + i, n = e / 128, l = e % 32, k = (e % 128) / 32;
            const uint8_t *ql = blk->ql + 64 * n, *qh = blk->qh + 32 * n;
            const int lo = k == 0 ? ql[l] & 0xF : k == 1 ? ql[l + 32] & 0xF : k == 2 ? ql[l] >> 4 : ql[l + 32] >> 4;
            q[i] = (uint8_t)(lo | (((qh[l] >> (2 * k)) & 3) << 4));
        }
        for (int p = 0; p < 4; p++)
            for (int t = 0; t < 4; t++) {
                dst[p * 64 + r * 4 + t] = (uint8_t)((q[4 * p + t] & 0xF) | ((q[16 + 4 * p + t] & 0xF) << 4));
                for (int h = 0; h < 2; h++) /* groups 4h..4h+3: element 4g + t */
                    dst[PK_Q6K_H + 64 * h + r * 4 + t] |= (uint8_t)((q[4 * (4 * h + p) + t] >> 4) << (2 * p));
            }
        dst[PK_Q6K_SC + r] = (uint8_t)blk->scales[e0 / 16];
        dst[PK_Q6K_SC + 16 + r] = (uint8_t)blk->scales[e0 / 16 + 1];
        memcpy(dst + PK_Q6K_D + 2 * r, &blk->d, 2);
    }
}

rt_status_t cpu_pack_weights(rt_type_t t, const void *W, size_t w_stride, int64_t n_out, int64_t n_in, void *dst)
{
    pk_kind_t k;
    if (!pk_kind(t, &k)) return rt_error_set(RT_ERR_UNSUPPORTED, "pack: type %s has no packed form", rt_type_name(t));
    if (n_in <= 0 || n_out <= 0 || n_in % (pk_is_super(k) || k == PK_Q6_K ? 256 : 32) != 0)
        return rt_error_set(RT_ERR_RANGE, "pack: %lld x %lld matrix is not made of 32-blocks", (long long)n_out,
                            (long long)n_in);
    const int64_t nb = n_in / 32;
    const size_t bb = pk_block_bytes(k);
    uint8_t *out = dst;
    for (int64_t r = 0; r < n_out; r += CPU_PACK_ROWS) {
        const int nr = (int)(n_out - r < CPU_PACK_ROWS ? n_out - r : CPU_PACK_ROWS);
        const char *wr = (const char *)W + (size_t)r * w_stride;
        if (pk_is_super(k))
            for (int64_t B = 0; B < nb / 8; B++, out += pk_super_bytes(k)) pack_superblock_q4k(k, wr, w_stride, B, nr, out);
        else if (k == PK_Q6_K)
            for (int64_t b = 0; b < nb; b++, out += PK_Q6K_BYTES) pack_block_q6k(wr, w_stride, b, nr, out);
        else
            for (int64_t b = 0; b < nb; b++, out += bb) pack_block(k, wr, w_stride, b, nr, out);
    }
    return RT_OK;
}

size_t cpu_act8_row_size(int64_t n) { return (size_t)(n / 32) * 48; }

void cpu_act8_quantize(const float *x, void *dst, int64_t n)
{
    switch (cpu_quant_get_isa()) {
    case CPU_ISA_AVX512: pk_act_quantize_avx512(x, dst, n); return;
    case CPU_ISA_AVX2: pk_act_quantize_avx2(x, dst, n); return;
    default: pk_act_quantize_scalar(x, dst, n); return;
    }
}

void cpu_packed_matmul(rt_type_t t, int64_t n_in, int64_t n_out, const void *P, const void *X, size_t x_stride,
                       int64_t m, float *Y, int64_t y_stride, int64_t r0, int64_t r1)
{
    pk_kind_t k;
    if (!pk_kind(t, &k) || m <= 0 || r1 <= r0) return;
    const cpu_isa_t isa = cpu_quant_get_isa();
    const pk_tile_fn fn = isa == CPU_ISA_AVX512 ? pk_tile_avx512 : isa == CPU_ISA_AVX2 ? pk_tile_avx2 : pk_tile_scalar;
    const int64_t nb = n_in / 32;
    const size_t panel_bytes = pk_panel_bytes(k, nb);
    const char *x = X;
    for (int64_t i0 = 0; i0 < m; i0 += PK_M_CHUNK) {
        const int64_t i1 = i0 + PK_M_CHUNK < m ? i0 + PK_M_CHUNK : m;
        for (int64_t r = r0; r < r1; r += CPU_PACK_ROWS) {
            const int64_t re = r + CPU_PACK_ROWS < n_out ? r + CPU_PACK_ROWS : n_out;
            const uint8_t *panel = (const uint8_t *)P + (size_t)(r / CPU_PACK_ROWS) * panel_bytes;
            int64_t i = i0;
            if (isa == CPU_ISA_AVX512) /* 16 rows per pass over the panel */
                for (; i + 16 <= i1; i += 16)
                    pk_tile16_avx512(k, nb, panel, x + (size_t)i * x_stride, x_stride, Y + i * y_stride + r, y_stride,
                                     (int)(re - r));
            for (; i < i1; i += PK_MAX_NS) {
                const int ns = (int)(i1 - i < PK_MAX_NS ? i1 - i : PK_MAX_NS);
                fn(k, nb, panel, x + (size_t)i * x_stride, x_stride, ns, Y + i * y_stride + r, y_stride,
                   (int)(re - r));
            }
        }
    }
}
