/*
 * model_vocab.c - the tokenizer vocabularies that `rotor-model gen` writes:
 * SentencePiece-style (llama) and GPT-2 byte-level BPE pieces, scores, token
 * types, merges, special tokens and chat templates, built deterministically.
 * See model_vocab.h.
 */
#include "model_vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_BYTE = 6 };

/* xxHash of a piece, for the id hash set. */
static uint64_t vocab_hash(const char *s) { return XXH3_64bits(s, strlen(s)); }

void model_vocab_free(model_vocab_t *v)
{
    for (size_t i = 0; i < v->n; i++) free(v->text[i]);
    for (size_t i = 0; i < v->n_merges; i++) free(v->merges[i]);
    free(v->text);
    free(v->score);
    free(v->type);
    free(v->slots);
    free(v->merges);
    memset(v, 0, sizeof *v);
}

int32_t model_vocab_find(const model_vocab_t *v, const char *s)
{
    if (!v->nslots) return -1;
    for (size_t h = vocab_hash(s) & (v->nslots - 1);; h = (h + 1) & (v->nslots - 1)) {
        int32_t id = v->slots[h];
        if (id < 0) return -1;
        if (strcmp(v->text[id], s) == 0) return id;
    }
}

static bool vocab_rehash(model_vocab_t *v, size_t nslots)
{
    int32_t *s = malloc(nslots * sizeof *s);
    if (!s) return false;
    for (size_t i = 0; i < nslots; i++) s[i] = -1;
    for (size_t id = 0; id < v->n; id++) {
        size_t h = vocab_hash(v->text[id]) & (nslots - 1);
        while (s[h] >= 0) h = (h + 1) & (nslots - 1);
        s[h] = (int32_t)id;
    }
    free(v->slots);
    v->slots = s;
    v->nslots = nslots;
    return true;
}

/* Add a token (copied); returns its id, the existing id when already
 * present, or -1 when out of memory. */
static int32_t vocab_add(model_vocab_t *v, const char *s, float score, int32_t type)
{
    int32_t id = model_vocab_find(v, s);
    if (id >= 0) return id;
    if (v->n == v->cap) {
        size_t nc = v->cap ? 2 * v->cap : 1024;
        char **t = realloc(v->text, nc * sizeof *t);
        if (!t) return -1;
        v->text = t;
        float *sc = realloc(v->score, nc * sizeof *sc);
        if (!sc) return -1;
        v->score = sc;
        int32_t *ty = realloc(v->type, nc * sizeof *ty);
        if (!ty) return -1;
        v->type = ty;
        v->cap = nc;
    }
    char *c = strdup(s);
    if (!c) return -1;
    id = (int32_t)v->n;
    v->text[v->n] = c;
    v->score[v->n] = score;
    v->type[v->n] = type;
    v->n++;
    if (2 * v->n > v->nslots) return vocab_rehash(v, v->nslots ? 2 * v->nslots : 4096) ? id : -1;
    size_t h = vocab_hash(c) & (v->nslots - 1);
    while (v->slots[h] >= 0) h = (h + 1) & (v->nslots - 1);
    v->slots[h] = id;
    return id;
}

static bool vocab_add_merge(model_vocab_t *v, const char *a, const char *b)
{
    if (v->n_merges == v->cap_merges) {
        size_t nc = v->cap_merges ? 2 * v->cap_merges : 1024;
        char **m = realloc(v->merges, nc * sizeof *m);
        if (!m) return false;
        v->merges = m;
        v->cap_merges = nc;
    }
    size_t la = strlen(a), lb = strlen(b);
    char *m = malloc(la + lb + 2);
    if (!m) return false;
    memcpy(m, a, la);
    m[la] = ' ';
    memcpy(m + la + 1, b, lb + 1);
    v->merges[v->n_merges++] = m;
    return true;
}

/* Frequent English words, most frequent first; the vocabulary takes as
 * many as fit in --n-vocab. */
static const char *const k_words[] = {
    "the", "of", "and", "to", "a", "in", "is", "it", "you", "that", "he", "was", "for", "on", "are",
    "with", "as", "I", "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by",
    "hello", "world", "not", "but", "what", "all", "were", "we", "when", "your", "can", "said", "there",
    "use", "an", "each", "which", "she", "do", "how", "their", "if", "will", "up", "other", "about",
    "out", "many", "then", "them", "these", "so", "some", "her", "would", "make", "like", "him", "into",
    "time", "has", "look", "two", "more", "write", "go", "see", "number", "no", "way", "could",
    "people", "my", "than", "first", "water", "been", "call", "who", "oil", "its", "now", "find",
    "long", "down", "day", "did", "get", "come", "made", "may", "part", "The", "What", "How", "This",
    "In", "It", "model", "token", "question", "answer", "user", "assistant", "system", "quick",
    "brown", "fox", "jumps", "over", "lazy", "dog", "once", "upon", "story", "name", "good", "new",
    "ing", "ed", "er", "ly", "tion",
};
#define N_WORDS (sizeof k_words / sizeof k_words[0])

