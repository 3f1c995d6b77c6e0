/*
 * kv_index.c - which worker holds which KV block (kv_router.h).
 *
 * One open-addressing table (linear probing, load <= 1/2) keyed by sequence
 * hash; each slot has a bitset of the workers holding the block and their
 * count (a slot is in use while the count is above 0). Slots are placed by
 * xxh3 of the key with a seed drawn at creation, not by the key's own bits:
 * prompts are the clients' to choose, and so are their block hashes.
 * Removal shifts later entries back (no tombstones); clearing a worker
 * rebuilds the table once.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "rotor/kv_router.h"

struct kvi {
    int n_workers, n_words;
    size_t cap, n;       /* slots (power of two), slots in use */
    uint64_t seed;
    uint64_t *keys;      /* (cap) */
    int32_t *holders;    /* (cap) workers holding the slot's block; 0 = free */
    uint64_t *bits;      /* (cap * n_words) */
    int64_t *per_worker; /* (n_workers) blocks held */
    uint64_t *active;    /* (n_words) kvi_overlap's scratch */
};

static size_t home(const kvi_t *x, uint64_t key) { return XXH3_64bits_withSeed(&key, sizeof key, x->seed) & (x->cap - 1); }

static uint64_t *bits_of(const kvi_t *x, size_t slot) { return x->bits + slot * (size_t)x->n_words; }

/* the slot holding key, or cap */
static size_t find(const kvi_t *x, uint64_t key)
{
    for (size_t i = home(x, key);; i = (i + 1) & (x->cap - 1)) {
        if (x->holders[i] == 0) return x->cap;
        if (x->keys[i] == key) return i;
    }
}

static rt_status_t alloc_table(size_t cap, int n_words, uint64_t **keys, int32_t **holders, uint64_t **bits)
{
    *keys = malloc(cap * sizeof **keys);
    *holders = calloc(cap, sizeof **holders);
    *bits = calloc(cap * (size_t)n_words, sizeof **bits);
    if (*keys && *holders && *bits) return RT_OK;
    free(*keys);
    free(*holders);
    free(*bits);
    return rt_error_set(RT_ERR_NOMEM, "kv index: out of memory for %zu slots", cap);
}

/* Move every slot in use into a fresh table of cap slots. */
static rt_status_t rebuild(kvi_t *x, size_t cap)
{
    uint64_t *keys, *bits;
    int32_t *holders;
    rt_status_t st = alloc_table(cap, x->n_words, &keys, &holders, &bits);
    if (st) return st;
    const size_t old_cap = x->cap;
    uint64_t *old_keys = x->keys, *old_bits = x->bits;
    int32_t *old_holders = x->holders;
    x->keys = keys;
    x->holders = holders;
    x->bits = bits;
    x->cap = cap;
    for (size_t s = 0; s < old_cap; s++) {
        if (old_holders[s] == 0) continue;
        size_t i = home(x, old_keys[s]);
        while (x->holders[i]) i = (i + 1) & (cap - 1);
        x->keys[i] = old_keys[s];
        x->holders[i] = old_holders[s];
        memcpy(bits_of(x, i), old_bits + s * (size_t)x->n_words, (size_t)x->n_words * sizeof *old_bits);
    }
    free(old_keys);
    free(old_holders);
    free(old_bits);
    return RT_OK;
}

rt_status_t kvi_create(int n_workers, kvi_t **out)
{
    if (n_workers < 1 || n_workers > 65536)
        return rt_error_set(RT_ERR_RANGE, "kv index: %d workers (1..65536)", n_workers);
    kvi_t *x = calloc(1, sizeof *x);
    if (!x) return rt_error_set(RT_ERR_NOMEM, "kv index: out of memory");
    x->n_workers = n_workers;
    x->n_words = (n_workers + 63) / 64;
    x->cap = 1024;
    if (getentropy(&x->seed, sizeof x->seed) != 0) x->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)x;
    x->per_worker = calloc((size_t)n_workers, sizeof *x->per_worker);
    x->active = calloc((size_t)x->n_words, sizeof *x->active);
    rt_status_t st = x->per_worker && x->active ? alloc_table(x->cap, x->n_words, &x->keys, &x->holders, &x->bits)
                                                : rt_error_set(RT_ERR_NOMEM, "kv index: out of memory");
    if (st) {
        free(x->per_worker);
        free(x->active);
        free(x);
        return st;
    }
    *out = x;
    return RT_OK;
}

