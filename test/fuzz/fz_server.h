/*
 * fz_server — the server struct of the fuzz harnesses that need one
 * (fuzz_storage.c, fuzz_answer.c), assembled and torn down the way
 * runtime/main.c does, without gRPC, the ingress or the event loop.
 *
 * fz_setup() writes a config into a private temporary directory (one
 * sidecar endpoint "fz/*", egress "out", retry.max_attempts = 1 so a failed
 * batch is dead-lettered at once), loads it with cfg_load and opens a real
 * store there; fz_server_up()/fz_server_down() then build and release a
 * fresh server around that config and store for each input. Harness-local
 * statics: this header is included by exactly one .c file per harness.
 */
#ifndef SM_FUZZ_FZ_SERVER_H
#define SM_FUZZ_FZ_SERVER_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fz_tmp.h"
#include "server.h"

static struct {
    char dir[256];
    struct cfg cfg;
    struct store *store;
    FILE *devnull;
} fz;

static void fz_teardown(void)
{
    char cmd[400];
    store_close(&fz.store);
    cfg_cleanup(&fz.cfg);
    if (fz.devnull) fclose(fz.devnull);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz.dir);
    if (fz.dir[0] && system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", fz.dir);
}

static void fz_setup(const char *name)
{
    char path[400], err[4096];
    FILE *f;

    snprintf(fz.dir, sizeof fz.dir, "%s/statemesh-fuzz-%s-XXXXXX", fz_tmpdir(), name);
    if (!mkdtemp(fz.dir)) abort();
    snprintf(path, sizeof path, "%s/fz.conf", fz.dir);
    if (!(f = fopen(path, "w"))) abort();
    fputs("runtime = { data_dir = \"data\"; log_level = \"debug\"; state_filter_bytes = 0;\n"
          "            checkpoint = { sync = false; }; };\n"
          "endpoints = ( { functions = \"fz/*\"; target = \"unix:fz.sock\";\n"
          "                max_batch = 4; max_in_flight = 4; retry = { max_attempts = 1; }; } );\n"
          "egresses = ( { name = \"out\"; retention_records = 2; retention_hours = 1; } );\n",
          f);
    fclose(f);
    if (cfg_load(path, &fz.cfg, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz: %s\n", err);
        abort();
    }
    snprintf(path, sizeof path, "%s/store", fz.cfg.data_dir);
    if (mkdir(fz.cfg.data_dir, 0700) != 0 || mkdir(path, 0700) != 0) abort();
    if (store_open(&fz.store, path, NULL, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz: %s\n", err);
        abort();
    }
    if (!(fz.devnull = fopen("/dev/null", "w"))) abort();
    atexit(fz_teardown);
}

/* As main() assembles it, around the shared config (borrowed, never
 * cfg_cleanup'd here) and store. Logs at debug level into /dev/null, so
 * every log line's formatting runs on the fuzzed strings. */
static void fz_server_up(struct server *s)
{
    memset(s, 0, sizeof *s);
    s->lock_fd = -1;
    s->cfg = fz.cfg;
    s->log.level = LOG_LEVEL_DEBUG;
    s->log.out = fz.devnull;
    s->store = fz.store;
    ckpt_init(&s->ckpt);
    scache_init(&s->scache, s->cfg.state_cache_bytes);
    mbox_table_init(&s->mboxes);
    s->next_seq = 1;
    s->n_endpoints = s->cfg.n_endpoints;
    s->endpoints = calloc(s->n_endpoints + 1, sizeof *s->endpoints);
    if (!s->endpoints) abort();
    for (size_t i = 0; i < s->n_endpoints; i++)
        if (ep_init(&s->endpoints[i], s, &s->cfg.endpoints[i], (int)i) != 0) abort();
}

/* main()'s clean-up, less what was never started (ingress, gRPC, loop). */
static void fz_server_down(struct server *s)
{
    for (size_t i = 0; i < s->n_endpoints; i++) ep_cleanup(&s->endpoints[i]);
    free(s->endpoints);
    delayed_cleanup(s);
    scache_cleanup(&s->scache);
    disp_cleanup(s);
    idem_cleanup(s);
    store_cursor_free(&s->ttl_cursor);
    store_cursor_free(&s->idem_cursor);
    egress_close(s);
    timer_heap_cleanup(&s->timers);
    if (s->mboxes.buckets) mbox_table_cleanup(&s->mboxes);
    if (s->ckpt.batch) ckpt_cleanup(&s->ckpt);
}

#endif
