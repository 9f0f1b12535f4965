/*
 * cli — the `statemesh` command-line client (build/statemesh).
 *
 *   statemesh [--address HOST:PORT] send TYPE ID VALUE [--type T] [--timeout MS]
 *   statemesh [--address HOST:PORT] call TYPE ID VALUE [--type T] [--timeout MS] [--json]
 *   statemesh [--address HOST:PORT] state get TYPE ID [NAME] [--json]
 *   statemesh [--address HOST:PORT] stats [--json]
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
 *   --json      one JSON document instead.
 *
 * Exit status: 0 ok; 1 the runtime answered with an error or could not be
 * reached ("statemesh: call example/user alice: NOT_FOUND: ..."); 2 usage.
 *
 * Uses only the public SDK (statemesh/client.h), nothing of the runtime.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "statemesh/client.h"

#define DEFAULT_TIMEOUT_MS 10000
#define EXIT_RPC 1
#define EXIT_USAGE 2

struct args {
    const char *address;
    const char *type;      /* --type */
    int timeout_ms;
    int json;
    const char *pos[8];
    int npos;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: statemesh [--address HOST:PORT] COMMAND ...\n"
            "\n"
            "commands:\n"
            "  send TYPE ID VALUE [--type T]     durable fire-and-forget message to TYPE/ID\n"
            "  call TYPE ID VALUE [--type T]     send and wait for the reply\n"
            "  state get TYPE ID [NAME]          committed state of an address\n"
            "  stats                             runtime counters\n"
            "\n"
            "options:\n"
            "  --address HOST:PORT  ingress of statemeshd (also unix:/path); default\n"
            "                       $STATEMESH_ADDRESS or 127.0.0.1:7070\n"
            "  --type T             how VALUE is encoded: string (default), int64, float64,\n"
            "                       bool (true|false|1|0), json (checked), bytes (VALUE in\n"
            "                       hex), or any other typename NS/NAME (VALUE in hex)\n"
            "  --timeout MS         RPC deadline in milliseconds (default 10000)\n"
            "  --json               print JSON instead of text\n"
            "  -h, --help           this text\n"
            "\n"
            "exit status: 0 ok, 1 the runtime answered with an error or is unreachable,\n"
            "2 usage error\n"
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

/* ---- JSON: a syntax check for --type json, and string escaping ---- */

struct jcur {
    const char *p, *end;
    int depth;
};

static void jws(struct jcur *c)
{
    while (c->p < c->end && strchr(" \t\r\n", *c->p) && *c->p) c->p++;
}

static int jlit(struct jcur *c, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0) return -1;
    c->p += n;
    return 0;
}

static int jstring(struct jcur *c)
{
    if (c->p >= c->end || *c->p++ != '"') return -1;
    while (c->p < c->end && *c->p != '"') {
        unsigned char ch = (unsigned char)*c->p++;
        if (ch < 0x20) return -1;
        if (ch == '\\') {
            if (c->p >= c->end) return -1;
            ch = (unsigned char)*c->p++;
            if (ch == 'u') {
                for (int i = 0; i < 4; i++, c->p++)
                    if (c->p >= c->end || !strchr("0123456789abcdefABCDEF", *c->p) || !*c->p)
                        return -1;
            } else if (!strchr("\"\\/bfnrt", ch) || !ch) {
                return -1;
            }
        }
    }
    if (c->p >= c->end) return -1;
    c->p++;
    return 0;
}

static int jdigits(struct jcur *c)
{
    const char *s = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') c->p++;
    return c->p > s ? 0 : -1;
}

static int jnumber(struct jcur *c)
{
    if (c->p < c->end && *c->p == '-') c->p++;
    if (c->p < c->end && *c->p == '0') c->p++;
    else if (jdigits(c)) return -1;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (jdigits(c)) return -1;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
        if (jdigits(c)) return -1;
    }
    return 0;
}

