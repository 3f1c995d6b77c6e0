/*
 * test_block_pool.c - the G1 KV block pool: block and sequence hashes against
 * XXH3 on hand-built byte arrays (and Dynamo's own test vector), prefix
 * matching, LRU leaf-first eviction, shared refcounts, duplicate commits,
 * RT_ERR_FULL leaving state untouched, the KV event stream (ids, kinds,
 * hashes, overflow), bp_clear, and a seeded randomized run checking every
 * invariant after every operation against a model kept by the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <xxhash.h>

#include "rotor/block_pool.h"

/* ---- helpers ---- */

static bp_pool_t *make(int32_t n_blocks, int32_t block_size, int32_t event_cap) {
    bp_pool_t *p = NULL;
    assert_int_equal(bp_create(n_blocks, block_size, event_cap, &p), RT_OK);
    assert_non_null(p);
    return p;
}

static void check_ok(const bp_pool_t *p) {
    rt_status_t st = bp_check(p);
    if (st != RT_OK) fail_msg("bp_check: %s", rt_error_msg());
}

static bp_stats_t stats(const bp_pool_t *p) {
    bp_stats_t s;
    bp_stats(p, &s);
    return s;
}

static void stats_equal(const bp_stats_t *a, const bp_stats_t *b) {
    assert_int_equal(a->total, b->total);
    assert_int_equal(a->used, b->used);
    assert_int_equal(a->cached, b->cached);
    assert_int_equal(a->free, b->free);
    assert_int_equal(a->hashed, b->hashed);
    assert_int_equal(a->stored, b->stored);
    assert_int_equal(a->evicted, b->evicted);
    assert_int_equal(a->hit_blocks, b->hit_blocks);
    assert_int_equal(a->events_dropped, b->events_dropped);
}

static void info_equal(const bp_block_info_t *a, const bp_block_info_t *b) {
    assert_int_equal(a->ref, b->ref);
    assert_int_equal(a->hashed, b->hashed);
    assert_int_equal(a->has_parent, b->has_parent);
    assert_int_equal(a->n_tokens, b->n_tokens);
    assert_true(a->block_hash == b->block_hash && a->seq_hash == b->seq_hash &&
                a->parent_hash == b->parent_hash);
}

static int32_t ref_of(const bp_pool_t *p, int32_t id) {
    bp_block_info_t bi;
    assert_int_equal(bp_block_info(p, id, &bi), RT_OK);
    return bi.ref;
}

/* Allocate ceil(n/B) blocks for tokens[0..n) and commit its full blocks;
 * ids receives the block table. */
static size_t fill_seq(bp_pool_t *p, const int32_t *tokens, size_t n, int32_t *ids) {
    int B = bp_block_size(p);
    uint64_t bh[64], sh[64];
    size_t nb = bp_hash_blocks(tokens, n, B, bh, sh);
    size_t k = bp_match_prefix(p, sh, nb, ids);
    size_t total = (n + (size_t)B - 1) / (size_t)B;
    assert_int_equal(bp_alloc(p, total - k, ids + k), RT_OK);
    for (size_t i = k; i < nb; i++) {
        int32_t out = -1;
        assert_int_equal(bp_commit_full(p, ids[i], bh[i], sh[i], i ? &sh[i - 1] : NULL, B, &out),
                         RT_OK);
        ids[i] = out;
    }
    return total;
}

/* Little-endian bytes of n tokens, built by hand. */
static void le_u32s(const int32_t *t, size_t n, uint8_t *out) {
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)t[i];
        out[4 * i + 0] = (uint8_t)(v & 0xff);
        out[4 * i + 1] = (uint8_t)((v >> 8) & 0xff);
        out[4 * i + 2] = (uint8_t)((v >> 16) & 0xff);
        out[4 * i + 3] = (uint8_t)((v >> 24) & 0xff);
    }
}

static void le_u64(uint64_t v, uint8_t *out) {
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)((v >> (8 * i)) & 0xff);
}

/* ---- hashing ---- */

