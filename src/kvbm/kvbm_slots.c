/*
 * kvbm_slots.c - the slot map of the KV block manager's tiers (kvbm_slots.h).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "kvbm/kvbm_slots.h"

static size_t home(const kvs_map_t *m, uint64_t h) { return XXH3_64bits_withSeed(&h, sizeof h, m->seed) & (m->index_cap - 1); }

/* the index position of h, or of the empty position where it would go */
static size_t find(const kvs_map_t *m, uint64_t h)
{
    for (size_t i = home(m, h);; i = (i + 1) & (m->index_cap - 1))
        if (m->index[i] < 0 || m->slots[m->index[i]].key.seq_hash == h) return i;
}

static void index_del(kvs_map_t *m, size_t i)
{
    const size_t mask = m->index_cap - 1;
    m->index[i] = -1;
    for (size_t j = i;;) {
        j = (j + 1) & mask;
        if (m->index[j] < 0) return;
        const size_t k = home(m, m->slots[m->index[j]].key.seq_hash);
        if ((i <= j) ? (i < k && k <= j) : (i < k || k <= j)) continue;
        m->index[i] = m->index[j];
        m->index[j] = -1;
        i = j;
    }
}

static void lru_unlink(kvs_map_t *m, int64_t s)
{
    kvs_slot_t *x = &m->slots[s];
    if (x->prev >= 0) m->slots[x->prev].next = x->next;
    else m->lru_head = x->next;
    if (x->next >= 0) m->slots[x->next].prev = x->prev;
    else m->lru_tail = x->prev;
    x->prev = x->next = -1;
}

static void lru_append(kvs_map_t *m, int64_t s)
{
    kvs_slot_t *x = &m->slots[s];
    x->prev = m->lru_tail;
    x->next = -1;
    if (m->lru_tail >= 0) m->slots[m->lru_tail].next = s;
    else m->lru_head = s;
    m->lru_tail = s;
}

rt_status_t kvs_init(kvs_map_t *m, int64_t n)
{
    memset(m, 0, sizeof *m);
    if (n < 2 || n > ((int64_t)1 << 30)) return rt_error_set(RT_ERR_RANGE, "kvbm: %lld blocks (2 to 2^30)", (long long)n);
    m->n = n;
    m->index_cap = 4;
    while (m->index_cap < 2 * (size_t)n) m->index_cap *= 2;
    if (getentropy(&m->seed, sizeof m->seed) != 0) m->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)m;
    m->slots = calloc((size_t)n, sizeof *m->slots);
    m->free_stack = malloc((size_t)n * sizeof *m->free_stack);
    m->index = malloc(m->index_cap * sizeof *m->index);
    if (!m->slots || !m->free_stack || !m->index) {
        kvs_free(m);
        return rt_error_set(RT_ERR_NOMEM, "kvbm: out of memory for %lld slots", (long long)n);
    }
    for (size_t i = 0; i < m->index_cap; i++) m->index[i] = -1;
    for (int64_t s = 0; s < n; s++) m->free_stack[s] = n - 1 - s;
    m->n_free = n;
    m->lru_head = m->lru_tail = -1;
    return RT_OK;
}

void kvs_free(kvs_map_t *m)
{
    free(m->slots);
    free(m->free_stack);
    free(m->index);
    memset(m, 0, sizeof *m);
}

int64_t kvs_get(kvs_map_t *m, uint64_t seq_hash)
{
    const int64_t s = m->index[find(m, seq_hash)];
    if (s < 0) return -1;
    lru_unlink(m, s);
    lru_append(m, s);
    m->hits++;
    return s;
}

int64_t kvs_put(kvs_map_t *m, const kvbm_key_t *key, kvbm_key_t *dropped, bool *did_drop)
{
    *did_drop = false;
    size_t i = find(m, key->seq_hash);
    if (m->index[i] >= 0) { /* held: the most recent now */
        lru_unlink(m, m->index[i]);
        lru_append(m, m->index[i]);
        return -1;
    }
    int64_t s;
    if (m->n_free > 0) {
        s = m->free_stack[--m->n_free];
    } else { /* drop the least recent */
        s = m->lru_head;
        *dropped = m->slots[s].key;
        *did_drop = true;
        lru_unlink(m, s);
        index_del(m, find(m, m->slots[s].key.seq_hash));
        m->held--;
        m->dropped++;
        i = find(m, key->seq_hash); /* the deletion may have moved entries */
    }
    m->slots[s].key = *key;
    m->index[i] = s;
    lru_append(m, s);
    m->held++;
    m->stored++;
    return s;
}

void kvs_remove(kvs_map_t *m, uint64_t seq_hash)
{
    const size_t i = find(m, seq_hash);
    const int64_t s = m->index[i];
    if (s < 0) return;
    lru_unlink(m, s);
    index_del(m, i);
    m->free_stack[m->n_free++] = s;
    m->held--;
}

void kvs_stats(const kvs_map_t *m, kvbm_stats_t *out)
{
    *out = (kvbm_stats_t){.capacity = m->n, .held = m->held, .stored = m->stored, .dropped = m->dropped,
                          .hits = m->hits};
}

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) return rt_error_set(RT_ERR_INTERNAL, "kvbm: " __VA_ARGS__);                             \
    } while (0)

rt_status_t kvs_check(const kvs_map_t *m)
{
    int64_t walked = 0, prev = -1;
    for (int64_t s = m->lru_head; s >= 0; prev = s, s = m->slots[s].next) {
        CHECK(walked++ < m->n, "LRU list longer than the tier (a cycle)");
        CHECK(m->slots[s].prev == prev, "slot %lld: prev %lld, walked from %lld", (long long)s,
              (long long)m->slots[s].prev, (long long)prev);
        CHECK(m->index[find(m, m->slots[s].key.seq_hash)] == s, "slot %lld is not where the index finds its hash",
              (long long)s);
    }
    CHECK(walked == m->held && m->lru_tail == prev, "LRU list: %lld entries, %lld held", (long long)walked,
          (long long)m->held);
    CHECK(m->held + m->n_free == m->n, "%lld held + %lld free != %lld", (long long)m->held, (long long)m->n_free,
          (long long)m->n);
    int64_t indexed = 0;
    for (size_t i = 0; i < m->index_cap; i++) indexed += m->index[i] >= 0;
    CHECK(indexed == m->held, "%lld indexed, %lld held", (long long)indexed, (long long)m->held);
    return RT_OK;
}
