/*
 * fuzz_spjsonl — libFuzzer harness for savepoint JSON lines (runtime/
 * spjsonl.c, with valjson.c and address.c).
 *
 * Input: lines. Each line is copied to a buffer of exactly its length (so
 * ASan catches a read past it) and goes through spj_parse_line. A refusal
 * must leave *out NULL and a NUL-terminated reason. A parsed line is
 * written canonically (spj_write_line); that line must parse again and
 * write the very same bytes (the canonical form is a fixed point), and
 * every address in it must pass the address.h checks.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "spjsonl.h"

static char *write_line(const Statemesh__V1__AddressData *d, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f || spj_write_line(f, d) != 0 || fclose(f) != 0) abort();
    if (*len == 0 || buf[*len - 1] != '\n' || memchr(buf, '\n', *len - 1)) abort();
    return buf;
}

static void check_address(const Statemesh__V1__Address *a)
{
    if (!a || addr_check_type(a->type, strlen(a->type)) || addr_check_id(a->id, strlen(a->id)))
        abort();
}

static void one_line(const char *line, size_t len)
{
    Statemesh__V1__AddressData *d = (void *)1, *d2 = NULL;
    char *copy = malloc(len ? len : 1), *w1, *w2, err[300];
    size_t n1, n2;

    if (!copy) return;
    memcpy(copy, line, len);
    memset(err, 'x', sizeof err);
    if (spj_parse_line(copy, len, &d, err, sizeof err) != 0) {
        if (d || !memchr(err, '\0', sizeof err) || !err[0]) abort();
        free(copy);
        return;
    }
    check_address(d->address);
    for (size_t i = 0; i < d->n_messages; i++)
        if (d->messages[i]->caller) check_address(d->messages[i]->caller);
    for (size_t i = 0; i < d->n_delayed; i++)
        if (d->delayed[i]->target) check_address(d->delayed[i]->target);
    w1 = write_line(d, &n1);
    if (spj_parse_line(w1, n1 - 1, &d2, err, sizeof err) != 0) {
        fprintf(stderr, "canonical line refused: %s\n%.*s", err, (int)n1, w1);
        abort();
    }
    w2 = write_line(d2, &n2);
    if (n1 != n2 || memcmp(w1, w2, n1) != 0) {
        fprintf(stderr, "not a fixed point:\n%.*s%.*s", (int)n1, w1, (int)n2, w2);
        abort();
    }
    free(w1);
    free(w2);
    spj_free(d);
    spj_free(d2);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data, *end = (const char *)data + size;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
        one_line(s, n);
        s += n + (nl ? 1 : 0);
    }
    return 0;
}
