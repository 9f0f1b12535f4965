/*
 * functions — the registry of bound function types and batch processing
 * (statemesh/function.h, statemesh/invoke.h). No gRPC in this file.
 *
 * Processing one batch:
 *
 *   lookup type ──not bound──────────────────────────────▶ failure
 *        │
 *   every declared spec present in req->state? ──no──────▶ incomplete(missing)
 *        │ yes
 *   slots[i] = req value of spec i (borrowed from req)
 *        │
 *   for each invocation k: handler(ctx{index=k}, argument)
 *        │   state set   → copied (arena if small, else a heap copy the slot owns)
 *        │   send/reply  → copied into the arena, tagged invocation_index=k
 *        │   send_after  → copied into the arena (token unique in the batch)
 *        │   cancel      → drops this batch's delayed message with the token,
 *        │                 records the token once (for earlier batches')
 *        │   egress      → copied into the arena
 *        │   misuse / sm_fail / non-zero return → ctx.failed, stop ──▶ failure
 *        │
 *   result = one mutation per dirty slot (declaration order)
 *            + outgoing messages + replies + delayed messages
 *            + cancellations + egress records, all copied into the arena
 *
 * The runtime applies a result's cancellations before its delayed messages,
 * so "send_after(T) ... cancel(T)" in one batch must not reach it as both:
 * the SDK resolves such sequences itself (see sm_cancel_delayed).
 *
 * The slot buffers are freed at the end of every batch, whatever the outcome;
 * everything in the answer lives in the caller's arena.
 */
#include "statemesh/invoke.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TYPE_LEN 256
#define MAX_ID_LEN 1024
#define MAX_STATE_NAME_LEN 128
#define MAX_TYPENAME_LEN 1024
#define MAX_FAIL_MSG 1024
#define SMALL_VALUE 256 /* state values up to this size are copied into the arena */

/* ---- registry ---- */

struct spec {
    char *name;
    char *typename;
    uint64_t expire_after_write_ms;
    uint64_t expire_after_invoke_ms;
};

struct fn_type {
    char *type;
    sm_handler fn;
    void *udata;
    struct spec *specs;
    size_t n_specs;
};

struct sm_functions {
    struct fn_type *types; /* sorted by type */
    size_t n, cap;
};

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

static bool valid_name(const char *s, size_t max)
{
    size_t n = 0;
    if (!s || !*s) return false;
    for (; s[n]; n++)
        if (!name_char(s[n]) || n >= max) return false;
    return true;
}

static bool valid_type(const char *s)
{
    const char *slash;
    size_t n = 0;
    if (!s || !(slash = strchr(s, '/')) || slash == s || !slash[1]) return false;
    for (const char *p = s; *p; p++, n++) {
        if (n >= MAX_TYPE_LEN) return false;
        if (p != slash && !name_char(*p)) return false;
    }
    return true;
}

static bool valid_id(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n >= 1 && n <= MAX_ID_LEN && sm_utf8_valid(s, n);
}

sm_functions *sm_functions_create(void)
{
    return calloc(1, sizeof(sm_functions));
}

static void fn_type_cleanup(struct fn_type *t)
{
    for (size_t i = 0; i < t->n_specs; i++) {
        free(t->specs[i].name);
        free(t->specs[i].typename);
    }
    free(t->specs);
    free(t->type);
}

static const struct fn_type *lookup(const sm_functions *fns, const char *type, size_t *pos)
{
    size_t lo = 0, hi = fns->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(fns->types[mid].type, type);
        if (c == 0) return &fns->types[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    if (pos) *pos = lo;
    return NULL;
}

int sm_functions_bind(sm_functions *fns, const char *type, const sm_state_spec *specs,
                      size_t n, sm_handler fn, void *udata)
{
    struct fn_type t = {0};
    size_t pos = 0;

    if (!fns || !fn || !valid_type(type) || (n && !specs)) return SM_EINVAL;
    for (size_t i = 0; i < n; i++) {
        const char *tn = specs[i].typename;
        if (!valid_name(specs[i].name, MAX_STATE_NAME_LEN)) return SM_EINVAL;
        if (!tn || !*tn || strlen(tn) > MAX_TYPENAME_LEN) return SM_EINVAL;
        if (specs[i].expire_after_write_ms && specs[i].expire_after_invoke_ms) return SM_EINVAL;
        if (specs[i].expire_after_write_ms > SM_MAX_EXPIRE_MS ||
            specs[i].expire_after_invoke_ms > SM_MAX_EXPIRE_MS)
            return SM_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(specs[i].name, specs[j].name) == 0) return SM_EINVAL;
    }
    if (lookup(fns, type, &pos)) return SM_EEXIST;

    t.fn = fn;
    t.udata = udata;
    t.type = strdup(type);
    t.specs = calloc(n ? n : 1, sizeof *t.specs);
    if (!t.type || !t.specs) goto nomem;
    for (size_t i = 0; i < n; i++, t.n_specs++) {
        t.specs[i].name = strdup(specs[i].name);
        t.specs[i].typename = strdup(specs[i].typename);
        t.specs[i].expire_after_write_ms = specs[i].expire_after_write_ms;
        t.specs[i].expire_after_invoke_ms = specs[i].expire_after_invoke_ms;
        if (!t.specs[i].name || !t.specs[i].typename) {
            t.n_specs++;
            goto nomem;
        }
    }
    if (fns->n == fns->cap) {
        size_t cap = fns->cap ? fns->cap * 2 : 8;
        struct fn_type *nt = realloc(fns->types, cap * sizeof *nt);
        if (!nt) goto nomem;
        fns->types = nt;
        fns->cap = cap;
    }
    memmove(&fns->types[pos + 1], &fns->types[pos], (fns->n - pos) * sizeof t);
    fns->types[pos] = t;
    fns->n++;
    return SM_OK;

nomem:
    fn_type_cleanup(&t);
    return SM_ENOMEM;
}

