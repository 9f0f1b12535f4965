/*
 * cli — the `statemesh` command-line client (build/statemesh).
 *
 *   statemesh [--address A] send TYPE ID VALUE [--type T] [--delay MS] [--idempotency-key K]
 *   statemesh [--address A] send --stdin [--type T] [--quiet]
 *   statemesh [--address A] call TYPE ID VALUE [--type T] [--idempotency-key K] [--json]
 *   statemesh [--address A] state get TYPE ID [NAME] [--json]
 *   statemesh [--address A] stats [--json]
 *   statemesh [--address A] egress tail NAME [--from N | --earliest | --latest] [--follow] [--json]
 *   statemesh [--address A] deadletters list [--type T] [--after ID] [--limit N] [--json]
 *   statemesh [--address A] deadletters replay (ID... | --all) [--type T] [--json]
 *   statemesh [--address A] deadletters drop (ID... | --all) [--type T] [--json]
 *
 * Options may appear anywhere after the program name; "--" ends them, and
 * arguments such as "-5" are values, not options. The address defaults to
 * $STATEMESH_ADDRESS, then 127.0.0.1:7070.
 *
 * VALUE is encoded by --type (default string), see usage() below. Output:
 *   call        the reply decoded by its typename: string/json as text,
 *               int64/float64/bool as numbers/true/false, bytes as hex, any
 *               other typename as "TYPENAME HEX".
 *   state get   one line per value: "name typename value" (strings quoted
 *               as JSON strings, bytes and user types as hex), then
 *               "# queued_messages=N in_flight=true|false".
 *   stats       "name value" lines.
 *   egress tail one line per record: "OFFSET TIME TYPE ID VALUE" (TIME in
 *               UTC, ISO 8601 with milliseconds; ID JSON-quoted if it is
 *               empty or holds a space, quote or control character; VALUE
 *               as in state get, JSON on one line).
 *   deadletters list
 *               one line per dead letter, by id: "ID TIME TYPE ID ATTEMPTS
 *               VALUE ERROR" (TIME when it was stored, TYPE ID its target,
 *               both as in egress tail; VALUE the message as in egress tail;
 *               ERROR the last failure as a JSON string), then
 *               "# total=N" (dead letters stored, of every type). --type T
 *               keeps function type T only; --after ID starts after that id
 *               (page on with the last id printed); --limit N (1..10000,
 *               default 100).
 *   deadletters replay|drop
 *               "replayed N" / "dropped N" once durable; ids the runtime
 *               did not find (already replayed or dropped, another --type,
 *               for replay a type no endpoint serves) are noted on stderr.
 *   --json      one JSON document per answer (per record for egress tail,
 *               per dead letter for deadletters list, then {"total":N}).
 *
 * --type is the value encoding for send and call, the function type filter
 * (NS/NAME) for deadletters.
 *
 * send --stdin: one message per input line, sent over one SendStream
 * (batched, acknowledged after commit). Each line is a JSON object:
 *
 *   {"type": "ns/fn", "id": "x", "value": V, "typename": T, "key": K, "delay_ms": N}
 *
 *   type, id   required strings (the target address)
 *   value      required; how it is encoded depends on the typename:
 *                json (default)  any JSON value, sent as its JSON text
 *                string          a JSON string, sent as its text
 *                int64 / float64 a JSON number (int64: an integer)
 *                bool            true or false
 *                bytes or NS/NAME  a JSON string of hex digits
 *   typename   optional: string, int64, float64, bool, json, bytes, their
 *              statemesh/... names, or a user typename NS/NAME; default
 *              --type if given, else json
 *   key        optional idempotency key (1..256 bytes)
 *   delay_ms   optional delivery delay, an integer 0..31536000000
 * Other members are errors. Blank lines are skipped. A malformed line is
 * reported on stderr as "statemesh: stdin:LINE: why" and skipped (the
 * others are still sent); so is a message the runtime rejects. Progress
 * goes to stderr (a live line on a terminal, else a line every 5 s; none
 * with --quiet), then a summary line.
 *
 * Exit status: 0 ok; 1 the runtime answered with an error or could not be
 * reached ("statemesh: call example/user alice: NOT_FOUND: ..."), or
 * send --stdin had malformed or rejected lines; 2 usage.
 *
 * Uses only the public SDK (statemesh/client.h, statemesh/json.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "statemesh/client.h"
#include "statemesh/json.h"

#define DEFAULT_TIMEOUT_MS 10000
#define STDIN_FINISH_TIMEOUT_MS 60000
#define EXIT_RPC 1
#define EXIT_USAGE 2
#define MAX_LINE ((size_t)64 << 20)
#define MAX_REPORTED 100 /* per kind of line error; then only counted */

struct args {
    const char *address;
    const char *type;      /* --type */
    int timeout_ms;
    bool timeout_set;
    bool json, use_stdin, quiet, follow, earliest, latest, all;
    bool has_delay, has_from, has_after, has_limit;
    uint64_t delay_ms;     /* --delay */
    uint64_t from;         /* --from */
    uint64_t after;        /* --after */
    uint64_t limit;        /* --limit */
    const char *key;       /* --idempotency-key */
    const char **pos;      /* the positional arguments (argc entries) */
    int npos;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: statemesh [--address HOST:PORT] COMMAND ...\n"
            "\n"
            "commands:\n"
            "  send TYPE ID VALUE [--type T] [--delay MS] [--idempotency-key K]\n"
            "                                    durable fire-and-forget message to TYPE/ID\n"
            "  send --stdin [--type T] [--quiet] one message per JSON line on stdin:\n"
            "        {\"type\":\"ns/fn\",\"id\":\"x\",\"value\":V[,\"typename\":T][,\"key\":K][,\"delay_ms\":N]}\n"
            "  call TYPE ID VALUE [--type T] [--idempotency-key K]\n"
            "                                    send and wait for the reply\n"
            "  state get TYPE ID [NAME]          committed state of an address\n"
            "  stats                             runtime counters\n"
            "  egress tail NAME [--from N | --earliest | --latest] [--follow]\n"
            "                                    records of an egress, one per line\n"
            "  deadletters list [--type T] [--after ID] [--limit N]\n"
            "                                    messages whose batch exhausted its retries:\n"
            "                                    ID TIME TYPE ID ATTEMPTS VALUE ERROR\n"
            "  deadletters replay (ID... | --all) [--type T]\n"
            "                                    put them back into their targets' inboxes\n"
            "  deadletters drop (ID... | --all) [--type T]\n"
            "                                    delete them\n"
            "\n"
            "options:\n"
            "  --address HOST:PORT  ingress of statemeshd (also unix:/path); default\n"
            "                       $STATEMESH_ADDRESS or 127.0.0.1:7070\n"
            "  --type T             how VALUE is encoded: string (default), int64, float64,\n"
            "                       bool (true|false|1|0), json (checked), bytes (VALUE in\n"
            "                       hex), or any other typename NS/NAME (VALUE in hex);\n"
            "                       with --stdin: the default typename of lines (json);\n"
            "                       deadletters: only those of function type T (NS/NAME)\n"
            "  --delay MS           deliver the message MS milliseconds later (durably)\n"
            "  --idempotency-key K  a repeated send/call with the same key is applied once\n"
            "  --stdin              send: read JSON lines from stdin (see above)\n"
            "  --quiet              send --stdin: no progress line, only the summary\n"
            "  --from N             egress tail: start at offset N (offsets start at 1)\n"
            "  --earliest           egress tail: start at the oldest retained record (default)\n"
            "  --latest             egress tail: only records committed from now on\n"
            "  --follow             egress tail: keep waiting for new records (Ctrl-C stops)\n"
            "  --after ID           deadletters list: start after dead letter ID (paging)\n"
            "  --limit N            deadletters list: at most N (1..10000, default 100)\n"
            "  --all                deadletters replay/drop: every one (of --type T)\n"
            "  --timeout MS         RPC deadline in milliseconds (default 10000; send\n"
            "                       --stdin: for the final acknowledgements, default 60000;\n"
            "                       egress tail: none unless given)\n"
            "  --json               print JSON instead of text\n"
            "  -h, --help           this text\n"
            "\n"
            "exit status: 0 ok, 1 the runtime answered with an error or is unreachable\n"
            "(send --stdin: or some lines were malformed or rejected), 2 usage error\n"
            "\n"
            "example: statemesh call example/user alice hi\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "statemesh: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n\n");
    usage(stderr);
    return EXIT_USAGE;
}

