/*
 * tokenizer_export.c - `rotor-model export-tokenizer`: a GGUF tokenizer as
 * a Hugging Face tokenizer directory (see tokenizer_export.h).
 *
 * The vocabulary semantics (token types after rotor's auto-detection, BOS,
 * EOS, add_bos/add_eos, tokenizer.ggml.pre) come from tok_vocab_from_gguf,
 * so the export says what rotor does; merges, scores, the chat template and
 * the context length are read from the GGUF itself. All JSON goes through
 * cJSON.
 *
 * How each part maps (rotor follows llama.cpp's llama-vocab.cpp):
 *   - special-token partition -> added_tokens (control and unknown tokens
 *     special, user-defined ones not; none normalized, so they are matched
 *     in the raw text as rotor does);
 *   - BPE pre-tokenizer regexes applied in turn, matches and gaps kept ->
 *     one Split(Regex, Isolated) per regex, then ByteLevel without its own
 *     regex; "ignore merges" types (llama3, tekken) -> BPE ignore_merges;
 *   - merge rank, leftmost first -> BPE merges in GGUF order (Hugging Face
 *     also merges the lowest rank first, leftmost on ties);
 *   - SPM: "▁" for spaces and the space prefix at the start and after each
 *     special token -> normalizer Prepend("▁") + Replace(" ", "▁") (Hugging
 *     Face normalizes each piece between added tokens separately); merging
 *     the adjacent pair whose concatenation is the best-scored token ->
 *     merges (left, right) for every split of every token into two tokens,
 *     ranked by the token's score, best first; <0xNN> fallback ->
 *     byte_fallback. llama.cpp breaks equal scores by position, Hugging Face
 *     by rank, so a vocabulary with tied scores can differ (real SentencePiece
 *     models have one score per piece); the count of ties is reported.
 *   - add_bos/add_eos -> a TemplateProcessing post-processor.
 */
#include "tokenizer_export.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rotor/gguf.h"
#include "rotor/tokenizer.h"

#define TX_SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's space */

/* The PCRE2 pattern in Oniguruma's (Ruby) syntax, which the Rust tokenizers
 * use: there '$' is end of line, so an unescaped '$' outside a class becomes
 * '\z' (PCRE2_DOLLAR_ENDONLY: end of the subject). Everything else the
 * regexes use means the same in both. Returns a malloc'd string or NULL. */
static char *tx_onig_pattern(const char *rx) {
    size_t n = strlen(rx);
    char *out = malloc(2 * n + 1);
    if (!out) return NULL;
    size_t w = 0;
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = rx[i];
        if (c == '\\' && i + 1 < n) {
            out[w++] = c;
            out[w++] = rx[++i];
            continue;
        }
        if (c == '[' && !in_class)
            in_class = true;
        else if (c == ']' && in_class)
            in_class = false;
        if (c == '$' && !in_class) {
            out[w++] = '\\';
            out[w++] = 'z';
        } else {
            out[w++] = c;
        }
    }
    out[w] = '\0';
    return out;
}

/* ------------------------------------------------------------------ */

typedef struct {
    const gguf_ctx_t *g;
    const tok_vocab_t *v;
    int32_t n;
    int32_t unk, pad; /* -1 if none */
    bool spm;
    tokenizer_export_stats_t stats;
} tx_ctx_t;

static bool tx_utf8_valid(const char *p, size_t n) {
    const unsigned char *s = (const unsigned char *)p;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (c == 0 || len == 0 || len > n - i) return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80) return false;
        if ((len == 2 && c < 0xc2) || (len == 3 && c == 0xe0 && s[i + 1] < 0xa0) ||
            (len == 3 && c == 0xed && s[i + 1] >= 0xa0) ||
            (len == 4 &&
             (c > 0xf4 || (c == 0xf0 && s[i + 1] < 0x90) || (c == 0xf4 && s[i + 1] >= 0x90))))
            return false;
        i += len;
    }
    return true;
}

/* A token Hugging Face can hold: valid UTF-8 and the id its text maps to
 * (for duplicate texts rotor keeps the last id). */
