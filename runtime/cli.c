/*
 * cli — the `statemesh` command-line client (build/statemesh).
 *
 *   statemesh [--address A] send TYPE ID VALUE [--type T] [--delay MS] [--idempotency-key K]
 *   statemesh [--address A] send --stdin [--type T] [--quiet]
 *   statemesh [--address A] call TYPE ID VALUE [--type T] [--idempotency-key K] [--json]
 *   statemesh [--address A] state get TYPE ID [NAME] [--json]
 *   statemesh [--address A] state list|set|delete ...   (cli_state.c)
 *   statemesh [--address A] stats [--json]
 *   statemesh [--address A] egress tail NAME [--from N | --earliest | --latest] [--follow] [--json]
 *   statemesh [--address A] deadletters list [--type T] [--after ID] [--limit N] [--json]
 *   statemesh [--address A] deadletters replay (ID... | --all) [--type T] [--json]
 *   statemesh [--address A] deadletters drop (ID... | --all) [--type T] [--json]
 *   statemesh [--address A] inspect TYPE ID [--json]
 *   statemesh [--address A] stuck [--type T] [--limit N] [--json]
 *   statemesh [--address A] skip TYPE ID [--json]
 *   statemesh [--address A] resume TYPE ID [--json]
 *   statemesh help [COMMAND]
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
 *   inspect     "key value" lines (address, phase, queued, attempts, next
 *               retry, head, last error in full, indented).
 *   stuck       one line per address: "TYPE ID PHASE ATTEMPTS/MAX queued=N
 *               ERROR" (ERROR as a JSON string), then "# retrying=N paused=M".
 *   skip        "skipped: the head message is dead letter ID" once durable.
 *   resume      "resumed" once durable.
 *   call        on DEADLINE_EXCEEDED, also the address's last error when it
 *               is retrying or paused.
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
 * statemesh help [COMMAND] and statemesh [COMMAND] --help print the full
 * help, or the usage lines and option notes of one command (stdout, exit 0).
 * A usage error is two lines on stderr: "statemesh: WHAT IS WRONG", then
 * "run 'statemesh help COMMAND' (or 'statemesh --help') for usage".
 *
 * Exit status (also in `statemesh --help` and docs/operations.md):
 *   0  ok
 *   1  the runtime answered with an error or could not be reached
 *      ("statemesh: call example/user alice: NOT_FOUND: ..."), or send
 *      --stdin had malformed or rejected lines
 *   2  usage error (EXIT_USAGE)
 *   3  not found (EXIT_NOT_FOUND): state get of an address with no state,
 *      or of a NAME it does not have; the output is printed all the same
 *      and stderr says "statemesh: TYPE ID has no state [named 'NAME']".
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

#include "cli.h"
#include "statemesh/client.h"
#include "statemesh/json.h"
#include "statemesh/version.h"

#define DEFAULT_TIMEOUT_MS 10000

/* ---- help ---- */

#define ADDR_NOTE \
    "  --address HOST:PORT  ingress of statemeshd (also unix:/path); default\n" \
    "                       $STATEMESH_ADDRESS or 127.0.0.1:7070\n"
#define TIMEOUT_NOTE \
    "  --timeout MS         RPC deadline in milliseconds (default 10000)\n"
#define JSON_NOTE "  --json               print JSON instead of text\n"
#define TYPE_NOTE \
    "  --type T             how VALUE is encoded: string (default), int64, float64,\n" \
    "                       bool (true|false|1|0), json (checked), bytes (VALUE in\n" \
    "                       hex), or any other typename NS/NAME (VALUE in hex)\n"
#define KEY_NOTE "  --idempotency-key K  a repeated send/call with the same key is applied once\n"
#define EXIT_NOTE "exit status: 0 ok, 1 the runtime answered with an error or is unreachable,\n" \
                  "2 usage error\n"

/* One command's help: `summary` is its part of the command list of
 * `statemesh --help`, `usage` and `notes` are `statemesh help COMMAND`. */
