/*
 * savepoint — the savepoint format: writing record files, reading and
 * verifying them, the manifest, and re-keying records (docs/savepoints.md).
 * No server state: statemeshd (spcreate.c, sprestore.c) and the CLI
 * (`statemesh savepoint verify|inspect`) share it.
 *
 * A savepoint is a directory:
 *
 *   MANIFEST.json        format version, key-group count, statemesh version,
 *                        creation time, the cut, and per file its key-group
 *                        range, record count, bytes and sha256
 *   kg-AAAA-BBBB.smsp    the records of key groups AAAA..BBBB (S, M, P, D and
 *                        I keys of store.h), in key order per kind
 *   node.smsp            the node's records: egress logs (E), dead letters
 *                        (L), legacy idempotency records (J), metadata (X,
 *                        other than the format and key-group count)
 *
 * A record file:
 *
 *   "statemesh-sp-v1\n"                     16 bytes of magic
 *   block*                                  u32le len (> 0), u32le crc32c of
 *                                           the payload, payload: records
 *                                           (varint klen, key, varint vlen,
 *                                           value), none split across blocks
 *   u32le 0, u32le crc32c(count), u64le count   the end: the record count
 *
 * Records are the store's own keys and values (keys hold their key group
 * under the manifest's key-group count). sha256 covers the whole file.
 * Every reader check names the file and the byte offset of the damage.
 *
 * Errors: functions return 0 or -1 with a sentence in `err`.
 */
#ifndef SM_SAVEPOINT_H
#define SM_SAVEPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SP_FORMAT_VERSION 1
#define SP_MANIFEST "MANIFEST.json"
#define SP_NODE_FILE "node.smsp"
#define SP_MAGIC "statemesh-sp-v1\n"
#define SP_MAGIC_LEN 16
#define SP_BLOCK_TARGET (64u * 1024)           /* records are packed up to this */
#define SP_BLOCK_MAX (512u * 1024 * 1024)      /* a larger block is damage */
#define SP_KEY_MAX (64u * 1024)
#define SP_DEFAULT_RANGES 16
#define SP_MAX_FILES 4097

struct sp_file {
    char name[64];
    int kg_first, kg_last;     /* -1, -1: node.smsp */
    uint64_t records, bytes;
    char sha256[65];           /* lowercase hex */
};

/* What the manifest says about the cut (informational). */
struct sp_cut {
    int64_t taken_at_ms;       /* Unix epoch ms */
    uint64_t checkpoint;       /* checkpoints committed since the runtime started */
};

struct sp_manifest {
    int format_version;
    char statemesh_version[32];
    int store_format;
    uint32_t key_groups;
    int64_t created_at_ms;     /* when the savepoint was complete */
    struct sp_cut cut;
    uint64_t records, bytes;   /* over all files */
    struct sp_file *files;
    size_t nfiles;
};

void sp_manifest_free(struct sp_manifest *m);
/* Writes DIR/MANIFEST.json (fsync'd). */
int sp_manifest_write(const char *dir, const struct sp_manifest *m, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Flushes, fsyncs and closes a JSON file being written (f is closed in
 * every case). Returns 0, or -1 with "cannot write PATH: why" in err. */
int sp_json_file_close(FILE *f, const char *path, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Member k of object o as a non-negative integer: 0, or -1 when absent,
 * not an integer or negative. */
struct sm_json;
int sp_json_get_u64(const struct sm_json *o, const char *k, uint64_t *out /* OUT */);
/* Reads and checks DIR/MANIFEST.json (types, ranges that tile the key
 * groups without overlap, file names without '/'). */
int sp_manifest_read(const char *dir, struct sp_manifest *m /* OUT */, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* The key-group range of file i of n over `key_groups` groups (Flink's even
 * split). */
void sp_range(uint32_t key_groups, unsigned i, unsigned n, int *first, int *last);

/* ---- writing one file ---- */
struct sp_writer;
int sp_writer_open(struct sp_writer **out, const char *dir, const char *name, char *err,
                   size_t errlen) __attribute__((warn_unused_result));
int sp_writer_add(struct sp_writer *w, const void *key, size_t klen, const void *val, size_t vlen,
                  char *err, size_t errlen) __attribute__((warn_unused_result));
/* Writes the end, fsyncs, closes; fills name, records, bytes and sha256
 * of *info (the range is the caller's). Frees the writer either way. */
int sp_writer_finish(struct sp_writer **w, struct sp_file *info, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void sp_writer_abort(struct sp_writer **w);    /* closes and frees; the file stays */
uint64_t sp_writer_bytes(const struct sp_writer *w);
uint64_t sp_writer_blocks(const struct sp_writer *w);   /* blocks written so far */

/* ---- reading ---- */
typedef int (*sp_record_fn)(void *arg, const uint8_t *key, size_t klen, const uint8_t *val,
                            size_t vlen);
/* Reads every record of DIR/info->name, checking magic, block CRCs, the
 * end, the record count and the sha256 against info; fn (may be NULL) is
 * called per record and may return non-zero to stop (the function then
 * returns that value). Records are handed to fn before the file's sha256
 * is known to match: a caller that must not act on a damaged file verifies
 * first (sp_verify). */
int sp_read_file(const char *dir, const struct sp_file *info, sp_record_fn fn, void *arg,
                 char *err, size_t errlen) __attribute__((warn_unused_result));

/* A file record by record (the same checks as sp_read_file; the sha256,
 * counts and length are checked when the end is reached). */
struct sp_cursor;
int sp_cursor_open(struct sp_cursor **out /* OUT */, const char *dir, const struct sp_file *info,
                   char *err, size_t errlen) __attribute__((warn_unused_result));
/* The next record: returns 1 with key and value pointing into the cursor
 * (valid until the next call), 0 at the intact end, -1 on damage (err). */
int sp_cursor_next(struct sp_cursor *c, const uint8_t **key /* OUT */, size_t *klen /* OUT */,
                   const uint8_t **val /* OUT */, size_t *vlen /* OUT */, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void sp_cursor_close(struct sp_cursor **c);   /* sets *c = NULL */

/* Progress of long reads: called after each file with the running totals. */
typedef void (*sp_progress_fn)(void *arg, const struct sp_file *done, uint64_t records,
                               uint64_t bytes);
/* Reads the manifest and every file: 0 if all is intact. */
int sp_verify(const char *dir, struct sp_manifest *m /* OUT */, sp_progress_fn progress,
              void *parg, char *err, size_t errlen) __attribute__((warn_unused_result));

/* ---- records ---- */

/* The address of an S, M, P or I key (pointers into key; lengths without
 * NUL). Returns 0, or -1 for another kind or a malformed key. */
int sp_key_address(const uint8_t *key, size_t klen, const char **type, size_t *tlen,
                   const char **id, size_t *ilen);
/* The key group a record belongs to under `key_groups` groups: from the
 * address in the key (S, M, P, I), or the timer's owner in the value (D:
 * the sender, else the target); for a dead letter (L) its target. -1 for
 * node records without an address (E, J, X) and -2 for a malformed one. */
int sp_record_key_group(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                        uint32_t key_groups);
/* XXH3_64(type '\0' id) % key_groups: store_key_group() for any count. */
uint32_t sp_key_group_of(const char *type, size_t tlen, const char *id, size_t ilen,
                         uint32_t key_groups);

#endif