#define SPM_SPACE "\xe2\x96\x81" /* U+2581 '▁' */
#define BPE_SPACE "\xc4\xa0"     /* U+0120 'Ġ', the byte-level symbol of ' ' */

/* Letters of the synthetic padding pieces: index k -> "a".."z", "aa".. */
static void pad_word(uint64_t k, char *out)
{
    char tmp[16];
    int n = 0;
    k++;
    while (k > 0 && n < 15) {
        k--;
        tmp[n++] = (char)('a' + k % 26);
        k /= 26;
    }
    for (int i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    out[n] = '\0';
}

/*
 * SentencePiece-style vocabulary (tokenizer.ggml.model "llama"):
 *   0 <unk> (UNKNOWN), 1 <s>, 2 </s> (CONTROL), 3..258 <0x00>..<0xFF> (BYTE),
 *   then "▁" and printable ASCII characters, then for each word every prefix
 *   of "▁word" (so score-driven bigram merging can reach the whole word),
 *   then padding pieces "▁a".."▁z", "▁aa".. (again closed under prefixes).
 * Scores are -id for normal pieces (like llama's vocab: earlier = preferred).
 */
bool model_vocab_build_spm(model_vocab_t *v, size_t n_vocab, bool tiny)
{
    v->spm = true;
    bool ok = vocab_add(v, "<unk>", 0, TT_UNKNOWN) >= 0 && vocab_add(v, "<s>", 0, TT_CONTROL) >= 0 &&
              vocab_add(v, "</s>", 0, TT_CONTROL) >= 0;
    char buf[256];
    for (int b = 0; ok && b < 256; b++) {
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        ok = vocab_add(v, buf, 0, TT_BYTE) >= 0;
    }
    ok = ok && vocab_add(v, SPM_SPACE, -(float)v->n, TT_NORMAL) >= 0;
    for (int c = 0x21; ok && c < 0x7f; c++) {
        if (tiny && !(c >= 'a' && c <= 'z')) continue;
        buf[0] = (char)c;
        buf[1] = '\0';
        ok = vocab_add(v, buf, -(float)v->n, TT_NORMAL) >= 0;
    }
    size_t n_words = tiny ? 4 : N_WORDS;
    for (size_t w = 0; ok && w < n_words; w++) {
        size_t len = strlen(k_words[w]), need = 0;
        for (size_t l = 1; l <= len; l++) {
            snprintf(buf, sizeof buf, SPM_SPACE "%.*s", (int)l, k_words[w]);
            need += model_vocab_find(v, buf) < 0;
        }
        if (!tiny && v->n + need > n_vocab) break; /* frequency order: stop at the first misfit */
        for (size_t l = 1; ok && l <= len; l++) {
            snprintf(buf, sizeof buf, SPM_SPACE "%.*s", (int)l, k_words[w]);
            ok = vocab_add(v, buf, -(float)v->n, TT_NORMAL) >= 0;
        }
    }
    for (uint64_t k = 0; ok && !tiny && v->n < n_vocab; k++) {
        char word[16];
        pad_word(k, word);
        snprintf(buf, sizeof buf, SPM_SPACE "%s", word);
        ok = vocab_add(v, buf, -(float)v->n, TT_NORMAL) >= 0;
    }
    return ok;
}

/* GPT-2 byte-level alphabet: the symbol (UTF-8) standing for byte b. */
static void bpe_byte_symbol(int b, char out[3])
{
    unsigned cp;
    if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)) {
        cp = (unsigned)b;
    } else {
        /* the n-th byte outside those ranges maps to U+0100 + n */
        unsigned n = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff))) n++;
        cp = 0x100 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = '\0';
    } else {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = '\0';
    }
}

/* Add the merges building `word` left to right from its first symbol
 * (prefix is "" or BPE_SPACE). Only ASCII letters in words. */