void sm_functions_destroy(sm_functions **pfns)
{
    if (!pfns || !*pfns) return;
    for (size_t i = 0; i < (*pfns)->n; i++) fn_type_cleanup(&(*pfns)->types[i]);
    free((*pfns)->types);
    free(*pfns);
    *pfns = NULL;
}

size_t sm_functions_count(const sm_functions *fns)
{
    return fns ? fns->n : 0;
}

/* ---- the context of one batch ---- */

struct slot {
    const struct spec *spec;
    bool present;
    bool dirty;               /* written during this batch */
    const char *typename;     /* of the current value */
    const uint8_t *data;      /* borrowed from req, or == owned */
    size_t len;
    uint8_t *owned;           /* heap copy of a large value set by a handler (data == owned) */
};

struct ptr_vec {
    void **items;
    size_t n, cap;
};

struct sm_ctx {
    const struct fn_type *ft;
    sm_arena *arena;
    sm_address self;
    sm_address caller;
    bool has_caller;
    const char *traceparent;  /* the invocation's, NULL: not traced */
    char trace_id[33];
    size_t index, batch_size;
    struct slot *slots;
    struct ptr_vec out_msgs;  /* Statemesh__V1__OutgoingMessage * */
    struct ptr_vec replies;   /* Statemesh__V1__Reply * */
    struct ptr_vec delayed;   /* Statemesh__V1__DelayedMessage * */
    struct ptr_vec cancels;   /* Statemesh__V1__Cancellation *, tokens unique */
    struct ptr_vec egress;    /* Statemesh__V1__EgressRecord * */
    bool failed;
    bool nomem;
    char fail_msg[MAX_FAIL_MSG];
};

static int vfail(sm_ctx *ctx, int rc, const char *fmt, va_list ap)
{
    if (!ctx->failed) {
        ctx->failed = true;
        vsnprintf(ctx->fail_msg, sizeof ctx->fail_msg, fmt, ap);
    }
    return rc;
}

static int fail_rc(sm_ctx *ctx, int rc, const char *fmt, ...) SM_PRINTF(3, 4);
static int fail_rc(sm_ctx *ctx, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(ctx, rc, fmt, ap);
    va_end(ap);
    return rc;
}

int sm_fail(sm_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(ctx, SM_EFAILED, fmt ? fmt : "failed", ap);
    va_end(ap);
    return SM_EFAILED;
}

static int nomem(sm_ctx *ctx)
{
    ctx->nomem = true;
    return fail_rc(ctx, SM_ENOMEM, "out of memory in %s", ctx->ft->type);
}

const sm_address *sm_ctx_self(const sm_ctx *ctx)
{
    return &ctx->self;
}

const sm_address *sm_ctx_caller(const sm_ctx *ctx)
{
    return ctx->has_caller ? &ctx->caller : NULL;
}

const char *sm_ctx_traceparent(const sm_ctx *ctx)
{
    return ctx->traceparent;
}

const char *sm_ctx_trace_id(const sm_ctx *ctx)
{
    return ctx->traceparent ? ctx->trace_id : NULL;
}

size_t sm_ctx_invocation_index(const sm_ctx *ctx)
{
    return ctx->index;
}

size_t sm_ctx_batch_size(const sm_ctx *ctx)
{
    return ctx->batch_size;
}

void *sm_ctx_alloc(sm_ctx *ctx, size_t n)
{
    return sm_arena_alloc(ctx->arena, n);
}

static int vec_push(sm_ctx *ctx, struct ptr_vec *v, void *item)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        void **items = sm_arena_alloc(ctx->arena, cap * sizeof *items);
        if (!items) return nomem(ctx);
        if (v->n) memcpy(items, v->items, v->n * sizeof *items);
        v->items = items;
        v->cap = cap;
    }
    v->items[v->n++] = item;
    return SM_OK;
}

