/*
 * config — statemeshd's configuration file (libconfig syntax).
 *
 *   runtime = {
 *     data_dir = "./data";              # relative paths: to the config file's directory
 *     ingress = "127.0.0.1:7070";       # host:port or unix:/path
 *     metrics = "127.0.0.1:9464";       # Prometheus /metrics and HTTP probes (metrics.h);
 *                                       # IPv4:port, [IPv6]:port or localhost:port; unset = off
 *     admin = "127.0.0.1:7072";         # optional: the Admin service on its own
 *                                       # listener (then not on the ingress)
 *     auth = { tokens = (               # optional: bearer tokens (auth.h); none = open
 *       { file = "admin.token"; role = "admin"; },   # client | metrics | admin
 *       { file = "client.token"; role = "client"; } ); };
 *     log_level = "info";               # debug | info | warn | error
 *     max_message_bytes = 4194304;      # largest accepted message/state value
 *     checkpoint = { interval_ms = 0; sync = true; };
 *     max_queued_bytes = 16777216;      # memory of queued messages; above it Send/Call
 *                                       # get RESOURCE_EXHAUSTED, SendStream pauses
 *                                       # (1 MiB .. 64 GiB)
 *     idempotency_retention_hours = 24; # how long idempotency keys are kept, 1..8760
 *     max_streams_per_connection = 1000; # concurrent HTTP/2 streams per ingress
 *                                       # connection, 1..1000000
 *     max_calls = 10000;                # ingress calls + streams open at once, all
 *                                       # connections, 1..1000000; beyond it new
 *                                       # calls get RESOURCE_EXHAUSTED
 *     state_cache_bytes = 8388608;      # state values kept in memory (LRU), 0..64 GiB;
 *                                       # values written but not yet committed are
 *                                       # always kept, whatever the budget
 *     tracing = {                       # optional: W3C trace context and OTLP spans
 *       otlp = "127.0.0.1:4317";        # the collector (OTLP/gRPC), host:port
 *       sample_ratio = 0.1;             # share of new traces recorded, 0..1 (default 1)
 *       tls = { ca = "ca.crt"; };       # optional, as an endpoint's tls (docs/tracing.md)
 *     };
 *     tls = {                           # TLS on the ingress (docs/security.md)
 *       cert = "server.crt"; key = "server.key";  # required; the key must match
 *       ca = "ca.crt";                  # CA of client certificates
 *       require_client_cert = true;     # mTLS: refuse clients without one (needs ca)
 *     };                                # files re-read on SIGHUP (tls.h)
 *     storage = {                       # LevelDB's options
 *       block_cache_bytes = 8388608;    # uncompressed blocks kept in memory, 1 MiB..64 GiB
 *       write_buffer_bytes = 4194304;   # memtable size, 1 MiB..1 GiB
 *       compression = true;             # snappy
 *       max_open_files = 1000;          # table files kept open (and mapped), 20..100000
 *     };
 *   };
 *   endpoints = (
 *     { functions = "example/*";        # "ns/*" or an exact "ns/name"
 *       mode = "sidecar";               # sidecar | remote | embedded
 *       target = "unix:/tmp/greeter.sock";  # sidecar: unix:/path, unix-abstract:name
 *                                       # or host:port; remote: dns:///host:port,
 *                                       # dns:host:port, ipv4:a:p,b:p, ipv6:[a]:p,
 *                                       # host:port; not for embedded
 *       library = "lib/libgreeter.so";  # embedded only, required (relative: to the
 *                                       # config file; must exist; see embedded.h)
 *       streams = 1;                    # Invoke streams per endpoint, 1..64
 *                                       # (default 1; remote: 4; not for embedded)
 *       max_batch = 1000;               # messages per batch, 1..100000
 *       max_in_flight = 1000;           # batches outstanding per endpoint, 1..1000000
 *       invocation_timeout_ms = 30000;  # a batch unanswered this long failed, 100..3600000
 *       keepalive_ms = 10000;           # remote/sidecar HTTP/2 ping interval, 0 = off,
 *                                       # else 1000..3600000; not for embedded
 *       tls = { ca = "ca.crt";           # TCP targets only: TLS to the function server,
 *               cert = "client.crt";     # verified against ca; cert + key (optional)
 *               key = "client.key"; };   # present a client certificate (mTLS);
 *                                       # re-read on SIGHUP for new connections
 *       retry = {
 *         initial_backoff_ms = 100;     # 1..3600000
 *         multiplier = 2.0;             # 1.0..10.0
 *         max_backoff_ms = 10000;       # >= initial_backoff_ms, <= 3600000
 *         max_attempts = 13;            # attempts of a failing message, 0 = forever,
 *                                       # ..1000000 (13: ~63 s with the default backoff)
 *         on_exhausted = "dead_letter"; # then: "dead_letter" (move it to dead letters,
 *                                       # go on) or "pause" (keep it at the head; the
 *                                       # address waits for statemesh skip/resume)
 *       };
 *     }
 *   );
 *   egresses = (
 *     { name = "receipts";              # [A-Za-z0-9_.-]+, 1..128 bytes, unique
 *       retention_records = 1000000;    # keep at most this many, 0 = unlimited
 *                                       # (default 0, up to 2^62)
 *       retention_hours = 168;          # drop records older than this, 0 = unlimited
 *                                       # (default 168, up to 87600)
 *     }
 *   );
 *
 *   cluster = {                         # optional: without it the node runs alone
 *     name = "c1";                      # [A-Za-z0-9_.-], 1..64: the etcd prefix
 *                                       # /statemesh/<name>/ (docs/cluster.md)
 *     node_id = "n-${ORDINAL}";         # [A-Za-z0-9_.-], 1..64, unique in the cluster;
 *                                       # kept in the store: another id on the same
 *                                       # data dir is refused
 *     advertise = "10.0.0.5:7070";      # host:port at which the others and clients
 *                                       # reach this node's ingress (default: ingress,
 *                                       # when it is host:port)
 *     etcd = ["http://127.0.0.1:2379"]; # 1..16 endpoints, http://host:port or host:port
 *     lease_ttl_ms = 5000;              # node lease, 1000..600000, whole seconds
 *     initial_nodes = 3;                # required, 1..100: live nodes the controller
 *                                       # waits for before the first range assignment
 *   };
 *
 * Every string value may use ${VAR} or ${VAR:-default}, expanded from the
 * environment; an unset VAR without default is an error.
 *
 * Contract: cfg_load() either fills *out completely (every default applied,
 * every value range-checked) and returns 0, or returns -1 and writes every
 * error found, one per line, as "FILE:LINE: SETTING: message" into `err`
 * (LINE and SETTING left out where there is none).
 * Unknown settings, wrong types, out-of-range numbers, a missing file, a
 * syntax error, two endpoints with the same pattern: all errors.
 * Nothing is partially applied: on error *out holds nothing to clean up.
 *
 *  - Size: the file and every file it @includes are read before parsing and
 *    together may hold at most CFG_MAX_FILE_BYTES (1 MiB), a string literal
 *    at most 64 KiB (CFGSRC_MAX_LITERAL): "FILE: config file is N bytes,
 *    over the limit of M", "FILE:LINE: string literal is N bytes, over the
 *    limit of M". (libconfig 1.5 is quadratic in a token's length: a 10 MiB
 *    string would stall start-up for half a minute.)
 *  - @include "NAME" resolves against the main file's directory, nested
 *    includes too (libconfig 1.5); one that cannot be read names the
 *    directive: "FILE:LINE: @include "NAME": PATH: cannot read: <strerror>",
 *    "...: PATH: is a directory, not a file". Absolute paths are refused
 *    when the main file's path has a directory, and so is nesting deeper
 *    than 10.
 *  - A syntax error stops the load and is reported alone, where the mistake
 *    is rather than where libconfig stopped, as
 *    "FILE:LINE: syntax error near 'TOKEN': HINT", followed by two lines:
 *    the offending line and a caret under the spot, each indented by four
 *    spaces. A missing ',' between list elements is reported at the end of
 *    the line that lacks it ("missing ',' at the end of line 7?"); an
 *    unclosed '{' '(' '[' or '"' where it opens. (A missing ';' between
 *    settings is not an error: libconfig makes the terminator optional.)
 *  - Empty is valid: a file with no settings (empty, or only comments) means
 *    every default; no `endpoints` (missing, () or []) means no function
 *    type is served. statemeshd then starts, logs a warning
 *    (event=runtime.no_endpoints) and answers every message NOT_FOUND, while
 *    the admin side (state, dead letters, stats, egress subscriptions of an
 *    existing data dir) works: refusing would take that away and protect
 *    nothing. --check-config says "ok (0 endpoints, ...)".
 */
