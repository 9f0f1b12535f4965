/*
 * fuzz_ingress — libFuzzer harness for the requests clients send: the
 * Ingress (Send, Call, SendStream, Subscribe), Admin (GetState, Stats,
 * dead letters list/replay/drop, Inspect, ListStuck, Skip, Resume) and
 * Health methods.
 *
 * The first byte of an input picks the method (methods[] below, modulo
 * its length); the rest is the request as gRPC hands it to the runtime.
 * The runtime's own handlers get it: ingress_create() registers them (with
 * admin_register() and egress_subscribe()) on test/fuzz/rpc_fake.c, which
 * stands in for runtime/rpc.c, and the harness calls the handler by its
 * gRPC method name. So the request goes through exactly what statemeshd
 * runs: the unpack, wire_check_strings, the address checks (address.c),
 * the limits, then admit() into the open checkpoint (dispatch's queues,
 * delayed messages, idempotency records) or the admin action (Skip,
 * Resume, dead-letter replay/drop into the checkpoint batch). A stream
 * method gets the rest as its one frame, then the client's half-close.
 *
 * Checked besides the sanitizers (rpc_fake.c aborts on a call answered
 * twice, left without an answer or cancel callback, or a stream used after
 * it ended): a refused unary request has a non-empty message and changed
 * nothing (no message counted, the checkpoint as clean as before). After the
 * request, the after-commit phase of main()'s commit() runs, less the store
 * write (acks and replies released to the ingress, SendStream acks), then
 * shutdown as main() does it.
 *
 * Set-up (fz_server.h, a real store, no gRPC): once, the store gets a state
 * ("count" of fz/a p), two dead letters (fz/a d1, fz/b d2) and three records
 * of the egress "out". Per input, fz/a q has a queued message and fz/a p is
 * paused with one (retries exhausted): Inspect, ListStuck, Skip and Resume
 * have something to act on. Nothing is committed per input: the store
 * stays as set up, so an input always behaves the same.
 */
#include "../../runtime/ingress.c"

#include "deadletter.h"
#include "fz_server.h"
#include "rpc_fake.h"

static const char *const methods[] = {
    "/statemesh.v1.Ingress/Send",            /* 0 */
    "/statemesh.v1.Ingress/Call",            /* 1 */
    "/statemesh.v1.Ingress/SendStream",      /* 2 */
    "/statemesh.v1.Ingress/Subscribe",       /* 3 */
    "/statemesh.v1.Admin/GetState",          /* 4 */
    "/statemesh.v1.Admin/Stats",             /* 5 */
    "/statemesh.v1.Admin/ListDeadLetters",   /* 6 */
    "/statemesh.v1.Admin/ReplayDeadLetters", /* 7 */
    "/statemesh.v1.Admin/DropDeadLetters",   /* 8 */
    "/statemesh.v1.Admin/Inspect",           /* 9 */
    "/statemesh.v1.Admin/ListStuck",         /* 10 */
    "/statemesh.v1.Admin/Skip",              /* 11 */
    "/statemesh.v1.Admin/Resume",            /* 12 */
    "/grpc.health.v1.Health/Check",          /* 13 */
};
#define NMETHODS (sizeof methods / sizeof methods[0])

static void put_state(struct server *s)
{
    Statemesh__V1__StoredState st = STATEMESH__V1__STORED_STATE__INIT;
    Statemesh__V1__TypedValue v = STATEMESH__V1__TYPED_VALUE__INIT;
    static const uint8_t seven[] = {0, 0, 0, 0, 0, 0, 0, 7};
    uint8_t *buf;
    size_t len;
    v.typename_ = "statemesh/int64";
    v.value.data = (uint8_t *)seven;
    v.value.len = sizeof seven;
    st.value = &v;
    buf = rpc_pack(&st.base, &len);
    store_batch_put_state(s->ckpt.batch, "fz/a", "p", "count", buf, len);
    free(buf);
}

/* A message for type/id buried as dispatch does once retries are exhausted. */
static void bury(struct server *s, const char *type, const char *id)
{
    struct msg *m = msg_create(NULL, NULL, "statemesh/string", (const uint8_t *)"dead", 4, NULL);
    struct mbox *mb;
    m->seq = s->next_seq++;
    disp_recover(s, &s->endpoints[0], type, id, m);
    mb = mbox_find(&s->mboxes, type, id);
    if (!mb || mbox_take_batch(mb, 1) != 1) abort();
    mb->state = MBOX_INFLIGHT;
    mb->attempts = 1;
    dl_bury(s, mb, "seeded failure");
}

