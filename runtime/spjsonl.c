/*
 * spjsonl — see spjsonl.h.
 *
 * Parsing walks the line once with the SDK's JSON views (statemesh/json.h):
 * the document is validated as a whole first (RFC 8259, UTF-8, depth), so
 * the walk below only has to check shapes. Everything the result holds is
 * malloc'd, field by field, so protobuf_c_message_free_unpacked() frees it
 * (spj_free); a failure half-way frees what was built.
 *
 * Typenames are taken literally: the six "statemesh/..." names read their
 * "value" by kind, any other typename (1..SPJ_MAX_TYPENAME bytes) is a user
 * type and reads "hex". "hex" is accepted for every typename (the writer
 * uses it for bytes that are no valid encoding of their built-in type).
 */
#include "spjsonl.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "statemesh/json.h"
#include "valjson.h"

#define SPJ_MAX_TYPENAME 1024
#define SPJ_MAX_TOKEN 256

struct ctx {
    char *err;
    size_t errlen;
    char where[160];    /* "state \"n\": ", "messages[3]: " */
};

static int fail(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct ctx *c, const char *fmt, ...)
{
    va_list ap;
    size_t n = (size_t)snprintf(c->err, c->errlen, "%s", c->where);
    if (n < c->errlen) {
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->errlen - n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* A member name for messages, cut to 64 bytes. */
#define KEYFMT "%.*s"
#define KEYARG(k) (int)((k)->len > 66 ? 66 : (k)->len), (k)->p

/* Unescapes a JSON string into a malloc'd C string. */
static int dup_string(struct ctx *c, const sm_json *v, const char *what, char **out, size_t *outlen)
{
    size_t n;
    char *s;
    if (v->kind != SM_JSON_STRING) return fail(c, "\"%s\" must be a string", what);
    if (!(s = malloc(v->len))) return fail(c, "out of memory");
    if (sm_json_string(v, s, v->len, &n) != SM_OK) {
        free(s);
        return fail(c, "\"%s\" holds \\u0000 or a lone surrogate", what);
    }
    *out = s;
    if (outlen) *outlen = n;
    return 0;
}

/* Matches object members against names[0..n); got[i] gets the value of
 * names[i]. Refuses unknown and repeated members. */
static int members(struct ctx *c, const sm_json *obj, const char *const *names, size_t n,
                   sm_json *got, bool *have, const char *allowed)
{
    sm_json_iter it;
    sm_json k, v;
    int rc;
    memset(have, 0, n * sizeof *have);
    if (obj->kind != SM_JSON_OBJECT || sm_json_iter_init(&it, obj) != SM_OK)
        return fail(c, "must be a JSON object");
    while ((rc = sm_json_iter_next(&it, &k, &v)) == SM_OK) {
        size_t i;
        for (i = 0; i < n && !sm_json_string_eq(&k, names[i]); i++) {
        }
        if (i == n) return fail(c, "unknown member " KEYFMT " (allowed: %s)", KEYARG(&k), allowed);
        if (have[i]) return fail(c, "member \"%s\" appears twice", names[i]);
        have[i] = true;
        got[i] = v;
    }
    return rc == SM_ABSENT ? 0 : fail(c, "malformed JSON object");
}

static int parse_address(struct ctx *c, const sm_json *obj, Statemesh__V1__Address **out)
{
    static const char *const names[] = {"type", "id"};
    sm_json got[2];
    bool have[2];
    size_t tl, il;
    const char *why;
    Statemesh__V1__Address *a;

    if (members(c, obj, names, 2, got, have, "type, id")) return -1;
    if (!have[0] || !have[1]) return fail(c, "missing \"%s\"", have[0] ? "id" : "type");
    if (!(a = malloc(sizeof *a))) return fail(c, "out of memory");
    statemesh__v1__address__init(a);
    a->type = a->id = NULL;
    *out = a;
    if (dup_string(c, &got[0], "type", &a->type, &tl)) return -1;
    if (dup_string(c, &got[1], "id", &a->id, &il)) return -1;
    if ((why = addr_check_type(a->type, tl))) return fail(c, "type: %s", why);
    if ((why = addr_check_id(a->id, il))) return fail(c, "id: %s", why);
    return 0;
}

/* "typename" with "value" or "hex" (got[0], got[1], got[2]) into a TypedValue. */
static int parse_value(struct ctx *c, const sm_json *got, const bool *have,
                       Statemesh__V1__TypedValue **out)
{
    Statemesh__V1__TypedValue *tv;
    struct vtype vt;
    size_t tl, n;
    char why[200];

    if (!have[0]) return fail(c, "missing \"typename\"");
    if (have[1] == have[2]) return fail(c, "needs exactly one of \"value\" and \"hex\"");
    if (!(tv = malloc(sizeof *tv))) return fail(c, "out of memory");
    statemesh__v1__typed_value__init(tv);
    tv->typename_ = NULL;
    *out = tv;
    if (dup_string(c, &got[0], "typename", &tv->typename_, &tl)) return -1;
    if (tl == 0 || tl > SPJ_MAX_TYPENAME)
        return fail(c, "\"typename\" must be 1..%d bytes", SPJ_MAX_TYPENAME);
    if (strncmp(tv->typename_, "statemesh/", 10) != 0 || valjson_resolve_type(tv->typename_, &vt)) {
        vt.kind = VK_USER;
        vt.typename = tv->typename_;
        if (have[1])
            return fail(c, "typename %.100s is not a built-in type: give its bytes as \"hex\"",
                        tv->typename_);
    }
    if (!(tv->value.data = malloc(got[have[1] ? 1 : 2].len + SM_SCALAR_SIZE)))
        return fail(c, "out of memory");
    if (valjson_decode(&vt, &got[have[1] ? 1 : 2], have[2], tv->value.data, &n, why, sizeof why))
        return fail(c, "\"%s\" %s", have[1] ? "value" : "hex", why);
    tv->value.len = n;
    return 0;
}

static int parse_ms(struct ctx *c, const sm_json *v, const char *what, int64_t *out)
{
    if (sm_json_int64(v, out) != SM_OK || *out < 0)
        return fail(c, "\"%s\" must be an integer >= 0 (Unix epoch ms)", what);
    return 0;
}

static int cmp_state(const void *a, const void *b)
{
    return strcmp((*(Statemesh__V1__AddressState *const *)a)->name,
                  (*(Statemesh__V1__AddressState *const *)b)->name);
}

static int parse_state(struct ctx *c, const sm_json *obj, Statemesh__V1__AddressData *d)
{
    static const char *const names[] = {"typename", "value", "hex", "expires_at_ms"};
    sm_json_iter it;
    sm_json k, v, got[4];
    bool have[4];
    size_t cap = 0;
    int rc;

    if (obj->kind != SM_JSON_OBJECT || sm_json_iter_init(&it, obj) != SM_OK)
        return fail(c, "\"state\" must be a JSON object of state names");
    while ((rc = sm_json_iter_next(&it, &k, &v)) == SM_OK) {
        Statemesh__V1__AddressState *st;
        const char *why;
        size_t nl;
        if (d->n_state == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            void *np = realloc(d->state, ncap * sizeof *d->state);
            if (!np) return fail(c, "out of memory");
            d->state = np;
            cap = ncap;
        }
        if (!(st = malloc(sizeof *st))) return fail(c, "out of memory");
        statemesh__v1__address_state__init(st);
        st->name = NULL;
        d->state[d->n_state++] = st;
        if (dup_string(c, &k, "state name", &st->name, &nl)) return -1;
        if ((why = addr_check_state_name(st->name, nl)))
            return fail(c, "state " KEYFMT ": %s", KEYARG(&k), why);
        snprintf(c->where, sizeof c->where, "state \"%s\": ", st->name);
        if (members(c, &v, names, 4, got, have, "typename, value, hex, expires_at_ms") ||
            parse_value(c, got, have, &st->value) ||
            (have[3] && parse_ms(c, &got[3], "expires_at_ms", &st->expires_at_ms)))
            return -1;
        c->where[0] = '\0';
    }
    if (rc != SM_ABSENT) return fail(c, "malformed \"state\"");
    if (d->n_state > 1) {
        qsort(d->state, d->n_state, sizeof *d->state, cmp_state);
        for (size_t i = 1; i < d->n_state; i++)
            if (strcmp(d->state[i - 1]->name, d->state[i]->name) == 0)
                return fail(c, "state \"%s\" appears twice", d->state[i]->name);
    }
    return 0;
}

/* Counts the elements of an array (the document is valid: no errors). */
static int array_len(struct ctx *c, const sm_json *v, const char *what, size_t *n)
{
    sm_json_iter it;
    sm_json e;
    *n = 0;
    if (v->kind != SM_JSON_ARRAY || sm_json_iter_init(&it, v) != SM_OK)
        return fail(c, "\"%s\" must be a JSON array", what);
    while (sm_json_iter_next(&it, NULL, &e) == SM_OK) (*n)++;
    return 0;
}

static int parse_messages(struct ctx *c, const sm_json *arr, Statemesh__V1__AddressData *d)
{
    static const char *const names[] = {"typename", "value", "hex", "caller"};
    sm_json_iter it;
    sm_json e, got[4];
    bool have[4];
    size_t n;

    if (array_len(c, arr, "messages", &n)) return -1;
    if (n && !(d->messages = calloc(n, sizeof *d->messages))) return fail(c, "out of memory");
    if (sm_json_iter_init(&it, arr) != SM_OK) return fail(c, "\"messages\" must be a JSON array");
    for (size_t i = 0; i < n && sm_json_iter_next(&it, NULL, &e) == SM_OK; i++) {
        Statemesh__V1__AddressMessage *m = malloc(sizeof *m);
        if (!m) return fail(c, "out of memory");
        statemesh__v1__address_message__init(m);
        d->messages[d->n_messages++] = m;
        snprintf(c->where, sizeof c->where, "messages[%zu]: ", i);
        if (members(c, &e, names, 4, got, have, "typename, value, hex, caller") ||
            parse_value(c, got, have, &m->argument))
            return -1;
        if (have[3]) {
            snprintf(c->where, sizeof c->where, "messages[%zu]: caller: ", i);
            if (parse_address(c, &got[3], &m->caller)) return -1;
        }
    }
    c->where[0] = '\0';
    return 0;
}

static int parse_delayed(struct ctx *c, const sm_json *arr, Statemesh__V1__AddressData *d)
{
    static const char *const names[] = {"typename", "value", "hex", "due_at_ms", "target",
                                        "token", "from_ingress"};
    sm_json_iter it;
    sm_json e, got[7];
    bool have[7];
    size_t n;

    if (array_len(c, arr, "delayed", &n)) return -1;
    if (n && !(d->delayed = calloc(n, sizeof *d->delayed))) return fail(c, "out of memory");
    if (sm_json_iter_init(&it, arr) != SM_OK) return fail(c, "\"delayed\" must be a JSON array");
    for (size_t i = 0; i < n && sm_json_iter_next(&it, NULL, &e) == SM_OK; i++) {
        Statemesh__V1__AddressDelayed *m = malloc(sizeof *m);
        if (!m) return fail(c, "out of memory");
        statemesh__v1__address_delayed__init(m);
        m->token = NULL;
        d->delayed[d->n_delayed++] = m;
        snprintf(c->where, sizeof c->where, "delayed[%zu]: ", i);
        if (members(c, &e, names, 7, got, have,
                    "due_at_ms, typename, value, hex, target, token, from_ingress"))
            return -1;
        if (!have[3]) return fail(c, "missing \"due_at_ms\"");
        if (parse_ms(c, &got[3], "due_at_ms", &m->due_at_ms) || parse_value(c, got, have, &m->argument))
            return -1;
        if (have[5]) {
            size_t tl;
            if (dup_string(c, &got[5], "token", &m->token, &tl)) return -1;
            if (tl > SPJ_MAX_TOKEN)
                return fail(c, "\"token\" is longer than %d bytes", SPJ_MAX_TOKEN);
        } else if (!(m->token = calloc(1, 1))) {
            return fail(c, "out of memory");
        }
        if (have[6]) {
            bool b;
            if (sm_json_bool(&got[6], &b) != SM_OK)
                return fail(c, "\"from_ingress\" must be true or false");
            m->from_ingress = b;
        }
        if (have[4]) {
            if (m->from_ingress)
                return fail(c, "a message from the ingress has no \"target\": it is the address itself");
            snprintf(c->where, sizeof c->where, "delayed[%zu]: target: ", i);
            if (parse_address(c, &got[4], &m->target)) return -1;
        }
    }
    c->where[0] = '\0';
    return 0;
}

int spj_parse_line(const char *line, size_t len, Statemesh__V1__AddressData **out, char *err,
                   size_t errlen)
{
    static const char *const names[] = {"type", "id", "state", "messages", "delayed"};
    struct ctx c = {err, errlen, ""};
    Statemesh__V1__AddressData *d = NULL;
    sm_json doc, got[5];
    bool have[5];

    *out = NULL;
    if (errlen) err[0] = '\0';
    if (len > SPJ_MAX_LINE) return fail(&c, "line longer than %zu bytes", SPJ_MAX_LINE);
    if (sm_json_parse(line, len, &doc) != SM_OK)
        return fail(&c, "not valid JSON (or not UTF-8): %.*s%s", (int)(len > 60 ? 60 : len), line,
                    len > 60 ? "..." : "");
    if (doc.kind != SM_JSON_OBJECT)
        return fail(&c, "a line must be a JSON object {\"type\":…,\"id\":…,…}");
    if (members(&c, &doc, names, 5, got, have, "type, id, state, messages, delayed")) return -1;
    if (!have[0] || !have[1]) return fail(&c, "missing \"%s\"", have[0] ? "id" : "type");
    if (!(d = malloc(sizeof *d))) return fail(&c, "out of memory");
    statemesh__v1__address_data__init(d);
    if (!(d->address = malloc(sizeof *d->address))) {
        free(d);
        return fail(&c, "out of memory");
    }
    statemesh__v1__address__init(d->address);
    d->address->type = d->address->id = NULL;
    {
        size_t tl, il;
        const char *why;
        if (dup_string(&c, &got[0], "type", &d->address->type, &tl) ||
            dup_string(&c, &got[1], "id", &d->address->id, &il))
            goto fail;
        if ((why = addr_check_type(d->address->type, tl))) {
            fail(&c, "type: %s", why);
            goto fail;
        }
        if ((why = addr_check_id(d->address->id, il))) {
            fail(&c, "id: %s", why);
            goto fail;
        }
    }
    if ((have[2] && parse_state(&c, &got[2], d)) || (have[3] && parse_messages(&c, &got[3], d)) ||
        (have[4] && parse_delayed(&c, &got[4], d)))
        goto fail;
    *out = d;
    return 0;
fail:
    spj_free(d);
    return -1;
}

void spj_free(Statemesh__V1__AddressData *d)
{
    if (d) protobuf_c_message_free_unpacked(&d->base, NULL);
}

/* ---- writing ---- */

static void put_address(FILE *f, const Statemesh__V1__Address *a)
{
    fputs("{\"type\":", f);
    valjson_put_string(f, a->type, strlen(a->type));
    fputs(",\"id\":", f);
    valjson_put_string(f, a->id, strlen(a->id));
    fputc('}', f);
}

static void put_value(FILE *f, const Statemesh__V1__TypedValue *tv)
{
    sm_value v = {tv && tv->typename_[0] ? tv->typename_ : "statemesh/bytes",
                  tv ? tv->value.data : NULL, tv ? tv->value.len : 0};
    valjson_put(f, &v, true);
}

static bool same_address(const Statemesh__V1__Address *a, const Statemesh__V1__Address *b)
{
    return strcmp(a->type, b->type) == 0 && strcmp(a->id, b->id) == 0;
}

int spj_write_line(FILE *f, const Statemesh__V1__AddressData *d)
{
    Statemesh__V1__AddressState **st = NULL;

    fputs("{\"type\":", f);
    valjson_put_string(f, d->address->type, strlen(d->address->type));
    fputs(",\"id\":", f);
    valjson_put_string(f, d->address->id, strlen(d->address->id));
    if (d->n_state) {
        if (!(st = malloc(d->n_state * sizeof *st))) return -1;
        memcpy(st, d->state, d->n_state * sizeof *st);
        qsort(st, d->n_state, sizeof *st, cmp_state);
        fputs(",\"state\":{", f);
        for (size_t i = 0; i < d->n_state; i++) {
            if (i) fputc(',', f);
            valjson_put_string(f, st[i]->name, strlen(st[i]->name));
            fputc(':', f);
            fputc('{', f);
            put_value(f, st[i]->value);
            if (st[i]->expires_at_ms) fprintf(f, ",\"expires_at_ms\":%" PRId64, st[i]->expires_at_ms);
            fputc('}', f);
        }
        fputc('}', f);
        free(st);
    }
    if (d->n_messages) {
        fputs(",\"messages\":[", f);
        for (size_t i = 0; i < d->n_messages; i++) {
            const Statemesh__V1__AddressMessage *m = d->messages[i];
            fputs(i ? ",{" : "{", f);
            put_value(f, m->argument);
            if (m->caller) {
                fputs(",\"caller\":", f);
                put_address(f, m->caller);
            }
            fputc('}', f);
        }
        fputc(']', f);
    }
    if (d->n_delayed) {
        fputs(",\"delayed\":[", f);
        for (size_t i = 0; i < d->n_delayed; i++) {
            const Statemesh__V1__AddressDelayed *m = d->delayed[i];
            fprintf(f, "%s{\"due_at_ms\":%" PRId64 ",", i ? "," : "", m->due_at_ms);
            put_value(f, m->argument);
            if (m->target && !m->from_ingress && !same_address(m->target, d->address)) {
                fputs(",\"target\":", f);
                put_address(f, m->target);
            }
            if (m->token && m->token[0]) {
                fputs(",\"token\":", f);
                valjson_put_string(f, m->token, strlen(m->token));
            }
            if (m->from_ingress) fputs(",\"from_ingress\":true", f);
            fputc('}', f);
        }
        fputc(']', f);
    }
    fputs("}\n", f);
    return ferror(f) ? -1 : 0;
}
