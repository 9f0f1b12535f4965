/* savepoint — see savepoint.h. */
#include "savepoint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "crc32c.h"
#include "statemesh/json.h"
#include "statemesh/v1/storage.pb-c.h"

#define MANIFEST_MAX (16u << 20)
#define END_LEN 16                              /* u32 0, u32 crc, u64 count */

/* ---- little helpers ---------------------------------------------------------- */

static void put_u32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++, v >>= 8) p[i] = (uint8_t)v;
}

static uint32_t get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++, v >>= 8) p[i] = (uint8_t)v;
}

static uint64_t get_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Returns the bytes read, 0 if malformed or past end. */
static size_t get_varint(const uint8_t *p, size_t avail, uint64_t *v)
{
    uint64_t r = 0;
    for (size_t i = 0; i < avail && i < 10; i++) {
        r |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *v = r;
            return i + 1;
        }
    }
    return 0;
}

static void hex(const uint8_t *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

static int write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Reads exactly len bytes: 0, 1 at a clean end of file, -1 error/short. */
static int read_all(FILE *f, void *buf, size_t len)
{
    size_t n = fread(buf, 1, len, f);
    if (n == len) return 0;
    if (n == 0 && feof(f)) return 1;
    return -1;
}

void sp_range(uint32_t key_groups, unsigned i, unsigned n, int *first, int *last)
{
    *first = (int)((uint64_t)i * key_groups / n);
    *last = (int)((uint64_t)(i + 1) * key_groups / n) - 1;
}

uint32_t sp_key_group_of(const char *type, size_t tlen, const char *id, size_t ilen,
                         uint32_t key_groups)
{
    char stack[1400], *buf = tlen + 1 + ilen <= sizeof stack ? stack : malloc(tlen + 1 + ilen);
    uint32_t kg;

    if (!buf) abort();
    memcpy(buf, type, tlen);
    buf[tlen] = '\0';
    memcpy(buf + tlen + 1, id, ilen);
    kg = (uint32_t)(XXH3_64bits(buf, tlen + 1 + ilen) % key_groups);
    if (buf != stack) free(buf);
    return kg;
}

/* ---- writer ---------------------------------------------------------------------- */

struct sp_writer {
    int fd;
    char *path;
    char name[64];
    uint8_t *block;            /* header space (8 bytes) + payload */
    size_t used, cap;          /* payload bytes, capacity of payload */
    uint64_t records, bytes, blocks;
    uint64_t flushed;          /* bytes written back and dropped from the page cache */
    EVP_MD_CTX *sha;
    struct crc32c crc;
};

static int w_out(struct sp_writer *w, const void *p, size_t n, char *err, size_t errlen)
{
    if (write_all(w->fd, p, n) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", w->path, strerror(errno));
        return -1;
    }
    EVP_DigestUpdate(w->sha, p, n);
    w->bytes += n;
    return 0;
}

int sp_writer_open(struct sp_writer **out, const char *dir, const char *name, char *err,
                   size_t errlen)
{
    struct sp_writer *w = calloc(1, sizeof *w);
    size_t n = strlen(dir) + 1 + strlen(name) + 1;

    *out = NULL;
    if (!w || !(w->path = malloc(n)) || !(w->block = malloc(8 + SP_BLOCK_TARGET))) {
        if (w) free(w->path);
        free(w);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(w->path, n, "%s/%s", dir, name);
    snprintf(w->name, sizeof w->name, "%s", name);
    w->cap = SP_BLOCK_TARGET;
    crc32c_init(&w->crc);
    w->sha = EVP_MD_CTX_new();
    w->fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (w->fd < 0 || !w->sha || EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL) != 1) {
        snprintf(err, errlen, "cannot create %s: %s", w->path,
                 w->fd < 0 ? strerror(errno) : "sha256 unavailable");
        sp_writer_abort(&w);
        return -1;
    }
    if (w_out(w, SP_MAGIC, SP_MAGIC_LEN, err, errlen) != 0) {
        sp_writer_abort(&w);
        return -1;
    }
    *out = w;
    return 0;
}

/* Every WRITEBACK_STEP bytes the file's new part is written back and
 * dropped from the page cache. A savepoint is written once and read
 * rarely: left dirty it would make the runtime's next checkpoint fsync wait
 * for it (ext4 commits it in the same journal transaction), and left cached
 * it would push LevelDB's table pages out of memory. */
#define WRITEBACK_STEP (4u << 20)

static void writeback(struct sp_writer *w)
{
    off_t off = (off_t)w->flushed, len = (off_t)(w->bytes - w->flushed);
    if (len <= 0) return;
    (void)sync_file_range(w->fd, off, len, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                           SYNC_FILE_RANGE_WAIT_AFTER);
    (void)posix_fadvise(w->fd, off, len, POSIX_FADV_DONTNEED);
    w->flushed = w->bytes;
}

static int flush_block(struct sp_writer *w, char *err, size_t errlen)
{
    if (w->used == 0) return 0;
    put_u32le(w->block, (uint32_t)w->used);
    put_u32le(w->block + 4, crc32c_update(&w->crc, 0, w->block + 8, w->used));
    if (w_out(w, w->block, 8 + w->used, err, errlen) != 0) return -1;
    w->used = 0;
    w->blocks++;
    if (w->bytes - w->flushed >= WRITEBACK_STEP) writeback(w);
    return 0;
}

int sp_writer_add(struct sp_writer *w, const void *key, size_t klen, const void *val, size_t vlen,
                  char *err, size_t errlen)
{
    size_t need = 10 + klen + 10 + vlen;
    uint8_t *p;

    if (klen == 0 || klen > SP_KEY_MAX || need > SP_BLOCK_MAX) {
        snprintf(err, errlen, "record too large for a savepoint (key %zu bytes, value %zu)",
                 klen, vlen);
        return -1;
    }
    if (w->used + need > w->cap && flush_block(w, err, errlen) != 0) return -1;
    if (need > w->cap) {                        /* a large record: a block of its own */
        uint8_t *b = realloc(w->block, 8 + need);
        if (!b) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        w->block = b;
        w->cap = need;
    }
    p = w->block + 8 + w->used;
    p += put_varint(p, klen);
    memcpy(p, key, klen);
    p += klen;
    p += put_varint(p, vlen);
    if (vlen) memcpy(p, val, vlen);
    p += vlen;
    w->used = (size_t)(p - (w->block + 8));
    w->records++;
    if (w->cap > SP_BLOCK_TARGET) {             /* back to the usual size */
        if (flush_block(w, err, errlen) != 0) return -1;
        uint8_t *b = realloc(w->block, 8 + SP_BLOCK_TARGET);
        if (b) w->block = b;
        w->cap = SP_BLOCK_TARGET;
    }
    return 0;
}

uint64_t sp_writer_bytes(const struct sp_writer *w)
{
    return w->bytes + w->used;
}

uint64_t sp_writer_blocks(const struct sp_writer *w)
{
    return w->blocks;
}

void sp_writer_abort(struct sp_writer **wp)
{
    struct sp_writer *w = *wp;
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    if (w->sha) EVP_MD_CTX_free(w->sha);
    free(w->block);
    free(w->path);
    free(w);
    *wp = NULL;
}

int sp_writer_finish(struct sp_writer **wp, struct sp_file *info, char *err, size_t errlen)
{
    struct sp_writer *w = *wp;
    uint8_t end[END_LEN], cnt[8], md[32];
    unsigned int mdlen = 0;
    int rc = -1;

    if (flush_block(w, err, errlen) != 0) goto out;
    put_u64le(cnt, w->records);
    put_u32le(end, 0);
    put_u32le(end + 4, crc32c_update(&w->crc, 0, cnt, 8));
    memcpy(end + 8, cnt, 8);
    if (w_out(w, end, sizeof end, err, errlen) != 0) goto out;
    if (fsync(w->fd) != 0) {
        snprintf(err, errlen, "cannot fsync %s: %s", w->path, strerror(errno));
        goto out;
    }
    (void)posix_fadvise(w->fd, 0, 0, POSIX_FADV_DONTNEED);
    if (close(w->fd) != 0) {
        w->fd = -1;
        snprintf(err, errlen, "cannot close %s: %s", w->path, strerror(errno));
        goto out;
    }
    w->fd = -1;
    EVP_DigestFinal_ex(w->sha, md, &mdlen);
    hex(md, 32, info->sha256);
    snprintf(info->name, sizeof info->name, "%s", w->name);
    info->records = w->records;
    info->bytes = w->bytes;
    rc = 0;
out:
    sp_writer_abort(wp);
    return rc;
}

/* ---- reader ---------------------------------------------------------------------- */

struct sp_cursor {
    FILE *f;
    char path[4200];
    char sha256[65];               /* what the manifest says ("" : unchecked) */
    uint64_t want_records, want_bytes;
    uint64_t limit;                /* bytes a block may reach: min(file size, manifest) */
    uint8_t *buf;                  /* the current block's payload */
    size_t cap, len, pos;
    uint64_t off;                  /* file offset of the current block */
    uint64_t records;
    bool done;
    struct crc32c *crc;
    EVP_MD_CTX *sha;
};

void sp_cursor_close(struct sp_cursor **cp)
{
    struct sp_cursor *c = *cp;
    if (!c) return;
    if (c->f) fclose(c->f);
    free(c->buf);
    free(c->crc);
    EVP_MD_CTX_free(c->sha);
    free(c);
    *cp = NULL;
}

int sp_cursor_open(struct sp_cursor **out, const char *dir, const struct sp_file *info, char *err,
                   size_t errlen)
{
    struct sp_cursor *c = calloc(1, sizeof *c);
    uint8_t magic[SP_MAGIC_LEN];
    struct stat st;

    *out = NULL;
    if (!c || !(c->crc = malloc(sizeof *c->crc)) || !(c->sha = EVP_MD_CTX_new()) ||
        EVP_DigestInit_ex(c->sha, EVP_sha256(), NULL) != 1) {
        snprintf(err, errlen, "out of memory");
        sp_cursor_close(&c);
        return -1;
    }
    crc32c_init(c->crc);
    snprintf(c->path, sizeof c->path, "%s/%s", dir, info->name);
    snprintf(c->sha256, sizeof c->sha256, "%s", info->sha256);
    c->want_records = info->records;
    c->want_bytes = info->bytes;
    c->off = SP_MAGIC_LEN;
    if ((c->f = fopen(c->path, "rb")) == NULL) {
        snprintf(err, errlen, "%s: %s", c->path, strerror(errno));
        sp_cursor_close(&c);
        return -1;
    }
    if (fstat(fileno(c->f), &st) != 0) {
        snprintf(err, errlen, "%s: %s", c->path, strerror(errno));
        sp_cursor_close(&c);
        return -1;
    }
    c->limit = (uint64_t)st.st_size < c->want_bytes ? (uint64_t)st.st_size : c->want_bytes;
    if (read_all(c->f, magic, sizeof magic) != 0 || memcmp(magic, SP_MAGIC, SP_MAGIC_LEN) != 0) {
        snprintf(err, errlen, "%s: offset 0: not a statemesh savepoint file (bad magic)", c->path);
        sp_cursor_close(&c);
        return -1;
    }
    EVP_DigestUpdate(c->sha, magic, sizeof magic);
    *out = c;
    return 0;
}

/* Reads the next block into c->buf, or the end (c->done, all checks made).
 * Returns 0 or -1. */
static int cursor_block(struct sp_cursor *c, char *err, size_t errlen)
{
    uint8_t hdr[8], md[32];
    unsigned int mdlen = 0;
    uint32_t len, want;
    char got[65];

    if (c->len) c->off += 8 + c->len;
    c->len = c->pos = 0;
    if (read_all(c->f, hdr, sizeof hdr) != 0) {
        snprintf(err, errlen, "%s: offset %" PRIu64 ": truncated (no end marker)", c->path, c->off);
        return -1;
    }
    EVP_DigestUpdate(c->sha, hdr, sizeof hdr);
    len = get_u32le(hdr);
    want = get_u32le(hdr + 4);
    if (len == 0) {                                        /* the end */
        uint8_t cnt[8], extra;
        if (read_all(c->f, cnt, 8) != 0) {
            snprintf(err, errlen, "%s: offset %" PRIu64 ": truncated end marker", c->path, c->off);
            return -1;
        }
        EVP_DigestUpdate(c->sha, cnt, 8);
        if (crc32c_update(c->crc, 0, cnt, 8) != want) {
            snprintf(err, errlen, "%s: offset %" PRIu64 ": end marker checksum mismatch", c->path,
                     c->off);
            return -1;
        }
        if (get_u64le(cnt) != c->records) {
            snprintf(err, errlen, "%s: offset %" PRIu64 ": the end marker counts %" PRIu64
                     " records, the file holds %" PRIu64, c->path, c->off, get_u64le(cnt), c->records);
            return -1;
        }
        c->off += END_LEN;
        if (fread(&extra, 1, 1, c->f) != 0) {
            snprintf(err, errlen, "%s: offset %" PRIu64 ": bytes after the end marker", c->path,
                     c->off);
            return -1;
        }
        EVP_DigestFinal_ex(c->sha, md, &mdlen);
        hex(md, 32, got);
        if (c->sha256[0] && strcmp(got, c->sha256) != 0) {
            snprintf(err, errlen, "%s: sha256 %s, the manifest says %s", c->path, got, c->sha256);
            return -1;
        }
        if (c->records != c->want_records || c->off != c->want_bytes) {
            snprintf(err, errlen, "%s: %" PRIu64 " records in %" PRIu64 " bytes, the manifest says "
                     "%" PRIu64 " in %" PRIu64, c->path, c->records, c->off, c->want_records,
                     c->want_bytes);
            return -1;
        }
        c->done = true;
        return 0;
    }
    /* A block must fit between here and the end marker of a file of
     * `limit` bytes: a damaged length never makes us allocate more than
     * the file holds. */
    if (len > SP_BLOCK_MAX || c->limit < c->off + 8 + END_LEN ||
        len > c->limit - c->off - 8 - END_LEN) {
        snprintf(err, errlen, "%s: offset %" PRIu64 ": block length %" PRIu32 " does not fit "
                 "in the file (%" PRIu64 " bytes%s; damaged)", c->path, c->off, len, c->limit,
                 c->limit == c->want_bytes ? " as the manifest says" : " on disk");
        return -1;
    }
    if (len > c->cap) {
        uint8_t *b = realloc(c->buf, len);
        if (!b) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        c->buf = b;
        c->cap = len;
    }
    if (read_all(c->f, c->buf, len) != 0) {
        snprintf(err, errlen, "%s: offset %" PRIu64 ": truncated block", c->path, c->off);
        return -1;
    }
    EVP_DigestUpdate(c->sha, c->buf, len);
    if (crc32c_update(c->crc, 0, c->buf, len) != want) {
        snprintf(err, errlen, "%s: offset %" PRIu64 ": block checksum mismatch", c->path, c->off);
        return -1;
    }
    c->len = len;
    return 0;
}

int sp_cursor_next(struct sp_cursor *c, const uint8_t **key, size_t *klen, const uint8_t **val,
                   size_t *vlen, char *err, size_t errlen)
{
    uint64_t kl, vl;
    size_t n;

    while (c->pos == c->len) {
        if (c->done) return 0;
        if (cursor_block(c, err, errlen) != 0) return -1;
    }
    n = get_varint(c->buf + c->pos, c->len - c->pos, &kl);
    if (!n || kl == 0 || kl > SP_KEY_MAX || kl > c->len - c->pos - n) goto bad;
    c->pos += n;
    *key = c->buf + c->pos;
    *klen = (size_t)kl;
    c->pos += kl;
    n = get_varint(c->buf + c->pos, c->len - c->pos, &vl);
    if (!n || vl > c->len - c->pos - n) goto bad;
    c->pos += n;
    *val = c->buf + c->pos;
    *vlen = (size_t)vl;
    c->pos += vl;
    c->records++;
    return 1;
bad:
    snprintf(err, errlen, "%s: offset %" PRIu64 ": malformed record in a block whose checksum "
             "matches", c->path, c->off);
    return -1;
}

int sp_read_file(const char *dir, const struct sp_file *info, sp_record_fn fn, void *arg,
                 char *err, size_t errlen)
{
    struct sp_cursor *c;
    const uint8_t *k, *v;
    size_t kl, vl;
    int r;

    if (sp_cursor_open(&c, dir, info, err, errlen) != 0) return -1;
    while ((r = sp_cursor_next(c, &k, &kl, &v, &vl, err, errlen)) == 1) {
        int r2 = fn ? fn(arg, k, kl, v, vl) : 0;
        if (r2 != 0) {
            r = r2;
            break;
        }
    }
    sp_cursor_close(&c);
    return r;
}

/* ---- manifest -------------------------------------------------------------------- */

void sp_manifest_free(struct sp_manifest *m)
{
    free(m->files);
    m->files = NULL;
    m->nfiles = 0;
}

static void iso_time(int64_t ms, char *out, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

int sp_manifest_write(const char *dir, const struct sp_manifest *m, char *err, size_t errlen)
{
    char path[4200], when[64], cut[64], q[200];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, SP_MANIFEST);
    if ((f = fopen(path, "wx")) == NULL) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    iso_time(m->created_at_ms, when, sizeof when);
    iso_time(m->cut.taken_at_ms, cut, sizeof cut);
    sm_json_quote(q, sizeof q, m->statemesh_version, strlen(m->statemesh_version));
    fprintf(f, "{\n  \"format\": \"statemesh-savepoint\",\n  \"format_version\": %d,\n"
            "  \"statemesh_version\": %s,\n  \"store_format\": %d,\n  \"key_groups\": %" PRIu32
            ",\n  \"key_group_hash\": \"xxh3_64(type NUL id) mod key_groups\",\n"
            "  \"created_at\": \"%s\",\n  \"created_at_ms\": %" PRId64 ",\n"
            "  \"cut\": {\"taken_at\": \"%s\", \"taken_at_ms\": %" PRId64 ", \"checkpoint\": %"
            PRIu64 "},\n  \"records\": %" PRIu64 ",\n  \"bytes\": %" PRIu64 ",\n  \"files\": [\n",
            m->format_version, q, m->store_format, m->key_groups, when, m->created_at_ms, cut,
            m->cut.taken_at_ms, m->cut.checkpoint, m->records, m->bytes);
    for (size_t i = 0; i < m->nfiles; i++) {
        const struct sp_file *fi = &m->files[i];
        sm_json_quote(q, sizeof q, fi->name, strlen(fi->name));
        if (fi->kg_first < 0)
            fprintf(f, "    {\"name\": %s, \"key_groups\": null, ", q);
        else
            fprintf(f, "    {\"name\": %s, \"key_groups\": [%d, %d], ", q, fi->kg_first,
                    fi->kg_last);
        fprintf(f, "\"records\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"sha256\": \"%s\"}%s\n",
                fi->records, fi->bytes, fi->sha256, i + 1 < m->nfiles ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    return sp_json_file_close(f, path, err, errlen);
}

int sp_json_file_close(FILE *f, const char *path, char *err, size_t errlen)
{
    int fd;
    if (fflush(f) != 0 || (fd = fileno(f)) < 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        fclose(f);
        return -1;
    }
    if (fclose(f) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int sp_json_get_u64(const sm_json *o, const char *k, uint64_t *out)
{
    int64_t v;
    if (sm_json_get_int64(o, k, &v) != SM_OK || v < 0) return -1;
    *out = (uint64_t)v;
    return 0;
}

int sp_manifest_read(const char *dir, struct sp_manifest *m, char *err, size_t errlen)
{
    char path[4200], fmt[64];
    sm_json doc, files, cut, e;
    sm_json_iter it;
    struct stat st;
    char *text = NULL;
    FILE *f = NULL;
    int64_t v;
    uint64_t u;
    uint8_t *covered = NULL;
    int rc = -1;

    memset(m, 0, sizeof *m);
    snprintf(path, sizeof path, "%s/%s", dir, SP_MANIFEST);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: %s", dir, stat(dir, &st) != 0 ? strerror(errno)
                                                                  : "not a directory");
        return -1;
    }
    if ((f = fopen(path, "rb")) == NULL) {
        snprintf(err, errlen, "%s: %s (not a complete savepoint: a savepoint gets its manifest "
                 "last)", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) != 0 || st.st_size <= 0 || (uint64_t)st.st_size > MANIFEST_MAX) {
        snprintf(err, errlen, "%s: empty or larger than %u bytes", path, MANIFEST_MAX);
        goto out;
    }
    if (!(text = malloc((size_t)st.st_size)) || read_all(f, text, (size_t)st.st_size) != 0) {
        snprintf(err, errlen, "%s: cannot read it", path);
        goto out;
    }
    if (sm_json_parse(text, (size_t)st.st_size, &doc) != SM_OK || doc.kind != SM_JSON_OBJECT) {
        snprintf(err, errlen, "%s: not a JSON object", path);
        goto out;
    }
    if (sm_json_get_string(&doc, "format", fmt, sizeof fmt, NULL) != SM_OK ||
        strcmp(fmt, "statemesh-savepoint") != 0) {
        snprintf(err, errlen, "%s: \"format\" is not \"statemesh-savepoint\"", path);
        goto out;
    }
    if (sm_json_get_int64(&doc, "format_version", &v) != SM_OK || v != SP_FORMAT_VERSION) {
        snprintf(err, errlen, "%s: savepoint format version %s; this statemesh reads version %d",
                 path, sm_json_get_int64(&doc, "format_version", &v) == SM_OK ? "other" : "missing",
                 SP_FORMAT_VERSION);
        goto out;
    }
    m->format_version = (int)v;
    if (sm_json_get_string(&doc, "statemesh_version", m->statemesh_version,
                           sizeof m->statemesh_version, NULL) != SM_OK)
        snprintf(m->statemesh_version, sizeof m->statemesh_version, "unknown");
    if (sm_json_get_int64(&doc, "store_format", &v) != SM_OK || v < 1 || v > 1000 ||
        sm_json_get_int64(&doc, "key_groups", &v) != SM_OK || v < 1 || v > 65536) {
        snprintf(err, errlen, "%s: \"store_format\" or \"key_groups\" missing or out of range "
                 "(1..65536 key groups)", path);
        goto out;
    }
    m->key_groups = (uint32_t)v;
    m->store_format = sm_json_get_int64(&doc, "store_format", &v) == SM_OK ? (int)v : 0;
    if (sm_json_get_int64(&doc, "created_at_ms", &m->created_at_ms) != SM_OK) m->created_at_ms = 0;
    if (sm_json_get(&doc, "cut", &cut) == SM_OK && cut.kind == SM_JSON_OBJECT) {
        if (sm_json_get_int64(&cut, "taken_at_ms", &m->cut.taken_at_ms) != SM_OK)
            m->cut.taken_at_ms = 0;
        if (sp_json_get_u64(&cut, "checkpoint", &m->cut.checkpoint) != 0) m->cut.checkpoint = 0;
    }
    if (sm_json_get(&doc, "files", &files) != SM_OK || files.kind != SM_JSON_ARRAY ||
        sm_json_iter_init(&it, &files) != SM_OK) {
        snprintf(err, errlen, "%s: \"files\" is missing or not an array", path);
        goto out;
    }
    covered = calloc(m->key_groups, 1);
    if (!covered) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    while (sm_json_iter_next(&it, NULL, &e) == SM_OK) {
        struct sp_file *fi;
        sm_json kg, a, b;
        sm_json_iter ki;
        int64_t lo, hi;
        size_t nl = 0;

        if (m->nfiles == SP_MAX_FILES) {
            snprintf(err, errlen, "%s: more than %d files", path, SP_MAX_FILES);
            goto out;
        }
        fi = realloc(m->files, (m->nfiles + 1) * sizeof *fi);
        if (!fi) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        m->files = fi;
        fi = &m->files[m->nfiles++];
        memset(fi, 0, sizeof *fi);
        if (e.kind != SM_JSON_OBJECT ||
            sm_json_get_string(&e, "name", fi->name, sizeof fi->name, &nl) != SM_OK ||
            nl == 0 || strchr(fi->name, '/') || fi->name[0] == '.' ||
            sp_json_get_u64(&e, "records", &fi->records) != 0 || sp_json_get_u64(&e, "bytes", &u) != 0 ||
            sm_json_get_string(&e, "sha256", fi->sha256, sizeof fi->sha256, &nl) != SM_OK ||
            nl != 64 || sm_json_get(&e, "key_groups", &kg) != SM_OK) {
            snprintf(err, errlen, "%s: file entry %zu: needs \"name\" (a plain file name), "
                     "\"key_groups\", \"records\", \"bytes\" and a 64-digit \"sha256\"", path,
                     m->nfiles);
            goto out;
        }
        fi->bytes = u;
        for (int i = 0; i < 64; i++)
            if (!strchr("0123456789abcdef", fi->sha256[i])) {
                snprintf(err, errlen, "%s: file %s: \"sha256\" is not lowercase hex", path,
                         fi->name);
                goto out;
            }
        for (size_t j = 0; j + 1 < m->nfiles; j++)
            if (strcmp(m->files[j].name, fi->name) == 0) {
                snprintf(err, errlen, "%s: file %s is listed twice", path, fi->name);
                goto out;
            }
        if (kg.kind == SM_JSON_NULL) {
            fi->kg_first = fi->kg_last = -1;
            continue;
        }
        if (kg.kind != SM_JSON_ARRAY || sm_json_iter_init(&ki, &kg) != SM_OK ||
            sm_json_iter_next(&ki, NULL, &a) != SM_OK || sm_json_iter_next(&ki, NULL, &b) != SM_OK ||
            sm_json_int64(&a, &lo) != SM_OK || sm_json_int64(&b, &hi) != SM_OK ||
            sm_json_iter_next(&ki, NULL, &a) != SM_ABSENT || lo < 0 || hi < lo || hi >= m->key_groups) {
            snprintf(err, errlen, "%s: file %s: \"key_groups\" must be null or [first, last] "
                     "within 0..%" PRIu32, path, fi->name, m->key_groups - 1);
            goto out;
        }
        for (int64_t g = lo; g <= hi; g++) {
            if (covered[g]) {
                snprintf(err, errlen, "%s: key group %" PRId64 " is in two files", path, g);
                goto out;
            }
            covered[g] = 1;
        }
        fi->kg_first = (int)lo;
        fi->kg_last = (int)hi;
    }
    for (uint32_t g = 0; g < m->key_groups; g++)
        if (!covered[g]) {
            snprintf(err, errlen, "%s: key group %" PRIu32 " is in no file (incomplete "
                     "savepoint)", path, g);
            goto out;
        }
    for (size_t i = 0; i < m->nfiles; i++) {
        m->records += m->files[i].records;
        m->bytes += m->files[i].bytes;
    }
    rc = 0;
out:
    if (rc != 0) sp_manifest_free(m);
    free(covered);
    free(text);
    if (f) fclose(f);
    return rc;
}

int sp_verify(const char *dir, struct sp_manifest *m, sp_progress_fn progress, void *parg,
              char *err, size_t errlen)
{
    uint64_t records = 0, bytes = 0;

    if (sp_manifest_read(dir, m, err, errlen) != 0) return -1;
    for (size_t i = 0; i < m->nfiles; i++) {
        if (sp_read_file(dir, &m->files[i], NULL, NULL, err, errlen) != 0) {
            sp_manifest_free(m);
            return -1;
        }
        records += m->files[i].records;
        bytes += m->files[i].bytes;
        if (progress) progress(parg, &m->files[i], records, bytes);
    }
    return 0;
}

/* ---- records ---------------------------------------------------------------------- */

int sp_key_address(const uint8_t *key, size_t klen, const char **type, size_t *tlen,
                   const char **id, size_t *ilen)
{
    const uint8_t *te, *ie;
    if (klen < 3 + 2 + 2 || !strchr("SMPI", key[0])) return -1;
    te = memchr(key + 3, '\0', klen - 3);
    if (!te || te == key + 3 || te + 1 >= key + klen) return -1;
    ie = memchr(te + 1, '\0', (size_t)(key + klen - (te + 1)));
    if (!ie || ie == te + 1) return -1;
    *type = (const char *)key + 3;
    *tlen = (size_t)(te - (key + 3));
    *id = (const char *)te + 1;
    *ilen = (size_t)(ie - (te + 1));
    return 0;
}

static int addr_group(const Statemesh__V1__Address *a, uint32_t key_groups)
{
    if (!a || !a->type || !a->id || !a->type[0] || !a->id[0]) return -2;
    return (int)sp_key_group_of(a->type, strlen(a->type), a->id, strlen(a->id), key_groups);
}

int sp_record_key_group(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                        uint32_t key_groups)
{
    const char *type, *id;
    size_t tl, il;
    int kg;

    if (klen == 0) return -2;
    switch (key[0]) {
    case 'S': case 'M': case 'P': case 'I':
        if (sp_key_address(key, klen, &type, &tl, &id, &il) != 0) return -2;
        return (int)sp_key_group_of(type, tl, id, il, key_groups);
    case 'D': {
        Statemesh__V1__StoredDelayed *d = statemesh__v1__stored_delayed__unpack(NULL, vlen, val);
        if (!d) return -2;
        kg = addr_group(d->caller ? d->caller : d->target, key_groups);
        statemesh__v1__stored_delayed__free_unpacked(d, NULL);
        return kg;
    }
    case 'L': {
        Statemesh__V1__StoredDeadLetter *d =
            statemesh__v1__stored_dead_letter__unpack(NULL, vlen, val);
        if (!d) return -2;
        kg = addr_group(d->target, key_groups);
        statemesh__v1__stored_dead_letter__free_unpacked(d, NULL);
        return kg;
    }
    case 'O': case 'C':            /* peer.h: the source resp. destination key group */
        if (klen != (key[0] == 'O' ? 13u : 5u)) return -2;
        kg = key[1] << 8 | key[2];
        return (uint32_t)kg < key_groups ? kg : -2;
    case 'E': case 'J': case 'X':
        return -1;
    default:
        return -2;
    }
}
