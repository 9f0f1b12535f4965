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
 *   statemesh [--address A] inspect TYPE ID [--json]
 *   statemesh [--address A] stuck [--type T] [--limit N] [--json]
 *   statemesh [--address A] skip TYPE ID [--json]
 *   statemesh [--address A] resume TYPE ID [--json]
 *   statemesh help [COMMAND]
 *
 * Options may appear anywhere after the program name; "--" ends them, and
 * arguments such as "-5" are values, not options. The address defaults to
 * $STATEMESH_ADDRESS, then 127.0.0.1:7070. --token TOKEN / --token-file F
 * (else $STATEMESH_TOKEN) send "authorization: Bearer TOKEN" with every RPC;
 * --admin A (else $STATEMESH_ADMIN) is where every command but send, call
 * and egress goes when the runtime serves Admin on its own listener.
 * $STATEMESH_ADDRESS, then 127.0.0.1:7070. --tls-ca FILE (or
 * $STATEMESH_TLS_CA) connects over TLS, --tls-cert/--tls-key (or
 * $STATEMESH_TLS_CERT/_KEY) add a client certificate (docs/security.md).
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
 *               as in state get, JSON on one line). On a cluster node
 *               OFFSET is NODE/OFFSET (each node has its own log and offsets;
 *               --json adds "node"), and --from N starts every node at N.
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
 *
 * The files of the CLI (their shared declarations: cli.h):
 *   cli.c            main: arguments, the help, option checks, dispatch
 *   cli_value.c      --type names, VALUE encoding, printing values
 *   cli_messaging.c  send, call, egress tail
 *   cli_stdin.c      send --stdin
 *   cli_admin.c      state get, stats, deadletters, inspect, stuck, skip, resume
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "statemesh/client.h"
#include "statemesh/version.h"

#define DEFAULT_TIMEOUT_MS 10000

/* ---- help ---- */

#define ADDR_NOTE \
    "  --address HOST:PORT  ingress of statemeshd (also unix:/path); default\n" \
    "                       $STATEMESH_ADDRESS or 127.0.0.1:7070\n" AUTH_NOTE TLS_NOTE
#define AUTH_NOTE \
    "  --token TOKEN        bearer token for a runtime with runtime.auth; default\n" \
    "                       $STATEMESH_TOKEN (docs/security.md)\n" \
    "  --token-file F       read the token from file F (one line) instead\n" \
    "  --admin HOST:PORT    the runtime's admin listener (runtime.admin), used by\n" \
    "                       every command but send, call and egress; default\n" \
    "                       $STATEMESH_ADMIN, else the --address\n"
