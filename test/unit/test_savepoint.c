/* Unit tests of runtime/savepoint.c and crc32c.c: the check value, ranges,
 * a write/read round trip, and damage found with its offset. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "savepoint.h"

static void crc_check_value(void **state)
{
    struct crc32c *t = malloc(sizeof *t);
    (void)state;
    crc32c_init(t);
    assert_int_equal(crc32c_update(t, 0, "123456789", 9), 0xE3069283u);
    /* Continued in pieces: the same. */
    assert_int_equal(crc32c_update(t, crc32c_update(t, 0, "1234", 4), "56789", 5), 0xE3069283u);
    assert_int_equal(crc32c_update(t, 0, "", 0), 0);
    free(t);
}

static void ranges_tile_the_groups(void **state)
{
    (void)state;
    for (unsigned n = 1; n <= 4096; n = n * 3 + 1) {
        int next = 0, first, last;
        for (unsigned i = 0; i < n; i++) {
            sp_range(4096, i, n, &first, &last);
            assert_int_equal(first, next);
            assert_true(last >= first);
            next = last + 1;
        }
        assert_int_equal(next, 4096);
    }
}

static int rm_entry(const char *p, const struct stat *st, int f, struct FTW *w)
{
    (void)st;
    (void)f;
    (void)w;
    return remove(p);
}

struct seen {
    unsigned n;
    size_t bytes;
};

static int count(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
    struct seen *s = arg;
    (void)k;
    (void)v;
    s->n++;
    s->bytes += kl + vl;
    return 0;
}