static void test_hash_known_answers(void **state) {
    (void)state;
    /* Dynamo's own vector (lib/kv-router protocols.rs test_router_event_new):
     * compute_block_hash(b"test data") with seed 1337. */
    assert_true(XXH3_64bits_withSeed("test data", 9, 1337) == 13226331709069118873ULL);

    const int32_t tok[] = {1, 2, 300, -1, 70000, 5, 6, 0x7fffffff, 8};
    uint8_t b0[16], b1[16], chain[16];
    le_u32s(tok, 4, b0);
    le_u32s(tok + 4, 4, b1);
    assert_int_equal(b0[8], 0x2c); /* 300 = 0x012c, LE */
    assert_int_equal(b0[9], 0x01);
    assert_int_equal(b0[12], 0xff); /* -1 as u32 */
    uint64_t bh0 = XXH3_64bits_withSeed(b0, 16, 1337);
    uint64_t bh1 = XXH3_64bits_withSeed(b1, 16, 1337);
    le_u64(bh0, chain); /* first block: seq hash = block hash */
    le_u64(bh1, chain + 8);
    uint64_t sh1 = XXH3_64bits_withSeed(chain, 16, 1337);

    uint64_t bh[4] = {0}, sh[4] = {0};
    assert_int_equal(bp_hash_blocks(tok, 9, 4, bh, sh), 2); /* trailing token ignored */
    assert_true(bh[0] == bh0 && bh[1] == bh1);
    assert_true(sh[0] == bh0 && sh[1] == sh1);
    assert_true(bp_hash_block(tok, 4) == bh0);
    assert_true(bp_hash_chain(bh0, bh1) == sh1);

    /* Edge cases: no full block, bad block size, NULL outputs. */
    assert_int_equal(bp_hash_blocks(tok, 3, 4, bh, sh), 0);
    assert_int_equal(bp_hash_blocks(tok, 9, 0, bh, sh), 0);
    uint64_t only[4] = {0};
    assert_int_equal(bp_hash_blocks(tok, 8, 4, NULL, only), 2);
    assert_true(only[1] == sh1);
    assert_int_equal(bp_hash_blocks(tok, 8, 4, only, NULL), 2);
    assert_true(only[1] == bh1);

    /* Chaining: same second block after another first block: same block
     * hash, different sequence hash. */
    int32_t other[8];
    memcpy(other, tok, sizeof other);
    other[0] = 2;
    uint64_t bh2[2], sh2[2];
    assert_int_equal(bp_hash_blocks(other, 8, 4, bh2, sh2), 2);
    assert_true(bh2[1] == bh1 && sh2[1] != sh1 && sh2[0] != sh[0]);

    /* Block size 1: every token is a block; a chain of three. */
    uint8_t one[4];
    le_u32s(tok + 2, 1, one);
    uint64_t s1[3];
    assert_int_equal(bp_hash_blocks(tok, 3, 1, NULL, s1), 3);
    assert_true(bp_hash_block(tok + 2, 1) == XXH3_64bits_withSeed(one, 4, 1337));
    assert_true(s1[2] == bp_hash_chain(s1[1], XXH3_64bits_withSeed(one, 4, 1337)));
}

/* ---- prefix caching ---- */

static void test_prefix_match(void **state) {
    (void)state;
    bp_pool_t *p = make(8, 4, 0);
    int32_t tok[14];
    for (int i = 0; i < 14; i++)
        tok[i] = 100 + i;
    uint64_t sh[3];
    assert_int_equal(bp_hash_blocks(tok, 14, 4, NULL, sh), 3);
    int32_t ids[4];
    assert_int_equal(bp_match_prefix(p, sh, 3, ids), 0);

    int32_t a[4];
    assert_int_equal(fill_seq(p, tok, 14, a), 4); /* 3 full + 1 partial */
    assert_int_equal(a[0], 0);
    assert_int_equal(a[3], 3);
    bp_stats_t s = stats(p);
    assert_int_equal(s.used, 4);
    assert_int_equal(s.hashed, 3);
    assert_int_equal(s.free, 4);

    /* While held: a second request hits all three full blocks. */
    assert_int_equal(bp_peek_prefix(p, sh, 3), 3);
    assert_int_equal(bp_match_prefix(p, sh, 3, ids), 3);
    assert_memory_equal(ids, a, 3 * sizeof *ids);
    assert_int_equal(ref_of(p, a[0]), 2);
    assert_int_equal(ref_of(p, a[3]), 1);
    assert_int_equal(bp_release(p, ids, 3), RT_OK);

    /* Finished: full blocks stay cached, the partial one is freed. */
    assert_int_equal(bp_release(p, a, 4), RT_OK);
    s = stats(p);
    assert_int_equal(s.used, 0);
    assert_int_equal(s.cached, 3);
    assert_int_equal(s.free, 5);
    check_ok(p);

    /* A later request with the same first 8 tokens hits 2 blocks. */
    tok[9] = 7;
    uint64_t sh2[3];
    assert_int_equal(bp_hash_blocks(tok, 12, 4, NULL, sh2), 3);
    assert_int_equal(bp_match_prefix(p, sh2, 3, ids), 2);
    assert_int_equal(ids[0], a[0]);
    assert_int_equal(ids[1], a[1]);
    s = stats(p);
    assert_int_equal(s.used, 2);
    assert_int_equal(s.cached, 1);
    assert_int_equal(s.hit_blocks, 5);
    bp_block_info_t bi;
    assert_int_equal(bp_block_info(p, ids[1], &bi), RT_OK);
    assert_true(bi.hashed && bi.has_parent && bi.seq_hash == sh[1] && bi.parent_hash == sh[0]);
    assert_int_equal(bi.n_tokens, 4);
    assert_int_equal(bp_release(p, ids, 2), RT_OK);
    check_ok(p);
    bp_destroy(p);
}

