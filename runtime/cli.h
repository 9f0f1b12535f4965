/*
 * cli — what the `statemesh` CLI's files share. Internal to build/statemesh:
 *   cli.c            main: arguments, the help, option checks, dispatch
 *   cli_value.c      VALUE encoding, printing values (JSON members: valjson.h)
 *   cli_messaging.c  send, call, egress tail
 *   cli_stdin.c      send --stdin
 *   cli_state.c      state list, state set, state delete
 *   cli_savepoint.c  savepoint create, verify, inspect
 *   cli_bootstrap.c  bootstrap
 *   cli_jsonl.c      savepoint export --jsonl, savepoint from-jsonl
 *   cli_admin.c      state get, stats, deadletters, inspect, stuck, skip, resume
 * Commands print their answer on stdout and return an exit status (0,
 * EXIT_RPC after rpc_error, EXIT_USAGE after usage_error, EXIT_NOT_FOUND).
 * Output formats: the comment at the top of cli.c.
 */
#ifndef SM_CLI_H
#define SM_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "statemesh/client.h"
#include "valjson.h"

#define EXIT_RPC 1
#define EXIT_USAGE 2
#define EXIT_NOT_FOUND 3 /* state get: no such state */
#define MAX_LINE ((size_t)64 << 20)
#define TYPE_NAMES "string, int64, float64, bool, json, bytes or a typename NS/NAME"

struct args {
    const char *address;
    const char *admin;     /* --admin / $STATEMESH_ADMIN: admin commands go there */
    const char *token;     /* --token */
    const char *token_file; /* --token-file */
    const char *tls_ca, *tls_cert, *tls_key; /* --tls-*, $STATEMESH_TLS_*: TLS to the ingress */
    const char *type;      /* --type */
    int timeout_ms;
    bool timeout_set;
    bool help, json, use_stdin, quiet, follow, earliest, latest, all;
    bool has_delay, has_from, has_after, has_limit;
    uint64_t delay_ms;     /* --delay */
    uint64_t from;         /* --from */
    uint64_t after;        /* --after (deadletters) */
    const char *after_text; /* --after as given (state list: an id) */
    const char *prefix;    /* --prefix */
    bool has_ranges;
    uint64_t ranges;       /* --ranges (savepoint create, from-jsonl) */
    bool jsonl;            /* --jsonl (savepoint export) */
    const char *out;       /* --out FILE (savepoint export) */
    bool has_key_groups;
    uint64_t pause_timeout_ms;   /* --pause-timeout (cluster savepoint), 0: the runtime's 10 s */
    uint64_t key_groups;   /* --key-groups (savepoint from-jsonl) */
    uint64_t limit;        /* --limit */
    const char *mode;      /* --mode (bootstrap) */
    bool dry_run;          /* --dry-run (bootstrap) */
    bool has_batch;
    uint64_t batch;        /* --batch (bootstrap) */
    const char *key;       /* --idempotency-key */
    const char **pos;      /* the positional arguments (argc entries) */
    int npos;
};

/* A growable byte buffer (caps: MAX_LINE). */
struct gbuf {
    uint8_t *p;
    size_t cap;
};

/* ---- errors and numbers (cli.c) ---- */

/* Prints "statemesh: MESSAGE" and a one-line hint at `statemesh help`;
 * returns EXIT_USAGE. */
int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints an RPC failure; returns EXIT_RPC. */
int rpc_error(const char *what, const sm_error *err, const char *address);
/* Parses a decimal 0..max (no sign, no blanks) into *out. Returns 0 or -1
 * (name is unused: the caller words the usage error). */
int parse_u64(const char *name, const char *val, uint64_t max, uint64_t *out /* OUT */);

/* ---- values (cli_value.c) ---- */

/* Grows b to at least n bytes (at most MAX_LINE + 64). Returns 0 or -1. */
int gbuf_reserve(struct gbuf *b, size_t n);
/* The command-line VALUE encoded by --type `type` (NULL: string); hex goes
 * into *store (the caller frees store->p), scalars into scalar. Returns 0,
 * or a usage error's exit status. */
int encode_arg(const char *type, const char *text, sm_value *out /* OUT */, uint8_t scalar[8],
               struct gbuf *store);
/* Text form of a value: `quote_strings` for line-oriented output,
 * `with_typename` puts "TYPENAME " before the hex of user types. */
void print_value(FILE *f, const sm_value *v, int quote_strings, int with_typename);
/* A value on one line of text output (JSON on one line, else as print_value). */
void print_value_line(FILE *f, const sm_value *v);
/* A time in ms since the epoch, ISO 8601 UTC with milliseconds. */
void put_time(FILE *f, int64_t ms);
/* An id as is, JSON-quoted when it is empty or holds a space, quote or
 * control character. */