/* ---- output helpers ---- */

static void json_put_string(FILE *f, const char *s, size_t len)
{
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch == '\n') fputs("\\n", f);
        else if (ch == '\t') fputs("\\t", f);
        else if (ch == '\r') fputs("\\r", f);
        else if (ch < 0x20 || ch == 0x7f) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

static void put_hex(FILE *f, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) fprintf(f, "%02x", p[i]);
}

/* Shortest %g form that reads back as the same double. */
static void put_double(FILE *f, double d)
{
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) break;
    }
    fputs(buf, f);
}

/* ---- values ---- */

enum vkind { VK_STRING, VK_INT64, VK_FLOAT64, VK_BOOL, VK_JSON, VK_BYTES, VK_USER };

struct vtype {
    enum vkind kind;
    const char *typename;  /* the typename sent (points at the name for user types) */
};

/* Resolves a --type / "typename" name. Returns 0, or -1 for an unknown one. */
static int resolve_type(const char *name, struct vtype *out)
{
    static const struct {
        const char *shortname, *typename;
        enum vkind kind;
    } builtin[] = {
        {"string", SM_TYPE_STRING, VK_STRING}, {"int64", SM_TYPE_INT64, VK_INT64},
        {"float64", SM_TYPE_FLOAT64, VK_FLOAT64}, {"bool", SM_TYPE_BOOL, VK_BOOL},
        {"json", SM_TYPE_JSON, VK_JSON}, {"bytes", SM_TYPE_BYTES, VK_BYTES},
    };
    for (size_t i = 0; i < sizeof builtin / sizeof *builtin; i++) {
        if (strcmp(name, builtin[i].shortname) == 0 || strcmp(name, builtin[i].typename) == 0) {
            out->kind = builtin[i].kind;
            out->typename = builtin[i].typename;
            return 0;
        }
    }
    if (strchr(name, '/') && strncmp(name, "statemesh/", 10) != 0 && name[0] != '/') {
        out->kind = VK_USER;
        out->typename = name;
        return 0;
    }
    return -1;
}

#define TYPE_NAMES "string, int64, float64, bool, json, bytes or a typename NS/NAME"

/* A growable byte buffer (caps: MAX_LINE). */
struct gbuf {
    uint8_t *p;
    size_t cap;
};

static int gbuf_reserve(struct gbuf *b, size_t n)
{
    uint8_t *np;
    if (n <= b->cap) return 0;
    if (n > MAX_LINE + 64 || !(np = realloc(b->p, n))) return -1;
    b->p = np;
    b->cap = n;
    return 0;
}