static void test_lru_leaf_first(void **state) {
    (void)state;
    bp_pool_t *p = make(4, 2, 0);
    const int32_t ta[4] = {1, 2, 3, 4}, tb[4] = {5, 6, 7, 8};
    uint64_t sa[2], sb[2];
    bp_hash_blocks(ta, 4, 2, NULL, sa);
    bp_hash_blocks(tb, 4, 2, NULL, sb);
    int32_t a[2], b[2], x[4];
    fill_seq(p, ta, 4, a);
    fill_seq(p, tb, 4, b);
    assert_int_equal(bp_release(p, a, 2), RT_OK); /* A first: older */
    assert_int_equal(bp_release(p, b, 2), RT_OK);
    bp_event_t ev[16];
    assert_int_equal(bp_events_drain(p, ev, 16), 4); /* 4 STORED */
    assert_int_equal(stats(p).cached, 4);

    /* Eviction order: A's leaf, A's root, then B's leaf. */
    assert_int_equal(bp_alloc(p, 1, x), RT_OK);
    assert_int_equal(x[0], a[1]);
    assert_int_equal(bp_peek_prefix(p, sa, 2), 1); /* root still cached */
    assert_int_equal(bp_alloc(p, 1, x + 1), RT_OK);
    assert_int_equal(x[1], a[0]);
    assert_int_equal(bp_peek_prefix(p, sa, 2), 0);

    /* Touch B's root only: it becomes most recent; B's leaf goes next. */
    int32_t m[2];
    assert_int_equal(bp_match_prefix(p, sb, 1, m), 1);
    assert_int_equal(bp_release(p, m, 1), RT_OK);
    assert_int_equal(bp_alloc(p, 1, x + 2), RT_OK);
    assert_int_equal(x[2], b[1]);
    assert_int_equal(bp_peek_prefix(p, sb, 2), 1);

    assert_int_equal(bp_events_drain(p, ev, 16), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ev[i].kind, BP_EV_REMOVED);
    assert_true(ev[0].seq_hash == sa[1] && ev[0].block_id == a[1]);
    assert_true(ev[1].seq_hash == sa[0] && ev[1].block_id == a[0]);
    assert_true(ev[2].seq_hash == sb[1] && ev[2].block_id == b[1]);
    bp_stats_t s = stats(p);
    assert_int_equal(s.evicted, 3);
    assert_int_equal(s.used, 3);
    assert_int_equal(s.cached, 1);
    assert_int_equal(bp_release(p, x, 3), RT_OK);
    check_ok(p);
    bp_destroy(p);
}