static void round_trip_and_damage(void **state)
{
    char dir[] = "/tmp/sm_test_sp.XXXXXX", err[1500], path[200];
    struct sp_writer *w;
    struct sp_manifest m = {0}, r;
    struct sp_file f[2];
    struct seen s = {0, 0};
    uint8_t *big = calloc(1, 300000);
    FILE *fp;
    (void)state;

    assert_non_null(mkdtemp(dir));
    memset(f, 0, sizeof f);
    assert_int_equal(sp_writer_open(&w, dir, "kg-0000-4095.smsp", err, sizeof err), 0);
    for (int i = 0; i < 5000; i++) {
        char key[32];
        int n = snprintf(key, sizeof key, "S\x01\x02t/x%c%d%cn", 0, i, 0);
        assert_int_equal(sp_writer_add(w, key, (size_t)n, "value", 5, err, sizeof err), 0);
    }
    assert_int_equal(sp_writer_add(w, "Mbig", 4, big, 300000, err, sizeof err), 0);  /* > a block */
    assert_int_equal(sp_writer_finish(&w, &f[0], err, sizeof err), 0);
    f[0].kg_first = 0;
    f[0].kg_last = 4095;
    assert_int_equal(sp_writer_open(&w, dir, SP_NODE_FILE, err, sizeof err), 0);
    assert_int_equal(sp_writer_finish(&w, &f[1], err, sizeof err), 0);
    f[1].kg_first = f[1].kg_last = -1;
    m.format_version = SP_FORMAT_VERSION;
    strcpy(m.statemesh_version, "test");
    m.store_format = 2;
    m.key_groups = 4096;
    m.files = f;
    m.nfiles = 2;
    assert_int_equal(sp_manifest_write(dir, &m, err, sizeof err), 0);

    assert_int_equal(sp_verify(dir, &r, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(r.nfiles, 2);
    assert_int_equal(r.records, 5001);
    assert_int_equal(sp_read_file(dir, &r.files[0], count, &s, err, sizeof err), 0);
    assert_int_equal(s.n, 5001);

    /* Two cursors over the same file, independently, record by record. */
    {
        struct sp_cursor *c1, *c2;
        const uint8_t *k, *v;
        size_t kl, vl, n = 0;
        assert_int_equal(sp_cursor_open(&c1, dir, &r.files[0], err, sizeof err), 0);
        assert_int_equal(sp_cursor_open(&c2, dir, &r.files[0], err, sizeof err), 0);
        assert_int_equal(sp_cursor_next(c2, &k, &kl, &v, &vl, err, sizeof err), 1);
        assert_int_equal(kl, 10);
        assert_memory_equal(k, "S\x01\x02t/x\0" "0\0n", 10);
        assert_memory_equal(v, "value", 5);
        while (sp_cursor_next(c1, &k, &kl, &v, &vl, err, sizeof err) == 1) n++;
        assert_int_equal(n, 5001);
        assert_int_equal(kl, 4);                     /* the last: the large record */
        assert_int_equal(vl, 300000);
        assert_int_equal(sp_cursor_next(c1, &k, &kl, &v, &vl, err, sizeof err), 0);
        assert_int_equal(sp_cursor_next(c2, &k, &kl, &v, &vl, err, sizeof err), 1);
        assert_memory_equal(k, "S\x01\x02t/x\0" "1\0n", 10);
        sp_cursor_close(&c1);
        sp_cursor_close(&c2);
        assert_null(c1);
    }

    /* One flipped bit in the second block: found, with its offset. */
    snprintf(path, sizeof path, "%s/kg-0000-4095.smsp", dir);
    fp = fopen(path, "r+b");
    assert_non_null(fp);
    fseek(fp, 70000, SEEK_SET);
    int ch = fgetc(fp);
    fseek(fp, 70000, SEEK_SET);
    fputc(ch ^ 0x10, fp);
    fclose(fp);
    assert_int_equal(sp_read_file(dir, &r.files[0], NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "kg-0000-4095.smsp: offset "));
    assert_non_null(strstr(err, "block checksum mismatch"));
    {   /* a cursor hands out the first block's records, then stops at the damage */
        struct sp_cursor *c;
        const uint8_t *k, *v;
        size_t kl, vl, n = 0;
        int rc;
        assert_int_equal(sp_cursor_open(&c, dir, &r.files[0], err, sizeof err), 0);
        while ((rc = sp_cursor_next(c, &k, &kl, &v, &vl, err, sizeof err)) == 1) n++;
        assert_int_equal(rc, -1);
        assert_true(n > 0 && n < 5001);
        assert_non_null(strstr(err, "block checksum mismatch"));
        sp_cursor_close(&c);
    }
    sp_manifest_free(&r);
    assert_int_equal(sp_verify(dir, &r, NULL, NULL, err, sizeof err), -1);

    /* Truncated: the end marker is missing. */
    assert_int_equal(truncate(path, 1000), 0);
    assert_int_equal(sp_verify(dir, &r, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "offset"));
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(big);
}

/* A damaged block length is refused by what the file can hold, never
 * allocated (it used to be believed up to 512 MiB). */
static void block_length_bounded_by_the_file(void **state)
{
    char dir[] = "/tmp/sm_test_sp.XXXXXX", err[1500], path[200];
    struct sp_writer *w;
    struct sp_file f;
    uint8_t len[4] = {0xf0, 0xff, 0xff, 0x1f};       /* 0x1FFFFFF0 */
    FILE *fp;
    (void)state;

    assert_non_null(mkdtemp(dir));
    memset(&f, 0, sizeof f);
    assert_int_equal(sp_writer_open(&w, dir, "kg-0000-4095.smsp", err, sizeof err), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(sp_writer_add(w, "Sab", 3, "value", 5, err, sizeof err), 0);
    assert_int_equal(sp_writer_finish(&w, &f, err, sizeof err), 0);
    assert_int_equal(sp_read_file(dir, &f, NULL, NULL, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/kg-0000-4095.smsp", dir);
    fp = fopen(path, "r+b");
    assert_non_null(fp);
    fseek(fp, SP_MAGIC_LEN, SEEK_SET);
    fwrite(len, 1, 4, fp);
    fclose(fp);
    assert_int_equal(sp_read_file(dir, &f, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "kg-0000-4095.smsp: offset 16: block length 536870896 does not "
                                "fit in the file"));
    /* The manifest's size counts too: a file longer on disk than it says. */
    f.bytes = 40;
    assert_int_equal(sp_read_file(dir, &f, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "(40 bytes as the manifest says; damaged)"));
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void key_groups_of_records(void **state)
{
    static const uint8_t key[] = "S\0\0t/x\0ab\0count";
    (void)state;
    assert_int_equal(sp_record_key_group(key, sizeof key - 1, NULL, 0, 4096),
                     (int)sp_key_group_of("t/x", 3, "ab", 2, 4096));
    assert_int_equal(sp_record_key_group((const uint8_t *)"Eev\0\0\0\0\0\0\0\0\1", 12, NULL, 0,
                                         4096), -1);
    assert_int_equal(sp_record_key_group((const uint8_t *)"S\0\0broken", 9, NULL, 0, 4096), -2);
    /* peer.h: O under its source key group, C under its destination */
    assert_int_equal(sp_record_key_group((const uint8_t *)"O\x0f\xff\0\x05\0\0\0\0\0\0\0\1",
                                         13, NULL, 0, 4096), 4095);
    assert_int_equal(sp_record_key_group((const uint8_t *)"C\x01\x02\0\x05", 5, NULL, 0, 4096),
                     258);
    assert_int_equal(sp_record_key_group((const uint8_t *)"C\x01\x02\0", 4, NULL, 0, 4096), -2);
    assert_int_equal(sp_record_key_group((const uint8_t *)"C\x10\x00\0\x05", 5, NULL, 0, 4096),
                     -2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc_check_value),
        cmocka_unit_test(ranges_tile_the_groups),
        cmocka_unit_test(round_trip_and_damage),
        cmocka_unit_test(block_length_bounded_by_the_file),
        cmocka_unit_test(key_groups_of_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
