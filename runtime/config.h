/*
 * config — statemeshd's configuration file (libconfig syntax).
 *
 *   runtime = {
 *     data_dir = "./data";              # relative paths: to the config file's directory
 *     ingress = "127.0.0.1:7070";       # host:port or unix:/path
 *     log_level = "info";               # debug | info | warn | error
 *     max_message_bytes = 4194304;      # largest accepted message/state value
 *     checkpoint = { interval_ms = 0; sync = true; };
 *   };
 *   endpoints = (
 *     { functions = "example/*";        # "ns/*" or an exact "ns/name"
 *       target = "unix:/tmp/greeter.sock";  # unix:/path or host:port
 *       mode = "sidecar";               # only sidecar for now
 *       max_batch = 100;                # messages per batch, 1..100000
 *       max_in_flight = 1000;           # batches outstanding per endpoint, 1..1000000
 *     }
 *   );
 *
 * Every string value may use ${VAR} or ${VAR:-default}, expanded from the
 * environment; an unset VAR without default is an error.
 *
 * Contract: cfg_load() either fills *out completely (every default applied,
 * every value range-checked) and returns 0, or returns -1 and writes every
 * error found, one per line, as "FILE:LINE: SETTING: message" into `err`.
 * Unknown settings, wrong types, out-of-range numbers, a missing file, a
 * syntax error, two endpoints with the same pattern: all errors.
 * Nothing is partially applied: on error *out holds nothing to clean up.
 */
#ifndef SM_CONFIG_H
#define SM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "log.h"

enum cfg_mode { CFG_MODE_SIDECAR = 0 };

struct cfg_endpoint {
    char *functions;          /* pattern, validated by addr_check_pattern() */
    char *target;             /* gRPC target: unix:/path, unix-abstract:x or host:port */
    enum cfg_mode mode;
    int max_batch;            /* default 100 */
    int max_in_flight;        /* default 1000 */
    int line;                 /* where it was declared, for messages */
};

struct cfg {
    char *path;               /* the file as given */
    char *data_dir;           /* absolute or relative to cwd after resolution */
    char *ingress;            /* default "127.0.0.1:7070" */
    enum log_level log_level; /* default info */
    size_t max_message_bytes; /* default 4 MiB, 1 KiB..64 MiB */
    int checkpoint_interval_ms; /* default 0 = every loop iteration, 0..60000 */
    bool checkpoint_sync;     /* default true */
    struct cfg_endpoint *endpoints;
    size_t n_endpoints;
};

/* Loads and validates `path`. On success the caller owns *out and releases it
 * with cfg_cleanup(). On failure returns -1 with messages in err (always
 * NUL-terminated, truncated to errlen). */
int cfg_load(const char *path, struct cfg *out /* OUT */, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void cfg_cleanup(struct cfg *cfg);

/* The endpoint serving `type`: an exact pattern wins over "ns/*".
 * Returns its index, or -1 when no endpoint matches. */
int cfg_match_endpoint(const struct cfg *cfg, const char *type);

#endif
