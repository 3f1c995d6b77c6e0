/*
 * rb_prompt.c - random prompts of an exact (tokenizer) or approximate (word
 * list) number of tokens. See rb_prompt.h.
 */
#include "rb_prompt.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "rotor/gguf.h"
#include "rotor/tokenizer.h"

/* Approx mode: words that are one token (with their leading space) in the
 * common tokenizers (GPT-2/4, Llama, Qwen, Mistral). */
static const char *const pr_words[] = {
    "the",      "of",      "and",      "to",      "in",         "is",        "that",    "for",
    "it",       "as",      "was",      "with",    "be",         "by",        "on",      "not",
    "he",       "this",    "are",      "or",      "his",        "from",      "at",      "which",
    "but",      "have",    "an",       "had",     "they",       "you",       "were",    "their",
    "one",      "all",     "we",       "can",     "her",        "has",       "there",   "been",
    "if",       "more",    "when",     "will",    "would",      "who",       "so",      "no",
    "time",     "people",  "year",     "way",     "day",        "man",       "thing",   "woman",
    "life",     "child",   "world",    "school",  "state",      "family",    "student", "group",
    "country",  "problem", "hand",     "part",    "place",      "case",      "week",    "company",
    "system",   "program", "question", "work",    "government", "number",    "night",   "point",
    "home",     "water",   "room",     "mother",  "area",       "money",     "story",   "fact",
    "month",    "lot",     "right",    "study",   "book",       "eye",       "job",     "word",
    "business", "issue",   "side",     "kind",    "head",       "house",     "service", "friend",
    "father",   "power",   "hour",     "game",    "line",       "end",       "member",  "law",
    "car",      "city",    "name",     "team",    "minute",     "idea",      "body",    "back",
    "parent",   "face",    "level",    "office",  "door",       "health",    "person",  "art",
    "war",      "history", "party",    "result",  "change",     "morning",   "reason",  "research",
    "girl",     "moment",  "air",      "teacher", "force",      "education", "open",    "small",
    "large",    "long",    "great",    "little",  "old",        "new",       "good",    "high",
    "early",
};
#define PR_N_WORDS ((int32_t)(sizeof pr_words / sizeof pr_words[0]))

/* Tier-1 pools smaller than this fall back to the looser tier 2. */
#define PR_MIN_POOL 32
/* Adjustment rounds before giving up on an exact count. */
#define PR_MAX_ROUNDS 256

struct rb_prompt {
    tok_vocab_t *vocab; /* NULL in approx mode */
    int32_t *pool;      /* (n_pool) ids random prompts draw from */
    int32_t n_pool;
    bool strip_lead; /* drop the space a text would begin with (SPM) */
};

/* Room for extra more bytes and the NUL. */
static rt_status_t pr_str_reserve(char **buf, size_t *len, size_t *cap, size_t extra) {
    if (*buf && *len + extra + 1 <= *cap) return RT_OK;
    size_t nc = *cap ? *cap : 256;
    while (nc < *len + extra + 1)
        nc *= 2;
    char *nb = realloc(*buf, nc);
    if (!nb) return rt_error_set(RT_ERR_NOMEM, "out of memory (%zu bytes of prompt text)", nc);
    *buf = nb;
    *cap = nc;
    return RT_OK;
}

rt_status_t rb_str_append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    rt_status_t st = pr_str_reserve(buf, len, cap, n);
    if (st) return st;
    if (n) memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return RT_OK;
}

/* The bytes of token id as a malloc'd string (*n bytes), or NULL. */
static char *pr_piece(const tok_vocab_t *v, int32_t id, size_t *n) {
    char small[128];
    size_t k = tok_token_to_piece(v, id, small, sizeof small, false);
    char *s = malloc(k + 1);
    if (!s) return NULL;
    if (k <= sizeof small)
        memcpy(s, small, k);
    else
        tok_token_to_piece(v, id, s, k, false);
    s[k] = '\0';
    *n = k;
    return s;
}

