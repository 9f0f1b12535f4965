/*
 * fuzz_config — libFuzzer harness for the config loader (runtime/config.c).
 *
 * The input is written as a config file into a private temporary directory
 * and loaded with cfg_load(), exactly as `statemeshd -c FILE` and
 * `--check-config` do: libconfig's parser, @include (relative to the file's
 * directory; the directory also holds inc.conf and lib/libfz.so for inputs to
 * find), ${VAR} / ${VAR:-default} expansion from the environment (FZ_HOST,
 * FZ_PORT, FZ_EMPTY, FZ_LONG are set, FZ_UNSET is not), every setting's type
 * and range checks, and target/library validation. A successful load is
 * queried with cfg_match_endpoint/cfg_find_egress and released with
 * cfg_cleanup(); a failed one must leave a NUL-terminated, non-empty message.
 *
 * Inputs holding "/dev/" or "/proc/" are skipped: an @include of /dev/zero
 * is libconfig reading an endless file, not a decoder bug (the config is the
 * operator's own file).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "fz_tmp.h"

static char g_dir[256];
static char g_path[300];

static void put_file(const char *name, const char *text)
{
    char p[400];
    FILE *f;
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    f = fopen(p, "w");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
}

static void setup(void)
{
    char lib[400], longval[301];

    snprintf(g_dir, sizeof g_dir, "%s/statemesh-fuzz-config-XXXXXX", fz_tmpdir());
    if (!mkdtemp(g_dir)) abort();
    snprintf(g_path, sizeof g_path, "%s/fz.conf", g_dir);
    snprintf(lib, sizeof lib, "%s/lib", g_dir);
    if (mkdir(lib, 0700) != 0) abort();
    put_file("lib/libfz.so", "not really a module\n");
    put_file("inc.conf", "endpoints = ( { functions = \"inc/*\"; target = \"unix:i.sock\"; } );\n");
    memset(longval, 'a', 300);
    longval[300] = '\0';
    setenv("FZ_HOST", "127.0.0.1", 1);
    setenv("FZ_PORT", "7070", 1);
    setenv("FZ_EMPTY", "", 1);
    setenv("FZ_LONG", longval, 1);
    unsetenv("FZ_UNSET");
}

static void cleanup_dir(void)
{
    char p[400];
    snprintf(p, sizeof p, "%s/lib/libfz.so", g_dir); unlink(p);
    snprintf(p, sizeof p, "%s/lib", g_dir); rmdir(p);
    snprintf(p, sizeof p, "%s/inc.conf", g_dir); unlink(p);
    unlink(g_path);
    rmdir(g_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    setup();
    atexit(cleanup_dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cfg c;
    char err[4096];
    FILE *f;

    if (size > 65536 || memmem(data, size, "/dev/", 5) || memmem(data, size, "/proc/", 6)) return 0;
    f = fopen(g_path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);

    memset(err, 'x', sizeof err);
    if (cfg_load(g_path, &c, err, sizeof err) == 0) {
        (void)cfg_match_endpoint(&c, "example/user");
        (void)cfg_match_endpoint(&c, "inc/a");
        (void)cfg_find_egress(&c, "receipts");
        for (size_t i = 0; i < c.n_endpoints; i++)
            if (!c.endpoints[i].functions || (c.endpoints[i].mode == CFG_MODE_EMBEDDED) !=
                                                 (c.endpoints[i].library != NULL))
                abort();
        if (!c.data_dir || !c.ingress) abort();
        cfg_cleanup(&c);
    } else {
        if (!memchr(err, '\0', sizeof err) || err[0] == '\0') abort();
    }
    return 0;
}