static bool tx_token_ok(const tx_ctx_t *c, int32_t id) {
    const char *t = tok_text(c->v, id);
    return t && tx_utf8_valid(t, strlen(t)) && tok_find(c->v, t) == id;
}

static bool tx_is_added(tok_type_t t) {
    return t == TOK_TYPE_CONTROL || t == TOK_TYPE_USER_DEFINED || t == TOK_TYPE_UNKNOWN;
}

static int32_t tx_get_id(const tx_ctx_t *c, const char *key, int32_t dflt) {
    int64_t x = gguf_get_i64(c->g, key, -1);
    return x >= 0 && x < c->n ? (int32_t)x : dflt;
}

/* cJSON helpers. A NULL item (its creation failed) or parent propagates as
 * NULL and sets tx_failed, which tokenizer_export_hf checks before writing
 * anything: one out-of-memory check for the whole tree. */
static _Thread_local bool tx_failed;

static cJSON *tx_add(cJSON *obj, const char *key, cJSON *item) {
    if (!item || !obj || !cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        tx_failed = true;
        return NULL;
    }
    return item;
}

static cJSON *tx_push(cJSON *arr, cJSON *item) {
    if (!item || !arr || !cJSON_AddItemToArray(arr, item)) {
        cJSON_Delete(item);
        tx_failed = true;
        return NULL;
    }
    return item;
}