static const struct command_help {
    const char *name, *summary, *usage, *notes;
} command_help[] = {
    {"send",
     "  send TYPE ID VALUE [--type T] [--delay MS] [--idempotency-key K]\n"
     "                                    durable fire-and-forget message to TYPE/ID\n"
     "  send --stdin [--type T] [--quiet] one message per JSON line on stdin:\n"
     "        {\"type\":\"ns/fn\",\"id\":\"x\",\"value\":V[,\"typename\":T][,\"key\":K][,\"delay_ms\":N]}\n",
     "send TYPE ID VALUE [--type T] [--delay MS] [--idempotency-key K]\n"
     "send --stdin [--type T] [--quiet]\n",
     "Sends a durable fire-and-forget message to TYPE/ID; returns once it is\n"
     "committed. With --stdin, one message per line, each a JSON object:\n"
     "  {\"type\":\"ns/fn\",\"id\":\"x\",\"value\":V[,\"typename\":T][,\"key\":K][,\"delay_ms\":N]}\n"
     "typename: string, int64, float64, bool, json (default: --type, else json),\n"
     "bytes or NS/NAME (value: a string of hex digits). A malformed or rejected\n"
     "line is reported as \"statemesh: stdin:LINE: why\"; the others are still sent.\n"
     "\n"
     "options:\n" TYPE_NOTE
     "                       (--stdin: the default typename of lines)\n"
     "  --delay MS           deliver the message MS milliseconds later (durably)\n"
     KEY_NOTE
     "  --stdin              read JSON lines from stdin (see above)\n"
     "  --quiet              --stdin: no progress line, only the summary\n"
     ADDR_NOTE
     "  --timeout MS         RPC deadline in milliseconds (default 10000; --stdin:\n"
     "                       for the final acknowledgements, default 60000)\n"
     "\n"
     "exit status: 0 ok, 1 the runtime answered with an error or is unreachable\n"
     "(--stdin: or some lines were malformed or rejected), 2 usage error\n"},
    {"call",
     "  call TYPE ID VALUE [--type T] [--idempotency-key K]\n"
     "                                    send and wait for the reply\n",
     "call TYPE ID VALUE [--type T] [--idempotency-key K] [--json]\n",
     "Sends a message to TYPE/ID and prints the reply: string/json as text,\n"
     "int64/float64/bool as numbers/true/false, bytes as hex, any other typename\n"
     "as \"TYPENAME HEX\". On DEADLINE_EXCEEDED also the address's last error when\n"
     "it is retrying or paused.\n"
     "\n"
     "options:\n" TYPE_NOTE KEY_NOTE JSON_NOTE ADDR_NOTE TIMEOUT_NOTE "\n" EXIT_NOTE},
    {"state",
     "  state get TYPE ID [NAME]          committed state of an address\n"
     STATE_ADMIN_SUMMARY,
     "state get TYPE ID [NAME] [--json]\n" STATE_ADMIN_USAGE,
     "get: prints the committed state of TYPE/ID (only NAME if given), one line\n"
     "per value: \"name typename value\" (strings JSON-quoted, bytes and user types\n"
     "as hex), then \"# queued_messages=N in_flight=true|false\".\n"
     STATE_ADMIN_NOTES
     "\n"
     "options:\n" STATE_ADMIN_OPTIONS TYPE_NOTE "                       (state set)\n"
     JSON_NOTE ADDR_NOTE TIMEOUT_NOTE
     "\n"
     "exit status: 0 ok, 1 the runtime answered with an error or is unreachable,\n"
     "2 usage error, 3 not found: state get of an address with no state (or none\n"
     "named NAME); the output is printed all the same and stderr says so\n"},
    {"stats",
     "  stats                             runtime counters\n",
     "stats [--json]\n",
     "Prints the runtime's counters, one \"name value\" line each.\n"
     "\n"
     "options:\n" JSON_NOTE ADDR_NOTE TIMEOUT_NOTE "\n" EXIT_NOTE},
    {"egress",
     "  egress tail NAME [--from N | --earliest | --latest] [--follow]\n"
     "                                    records of an egress, one per line\n",
     "egress tail NAME [--from N | --earliest | --latest] [--follow] [--json]\n",
     "Prints the records of egress NAME, one per line: \"OFFSET TIME TYPE ID VALUE\"\n"
     "(TIME in UTC with milliseconds, TYPE ID the sender, VALUE JSON on one line).\n"
     "\n"
     "options:\n"
     "  --from N             start at offset N (offsets start at 1)\n"
     "  --earliest           start at the oldest retained record (default)\n"
     "  --latest             only records committed from now on\n"
     "  --follow             keep waiting for new records (Ctrl-C stops)\n"
     JSON_NOTE ADDR_NOTE
     "  --timeout MS         deadline in milliseconds (default: none)\n"
     "\n" EXIT_NOTE},
    {"deadletters",
     "  deadletters list [--type T] [--after ID] [--limit N]\n"
     "                                    messages whose batch exhausted its retries:\n"
     "                                    ID TIME TYPE ID ATTEMPTS VALUE ERROR\n"
     "  deadletters replay (ID... | --all) [--type T]\n"
     "                                    put them back into their targets' inboxes\n"
     "  deadletters drop (ID... | --all) [--type T]\n"
     "                                    delete them\n",
     "deadletters list [--type T] [--after ID] [--limit N] [--json]\n"
     "deadletters replay (ID... | --all) [--type T] [--json]\n"
     "deadletters drop (ID... | --all) [--type T] [--json]\n",
     "list: the messages whose batch exhausted its retries, by id, one per line:\n"
     "\"ID TIME TYPE ID ATTEMPTS VALUE ERROR\", then \"# total=N\".\n"
     "replay: puts them back into their targets' inboxes (\"replayed N\");\n"
     "drop: deletes them (\"dropped N\"). Ids not found are noted on stderr.\n"
     "\n"
     "options:\n"
     "  --type T             only dead letters of function type T (NS/NAME)\n"
     "  --after ID           list: start after dead letter ID (paging)\n"
     "  --limit N            list: at most N (1..10000, default 100)\n"
     "  --all                replay/drop: every one (of --type T)\n"
     JSON_NOTE ADDR_NOTE TIMEOUT_NOTE "\n" EXIT_NOTE},
    {"inspect",
     "  inspect TYPE ID                   failure handling of an address: phase,\n"
     "                                    attempts, next retry, last error, head message\n",
     "inspect TYPE ID [--json]\n",
     "Prints the failure handling of TYPE/ID as \"key value\" lines: phase,\n"
     "queued, attempts, next retry, head message, last error (in full).\n"
     "\n"
     "options:\n" JSON_NOTE ADDR_NOTE TIMEOUT_NOTE "\n" EXIT_NOTE},
    {"stuck",
     "  stuck [--type T] [--limit N]      every address retrying or paused:\n"
     "                                    TYPE ID PHASE ATTEMPTS/MAX queued=N ERROR\n",
     "stuck [--type T] [--limit N] [--json]\n",
     "Prints every address that is retrying or paused, one per line:\n"
     "\"TYPE ID PHASE ATTEMPTS/MAX queued=N ERROR\", then \"# retrying=N paused=M\".\n"
     "\n"
     "options:\n"
     "  --type T             only addresses of function type T (NS/NAME)\n"
     "  --limit N            at most N addresses (default 1000)\n"
     JSON_NOTE ADDR_NOTE TIMEOUT_NOTE "\n" EXIT_NOTE},
    {"skip",
     "  skip TYPE ID                      move the failing head message of a retrying\n"
     "                                    or paused address to dead letters, go on\n",
     "skip TYPE ID [--json]\n",
     "Moves the failing head message of a retrying or paused address to dead\n"
     "letters and goes on with the next; prints \"skipped: the head message is\n"
     "dead letter ID\" once durable.\n"
     "\n"
     "options:\n" JSON_NOTE ADDR_NOTE TIMEOUT_NOTE "\n" EXIT_NOTE},
    {"resume",
     "  resume TYPE ID                    retry a paused address now\n",
     "resume TYPE ID [--json]\n",
     "Retries a paused address now; prints \"resumed\" once durable.\n"
     "\n"
     "options:\n" JSON_NOTE ADDR_NOTE TIMEOUT_NOTE "\n" EXIT_NOTE},
};