#ifndef SM_CONFIG_H
#define SM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "auth.h"
#include "log.h"
#include "tls.h"

enum cfg_mode { CFG_MODE_SIDECAR = 0, CFG_MODE_REMOTE = 1, CFG_MODE_EMBEDDED = 2 };

struct cfg_retry {
    int initial_backoff_ms;   /* default 100 */
    double multiplier;        /* default 2.0 */
    int max_backoff_ms;       /* default 10000 */
    int max_attempts;         /* default CFG_DEFAULT_MAX_ATTEMPTS; 0 = retry forever */
    bool pause_on_exhausted;  /* on_exhausted = "pause" (default "dead_letter") */
};

/* 100 ms doubling to 10 s: the 13th attempt comes ~63 s after the first. */
#define CFG_DEFAULT_MAX_ATTEMPTS 13

struct cfg_endpoint {
    char *functions;          /* pattern, validated by addr_check_pattern() */
    char *target;             /* sidecar/remote: gRPC target; NULL for embedded */
    char *library;            /* embedded: path of the .so (resolved); else NULL */
    enum cfg_mode mode;
    int streams;              /* default 1 (remote: 4) */
    int max_batch;            /* default 1000 */
    int max_in_flight;        /* default 1000 */
    int invocation_timeout_ms;/* default 30000 */
    int keepalive_ms;         /* default 10000, 0 = off */
    struct cfg_retry retry;
    struct cfg_tls tls;       /* client side; on only for TCP targets */
    int line;                 /* where it was declared, for messages */
};