static cJSON *tx_str_or_null(const char *s) {
    return s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

static const char *tx_text_or_null(const tx_ctx_t *c, int32_t id) {
    return id >= 0 && tx_token_ok(c, id) ? tok_text(c->v, id) : NULL;
}

/* ------------------------------------------------------------ vocab */

static rt_status_t tx_vocab(tx_ctx_t *c, cJSON *model) {
    cJSON *vocab = tx_add(model, "vocab", cJSON_CreateObject());
    if (!vocab) return rt_error_set(RT_ERR_NOMEM, "export-tokenizer: out of memory");
    for (int32_t id = 0; id < c->n; id++) {
        if (!tx_token_ok(c, id)) {
            c->stats.dropped_tokens++;
            continue;
        }
        if (!tx_add(vocab, tok_text(c->v, id), cJSON_CreateNumber(id)))
            return rt_error_set(RT_ERR_NOMEM, "export-tokenizer: out of memory");
        c->stats.n_tokens++;
    }
    return RT_OK;
}

static rt_status_t tx_added_tokens(tx_ctx_t *c, cJSON *root, cJSON *decoder_map) {
    cJSON *arr = tx_add(root, "added_tokens", cJSON_CreateArray());
    if (!arr) return rt_error_set(RT_ERR_NOMEM, "export-tokenizer: out of memory");
    for (int32_t id = 0; id < c->n; id++) {
        tok_type_t t = tok_token_type(c->v, id);
        if (!tx_is_added(t) || !tx_token_ok(c, id)) continue;
        bool special = t != TOK_TYPE_USER_DEFINED;
        /* the same entry twice: tokenizer.json's added_tokens (with "id") and
         * tokenizer_config.json's added_tokens_decoder (keyed by the id) */
        for (int k = 0; k < 2; k++) {
            cJSON *o = cJSON_CreateObject();
            if (k == 0) tx_add(o, "id", cJSON_CreateNumber(id));
            tx_add(o, "content", cJSON_CreateString(tok_text(c->v, id)));
            tx_add(o, "single_word", cJSON_CreateFalse());
            tx_add(o, "lstrip", cJSON_CreateFalse());
            tx_add(o, "rstrip", cJSON_CreateFalse());
            tx_add(o, "normalized", cJSON_CreateFalse());
            tx_add(o, "special", cJSON_CreateBool(special));
            if (k == 0) {
                tx_push(arr, o);
            } else {
                char key[16];
                snprintf(key, sizeof key, "%d", id);
                tx_add(decoder_map, key, o);
            }
        }
        c->stats.n_added++;
    }
    return tx_failed ? rt_error_set(RT_ERR_NOMEM, "export-tokenizer: out of memory") : RT_OK;
}

/* ----------------------------------------------------------- merges */

typedef struct {
    const char *l; /* ll bytes (BPE: NUL-terminated, in a pool; SPM: a token's prefix) */
    const char *r; /* NUL-terminated */
    uint32_t ll;
    int32_t rank; /* BPE: GGUF order; SPM: merged token id */
    float score;  /* SPM: score of the merged token */
} tx_merge_t;

static int tx_cmp_pair(const void *a, const void *b) {
    const tx_merge_t *x = a, *y = b;
    int d = strcmp(x->l, y->l);
    if (!d) d = strcmp(x->r, y->r);
    if (!d) d = (x->rank > y->rank) - (x->rank < y->rank);
    return d;
}

static int tx_cmp_rank(const void *a, const void *b) {
    const tx_merge_t *x = a, *y = b;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

/* SPM order: best score first, then lower token id. */
static int tx_cmp_score(const void *a, const void *b) {
    const tx_merge_t *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    return (x->ll > y->ll) - (x->ll < y->ll);
}

/* Is "l" + "r" a token Hugging Face holds? buf has room for both. */
static bool tx_pair_ok(const tx_ctx_t *c, const char *l, const char *r, char *buf) {
    int32_t li = tok_find(c->v, l), ri = tok_find(c->v, r);
    if (li < 0 || ri < 0 || !tx_token_ok(c, li) || !tx_token_ok(c, ri)) return false;
    size_t ll = strlen(l), rl = strlen(r);
    memcpy(buf, l, ll);
    memcpy(buf + ll, r, rl + 1);
    int32_t m = tok_find(c->v, buf);
    return m >= 0 && tx_token_ok(c, m);
}

/* BPE: the GGUF's merges in order, each kept if its parts and result are
 * tokens; a repeated pair keeps its first rank (as rotor). */
static rt_status_t tx_bpe_merges(tx_ctx_t *c, tx_merge_t **out, size_t *n_out, char **pool_out) {
    int64_t mi = gguf_find_key(c->g, "tokenizer.ggml.merges");
    if (mi < 0 || gguf_kv_type(c->g, mi) != GGUF_TYPE_ARRAY ||
        gguf_arr_type(c->g, mi) != GGUF_TYPE_STRING)
        return rt_error_set(RT_ERR_FORMAT, "export-tokenizer: BPE vocabulary without merges");
    uint64_t n = gguf_arr_len(c->g, mi), pool_size = 1, max_len = 1;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t l = gguf_arr_str(c->g, mi, i).len;
        pool_size += l + 2;
        if (l > max_len) max_len = l;
    }
    tx_merge_t *m = malloc((n + 1) * sizeof *m);
    char *pool = malloc(pool_size), *buf = malloc(max_len + 2);
    if (!m || !pool || !buf) {
        free(m);
        free(pool);
        free(buf);
        return rt_error_set(RT_ERR_NOMEM, "export-tokenizer: out of memory");
    }
    size_t k = 0;
    char *p = pool;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str_t s = gguf_arr_str(c->g, mi, i);
        const char *sp = s.len > 1 ? memchr(s.data + 1, ' ', s.len - 1) : NULL;
        if (!sp) { /* no "left right" form: rotor ranks ("", "") which never matches */
            c->stats.dropped_merges++;
            continue;
        }
        size_t ll = (size_t)(sp - s.data), rl = s.len - ll - 1;
        char *l = p, *r = p + ll + 1;
        memcpy(l, s.data, ll);
        l[ll] = '\0';
        memcpy(r, sp + 1, rl);
        r[rl] = '\0';
        if (!tx_pair_ok(c, l, r, buf)) {
            c->stats.dropped_merges++;
            continue;
        }
        p += ll + rl + 2;
        m[k++] = (tx_merge_t){l, r, (uint32_t)ll, (int32_t)i, 0};
    }
    free(buf);
    /* repeats: sort by pair then rank, drop all but the first, back to rank order */
    qsort(m, k, sizeof *m, tx_cmp_pair);
    size_t w = 0;
    for (size_t i = 0; i < k; i++) {
        if (w && strcmp(m[w - 1].l, m[i].l) == 0 && strcmp(m[w - 1].r, m[i].r) == 0) {
            c->stats.dropped_merges++;
            continue;
        }
        m[w++] = m[i];
    }
    qsort(m, w, sizeof *m, tx_cmp_rank);
    *out = m;
    *n_out = w;
    *pool_out = pool;
    return RT_OK;
}