static void test_shared_refcounts(void **state) {
    (void)state;
    bp_pool_t *p = make(8, 2, 0);
    const int32_t ta[6] = {1, 2, 3, 4, 5, 6}, tb[6] = {1, 2, 3, 4, 9, 9};
    int32_t a[3], b[3];
    fill_seq(p, ta, 6, a);
    fill_seq(p, tb, 6, b); /* shares A's first two blocks */
    assert_int_equal(b[0], a[0]);
    assert_int_equal(b[1], a[1]);
    assert_int_not_equal(b[2], a[2]);
    assert_int_equal(ref_of(p, a[0]), 2);
    assert_int_equal(ref_of(p, a[1]), 2);
    assert_int_equal(ref_of(p, a[2]), 1);
    assert_int_equal(ref_of(p, b[2]), 1);
    bp_stats_t s = stats(p);
    assert_int_equal(s.used, 4);
    assert_int_equal(s.hashed, 4);

    assert_int_equal(bp_release(p, a, 3), RT_OK); /* cancel A */
    assert_int_equal(ref_of(p, a[0]), 1);
    assert_int_equal(ref_of(p, a[2]), 0);
    s = stats(p);
    assert_int_equal(s.used, 3);
    assert_int_equal(s.cached, 1);
    check_ok(p);

    /* The shared prefix survives pressure while B holds it. */
    int32_t x[5];
    assert_int_equal(bp_alloc(p, 5, x), RT_OK); /* 4 free + A's leaf */
    assert_int_equal(stats(p).cached, 0);
    assert_int_equal(ref_of(p, a[0]), 1);
    assert_int_equal(bp_release(p, x, 5), RT_OK);
    assert_int_equal(bp_release(p, b, 3), RT_OK);
    for (int32_t i = 0; i < 8; i++)
        assert_int_equal(ref_of(p, i), 0);
    s = stats(p);
    assert_int_equal(s.used, 0);
    assert_int_equal(s.cached, 3);
    check_ok(p);
    bp_destroy(p);
}

static void test_full_changes_nothing(void **state) {
    (void)state;
    bp_pool_t *p = make(4, 2, 0);
    const int32_t t[4] = {1, 2, 3, 4};
    int32_t a[2], x[8];
    fill_seq(p, t, 4, a);
    assert_int_equal(bp_release(p, a + 1, 1), RT_OK); /* leaf cached, root held */
    assert_int_equal(bp_alloc(p, 1, x), RT_OK);       /* one free left */
    bp_stats_t before = stats(p);
    bp_block_info_t info_before[4], info_after[4];
    for (int32_t i = 0; i < 4; i++)
        bp_block_info(p, i, &info_before[i]);
    size_t pending = bp_events_pending(p);

    for (int32_t i = 0; i < 8; i++)
        x[i] = -7;
    rt_error_clear();
    assert_int_equal(bp_alloc(p, 3, x), RT_ERR_FULL);
    assert_true(strlen(rt_error_msg()) > 0);
    for (int32_t i = 0; i < 8; i++)
        assert_int_equal(x[i], -7);
    bp_stats_t after = stats(p);
    stats_equal(&before, &after);
    for (int32_t i = 0; i < 4; i++) {
        bp_block_info(p, i, &info_after[i]);
        info_equal(&info_before[i], &info_after[i]);
    }
    assert_int_equal(bp_events_pending(p), pending);
    check_ok(p);

    /* Exactly free + cached succeeds (evicting the cached leaf). */
    assert_int_equal(bp_alloc(p, 2, x), RT_OK);
    assert_int_equal(stats(p).free + stats(p).cached, 0);
    assert_int_equal(bp_alloc(p, 1, x + 2), RT_ERR_FULL);
    assert_int_equal(bp_release(p, x, 2), RT_OK);
    check_ok(p);
    bp_destroy(p);
}