static bool bpe_add_chain(model_vocab_t *v, const char *prefix, const char *word, size_t *budget)
{
    char left[128], right[2], merged[132];
    size_t lp = strlen(prefix), len = strlen(word);
    if (lp + len >= sizeof left) return true;
    size_t need = 0;
    for (size_t l = 1; l <= len; l++) {
        snprintf(merged, sizeof merged, "%s%.*s", prefix, (int)l, word);
        if (lp + l >= 2 && model_vocab_find(v, merged) < 0) need++;
    }
    if (need > *budget) return true; /* does not fit; skip */
    for (size_t l = lp ? 1 : 2; l <= len; l++) {
        snprintf(left, sizeof left, "%s%.*s", prefix, (int)(l - 1), word);
        right[0] = word[l - 1];
        right[1] = '\0';
        snprintf(merged, sizeof merged, "%s%s", left, right);
        if (model_vocab_find(v, merged) >= 0) continue;
        if (vocab_add(v, merged, 0, TT_NORMAL) < 0 || !vocab_add_merge(v, left, right)) return false;
        (*budget)--;
    }
    return true;
}

/*
 * GPT-2 byte-level BPE vocabulary (tokenizer.ggml.model "gpt2"):
 *   0..255 the byte symbols (GPT-2 order), then merge results: "Ġword"
 *   chains of the word list (ranked first), bare "word" chains, padding
 *   chains "Ġa".."Ġz", "Ġaa"..; last the specials <|endoftext|>,
 *   <|im_start|>, <|im_end|> (CONTROL).
 */
bool model_vocab_build_bpe(model_vocab_t *v, size_t n_vocab, bool tiny)
{
    v->spm = false;
    static const char *const specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    const size_t n_spec = 3;
    char sym[3];
    bool ok = true;
    /* ids 0..187: the bytes that map to themselves, in byte order */
    for (int b = 0; ok && b < 256; b++) {
        if (!((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))) continue;
        bpe_byte_symbol(b, sym);
        ok = vocab_add(v, sym, 0, TT_NORMAL) >= 0;
    }
    /* ids 188..255: the remapped ones (U+0100..) */
    for (int b = 0; ok && b < 256; b++) {
        if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)) continue;
        bpe_byte_symbol(b, sym);
        ok = vocab_add(v, sym, 0, TT_NORMAL) >= 0;
    }
    size_t target = n_vocab > v->n + n_spec ? n_vocab - n_spec : v->n;
    size_t budget = tiny ? 16 : target - v->n; /* tiny: a few merges whatever n_vocab */
    size_t n_words = tiny ? 4 : N_WORDS;
    for (size_t w = 0; ok && w < n_words; w++) ok = bpe_add_chain(v, BPE_SPACE, k_words[w], &budget);
    for (size_t w = 0; ok && !tiny && w < N_WORDS; w++) ok = bpe_add_chain(v, "", k_words[w], &budget);
    for (uint64_t k = 0; ok && !tiny && budget > 0; k++) {
        char word[16];
        pad_word(k, word);
        ok = bpe_add_chain(v, BPE_SPACE, word, &budget);
    }
    for (size_t i = 0; ok && i < n_spec; i++) ok = vocab_add(v, specials[i], 0, TT_CONTROL) >= 0;
    return ok;
}

/* ======================================================================
 * GGUF metadata
 * ====================================================================== */

static const char *const k_chatml_template =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% endif %}";

static const char *const k_llama2_template =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

static const char *const k_mistral_template =
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}"
    "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

#define CHECK(call)                                                                                     \
    do {                                                                                                \
        rt_status_t st_ = (call);                                                                       \
        if (st_ != RT_OK) return st_;                                                                   \
    } while (0)

rt_status_t model_vocab_write_gguf(gguf_writer_t *w, const model_vocab_t *v, const char *pre, bool mistral)
{
    const bool spm = v->spm;
    CHECK(gguf_writer_set_str(w, "tokenizer.ggml.model", spm ? "llama" : "gpt2"));
    if (!spm) CHECK(gguf_writer_set_str(w, "tokenizer.ggml.pre", pre));
    CHECK(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->text, v->n));
    if (spm) CHECK(gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v->score, v->n));
    CHECK(gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v->type, v->n));
    if (!spm)
        CHECK(gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v->merges, v->n_merges));
    if (spm) {
        CHECK(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1));
        CHECK(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2));
        CHECK(gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0));
        CHECK(gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", 0));
        CHECK(gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true));
        CHECK(gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false));
        CHECK(gguf_writer_set_str(w, "tokenizer.chat_template", mistral ? k_mistral_template : k_llama2_template));
    } else {
        uint32_t eot = (uint32_t)model_vocab_find(v, "<|endoftext|>");
        uint32_t im_end = (uint32_t)model_vocab_find(v, "<|im_end|>");
        CHECK(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", eot));
        CHECK(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", im_end));
        CHECK(gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", eot));
        CHECK(gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false));
        CHECK(gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false));
        CHECK(gguf_writer_set_str(w, "tokenizer.chat_template", k_chatml_template));
    }
    return RT_OK;
}