/* Checks the ctx may still be used; every public entry point starts here. */
static int usable(sm_ctx *ctx)
{
    if (!ctx) return SM_EINVAL;
    return ctx->failed ? SM_EFAILED : SM_OK;
}

static int find_slot(sm_ctx *ctx, const char *name, struct slot **out)
{
    int rc = usable(ctx);
    if (rc) return rc;
    if (!name) return fail_rc(ctx, SM_EINVAL, "%s: state name is NULL", ctx->ft->type);
    for (size_t i = 0; i < ctx->ft->n_specs; i++) {
        if (strcmp(ctx->slots[i].spec->name, name) == 0) {
            *out = &ctx->slots[i];
            return SM_OK;
        }
    }
    return fail_rc(ctx, SM_EUNDECLARED, "%s: state '%.128s' is not declared", ctx->ft->type,
                   name);
}

/* ---- state ---- */

int sm_state_get(sm_ctx *ctx, const char *name, sm_value *out)
{
    struct slot *s;
    int rc = find_slot(ctx, name, &s);
    if (rc) return rc;
    if (!s->present) {
        out->typename = s->spec->typename;
        out->data = NULL;
        out->len = 0;
        return SM_ABSENT;
    }
    out->typename = s->typename;
    out->data = s->data;
    out->len = s->len;
    return SM_OK;
}

/* Gets `name` and checks it has `typename`; SM_ABSENT leaves *v empty. */
static int get_typed(sm_ctx *ctx, const char *name, const char *typename, sm_value *v)
{
    int rc = sm_state_get(ctx, name, v);
    if (rc != SM_OK) return rc;
    if (strcmp(v->typename, typename) != 0)
        return fail_rc(ctx, SM_ETYPE, "%s: state '%s' holds %.200s, read as %s", ctx->ft->type,
                       name, v->typename, typename);
    if (sm_value_validate(v) != SM_OK)
        return fail_rc(ctx, SM_EVALUE, "%s: state '%s' is not a valid %s", ctx->ft->type, name,
                       typename);
    return SM_OK;
}

int sm_state_get_int64(sm_ctx *ctx, const char *name, int64_t *out)
{
    sm_value v;
    int rc = get_typed(ctx, name, SM_TYPE_INT64, &v);
    *out = rc == SM_OK ? sm_decode_int64(v.data) : 0;
    return rc;
}

int sm_state_get_float64(sm_ctx *ctx, const char *name, double *out)
{
    sm_value v;
    int rc = get_typed(ctx, name, SM_TYPE_FLOAT64, &v);
    *out = rc == SM_OK ? sm_decode_float64(v.data) : 0.0;
    return rc;
}

int sm_state_get_bool(sm_ctx *ctx, const char *name, bool *out)
{
    sm_value v;
    int rc = get_typed(ctx, name, SM_TYPE_BOOL, &v);
    *out = rc == SM_OK ? v.data[0] == 1 : false;
    return rc;
}

static int get_bytes_as(sm_ctx *ctx, const char *name, const char *typename,
                        const uint8_t **data, size_t *len)
{
    sm_value v;
    int rc = get_typed(ctx, name, typename, &v);
    if (rc == SM_OK && v.len) {
        *data = v.data;
        *len = v.len;
    } else {
        *data = (const uint8_t *)"";
        *len = 0;
    }
    return rc;
}

int sm_state_get_string(sm_ctx *ctx, const char *name, const char **s, size_t *len)
{
    return get_bytes_as(ctx, name, SM_TYPE_STRING, (const uint8_t **)s, len);
}

int sm_state_get_json(sm_ctx *ctx, const char *name, const char **s, size_t *len)
{
    return get_bytes_as(ctx, name, SM_TYPE_JSON, (const uint8_t **)s, len);
}

int sm_state_get_bytes(sm_ctx *ctx, const char *name, const uint8_t **data, size_t *len)
{
    return get_bytes_as(ctx, name, SM_TYPE_BYTES, data, len);
}