static void test_events_sequence(void **state) {
    (void)state;
    bp_pool_t *p = make(3, 2, 0);
    const int32_t t[6] = {10, 11, 12, 13, 14, 15};
    uint64_t bh[3], sh[3];
    bp_hash_blocks(t, 6, 2, bh, sh);
    int32_t a[3], x[3];
    fill_seq(p, t, 6, a);
    assert_int_equal(bp_release(p, a, 3), RT_OK);
    assert_int_equal(bp_alloc(p, 2, x), RT_OK); /* evicts a[2], then a[1] */
    bp_clear(p);
    assert_int_equal(bp_events_pending(p), 6);

    bp_event_t ev[8];
    memset(ev, 0, sizeof ev);
    assert_int_equal(bp_events_drain(p, ev, 2), 2); /* in chunks, in order */
    assert_int_equal(bp_events_drain(p, ev + 2, 8), 4);
    assert_int_equal(bp_events_drain(p, ev + 6, 2), 0);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(ev[i].id, (uint64_t)i + 1);
        assert_int_equal(ev[i].tier, BP_TIER_G1);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ev[i].kind, BP_EV_STORED);
        assert_int_equal(ev[i].block_id, a[i]);
        assert_true(ev[i].seq_hash == sh[i] && ev[i].block_hash == bh[i]);
        assert_int_equal(ev[i].has_parent, i > 0);
        if (i > 0) assert_true(ev[i].parent_hash == sh[i - 1]);
        assert_int_equal(ev[i].n_tokens, 2);
    }
    /* REMOVED pairs with the STORED of the same block, leaf first. */
    assert_int_equal(ev[3].kind, BP_EV_REMOVED);
    assert_true(ev[3].seq_hash == sh[2] && ev[3].block_hash == bh[2] && ev[3].block_id == a[2]);
    assert_int_equal(ev[4].kind, BP_EV_REMOVED);
    assert_true(ev[4].seq_hash == sh[1] && ev[4].parent_hash == sh[0] && ev[4].has_parent);
    assert_int_equal(ev[4].n_tokens, 2);
    assert_int_equal(ev[5].kind, BP_EV_CLEARED);
    assert_false(ev[5].overflow);

    /* After the clear nothing is cached; ids continue. */
    bp_stats_t s = stats(p);
    assert_int_equal(s.hashed, 0);
    assert_int_equal(s.cached, 0);
    assert_int_equal(s.free, 1);
    assert_int_equal(bp_peek_prefix(p, sh, 3), 0);
    assert_int_equal(bp_release(p, x, 2), RT_OK);
    assert_int_equal(stats(p).free, 3);
    fill_seq(p, t, 2, a);
    assert_int_equal(bp_events_drain(p, ev, 8), 1);
    assert_int_equal(ev[0].id, 7);
    assert_int_equal(ev[0].kind, BP_EV_STORED);
    assert_int_equal(bp_release(p, a, 1), RT_OK);
    check_ok(p);
    bp_destroy(p);
}

static void test_event_overflow(void **state) {
    (void)state;
    bp_pool_t *p = make(8, 1, 4);
    int32_t t[6] = {1, 2, 3, 4, 5, 6}, a[6];
    uint64_t sh[6];
    bp_hash_blocks(t, 6, 1, NULL, sh);
    fill_seq(p, t, 6, a); /* six STORED into a ring of four */
    bp_event_t ev[8];
    assert_int_equal(bp_events_drain(p, ev, 8), 3);
    assert_int_equal(ev[0].kind, BP_EV_CLEARED);
    assert_true(ev[0].overflow);
    assert_int_equal(ev[0].id, 5);
    assert_int_equal(ev[1].kind, BP_EV_STORED);
    assert_int_equal(ev[1].id, 6);
    assert_true(ev[1].seq_hash == sh[4]);
    assert_int_equal(ev[2].id, 7);
    assert_true(ev[2].seq_hash == sh[5]);
    assert_int_equal(stats(p).events_dropped, 4);
    assert_int_equal(stats(p).hashed, 6); /* the cache itself is intact */
    assert_int_equal(bp_release(p, a, 6), RT_OK);
    check_ok(p);
    bp_destroy(p);
}

static void test_duplicate_commit(void **state) {
    (void)state;
    bp_pool_t *p = make(6, 2, 0);
    const int32_t t[2] = {42, 43};
    uint64_t bh, sh;
    bp_hash_blocks(t, 2, 2, &bh, &sh);
    bp_event_t ev[8];

    /* Two requests prefill the same block concurrently. */
    int32_t x[2], out = -1;
    assert_int_equal(bp_alloc(p, 2, x), RT_OK);
    assert_int_equal(bp_commit_full(p, x[0], bh, sh, NULL, 2, &out), RT_OK);
    assert_int_equal(out, x[0]);
    assert_int_equal(bp_commit_full(p, x[1], bh, sh, NULL, 2, &out), RT_OK);
    assert_int_equal(out, x[0]); /* keep the existing block */
    assert_int_equal(ref_of(p, x[0]), 2);
    assert_int_equal(ref_of(p, x[1]), 0); /* duplicate freed */
    assert_int_equal(bp_events_drain(p, ev, 8), 1);
    bp_stats_t s = stats(p);
    assert_int_equal(s.used, 1);
    assert_int_equal(s.free, 5);

    /* Re-commit with the same hash is a no-op; another hash is refused. */
    assert_int_equal(bp_commit_full(p, x[0], bh, sh, NULL, 2, &out), RT_OK);
    assert_int_equal(out, x[0]);
    out = -5;
    assert_int_equal(bp_commit_full(p, x[0], bh, sh + 1, NULL, 2, &out), RT_ERR_INVALID);
    assert_int_equal(out, -5);
    assert_int_equal(bp_commit_full(p, x[1], bh, sh, NULL, 2, &out), RT_ERR_INVALID); /* not held */
    assert_int_equal(bp_commit_full(p, 99, bh, sh, NULL, 2, &out), RT_ERR_INVALID);
    int32_t y;
    assert_int_equal(bp_alloc(p, 1, &y), RT_OK);
    assert_int_equal(bp_commit_full(p, y, bh, sh, NULL, 1, &out), RT_ERR_INVALID); /* partial */

    /* Existing block cached with refcount 0: the duplicate revives it. */
    int32_t both[2] = {x[0], x[0]};
    assert_int_equal(bp_release(p, both, 2), RT_OK);
    assert_int_equal(stats(p).cached, 1);
    assert_int_equal(bp_commit_full(p, y, bh, sh, NULL, 2, &out), RT_OK);
    assert_int_equal(out, x[0]);
    s = stats(p);
    assert_int_equal(s.cached, 0);
    assert_int_equal(s.used, 1);
    assert_int_equal(bp_events_pending(p), 0);
    assert_int_equal(bp_release(p, &out, 1), RT_OK);
    check_ok(p);
    bp_destroy(p);
}