static void seed_store(void)
{
    struct server s;
    struct mbox *mb;

    fz_server_up(&s);
    if (egress_open(&s) != 0 || dl_open(&s) != 0) abort();
    put_state(&s);
    bury(&s, "fz/a", "d1");
    bury(&s, "fz/b", "d2");
    for (int i = 0; i < 3; i++) {
        Statemesh__V1__TypedValue v = STATEMESH__V1__TYPED_VALUE__INIT;
        v.typename_ = "statemesh/string";
        v.value.data = (uint8_t *)"rec";
        v.value.len = 3;
        egress_append(&s, 0, "fz/a", "e", &v);
    }
    egress_before_commit(&s);
    if (ckpt_commit(&s) != 1) abort();
    ckpt_released(&s.ckpt);
    while ((mb = mbox_list_pop(&s.ckpt.parked)) != NULL) disp_unpark(&s, mb);
    fz_server_down(&s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_setup("ingress");
    seed_store();
    return 0;
}

/* What the runtime has when this input arrives: a queued and a paused address. */
static void queue(struct server *s, const char *id, int paused)
{
    struct msg *m = msg_create(NULL, NULL, "statemesh/string", (const uint8_t *)"hi", 2, NULL);
    m->seq = s->next_seq++;
    if (paused) disp_recover_pause(s, &s->endpoints[0], "fz/a", id, "seeded error", 2);
    disp_recover(s, &s->endpoints[0], "fz/a", id, m);
}

/* main()'s commit() after the checkpoint is durable, less the write. */
static void after_commit(struct server *s)
{
    struct ckpt *ck = &s->ckpt;
    struct mbox *mb;
    for (size_t i = 0; i < ck->nacks; i++) ingress_complete(s->ingress, &ck->acks[i]);
    ckpt_released(ck);
    while ((mb = mbox_list_pop(&ck->parked)) != NULL) disp_unpark(s, mb);
    ingress_after_commit(s->ingress);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct server s;
    const char *method;
    int64_t received;
    int dirty;

    if (size < 1 || size > 1 << 20) return 0;
    method = methods[data[0] % NMETHODS];
    fz_server_up(&s);
    if (egress_open(&s) != 0 || dl_open(&s) != 0) abort();
    queue(&s, "q", 0);
    queue(&s, "p", 1);
    if (ingress_create(&s.ingress, &s) != 0) abort();
    received = s.stats.messages_received;
    dirty = ckpt_dirty(&s.ckpt);

    if (strstr(method, "Stream") || strstr(method, "Subscribe")) {
        const uint8_t *frame = data + 1;
        size_t len = size - 1;
        int finished, code;
        if (rpc_fake_stream(s.ingress->rpc, method, &frame, &len, 1, 1, &finished, &code) != 0)
            abort();
        if (getenv("FZ_VERBOSE"))
            fprintf(stderr, "fuzz: %s finished=%d code=%d\n", method, finished, code);
    } else {
        struct rpc_fake_answer a;
        if (rpc_fake_unary(s.ingress->rpc, method, data + 1, size - 1, &a) != 0) abort();
        if (getenv("FZ_VERBOSE"))       /* replaying one input: how it was answered */
            fprintf(stderr, "fuzz: %s answered=%d code=%d msg=%s held=%zu received=%lld\n",
                    method, a.answered, a.code, a.msg, rpc_fake_held(s.ingress->rpc),
                    (long long)s.stats.messages_received);
        if (a.answered && a.code != RPC_OK) {
            if (!a.msg[0]) {
                fprintf(stderr, "fuzz: %s refused (%d) without a message\n", method, a.code);
                abort();
            }
            if (s.stats.messages_received != received || (!dirty && ckpt_dirty(&s.ckpt))) {
                fprintf(stderr, "fuzz: %s refused (%d: %s) but changed the checkpoint\n", method,
                        a.code, a.msg);
                abort();
            }
        }
    }
    after_commit(&s);
    rpc_fake_drive(s.ingress->rpc, 100);

    /* main()'s shutdown */
    s.stopping = 1;
    ingress_shutdown(s.ingress);
    ingress_cancel_all(s.ingress);
    if (!ingress_done(s.ingress)) abort();
    ingress_destroy(&s.ingress);
    fz_server_down(&s);
    return 0;
}