int sm_state_set(sm_ctx *ctx, const char *name, const sm_value *v)
{
    struct slot *s;
    uint8_t *copy;
    int rc = find_slot(ctx, name, &s);

    if (rc) return rc;
    if (!v || !v->typename)
        return fail_rc(ctx, SM_EINVAL, "%s: state '%s' set to a NULL value", ctx->ft->type, name);
    if (strcmp(v->typename, s->spec->typename) != 0)
        return fail_rc(ctx, SM_ETYPE, "%s: state '%s' is declared %s, set to %.200s",
                       ctx->ft->type, name, s->spec->typename, v->typename);
    if ((rc = sm_value_validate(v)) != SM_OK)
        return fail_rc(ctx, rc, "%s: state '%s' set to an invalid %s value", ctx->ft->type, name,
                       v->typename);
    /* A fresh buffer each time: v may point into the slot's current one.
     * Small values go to the arena (no free needed), large ones to the heap
     * so that rewriting a big state N times in a batch costs one copy, not N. */
    if (v->len <= SMALL_VALUE) {
        copy = sm_arena_alloc(ctx->arena, v->len + 1);
        if (!copy) return nomem(ctx);
        free(s->owned);
        s->owned = NULL;
    } else {
        copy = malloc(v->len + 1);
        if (!copy) return nomem(ctx);
        free(s->owned);
        s->owned = copy;
    }
    if (v->len) memcpy(copy, v->data, v->len);
    copy[v->len] = '\0';
    s->data = copy;
    s->len = v->len;
    s->typename = s->spec->typename;
    s->present = true;
    s->dirty = true;
    return SM_OK;
}

int sm_state_set_int64(sm_ctx *ctx, const char *name, int64_t v)
{
    uint8_t buf[SM_SCALAR_SIZE];
    sm_value val = sm_value_int64(v, buf);
    return sm_state_set(ctx, name, &val);
}

int sm_state_set_float64(sm_ctx *ctx, const char *name, double v)
{
    uint8_t buf[SM_SCALAR_SIZE];
    sm_value val = sm_value_float64(v, buf);
    return sm_state_set(ctx, name, &val);
}

int sm_state_set_bool(sm_ctx *ctx, const char *name, bool v)
{
    uint8_t buf[SM_SCALAR_SIZE];
    sm_value val = sm_value_bool(v, buf);
    return sm_state_set(ctx, name, &val);
}

int sm_state_set_string(sm_ctx *ctx, const char *name, const char *s)
{
    sm_value val = sm_value_string(s);
    return sm_state_set(ctx, name, &val);
}

int sm_state_set_json(sm_ctx *ctx, const char *name, const char *json)
{
    sm_value val = sm_value_json(json);
    return sm_state_set(ctx, name, &val);
}

int sm_state_set_bytes(sm_ctx *ctx, const char *name, const void *data, size_t len)
{
    sm_value val = sm_value_bytes(data, len);
    return sm_state_set(ctx, name, &val);
}

int sm_state_delete(sm_ctx *ctx, const char *name)
{
    struct slot *s;
    int rc = find_slot(ctx, name, &s);
    if (rc) return rc;
    free(s->owned);
    s->owned = NULL;
    s->data = NULL;
    s->len = 0;
    s->present = false;
    s->dirty = true;
    return SM_OK;
}

/* ---- messages and replies ---- */

static Statemesh__V1__TypedValue *typed_copy(sm_arena *a, const char *typename,
                                             const void *data, size_t len)
{
    Statemesh__V1__TypedValue *tv = sm_arena_alloc(a, sizeof *tv);
    if (!tv) return NULL;
    statemesh__v1__typed_value__init(tv);
    tv->typename_ = sm_arena_strdup(a, typename);
    tv->value.len = len;
    tv->value.data = sm_arena_memdup(a, data, len);
    if (!tv->typename_ || !tv->value.data) return NULL;
    return tv;
}

static int check_out_value(sm_ctx *ctx, const char *what, const sm_value *v)
{
    int rc;
    if (!v) return fail_rc(ctx, SM_EINVAL, "%s: %s with a NULL value", ctx->ft->type, what);
    if ((rc = sm_value_validate(v)) != SM_OK)
        return fail_rc(ctx, rc, "%s: %s with an invalid value (%s)", ctx->ft->type, what,
                       v->typename ? v->typename : "no typename");
    return SM_OK;
}

/* Checks the target and value of a message (`what`: "send", "send_after"). */
static int check_message(sm_ctx *ctx, const char *what, const char *type, const char *id,
                         const sm_value *v)
{
    if (!valid_type(type))
        return fail_rc(ctx, SM_EINVAL, "%s: %s to malformed function type '%.256s'",
                       ctx->ft->type, what, type ? type : "(null)");
    if (!valid_id(id))
        return fail_rc(ctx, SM_EINVAL,
                       "%s: %s to %s with an id that is not 1..1024 bytes of UTF-8",
                       ctx->ft->type, what, type);
    return check_out_value(ctx, what, v);
}

/* Arena copies of an address and a value; NULL on OOM. */
static Statemesh__V1__Address *address_copy(sm_arena *a, const char *type, const char *id)
{
    Statemesh__V1__Address *addr = sm_arena_alloc(a, sizeof *addr);
    if (!addr) return NULL;
    statemesh__v1__address__init(addr);
    addr->type = sm_arena_strdup(a, type);
    addr->id = sm_arena_strdup(a, id);
    return addr->type && addr->id ? addr : NULL;
}