static void test_release_and_create_errors(void **state) {
    (void)state;
    bp_pool_t *p = NULL;
    assert_int_equal(bp_create(0, 16, 0, &p), RT_ERR_INVALID);
    assert_int_equal(bp_create(4, 0, 0, &p), RT_ERR_INVALID);
    assert_int_equal(bp_create(4, 16, 1, &p), RT_ERR_INVALID);
    assert_null(p);

    p = make(4, 2, 0);
    int32_t x[2];
    assert_int_equal(bp_alloc(p, 2, x), RT_OK);
    int32_t twice[3] = {x[1], x[0], x[0]}; /* x[0] held once */
    assert_int_equal(bp_release(p, twice, 3), RT_ERR_INVALID);
    int32_t range[2] = {x[0], 4};
    assert_int_equal(bp_release(p, range, 2), RT_ERR_INVALID);
    int32_t neg[2] = {x[1], -1};
    assert_int_equal(bp_release(p, neg, 2), RT_ERR_INVALID);
    assert_int_equal(ref_of(p, x[0]), 1);
    assert_int_equal(ref_of(p, x[1]), 1);
    check_ok(p); /* includes: no scratch left behind */
    bp_block_info_t bi;
    assert_int_equal(bp_block_info(p, 4, &bi), RT_ERR_RANGE);
    assert_int_equal(bp_release(p, x, 2), RT_OK);
    assert_int_equal(bp_release(p, NULL, 0), RT_OK);
    assert_int_equal(bp_alloc(p, 0, NULL), RT_OK);
    assert_int_equal(stats(p).free, 4);
    check_ok(p);
    bp_destroy(p);
    bp_destroy(NULL);
}

/* ---- randomized ---- */

#define R_MAXT 192
#define R_SEQS 12

typedef struct {
    bool live;
    uint64_t epoch; /* bp_clear count when its blocks were committed */
    int32_t tok[R_MAXT];
    size_t n_tok;
    int32_t ids[R_MAXT];
    size_t n_ids;
    uint64_t sh[R_MAXT]; /* seq hashes of committed blocks */
    size_t n_committed;
} rseq_t;

static uint64_t rng_state;
static long n_full, n_dup, n_hits, n_evicted, n_preempt;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

typedef struct {
    bp_pool_t *p;
    int32_t N, B;
    rseq_t seq[R_SEQS];
    uint64_t epoch;
    uint64_t last_event;
    bool sh_on[1024]; /* model of the prefix index, from events only */
    uint64_t sh_hash[1024];
    int32_t exp_ref[1024];
} rig_t;

static void r_release_all(rig_t *r, rseq_t *s) {
    if (s->n_ids > 0 && rnd(4) == 0) {
        /* A cancel releasing in pieces, head first (the worst order). */
        size_t cut = rnd((uint32_t)s->n_ids);
        assert_int_equal(bp_release(r->p, s->ids, cut), RT_OK);
        assert_int_equal(bp_release(r->p, s->ids + cut, s->n_ids - cut), RT_OK);
    } else {
        assert_int_equal(bp_release(r->p, s->ids, s->n_ids), RT_OK);
    }
    s->live = false;
    s->n_ids = s->n_tok = s->n_committed = 0;
}