void put_id(FILE *f, const char *id);
/* {"type":...,"id":...} */
void put_address_json(FILE *f, const char *type, const char *id);

/* ---- commands ---- */

/* send TYPE ID VALUE (call = 0) and call TYPE ID VALUE (cli_messaging.c). */
int cmd_send_or_call(sm_client *c, const struct args *a, int call);
/* egress tail NAME (cli_messaging.c). */
int cmd_egress(sm_client *c, const struct args *a);
/* statemesh send --stdin (cli_stdin.c). */
int cmd_send_stdin(sm_client *c, const struct args *a);
/* state get, stats, deadletters list|replay|drop, inspect, stuck, and skip
 * (skip = true) or resume (cli_admin.c). */
int cmd_state(sm_client *c, const struct args *a);
int cmd_stats(sm_client *c, const struct args *a);
int cmd_cluster(sm_client *c, const struct args *a);
int cmd_deadletters(sm_client *c, const struct args *a);
int cmd_inspect(sm_client *c, const struct args *a);
int cmd_stuck(sm_client *c, const struct args *a);
int cmd_skip_resume(sm_client *c, const struct args *a, bool skip);

/* The line parser of send --stdin, on its own so it can be fuzzed
 * (test/fuzz/fuzz_cli_stdin.c). Set dflt (the --type) and zero the rest;
 * free scratch.p when done. */
struct stdin_parser {
    struct vtype dflt;     /* typename of lines without "typename" */
    struct gbuf scratch;   /* unescaped strings and value bytes */
};

/* One parsed line: strings and value bytes point into the parser's scratch
 * (json values: into the line), valid until the next call. */
struct stdin_msg {
    const char *type, *id;
    sm_value value;
    sm_send_options opts;
};

/* Parses one line (without its newline). Returns 0, or -1 with the reason
 * in why (always NUL-terminated). */
int stdin_parse_line(struct stdin_parser *p, const char *line, size_t len,
                     struct stdin_msg *out /* OUT */, char *why, size_t whylen);

/* ---- state list / set / delete (cli_state.c) ---- */

#define STATE_ADMIN_SUMMARY \
    "  state list TYPE [--prefix P] [--after ID] [--limit N]\n" \
    "                                    ids of TYPE that hold state, in key order\n" \
    "  state set TYPE ID NAME VALUE [--type T]\n" \
    "                                    write a state value (applied like a message)\n" \
    "  state delete TYPE ID [NAME]       delete one state value, or all of the address\n"
#define STATE_ADMIN_USAGE \
    "state list TYPE [--prefix P] [--after ID] [--limit N] [--json]\n" \
    "state set TYPE ID NAME VALUE [--type T] [--json]\n" \
    "state delete TYPE ID [NAME] [--json]\n"
#define STATE_ADMIN_NOTES \
    "list: the ids of TYPE with committed, unexpired state, one per line (JSON-\n" \
    "quoted if empty or holding a space, quote or control character), ordered by\n" \
    "key group (XXH3 of TYPE\\0ID mod 4096), then by id bytes; a full page ends\n" \
    "with \"# next: --after ID\" to continue with.\n" \
    "set: writes state NAME of TYPE/ID (VALUE encoded by --type), applied like a\n" \
    "message: after the address's current invocation, never during one; prints\n" \
    "\"set\" once durable.\n" \
    "delete: deletes state NAME of TYPE/ID, or every state value of it; prints\n" \
    "\"deleted N\" once durable.\n" \
    "See docs/state-admin.md.\n"
#define STATE_ADMIN_OPTIONS \
    "  --prefix P           list: only ids starting with P\n" \
    "  --after ID           list: start after id ID (paging)\n" \
    "  --limit N            list: at most N ids (1..10000, default 1000)\n"

/* Options of the state subcommands (called by check_option_use). Returns 0
 * or a usage error. */
int state_option_use(const struct args *a);
/* statemesh state list|set|delete ... (anything but get). */
int cmd_state_admin(sm_client *c, const struct args *a);

/* statemesh bootstrap FILE|- (cli_bootstrap.c). */
int cmd_bootstrap(sm_client *c, const struct args *a);

/* statemesh savepoint create|verify|inspect (cli_savepoint.c). */
int cmd_savepoint(sm_client *c, const struct args *a);
/* statemesh savepoint export DIR --jsonl and savepoint from-jsonl FILE DIR
 * (cli_jsonl.c): offline. */
int cmd_savepoint_export(const struct args *a);
int cmd_savepoint_from_jsonl(const struct args *a);

#endif