int sm_send(sm_ctx *ctx, const char *type, const char *id, const sm_value *v)
{
    Statemesh__V1__OutgoingMessage *m;
    int rc = usable(ctx);

    if (rc) return rc;
    if ((rc = check_message(ctx, "send", type, id, v))) return rc;
    m = sm_arena_alloc(ctx->arena, sizeof *m);
    if (!m) return nomem(ctx);
    statemesh__v1__outgoing_message__init(m);
    m->target = address_copy(ctx->arena, type, id);
    m->argument = typed_copy(ctx->arena, v->typename, v->data, v->len);
    m->invocation_index = (uint32_t)ctx->index;
    if (!m->target || !m->argument) return nomem(ctx);
    return vec_push(ctx, &ctx->out_msgs, m);
}

int sm_send_int64(sm_ctx *ctx, const char *type, const char *id, int64_t v)
{
    uint8_t buf[SM_SCALAR_SIZE];
    sm_value val = sm_value_int64(v, buf);
    return sm_send(ctx, type, id, &val);
}

int sm_send_string(sm_ctx *ctx, const char *type, const char *id, const char *s)
{
    sm_value val = sm_value_string(s);
    return sm_send(ctx, type, id, &val);
}

int sm_send_json(sm_ctx *ctx, const char *type, const char *id, const char *json)
{
    sm_value val = sm_value_json(json);
    return sm_send(ctx, type, id, &val);
}

/* ---- delayed messages and cancellations ---- */

static bool valid_token(const char *t)
{
    size_t n = strlen(t);
    return n >= 1 && n <= SM_MAX_TOKEN_LEN && sm_utf8_valid(t, n);
}

/* Index in ctx->delayed of this batch's delayed message with `token`, or -1. */
static long find_delayed(const sm_ctx *ctx, const char *token)
{
    for (size_t i = 0; i < ctx->delayed.n; i++) {
        const Statemesh__V1__DelayedMessage *d = ctx->delayed.items[i];
        if (strcmp(d->cancellation_token, token) == 0) return (long)i;
    }
    return -1;
}

int sm_send_after(sm_ctx *ctx, uint64_t delay_ms, const char *type, const char *id,
                  const sm_value *v, const char *cancellation_token)
{
    Statemesh__V1__DelayedMessage *d;
    int rc = usable(ctx);

    if (rc) return rc;
    if (delay_ms > SM_MAX_DELAY_MS)
        return fail_rc(ctx, SM_EINVAL, "%s: send_after delay %llu ms is above the maximum of %llu ms (365 days)",
                       ctx->ft->type, (unsigned long long)delay_ms,
                       (unsigned long long)SM_MAX_DELAY_MS);
    if ((rc = check_message(ctx, "send_after", type, id, v))) return rc;
    if (cancellation_token) {
        if (!valid_token(cancellation_token))
            return fail_rc(ctx, SM_EINVAL,
                           "%s: send_after with a cancellation token that is not 1..%d bytes of UTF-8",
                           ctx->ft->type, SM_MAX_TOKEN_LEN);
        if (find_delayed(ctx, cancellation_token) >= 0)
            return fail_rc(ctx, SM_EEXIST,
                           "%s: cancellation token '%.256s' is already used by a delayed message "
                           "of this batch",
                           ctx->ft->type, cancellation_token);
    }
    d = sm_arena_alloc(ctx->arena, sizeof *d);
    if (!d) return nomem(ctx);
    statemesh__v1__delayed_message__init(d);
    d->target = address_copy(ctx->arena, type, id);
    d->argument = typed_copy(ctx->arena, v->typename, v->data, v->len);
    d->delay_ms = delay_ms;
    if (cancellation_token) d->cancellation_token = sm_arena_strdup(ctx->arena, cancellation_token);
    if (!d->target || !d->argument || !d->cancellation_token) return nomem(ctx);
    return vec_push(ctx, &ctx->delayed, d);
}

int sm_send_after_int64(sm_ctx *ctx, uint64_t delay_ms, const char *type, const char *id,
                        int64_t v, const char *cancellation_token)
{
    uint8_t buf[SM_SCALAR_SIZE];
    sm_value val = sm_value_int64(v, buf);
    return sm_send_after(ctx, delay_ms, type, id, &val, cancellation_token);
}

int sm_send_after_string(sm_ctx *ctx, uint64_t delay_ms, const char *type, const char *id,
                         const char *s, const char *cancellation_token)
{
    sm_value val = sm_value_string(s);
    return sm_send_after(ctx, delay_ms, type, id, &val, cancellation_token);
}

int sm_send_after_json(sm_ctx *ctx, uint64_t delay_ms, const char *type, const char *id,
                       const char *json, const char *cancellation_token)
{
    sm_value val = sm_value_json(json);
    return sm_send_after(ctx, delay_ms, type, id, &val, cancellation_token);
}