static void r_commit(rig_t *r, rseq_t *s, size_t i) {
    uint64_t bh = bp_hash_block(s->tok + i * (size_t)r->B, r->B);
    s->sh[i] = i ? bp_hash_chain(s->sh[i - 1], bh) : bh;
    int32_t out = -1;
    assert_int_equal(
        bp_commit_full(r->p, s->ids[i], bh, s->sh[i], i ? &s->sh[i - 1] : NULL, r->B, &out), RT_OK);
    n_dup += out != s->ids[i];
    s->ids[i] = out;
    s->n_committed = i + 1;
}

static void r_start(rig_t *r, rseq_t *s) {
    /* Prompts from 3 families share prefixes of random length. */
    int fam = (int)rnd(3);
    size_t shared = rnd(64), extra = 1 + rnd(40);
    s->n_tok = shared + extra;
    for (size_t i = 0; i < shared; i++)
        s->tok[i] = (int32_t)((fam * 7919 + (int)i * 31) % 50);
    for (size_t i = shared; i < s->n_tok; i++)
        s->tok[i] = (int32_t)rnd(50);
    uint64_t sh[R_MAXT];
    size_t nb = bp_hash_blocks(s->tok, s->n_tok, r->B, NULL, sh);
    size_t peek = bp_peek_prefix(r->p, sh, nb);
    size_t k = bp_match_prefix(r->p, sh, nb, s->ids);
    assert_int_equal(k, peek);
    for (size_t i = 0; i < k; i++) {
        bp_block_info_t bi;
        assert_int_equal(bp_block_info(r->p, s->ids[i], &bi), RT_OK);
        assert_true(bi.hashed && bi.seq_hash == sh[i]); /* the hit holds these tokens */
        s->sh[i] = sh[i];
    }
    s->n_ids = k;
    s->n_committed = k;
    s->live = true;
    s->epoch = r->epoch;
    size_t total = (s->n_tok + (size_t)r->B - 1) / (size_t)r->B;
    bp_stats_t st = stats(r->p);
    rt_status_t rc = bp_alloc(r->p, total - k, s->ids + k);
    if ((size_t)st.free + (size_t)st.cached < total - k) {
        assert_int_equal(rc, RT_ERR_FULL);
        n_full++;
        bp_stats_t st2 = stats(r->p);
        stats_equal(&st, &st2);
        r_release_all(r, s); /* refused: give the hits back */
        return;
    }
    assert_int_equal(rc, RT_OK);
    s->n_ids = total;
    if (rnd(3) == 0) return; /* prefill still running: commit on a later step, racing others */
    for (size_t i = k; i < nb; i++)
        r_commit(r, s, i);
}

static void r_decode(rig_t *r, rseq_t *s) {
    if (s->n_tok == R_MAXT) {
        r_release_all(r, s);
        return;
    }
    if (s->n_tok == s->n_ids * (size_t)r->B) {
        if (bp_alloc(r->p, 1, s->ids + s->n_ids) != RT_OK) {
            n_preempt++;
            r_release_all(r, s); /* preempted */
            return;
        }
        s->n_ids++;
    }
    s->tok[s->n_tok++] = (int32_t)rnd(50);
    while (s->epoch == r->epoch && s->n_committed < s->n_tok / (size_t)r->B)
        r_commit(r, s, s->n_committed);
}

static void r_verify(rig_t *r) {
    check_ok(r->p);
    /* Events replayed into a model of the index. */
    bp_event_t ev[64];
    size_t n;
    while ((n = bp_events_drain(r->p, ev, 64)) > 0) {
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(ev[i].id, r->last_event + 1);
            r->last_event = ev[i].id;
            assert_int_equal(ev[i].tier, BP_TIER_G1);
            int32_t id = ev[i].block_id;
            switch (ev[i].kind) {
            case BP_EV_STORED:
                assert_false(r->sh_on[id]);
                for (int32_t j = 0; j < r->N; j++)
                    assert_false(r->sh_on[j] && r->sh_hash[j] == ev[i].seq_hash);
                r->sh_on[id] = true;
                r->sh_hash[id] = ev[i].seq_hash;
                break;
            case BP_EV_REMOVED:
                assert_true(r->sh_on[id] && r->sh_hash[id] == ev[i].seq_hash);
                r->sh_on[id] = false;
                break;
            case BP_EV_CLEARED:
                assert_false(ev[i].overflow);
                memset(r->sh_on, 0, sizeof r->sh_on);
                break;
            default:
                fail_msg("event kind %d", ev[i].kind);
            }
        }
    }
    memset(r->exp_ref, 0, sizeof r->exp_ref);
    int64_t held = 0;
    for (int i = 0; i < R_SEQS; i++) {
        const rseq_t *s = &r->seq[i];
        if (!s->live) continue;
        for (size_t j = 0; j < s->n_ids; j++)
            r->exp_ref[s->ids[j]]++;
        held += (int64_t)s->n_ids;
    }
    int64_t sum = 0;
    int32_t n_used = 0;
    for (int32_t id = 0; id < r->N; id++) {
        bp_block_info_t bi;
        assert_int_equal(bp_block_info(r->p, id, &bi), RT_OK);
        assert_int_equal(bi.ref, r->exp_ref[id]);
        assert_int_equal(bi.hashed, r->sh_on[id]);
        if (bi.hashed) assert_true(bi.seq_hash == r->sh_hash[id]);
        sum += bi.ref;
        n_used += bi.ref > 0;
    }
    assert_int_equal(sum, held);
    bp_stats_t st = stats(r->p);
    assert_int_equal(st.used, n_used);
    assert_int_equal(st.free + st.cached + st.used, r->N);
}