/* Tier 1: " " + ASCII letters. */
static bool pr_tier1(const char *s, size_t n) {
    if (n < 2 || s[0] != ' ') return false;
    for (size_t i = 1; i < n; i++)
        if (!isalpha((unsigned char)s[i])) return false;
    return true;
}

/* Tier 2: printable ASCII, no markup characters that could spell special
 * tokens (<|...|>, [INST]) or template syntax. */
static bool pr_tier2(const char *s, size_t n) {
    if (n < 1) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || strchr("<>[]{}|\\`", c)) return false;
    }
    return true;
}

/* Does the piece encode back to exactly [id]? */
static bool pr_roundtrip(const tok_vocab_t *v, int32_t id, const char *s, size_t n) {
    int32_t *ids = NULL;
    size_t k = 0;
    if (tok_encode(v, s, n, false, false, &ids, &k) != RT_OK) return false;
    bool ok = k == 1 && ids[0] == id;
    free(ids);
    return ok;
}

/* Fill p->pool from the vocabulary: tier 1 with round trip, else tier 1,
 * else tier 2. The round trip is tried on " word" and on "word": a
 * SentencePiece vocabulary that adds a space prefix encodes "word" as
 * "\xe2\x96\x81word" and " word" as two tokens; then the leading space of a
 * whole text is dropped (p->strip_lead). */
static rt_status_t pr_pool_build(rb_prompt_t *p, const char *path) {
    int32_t nv = tok_n_vocab(p->vocab);
    int32_t *lists[4] = {0}, counts[4] = {0}; /* round trip as is, stripped; tier 1; tier 2 */
    for (int k = 0; k < 4; k++)
        if (!(lists[k] = malloc((size_t)(nv > 0 ? nv : 1) * sizeof(int32_t)))) {
            for (int j = 0; j < 4; j++)
                free(lists[j]);
            return rt_error_set(RT_ERR_NOMEM, "out of memory (token pool of %d)", nv);
        }
    for (int32_t id = 0; id < nv; id++) {
        if (tok_token_type(p->vocab, id) != TOK_TYPE_NORMAL || tok_is_control(p->vocab, id) ||
            tok_is_eog(p->vocab, id))
            continue;
        size_t n = 0;
        char *s = pr_piece(p->vocab, id, &n);
        if (!s) continue;
        if (pr_tier1(s, n)) {
            lists[2][counts[2]++] = id;
            if (pr_roundtrip(p->vocab, id, s, n)) lists[0][counts[0]++] = id;
            if (pr_roundtrip(p->vocab, id, s + 1, n - 1)) lists[1][counts[1]++] = id;
        }
        if (pr_tier2(s, n)) lists[3][counts[3]++] = id;
        free(s);
    }
    int pick = counts[0] >= PR_MIN_POOL && counts[0] >= counts[1] ? 0
               : counts[1] >= PR_MIN_POOL                         ? 1
               : counts[2] >= PR_MIN_POOL                         ? 2
                                                                  : 3;
    p->strip_lead = pick == 1;
    for (int k = 0; k < 4; k++)
        if (k != pick) free(lists[k]);
    if (counts[pick] < 2) {
        free(lists[pick]);
        return rt_error_set(
            RT_ERR_UNSUPPORTED,
            "%s: the vocabulary has only %d plain text tokens to build prompts from", path,
            counts[pick]);
    }
    p->pool = lists[pick];
    p->n_pool = counts[pick];
    return RT_OK;
}