int sm_cancel_delayed(sm_ctx *ctx, const char *token)
{
    Statemesh__V1__Cancellation *c;
    long i;
    int rc = usable(ctx);

    if (rc) return rc;
    if (!token || !valid_token(token))
        return fail_rc(ctx, SM_EINVAL, "%s: cancel_delayed with a token that is not 1..%d bytes of UTF-8",
                       ctx->ft->type, SM_MAX_TOKEN_LEN);
    /* A delayed message of this very batch: drop it (order kept). */
    if ((i = find_delayed(ctx, token)) >= 0) {
        memmove(&ctx->delayed.items[i], &ctx->delayed.items[i + 1],
                (ctx->delayed.n - (size_t)i - 1) * sizeof *ctx->delayed.items);
        ctx->delayed.n--;
    }
    /* And one cancellation per token, for a message of an earlier batch. */
    for (size_t k = 0; k < ctx->cancels.n; k++)
        if (strcmp(((Statemesh__V1__Cancellation *)ctx->cancels.items[k])->token, token) == 0)
            return SM_OK;
    c = sm_arena_alloc(ctx->arena, sizeof *c);
    if (!c) return nomem(ctx);
    statemesh__v1__cancellation__init(c);
    if (!(c->token = sm_arena_strdup(ctx->arena, token))) return nomem(ctx);
    return vec_push(ctx, &ctx->cancels, c);
}

/* ---- egress ---- */

int sm_send_egress(sm_ctx *ctx, const char *egress, const sm_value *v)
{
    Statemesh__V1__EgressRecord *e;
    int rc = usable(ctx);

    if (rc) return rc;
    if (!valid_name(egress, SM_MAX_EGRESS_NAME_LEN))
        return fail_rc(ctx, SM_EINVAL,
                       "%s: egress name '%.128s' is not [A-Za-z0-9_.-]{1,%d}", ctx->ft->type,
                       egress ? egress : "(null)", SM_MAX_EGRESS_NAME_LEN);
    if ((rc = check_out_value(ctx, "send_egress", v))) return rc;
    e = sm_arena_alloc(ctx->arena, sizeof *e);
    if (!e) return nomem(ctx);
    statemesh__v1__egress_record__init(e);
    e->egress = sm_arena_strdup(ctx->arena, egress);
    e->value = typed_copy(ctx->arena, v->typename, v->data, v->len);
    if (!e->egress || !e->value) return nomem(ctx);
    return vec_push(ctx, &ctx->egress, e);
}

int sm_send_egress_int64(sm_ctx *ctx, const char *egress, int64_t v)
{
    uint8_t buf[SM_SCALAR_SIZE];
    sm_value val = sm_value_int64(v, buf);
    return sm_send_egress(ctx, egress, &val);
}

int sm_send_egress_string(sm_ctx *ctx, const char *egress, const char *s)
{
    sm_value val = sm_value_string(s);
    return sm_send_egress(ctx, egress, &val);
}

int sm_send_egress_json(sm_ctx *ctx, const char *egress, const char *json)
{
    sm_value val = sm_value_json(json);
    return sm_send_egress(ctx, egress, &val);
}

/* ---- replies ---- */

int sm_reply(sm_ctx *ctx, const sm_value *v)
{
    Statemesh__V1__Reply *r;
    int rc = usable(ctx);

    if (rc) return rc;
    if ((rc = check_out_value(ctx, "reply", v))) return rc;
    r = sm_arena_alloc(ctx->arena, sizeof *r);
    if (!r) return nomem(ctx);
    statemesh__v1__reply__init(r);
    r->invocation_index = (uint32_t)ctx->index;
    r->value = typed_copy(ctx->arena, v->typename, v->data, v->len);
    if (!r->value) return nomem(ctx);
    return vec_push(ctx, &ctx->replies, r);
}

int sm_reply_int64(sm_ctx *ctx, int64_t v)
{
    uint8_t buf[SM_SCALAR_SIZE];
    sm_value val = sm_value_int64(v, buf);
    return sm_reply(ctx, &val);
}

int sm_reply_string(sm_ctx *ctx, const char *s)
{
    sm_value val = sm_value_string(s);
    return sm_reply(ctx, &val);
}

int sm_reply_json(sm_ctx *ctx, const char *json)
{
    sm_value val = sm_value_json(json);
    return sm_reply(ctx, &val);
}

/* ---- batch processing ---- */

static int answer_failure(sm_arena *a, Statemesh__V1__BatchResponse *out, const char *msg)
{
    Statemesh__V1__Failure *f = sm_arena_alloc(a, sizeof *f);
    if (!f) return SM_ENOMEM;
    statemesh__v1__failure__init(f);
    f->message = sm_arena_strdup(a, msg);
    if (!f->message) return SM_ENOMEM;
    out->outcome_case = STATEMESH__V1__BATCH_RESPONSE__OUTCOME_FAILURE;
    out->failure = f;
    return SM_OK;
}

