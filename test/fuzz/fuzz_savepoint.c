/*
 * fuzz_savepoint — libFuzzer harness for the savepoint reader
 * (runtime/savepoint.c): the manifest, record files, and the record
 * decoders that restore and inspect run on each record.
 *
 * Input layout (test/fuzz/make_savepoint_seeds.py builds seeds from a real
 * savepoint):
 *
 *   u8 flags                 bit 0: fix up the checksums of the data file
 *   u32le mlen, manifest     written as MANIFEST.json
 *   u32le dlen, data         written as kg-0000-4095.smsp
 *   rest                     written as node.smsp
 *
 * Each input then goes through, in a private temp dir:
 *   1. sp_verify(dir): the manifest checks, then every file it names
 *      (magic, block CRCs, end marker, record count, length, sha256) —
 *      what `savepoint verify` and a restore run first.
 *   2. sp_read_file on the data file as a file of its own size with no
 *      sha256 to match, and with every per-block CRC recomputed when bit 0
 *      is set, so mutations reach the record framing; each record goes
 *      through sp_record_key_group (the restore's re-keying: key shapes,
 *      StoredDelayed and StoredDeadLetter decoding) and sp_key_address.
 * A failure must leave a non-empty message. Bounded memory is checked by
 * libFuzzer's -rss_limit_mb (the reader used to trust block lengths up to
 * 512 MiB; regress-* seeds keep such inputs).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crc32c.h"
#include "fz_tmp.h"
#include "savepoint.h"

static char g_dir[256];
static struct crc32c g_crc;

static void put_file(const char *name, const uint8_t *data, size_t len)
{
    char p[400];
    FILE *f;
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    f = fopen(p, "wb");
    if (!f) abort();
    if (len && fwrite(data, 1, len, f) != len) abort();
    fclose(f);
}

static void cleanup_dir(void)
{
    static const char *names[] = {SP_MANIFEST, "kg-0000-4095.smsp", SP_NODE_FILE};
    char p[400];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", g_dir, names[i]);
        unlink(p);
    }
    rmdir(g_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    snprintf(g_dir, sizeof g_dir, "%s/statemesh-fuzz-savepoint-XXXXXX", fz_tmpdir());
    if (!mkdtemp(g_dir)) abort();
    crc32c_init(&g_crc);
    atexit(cleanup_dir);
    return 0;
}

static uint32_t get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++, v >>= 8) p[i] = (uint8_t)v;
}

/* Recomputes every block's CRC and the end marker's, as far as the framing
 * holds together. */
static void fix_checksums(uint8_t *d, size_t n)
{
    size_t off = SP_MAGIC_LEN;
    if (n >= SP_MAGIC_LEN) memcpy(d, SP_MAGIC, SP_MAGIC_LEN);
    while (off + 8 <= n) {
        uint32_t len = get_u32le(d + off);
        if (len == 0) {
            if (off + 16 <= n) put_u32le(d + off + 4, crc32c_update(&g_crc, 0, d + off + 8, 8));
            return;
        }
        if (len > n - off - 8) return;
        put_u32le(d + off + 4, crc32c_update(&g_crc, 0, d + off + 8, len));
        off += 8 + (size_t)len;
    }
}

static int on_record(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
    const char *type, *id;
    size_t tl, il;
    uint64_t *n = arg;
    int kg = sp_record_key_group(key, klen, val, vlen, 4096);
    if (kg < -2 || kg >= 4096) abort();
    if (sp_key_address(key, klen, &type, &tl, &id, &il) == 0) {
        if (tl == 0 || il == 0 || memchr(type, '\0', tl) || memchr(id, '\0', il)) abort();
        if (sp_key_group_of(type, tl, id, il, 7) >= 7) abort();
    }
    (*n)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sp_manifest m;
    struct sp_file info;
    char err[1500];
    uint8_t flags, *copy;
    size_t mlen, dlen, pos;
    uint64_t n = 0;

    if (size < 9) return 0;
    flags = data[0];
    mlen = get_u32le(data + 1);
    if (mlen > size - 5) return 0;
    pos = 5 + mlen;
    if (size - pos < 4) return 0;
    dlen = get_u32le(data + pos);
    pos += 4;
    if (dlen > size - pos) return 0;
    copy = malloc(dlen ? dlen : 1);
    if (!copy) abort();
    memcpy(copy, data + pos, dlen);
    if (flags & 1) fix_checksums(copy, dlen);
    put_file(SP_MANIFEST, data + 5, mlen);
    put_file("kg-0000-4095.smsp", copy, dlen);
    put_file(SP_NODE_FILE, data + pos + dlen, size - pos - dlen);

    err[0] = '\0';
    if (sp_verify(g_dir, &m, NULL, NULL, err, sizeof err) == 0) {
        if (m.nfiles == 0) abort();
        sp_manifest_free(&m);
    } else if (!err[0] || !memchr(err, '\0', sizeof err)) {
        abort();
    }

    memset(&info, 0, sizeof info);
    snprintf(info.name, sizeof info.name, "kg-0000-4095.smsp");
    info.kg_first = 0;
    info.kg_last = 4095;
    info.bytes = dlen;
    info.records = dlen >= 8 ? (uint64_t)get_u32le(copy + dlen - 8) |
                                   (uint64_t)get_u32le(copy + dlen - 4) << 32 : 0;
    err[0] = '\0';
    if (sp_read_file(g_dir, &info, on_record, &n, err, sizeof err) == 0) {
        if (n != info.records) abort();
    } else if (!err[0]) {
        abort();
    }
    free(copy);
    return 0;
}
