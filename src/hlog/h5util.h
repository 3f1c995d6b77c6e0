/*
 * h5util.h - small HDF5 helpers shared by the job log (src/hlog/hlog_h5.c)
 * and rotor-bench's run file (bench/rb/rb_output_h5.c): error text from the
 * HDF5 error stack, HDF5's error printing turned off and back on, string
 * types, scalar attributes, the output file, and 1-D unlimited chunked
 * datasets of a compound type that grow by appends ("tables").
 *
 * Threads: Debian's HDF5 is not built thread-safe. Callers must call HDF5,
 * these helpers included, from one thread at a time: the job log and the KV
 * block manager's disk tier hold the process-wide lock (h5u_lock) around
 * every HDF5 call; rotor-bench calls from its main thread only.
 * h5u_quiet_begin/end change process-wide HDF5 state.
 *
 * Errors: functions returning rt_status_t record the message with
 * rt_error_set as "<who>: <what>: <HDF5 messages>", where who is the
 * caller's prefix ("hlog", "rotor-bench: HDF5") and what names what failed
 * (a file, dataset or attribute); the HDF5 messages are the first and the
 * innermost entries of the error stack, or " failed" when it is empty.
 * Functions returning hid_t (or herr_t) record nothing: they return
 * H5I_INVALID_HID (or < 0) and the caller reports with h5u_fail.
 *
 * Ownership: every hid_t returned (or written to *out) is the caller's to
 * close; no argument is kept after a call returns.
 */
#ifndef ROTOR_HLOG_H5UTIL_H
#define ROTOR_HLOG_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>

#include "rotor/status.h"

/* Record "<who>: <what>: <HDF5 messages>" as the thread's error (see
 * above); returns RT_ERR_IO. */
rt_status_t h5u_fail(const char *who, const char *what);

/* HDF5's automatic error printing as it was before h5u_quiet_begin. */
typedef struct {
    H5E_auto2_t func;
    void *data;
} h5u_quiet_t;

/* Initialise HDF5 (H5open), save its error printing into *saved and turn it
 * off. Nothing is changed on failure. */
rt_status_t h5u_quiet_begin(const char *who, h5u_quiet_t *saved);
/* Restore the error printing saved by h5u_quiet_begin. */
void h5u_quiet_end(const h5u_quiet_t *saved);

/* The process-wide HDF5 lock (see Threads above). */
void h5u_lock(void);
void h5u_unlock(void);
/* With the lock held: one more user of HDF5 in this process (a log, a disk
 * tier). The first turns HDF5's error printing off (h5u_quiet_begin), the
 * last one to end turns it back on. */
rt_status_t h5u_user_begin(const char *who);
void h5u_user_end(void);

/* Fixed-length string of len bytes (H5T_C_S1, NUL-terminated). */
hid_t h5u_str_fixed(size_t len);
/* Variable-length UTF-8 string (h5py reads it as str). */
hid_t h5u_str_utf8(void);

/* Insert a fixed-length string member of len bytes (h5u_str_fixed) named
 * name at offset into the compound type t. */
herr_t h5u_insert_str(hid_t t, const char *name, size_t offset, size_t len);
/* End of a compound type builder: t if ok, else close t (when valid) and
 * return H5I_INVALID_HID. */
hid_t h5u_compound_end(hid_t t, int ok);

/* Create the scalar attribute name of the given type on obj, value at v. */
rt_status_t h5u_attr_write(const char *who, hid_t obj, const char *name, hid_t type,
                           const void *v);
/* Variable-length UTF-8 string attribute; s NULL: nothing is written. */
rt_status_t h5u_attr_str(const char *who, hid_t obj, const char *name, const char *s);
/* Overwrite the value of the existing attribute name of obj. */
rt_status_t h5u_attr_update(const char *who, hid_t obj, const char *name, hid_t type,
                            const void *v);

/* Create (truncate) the file path with the file access properties fapl
 * (H5P_DEFAULT for the defaults); *out is the caller's to H5Fclose. */
rt_status_t h5u_file_create(const char *who, const char *path, hid_t fapl, hid_t *out);

/* Create the 1-D dataset name in loc holding the n records recs of
 * mem_type (n may be 0, recs then unused): unlimited, chunks of chunk
 * records, file type the packed copy of mem_type (a compound), with the
 * variable-length string attribute "units" (none if units is NULL). *out
 * is the caller's to H5Dclose; recs stay the caller's. */
rt_status_t h5u_table_create(const char *who, hid_t loc, const char *name, hid_t mem_type,
                             hsize_t chunk, const char *units, const void *recs, size_t n,
                             hid_t *out);
/* Extend the table dset (named name, for messages) from n_old to n_old + n
 * records and write recs (n records of mem_type) to the new ones; n == 0
 * does nothing. recs stay the caller's. */
rt_status_t h5u_table_append(const char *who, hid_t dset, const char *name, hid_t mem_type,
                             hsize_t n_old, const void *recs, size_t n);

#endif
