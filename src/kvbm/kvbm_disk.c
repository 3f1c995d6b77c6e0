/*
 * kvbm_disk.c - the KV block manager's disk tier (kvbm.h, G3): the slot map
 * (kvbm_slots.h) over the rows of a chunked HDF5 dataset on node-local
 * disk, one chunk per block (so a block is one chunk written or read; no
 * fill values are written, rows take space when first written), and a /keys
 * table beside it. Every HDF5 call holds the process-wide HDF5 lock
 * (h5util.h); HDF5's error printing is off while the tier is open.
 */
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hlog/h5util.h"
#include "kvbm/kvbm_slots.h"
#include "rotor/kvbm.h"

#define WHO "kvbm disk"

struct kvbm_disk {
    kvs_map_t map;
    size_t block_bytes;
    char *path;
    hid_t file, blocks, keys, key_type;
};

/* a /keys row */
typedef struct {
    uint64_t seq_hash, block_hash, parent_hash;
    int32_t has_parent, n_tokens;
} key_rec_t;

static hid_t key_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(key_rec_t));
    int ok = t >= 0;
    if (ok) {
        ok &= H5Tinsert(t, "seq_hash", HOFFSET(key_rec_t, seq_hash), H5T_NATIVE_UINT64) >= 0;
        ok &= H5Tinsert(t, "block_hash", HOFFSET(key_rec_t, block_hash), H5T_NATIVE_UINT64) >= 0;
        ok &= H5Tinsert(t, "parent_hash", HOFFSET(key_rec_t, parent_hash), H5T_NATIVE_UINT64) >= 0;
        ok &= H5Tinsert(t, "has_parent", HOFFSET(key_rec_t, has_parent), H5T_NATIVE_INT32) >= 0;
        ok &= H5Tinsert(t, "n_tokens", HOFFSET(key_rec_t, n_tokens), H5T_NATIVE_INT32) >= 0;
    }
    return h5u_compound_end(t, ok);
}

/* a dataset of dims, chunked chunk, no fill values written */
static hid_t make_dset(hid_t file, const char *name, hid_t type, int rank, const hsize_t *dims, const hsize_t *chunk)
{
    hid_t space = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE), d = H5I_INVALID_HID;
    if (space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, rank, chunk) >= 0 &&
        H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) >= 0 && H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_INCR) >= 0)
        d = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (space >= 0) H5Sclose(space);
    if (dcpl >= 0) H5Pclose(dcpl);
    return d;
}

/* read or write row s of a dataset of rank 1 or 2 (row length cols) */
static herr_t row_io(hid_t dset, hid_t mem_type, int64_t s, hsize_t cols, void *buf, int write)
{
    hid_t fspace = H5Dget_space(dset);
    if (fspace < 0) return -1;
    const int rank = H5Sget_simple_extent_ndims(fspace);
    hsize_t start[2] = {(hsize_t)s, 0}, count[2] = {1, cols}, mcount[1] = {rank == 2 ? cols : 1};
    hid_t mspace = H5Screate_simple(1, mcount, NULL);
    herr_t r = -1;
    if (mspace >= 0 && H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) >= 0)
        r = write ? H5Dwrite(dset, mem_type, mspace, fspace, H5P_DEFAULT, buf)
                  : H5Dread(dset, mem_type, mspace, fspace, H5P_DEFAULT, buf);
    if (mspace >= 0) H5Sclose(mspace);
    H5Sclose(fspace);
    return r;
}

/* with the lock held: close what is open, end the HDF5 use, free */
static void release(kvbm_disk_t *d, int user)
{
    if (d->keys >= 0) H5Dclose(d->keys);
    if (d->blocks >= 0) H5Dclose(d->blocks);
    if (d->key_type >= 0) H5Tclose(d->key_type);
    if (d->file >= 0) H5Fclose(d->file);
    if (user) h5u_user_end();
    kvs_free(&d->map);
    free(d->path);
    free(d);
}

