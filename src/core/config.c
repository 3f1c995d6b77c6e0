/*
 * config.c - INI loading with iniparser, validation against the key table,
 * environment overrides, typed getters.
 */
#include "rotor/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <iniparser.h>

struct cfg {
    int n;
    char **values; /* one per table entry, owned */
};

static int cfg_index(const char *key)
{
    const cfg_key_t *k = cfg_keys();
    for (int i = 0; k[i].key; i++)
        if (strcmp(k[i].key, key) == 0) return i;
    return -1;
}

static rt_status_t cfg_check(const cfg_key_t *k, const char *v)
{
    char *end;
    switch (k->type) {
    case CFG_INT: {
        errno = 0;
        long long x = strtoll(v, &end, 0);
        while (*end && isspace((unsigned char)*end)) end++;
        if (errno || end == v || *end)
            return rt_error_set(RT_ERR_INVALID, "config: %s = '%s' is not an integer", k->key, v);
        if (k->min <= k->max && ((double)x < k->min || (double)x > k->max))
            return rt_error_set(RT_ERR_RANGE, "config: %s = %lld is out of range [%g, %g]", k->key, x,
                                k->min, k->max);
        return RT_OK;
    }
    case CFG_FLOAT: {
        errno = 0;
        double x = strtod(v, &end);
        while (*end && isspace((unsigned char)*end)) end++;
        if (errno || end == v || *end || !isfinite(x))
            return rt_error_set(RT_ERR_INVALID, "config: %s = '%s' is not a number", k->key, v);
        if (k->min <= k->max && (x < k->min || x > k->max))
            return rt_error_set(RT_ERR_RANGE, "config: %s = %g is out of range [%g, %g]", k->key, x,
                                k->min, k->max);
        return RT_OK;
    }
    case CFG_BOOL: {
        static const char *ok[] = {"0", "1", "true", "false", "yes", "no", "on", "off"};
        for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
            if (strcasecmp(v, ok[i]) == 0) return RT_OK;
        return rt_error_set(RT_ERR_INVALID, "config: %s = '%s' is not a boolean", k->key, v);
    }
    case CFG_STRING: return RT_OK;
    }
    return RT_OK;
}

rt_status_t cfg_set(cfg_t *c, const char *key, const char *value)
{
    int i = cfg_index(key);
    if (i < 0) return rt_error_set(RT_ERR_NOT_FOUND, "config: unknown key '%s'", key);
    rt_status_t st = cfg_check(&cfg_keys()[i], value);
    if (st) return st;
    char *dup = strdup(value);
    if (!dup) return rt_error_set(RT_ERR_NOMEM, "config: out of memory");
    free(c->values[i]);
    c->values[i] = dup;
    return RT_OK;
}

static rt_status_t cfg_apply_env(cfg_t *c)
{
    const cfg_key_t *k = cfg_keys();
    for (int i = 0; k[i].key; i++) {
        char name[128] = "ROTOR_";
        size_t p = strlen(name);
        for (const char *s = k[i].key; *s && p + 1 < sizeof name; s++)
            name[p++] = *s == ':' ? '_' : (char)toupper((unsigned char)*s);
        name[p] = '\0';
        const char *v = getenv(name);
        if (v) {
            rt_status_t st = cfg_set(c, k[i].key, v);
            if (st) return st;
        }
    }
    return RT_OK;
}

