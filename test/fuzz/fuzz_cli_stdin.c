/*
 * fuzz_cli_stdin — libFuzzer harness for `statemesh send --stdin`'s line
 * parser (stdin_parse_line in runtime/cli_stdin.c).
 *
 * Input: the first byte picks the --type default (json, string, int64,
 * float64, bool, bytes or a user typename); the rest is stdin. It is cut
 * into lines and trimmed the way cmd_send_stdin does (no "\n", no trailing
 * "\r", spaces and tabs around, blank lines skipped) and every line goes
 * through stdin_parse_line. A parsed line then gets the checks
 * sm_send_stream_push runs before anything is sent (address, idempotency
 * key, delay, UTF-8), so what the parser hands over is also what the SDK
 * validates. Each line is copied to a buffer of exactly its length, so ASan
 * catches a read past it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client_internal.h"

static const char *const types[] = {"json", "string", "int64", "float64", "bool", "bytes",
                                    "fz/thing"};

static void one_line(struct stdin_parser *p, const char *line, size_t len)
{
    char *copy = malloc(len ? len : 1);
    struct stdin_msg m;
    char why[512];
    sm_error err;

    if (!copy) return;
    memcpy(copy, line, len);
    memset(why, 'x', sizeof why);
    if (stdin_parse_line(p, copy, len, &m, why, sizeof why) == 0) {
        if (!m.type || !m.id || !m.value.typename) abort();
        if (sm__check_target(m.type, m.id, &m.value, &err) == SM_OK &&
            sm__check_key(m.opts.idempotency_key, &err) == SM_OK &&
            sm__check_delay(m.opts.delay_ms, &err) == SM_OK) {
            (void)sm_utf8_valid(m.type, strlen(m.type));
            (void)sm_utf8_valid(m.id, strlen(m.id));
        }
    } else if (!memchr(why, '\0', sizeof why)) {
        abort();
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct stdin_parser p;
    const char *s = (const char *)data + 1, *end = (const char *)data + size;

    if (size < 1) return 0;
    memset(&p, 0, sizeof p);
    if (valjson_resolve_type(types[data[0] % (sizeof types / sizeof *types)], &p.dflt)) abort();
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
        const char *line = s;
        s += n + (nl ? 1 : 0);
        if (n && line[n - 1] == '\r') n--;
        while (n && (line[n - 1] == ' ' || line[n - 1] == '\t')) n--;
        {
            size_t i = 0;
            while (i < n && (line[i] == ' ' || line[i] == '\t')) i++;
            if (i == n) continue;
        }
        one_line(&p, line, n);
    }
    free(p.scratch.p);
    return 0;
}