void kvi_destroy(kvi_t *x)
{
    if (!x) return;
    free(x->keys);
    free(x->holders);
    free(x->bits);
    free(x->per_worker);
    free(x->active);
    free(x);
}

rt_status_t kvi_store(kvi_t *x, int w, uint64_t seq_hash)
{
    if (w < 0 || w >= x->n_workers) return rt_error_set(RT_ERR_RANGE, "kv index: worker %d of %d", w, x->n_workers);
    size_t i = find(x, seq_hash);
    if (i == x->cap) {
        if ((x->n + 1) * 2 > x->cap) {
            rt_status_t st = rebuild(x, x->cap * 2);
            if (st) return st;
        }
        for (i = home(x, seq_hash); x->holders[i]; i = (i + 1) & (x->cap - 1)) {
        }
        x->keys[i] = seq_hash;
        memset(bits_of(x, i), 0, (size_t)x->n_words * sizeof *x->bits);
        x->n++;
    }
    uint64_t *b = bits_of(x, i) + w / 64, m = 1ull << (w % 64);
    if (*b & m) return RT_OK;
    *b |= m;
    x->holders[i]++;
    x->per_worker[w]++;
    return RT_OK;
}

/* Free slot i, shifting later entries of its probe chain back into it. */
static void delete_slot(kvi_t *x, size_t i)
{
    const size_t mask = x->cap - 1;
    x->holders[i] = 0;
    x->n--;
    for (size_t j = i;;) {
        j = (j + 1) & mask;
        if (x->holders[j] == 0) return;
        const size_t k = home(x, x->keys[j]);
        /* j stays unless its home k lies cyclically outside (i, j] */
        if ((i <= j) ? (i < k && k <= j) : (i < k || k <= j)) continue;
        x->keys[i] = x->keys[j];
        x->holders[i] = x->holders[j];
        memcpy(bits_of(x, i), bits_of(x, j), (size_t)x->n_words * sizeof *x->bits);
        x->holders[j] = 0;
        i = j;
    }
}

void kvi_remove(kvi_t *x, int w, uint64_t seq_hash)
{
    if (w < 0 || w >= x->n_workers) return;
    const size_t i = find(x, seq_hash);
    if (i == x->cap) return;
    uint64_t *b = bits_of(x, i) + w / 64, m = 1ull << (w % 64);
    if (!(*b & m)) return;
    *b &= ~m;
    x->per_worker[w]--;
    if (--x->holders[i] == 0) delete_slot(x, i);
}

void kvi_clear_worker(kvi_t *x, int w)
{
    if (w < 0 || w >= x->n_workers || x->per_worker[w] == 0) return;
    const uint64_t m = 1ull << (w % 64);
    size_t emptied = 0;
    for (size_t i = 0; i < x->cap; i++) {
        uint64_t *b = bits_of(x, i) + w / 64;
        if (x->holders[i] == 0 || !(*b & m)) continue;
        *b &= ~m;
        emptied += --x->holders[i] == 0;
    }
    x->per_worker[w] = 0;
    x->n -= emptied;
    /* emptied slots break probe chains: place the rest again; without the
     * memory for that, shift each chain back into the holes in place (two
     * laps: a hole a shift leaves past the end is met again from the start) */
    if (emptied && rebuild(x, x->cap) != RT_OK)
        for (size_t k = 0; k < 2 * x->cap; k++)
            if (x->holders[k & (x->cap - 1)] == 0) {
                x->n++; /* delete_slot counts it out again */
                delete_slot(x, k & (x->cap - 1));
            }
}

