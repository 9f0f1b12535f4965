/*
 * embedded — loading a module and running batches through it; see embedded.h
 * for the module contract and the trade-offs.
 *
 * Memory: two SDK arenas per module. `req` holds the decoded ToFunction of
 * the frame being processed (protobuf-c allocates through it, so decoding
 * costs no malloc per field); `resp` holds one batch's answer and is reset
 * after the answer callback returns, so a frame of a thousand batches needs
 * the memory of one answer. Both are reset, not freed, between frames.
 */
#include "embedded.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "statemesh/function.h"
#include "statemesh/invoke.h"
#include "wire.h"

struct emb_module {
    void *handle;                       /* dlopen */
    char *path;
    sm_functions *fns;                  /* the runtime's registry, bound by init */
    void (*fini)(void);                 /* optional */
    sm_arena *req;                      /* the frame being processed */
    sm_arena *resp;                     /* one batch's answer / the Describe answer */
    Statemesh__V1__DescribeResponse describe;
    int busy;                           /* inside emb_process */
};

/* protobuf-c allocator over an arena: frees are no-ops, the reset frees all. */
/* dlsym() as an object pointer; NULL with the reason in *why when absent. */
static void *find_symbol(void *handle, const char *name, const char **why)
{
    void *sym;

    dlerror();                          /* clear */
    sym = dlsym(handle, name);
    *why = dlerror();
    if (*why != NULL) return NULL;
    if (sym == NULL) *why = "the symbol's address is NULL";
    return sym;
}

static void module_free(struct emb_module *m)
{
    sm_functions_destroy(&m->fns);
    sm_arena_destroy(&m->req);
    sm_arena_destroy(&m->resp);
    free(m->path);
    free(m);
}

int emb_load(struct emb_module **out, const char *path, char *err, size_t errlen)
{
    struct emb_module *m = NULL;
    int (*init)(sm_functions *) = NULL;
    const char *why, *version;
    void *sym;
    int rc = -1, irc, inited = 0;

    *out = NULL;
    m = calloc(1, sizeof *m);
    if (m == NULL) {
        snprintf(err, errlen, "embedded module %s: out of memory", path);
        return -1;
    }
    /* dlopen searches the linker's path for a name without '/'; a configured
     * library is always a file path. */
    m->path = malloc(strlen(path) + 3);
    if (m->path == NULL) {
        snprintf(err, errlen, "embedded module %s: out of memory", path);
        goto out;
    }
    sprintf(m->path, "%s%s", strchr(path, '/') ? "" : "./", path);

    m->handle = dlopen(m->path, RTLD_NOW | RTLD_LOCAL);
    if (m->handle == NULL) {
        why = dlerror();
        snprintf(err, errlen, "cannot load embedded module %s: %s", m->path,
                 why ? why : "unknown dlopen error");
        goto out;
    }
    sym = find_symbol(m->handle, EMB_INIT_SYMBOL, &why);
    if (sym == NULL) {
        snprintf(err, errlen, "embedded module %s does not export " EMB_INIT_SYMBOL
                 " (the module contract: int " EMB_INIT_SYMBOL "(sm_functions *fns); see "
                 "runtime/embedded.h): %s", m->path, why);
        goto out;
    }
    memcpy(&init, &sym, sizeof init);
    version = find_symbol(m->handle, EMB_VERSION_SYMBOL, &why);
    if (version != NULL && strncmp(version, SM_SDK_VERSION, sizeof SM_SDK_VERSION) != 0) {
        snprintf(err, errlen, "embedded module %s was built for SDK version %.32s, this "
                 "statemeshd has " SM_SDK_VERSION "; rebuild the module", m->path, version);
        goto out;
    }
    sym = find_symbol(m->handle, EMB_FINI_SYMBOL, &why);
    if (sym != NULL) memcpy(&m->fini, &sym, sizeof m->fini);

    m->fns = sm_functions_create();
    m->req = sm_arena_create();
    m->resp = sm_arena_create();
    if (m->fns == NULL || m->req == NULL || m->resp == NULL) {
        snprintf(err, errlen, "embedded module %s: out of memory", m->path);
        goto out;
    }
    irc = init(m->fns);
    if (irc != 0) {
        snprintf(err, errlen, EMB_INIT_SYMBOL " of embedded module %s failed (returned %d)",
                 m->path, irc);
        goto out;
    }
    inited = 1;
    if (sm_functions_count(m->fns) == 0) {
        snprintf(err, errlen, EMB_INIT_SYMBOL " of embedded module %s bound no function type "
                 "(call sm_functions_bind for each type it serves)", m->path);
        goto out;
    }
    *out = m;
    m = NULL;
    rc = 0;
out:
    if (m != NULL) {
        sm_functions_destroy(&m->fns);
        if (inited && m->fini) m->fini();
        if (m->handle) dlclose(m->handle);
        module_free(m);
    }
    return rc;
}

void emb_unload(struct emb_module **pm)
{
    struct emb_module *m = pm ? *pm : NULL;

    if (m == NULL) return;
    sm_functions_destroy(&m->fns);      /* before fini: the handlers' udata may go */
    if (m->fini) m->fini();
    dlclose(m->handle);
    module_free(m);
    *pm = NULL;
}

const Statemesh__V1__DescribeResponse *emb_describe(struct emb_module *m)
{
    sm_arena_reset(m->resp);
    if (sm_functions_describe(m->fns, m->resp, &m->describe) != SM_OK) return NULL;
    return &m->describe;
}

int emb_process(struct emb_module *m, const uint8_t *frame, size_t len, emb_answer_fn answer,
                void *arg)
{
    ProtobufCAllocator pba = wire_arena_allocator(m->req);
    Statemesh__V1__ToFunction *tf;

    if (m->busy) return -1;
    tf = statemesh__v1__to_function__unpack(&pba, len, frame);
    if (tf == NULL) {
        sm_arena_reset(m->req);
        return -1;
    }
    m->busy = 1;
    for (size_t i = 0; i < tf->n_batches; i++) {
        const Statemesh__V1__BatchRequest *req = tf->batches[i];
        Statemesh__V1__BatchResponse resp;

        sm_arena_reset(m->resp);
        if (sm_functions_process(m->fns, req, m->resp, &resp) == SM_OK)
            answer(arg, req->batch_id, &resp, NULL);
        else
            answer(arg, req->batch_id, NULL,
                   "embedded module out of memory (the answer exceeds the SDK's arena cap)");
    }
    sm_arena_reset(m->resp);
    sm_arena_reset(m->req);
    m->busy = 0;
    return 0;
}