#define TLS_NOTE \
    "  --tls-ca FILE        TLS: verify the runtime's certificate against this CA\n" \
    "                       (PEM; $STATEMESH_TLS_CA); without it the connection is plain\n" \
    "  --tls-cert FILE      mTLS: client certificate (PEM; $STATEMESH_TLS_CERT)\n" \
    "  --tls-key FILE       its private key (PEM; $STATEMESH_TLS_KEY)\n"
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
    {"cluster",
     "  cluster status                    nodes, key-group ranges, controller, fencing\n"
     "  cluster savepoint DIR             a consistent savepoint of the whole cluster\n",
     "cluster status [--json]\n"
     "cluster savepoint DIR [--ranges N] [--pause-timeout MS] [--json]\n",
     "status prints the cluster as the node at --address sees it (docs/cluster.md):\n"
     "its name, the answering node and its state (joining, serving or fenced, with\n"
     "the reason), the controller, then one line per node \"node ID ADVERTISE\n"
     "alive|down [lease_left_ms=N] [outbox_frames=N]\" and one per range \"range\n"
     "FIRST-LAST OWNER epoch=N\". outbox_frames: messages the answering node\n"
     "holds for that node, not yet acknowledged by it. A runtime without a\n"
     "cluster group says so.\n"
     "\n"
     "savepoint asks the node at --address to coordinate a consistent cut of every\n"
     "node (docs/savepoints.md, \"Cluster savepoints\"): through an etcd barrier each\n"
     "owner of a range pauses dispatch, then all snapshot at once and resume, and\n"
     "each writes DIR/NODE-ID (DIR: a new directory on a file system every node\n"
     "shares; a relative DIR is made absolute here); CLUSTER.json is written last.\n"
     "Prints one line per node (key groups, records, bytes) and the pause. A node\n"
     "that does not pause within 10 s (--pause-timeout MS, 1..600000) or goes down\n"
     "aborts it: every node resumes, nothing is left under DIR. --ranges N: range\n"
     "files per node (default 16).\n"
     "Restore it onto any number of nodes: docs/cluster.md, \"Rescaling\".\n"
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
    {"savepoint",
     "  savepoint create DIR              write a savepoint of the runtime (online)\n"
     "  savepoint verify DIR              check a savepoint's checksums (offline)\n"
     "  savepoint inspect DIR             describe what a savepoint holds (offline)\n"
     "  savepoint export DIR --jsonl      a savepoint's addresses as JSON lines (offline)\n"
     "  savepoint from-jsonl FILE DIR     build a savepoint from JSON lines (offline)\n",
     "savepoint create DIR [--ranges N] [--json]\n"
     "savepoint verify DIR\n"
     "savepoint inspect DIR [--json]\n"
     "savepoint export DIR --jsonl [--type T] [--out FILE]\n"
     "savepoint from-jsonl FILE|- DIR [--key-groups N] [--ranges N]\n",
     "create: the runtime writes a savepoint of the whole database into DIR, a new\n"
     "directory on the runtime's machine (relative: against this working directory),\n"
     "while traffic goes on; progress on stderr, the summary (or, with --json, its\n"
     "MANIFEST.json) on stdout once it is complete. Interrupting the CLI cancels it.\n"
     "verify: reads every file of DIR offline and checks block checksums, record\n"
     "counts and sha256; names the file and byte offset of any damage.\n"
     "inspect: verifies, then prints counts per kind, per function type and per file.\n"
     "export: verifies, then writes one JSON line per address with state, queued or\n"
     "delayed messages (by key group, then type and id) to stdout or --out FILE.\n"
     "from-jsonl: builds the savepoint DIR from such lines (FILE, or - for stdin);\n"
     "bad lines are reported as FILE:LINE: why and nothing is written.\n"
     "See docs/savepoints.md.\n"
     "\n"
     "options:\n"
     "  --ranges N           create, from-jsonl: key-group ranges, one file each\n"
     "                       (1..4096, default 16)\n"
     "  --jsonl              export: JSON lines (required)\n"
     "  --type T             export: only addresses of function type T\n"
     "  --out FILE           export: write to FILE instead of stdout\n"
     "  --key-groups N       from-jsonl: the savepoint's key-group count (default 4096)\n"
     JSON_NOTE ADDR_NOTE "\n"
     "exit status: 0 ok, 1 the runtime refused or failed, or the savepoint is damaged\n"
     "(verify/inspect), 2 usage error\n"},
    {"bootstrap",
     "  bootstrap FILE|-                  load JSON lines of addresses' data (online)\n",
     "bootstrap FILE|- [--mode create-only|overwrite] [--dry-run] [--batch N] [--json]\n",
     "Loads FILE (- for stdin), one address per line as `savepoint export --jsonl`\n"
     "writes them ({\"type\",\"id\",\"state\",\"messages\",\"delayed\"}), into the running\n"
     "runtime: each line applied like a message to its address, all of it in one\n"
     "checkpoint, exactly once (running the same file again changes nothing:\n"
     "\"already loaded\"). Lines it cannot parse or the runtime refuses are reported\n"
     "as FILE:LINE: why on stderr and the rest is loaded. Progress on stderr, then\n"
     "\"loaded N, already loaded N, exists N, invalid N (...)\".\n"
     "See docs/savepoints.md#bootstrap.\n"
     "\n"
     "options:\n"
     "  --mode create-only   an address that has state is left alone (default; \"exists\")\n"
     "  --mode overwrite     an address's state is replaced by the line's\n"
     "  --dry-run            check every line and report what would happen; change nothing\n"
     "  --batch N            lines per request (1..10000, default 1000)\n"
     JSON_NOTE ADDR_NOTE TIMEOUT_NOTE "\n"
     "exit status: 0 every line loaded or already loaded, 1 the runtime refused or\n"
     "failed a request (the load stopped), 2 usage error or FILE unreadable, 4 some\n"
     "lines were not loaded (invalid, or exists with create-only), the rest was\n"},
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
          "  --delay MS           deliver the message MS milliseconds later (durably)\n"
          KEY_NOTE
          "  --stdin              send: read JSON lines from stdin (see above)\n"
          "  --quiet              send --stdin: no progress line, only the summary\n"
          "  --from N             egress tail: start at offset N (offsets start at 1)\n"
          "  --earliest           egress tail: start at the oldest retained record (default)\n"
          "  --latest             egress tail: only records committed from now on\n"
          "  --follow             egress tail: keep waiting for new records (Ctrl-C stops)\n"
          "  --prefix P           state list: only ids starting with P\n"
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

/* ---- errors, numbers ---- */

int rpc_error(const char *what, const sm_error *err, const char *address)
{
    fprintf(stderr, "statemesh: %s: %s: %s\n", what, sm_status_code_name(err->code), err->message);
    if (err->code == 14) /* UNAVAILABLE */
        fprintf(stderr, "statemesh: is statemeshd running and serving its ingress at %s?\n",
                address);
    else if (err->code == 12) /* UNIMPLEMENTED: Admin on its own listener? */
        fprintf(stderr, "statemesh: if the runtime serves Admin on its own listener "
                "(runtime.admin), give it with --admin HOST:PORT or $STATEMESH_ADMIN\n");
    if (err->code == 14 && (strstr(err->message, "Ssl") || strstr(err->message, "SSL") ||
                            strstr(err->message, "andshake")))
        fprintf(stderr, "statemesh: the TLS handshake failed: --tls-ca must be the CA of the "
                "runtime's certificate, which must name %s (docs/security.md)\n", address);
    return EXIT_RPC;
}

int parse_u64(const char *name, const char *val, uint64_t max, uint64_t *out)
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

/* ---- arguments, dispatch ---- */

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
        {"--all", offsetof(struct args, all)},           {"--jsonl", offsetof(struct args, jsonl)},
        {"--dry-run", offsetof(struct args, dry_run)},
    };
    static const char *const valued[] = {"--address", "--type", "--timeout", "--delay",
                                         "--idempotency-key", "--from", "--after", "--limit",
                                         "--prefix", "--ranges", "--out", "--key-groups",
                                         "--mode", "--batch", "--token", "--token-file",
                                         "--admin", "--tls-ca", "--tls-cert", "--tls-key",
                                         "--pause-timeout"};
    const char *env = getenv("STATEMESH_ADDRESS");
    int options = 1;

    a->address = env && *env ? env : SM_DEFAULT_INGRESS;
    env = getenv("STATEMESH_ADMIN");
    a->admin = env && *env ? env : NULL;
    if ((env = getenv("STATEMESH_TLS_CA")) && *env) a->tls_ca = env;
    if ((env = getenv("STATEMESH_TLS_CERT")) && *env) a->tls_cert = env;
    if ((env = getenv("STATEMESH_TLS_KEY")) && *env) a->tls_key = env;
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
        } else if (strcmp(name, "--admin") == 0) {
            if (!*val) return usage_error("--admin is empty");
            a->admin = val;
        } else if (strcmp(name, "--token") == 0) {
            if (!*val) return usage_error("--token is empty");
            a->token = val;
        } else if (strcmp(name, "--token-file") == 0) {
            if (!*val) return usage_error("--token-file is empty");
            a->token_file = val;
        } else if (strncmp(name, "--tls-", 6) == 0) {
            if (!*val) return usage_error("%s is empty", name);
            *(name[6] == 'c' && name[7] == 'a' ? &a->tls_ca
              : name[6] == 'c'                  ? &a->tls_cert
                                                : &a->tls_key) = val;
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
        } else if (strcmp(name, "--ranges") == 0) {
            if (parse_u64(name, val, 4096, &a->ranges) || a->ranges < 1)
                return usage_error("--ranges wants 1..4096, got '%s'", val);
            a->has_ranges = true;
        } else if (strcmp(name, "--pause-timeout") == 0) {
            if (parse_u64(name, val, 600000, &a->pause_timeout_ms) || a->pause_timeout_ms < 1)
                return usage_error("--pause-timeout wants 1..600000 ms, got '%s'", val);
        } else if (strcmp(name, "--out") == 0) {
            if (!*val) return usage_error("--out is empty");
            a->out = val;
        } else if (strcmp(name, "--key-groups") == 0) {
            if (parse_u64(name, val, 65536, &a->key_groups) || a->key_groups < 1)
                return usage_error("--key-groups wants 1..65536, got '%s'", val);
            a->has_key_groups = true;
        } else if (strcmp(name, "--prefix") == 0) {
            a->prefix = val;
        } else if (strcmp(name, "--mode") == 0) {
            a->mode = val;
        } else if (strcmp(name, "--batch") == 0) {
            if (parse_u64(name, val, SM_BOOTSTRAP_MAX_ENTRIES, &a->batch) || a->batch < 1)
                return usage_error("--batch wants 1..%d lines, got '%s'", SM_BOOTSTRAP_MAX_ENTRIES,
                                   val);
            a->has_batch = true;
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
    bool sp = strcmp(cmd, "savepoint") == 0;

    if (a->type && !send && !call && !dl && !stuck && !state && !sp)
        return usage_error("--type only applies to send, call, state set, deadletters, stuck and "
                           "savepoint export");
    if ((a->jsonl || a->out || a->has_key_groups) && !sp)
        return usage_error("--jsonl, --out and --key-groups only apply to savepoint");
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
    if ((a->mode || a->dry_run || a->has_batch) && strcmp(cmd, "bootstrap") != 0)
        return usage_error("--mode, --dry-run and --batch only apply to bootstrap");
    if (a->pause_timeout_ms && (strcmp(cmd, "cluster") != 0 || a->npos < 2 ||
                                strcmp(a->pos[1], "savepoint") != 0))
        return usage_error("--pause-timeout only applies to cluster savepoint");
    if (state) return state_option_use(a);
    return 0;
}

