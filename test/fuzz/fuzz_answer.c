/*
 * fuzz_answer — libFuzzer harness for function answers: FromFunction bytes
 * as a function server sends them on an Invoke stream.
 *
 * runtime/endpoint.c is included (its statics are the answer path) and the
 * input goes where on_message() puts a stream message: decoded with
 * statemesh__v1__from_function__unpack into the endpoint's arena
 * (wire_arena_allocator), then deliver_all() — the NUL-in-string check that
 * compares each BatchResponse with its own wire bytes (wire_next), the
 * batch_id -> slot lookup — and, for an answer to the batch in flight,
 * dispatch's disp_on_response(): validate() and apply_result() into the open
 * checkpoint (state cache, store batch, outgoing, delayed and egress
 * records, idempotent replies), or handle_incomplete(), or retry_later()
 * and, with retry.max_attempts = 1, dl_bury(). The arena is reset after.
 *
 * Set-up per input (fz_server.h: the server as main() builds it, a real
 * store, no gRPC): endpoint 0 serves "fz/a", described with states
 * "count" (statemesh/int64) and "seen" (fz/seen, expires 1 s after write);
 * three messages for fz/a "id1" (one from the ingress, one from fz/b "x"
 * with reply key "rk", one answering ingress call 5) are queued with
 * disp_recover and taken as one batch in slot 0, so its batch_id is always
 * 1 << 32 (4294967296). Not driven: on_message's garbage branch (it cancels
 * the gRPC stream, which needs a live call): undecodable input stops after
 * the unpack.
 */
#include "../../runtime/endpoint.c"

#include "fz_server.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_setup("answer");
    return 0;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p) abort();
    return p;
}

/* What a Describe answer would have registered (freed by ep_cleanup). */
static void describe(struct endpoint *ep)
{
    struct ftype *ft = calloc(1, sizeof *ft);
    if (!ft) abort();
    ft->name = xstrdup("fz/a");
    ft->nspecs = 2;
    ft->spec_names = calloc(2, sizeof *ft->spec_names);
    ft->spec_types = calloc(2, sizeof *ft->spec_types);
    ft->spec_ttl_write = calloc(2, sizeof *ft->spec_ttl_write);
    ft->spec_ttl_invoke = calloc(2, sizeof *ft->spec_ttl_invoke);
    if (!ft->spec_names || !ft->spec_types || !ft->spec_ttl_write || !ft->spec_ttl_invoke) abort();
    ft->spec_names[0] = xstrdup("count");
    ft->spec_types[0] = xstrdup("statemesh/int64");
    ft->spec_names[1] = xstrdup("seen");
    ft->spec_types[1] = xstrdup("fz/seen");
    ft->spec_ttl_write[1] = 1000;
    ep->types = ft;
    ep->ntypes = 1;
    ep->described = 1;
    ep->state = EP_UP;
}

/* Queues three messages for fz/a id1 and puts them in flight as one batch,
 * as dispatch_one() does before encoding it. Returns the batch_id. */
static uint64_t batch_in_flight(struct server *s, struct endpoint *ep)
{
    static const uint8_t v[] = {0x08, 0x01};
    struct msg *m[3];
    struct mbox *mb;
    uint64_t id;

    m[0] = msg_create(NULL, NULL, "statemesh/string", (const uint8_t *)"hi", 2, NULL);
    m[1] = msg_create("fz/b", "x", "fz/thing", v, sizeof v, "rk");
    m[2] = msg_create(NULL, NULL, "statemesh/string", (const uint8_t *)"", 0, NULL);
    m[2]->call_id = 5;
    for (int i = 0; i < 3; i++) {
        m[i]->seq = (uint64_t)i + 1;
        disp_recover(s, ep, "fz/a", "id1", m[i]);
    }
    mb = mbox_list_pop(&ep->ready);
    if (!mb || mbox_take_batch(mb, (uint32_t)ep->cfg->max_batch) != 3) abort();
    mb->state = MBOX_INFLIGHT;
    /* ep_reserve() assigns the batch to an open stream; pretend stream 0 is
     * open for that moment (nothing is ever written to it). */
    ep->streams[0].rs = (struct rpc_stream *)ep;
    id = ep_reserve(ep, mb);
    ep->streams[0].rs = NULL;
    return id;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct server s;
    struct endpoint *ep;
    ProtobufCAllocator pba;
    Statemesh__V1__FromFunction *f;

    if (size > 1 << 20) return 0;
    fz_server_up(&s);
    if (egress_open(&s) != 0) abort();         /* main() opens the egress logs first */
    ep = &s.endpoints[0];
    describe(ep);
    if (batch_in_flight(&s, ep) != (uint64_t)1 << 32) abort();

    /* on_message(), less the stream cancel on garbage */
    pba = wire_arena_allocator(ep->answers);
    f = statemesh__v1__from_function__unpack(&pba, size, data);
    if (f) deliver_all(ep, f, data, size);
    sm_arena_reset(ep->answers);

    fz_server_down(&s);
    return 0;
}