static int jvalue(struct jcur *c)
{
    int rc = 0;
    jws(c);
    if (c->p >= c->end) return -1;
    if (++c->depth > 256) return -1;
    switch (*c->p) {
    case '"': rc = jstring(c); break;
    case 't': rc = jlit(c, "true"); break;
    case 'f': rc = jlit(c, "false"); break;
    case 'n': rc = jlit(c, "null"); break;
    case '{':
    case '[': {
        char close = *c->p == '{' ? '}' : ']';
        int object = close == '}';
        c->p++;
        jws(c);
        if (c->p < c->end && *c->p == close) {
            c->p++;
            break;
        }
        for (;;) {
            if (object) {
                jws(c);
                if (jstring(c)) return -1;
                jws(c);
                if (c->p >= c->end || *c->p++ != ':') return -1;
            }
            if (jvalue(c)) return -1;
            jws(c);
            if (c->p >= c->end) return -1;
            if (*c->p == ',') {
                c->p++;
                continue;
            }
            if (*c->p++ != close) return -1;
            break;
        }
        break;
    }
    default: rc = jnumber(c); break;
    }
    c->depth--;
    return rc;
}

static int json_valid(const char *s, size_t len)
{
    struct jcur c = {s, s + len, 0};
    if (jvalue(&c)) return 0;
    jws(&c);
    return c.p == c.end;
}

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

/* Encodes `text` as --type says. *storage receives heap memory backing the
 * value (caller frees). Returns 0, or EXIT_USAGE after printing why. */