static Statemesh__V1__StateSpec *spec_msg(sm_arena *a, const struct spec *sp)
{
    Statemesh__V1__StateSpec *m = sm_arena_alloc(a, sizeof *m);
    if (!m) return NULL;
    statemesh__v1__state_spec__init(m);
    m->name = sm_arena_strdup(a, sp->name);
    m->typename_ = sm_arena_strdup(a, sp->typename);
    m->expire_after_write_ms = sp->expire_after_write_ms;
    m->expire_after_invoke_ms = sp->expire_after_invoke_ms;
    return m->name && m->typename_ ? m : NULL;
}

static const Statemesh__V1__StateValue *find_state(const Statemesh__V1__BatchRequest *req,
                                                   const char *name)
{
    for (size_t i = 0; i < req->n_state; i++)
        if (req->state[i] && req->state[i]->name && strcmp(req->state[i]->name, name) == 0)
            return req->state[i];
    return NULL;
}

/* Answers `incomplete` if some declared spec has no entry in req->state.
 * Returns 1 if it did, 0 if nothing is missing, SM_ENOMEM. */
static int check_incomplete(const struct fn_type *ft, const Statemesh__V1__BatchRequest *req,
                            sm_arena *a, Statemesh__V1__BatchResponse *out)
{
    Statemesh__V1__Incomplete *inc = NULL;

    for (size_t i = 0; i < ft->n_specs; i++) {
        if (find_state(req, ft->specs[i].name)) continue;
        if (!inc) {
            inc = sm_arena_alloc(a, sizeof *inc);
            if (!inc) return SM_ENOMEM;
            statemesh__v1__incomplete__init(inc);
            inc->missing_states = sm_arena_alloc(a, ft->n_specs * sizeof *inc->missing_states);
            if (!inc->missing_states) return SM_ENOMEM;
        }
        if (!(inc->missing_states[inc->n_missing_states++] = spec_msg(a, &ft->specs[i])))
            return SM_ENOMEM;
    }
    if (!inc) return 0;
    out->outcome_case = STATEMESH__V1__BATCH_RESPONSE__OUTCOME_INCOMPLETE;
    out->incomplete = inc;
    return 1;
}

static int build_result(sm_ctx *ctx, Statemesh__V1__BatchResponse *out)
{
    sm_arena *a = ctx->arena;
    Statemesh__V1__Result *r = sm_arena_alloc(a, sizeof *r);
    size_t n_dirty = 0;

    if (!r) return SM_ENOMEM;
    statemesh__v1__result__init(r);
    for (size_t i = 0; i < ctx->ft->n_specs; i++) n_dirty += ctx->slots[i].dirty;
    if (n_dirty) {
        r->state_mutations = sm_arena_alloc(a, n_dirty * sizeof *r->state_mutations);
        if (!r->state_mutations) return SM_ENOMEM;
    }
    for (size_t i = 0; i < ctx->ft->n_specs; i++) {
        struct slot *s = &ctx->slots[i];
        Statemesh__V1__StateMutation *m;
        if (!s->dirty) continue;
        m = sm_arena_alloc(a, sizeof *m);
        if (!m) return SM_ENOMEM;
        statemesh__v1__state_mutation__init(m);
        m->name = sm_arena_strdup(a, s->spec->name);
        if (!m->name) return SM_ENOMEM;
        if (s->present) {
            m->kind = STATEMESH__V1__STATE_MUTATION__KIND__MODIFY;
            m->value = typed_copy(a, s->typename, s->data, s->len);
            if (!m->value) return SM_ENOMEM;
        } else {
            m->kind = STATEMESH__V1__STATE_MUTATION__KIND__DELETE;
        }
        r->state_mutations[r->n_state_mutations++] = m;
    }
    r->n_outgoing_messages = ctx->out_msgs.n;
    r->outgoing_messages = (Statemesh__V1__OutgoingMessage **)ctx->out_msgs.items;
    r->n_replies = ctx->replies.n;
    r->replies = (Statemesh__V1__Reply **)ctx->replies.items;
    r->n_delayed_messages = ctx->delayed.n;
    r->delayed_messages = (Statemesh__V1__DelayedMessage **)ctx->delayed.items;
    r->n_cancellations = ctx->cancels.n;
    r->cancellations = (Statemesh__V1__Cancellation **)ctx->cancels.items;
    r->n_egress_records = ctx->egress.n;
    r->egress_records = (Statemesh__V1__EgressRecord **)ctx->egress.items;
    out->outcome_case = STATEMESH__V1__BATCH_RESPONSE__OUTCOME_RESULT;
    out->result = r;
    return SM_OK;
}

static const uint8_t empty_bytes[1];