rt_status_t cfg_load(const char *path, cfg_t **out)
{
    rt_status_t st = RT_OK;
    dictionary *d = NULL;
    cfg_t *c = calloc(1, sizeof *c);
    if (!c) return rt_error_set(RT_ERR_NOMEM, "config: out of memory");
    const cfg_key_t *k = cfg_keys();
    while (k[c->n].key) c->n++;
    c->values = calloc((size_t)c->n, sizeof *c->values);
    if (!c->values) {
        st = rt_error_set(RT_ERR_NOMEM, "config: out of memory");
        goto err;
    }
    for (int i = 0; i < c->n; i++)
        if (!(c->values[i] = strdup(k[i].dflt))) {
            st = rt_error_set(RT_ERR_NOMEM, "config: out of memory");
            goto err;
        }
    if (path) {
        FILE *f = fopen(path, "r");
        if (!f) {
            st = rt_error_set(RT_ERR_IO, "config: cannot open %s: %s", path, strerror(errno));
            goto err;
        }
        fclose(f);
        d = iniparser_load(path);
        if (!d) {
            st = rt_error_set(RT_ERR_FORMAT, "config: cannot parse %s", path);
            goto err;
        }
        int nsec = iniparser_getnsec(d);
        for (int s = 0; s < nsec; s++) {
            const char *sec = iniparser_getsecname(d, s);
            int nk = iniparser_getsecnkeys(d, sec);
            if (nk <= 0) continue;
            const char **keys = calloc((size_t)nk, sizeof *keys);
            if (!keys) {
                st = rt_error_set(RT_ERR_NOMEM, "config: out of memory");
                goto err;
            }
            iniparser_getseckeys(d, sec, keys);
            for (int j = 0; j < nk && !st; j++) {
                const char *v = iniparser_getstring(d, keys[j], "");
                if (cfg_index(keys[j]) < 0)
                    st = rt_error_set(RT_ERR_NOT_FOUND, "config: unknown key '%s' in %s", keys[j], path);
                else
                    st = cfg_set(c, keys[j], v);
            }
            free(keys);
            if (st) goto err;
        }
    }
    if ((st = cfg_apply_env(c))) goto err;
    iniparser_freedict(d);
    *out = c;
    return RT_OK;
err:
    if (d) iniparser_freedict(d);
    cfg_destroy(c);
    return st;
}

void cfg_destroy(cfg_t *c)
{
    if (!c) return;
    if (c->values)
        for (int i = 0; i < c->n; i++) free(c->values[i]);
    free(c->values);
    free(c);
}

static const char *cfg_raw(const cfg_t *c, const char *key, cfg_type_t want)
{
    int i = cfg_index(key);
    if (i < 0 || cfg_keys()[i].type != want) {
        fprintf(stderr, "config: internal error: key '%s' not declared with that type\n", key);
        abort();
    }
    return c->values[i];
}

int64_t cfg_int(const cfg_t *c, const char *key) { return strtoll(cfg_raw(c, key, CFG_INT), NULL, 0); }
double cfg_float(const cfg_t *c, const char *key) { return strtod(cfg_raw(c, key, CFG_FLOAT), NULL); }
const char *cfg_str(const cfg_t *c, const char *key) { return cfg_raw(c, key, CFG_STRING); }

bool cfg_bool(const cfg_t *c, const char *key)
{
    const char *v = cfg_raw(c, key, CFG_BOOL);
    return strcasecmp(v, "1") == 0 || strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0 ||
           strcasecmp(v, "on") == 0;
}

void cfg_print_help(FILE *f, bool markdown)
{
    static const char *tn[] = {"int", "float", "bool", "string"};
    const cfg_key_t *k = cfg_keys();
    if (markdown) fprintf(f, "| section | key | type | default | range | description |\n|---|---|---|---|---|---|\n");
    for (int i = 0; k[i].key; i++) {
        const char *colon = strchr(k[i].key, ':');
        int slen = (int)(colon - k[i].key);
        char range[64] = "";
        if (k[i].type != CFG_BOOL && k[i].min <= k[i].max) snprintf(range, sizeof range, "%.15g..%.15g", k[i].min, k[i].max);
        if (markdown)
            fprintf(f, "| [%.*s] | %s | %s | `%s` | %s | %s |\n", slen, k[i].key, colon + 1, tn[k[i].type],
                    k[i].dflt, range, k[i].doc);
        else
            fprintf(f, "[%.*s] %s (%s, default \"%s\"%s%s)\n    %s\n", slen, k[i].key, colon + 1,
                    tn[k[i].type], k[i].dflt, range[0] ? ", range " : "", range, k[i].doc);
    }
}