static int encode_value(const char *type, const char *text, sm_value *out, uint8_t scalar[8],
                        uint8_t **storage)
{
    size_t len = strlen(text);
    char *end;

    *storage = NULL;
    if (!type || strcmp(type, "string") == 0) {
        if (!sm_utf8_valid(text, len)) return usage_error("VALUE is not valid UTF-8");
        *out = sm_value_string(text);
    } else if (strcmp(type, "int64") == 0) {
        long long v;
        errno = 0;
        v = strtoll(text, &end, 10);
        if (!*text || *end || errno == ERANGE)
            return usage_error("VALUE '%s' is not a 64-bit integer", text);
        *out = sm_value_int64((int64_t)v, scalar);
    } else if (strcmp(type, "float64") == 0) {
        double v = strtod(text, &end);
        if (!*text || *end) return usage_error("VALUE '%s' is not a number", text);
        *out = sm_value_float64(v, scalar);
    } else if (strcmp(type, "bool") == 0) {
        if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0) *out = sm_value_bool(true, scalar);
        else if (strcmp(text, "false") == 0 || strcmp(text, "0") == 0)
            *out = sm_value_bool(false, scalar);
        else return usage_error("VALUE '%s' is not true, false, 1 or 0", text);
    } else if (strcmp(type, "json") == 0) {
        if (!sm_utf8_valid(text, len) || !json_valid(text, len))
            return usage_error("VALUE is not valid JSON: %s", text);
        *out = sm_value_json(text);
    } else if (strcmp(type, "bytes") == 0 || (strchr(type, '/') && strncmp(type, "statemesh/", 10))) {
        if (len % 2) return usage_error("VALUE must be hex (an even number of digits): %s", text);
        *storage = malloc(len / 2 + 1);
        if (!*storage) return usage_error("out of memory");
        for (size_t i = 0; i < len / 2; i++) {
            unsigned b;
            if (!strchr("0123456789abcdefABCDEF", text[2 * i]) || !text[2 * i] ||
                !strchr("0123456789abcdefABCDEF", text[2 * i + 1]) || !text[2 * i + 1] ||
                sscanf(text + 2 * i, "%2x", &b) != 1) {
                free(*storage);
                *storage = NULL;
                return usage_error("VALUE must be hex: %s", text);
            }
            (*storage)[i] = (uint8_t)b;
        }
        *out = sm_value_make(strcmp(type, "bytes") == 0 ? SM_TYPE_BYTES : type, *storage, len / 2);
    } else {
        return usage_error("unknown --type '%s' (string, int64, float64, bool, json, bytes "
                           "or a typename NS/NAME)", type);
    }
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
    } else if (sm_value_as_json(v, &s, &n) == SM_OK && json_valid(s, n)) {
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
    uint8_t scalar[8], *storage = NULL;
    sm_value v;
    sm_error err;
    int rc;

    if (a->npos != 4)
        return usage_error("%s needs TYPE ID VALUE", call ? "call" : "send");
    if ((rc = encode_value(a->type, a->pos[3], &v, scalar, &storage))) return rc;
    snprintf(what, sizeof what, "%s %.1024s %.1024s", call ? "call" : "send", type, id);
    if (!call) {
        rc = sm_client_send(c, type, id, &v, a->timeout_ms, &err) ? rpc_error(what, &err, a->address) : 0;
    } else {
        sm_value_buf reply = SM_VALUE_BUF_INIT;
        if (sm_client_call(c, type, id, &v, a->timeout_ms, &reply, &err) != SM_OK) {
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
    free(storage);
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

/* Parses argv into *a. Returns -1 to go on, else an exit status. */
static int parse_args(int argc, char **argv, struct args *a)
{
    const char *env = getenv("STATEMESH_ADDRESS");
    int options = 1;

    a->address = env && *env ? env : SM_DEFAULT_INGRESS;
    a->timeout_ms = DEFAULT_TIMEOUT_MS;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = NULL, *eq;
        char name[32];

        if (!options || arg[0] != '-' || arg[1] == '\0' || (arg[1] != '-' && arg[1] != 'h')) {
            if (a->npos == (int)(sizeof a->pos / sizeof a->pos[0]))
                return usage_error("too many arguments");
            a->pos[a->npos++] = arg;
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
        if (strcmp(arg, "--json") == 0) {
            a->json = 1;
            continue;
        }
        eq = strchr(arg, '=');
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - arg) : (int)strlen(arg), arg);
        if (strcmp(name, "--address") && strcmp(name, "--type") && strcmp(name, "--timeout"))
            return usage_error("unknown option '%s'", arg);
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else return usage_error("option %s needs a value", name);
        if (strcmp(name, "--address") == 0) {
            if (!*val) return usage_error("--address is empty");
            a->address = val;
        } else if (strcmp(name, "--type") == 0) {
            a->type = val;
        } else {
            char *end;
            long ms = strtol(val, &end, 10);
            if (!*val || *end || ms < 1 || ms > 86400000)
                return usage_error("--timeout wants 1..86400000 milliseconds, got '%s'", val);
            a->timeout_ms = (int)ms;
        }
    }
    return -1;
}

int main(int argc, char **argv)
{
    struct args a;
    sm_client *c;
    const char *cmd;
    int rc;

    memset(&a, 0, sizeof a);
    if ((rc = parse_args(argc, argv, &a)) >= 0) return rc;
    if (a.npos == 0) return usage_error("missing command");
    cmd = a.pos[0];
    if (strcmp(cmd, "send") && strcmp(cmd, "call") && strcmp(cmd, "state") && strcmp(cmd, "stats"))
        return usage_error("unknown command '%s'", cmd);
    if (a.type && strcmp(cmd, "send") && strcmp(cmd, "call"))
        return usage_error("--type only applies to send and call");
    if (!(c = sm_client_create(a.address))) {
        fprintf(stderr, "statemesh: out of memory\n");
        return EXIT_RPC;
    }
    if (strcmp(cmd, "send") == 0) rc = cmd_send_or_call(c, &a, 0);
    else if (strcmp(cmd, "call") == 0) rc = cmd_send_or_call(c, &a, 1);
    else if (strcmp(cmd, "state") == 0) rc = cmd_state(c, &a);
    else rc = cmd_stats(c, &a);
    sm_client_destroy(&c);
    return rc;
}