static void test_randomized(void **state) {
    (void)state;
    static const int32_t sizes[] = {1, 2, 3, 4, 8, 16};
    rng_state = 0x9E3779B97F4A7C15ULL;
    static rig_t rig;
    long ops = 0;
    for (int round = 0; round < 40; round++) {
        rig_t *r = &rig;
        memset(r, 0, sizeof *r);
        r->N = 1 + (int32_t)rnd(round % 4 == 0 ? 8 : 160);
        r->B = sizes[rnd(6)];
        r->p = make(r->N, r->B, 0);
        for (int op = 0; op < 1500; op++, ops++) {
            rseq_t *s = &r->seq[rnd(R_SEQS)];
            uint32_t what = rnd(1000);
            if (!s->live) {
                r_start(r, s);
            } else if (what < 700) {
                r_decode(r, s);
            } else if (what < 850) {
                /* A live sequence's committed blocks are all still indexed. */
                if (s->epoch == r->epoch) {
                    int32_t m[R_MAXT];
                    assert_int_equal(bp_peek_prefix(r->p, s->sh, s->n_committed), s->n_committed);
                    size_t k = bp_match_prefix(r->p, s->sh, s->n_committed, m);
                    assert_int_equal(k, s->n_committed);
                    assert_memory_equal(m, s->ids, k * sizeof *m);
                    assert_int_equal(bp_release(r->p, m, k), RT_OK);
                }
            } else if (what < 995) {
                r_release_all(r, s); /* finish or cancel */
            } else {
                bp_clear(r->p);
                r->epoch++;
            }
            r_verify(r);
        }
        for (int i = 0; i < R_SEQS; i++)
            if (r->seq[i].live) r_release_all(r, &r->seq[i]);
        r_verify(r);
        bp_stats_t st = stats(r->p);
        n_hits += (long)st.hit_blocks;
        n_evicted += (long)st.evicted;
        assert_int_equal(st.used, 0);
        assert_int_equal(st.free + st.cached, r->N);
        for (int32_t id = 0; id < r->N; id++)
            assert_int_equal(ref_of(r->p, id), 0);
        /* Every block can be taken again. */
        int32_t all[160];
        assert_int_equal(bp_alloc(r->p, (size_t)r->N, all), RT_OK);
        assert_int_equal(bp_release(r->p, all, (size_t)r->N), RT_OK);
        r_verify(r);
        bp_destroy(r->p);
    }
    assert_true(ops >= 50000);
    /* The run really took every path. */
    print_message("randomized: %ld ops, %ld hit blocks, %ld evictions, %ld refused, %ld "
                  "preempted, %ld duplicate commits\n",
                  ops, n_hits, n_evicted, n_full, n_preempt, n_dup);
    assert_true(n_hits > 1000 && n_evicted > 1000 && n_full > 10 && n_preempt > 10 && n_dup > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_known_answers),
        cmocka_unit_test(test_prefix_match),
        cmocka_unit_test(test_lru_leaf_first),
        cmocka_unit_test(test_shared_refcounts),
        cmocka_unit_test(test_full_changes_nothing),
        cmocka_unit_test(test_events_sequence),
        cmocka_unit_test(test_event_overflow),
        cmocka_unit_test(test_duplicate_commit),
        cmocka_unit_test(test_release_and_create_errors),
        cmocka_unit_test(test_randomized),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