#define NCOMMANDS (sizeof command_help / sizeof *command_help)

static const struct command_help *find_command(const char *name)
{
    for (size_t k = 0; k < NCOMMANDS; k++)
        if (strcmp(name, command_help[k].name) == 0) return &command_help[k];
    return NULL;
}

/* `statemesh --help`: every command, every option, the exit codes. */
static void usage(FILE *f)
{
    fputs("usage: statemesh [--address HOST:PORT] COMMAND ...\n"
          "       statemesh help [COMMAND]\n"
          "\n"
          "commands:\n", f);
    for (size_t k = 0; k < NCOMMANDS; k++) fputs(command_help[k].summary, f);
    fputs("  help [COMMAND]                    this text, or the usage of one command\n"
          "\n"
          "options:\n"
          ADDR_NOTE
          "  --type T             how VALUE is encoded: string (default), int64, float64,\n"
          "                       bool (true|false|1|0), json (checked), bytes (VALUE in\n"
          "                       hex), or any other typename NS/NAME (VALUE in hex);\n"
          "                       with --stdin: the default typename of lines (json);\n"
          "                       deadletters, stuck: only those of function type T (NS/NAME)\n"
          "  --prefix P           state list: only ids starting with P\n"
          "  --delay MS           deliver the message MS milliseconds later (durably)\n"
          KEY_NOTE
          "  --stdin              send: read JSON lines from stdin (see above)\n"
          "  --quiet              send --stdin: no progress line, only the summary\n"
          "  --from N             egress tail: start at offset N (offsets start at 1)\n"
          "  --earliest           egress tail: start at the oldest retained record (default)\n"
          "  --latest             egress tail: only records committed from now on\n"
          "  --follow             egress tail: keep waiting for new records (Ctrl-C stops)\n"
          "  --after ID           deadletters list: start after dead letter ID (paging);\n"
          "                       state list: start after id ID (paging)\n"
          "  --limit N            deadletters list: at most N (1..10000, default 100);\n"
          "                       stuck: at most N addresses (default 1000);\n"
          "                       state list: at most N ids (1..10000, default 1000)\n"
          "  --all                deadletters replay/drop: every one (of --type T)\n"
          "  --timeout MS         RPC deadline in milliseconds (default 10000; send\n"
          "                       --stdin: for the final acknowledgements, default 60000;\n"
          "                       egress tail: none unless given)\n"
          JSON_NOTE
          "  -h, --help           this text; after a command: that command's usage\n"
          "  --version            print the version\n"
          "\n"
          "exit status:\n"
          "  0  ok\n"
          "  1  the runtime answered with an error or is unreachable (send --stdin: or\n"
          "     some lines were malformed or rejected)\n"
          "  2  usage error\n"
          "  3  not found: state get of an address with no state, or of a NAME it lacks\n"
          "\n"
          "example: statemesh call example/user alice hi\n", f);
}

