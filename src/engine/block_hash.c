/*
 * block_hash.c - block and sequence hashes of token blocks, bit-for-bit the
 * ones Dynamo's KV router (lib/kv-router protocols.rs:
 * compute_block_hash_for_seq, compute_seq_hash_for_block) and vLLM use, so
 * KV events from rotor index the same way:
 *
 *   block hash = XXH3_64(seed 1337) of the block's token ids as LE u32
 *   seq hash   = block hash (first block) or
 *                XXH3_64(seed 1337) of [parent seq hash LE u64, block hash LE u64]
 */
/* for an XXH3_state_t on the stack (big-endian path only) */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "rotor/block_pool.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define BP_LITTLE_ENDIAN 1
#else
#define BP_LITTLE_ENDIAN 0
#endif

static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

uint64_t bp_hash_block(const int32_t *tokens, int block_size) {
    size_t len = (size_t)block_size * sizeof(uint32_t);
#if BP_LITTLE_ENDIAN
    /* int32 and u32 share a representation: hash the array as it is. */
    return XXH3_64bits_withSeed(tokens, len, BP_HASH_SEED);
#else
    /* Byte-swap through a small buffer and the streaming API (same result
     * as the one-shot hash of the whole LE array). */
    XXH3_state_t st;
    XXH3_64bits_reset_withSeed(&st, BP_HASH_SEED);
    uint8_t buf[256];
    size_t fill = 0;
    for (int i = 0; i < block_size; i++) {
        uint32_t t = (uint32_t)tokens[i];
        for (int b = 0; b < 4; b++)
            buf[fill++] = (uint8_t)(t >> (8 * b));
        if (fill == sizeof buf) {
            XXH3_64bits_update(&st, buf, fill);
            fill = 0;
        }
    }
    if (fill) XXH3_64bits_update(&st, buf, fill);
    (void)len;
    return XXH3_64bits_digest(&st);
#endif
}

uint64_t bp_hash_chain(uint64_t parent_seq_hash, uint64_t block_hash) {
    uint8_t bytes[16];
    put_le64(bytes, parent_seq_hash);
    put_le64(bytes + 8, block_hash);
    return XXH3_64bits_withSeed(bytes, sizeof bytes, BP_HASH_SEED);
}

size_t bp_hash_blocks(const int32_t *tokens, size_t n, int block_size, uint64_t *block_hashes,
                      uint64_t *seq_hashes) {
    if (block_size < 1) return 0;
    size_t nb = n / (size_t)block_size;
    uint64_t seq = 0;
    for (size_t i = 0; i < nb; i++) {
        uint64_t bh = bp_hash_block(tokens + i * (size_t)block_size, block_size);
        seq = i == 0 ? bh : bp_hash_chain(seq, bh);
        if (block_hashes) block_hashes[i] = bh;
        if (seq_hashes) seq_hashes[i] = seq;
    }
    return nb;
}
