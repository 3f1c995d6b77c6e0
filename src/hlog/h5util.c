/*
 * h5util.c - the HDF5 helpers of h5util.h. Each function closes every
 * handle it opened on every path; callers serialise all HDF5 calls.
 */
#include "hlog/h5util.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* ---- errors ---------------------------------------------------------- */

typedef struct {
    char first[160]; /* the API call's message */
    char last[160];  /* the innermost cause */
} h5u_err_t;

static herr_t err_walk(unsigned n, const H5E_error2_t *e, void *arg)
{
    h5u_err_t *m = arg;
    char buf[160];
    snprintf(buf, sizeof buf, "%s(): %s", e->func_name ? e->func_name : "?",
             e->desc ? e->desc : "?");
    if (n == 0) memcpy(m->first, buf, sizeof buf);
    memcpy(m->last, buf, sizeof buf);
    return 0;
}

rt_status_t h5u_fail(const char *who, const char *what)
{
    h5u_err_t m = {"", ""};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, err_walk, &m);
    if (!m.first[0]) return rt_error_set(RT_ERR_IO, "%s: %s failed", who, what);
    if (!strcmp(m.first, m.last)) return rt_error_set(RT_ERR_IO, "%s: %s: %s", who, what, m.first);
    return rt_error_set(RT_ERR_IO, "%s: %s: %s: %s", who, what, m.first, m.last);
}

rt_status_t h5u_quiet_begin(const char *who, h5u_quiet_t *saved)
{
    if (H5open() < 0) return rt_error_set(RT_ERR_IO, "%s: H5open failed", who);
    if (H5Eget_auto2(H5E_DEFAULT, &saved->func, &saved->data) < 0 ||
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL) < 0)
        return rt_error_set(RT_ERR_IO, "%s: turning HDF5 error printing off failed", who);
    return RT_OK;
}

void h5u_quiet_end(const h5u_quiet_t *saved)
{
    H5Eset_auto2(H5E_DEFAULT, saved->func, saved->data);
}

static pthread_mutex_t h5u_mu = PTHREAD_MUTEX_INITIALIZER;
static int h5u_users;        /* under h5u_mu */
static h5u_quiet_t h5u_saved; /* error printing before the first user */

void h5u_lock(void) { pthread_mutex_lock(&h5u_mu); }

void h5u_unlock(void) { pthread_mutex_unlock(&h5u_mu); }

rt_status_t h5u_user_begin(const char *who)
{
    rt_status_t st = h5u_users == 0 ? h5u_quiet_begin(who, &h5u_saved) : RT_OK;
    if (!st) h5u_users++;
    return st;
}

void h5u_user_end(void)
{
    if (--h5u_users == 0) h5u_quiet_end(&h5u_saved);
}

/* ---- types ----------------------------------------------------------- */

hid_t h5u_str_fixed(size_t len)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, len) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0)) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

hid_t h5u_str_utf8(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

herr_t h5u_insert_str(hid_t t, const char *name, size_t offset, size_t len)
{
    hid_t s = h5u_str_fixed(len);
    if (s < 0) return -1;
    herr_t r = H5Tinsert(t, name, offset, s); /* t keeps its own copy of s */
    H5Tclose(s);
    return r;
}

hid_t h5u_compound_end(hid_t t, int ok)
{
    if (ok) return t;
    if (t >= 0) H5Tclose(t);
    return H5I_INVALID_HID;
}

/* ---- attributes ------------------------------------------------------ */

rt_status_t h5u_attr_write(const char *who, hid_t obj, const char *name, hid_t type,
                           const void *v)
{
    hid_t space = H5Screate(H5S_SCALAR);
    if (space < 0) return h5u_fail(who, name);
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t w = a >= 0 ? H5Awrite(a, type, v) : -1;
    rt_status_t st = w < 0 ? h5u_fail(who, name) : RT_OK;
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    return st;
}

rt_status_t h5u_attr_str(const char *who, hid_t obj, const char *name, const char *s)
{
    if (!s) return RT_OK;
    hid_t t = h5u_str_utf8();
    if (t < 0) return h5u_fail(who, name);
    rt_status_t st = h5u_attr_write(who, obj, name, t, &s);
    H5Tclose(t);
    return st;
}

rt_status_t h5u_attr_update(const char *who, hid_t obj, const char *name, hid_t type,
                            const void *v)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    herr_t w = a >= 0 ? H5Awrite(a, type, v) : -1;
    rt_status_t st = w < 0 ? h5u_fail(who, name) : RT_OK;
    if (a >= 0) H5Aclose(a);
    return st;
}

/* ---- files and tables ------------------------------------------------ */

rt_status_t h5u_file_create(const char *who, const char *path, hid_t fapl, hid_t *out)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (f < 0) {
        char what[512];
        snprintf(what, sizeof what, "create %s", path);
        return h5u_fail(who, what);
    }
    *out = f;
    return RT_OK;
}

rt_status_t h5u_table_create(const char *who, hid_t loc, const char *name, hid_t mem_type,
                             hsize_t chunk, const char *units, const void *recs, size_t n,
                             hid_t *out)
{
    hsize_t dims = n, maxdims = H5S_UNLIMITED;
    hid_t space = H5Screate_simple(1, &dims, &maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t ftype = H5Tcopy(mem_type);
    hid_t d = H5I_INVALID_HID;
    rt_status_t st = RT_OK;
    if (space < 0 || dcpl < 0 || ftype < 0 || H5Tpack(ftype) < 0 ||
        H5Pset_chunk(dcpl, 1, &chunk) < 0)
        st = h5u_fail(who, name);
    if (!st && (d = H5Dcreate2(loc, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0)
        st = h5u_fail(who, name);
    if (!st && n && H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, recs) < 0)
        st = h5u_fail(who, name);
    if (!st) st = h5u_attr_str(who, d, "units", units);
    if (st && d >= 0) H5Dclose(d);
    if (ftype >= 0) H5Tclose(ftype);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    if (!st) *out = d;
    return st;
}

rt_status_t h5u_table_append(const char *who, hid_t dset, const char *name, hid_t mem_type,
                             hsize_t n_old, const void *recs, size_t n)
{
    if (n == 0) return RT_OK;
    hsize_t start = n_old, count = n, total = n_old + n;
    if (H5Dset_extent(dset, &total) < 0) return h5u_fail(who, name);
    hid_t fspace = H5Dget_space(dset);
    hid_t mspace = H5Screate_simple(1, &count, NULL);
    rt_status_t st = RT_OK;
    if (fspace < 0 || mspace < 0 ||
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0 ||
        H5Dwrite(dset, mem_type, mspace, fspace, H5P_DEFAULT, recs) < 0)
        st = h5u_fail(who, name);
    if (mspace >= 0) H5Sclose(mspace);
    if (fspace >= 0) H5Sclose(fspace);
    return st;
}
