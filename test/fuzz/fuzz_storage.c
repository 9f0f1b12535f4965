/*
 * fuzz_storage — libFuzzer harness for the stored-record decoders, driven
 * the way statemeshd reads its store at start-up and in its housekeeping.
 *
 * Input: records, each [klen:u8][key][vlen:u16be][value] (a record cut off by
 * the end of the input keeps what is there). Each is written as is into a
 * real store (LevelDB in a private temporary directory, opened once with
 * store_open), so keys can be malformed in any way: wrong lengths, missing
 * NULs, any tag. Then the runtime's own start-up sequence runs on a server
 * struct assembled as main() does (fz_server.h: a config with one sidecar
 * endpoint "fz/*" and one egress "out"; no gRPC, no ingress):
 *
 *   egress_open      X egress.out.next metadata, E key bounds
 *   recover          main.c's recovery: store_scan_messages (M key parser),
 *                    StoredMessage -> msg_create -> disp_recover
 *   delayed_recover  store_scan_delayed (D keys), StoredDelayed -> index
 *   dl_open          store_scan_deadletters (L keys)
 *   idem_check       store_get_idem + StoredIdempotency (key "fz")
 *   housekeeping     egress_trim (StoredEgress), disp_sweep_expired
 *                    (StoredState, store_state_key_address), idem_sweep
 *
 * and the server is torn down as main() does; the input's keys are deleted
 * and the store's metadata put back for the next input (all of one input's
 * writes in one batch each way: store_raw.h). main.c is included (its main renamed) to
 * reach the static recover(); store_raw.c includes store.c for raw writes.
 */
#define main statemeshd_main
#include "../../runtime/main.c"
#undef main

#include "fz_server.h"
#include "store_raw.h"

static struct store_raw_state raw;

static void raw_free(void)
{
    store_raw_state_free(&raw);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_setup("storage");
    atexit(raw_free);      /* runs before fz_teardown closes the store */
    return 0;
}

/* Calls fn for each record [klen:u8][key][vlen:u16be][value] of the input. */
static void each_record(const uint8_t *data, size_t size,
                        void (*fn)(const uint8_t *key, size_t klen, const uint8_t *val,
                                   size_t vlen))
{
    size_t i = 0;
    while (i < size) {
        size_t klen = data[i++], vlen = 0;
        const uint8_t *key = data + i, *val;
        if (klen > size - i) klen = size - i;
        i += klen;
        if (i + 2 <= size) vlen = (size_t)data[i] << 8 | data[i + 1];
        i += i + 2 <= size ? 2 : size - i;
        if (vlen > size - i) vlen = size - i;
        val = data + i;
        i += vlen;
        fn(key, klen, val, vlen);
    }
}

static void put(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
    store_raw_put(&raw, key, klen, val, vlen);
}

static void delete(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
    store_raw_delete(&raw, key, klen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct server s;

    if (size > 1 << 16) return 0;
    store_raw_begin(fz.store, &raw);
    each_record(data, size, put);
    store_raw_commit(fz.store, &raw);

    fz_server_up(&s);
    if (egress_open(&s) == 0 && recover(&s) == 0 && delayed_recover(&s) == 0 && dl_open(&s) == 0) {
        (void)idem_check(&s, "fz/t", "x", "fz", 0, 0);
        (void)idem_check(&s, "fz/t", "x", "fz", 1, 7);
        egress_trim(&s);
        disp_sweep_expired(&s);
        idem_sweep(&s);
    }
    fz_server_down(&s);

    each_record(data, size, delete);
    store_raw_end(fz.store, &raw);
    return 0;
}