static int hexdigit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes len hex digits into out (len / 2 bytes). Returns 0 or -1. */
static int unhex(const char *text, size_t len, uint8_t *out)
{
    if (len % 2) return -1;
    for (size_t i = 0; i < len / 2; i++) {
        int hi = hexdigit(text[2 * i]), lo = hexdigit(text[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

/* Encodes command-line text as vt says; hex input is decoded into *store.
 * Returns 0, or -1 with the reason in why. */
static int encode_text(const struct vtype *vt, const char *text, sm_value *out,
                       uint8_t scalar[8], struct gbuf *store, char *why, size_t whysz)
{
    size_t len = strlen(text);
    char *end;

    switch (vt->kind) {
    case VK_STRING:
        if (!sm_utf8_valid(text, len)) return snprintf(why, whysz, "VALUE is not valid UTF-8"), -1;
        *out = sm_value_string(text);
        return 0;
    case VK_INT64: {
        long long v;
        errno = 0;
        v = strtoll(text, &end, 10);
        if (!*text || *end || errno == ERANGE)
            return snprintf(why, whysz, "VALUE '%.100s' is not a 64-bit integer", text), -1;
        *out = sm_value_int64((int64_t)v, scalar);
        return 0;
    }
    case VK_FLOAT64: {
        double v = strtod(text, &end);
        if (!*text || *end) return snprintf(why, whysz, "VALUE '%.100s' is not a number", text), -1;
        *out = sm_value_float64(v, scalar);
        return 0;
    }
    case VK_BOOL:
        if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0) *out = sm_value_bool(true, scalar);
        else if (strcmp(text, "false") == 0 || strcmp(text, "0") == 0)
            *out = sm_value_bool(false, scalar);
        else return snprintf(why, whysz, "VALUE '%.100s' is not true, false, 1 or 0", text), -1;
        return 0;
    case VK_JSON:
        if (!sm_json_valid(text, len))
            return snprintf(why, whysz, "VALUE is not valid JSON: %.200s", text), -1;
        *out = sm_value_json(text);
        return 0;
    case VK_BYTES:
    case VK_USER:
        if (gbuf_reserve(store, len / 2 + 1)) return snprintf(why, whysz, "out of memory"), -1;
        if (unhex(text, len, store->p))
            return snprintf(why, whysz, "VALUE must be hex (an even number of digits): %.200s",
                            text), -1;
        *out = sm_value_make(vt->typename, store->p, len / 2);
        return 0;
    }
    return -1;
}

/* The command-line VALUE encoded by --type; a bad one is a usage error. */
static int encode_arg(const char *type, const char *text, sm_value *out, uint8_t scalar[8],
                      struct gbuf *store)
{
    struct vtype vt;
    char why[400];
    if (resolve_type(type ? type : "string", &vt))
        return usage_error("unknown --type '%s' (" TYPE_NAMES ")", type);
    if (encode_text(&vt, text, out, scalar, store, why, sizeof why)) return usage_error("%s", why);
    return 0;
}

/* Text form of a value. `quote_strings` for line-oriented output. */
static void print_value(FILE *f, const sm_value *v, int quote_strings, int with_typename)
{
    int64_t i;
    double d;
    bool b;
    const char *s;
    size_t n;

    if (!v->typename || !*v->typename) {
        fputs(quote_strings ? "(none)" : "", f); /* a Call answered without a value */
    } else if (sm_value_as_int64(v, &i) == SM_OK) {
        fprintf(f, "%" PRId64, i);
    } else if (sm_value_as_float64(v, &d) == SM_OK) {
        put_double(f, d);
    } else if (sm_value_as_bool(v, &b) == SM_OK) {
        fputs(b ? "true" : "false", f);
    } else if (sm_value_as_string(v, &s, &n) == SM_OK) {
        if (quote_strings) json_put_string(f, s, n);
        else fwrite(s, 1, n, f);
    } else if (sm_value_as_json(v, &s, &n) == SM_OK) {
        fwrite(s, 1, n, f);
    } else {
        if (with_typename && !sm_value_is(v, SM_TYPE_BYTES)) fprintf(f, "%s ", v->typename);
        put_hex(f, v->data, v->len);
    }
}

/* JSON members "typename" and "value" (or "hex") of a value. */
static void print_value_json(FILE *f, const sm_value *v)
{
    int64_t i;
    double d;
    bool b;
    const char *s;
    size_t n;

    fputs("\"typename\":", f);
    if (!v->typename) {
        fputs("null,\"value\":null", f);
        return;
    }
    json_put_string(f, v->typename, strlen(v->typename));
    if (sm_value_as_int64(v, &i) == SM_OK) {
        fprintf(f, ",\"value\":%" PRId64, i);
    } else if (sm_value_as_float64(v, &d) == SM_OK) {
        fputs(",\"value\":", f);
        if (isfinite(d)) put_double(f, d);
        else fprintf(f, "\"%s\"", isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity");
    } else if (sm_value_as_bool(v, &b) == SM_OK) {
        fprintf(f, ",\"value\":%s", b ? "true" : "false");
    } else if (sm_value_as_string(v, &s, &n) == SM_OK) {
        fputs(",\"value\":", f);
        json_put_string(f, s, n);
    } else if (sm_value_as_json(v, &s, &n) == SM_OK && sm_json_valid(s, n)) {
        fputs(",\"value\":", f);
        fwrite(s, 1, n, f);
    } else {
        fputs(",\"hex\":\"", f);
        put_hex(f, v->data, v->len);
        fputc('"', f);
    }
}

/* ---- commands ---- */

static int rpc_error(const char *what, const sm_error *err, const char *address)
{
    fprintf(stderr, "statemesh: %s: %s: %s\n", what, sm_status_code_name(err->code), err->message);
    if (err->code == 14) /* UNAVAILABLE */
        fprintf(stderr, "statemesh: is statemeshd running and serving its ingress at %s?\n",
                address);
    return EXIT_RPC;
}

static int cmd_send_or_call(sm_client *c, const struct args *a, int call)
{
    const char *type = a->pos[1], *id = a->pos[2];
    char what[2200];
    uint8_t scalar[8];
    struct gbuf store = {NULL, 0};
    sm_value v;
    sm_error err;
    int rc;

    if (a->npos != 4)
        return usage_error("%s needs TYPE ID VALUE", call ? "call" : "send");
    if ((rc = encode_arg(a->type, a->pos[3], &v, scalar, &store))) return rc;
    snprintf(what, sizeof what, "%s %.1024s %.1024s", call ? "call" : "send", type, id);
    if (!call) {
        sm_send_options o = {a->key, a->delay_ms};
        rc = sm_client_send_opts(c, type, id, &v, &o, a->timeout_ms, &err)
                 ? rpc_error(what, &err, a->address)
                 : 0;
    } else {
        sm_call_options o = {a->key};
        sm_value_buf reply = SM_VALUE_BUF_INIT;
        if (sm_client_call_opts(c, type, id, &v, &o, a->timeout_ms, &reply, &err) != SM_OK) {
            rc = rpc_error(what, &err, a->address);
        } else {
            if (a->json) {
                fputc('{', stdout);
                print_value_json(stdout, &reply.value);
                fputs("}\n", stdout);
            } else {
                print_value(stdout, &reply.value, 0, 1);
                fputc('\n', stdout);
            }
            rc = 0;
        }
        sm_value_buf_cleanup(&reply);
    }
    free(store.p);
    return rc;
}

static int cmd_state(sm_client *c, const struct args *a)
{
    sm_state_list l;
    sm_error err;
    char what[2200];

    if (a->npos < 2 || strcmp(a->pos[1], "get") != 0)
        return usage_error("state needs a subcommand: state get TYPE ID [NAME]");
    if (a->npos != 4 && a->npos != 5) return usage_error("state get needs TYPE ID [NAME]");
    snprintf(what, sizeof what, "state get %.1024s %.1024s", a->pos[2], a->pos[3]);
    if (sm_client_get_state(c, a->pos[2], a->pos[3], a->npos == 5 ? a->pos[4] : NULL,
                            a->timeout_ms, &l, &err) != SM_OK)
        return rpc_error(what, &err, a->address);
    if (a->json) {
        fputs("{\"address\":{\"type\":", stdout);
        json_put_string(stdout, a->pos[2], strlen(a->pos[2]));
        fputs(",\"id\":", stdout);
        json_put_string(stdout, a->pos[3], strlen(a->pos[3]));
        fputs("},\"values\":[", stdout);
        for (size_t i = 0; i < l.n; i++) {
            fputs(i ? ",{\"name\":" : "{\"name\":", stdout);
            json_put_string(stdout, l.items[i].name, strlen(l.items[i].name));
            fputc(',', stdout);
            print_value_json(stdout, &l.items[i].value);
            fputc('}', stdout);
        }
        printf("],\"queued_messages\":%" PRIu64 ",\"in_flight\":%s}\n", l.queued_messages,
               l.in_flight ? "true" : "false");
    } else {
        for (size_t i = 0; i < l.n; i++) {
            const sm_value *v = &l.items[i].value;
            printf("%s %s ", l.items[i].name, v->typename ? v->typename : "-");
            print_value(stdout, v, 1, 0);
            fputc('\n', stdout);
        }
        printf("# queued_messages=%" PRIu64 " in_flight=%s\n", l.queued_messages,
               l.in_flight ? "true" : "false");
    }
    sm_state_list_cleanup(&l);
    return 0;
}

static int cmd_stats(sm_client *c, const struct args *a)
{
    sm_stats s;
    sm_error err;

    if (a->npos != 1) return usage_error("stats takes no arguments");
    if (sm_client_stats(c, a->timeout_ms, &s, &err) != SM_OK)
        return rpc_error("stats", &err, a->address);
    if (a->json) fputc('{', stdout);
    for (size_t i = 0; i < s.n; i++) {
        if (a->json) {
            if (i) fputc(',', stdout);
            json_put_string(stdout, s.items[i].name, strlen(s.items[i].name));
            printf(":%" PRId64, s.items[i].value);
        } else {
            printf("%s %" PRId64 "\n", s.items[i].name, s.items[i].value);
        }
    }
    if (a->json) fputs("}\n", stdout);
    sm_stats_cleanup(&s);
    return 0;
}

/* ---- send --stdin ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Lines of fd 0, read in large chunks; `idle` runs before a read would block. */
struct reader {
    char *buf;
    size_t cap, start, end;
    bool eof;
};

struct feeder; /* the send --stdin state, below */
static void feeder_idle(struct feeder *fd);

/* The next line (without "\n" or "\r\n") in *line/*len. Returns 1, 0 at the
 * end of input, -1 on a read error (errno), -2 for a line longer than
 * MAX_LINE (skipped). */
static int read_line(struct reader *r, struct feeder *fd, char **line, size_t *len)
{
    bool too_long = false;
    for (;;) {
        char *nl = r->end > r->start ? memchr(r->buf + r->start, '\n', r->end - r->start) : NULL;
        if (nl || (r->eof && r->end > r->start)) {
            size_t n = nl ? (size_t)(nl - (r->buf + r->start)) : r->end - r->start;
            *line = r->buf + r->start;
            r->start += n + (nl ? 1 : 0);
            if (n && (*line)[n - 1] == '\r') n--;
            *len = n;
            if (too_long) return -2;
            return 1;
        }
        if (r->eof) return too_long ? -2 : 0;
        if (r->start > 0) { /* keep the partial line at the front */
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        }
        if (r->end - r->start >= MAX_LINE) { /* drop what we have of the long line */
            too_long = true;
            r->start = r->end = 0;
        }
        if (r->cap - r->end < 65536) {
            size_t cap = r->cap ? r->cap * 2 : 1 << 20;
            char *nb;
            if (cap > MAX_LINE + 65536) cap = MAX_LINE + 65536;
            if (cap <= r->cap || !(nb = realloc(r->buf, cap))) {
                errno = ENOMEM;
                return -1;
            }
            r->buf = nb;
            r->cap = cap;
        }
        {
            struct pollfd p = {0, POLLIN, 0};
            if (poll(&p, 1, 0) == 0) feeder_idle(fd); /* input would block: flush, acks */
        }
        for (;;) {
            ssize_t got = read(0, r->buf + r->end, r->cap - r->end);
            if (got > 0) {
                r->end += (size_t)got;
                break;
            }
            if (got == 0) {
                r->eof = true;
                break;
            }
            if (errno != EINTR) return -1;
        }
    }
}

struct feeder {
    sm_send_stream *st;
    const struct args *a;
    struct vtype dflt;              /* typename of lines without one */
    uint64_t *line_of;              /* line number of seq, at seq % window */
    size_t window;
    unsigned long lineno;
    unsigned long malformed, reported_malformed, reported_rejected;
    struct gbuf scratch;
    uint8_t scalar[8];
    bool tty, progress_shown;
    double t0, last_progress;
};

static void show_progress(struct feeder *fd, bool force)
{
    sm_send_stream_progress p;
    double t = now_s(), el;
    if (fd->a->quiet) return;
    if (!force && t - fd->last_progress < (fd->tty ? 0.25 : 5.0)) return;
    fd->last_progress = t;
    el = t - fd->t0;
    sm_send_stream_get_progress(fd->st, &p);
    fprintf(stderr, "%sstatemesh: sent %" PRIu64 ", acknowledged %" PRIu64 ", rejected %" PRIu64
                    ", %.0f msg/s%s",
            fd->tty ? "\r" : "", p.pushed, p.committed_through, p.rejected,
            el > 0 ? (double)p.pushed / el : 0.0, fd->tty ? "   " : "\n");
    fd->progress_shown = true;
}

/* Input is idle: send the partial batch, then wait for input while
 * handling acks and showing progress. */
static void feeder_idle(struct feeder *fd)
{
    sm_error err;
    struct pollfd p = {0, POLLIN, 0};
    if (sm_send_stream_flush(fd->st, &err) != SM_OK) return; /* reported by the next push */
    while (poll(&p, 1, 0) == 0) {
        if (sm_send_stream_poll(fd->st, 100, &err) != SM_OK) return;
        show_progress(fd, false);
    }
}

static void line_error(struct feeder *fd, unsigned long lineno, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void line_error(struct feeder *fd, unsigned long lineno, const char *fmt, ...)
{
    va_list ap;
    fd->malformed++;
    if (++fd->reported_malformed > MAX_REPORTED) {
        if (fd->reported_malformed == MAX_REPORTED + 1)
            fprintf(stderr, "\nstatemesh: stdin: more malformed lines; only counting them now\n");
        return;
    }
    fprintf(stderr, "%sstatemesh: stdin:%lu: ", fd->tty && fd->progress_shown ? "\n" : "", lineno);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void on_rejected(void *udata, uint64_t seq, int code, const char *message)
{
    struct feeder *fd = udata;
    if (++fd->reported_rejected > MAX_REPORTED) {
        if (fd->reported_rejected == MAX_REPORTED + 1)
            fprintf(stderr, "\nstatemesh: stdin: more rejected messages; only counting them now\n");
        return;
    }
    fprintf(stderr, "%sstatemesh: stdin:%" PRIu64 ": rejected: %s: %s\n",
            fd->tty && fd->progress_shown ? "\n" : "", fd->line_of[seq % fd->window],
            sm_status_code_name(code), message);
}

/* Unescapes JSON string v into the scratch buffer at *off. */
static const char *scratch_string(struct feeder *fd, const sm_json *v, size_t *off, size_t *len)
{
    char *out = (char *)fd->scratch.p + *off;
    size_t n;
    if (sm_json_string(v, out, fd->scratch.cap - *off, &n) != SM_OK) return NULL;
    *off += n + 1;
    if (len) *len = n;
    return out;
}

/* Parses and pushes one line. */
static int feed_line(struct feeder *fd, const char *line, size_t len, sm_error *err)
{
    static const char *const names[] = {"type", "id", "value", "typename", "key", "delay_ms"};
    sm_json doc, k, v, got[6];
    sm_json_iter it;
    bool have[6] = {false};
    const char *type, *id, *key = NULL;
    size_t off = 0;
    struct vtype vt = fd->dflt;
    sm_send_options o = {NULL, 0};
    sm_value val;
    uint64_t seq;
    int rc;

    if (sm_json_parse(line, len, &doc) != SM_OK) {
        line_error(fd, fd->lineno, "not valid JSON (or not UTF-8): %.*s%s", (int)(len > 80 ? 80 : len),
                   line, len > 80 ? "..." : "");
        return 0;
    }
    if (doc.kind != SM_JSON_OBJECT) {
        line_error(fd, fd->lineno, "a line must be a JSON object {\"type\":...,\"id\":...,\"value\":...}");
        return 0;
    }
    if (gbuf_reserve(&fd->scratch, len + 64)) {
        line_error(fd, fd->lineno, "out of memory");
        return 0;
    }
    if (sm_json_iter_init(&it, &doc) != SM_OK) return 0;
    while (sm_json_iter_next(&it, &k, &v) == SM_OK) {
        size_t i;
        for (i = 0; i < 6 && !sm_json_string_eq(&k, names[i]); i++) {
        }
        if (i == 6) {
            line_error(fd, fd->lineno,
                       "unknown member %.*s (allowed: type, id, value, typename, key, delay_ms)",
                       (int)(k.len > 64 ? 64 : k.len), k.p);
            return 0;
        }
        if (have[i]) {
            line_error(fd, fd->lineno, "member \"%s\" appears twice", names[i]);
            return 0;
        }
        have[i] = true;
        got[i] = v;
    }
    for (int i = 0; i < 3; i++)
        if (!have[i]) {
            line_error(fd, fd->lineno, "missing \"%s\"", names[i]);
            return 0;
        }
    for (int i = 0; i < 5; i++)
        if (i != 2 && have[i] && got[i].kind != SM_JSON_STRING) {
            line_error(fd, fd->lineno, "\"%s\" must be a string", names[i]);
            return 0;
        }
    if (!(type = scratch_string(fd, &got[0], &off, NULL)) ||
        !(id = scratch_string(fd, &got[1], &off, NULL)) ||
        (have[4] && !(key = scratch_string(fd, &got[4], &off, NULL)))) {
        line_error(fd, fd->lineno, "a string holds an invalid escape (lone surrogate or \\u0000)");
        return 0;
    }
    if (have[3]) {
        const char *tn = scratch_string(fd, &got[3], &off, NULL);
        if (!tn || resolve_type(tn, &vt)) {
            line_error(fd, fd->lineno, "unknown typename %.*s (" TYPE_NAMES ")",
                       (int)(got[3].len > 80 ? 80 : got[3].len), got[3].p);
            return 0;
        }
    }
    if (have[5]) {
        int64_t d;
        if (sm_json_int64(&got[5], &d) != SM_OK || d < 0 || (uint64_t)d > SM_MAX_DELAY_MS) {
            line_error(fd, fd->lineno, "\"delay_ms\" must be an integer 0..%" PRIu64,
                       (uint64_t)SM_MAX_DELAY_MS);
            return 0;
        }
        o.delay_ms = (uint64_t)d;
    }
    if (key && !*key) {
        line_error(fd, fd->lineno, "\"key\" is empty (leave it out for no idempotency key)");
        return 0;
    }
    o.idempotency_key = key;

    v = got[2];
    switch (vt.kind) {
    case VK_JSON: val = sm_value_make(vt.typename, v.p, v.len); break;
    case VK_STRING: {
        size_t n;
        const char *s = v.kind == SM_JSON_STRING ? scratch_string(fd, &v, &off, &n) : NULL;
        if (!s) {
            line_error(fd, fd->lineno, "\"value\" must be a JSON string for typename %s", vt.typename);
            return 0;
        }
        val = sm_value_string_n(s, n);
        break;
    }
    case VK_INT64: {
        int64_t x;
        if (sm_json_int64(&v, &x) != SM_OK) {
            line_error(fd, fd->lineno, "\"value\" must be a 64-bit integer for typename %s", vt.typename);
            return 0;
        }
        val = sm_value_int64(x, fd->scalar);
        break;
    }
    case VK_FLOAT64: {
        double x;
        if (sm_json_double(&v, &x) != SM_OK) {
            line_error(fd, fd->lineno, "\"value\" must be a number for typename %s", vt.typename);
            return 0;
        }
        val = sm_value_float64(x, fd->scalar);
        break;
    }
    case VK_BOOL: {
        bool x;
        if (sm_json_bool(&v, &x) != SM_OK) {
            line_error(fd, fd->lineno, "\"value\" must be true or false for typename %s", vt.typename);
            return 0;
        }
        val = sm_value_bool(x, fd->scalar);
        break;
    }
    case VK_BYTES:
    case VK_USER: {
        size_t n;
        const char *hex = v.kind == SM_JSON_STRING ? scratch_string(fd, &v, &off, &n) : NULL;
        uint8_t *bytes = fd->scratch.p + off;
        if (!hex || off + n / 2 > fd->scratch.cap || unhex(hex, n, bytes)) {
            line_error(fd, fd->lineno, "\"value\" must be a string of hex digits for typename %s",
                       vt.typename);
            return 0;
        }
        val = sm_value_make(vt.typename, bytes, n / 2);
        break;
    }
    }

    rc = sm_send_stream_push(fd->st, type, id, &val, &o, &seq, err);
    if (rc == SM_EINVAL) {
        line_error(fd, fd->lineno, "%s", err->message);
        return 0;
    }
    if (rc != SM_OK) return rc;
    fd->line_of[seq % fd->window] = fd->lineno;
    return 0;
}

static int cmd_send_stdin(sm_client *c, const struct args *a)
{
    struct feeder fd;
    struct reader r = {NULL, 0, 0, 0, false};
    sm_send_stream_options so;
    sm_send_stream_progress p;
    sm_error err;
    char *line;
    size_t len;
    double el;
    int rc = 0, st_rc = SM_OK, lr;

    if (a->npos != 1) return usage_error("send --stdin takes no TYPE ID VALUE (they come from the lines)");
    memset(&fd, 0, sizeof fd);
    fd.a = a;
    if (resolve_type(a->type ? a->type : "json", &fd.dflt))
        return usage_error("unknown --type '%s' (" TYPE_NAMES ")", a->type);
    memset(&so, 0, sizeof so);
    so.window = fd.window = 65536;
    so.on_error = on_rejected;
    so.udata = &fd;
    if (!(fd.line_of = calloc(fd.window, sizeof *fd.line_of))) {
        fprintf(stderr, "statemesh: out of memory\n");
        return EXIT_RPC;
    }
    if (sm_send_stream_open(c, &so, &fd.st, &err) != SM_OK) {
        free(fd.line_of);
        return rpc_error("send --stdin", &err, a->address);
    }
    fd.tty = isatty(2);
    fd.t0 = fd.last_progress = now_s();

    while ((lr = read_line(&r, &fd, &line, &len)) != 0) {
        fd.lineno++;
        if (lr == -1) {
            fprintf(stderr, "statemesh: reading stdin: %s\n", strerror(errno));
            rc = EXIT_RPC;
            break;
        }
        if (lr == -2) {
            line_error(&fd, fd.lineno, "line longer than %zu bytes", MAX_LINE);
            continue;
        }
        while (len && (line[len - 1] == ' ' || line[len - 1] == '\t')) len--;
        {
            size_t i = 0;
            while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
            if (i == len) continue; /* blank */
        }
        if ((st_rc = feed_line(&fd, line, len, &err)) != SM_OK) break;
        if ((fd.lineno & 1023) == 0) show_progress(&fd, false);
    }
    if (st_rc == SM_OK && rc == 0)
        st_rc = sm_send_stream_finish(fd.st, a->timeout_set ? a->timeout_ms : STDIN_FINISH_TIMEOUT_MS,
                                      &err);
    sm_send_stream_get_progress(fd.st, &p);
    if (fd.progress_shown && fd.tty) fputc('\n', stderr);
    if (st_rc != SM_OK) rc = rpc_error("send --stdin", &err, a->address);
    el = now_s() - fd.t0;
    fprintf(stderr,
            "statemesh: %" PRIu64 " messages in %.2f s (%.0f msg/s): %" PRIu64 " committed, %" PRIu64
            " rejected, %" PRIu64 " unacknowledged, %lu malformed lines skipped\n",
            p.pushed, el, el > 0 ? (double)p.pushed / el : 0.0, p.committed_through - p.rejected,
            p.rejected, p.pushed - p.committed_through, fd.malformed);
    if (p.rejected || fd.malformed || p.committed_through < p.pushed) rc = EXIT_RPC;
    sm_send_stream_destroy(&fd.st);
    free(fd.line_of);
    free(fd.scratch.p);
    free(r.buf);
    return rc;
}

/* ---- egress tail ---- */

static void put_time(FILE *f, int64_t ms)
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    struct tm tm;
    char buf[32];
    if (!gmtime_r(&secs, &tm) || !strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm)) {
        fprintf(f, "@%" PRId64, ms);
        return;
    }
    fprintf(f, "%s.%03dZ", buf, (int)(ms - (int64_t)secs * 1000));
}

/* JSON text on one line: newlines can only be whitespace between tokens. */
static void put_json_oneline(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) fputc(s[i] == '\n' || s[i] == '\r' ? ' ' : s[i], f);
}

static void put_id(FILE *f, const char *id)
{
    size_t n = strlen(id);
    bool quote = n == 0;
    for (size_t i = 0; i < n && !quote; i++) {
        unsigned char ch = (unsigned char)id[i];
        quote = ch <= ' ' || ch == '"' || ch == 0x7f;
    }
    if (quote) json_put_string(f, id, n);
    else fputs(id, f);
}

/* A value on one line of text output: JSON as its text on one line, the
 * rest as print_value (strings quoted, user types "TYPENAME HEX"). */
static void print_value_line(FILE *f, const sm_value *v)
{
    const char *s;
    size_t n;
    if (sm_value_as_json(v, &s, &n) == SM_OK) put_json_oneline(f, s, n);
    else print_value(f, v, 1, 1);
}

/* The "typename" and "value" members of a value in one-line JSON output. */
static void print_value_json_line(FILE *f, const sm_value *v)
{
    const char *s;
    size_t n;
    if (sm_value_as_json(v, &s, &n) == SM_OK && sm_json_valid(s, n)) {
        fputs("\"typename\":\"" SM_TYPE_JSON "\",\"value\":", f);
        put_json_oneline(f, s, n);
    } else {
        print_value_json(f, v);
    }
}

static int print_record(const sm_egress_record *rec, bool json)
{
    if (json) {
        printf("{\"offset\":%" PRIu64 ",\"timestamp_ms\":%" PRId64 ",\"time\":\"", rec->offset,
               rec->timestamp_ms);
        put_time(stdout, rec->timestamp_ms);
        fputs("\",\"source\":{\"type\":", stdout);
        json_put_string(stdout, rec->source_type, strlen(rec->source_type));
        fputs(",\"id\":", stdout);
        json_put_string(stdout, rec->source_id, strlen(rec->source_id));
        fputs("},", stdout);
        print_value_json_line(stdout, &rec->value);
        fputs("}\n", stdout);
    } else {
        printf("%" PRIu64 " ", rec->offset);
        put_time(stdout, rec->timestamp_ms);
        printf(" %s ", *rec->source_type ? rec->source_type : "-");
        put_id(stdout, rec->source_id);
        fputc(' ', stdout);
        print_value_line(stdout, &rec->value);
        fputc('\n', stdout);
    }
    return fflush(stdout) == 0 ? 0 : -1;
}

static int cmd_egress(sm_client *c, const struct args *a)
{
    sm_subscribe_options o;
    sm_subscription *sub;
    sm_egress_record rec;
    sm_error err;
    char what[200];
    int rc;

    if (a->npos < 2 || strcmp(a->pos[1], "tail") != 0)
        return usage_error("egress needs a subcommand: egress tail NAME");
    if (a->npos != 3) return usage_error("egress tail needs NAME");
    memset(&o, 0, sizeof o);
    o.egress = a->pos[2];
    o.start = a->has_from ? SM_EGRESS_FROM_OFFSET : a->latest ? SM_EGRESS_LATEST : SM_EGRESS_EARLIEST;
    o.from_offset = a->from;
    o.follow = a->follow;
    o.timeout_ms = a->timeout_set ? a->timeout_ms : 0;
    snprintf(what, sizeof what, "egress tail %.128s", o.egress);
    if (sm_subscription_open(c, &o, &sub, &err) != SM_OK) {
        if (err.code == 3 /* INVALID_ARGUMENT, found locally */) return usage_error("%s", err.message);
        return rpc_error(what, &err, a->address);
    }
    while ((rc = sm_subscription_next(sub, -1, &rec, &err)) == SM_OK) {
        if (print_record(&rec, a->json)) {
            rc = SM_ESYS; /* stdout closed (e.g. | head): stop quietly */
            break;
        }
    }
    sm_subscription_close(&sub);
    if (rc == SM_ABSENT || rc == SM_ESYS) return 0;
    return rpc_error(what, &err, a->address);
}

static int parse_u64(const char *name, const char *val, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;
    errno = 0;
    if (!*val || *val == '-' || *val == '+') return -1;
    v = strtoull(val, &end, 10);
    if (*end || errno == ERANGE || v > max) return -1;
    *out = v;
    (void)name;
    return 0;
}

/* ---- deadletters ---- */

static void print_deadletter(const sm_deadletter *d, bool json)
{
    if (json) {
        printf("{\"id\":%" PRIu64 ",\"failed_at_ms\":%" PRId64 ",\"time\":\"", d->id,
               d->failed_at_ms);
        put_time(stdout, d->failed_at_ms);
        fputs("\",\"target\":{\"type\":", stdout);
        json_put_string(stdout, d->target_type, strlen(d->target_type));
        fputs(",\"id\":", stdout);
        json_put_string(stdout, d->target_id, strlen(d->target_id));
        fputs("},\"caller\":", stdout);
        if (d->caller_type) {
            fputs("{\"type\":", stdout);
            json_put_string(stdout, d->caller_type, strlen(d->caller_type));
            fputs(",\"id\":", stdout);
            json_put_string(stdout, d->caller_id, strlen(d->caller_id));
            fputc('}', stdout);
        } else {
            fputs("null", stdout);
        }
        printf(",\"attempts\":%" PRIu32 ",\"error\":", d->attempts);
        json_put_string(stdout, d->error, strlen(d->error));
        fputc(',', stdout);
        print_value_json_line(stdout, &d->argument);
        fputs("}\n", stdout);
    } else {
        printf("%" PRIu64 " ", d->id);
        put_time(stdout, d->failed_at_ms);
        printf(" %s ", *d->target_type ? d->target_type : "-");
        put_id(stdout, d->target_id);
        printf(" %" PRIu32 " ", d->attempts);
        print_value_line(stdout, &d->argument);
        fputc(' ', stdout);
        json_put_string(stdout, d->error, strlen(d->error));
        fputc('\n', stdout);
    }
}

static int cmd_deadletters_list(sm_client *c, const struct args *a)
{
    sm_deadletters l;
    sm_error err;
    int rc;

    if (a->npos != 2)
        return usage_error("deadletters list takes no arguments (--type T, --after ID, --limit N)");
    if (a->all) return usage_error("--all only applies to deadletters replay and drop");
    rc = sm_client_list_deadletters(c, a->type, a->after, (uint32_t)a->limit, a->timeout_ms, &l, &err);
    if (rc == SM_EINVAL) return usage_error("%s", err.message); /* found locally: --type */
    if (rc != SM_OK) return rpc_error("deadletters list", &err, a->address);
    for (size_t i = 0; i < l.n; i++) print_deadletter(&l.items[i], a->json);
    if (a->json) printf("{\"total\":%" PRIu64 "}\n", l.total);
    else printf("# total=%" PRIu64 "\n", l.total);
    sm_deadletters_cleanup(&l);
    return 0;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

static int cmd_deadletters_act(sm_client *c, const struct args *a, bool replay)
{
    const char *sub = replay ? "replay" : "drop", *done = replay ? "replayed" : "dropped";
    size_t n = (size_t)a->npos - 2, distinct = 0;
    uint64_t *ids = NULL, count = 0;
    sm_error err;
    char what[64];
    int rc;

    if (a->has_after || a->has_limit)
        return usage_error("--after and --limit only apply to deadletters list");
    if (!n && !a->all)
        return usage_error("deadletters %s needs dead letter IDs (see deadletters list) or --all", sub);
    if (n && a->all) return usage_error("deadletters %s: give IDs or --all, not both", sub);
    if (n && !(ids = calloc(n, sizeof *ids))) {
        fprintf(stderr, "statemesh: out of memory\n");
        return EXIT_RPC;
    }
    for (size_t i = 0; i < n; i++) {
        if (parse_u64("ID", a->pos[i + 2], UINT64_MAX, &ids[i])) {
            free(ids);
            return usage_error("'%s' is not a dead letter id (a number that deadletters list "
                               "prints first)", a->pos[i + 2]);
        }
    }
    snprintf(what, sizeof what, "deadletters %s", sub);
    if (replay) rc = sm_client_replay_deadletters(c, ids, n, a->all, a->type, a->timeout_ms, &count, &err);
    else rc = sm_client_drop_deadletters(c, ids, n, a->all, a->type, a->timeout_ms, &count, &err);
    if (rc == SM_EINVAL) {
        free(ids);
        return usage_error("%s", err.message); /* found locally: --type */
    }
    if (rc != SM_OK) {
        free(ids);
        return rpc_error(what, &err, a->address);
    }
    if (a->json) printf("{\"%s\":%" PRIu64 "}\n", done, count);
    else printf("%s %" PRIu64 "\n", done, count);
    if (n) { /* say why fewer than named: the runtime skips what it cannot find */
        qsort(ids, n, sizeof *ids, cmp_u64);
        for (size_t i = 0; i < n; i++) distinct += i == 0 || ids[i] != ids[i - 1];
        if (count < distinct)
            fprintf(stderr, "statemesh: %" PRIu64 " of the %zu ids named %s not %s: no such dead "
                    "letter (already replayed or dropped)%s%s\n", (uint64_t)distinct - count,
                    distinct, distinct - count == 1 ? "was" : "were", done,
                    a->type ? ", not of --type" : "",
                    replay ? ", or no endpoint serves its type" : "");
    }
    free(ids);
    return 0;
}

static int cmd_deadletters(sm_client *c, const struct args *a)
{
    const char *sub = a->npos >= 2 ? a->pos[1] : "";
    if (a->type && !*a->type) return usage_error("--type wants a function type NS/NAME, got ''");
    if (strcmp(sub, "list") == 0) return cmd_deadletters_list(c, a);
    if (strcmp(sub, "replay") == 0) return cmd_deadletters_act(c, a, true);
    if (strcmp(sub, "drop") == 0) return cmd_deadletters_act(c, a, false);
    return usage_error("deadletters needs a subcommand: list, replay or drop");
}

/* Parses argv into *a. Returns -1 to go on, else an exit status. */
static int parse_args(int argc, char **argv, struct args *a)
{
    static const struct {
        const char *name;
        size_t off;
    } flags[] = {
        {"--json", offsetof(struct args, json)},         {"--stdin", offsetof(struct args, use_stdin)},
        {"--quiet", offsetof(struct args, quiet)},       {"--follow", offsetof(struct args, follow)},
        {"--earliest", offsetof(struct args, earliest)}, {"--latest", offsetof(struct args, latest)},
        {"--all", offsetof(struct args, all)},
    };
    static const char *const valued[] = {"--address", "--type", "--timeout", "--delay",
                                         "--idempotency-key", "--from", "--after", "--limit"};
    const char *env = getenv("STATEMESH_ADDRESS");
    int options = 1;

    a->address = env && *env ? env : SM_DEFAULT_INGRESS;
    a->timeout_ms = DEFAULT_TIMEOUT_MS;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = NULL, *eq;
        char name[32];
        size_t k;
        bool known = false;

        if (!options || arg[0] != '-' || arg[1] == '\0' || (arg[1] != '-' && arg[1] != 'h')) {
            a->pos[a->npos++] = arg; /* a->pos has room for argc entries */
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options = 0;
            continue;
        }
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        for (k = 0; k < sizeof flags / sizeof *flags; k++)
            if (strcmp(arg, flags[k].name) == 0) {
                *(bool *)((char *)a + flags[k].off) = true;
                known = true;
            }
        if (known) continue;
        eq = strchr(arg, '=');
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - arg) : (int)strlen(arg), arg);
        for (k = 0; k < sizeof valued / sizeof *valued && strcmp(name, valued[k]); k++) {
        }
        if (k == sizeof valued / sizeof *valued) return usage_error("unknown option '%s'", arg);
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else return usage_error("option %s needs a value", name);
        if (strcmp(name, "--address") == 0) {
            if (!*val) return usage_error("--address is empty");
            a->address = val;
        } else if (strcmp(name, "--type") == 0) {
            a->type = val;
        } else if (strcmp(name, "--timeout") == 0) {
            uint64_t ms;
            if (parse_u64(name, val, 86400000, &ms) || ms < 1)
                return usage_error("--timeout wants 1..86400000 milliseconds, got '%s'", val);
            a->timeout_ms = (int)ms;
            a->timeout_set = true;
        } else if (strcmp(name, "--delay") == 0) {
            if (parse_u64(name, val, SM_MAX_DELAY_MS, &a->delay_ms))
                return usage_error("--delay wants 0..%" PRIu64 " milliseconds (365 days), got '%s'",
                                   (uint64_t)SM_MAX_DELAY_MS, val);
            a->has_delay = true;
        } else if (strcmp(name, "--idempotency-key") == 0) {
            size_t n = strlen(val);
            if (n < 1 || n > SM_MAX_IDEMPOTENCY_KEY_LEN || !sm_utf8_valid(val, n))
                return usage_error("--idempotency-key wants 1..%d bytes of UTF-8",
                                   SM_MAX_IDEMPOTENCY_KEY_LEN);
            a->key = val;
        } else if (strcmp(name, "--after") == 0) {
            if (parse_u64(name, val, UINT64_MAX, &a->after))
                return usage_error("--after wants a dead letter id (0 = from the first), got '%s'", val);
            a->has_after = true;
        } else if (strcmp(name, "--limit") == 0) {
            if (parse_u64(name, val, SM_DEADLETTERS_MAX_LIMIT, &a->limit) || a->limit < 1)
                return usage_error("--limit wants 1..%d dead letters, got '%s'",
                                   SM_DEADLETTERS_MAX_LIMIT, val);
            a->has_limit = true;
        } else {
            if (parse_u64(name, val, UINT64_MAX, &a->from) || a->from < 1)
                return usage_error("--from wants an offset >= 1 (offsets start at 1; --earliest "
                                   "starts at the oldest retained record), got '%s'", val);
            a->has_from = true;
        }
    }
    return -1;
}

/* Options that only some commands take. Returns 0 or a usage error. */
static int check_option_use(const struct args *a, const char *cmd)
{
    bool send = strcmp(cmd, "send") == 0, call = strcmp(cmd, "call") == 0;
    bool egress = strcmp(cmd, "egress") == 0, dl = strcmp(cmd, "deadletters") == 0;

    if (a->type && !send && !call && !dl)
        return usage_error("--type only applies to send, call and deadletters");
    if (a->use_stdin && !send) return usage_error("--stdin only applies to send");
    if (a->quiet && !a->use_stdin) return usage_error("--quiet only applies to send --stdin");
    if (a->has_delay && (!send || a->use_stdin))
        return usage_error("--delay only applies to send TYPE ID VALUE (with --stdin: \"delay_ms\" per line)");
    if (a->key && (!(send || call) || a->use_stdin))
        return usage_error("--idempotency-key only applies to send and call (with --stdin: \"key\" per line)");
    if ((a->has_from || a->earliest || a->latest || a->follow) && !egress)
        return usage_error("--from, --earliest, --latest and --follow only apply to egress tail");
    if (a->has_from + a->earliest + a->latest > 1)
        return usage_error("give at most one of --from N, --earliest and --latest");
    if (a->json && send) return usage_error("--json does not apply to send");
    if ((a->all || a->has_after || a->has_limit) && !dl)
        return usage_error("--all, --after and --limit only apply to deadletters");
    return 0;
}

int main(int argc, char **argv)
{
    static const char *const commands[] = {"send", "call", "state", "stats", "egress",
                                           "deadletters"};
    struct args a;
    sm_client *c = NULL;
    const char *cmd;
    size_t k;
    int rc;

    memset(&a, 0, sizeof a);
    if (!(a.pos = calloc((size_t)argc + 1, sizeof *a.pos))) {
        fprintf(stderr, "statemesh: out of memory\n");
        return EXIT_RPC;
    }
    if ((rc = parse_args(argc, argv, &a)) >= 0) goto out;
    if (a.npos == 0) {
        rc = usage_error("missing command");
        goto out;
    }
    cmd = a.pos[0];
    for (k = 0; k < sizeof commands / sizeof *commands && strcmp(cmd, commands[k]); k++) {
    }
    if (k == sizeof commands / sizeof *commands) {
        rc = usage_error("unknown command '%s'", cmd);
        goto out;
    }
    if ((rc = check_option_use(&a, cmd))) goto out;
    if (!(c = sm_client_create(a.address))) {
        fprintf(stderr, "statemesh: out of memory\n");
        rc = EXIT_RPC;
        goto out;
    }
    if (strcmp(cmd, "send") == 0) rc = a.use_stdin ? cmd_send_stdin(c, &a) : cmd_send_or_call(c, &a, 0);
    else if (strcmp(cmd, "call") == 0) rc = cmd_send_or_call(c, &a, 1);
    else if (strcmp(cmd, "state") == 0) rc = cmd_state(c, &a);
    else if (strcmp(cmd, "stats") == 0) rc = cmd_stats(c, &a);
    else if (strcmp(cmd, "egress") == 0) rc = cmd_egress(c, &a);
    else rc = cmd_deadletters(c, &a);
out:
    sm_client_destroy(&c);
    free(a.pos);
    return rc;
}