/* SPM: every split of every token into two tokens, ranked by the token's
 * score (best first), which makes the lowest-rank-first BPE of Hugging Face
 * merge what llama.cpp's score-driven bigram merging merges. */
static rt_status_t tx_spm_merges(tx_ctx_t *c, tx_merge_t **out, size_t *n_out, char **pool_out) {
    int64_t si = gguf_find_key(c->g, "tokenizer.ggml.scores");
    const uint8_t *scores = NULL;
    if (si >= 0 && gguf_kv_type(c->g, si) == GGUF_TYPE_ARRAY &&
        gguf_arr_type(c->g, si) == GGUF_TYPE_FLOAT32 && gguf_arr_len(c->g, si) == (uint64_t)c->n)
        scores = gguf_arr_data(c->g, si);
    size_t n_cand = 0, max_len = 1; /* at most one merge per byte of each token */
    for (int32_t id = 0; id < c->n; id++) {
        size_t len = strlen(tok_text(c->v, id));
        n_cand += len;
        if (len > max_len) max_len = len;
    }
    tx_merge_t *m = malloc((n_cand + 1) * sizeof *m);
    char *l = malloc(max_len + 1), *buf = malloc(max_len + 1);
    if (!m || !l || !buf) {
        free(m);
        free(l);
        free(buf);
        return rt_error_set(RT_ERR_NOMEM, "export-tokenizer: out of memory");
    }
    size_t k = 0;
    for (int32_t id = 0; id < c->n; id++) {
        if (!tx_token_ok(c, id)) continue;
        const char *t = tok_text(c->v, id);
        size_t len = strlen(t);
        float score = 0;
        if (scores) memcpy(&score, scores + 4 * (size_t)id, 4);
        for (size_t cut = 1; cut < len; cut++) {
            if (((unsigned char)t[cut] & 0xc0) == 0x80) continue; /* inside a character */
            memcpy(l, t, cut);
            l[cut] = '\0';
            if (tx_pair_ok(c, l, t + cut, buf))
                m[k++] = (tx_merge_t){t, t + cut, (uint32_t)cut, id, score};
        }
    }
    free(l);
    free(buf);
    qsort(m, k, sizeof *m, tx_cmp_score);
    for (size_t i = 1; i < k; i++)
        if (m[i].score == m[i - 1].score && m[i].rank != m[i - 1].rank) c->stats.spm_score_ties++;
    *out = m;
    *n_out = k;
    *pool_out = NULL;
    return RT_OK;
}

static rt_status_t tx_merges(tx_ctx_t *c, cJSON *model) {
    tx_merge_t *m = NULL;
    size_t n = 0;
    char *pool = NULL;
    rt_status_t st = c->spm ? tx_spm_merges(c, &m, &n, &pool) : tx_bpe_merges(c, &m, &n, &pool);
    if (st) return st;
    size_t max_ll = 0;
    for (size_t i = 0; i < n; i++)
        if (m[i].ll > max_ll) max_ll = m[i].ll;
    char *left = malloc(max_ll + 1);
    cJSON *arr = left ? tx_add(model, "merges", cJSON_CreateArray()) : NULL;
    for (size_t i = 0; arr && i < n; i++) {
        memcpy(left, m[i].l, m[i].ll);
        left[m[i].ll] = '\0';
        const char *pair[2] = {left, m[i].r};
        if (!tx_push(arr, cJSON_CreateStringArray(pair, 2))) arr = NULL;
    }
    free(left);
    free(m);
    free(pool);
    if (!arr) return rt_error_set(RT_ERR_NOMEM, "export-tokenizer: out of memory");
    c->stats.n_merges = (int)n;
    return RT_OK;
}

/* --------------------------------------------- pipeline components */