/* `statemesh help COMMAND`: that command's usage lines and option notes. */
static void command_usage(FILE *f, const struct command_help *h)
{
    const char *p = h->usage, *nl;
    for (int first = 1; *p; p = nl + 1, first = 0) {
        nl = strchr(p, '\n');
        fprintf(f, "%s statemesh [--address HOST:PORT] %.*s\n", first ? "usage:" : "      ",
                (int)(nl - p), p);
    }
    fprintf(f, "\n%s", h->notes);
}

/* The command a usage error is about, for its hint (NULL: none yet). */
static const char *usage_command;

int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "statemesh: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nrun 'statemesh help %s' (or 'statemesh --help') for usage\n",
            usage_command ? usage_command : "COMMAND");
    return EXIT_USAGE;
}

/* ---- output helpers ---- */

void json_put_string(FILE *f, const char *s, size_t len)
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

/* Resolves a --type / "typename" name. Returns 0, or -1 for an unknown one. */
int resolve_type(const char *name, struct vtype *out)
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


int gbuf_reserve(struct gbuf *b, size_t n)
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
int unhex(const char *text, size_t len, uint8_t *out)
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
int encode_arg(const char *type, const char *text, sm_value *out, uint8_t scalar[8],
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

static void explain_deadline(sm_client *c, const char *type, const char *id);

int rpc_error(const char *what, const sm_error *err, const char *address)
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
            if (err.code == 4) explain_deadline(c, type, id);   /* DEADLINE_EXCEEDED */
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
    int rc = 0;

    if (a->npos >= 2 && strcmp(a->pos[1], "get") != 0) return cmd_state_admin(c, a);
    if (a->npos < 2)
        return usage_error("state needs a subcommand: get, list, set or delete");
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
    if (l.n == 0) { /* the output above all the same (the queue may be of interest) */
        fflush(stdout);
        fprintf(stderr, "statemesh: %s ", a->pos[2]);
        put_id(stderr, a->pos[3]);
        if (a->npos == 5) fprintf(stderr, " has no state named '%s'\n", a->pos[4]);
        else fputs(" has no state\n", stderr);
        rc = EXIT_NOT_FOUND;
    }
    sm_state_list_cleanup(&l);
    return rc;
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

void put_id(FILE *f, const char *id)
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

/* ---- failure handling: inspect, stuck, skip, resume ---- */

static void put_address_json(FILE *f, const char *type, const char *id)
{
    fputs("{\"type\":", f);
    json_put_string(f, type, strlen(type));
    fputs(",\"id\":", f);
    json_put_string(f, id, strlen(id));
    fputc('}', f);
}

static void print_status_json(const sm_address_status *st)
{
    fputs("{\"address\":", stdout);
    put_address_json(stdout, st->type, st->id);
    printf(",\"phase\":\"%s\",\"queued_messages\":%" PRIu64 ",\"in_flight_messages\":%" PRIu32
           ",\"attempts\":%" PRIu32 ",\"max_attempts\":%" PRIu32 ",\"isolating\":%s",
           sm_phase_name(st->phase), st->queued_messages, st->in_flight_messages, st->attempts,
           st->max_attempts, st->isolating ? "true" : "false");
    fputs(",\"next_retry_at_ms\":", stdout);
    if (st->next_retry_at_ms) printf("%" PRId64, st->next_retry_at_ms);
    else fputs("null", stdout);
    fputs(",\"last_error\":", stdout);
    if (*st->last_error) {
        json_put_string(stdout, st->last_error, strlen(st->last_error));
        printf(",\"last_error_at_ms\":%" PRId64, st->last_error_at_ms);
    } else {
        fputs("null", stdout);
    }
    fputs(",\"head\":", stdout);
    if (st->has_head) {
        fputs("{\"caller\":", stdout);
        if (st->head_caller_type) put_address_json(stdout, st->head_caller_type, st->head_caller_id);
        else fputs("null", stdout);
        fputc(',', stdout);
        print_value_json_line(stdout, &st->head);
        fputc('}', stdout);
    } else {
        fputs("null", stdout);
    }
    fputs("}\n", stdout);
}

/* "in 1.2 s" / "overdue" relative to now. */
static void put_in(FILE *f, int64_t at_ms)
{
    struct timespec ts;
    int64_t now, d;
    clock_gettime(CLOCK_REALTIME, &ts);
    now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    d = at_ms - now;
    if (d <= 0) fputs("due now", f);
    else fprintf(f, "in %.1f s", (double)d / 1000.0);
}

static void print_status_text(const sm_address_status *st)
{
    printf("address      %s ", st->type);
    put_id(stdout, st->id);
    printf("\nphase        %s%s\n", sm_phase_name(st->phase),
           st->isolating ? " (isolating a failed batch: one message at a time)" : "");
    printf("queued       %" PRIu64 " (in flight %" PRIu32 ")\n", st->queued_messages,
           st->in_flight_messages);
    if (st->max_attempts) printf("attempts     %" PRIu32 " of %" PRIu32 "\n", st->attempts, st->max_attempts);
    else printf("attempts     %" PRIu32 " (retried forever)\n", st->attempts);
    if (st->next_retry_at_ms) {
        fputs("next retry   ", stdout);
        put_time(stdout, st->next_retry_at_ms);
        fputs(" (", stdout);
        put_in(stdout, st->next_retry_at_ms);
        fputs(")\n", stdout);
    }
    if (st->has_head) {
        fputs("head         ", stdout);
        print_value_line(stdout, &st->head);
        if (st->head_caller_type) {
            printf(" (from %s ", st->head_caller_type);
            put_id(stdout, st->head_caller_id);
            fputs(")\n", stdout);
        } else {
            fputs(" (from the ingress)\n", stdout);
        }
    }
    if (*st->last_error) {
        const char *p = st->last_error, *nl;
        fputs("last error   ", stdout);
        put_time(stdout, st->last_error_at_ms);
        fputc('\n', stdout);
        for (; *p; p = nl + 1) {            /* full text, indented (tracebacks) */
            nl = strchr(p, '\n');
            if (!nl) {
                printf("  %s\n", p);
                break;
            }
            printf("  %.*s\n", (int)(nl - p), p);
        }
    }
    if (st->phase == SM_PHASE_PAUSED)
        printf("# paused: 'statemesh skip %s ID' moves the head message to dead letters, "
               "'statemesh resume %s ID' retries it now\n", st->type, st->type);
}

static int cmd_inspect(sm_client *c, const struct args *a)
{
    sm_address_statuses l;
    sm_error err;
    char what[2200];

    if (a->npos != 3) return usage_error("inspect needs TYPE ID");
    snprintf(what, sizeof what, "inspect %.1024s %.1024s", a->pos[1], a->pos[2]);
    if (sm_client_inspect(c, a->pos[1], a->pos[2], a->timeout_ms, &l, &err) != SM_OK)
        return rpc_error(what, &err, a->address);
    if (a->json) print_status_json(&l.items[0]);
    else print_status_text(&l.items[0]);
    sm_address_statuses_cleanup(&l);
    return 0;
}

static int cmd_stuck(sm_client *c, const struct args *a)
{
    sm_address_statuses l;
    sm_error err;

    if (a->npos != 1) return usage_error("stuck takes no arguments (filter with --type T)");
    if (sm_client_list_stuck(c, a->type, (uint32_t)a->limit, a->timeout_ms, &l, &err) != SM_OK)
        return rpc_error("stuck", &err, a->address);
    for (size_t i = 0; i < l.n; i++) {
        const sm_address_status *st = &l.items[i];
        if (a->json) {
            print_status_json(st);
            continue;
        }
        printf("%s ", st->type);
        put_id(stdout, st->id);
        printf(" %s %" PRIu32 "/", sm_phase_name(st->phase), st->attempts);
        if (st->max_attempts) printf("%" PRIu32, st->max_attempts);
        else fputs("forever", stdout);
        printf(" queued=%" PRIu64 " ", st->queued_messages);
        json_put_string(stdout, st->last_error, strlen(st->last_error));
        fputc('\n', stdout);
    }
    if (a->json) printf("{\"retrying\":%" PRIu64 ",\"paused\":%" PRIu64 "}\n", l.retrying, l.paused);
    else printf("# retrying=%" PRIu64 " paused=%" PRIu64 "\n", l.retrying, l.paused);
    sm_address_statuses_cleanup(&l);
    return 0;
}

static int cmd_skip_resume(sm_client *c, const struct args *a, bool skip)
{
    sm_error err;
    char what[2200];
    uint64_t id = 0;
    int rc;

    if (a->npos != 3) return usage_error("%s needs TYPE ID", skip ? "skip" : "resume");
    snprintf(what, sizeof what, "%s %.1024s %.1024s", skip ? "skip" : "resume", a->pos[1], a->pos[2]);
    rc = skip ? sm_client_skip(c, a->pos[1], a->pos[2], a->timeout_ms, &id, &err)
              : sm_client_resume(c, a->pos[1], a->pos[2], a->timeout_ms, &err);
    if (rc != SM_OK) return rpc_error(what, &err, a->address);
    if (a->json) {
        if (skip) printf("{\"dead_letter_id\":%" PRIu64 "}\n", id);
        else fputs("{\"resumed\":true}\n", stdout);
    } else if (skip) {
        printf("skipped: the head message is dead letter %" PRIu64 "\n", id);
    } else {
        fputs("resumed\n", stdout);
    }
    return 0;
}

/* After a Call's DEADLINE_EXCEEDED: why the address has not answered, when
 * it is retrying or paused. */
static void explain_deadline(sm_client *c, const char *type, const char *id)
{
    sm_address_statuses l;
    sm_error err;
    const sm_address_status *st;
    if (sm_client_inspect(c, type, id, 3000, &l, &err) != SM_OK) return;
    st = &l.items[0];
    if (st->phase == SM_PHASE_PAUSED || st->attempts) {
        fprintf(stderr, "statemesh: %s %s is %s (attempt %" PRIu32 " of ", type, id,
                sm_phase_name(st->phase), st->attempts);
        if (st->max_attempts) fprintf(stderr, "%" PRIu32 ")", st->max_attempts);
        else fputs("unlimited)", stderr);
        fprintf(stderr, "; last error: %s\n", *st->last_error ? st->last_error : "(none)");
        fprintf(stderr, "statemesh: see 'statemesh inspect %s %s'\n", type, id);
    }
    sm_address_statuses_cleanup(&l);
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
                                         "--idempotency-key", "--from", "--after", "--limit",
                                         "--prefix"};
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
            if (a->npos == 0 && find_command(arg)) usage_command = arg; /* for hints */
            a->pos[a->npos++] = arg; /* a->pos has room for argc entries */
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options = 0;
            continue;
        }
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            a->help = true; /* main prints it, for the command if one is named */
            continue;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("statemesh %s\n", SM_VERSION);
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
            a->after_text = val;   /* a dead letter id or a state id: check_option_use */
            a->has_after = true;
        } else if (strcmp(name, "--prefix") == 0) {
            a->prefix = val;
        } else if (strcmp(name, "--limit") == 0) {
            if (parse_u64(name, val, SM_DEADLETTERS_MAX_LIMIT, &a->limit) || a->limit < 1)
                return usage_error("--limit wants 1..%d, got '%s'", SM_DEADLETTERS_MAX_LIMIT, val);
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

/* Options that only some commands take (and --after of deadletters, a
 * number). Returns 0 or a usage error. */
static int check_option_use(struct args *a, const char *cmd)
{
    bool send = strcmp(cmd, "send") == 0, call = strcmp(cmd, "call") == 0;
    bool egress = strcmp(cmd, "egress") == 0, dl = strcmp(cmd, "deadletters") == 0;
    bool stuck = strcmp(cmd, "stuck") == 0, state = strcmp(cmd, "state") == 0;

    if (a->type && !send && !call && !dl && !stuck && !state)
        return usage_error("--type only applies to send, call, state set, deadletters and stuck");
    if (stuck && a->type && !*a->type)
        return usage_error("--type wants a function type NS/NAME, got ''");
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
    if (a->all && !dl) return usage_error("--all only applies to deadletters");
    if (a->has_after && !dl && !state)
        return usage_error("--after only applies to deadletters list and state list");
    if (a->has_after && dl && parse_u64("--after", a->after_text, UINT64_MAX, &a->after))
        return usage_error("--after wants a dead letter id (0 = from the first), got '%s'",
                           a->after_text);
    if (a->has_limit && !dl && !stuck && !state)
        return usage_error("--limit only applies to deadletters list, stuck and state list");
    if (a->prefix && !state) return usage_error("--prefix only applies to state list");
    if (state) return state_option_use(a);
    return 0;
}

/* statemesh help [COMMAND], statemesh [COMMAND] --help. */
static int cmd_help(const struct args *a)
{
    int first = a->npos && strcmp(a->pos[0], "help") == 0; /* index of COMMAND */
    const struct command_help *h;

    if (a->npos <= first) {
        usage(stdout);
        return 0;
    }
    if (!(h = find_command(a->pos[first])))
        return usage_error("unknown command '%s'", a->pos[first]);
    if (a->npos > first + 1 && !a->help)
        return usage_error("help takes one COMMAND, got '%s' too", a->pos[first + 1]);
    command_usage(stdout, h);
    return 0;
}

int main(int argc, char **argv)
{
    struct args a;
    sm_client *c = NULL;
    const char *cmd;
    int rc;

    memset(&a, 0, sizeof a);
    if (!(a.pos = calloc((size_t)argc + 1, sizeof *a.pos))) {
        fprintf(stderr, "statemesh: out of memory\n");
        return EXIT_RPC;
    }
    if ((rc = parse_args(argc, argv, &a)) >= 0) goto out;
    if (a.npos == 0 && a.help) {
        usage(stdout);
        rc = 0;
        goto out;
    }
    if (a.npos == 0) {
        rc = usage_error("missing command");
        goto out;
    }
    cmd = a.pos[0];
    if (a.help || strcmp(cmd, "help") == 0) {
        rc = cmd_help(&a);
        goto out;
    }
    if (!find_command(cmd)) {
        rc = usage_error("unknown command '%s'", cmd);
        goto out;
    }
    usage_command = cmd;
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
    else if (strcmp(cmd, "inspect") == 0) rc = cmd_inspect(c, &a);
    else if (strcmp(cmd, "stuck") == 0) rc = cmd_stuck(c, &a);
    else if (strcmp(cmd, "skip") == 0) rc = cmd_skip_resume(c, &a, true);
    else if (strcmp(cmd, "resume") == 0) rc = cmd_skip_resume(c, &a, false);
    else rc = cmd_deadletters(c, &a);
out:
    sm_client_destroy(&c);
    free(a.pos);
    return rc;
}