struct cfg_egress {
    char *name;
    long long retention_records;  /* 0 = unlimited (default 0) */
    int retention_hours;          /* 0 = unlimited (default 168) */
    int line;
};

/* The memory defaults keep the runtime near 64 MB of anonymous memory at
 * any number of addresses (measured with make bench at 10M addresses; see
 * docs/performance.md). */
#define CFG_DEFAULT_QUEUED_BYTES (16u * 1024 * 1024)
#define CFG_DEFAULT_STATE_CACHE (8u * 1024 * 1024)
#define CFG_DEFAULT_STATE_FILTER (8u * 1024 * 1024)
#define CFG_STATE_FILTER_MAX (4LL * 1024 * 1024 * 1024)
#define CFG_DEFAULT_BLOCK_CACHE (8u * 1024 * 1024)
#define CFG_DEFAULT_WRITE_BUFFER (4u * 1024 * 1024)
#define CFG_DEFAULT_MAX_OPEN_FILES 1000
/* The most a configuration may be, all its @included files together. */
#define CFG_MAX_FILE_BYTES (1024u * 1024)

/* The `cluster` group (docs/cluster.md); enabled = false without it. */
struct cfg_cluster {
    bool enabled;
    char *name;
    char *node_id;
    char *advertise;          /* default: runtime.ingress (host:port) */
    char *etcd;               /* the endpoints, comma-separated */
    struct cfg_tls etcd_tls;  /* cluster.etcd_tls: https:// endpoints (off = plaintext) */
    int lease_ttl_ms;         /* default 5000, a multiple of 1000 */
    int initial_nodes;        /* required */
    int line;
};
#define CFG_CLUSTER_NAME_MAX 64

/* runtime.tracing (trace.h, docs/tracing.md); on = false without it. */
struct cfg_tracing {
    bool on;
    char *otlp;               /* the OTLP/gRPC collector, host:port (required) */
    double sample_ratio;      /* new traces recorded, 0..1; default 1 */
    struct cfg_tls tls;       /* optional: TLS to the collector (ca; cert + key) */
};

struct cfg {
    char *path;               /* the file as given */
    char *data_dir;           /* absolute or relative to cwd after resolution */
    char *ingress;            /* default "127.0.0.1:7070" */
    char *metrics;            /* HTTP /metrics, /healthz, /readyz: "host:port"; NULL = off */
    char *admin;              /* runtime.admin: the Admin service's own listener;
                               * NULL (default) = served on the ingress */
    /* runtime.auth.tokens (auth.h): NULL/0 = no auth group, the runtime is
     * open. Each file was read and checked at load. */
    struct auth_source *auth_tokens;
    size_t n_auth_tokens;
    /* runtime.auth.certificates: client-certificate identities with a role
     * (auth.h); NULL/0 = none. Needs runtime.tls.ca (checked at load). */
    struct auth_cert *auth_certs;
    size_t n_auth_certs;
    enum log_level log_level; /* default info */
    size_t max_message_bytes; /* default 4 MiB, 1 KiB..64 MiB */
    int checkpoint_interval_ms; /* default 0 = every loop iteration, 0..60000 */
    bool checkpoint_sync;     /* default true */
    size_t max_queued_bytes;  /* default CFG_DEFAULT_QUEUED_BYTES, 1 MiB..64 GiB */
    size_t state_cache_bytes; /* default CFG_DEFAULT_STATE_CACHE, 0..64 GiB */
    size_t state_filter_bytes; /* default CFG_DEFAULT_STATE_FILTER, 0 (off)..4 GiB */
    int idempotency_retention_hours; /* default 24 */
    int max_streams_per_connection; /* default 1000, 1..1000000 (HTTP/2 streams) */
    long max_calls;           /* default 10000, 1..1000000 (ingress calls + streams) */
    /* runtime.storage: LevelDB's options (see store.h) */
    size_t storage_block_cache_bytes;  /* default CFG_DEFAULT_BLOCK_CACHE, 1 MiB..64 GiB */
    size_t storage_write_buffer_bytes; /* default CFG_DEFAULT_WRITE_BUFFER, 1 MiB..1 GiB */
    bool storage_compression;          /* default true (snappy) */
    int storage_max_open_files;        /* default CFG_DEFAULT_MAX_OPEN_FILES, 20..100000 */
    struct cfg_tls tls;                /* runtime.tls: the ingress (off by default) */
    struct cfg_endpoint *endpoints;
    size_t n_endpoints;
    struct cfg_egress *egresses;
    size_t n_egresses;
    struct cfg_cluster cluster;
    struct cfg_tracing tracing;
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
/* The egress named `name`: its index, or -1. */
int cfg_find_egress(const struct cfg *cfg, const char *name);

#endif