rt_status_t kvi_apply(kvi_t *x, int w, const bp_event_t *ev)
{
    switch (ev->kind) {
    case BP_EV_STORED: return kvi_store(x, w, ev->seq_hash);
    case BP_EV_REMOVED: kvi_remove(x, w, ev->seq_hash); return RT_OK;
    case BP_EV_CLEARED: kvi_clear_worker(x, w); return RT_OK;
    default: return rt_error_set(RT_ERR_FORMAT, "kv index: unknown KV event kind %d", (int)ev->kind);
    }
}

void kvi_overlap_any(kvi_t *const *xs, int n_x, const uint64_t *seq_hashes, size_t n, int32_t *overlap)
{
    kvi_t *x = xs[0];
    for (int w = 0; w < x->n_workers; w++) overlap[w] = 0;
    for (int k = 0; k < x->n_words; k++) x->active[k] = ~0ull;
    if (x->n_workers % 64) x->active[x->n_words - 1] = (1ull << (x->n_workers % 64)) - 1;
    for (size_t i = 0; i < n; i++) {
        size_t s[8];
        const int nx = n_x < 8 ? n_x : 8;
        for (int j = 0; j < nx; j++) s[j] = find(xs[j], seq_hashes[i]);
        uint64_t any = 0;
        for (int k = 0; k < x->n_words; k++) {
            uint64_t held = 0;
            for (int j = 0; j < nx; j++)
                if (s[j] != xs[j]->cap) held |= bits_of(xs[j], s[j])[k];
            const uint64_t keep = x->active[k] & held;
            for (uint64_t gone = x->active[k] & ~keep; gone; gone &= gone - 1)
                overlap[64 * k + __builtin_ctzll(gone)] = (int32_t)i;
            x->active[k] = keep;
            any |= keep;
        }
        if (!any) return;
    }
    for (int k = 0; k < x->n_words; k++)
        for (uint64_t left = x->active[k]; left; left &= left - 1) overlap[64 * k + __builtin_ctzll(left)] = (int32_t)n;
}

void kvi_overlap(kvi_t *x, const uint64_t *seq_hashes, size_t n, int32_t *overlap)
{
    kvi_overlap_any(&x, 1, seq_hashes, n, overlap);
}

int64_t kvi_worker_blocks(const kvi_t *x, int w) { return w >= 0 && w < x->n_workers ? x->per_worker[w] : 0; }

int64_t kvi_blocks(const kvi_t *x) { return (int64_t)x->n; }

rt_status_t kvi_check(const kvi_t *x)
{
    size_t used = 0;
    int64_t *count = calloc((size_t)x->n_workers, sizeof *count);
    if (!count) return rt_error_set(RT_ERR_NOMEM, "kv index check: out of memory");
    rt_status_t st = RT_OK;
    for (size_t i = 0; i < x->cap && !st; i++) {
        if (x->holders[i] == 0) continue;
        used++;
        int32_t h = 0;
        for (int w = 0; w < x->n_workers; w++)
            if (bits_of(x, i)[w / 64] >> (w % 64) & 1) {
                h++;
                count[w]++;
            }
        if (h != x->holders[i]) st = rt_error_set(RT_ERR_INTERNAL, "kv index: slot %zu counts %d holders, has %d", i, x->holders[i], h);
        else if (find(x, x->keys[i]) != i) st = rt_error_set(RT_ERR_INTERNAL, "kv index: slot %zu is off its probe chain", i);
    }
    if (!st && used != x->n) st = rt_error_set(RT_ERR_INTERNAL, "kv index: %zu slots in use, counted %zu", used, x->n);
    for (int w = 0; w < x->n_workers && !st; w++)
        if (count[w] != x->per_worker[w])
            st = rt_error_set(RT_ERR_INTERNAL, "kv index: worker %d holds %lld blocks, counted %lld", w,
                              (long long)count[w], (long long)x->per_worker[w]);
    free(count);
    return st;
}
