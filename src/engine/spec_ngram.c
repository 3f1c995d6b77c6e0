/*
 * spec_ngram.c - n-gram (prompt lookup) draft proposer; see spec_ngram.h.
 *
 * A backwards scan per n: the cost is O(n_tokens * n) compares per decode
 * step of a drafting sequence, microseconds next to a forward pass.
 */
#include "rotor/spec_ngram.h"

#include <string.h>

int spec_ngram_propose(const int32_t *tokens, int n_tokens, int n_min, int n_max, int32_t *draft, int max_draft)
{
    if (max_draft <= 0 || n_min < 1 || n_max < n_min) return 0;
    if (n_max > n_tokens - 1) n_max = n_tokens - 1;
    for (int n = n_max; n >= n_min; n--) {
        const int32_t *suffix = tokens + n_tokens - n;
        /* an occurrence starting at i ends before the suffix's last token,
         * so at least one token follows it; the most recent first */
        for (int i = n_tokens - n - 1; i >= 0; i--) {
            if (tokens[i] != suffix[0] || memcmp(tokens + i, suffix, (size_t)n * sizeof *tokens) != 0) continue;
            /* what followed it; past the end that is the draft itself, so
             * a period (the match to the end) repeats: loops get full drafts */
            const int from = i + n;
            for (int j = 0; j < max_draft; j++)
                draft[j] = from + j < n_tokens ? tokens[from + j] : draft[from + j - n_tokens];
            return max_draft;
        }
    }
    return 0;
}