rt_status_t rb_prompt_create(const char *gguf_path, rb_prompt_t **out) {
    rb_prompt_t *p = calloc(1, sizeof *p);
    if (!p) return rt_error_set(RT_ERR_NOMEM, "out of memory");
    rt_status_t st = RT_OK;
    if (!gguf_path) {
        p->pool = malloc(PR_N_WORDS * sizeof *p->pool);
        if (!p->pool) {
            st = rt_error_set(RT_ERR_NOMEM, "out of memory");
            goto err;
        }
        for (int32_t i = 0; i < PR_N_WORDS; i++)
            p->pool[i] = i;
        p->n_pool = PR_N_WORDS;
        *out = p;
        return RT_OK;
    }
    gguf_ctx_t *g = NULL;
    if ((st = gguf_open(gguf_path, &g))) goto err;
    st = tok_vocab_from_gguf(g, &p->vocab);
    gguf_close(g);
    if (st) {
        rt_error_set(st, "%s: tokenizer: %s", gguf_path, rt_error_msg());
        goto err;
    }
    if ((st = pr_pool_build(p, gguf_path))) goto err;
    *out = p;
    return RT_OK;
err:
    rb_prompt_destroy(p);
    return st;
}

void rb_prompt_destroy(rb_prompt_t *p) {
    if (!p) return;
    if (p->vocab) tok_vocab_destroy(p->vocab);
    free(p->pool);
    free(p);
}

bool rb_prompt_exact(const rb_prompt_t *p) {
    return p->vocab != NULL;
}
int32_t rb_prompt_pool_size(const rb_prompt_t *p) {
    return p->n_pool;
}

void rb_prompt_random_ids(const rb_prompt_t *p, rb_rng_t *r, int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++)
        ids[i] = p->pool[rb_rng_below(r, (uint64_t)p->n_pool)];
}

rt_status_t rb_prompt_decode(const rb_prompt_t *p, const int32_t *ids, size_t n, char **buf,
                             size_t *len, size_t *cap) {
    rt_status_t st = rb_str_append(buf, len, cap, "", 0);
    for (size_t i = 0; i < n && !st; i++) {
        if (!p->vocab) {
            if (ids[i] < 0 || ids[i] >= PR_N_WORDS)
                return rt_error_set(RT_ERR_INTERNAL, "word index %d out of range", ids[i]);
            const char *w = pr_words[ids[i]];
            if (!(st = rb_str_append(buf, len, cap, " ", 1)))
                st = rb_str_append(buf, len, cap, w, strlen(w));
            continue;
        }
        char small[64];
        size_t k = tok_token_to_piece(p->vocab, ids[i], small, sizeof small, false);
        if (k <= sizeof small) {
            size_t skip = p->strip_lead && *len == 0 && k > 0 && small[0] == ' ';
            st = rb_str_append(buf, len, cap, small + skip, k - skip);
            continue;
        }
        if ((st = pr_str_reserve(buf, len, cap, k))) break;
        tok_token_to_piece(p->vocab, ids[i], *buf + *len, k, false);
        *len += k;
        (*buf)[*len] = '\0';
    }
    return st;
}

rt_status_t rb_prompt_encode(const rb_prompt_t *p, const char *text, size_t len, int32_t **ids,
                             size_t *n) {
    if (!p->vocab) return rt_error_set(RT_ERR_INTERNAL, "rb_prompt_encode without a tokenizer");
    return tok_encode(p->vocab, text, len, false, false, ids, n);
}

rt_status_t rb_prompt_count(const rb_prompt_t *p, const char *text, size_t len, int32_t *n) {
    if (!p->vocab) {
        int32_t words = 0;
        bool in = false;
        for (size_t i = 0; i < len; i++) {
            bool sp = isspace((unsigned char)text[i]) != 0;
            if (!sp && !in) words++;
            in = !sp;
        }
        *n = words;
        return RT_OK;
    }
    if (len == 0) {
        *n = 0;
        return RT_OK;
    }
    int32_t *ids = NULL;
    size_t k = 0;
    rt_status_t st = tok_encode(p->vocab, text, len, false, false, &ids, &k);
    if (st) return st;
    free(ids);
    *n = (int32_t)k;
    return RT_OK;
}