int sm_functions_process(const sm_functions *fns, const Statemesh__V1__BatchRequest *req,
                         sm_arena *arena, Statemesh__V1__BatchResponse *out)
{
    const struct fn_type *ft;
    sm_ctx ctx;
    char msg[MAX_FAIL_MSG];
    int rc = SM_OK;

    statemesh__v1__batch_response__init(out);
    out->batch_id = req->batch_id;
    if (!req->target || !req->target->type || !req->target->type[0])
        return answer_failure(arena, out, "batch has no target address");
    if (!(ft = lookup(fns, req->target->type, NULL))) {
        snprintf(msg, sizeof msg, "function type %.256s not served here", req->target->type);
        return answer_failure(arena, out, msg);
    }
    if ((rc = check_incomplete(ft, req, arena, out)) != 0) return rc < 0 ? rc : SM_OK;

    memset(&ctx, 0, sizeof ctx);
    ctx.ft = ft;
    ctx.arena = arena;
    ctx.self.type = req->target->type;
    ctx.self.id = req->target->id ? req->target->id : "";
    ctx.batch_size = req->n_invocations;
    ctx.slots = sm_arena_alloc(arena, (ft->n_specs ? ft->n_specs : 1) * sizeof *ctx.slots);
    if (!ctx.slots) return SM_ENOMEM;
    for (size_t i = 0; i < ft->n_specs; i++) {
        const Statemesh__V1__StateValue *sv = find_state(req, ft->specs[i].name);
        struct slot *s = &ctx.slots[i];
        memset(s, 0, sizeof *s);
        s->spec = &ft->specs[i];
        if (sv->value) {
            s->present = true;
            s->typename = sv->value->typename_ ? sv->value->typename_ : "";
            s->len = sv->value->value.len;
            s->data = s->len ? sv->value->value.data : empty_bytes;
        }
    }

    for (size_t k = 0; k < req->n_invocations && !ctx.failed; k++) {
        const Statemesh__V1__Invocation *inv = req->invocations[k];
        sm_value message = {"", empty_bytes, 0};
        int hrc;

        ctx.index = k;
        ctx.has_caller = inv && inv->caller;
        if (ctx.has_caller) {
            ctx.caller.type = inv->caller->type;
            ctx.caller.id = inv->caller->id;
        }
        /* "vv-<32 hex>-<16 hex>-ff": the trace id is characters 3..34. */
        ctx.traceparent = inv && inv->traceparent && strlen(inv->traceparent) >= 55 &&
                                  inv->traceparent[2] == '-' && inv->traceparent[35] == '-'
                              ? inv->traceparent : NULL;
        if (ctx.traceparent) {
            memcpy(ctx.trace_id, ctx.traceparent + 3, 32);
            ctx.trace_id[32] = '\0';
        }
        if (inv && inv->argument) {
            message.typename = inv->argument->typename_ ? inv->argument->typename_ : "";
            message.len = inv->argument->value.len;
            if (message.len) message.data = inv->argument->value.data;
        }
        hrc = ft->fn(&ctx, &message, ft->udata);
        if (hrc != 0 && !ctx.failed)
            fail_rc(&ctx, SM_EFAILED, "%s: handler returned %d at invocation %zu of %zu",
                    ft->type, hrc, k, req->n_invocations);
    }

    if (ctx.nomem) rc = SM_ENOMEM;
    else if (ctx.failed) rc = answer_failure(arena, out, ctx.fail_msg);
    else rc = build_result(&ctx, out);

    for (size_t i = 0; i < ft->n_specs; i++) free(ctx.slots[i].owned);
    return rc;
}

int sm_functions_describe(const sm_functions *fns, sm_arena *a,
                          Statemesh__V1__DescribeResponse *out)
{
    statemesh__v1__describe_response__init(out);
    out->sdk = sm_arena_strdup(a, "statemesh-c/" SM_SDK_VERSION);
    out->functions = sm_arena_alloc(a, (fns->n ? fns->n : 1) * sizeof *out->functions);
    if (!out->sdk || !out->functions) return SM_ENOMEM;
    for (size_t i = 0; i < fns->n; i++) {
        const struct fn_type *ft = &fns->types[i];
        Statemesh__V1__FunctionSpec *fs = sm_arena_alloc(a, sizeof *fs);
        if (!fs) return SM_ENOMEM;
        statemesh__v1__function_spec__init(fs);
        fs->type = sm_arena_strdup(a, ft->type);
        fs->states = sm_arena_alloc(a, (ft->n_specs ? ft->n_specs : 1) * sizeof *fs->states);
        if (!fs->type || !fs->states) return SM_ENOMEM;
        for (size_t j = 0; j < ft->n_specs; j++) {
            if (!(fs->states[j] = spec_msg(a, &ft->specs[j]))) return SM_ENOMEM;
            fs->n_states++;
        }
        out->functions[out->n_functions++] = fs;
    }
    return SM_OK;
}