rt_status_t kvbm_disk_create(const char *path, int64_t n_blocks, size_t block_bytes, kvbm_disk_t **out)
{
    if (block_bytes == 0) return rt_error_set(RT_ERR_RANGE, WHO ": blocks of 0 bytes");
    kvbm_disk_t *d = calloc(1, sizeof *d);
    if (!d) return rt_error_set(RT_ERR_NOMEM, WHO ": out of memory");
    d->file = d->blocks = d->keys = d->key_type = H5I_INVALID_HID;
    d->block_bytes = block_bytes;
    rt_status_t st = kvs_init(&d->map, n_blocks);
    if (!st && !(d->path = strdup(path))) st = rt_error_set(RT_ERR_NOMEM, WHO ": out of memory");
    if (st) {
        kvs_free(&d->map);
        free(d);
        return st;
    }
    h5u_lock();
    st = h5u_user_begin(WHO);
    const int user = !st;
    if (!st) st = h5u_file_create(WHO, path, H5P_DEFAULT, &d->file);
    if (!st) {
        const hsize_t dims[2] = {(hsize_t)n_blocks, block_bytes}, chunk[2] = {1, block_bytes};
        d->blocks = make_dset(d->file, "blocks", H5T_NATIVE_UINT8, 2, dims, chunk);
        if (d->blocks < 0) st = h5u_fail(WHO, "create /blocks");
    }
    if (!st) {
        const hsize_t dims[1] = {(hsize_t)n_blocks}, chunk[1] = {(hsize_t)(n_blocks < 1024 ? n_blocks : 1024)};
        d->key_type = key_type();
        d->keys = d->key_type >= 0 ? make_dset(d->file, "keys", d->key_type, 1, dims, chunk) : H5I_INVALID_HID;
        if (d->keys < 0) st = h5u_fail(WHO, "create /keys");
    }
    if (st) {
        const int made = d->file >= 0;
        release(d, user);
        if (made) unlink(path);
        h5u_unlock();
        return st;
    }
    h5u_unlock();
    *out = d;
    return RT_OK;
}

void kvbm_disk_destroy(kvbm_disk_t *d)
{
    if (!d) return;
    char *path = strdup(d->path);
    h5u_lock();
    release(d, 1);
    h5u_unlock();
    if (path) unlink(path); /* a cache: nothing to keep */
    free(path);
}

rt_status_t kvbm_disk_put(kvbm_disk_t *d, const kvbm_key_t *key, const void *src, kvbm_key_t *dropped,
                          bool *did_drop, bool *stored)
{
    *stored = false;
    const int64_t s = kvs_put(&d->map, key, dropped, did_drop);
    if (s < 0) return RT_OK; /* held */
    key_rec_t rec = {.seq_hash = key->seq_hash, .block_hash = key->block_hash,
                     .parent_hash = key->has_parent ? key->parent_hash : 0, .has_parent = key->has_parent,
                     .n_tokens = key->n_tokens};
    h5u_lock();
    herr_t r = row_io(d->blocks, H5T_NATIVE_UINT8, s, d->block_bytes, (void *)src, 1);
    if (r >= 0) r = row_io(d->keys, d->key_type, s, 1, &rec, 1);
    rt_status_t st = r < 0 ? h5u_fail(WHO, "write a block") : RT_OK;
    h5u_unlock();
    if (st) {
        kvs_remove(&d->map, key->seq_hash);
        return st;
    }
    *stored = true;
    return RT_OK;
}

rt_status_t kvbm_disk_get(kvbm_disk_t *d, uint64_t seq_hash, void *dst)
{
    const int64_t s = kvs_get(&d->map, seq_hash);
    if (s < 0) return RT_ERR_NOT_FOUND;
    h5u_lock();
    rt_status_t st = row_io(d->blocks, H5T_NATIVE_UINT8, s, d->block_bytes, dst, 0) < 0 ? h5u_fail(WHO, "read a block")
                                                                                      : RT_OK;
    h5u_unlock();
    if (st) kvs_remove(&d->map, seq_hash);
    return st;
}

void kvbm_disk_stats(const kvbm_disk_t *d, kvbm_stats_t *out) { kvs_stats(&d->map, out); }

rt_status_t kvbm_disk_check(const kvbm_disk_t *d) { return kvs_check(&d->map); }