/* Grow an id array to hold want ids. */
static rt_status_t pr_ids_reserve(int32_t **ids, size_t *cap, size_t want) {
    if (want <= *cap) return RT_OK;
    size_t nc = *cap ? *cap : 64;
    while (nc < want)
        nc *= 2;
    int32_t *ni = realloc(*ids, nc * sizeof *ni);
    if (!ni) return rt_error_set(RT_ERR_NOMEM, "out of memory (%zu prompt ids)", nc);
    *ids = ni;
    *cap = nc;
    return RT_OK;
}

/*
 * Adjust ids[0..*n) until head + decode(ids) counts target tokens: drop ids
 * when over, add random ones when under; after a few rounds also replace the
 * last id, which breaks cycles where a word's token count flips back and
 * forth. The decoded text is left in *buf (head first, head_len bytes).
 */
static rt_status_t pr_adjust(const rb_prompt_t *p, rb_rng_t *r, const char *head, size_t head_len,
                             int32_t target, int32_t **ids, size_t *n, size_t *ids_cap, char **buf,
                             size_t *len, size_t *cap) {
    rt_status_t st;
    for (int round = 0; round < PR_MAX_ROUNDS; round++) {
        *len = 0;
        if ((st = rb_str_append(buf, len, cap, head, head_len))) return st;
        if ((st = rb_prompt_decode(p, *ids, *n, buf, len, cap))) return st;
        int32_t c;
        if ((st = rb_prompt_count(p, *buf, *len, &c))) return st;
        if (c == target) return RT_OK;
        if (c > target) {
            size_t k = (size_t)(c - target);
            if (k >= *n) k = *n - 1;
            *n -= k;
            if (k == 0 || round >= 8) rb_prompt_random_ids(p, r, *ids + *n - 1, 1);
        } else {
            size_t k = (size_t)(target - c);
            if ((st = pr_ids_reserve(ids, ids_cap, *n + k))) return st;
            rb_prompt_random_ids(p, r, *ids + *n, k);
            *n += k;
            if (round >= 8) rb_prompt_random_ids(p, r, *ids + *n - 1, 1);
        }
    }
    return rt_error_set(RT_ERR_INTERNAL,
                        "could not build a prompt of exactly %d tokens in %d rounds", target,
                        PR_MAX_ROUNDS);
}

rt_status_t rb_prompt_text(const rb_prompt_t *p, rb_rng_t *r, const char *head, size_t head_len,
                           int32_t n_own, char **text, size_t *text_len, int32_t *n_total) {
    if (n_own < 1)
        return rt_error_set(RT_ERR_INVALID, "a prompt part needs >= 1 token (asked %d)", n_own);
    rt_status_t st;
    int32_t n_head = 0;
    if (head_len && (st = rb_prompt_count(p, head, head_len, &n_head))) return st;
    int32_t *ids = NULL;
    size_t n = (size_t)n_own, ids_cap = 0;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if ((st = pr_ids_reserve(&ids, &ids_cap, n))) return st;
    rb_prompt_random_ids(p, r, ids, n);
    if (!rb_prompt_exact(p)) {
        st = rb_prompt_decode(p, ids, n, &buf, &len, &cap);
    } else {
        /* the part alone first (cheap: no head to re-encode), then together
         * with the head, which differs only where tokens merge across it */
        st = pr_adjust(p, r, "", 0, n_own, &ids, &n, &ids_cap, &buf, &len, &cap);
        if (!st && head_len)
            st = pr_adjust(p, r, head, head_len, n_head + n_own, &ids, &n, &ids_cap, &buf, &len,
                           &cap);
        if (!st && head_len) { /* keep the part only */
            memmove(buf, buf + head_len, len - head_len + 1);
            len -= head_len;
        }
    }
    free(ids);
    if (st) {
        free(buf);
        return st;
    }
    *text = buf;
    *text_len = len;
    *n_total = n_head + n_own;
    return RT_OK;
}
