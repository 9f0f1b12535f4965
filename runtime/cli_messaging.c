/*
 * cli_messaging — the messaging commands of the `statemesh` CLI: send and
 * call (one message), egress tail. send --stdin is cli_stdin.c.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "statemesh/client.h"

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

int cmd_send_or_call(sm_client *c, const struct args *a, int call)
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
                valjson_put(stdout, &reply.value, false);
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

/* ---- egress tail ---- */

static int print_record(const sm_egress_record *rec, bool json)
{
    if (json) {
        fputc('{', stdout);
        if (rec->node && *rec->node) {          /* cluster: offsets are per node */
            fputs("\"node\":", stdout);
            valjson_put_string(stdout, rec->node, strlen(rec->node));
            fputc(',', stdout);
        }
        printf("\"offset\":%" PRIu64 ",\"timestamp_ms\":%" PRId64 ",\"time\":\"", rec->offset,
               rec->timestamp_ms);
        put_time(stdout, rec->timestamp_ms);
        fputs("\",\"source\":", stdout);
        put_address_json(stdout, rec->source_type, rec->source_id);
        fputc(',', stdout);
        valjson_put(stdout, &rec->value, true);
        fputs("}\n", stdout);
    } else {
        if (rec->node && *rec->node) {          /* cluster: NODE/OFFSET */
            put_id(stdout, rec->node);
            fputc('/', stdout);
        }
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

int cmd_egress(sm_client *c, const struct args *a)
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