/* --token / --token-file (else $STATEMESH_TOKEN, which sm_client_create
 * takes) onto the client. Returns 0 or an exit status. */
static int set_token(sm_client *c, const struct args *a)
{
    char buf[SM_MAX_TOKEN_LEN + 3];
    const char *tok = a->token;
    sm_error err;
    size_t n = 0;
    FILE *f;

    if (a->token && a->token_file) return usage_error("give --token or --token-file, not both");
    if (a->token_file) {
        if (!(f = fopen(a->token_file, "r"))) {
            fprintf(stderr, "statemesh: --token-file %s: %s\n", a->token_file, strerror(errno));
            return EXIT_USAGE;
        }
        n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        if (n > 0 && buf[n - 1] == '\n') buf[--n] = '\0';
        if (n > 0 && buf[n - 1] == '\r') buf[--n] = '\0';
        if (n == 0) return usage_error("--token-file %s is empty", a->token_file);
        tok = buf;
    }
    if (tok && sm_client_set_token(c, tok, &err) != SM_OK) {
        memset(buf, 0, sizeof buf);
        return usage_error("%s: %s", a->token ? "--token" : "--token-file", err.message);
    }
    memset(buf, 0, sizeof buf);
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
    if (a.admin && strcmp(cmd, "send") != 0 && strcmp(cmd, "call") != 0 &&
        strcmp(cmd, "egress") != 0)
        a.address = a.admin;       /* the Admin service's own listener */
    if (a.tls_ca || a.tls_cert || a.tls_key) {
        sm_tls_options tls = {a.tls_ca, a.tls_cert, a.tls_key, 0};
        sm_error err;
        if (!a.tls_ca) {
            rc = usage_error("--tls-cert and --tls-key need --tls-ca (the CA of the runtime's "
                             "certificate)");
            goto out;
        }
        if (!(c = sm_client_create_tls(a.address, &tls, &err))) {
            fprintf(stderr, "statemesh: %s\n", err.message);
            rc = err.code == 3 ? EXIT_USAGE : EXIT_RPC;
            goto out;
        }
    } else if (!(c = sm_client_create(a.address))) {
        fprintf(stderr, "statemesh: out of memory\n");
        rc = EXIT_RPC;
        goto out;
    }
    if ((rc = set_token(c, &a))) goto out;
    if (strcmp(cmd, "send") == 0) rc = a.use_stdin ? cmd_send_stdin(c, &a) : cmd_send_or_call(c, &a, 0);
    else if (strcmp(cmd, "call") == 0) rc = cmd_send_or_call(c, &a, 1);
    else if (strcmp(cmd, "state") == 0) rc = cmd_state(c, &a);
    else if (strcmp(cmd, "stats") == 0) rc = cmd_stats(c, &a);
    else if (strcmp(cmd, "cluster") == 0) rc = cmd_cluster(c, &a);
    else if (strcmp(cmd, "egress") == 0) rc = cmd_egress(c, &a);
    else if (strcmp(cmd, "inspect") == 0) rc = cmd_inspect(c, &a);
    else if (strcmp(cmd, "savepoint") == 0) rc = cmd_savepoint(c, &a);
    else if (strcmp(cmd, "bootstrap") == 0) rc = cmd_bootstrap(c, &a);
    else if (strcmp(cmd, "stuck") == 0) rc = cmd_stuck(c, &a);
    else if (strcmp(cmd, "skip") == 0) rc = cmd_skip_resume(c, &a, true);
    else if (strcmp(cmd, "resume") == 0) rc = cmd_skip_resume(c, &a, false);
    else rc = cmd_deadletters(c, &a);
out:
    sm_client_destroy(&c);
    free(a.pos);
    return rc;
}