static cJSON *tx_typed(const char *type) {
    cJSON *o = cJSON_CreateObject();
    if (!tx_add(o, "type", cJSON_CreateString(type))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* {"type": "Replace", "pattern": {"String": from}, "content": to} */
static cJSON *tx_replace(const char *from, const char *to) {
    cJSON *o = tx_typed("Replace");
    cJSON *pat = tx_add(o, "pattern", cJSON_CreateObject());
    tx_add(pat, "String", cJSON_CreateString(from));
    tx_add(o, "content", cJSON_CreateString(to));
    return o;
}

static cJSON *tx_byte_level(bool add_prefix_space, bool use_regex) {
    cJSON *o = tx_typed("ByteLevel");
    tx_add(o, "add_prefix_space", cJSON_CreateBool(add_prefix_space));
    tx_add(o, "trim_offsets", cJSON_CreateTrue());
    tx_add(o, "use_regex", cJSON_CreateBool(use_regex));
    return o;
}

static rt_status_t tx_pre_tokenizer(tx_ctx_t *c, cJSON *root, bool *ignore_merges) {
    *ignore_merges = false;
    if (c->spm)
        return tx_add(root, "pre_tokenizer", cJSON_CreateNull())
                   ? RT_OK
                   : rt_error_set(RT_ERR_NOMEM, "export-tokenizer: out of memory");
    const char *const *rxs;
    int n_rx = tok_pretok_patterns(c->v, &rxs);
    *ignore_merges = tok_ignore_merges(c->v);
    cJSON *seq = tx_add(root, "pre_tokenizer", tx_typed("Sequence"));
    cJSON *list = tx_add(seq, "pretokenizers", cJSON_CreateArray());
    for (int i = 0; i < n_rx; i++) {
        char *rx = tx_onig_pattern(rxs[i]);
        cJSON *split = tx_push(list, tx_typed("Split"));
        cJSON *pat = tx_add(split, "pattern", cJSON_CreateObject());
        tx_add(pat, "Regex", rx ? cJSON_CreateString(rx) : NULL);
        free(rx);
        tx_add(split, "behavior", cJSON_CreateString("Isolated"));
        if (!tx_add(split, "invert", cJSON_CreateFalse()))
            return rt_error_set(RT_ERR_NOMEM, "export-tokenizer: out of memory");
    }
    if (!tx_push(list, tx_byte_level(false, false)))
        return rt_error_set(RT_ERR_NOMEM, "export-tokenizer: out of memory");
    return RT_OK;
}

/* [{"SpecialToken": {"id": text, "type_id": t}}] or {"Sequence": {"id": "A"|"B", ...}} */
static cJSON *tx_piece(const char *kind, const char *id, int type_id) {
    cJSON *o = cJSON_CreateObject();
    cJSON *in = tx_add(o, kind, cJSON_CreateObject());
    tx_add(in, "id", cJSON_CreateString(id));
    if (!tx_add(in, "type_id", cJSON_CreateNumber(type_id))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Append [bt] $seq [et] (type type_id) to a template array. */
static void tx_template(cJSON *arr, const char *bt, const char *et, const char *seq, int type_id) {
    if (bt) tx_push(arr, tx_piece("SpecialToken", bt, type_id));
    tx_push(arr, tx_piece("Sequence", seq, type_id));
    if (et) tx_push(arr, tx_piece("SpecialToken", et, type_id));
}

/* BOS/EOS as the vocabulary adds them: TemplateProcessing, or null. */
static rt_status_t tx_post_processor(tx_ctx_t *c, cJSON *root) {
    int32_t bos = tok_bos(c->v), eos = tok_eos(c->v);
    const char *bt = tok_add_bos(c->v) ? tx_text_or_null(c, bos) : NULL;
    const char *et = tok_add_eos(c->v) ? tx_text_or_null(c, eos) : NULL;
    if (!bt && !et)
        return tx_add(root, "post_processor", cJSON_CreateNull())
                   ? RT_OK
                   : rt_error_set(RT_ERR_NOMEM, "export-tokenizer: out of memory");
    cJSON *pp = tx_add(root, "post_processor", tx_typed("TemplateProcessing"));
    cJSON *single = tx_add(pp, "single", cJSON_CreateArray());
    cJSON *pair = tx_add(pp, "pair", cJSON_CreateArray());
    tx_template(single, bt, et, "A", 0);
    tx_template(pair, bt, et, "A", 0);
    tx_template(pair, bt, et, "B", 1);
    cJSON *sp = tx_add(pp, "special_tokens", cJSON_CreateObject());
    const char *texts[2] = {bt, et};
    const int ids[2] = {bos, eos};
    for (int k = 0; k < 2; k++) {
        if (!texts[k] || cJSON_GetObjectItemCaseSensitive(sp, texts[k])) continue;
        cJSON *e = tx_add(sp, texts[k], cJSON_CreateObject());
        tx_add(e, "id", cJSON_CreateString(texts[k]));
        tx_add(e, "ids", cJSON_CreateIntArray(&ids[k], 1));
        tx_add(e, "tokens", cJSON_CreateStringArray(&texts[k], 1));
    }
    return sp ? RT_OK : rt_error_set(RT_ERR_NOMEM, "export-tokenizer: out of memory");
}

static void tx_normalizer_decoder(tx_ctx_t *c, cJSON *root, bool space_prefix) {
    if (!c->spm) {
        tx_add(root, "normalizer", cJSON_CreateNull());
        tx_add(root, "decoder", tx_byte_level(true, true));
        return;
    }
    cJSON *norm = tx_add(root, "normalizer", tx_typed("Sequence"));
    cJSON *nl = tx_add(norm, "normalizers", cJSON_CreateArray());
    if (space_prefix) {
        cJSON *prep = tx_push(nl, tx_typed("Prepend"));
        tx_add(prep, "prepend", cJSON_CreateString(TX_SPACE));
    }
    tx_push(nl, tx_replace(" ", TX_SPACE));
    cJSON *dec = tx_add(root, "decoder", tx_typed("Sequence"));
    cJSON *dl = tx_add(dec, "decoders", cJSON_CreateArray());
    tx_push(dl, tx_replace(TX_SPACE, " "));
    tx_push(dl, tx_typed("ByteFallback"));
    tx_push(dl, tx_typed("Fuse"));
    if (space_prefix) {
        cJSON *strip = tx_push(dl, tx_typed("Strip"));
        tx_add(strip, "content", cJSON_CreateString(" "));
        tx_add(strip, "start", cJSON_CreateNumber(1));
        tx_add(strip, "stop", cJSON_CreateNumber(0));
    }
}

/* ------------------------------------------------------------ files */

static rt_status_t tx_mkdirs(const char *dir) {
    char *p = strdup(dir);
    if (!p) return rt_error_set(RT_ERR_NOMEM, "export-tokenizer: out of memory");
    rt_status_t st = RT_OK;
    for (char *s = p + 1;; s++) {
        char ch = *s;
        if (ch != '/' && ch != '\0') continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            st = rt_error_set(RT_ERR_IO, "export-tokenizer: mkdir %s: %s", p, strerror(errno));
            break;
        }
        *s = ch;
        if (!ch) break;
    }
    free(p);
    struct stat sb;
    if (!st && (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)))
        st = rt_error_set(RT_ERR_IO, "export-tokenizer: %s is not a directory", dir);
    return st;
}

static rt_status_t tx_write_json(const char *dir, const char *name, const cJSON *root,
                                 bool formatted) {
    char *text = formatted ? cJSON_Print(root) : cJSON_PrintUnformatted(root);
    if (!text) return rt_error_set(RT_ERR_NOMEM, "export-tokenizer: out of memory");
    size_t pl = strlen(dir) + strlen(name) + 2;
    char *path = malloc(pl);
    rt_status_t st = RT_OK;
    if (!path) {
        free(text);
        return rt_error_set(RT_ERR_NOMEM, "export-tokenizer: out of memory");
    }
    snprintf(path, pl, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        st = rt_error_set(RT_ERR_IO, "export-tokenizer: open %s: %s", path, strerror(errno));
    } else {
        size_t len = strlen(text);
        bool ok = fwrite(text, 1, len, f) == len && fputc('\n', f) != EOF;
        if (fclose(f) != 0 || !ok)
            st = rt_error_set(RT_ERR_IO, "export-tokenizer: write %s: %s", path, strerror(errno));
    }
    free(path);
    free(text);
    return st;
}

/* ---------------------------------------------------------- builders */

static rt_status_t tx_tokenizer_json(tx_ctx_t *c, cJSON *root, cJSON *decoder_map) {
    rt_status_t st;
    bool ignore_merges = false, space_prefix = true;
    if (c->spm) {
        int64_t i = gguf_find_key(c->g, "tokenizer.ggml.add_space_prefix"), x;
        if (i >= 0 && gguf_kv_as_i64(c->g, i, &x)) space_prefix = x != 0;
    }
    tx_add(root, "version", cJSON_CreateString("1.0"));
    tx_add(root, "truncation", cJSON_CreateNull());
    tx_add(root, "padding", cJSON_CreateNull());
    if ((st = tx_added_tokens(c, root, decoder_map))) return st;
    tx_normalizer_decoder(c, root, space_prefix);
    if ((st = tx_pre_tokenizer(c, root, &ignore_merges))) return st;
    if ((st = tx_post_processor(c, root))) return st;

    cJSON *model = tx_add(root, "model", tx_typed("BPE"));
    tx_add(model, "dropout", cJSON_CreateNull());
    tx_add(model, "unk_token", tx_str_or_null(c->spm ? tx_text_or_null(c, c->unk) : NULL));
    tx_add(model, "continuing_subword_prefix", cJSON_CreateNull());
    tx_add(model, "end_of_word_suffix", cJSON_CreateNull());
    tx_add(model, "fuse_unk", cJSON_CreateFalse());
    tx_add(model, "byte_fallback", cJSON_CreateBool(c->spm));
    tx_add(model, "ignore_merges", cJSON_CreateBool(ignore_merges));
    if (!model) return rt_error_set(RT_ERR_NOMEM, "export-tokenizer: out of memory");
    if ((st = tx_vocab(c, model)) || (st = tx_merges(c, model))) return st;
    return RT_OK;
}

/* The special token entries shared by tokenizer_config.json and
 * special_tokens_map.json (strings; absent ones null). */
static void tx_special_names(tx_ctx_t *c, cJSON *o) {
    tx_add(o, "bos_token", tx_str_or_null(tx_text_or_null(c, tok_bos(c->v))));
    tx_add(o, "eos_token", tx_str_or_null(tx_text_or_null(c, tok_eos(c->v))));
    tx_add(o, "unk_token", tx_str_or_null(tx_text_or_null(c, c->unk)));
    tx_add(o, "pad_token", tx_str_or_null(tx_text_or_null(c, c->pad)));
}

/* Fills cfg; takes decoder_map (the added_tokens_decoder object). */
static void tx_config_json(tx_ctx_t *c, cJSON *cfg, cJSON *decoder_map) {
    tx_add(cfg, "tokenizer_class", cJSON_CreateString("PreTrainedTokenizerFast"));
    tx_add(cfg, "add_bos_token", cJSON_CreateBool(tok_add_bos(c->v)));
    tx_add(cfg, "add_eos_token", cJSON_CreateBool(tok_add_eos(c->v)));
    tx_special_names(c, cfg);
    tx_add(cfg, "clean_up_tokenization_spaces", cJSON_CreateFalse());
    const char *arch = gguf_get_str(c->g, "general.architecture", NULL);
    if (arch) {
        char key[160];
        snprintf(key, sizeof key, "%s.context_length", arch);
        int64_t n_ctx = gguf_get_i64(c->g, key, 0);
        if (n_ctx > 0) tx_add(cfg, "model_max_length", cJSON_CreateNumber((double)n_ctx));
    }
    const char *tmpl = gguf_get_str(c->g, "tokenizer.chat_template", NULL);
    if (tmpl) tx_add(cfg, "chat_template", cJSON_CreateString(tmpl));
    tx_add(cfg, "added_tokens_decoder", decoder_map);
}

rt_status_t tokenizer_export_hf(const char *model_path, const char *dir,
                                tokenizer_export_stats_t *stats) {
    gguf_ctx_t *g = NULL;
    tok_vocab_t *v = NULL;
    cJSON *tok = NULL, *cfg = NULL, *map = NULL, *decoder_map = NULL;
    rt_status_t st = gguf_open(model_path, &g);
    if (st) return st;
    if ((st = tok_vocab_from_gguf(g, &v))) goto out;

    tx_ctx_t c = {.g = g, .v = v, .n = tok_n_vocab(v), .spm = tok_kind(v) == TOK_KIND_SPM};
    c.unk = tx_get_id(&c, "tokenizer.ggml.unknown_token_id", -1);
    if (c.unk < 0)
        for (int32_t id = 0; id < c.n && c.unk < 0; id++)
            if (tok_token_type(v, id) == TOK_TYPE_UNKNOWN) c.unk = id;
    c.pad = tx_get_id(&c, "tokenizer.ggml.padding_token_id", -1);

    tx_failed = false;
    tok = cJSON_CreateObject();
    cfg = cJSON_CreateObject();
    map = cJSON_CreateObject();
    decoder_map = cJSON_CreateObject();
    if (!tok || !cfg || !map || !decoder_map) tx_failed = true;
    if ((st = tx_tokenizer_json(&c, tok, decoder_map))) {
        cJSON_Delete(decoder_map);
        goto out;
    }
    tx_config_json(&c, cfg, decoder_map); /* decoder_map is cfg's (or freed) now */
    tx_special_names(&c, map);
    if (tx_failed) {
        st = rt_error_set(RT_ERR_NOMEM, "export-tokenizer: out of memory");
        goto out;
    }
    if ((st = tx_mkdirs(dir)) || (st = tx_write_json(dir, "tokenizer.json", tok, false)) ||
        (st = tx_write_json(dir, "tokenizer_config.json", cfg, true)) ||
        (st = tx_write_json(dir, "special_tokens_map.json", map, true)))
        goto out;
    if (stats) *stats = c.stats;
out:
    cJSON_Delete(tok);
    cJSON_Delete(cfg);
    cJSON_Delete(map);
    tok_vocab_destroy(v);
    gguf_close(g);
    return st;
}

/* ------------------------------------------------------------- CLI */

static void tx_usage(FILE *f) {
    fprintf(f, "usage: rotor-model export-tokenizer MODEL.gguf DIR\n"
               "  writes DIR/tokenizer.json, DIR/tokenizer_config.json and\n"
               "  DIR/special_tokens_map.json: the model's tokenizer in Hugging Face form\n"
               "  (tokenizers.Tokenizer.from_file, transformers.AutoTokenizer.from_pretrained)\n");
}

int tokenizer_export_main(int argc, char **argv) {
    const char *pos[2] = {NULL, NULL};
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            tx_usage(stdout);
            return 0;
        }
        if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "rotor-model: error: export-tokenizer: unknown option '%s'\n", argv[i]);
            return 2;
        }
        if (n_pos == 2) {
            fprintf(stderr, "rotor-model: error: export-tokenizer: unexpected argument '%s'\n",
                    argv[i]);
            return 2;
        }
        pos[n_pos++] = argv[i];
    }
    if (n_pos != 2) {
        tx_usage(stderr);
        return 2;
    }
    tokenizer_export_stats_t s;
    if (tokenizer_export_hf(pos[0], pos[1], &s)) {
        fprintf(stderr, "rotor-model: error: %s\n", rt_error_msg());
        return 1;
    }
    if (s.dropped_tokens)
        fprintf(stderr,
                "rotor-model: warning: %d tokens left out (not valid UTF-8, or a repeated text)\n",
                s.dropped_tokens);
    if (s.dropped_merges)
        fprintf(stderr,
                "rotor-model: warning: %d merges left out (a part or the result is not a token, "
                "or a repeat); those words may encode differently\n",
                s.dropped_merges);
    if (s.spm_score_ties)
        fprintf(stderr,
                "rotor-model: warning: %d merges tie on score with another token; rotor breaks "
                "such ties by position, Hugging Face by rank, so some words may encode "
                "differently\n",
                s.spm_score_ties);
    printf("wrote %s/tokenizer.json (%d tokens, %d merges, %d added tokens), "
           "tokenizer_config.json, special_tokens_map.json\n",
           pos[1], s.n_tokens, s.n_merges, s.n_added);
    return 0;
}
