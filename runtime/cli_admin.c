/*
 * cli_admin — the Admin commands of the `statemesh` CLI: state get, stats,
 * deadletters list|replay|drop, and the failure handling of an address:
 * inspect, stuck, skip, resume.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "statemesh/client.h"

/* ---- state, stats ---- */

int cmd_state(sm_client *c, const struct args *a)
{
    sm_state_list l;
    sm_error err;
    char what[2200];
    int rc = 0;

    if (a->npos >= 2 && strcmp(a->pos[1], "get") != 0) return cmd_state_admin(c, a);
    if (a->npos < 2)
        return usage_error("state needs a subcommand: get, list, set or delete");
    if (a->npos != 4 && a->npos != 5) return usage_error("state get needs TYPE ID [NAME]");
    snprintf(what, sizeof what, "state get %.1024s %.1024s", a->pos[2], a->pos[3]);
    if (sm_client_get_state(c, a->pos[2], a->pos[3], a->npos == 5 ? a->pos[4] : NULL,
                            a->timeout_ms, &l, &err) != SM_OK)
        return rpc_error(what, &err, a->address);
    if (a->json) {
        fputs("{\"address\":", stdout);
        put_address_json(stdout, a->pos[2], a->pos[3]);
        fputs(",\"values\":[", stdout);
        for (size_t i = 0; i < l.n; i++) {
            fputs(i ? ",{\"name\":" : "{\"name\":", stdout);
            valjson_put_string(stdout, l.items[i].name, strlen(l.items[i].name));
            fputc(',', stdout);
            valjson_put(stdout, &l.items[i].value, false);
            fputc('}', stdout);
        }
        printf("],\"queued_messages\":%" PRIu64 ",\"in_flight\":%s}\n", l.queued_messages,
               l.in_flight ? "true" : "false");
    } else {
        for (size_t i = 0; i < l.n; i++) {
            const sm_value *v = &l.items[i].value;
            printf("%s %s ", l.items[i].name, v->typename ? v->typename : "-");
            print_value(stdout, v, 1, 0);
            fputc('\n', stdout);
        }
        printf("# queued_messages=%" PRIu64 " in_flight=%s\n", l.queued_messages,
               l.in_flight ? "true" : "false");
    }
    if (l.n == 0) { /* the output above all the same (the queue may be of interest) */
        fflush(stdout);
        fprintf(stderr, "statemesh: %s ", a->pos[2]);
        put_id(stderr, a->pos[3]);
        if (a->npos == 5) fprintf(stderr, " has no state named '%s'\n", a->pos[4]);
        else fputs(" has no state\n", stderr);
        rc = EXIT_NOT_FOUND;
    }
    sm_state_list_cleanup(&l);
    return rc;
}

int cmd_stats(sm_client *c, const struct args *a)
{
    sm_stats s;
    sm_error err;

    if (a->npos != 1) return usage_error("stats takes no arguments");
    if (sm_client_stats(c, a->timeout_ms, &s, &err) != SM_OK)
        return rpc_error("stats", &err, a->address);
    if (a->json) fputc('{', stdout);
    for (size_t i = 0; i < s.n; i++) {
        if (a->json) {
            if (i) fputc(',', stdout);
            valjson_put_string(stdout, s.items[i].name, strlen(s.items[i].name));
            printf(":%" PRId64, s.items[i].value);
        } else {
            printf("%s %" PRId64 "\n", s.items[i].name, s.items[i].value);
        }
    }
    if (a->json) fputs("}\n", stdout);
    sm_stats_cleanup(&s);
    return 0;
}

/* ---- cluster status ---- */

/* ---- cluster savepoint ---- */

static int cmd_cluster_savepoint(sm_client *c, const struct args *a)
{
    char path[PATH_MAX + 2], cwd[PATH_MAX];
    sm_cluster_savepoint r;
    sm_error err;
    const char *dir;

    if (a->npos != 3 || !a->pos[2][0])
        return usage_error("cluster savepoint needs DIR (a new directory every node can write)");
    if (a->has_ranges && (a->ranges < 1 || a->ranges > 4096))
        return usage_error("--ranges must be 1..4096");
    dir = a->pos[2];
    if (dir[0] == '/') {
        snprintf(path, sizeof path, "%s", dir);
    } else {
        if (!getcwd(cwd, sizeof cwd)) return usage_error("cannot read the working directory");
        if ((size_t)snprintf(path, sizeof path, "%s/%s", cwd, dir) >= sizeof path)
            return usage_error("savepoint path too long");
    }
    while (strlen(path) > 1 && path[strlen(path) - 1] == '/') path[strlen(path) - 1] = '\0';
    if (!a->json)
        fprintf(stderr, "cluster savepoint: pausing every owner of a range through etcd, then "
                "each node writes its part to %s/NODE ...\n", path);
    if (sm_client_cluster_savepoint(c, path, a->has_ranges ? (uint32_t)a->ranges : 0,
                                    (uint32_t)a->pause_timeout_ms, 0, &r, &err) != SM_OK)
        return rpc_error("cluster savepoint", &err, a->address);
    if (a->json) {
        fputs("{\"path\":", stdout);
        valjson_put_string(stdout, r.path, strlen(r.path));
        fputs(",\"id\":", stdout);
        valjson_put_string(stdout, r.id, strlen(r.id));
        printf(",\"pause_ms\":%" PRId64 ",\"elapsed_ms\":%" PRId64 ",\"records\":%" PRIu64
               ",\"bytes\":%" PRIu64 ",\"nodes\":[", r.pause_ms, r.elapsed_ms, r.records, r.bytes);
        for (size_t i = 0; i < r.n_nodes; i++) {
            fputs(i ? ",{\"node\":" : "{\"node\":", stdout);
            valjson_put_string(stdout, r.nodes[i].node_id, strlen(r.nodes[i].node_id));
            printf(",\"key_groups\":\"%s\",\"records\":%" PRIu64 ",\"bytes\":%" PRIu64
                   ",\"write_ms\":%" PRId64 "}", r.nodes[i].key_groups, r.nodes[i].records,
                   r.nodes[i].bytes, r.nodes[i].write_ms);
        }
        fputs("]}\n", stdout);
    } else {
        for (size_t i = 0; i < r.n_nodes; i++)
            printf("node %s key_groups %s: %" PRIu64 " records, %" PRIu64 " bytes, written in %"
                   PRId64 " ms\n", r.nodes[i].node_id, r.nodes[i].key_groups, r.nodes[i].records,
                   r.nodes[i].bytes, r.nodes[i].write_ms);
        printf("cluster savepoint %s (id %s): %zu node%s, %" PRIu64 " records, %" PRIu64
               " bytes; all paused after %" PRId64 " ms, complete after %" PRId64 " ms\n", r.path,
               r.id, r.n_nodes, r.n_nodes == 1 ? "" : "s", r.records, r.bytes, r.pause_ms,
               r.elapsed_ms);
    }
    sm_cluster_savepoint_cleanup(&r);
    return 0;
}

int cmd_cluster(sm_client *c, const struct args *a)
{
    sm_topology t;
    sm_error err;

    if (a->npos >= 2 && strcmp(a->pos[1], "savepoint") == 0) return cmd_cluster_savepoint(c, a);
    if (a->has_ranges) return usage_error("--ranges only applies to cluster savepoint");
    if (a->npos != 2 || strcmp(a->pos[1], "status") != 0)
        return usage_error("cluster needs a subcommand: status, or savepoint DIR");
    if (sm_client_get_topology(c, a->timeout_ms, &t, &err) != SM_OK)
        return rpc_error("cluster status", &err, a->address);
    if (a->json) {
        printf("{\"cluster\":%s", t.cluster ? "true" : "false");
        if (t.cluster) {
            fputs(",\"name\":", stdout);
            valjson_put_string(stdout, t.cluster_name, strlen(t.cluster_name));
            fputs(",\"node\":", stdout);
            valjson_put_string(stdout, t.node_id, strlen(t.node_id));
            fputs(",\"state\":", stdout);
            valjson_put_string(stdout, t.state, strlen(t.state));
            fputs(",\"fencing_reason\":", stdout);
            valjson_put_string(stdout, t.fencing_reason, strlen(t.fencing_reason));
            fputs(",\"controller\":", stdout);
            valjson_put_string(stdout, t.controller, strlen(t.controller));
            printf(",\"revision\":%" PRId64 ",\"key_groups\":%" PRIu32 ",\"nodes\":[",
                   t.revision, t.key_groups);
            for (size_t i = 0; i < t.n_nodes; i++) {
                fputs(i ? ",{\"id\":" : "{\"id\":", stdout);
                valjson_put_string(stdout, t.nodes[i].id, strlen(t.nodes[i].id));
                fputs(",\"advertise\":", stdout);
                valjson_put_string(stdout, t.nodes[i].advertise, strlen(t.nodes[i].advertise));
                printf(",\"alive\":%s,\"lease_ttl_left_ms\":%" PRId64 ",\"outbox_frames\":%"
                       PRIu64 "}", t.nodes[i].alive ? "true" : "false",
                       t.nodes[i].lease_ttl_left_ms, t.nodes[i].outbox_frames);
            }
            fputs("],\"ranges\":[", stdout);
            for (size_t i = 0; i < t.n_ranges; i++) {
                printf("%s{\"first\":%" PRIu32 ",\"last\":%" PRIu32 ",\"owner\":", i ? "," : "",
                       t.ranges[i].first, t.ranges[i].last);
                valjson_put_string(stdout, t.ranges[i].owner, strlen(t.ranges[i].owner));
                printf(",\"epoch\":%" PRId64 "}", t.ranges[i].epoch);
            }
            fputc(']', stdout);
        }
        fputs("}\n", stdout);
    } else if (!t.cluster) {
        printf("not a cluster: the runtime at %s runs alone (no cluster group in its "
               "configuration; docs/cluster.md)\n", sm_client_target(c));
    } else {
        printf("cluster %s node %s state %s controller %s revision %" PRId64 " key_groups %" PRIu32
               "\n", t.cluster_name, t.node_id, t.state, t.controller[0] ? t.controller : "-",
               t.revision, t.key_groups);
        if (t.fencing_reason[0]) printf("fenced: %s\n", t.fencing_reason);
        for (size_t i = 0; i < t.n_nodes; i++) {
            printf("node %s %s %s", t.nodes[i].id,
                   t.nodes[i].advertise[0] ? t.nodes[i].advertise : "-",
                   t.nodes[i].alive ? "alive" : "down");
            if (t.nodes[i].lease_ttl_left_ms >= 0)
                printf(" lease_left_ms=%" PRId64, t.nodes[i].lease_ttl_left_ms);
            if (t.nodes[i].outbox_frames)
                printf(" outbox_frames=%" PRIu64, t.nodes[i].outbox_frames);
            fputc('\n', stdout);
        }
        for (size_t i = 0; i < t.n_ranges; i++)
            printf("range %" PRIu32 "-%" PRIu32 " %s epoch=%" PRId64 "\n", t.ranges[i].first,
                   t.ranges[i].last, t.ranges[i].owner, t.ranges[i].epoch);
        if (t.n_ranges == 0) printf("# no ranges assigned yet\n");
    }
    sm_topology_cleanup(&t);
    return 0;
}

/* ---- deadletters ---- */

static void print_deadletter(const sm_deadletter *d, bool json)
{
    if (json) {
        printf("{\"id\":%" PRIu64 ",\"failed_at_ms\":%" PRId64 ",\"time\":\"", d->id,
               d->failed_at_ms);
        put_time(stdout, d->failed_at_ms);
        fputs("\",\"target\":", stdout);
        put_address_json(stdout, d->target_type, d->target_id);
        fputs(",\"caller\":", stdout);
        if (d->caller_type) put_address_json(stdout, d->caller_type, d->caller_id);
        else fputs("null", stdout);
        printf(",\"attempts\":%" PRIu32 ",\"error\":", d->attempts);
        valjson_put_string(stdout, d->error, strlen(d->error));
        fputc(',', stdout);
        valjson_put(stdout, &d->argument, true);
        fputs("}\n", stdout);
    } else {
        printf("%" PRIu64 " ", d->id);
        put_time(stdout, d->failed_at_ms);
        printf(" %s ", *d->target_type ? d->target_type : "-");
        put_id(stdout, d->target_id);
        printf(" %" PRIu32 " ", d->attempts);
        print_value_line(stdout, &d->argument);
        fputc(' ', stdout);
        valjson_put_string(stdout, d->error, strlen(d->error));
        fputc('\n', stdout);
    }
}

static int cmd_deadletters_list(sm_client *c, const struct args *a)
{
    sm_deadletters l;
    sm_error err;
    int rc;

    if (a->npos != 2)
        return usage_error("deadletters list takes no arguments (--type T, --after ID, --limit N)");
    if (a->all) return usage_error("--all only applies to deadletters replay and drop");
    rc = sm_client_list_deadletters(c, a->type, a->after, (uint32_t)a->limit, a->timeout_ms, &l, &err);
    if (rc == SM_EINVAL) return usage_error("%s", err.message); /* found locally: --type */
    if (rc != SM_OK) return rpc_error("deadletters list", &err, a->address);
    for (size_t i = 0; i < l.n; i++) print_deadletter(&l.items[i], a->json);
    if (a->json) printf("{\"total\":%" PRIu64 "}\n", l.total);
    else printf("# total=%" PRIu64 "\n", l.total);
    sm_deadletters_cleanup(&l);
    return 0;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

static int cmd_deadletters_act(sm_client *c, const struct args *a, bool replay)
{
    const char *sub = replay ? "replay" : "drop", *done = replay ? "replayed" : "dropped";
    size_t n = (size_t)a->npos - 2, distinct = 0;
    uint64_t *ids = NULL, count = 0;
    sm_error err;
    char what[64];
    int rc;

    if (a->has_after || a->has_limit)
        return usage_error("--after and --limit only apply to deadletters list");
    if (!n && !a->all)
        return usage_error("deadletters %s needs dead letter IDs (see deadletters list) or --all", sub);
    if (n && a->all) return usage_error("deadletters %s: give IDs or --all, not both", sub);
    if (n && !(ids = calloc(n, sizeof *ids))) {
        fprintf(stderr, "statemesh: out of memory\n");
        return EXIT_RPC;
    }
    for (size_t i = 0; i < n; i++) {
        if (parse_u64("ID", a->pos[i + 2], UINT64_MAX, &ids[i])) {
            free(ids);
            return usage_error("'%s' is not a dead letter id (a number that deadletters list "
                               "prints first)", a->pos[i + 2]);
        }
    }
    snprintf(what, sizeof what, "deadletters %s", sub);
    if (replay) rc = sm_client_replay_deadletters(c, ids, n, a->all, a->type, a->timeout_ms, &count, &err);
    else rc = sm_client_drop_deadletters(c, ids, n, a->all, a->type, a->timeout_ms, &count, &err);
    if (rc == SM_EINVAL) {
        free(ids);
        return usage_error("%s", err.message); /* found locally: --type */
    }
    if (rc != SM_OK) {
        free(ids);
        return rpc_error(what, &err, a->address);
    }
    if (a->json) printf("{\"%s\":%" PRIu64 "}\n", done, count);
    else printf("%s %" PRIu64 "\n", done, count);
    if (n) { /* say why fewer than named: the runtime skips what it cannot find */
        qsort(ids, n, sizeof *ids, cmp_u64);
        for (size_t i = 0; i < n; i++) distinct += i == 0 || ids[i] != ids[i - 1];
        if (count < distinct)
            fprintf(stderr, "statemesh: %" PRIu64 " of the %zu ids named %s not %s: no such dead "
                    "letter (already replayed or dropped)%s%s\n", (uint64_t)distinct - count,
                    distinct, distinct - count == 1 ? "was" : "were", done,
                    a->type ? ", not of --type" : "",
                    replay ? ", or no endpoint serves its type" : "");
    }
    free(ids);
    return 0;
}

int cmd_deadletters(sm_client *c, const struct args *a)
{
    const char *sub = a->npos >= 2 ? a->pos[1] : "";
    if (a->type && !*a->type) return usage_error("--type wants a function type NS/NAME, got ''");
    if (strcmp(sub, "list") == 0) return cmd_deadletters_list(c, a);
    if (strcmp(sub, "replay") == 0) return cmd_deadletters_act(c, a, true);
    if (strcmp(sub, "drop") == 0) return cmd_deadletters_act(c, a, false);
    return usage_error("deadletters needs a subcommand: list, replay or drop");
}

/* ---- failure handling: inspect, stuck, skip, resume ---- */

static void print_status_json(const sm_address_status *st)
{
    fputs("{\"address\":", stdout);
    put_address_json(stdout, st->type, st->id);
    printf(",\"phase\":\"%s\",\"queued_messages\":%" PRIu64 ",\"in_flight_messages\":%" PRIu32
           ",\"attempts\":%" PRIu32 ",\"max_attempts\":%" PRIu32 ",\"isolating\":%s",
           sm_phase_name(st->phase), st->queued_messages, st->in_flight_messages, st->attempts,
           st->max_attempts, st->isolating ? "true" : "false");
    fputs(",\"next_retry_at_ms\":", stdout);
    if (st->next_retry_at_ms) printf("%" PRId64, st->next_retry_at_ms);
    else fputs("null", stdout);
    fputs(",\"last_error\":", stdout);
    if (*st->last_error) {
        valjson_put_string(stdout, st->last_error, strlen(st->last_error));
        printf(",\"last_error_at_ms\":%" PRId64, st->last_error_at_ms);
    } else {
        fputs("null", stdout);
    }
    fputs(",\"head\":", stdout);
    if (st->has_head) {
        fputs("{\"caller\":", stdout);
        if (st->head_caller_type) put_address_json(stdout, st->head_caller_type, st->head_caller_id);
        else fputs("null", stdout);
        fputc(',', stdout);
        valjson_put(stdout, &st->head, true);
        fputc('}', stdout);
    } else {
        fputs("null", stdout);
    }
    fputs("}\n", stdout);
}

/* "in 1.2 s" / "overdue" relative to now. */
static void put_in(FILE *f, int64_t at_ms)
{
    struct timespec ts;
    int64_t now, d;
    clock_gettime(CLOCK_REALTIME, &ts);
    now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    d = at_ms - now;
    if (d <= 0) fputs("due now", f);
    else fprintf(f, "in %.1f s", (double)d / 1000.0);
}

static void print_status_text(const sm_address_status *st)
{
    printf("address      %s ", st->type);
    put_id(stdout, st->id);
    printf("\nphase        %s%s\n", sm_phase_name(st->phase),
           st->isolating ? " (isolating a failed batch: one message at a time)" : "");
    printf("queued       %" PRIu64 " (in flight %" PRIu32 ")\n", st->queued_messages,
           st->in_flight_messages);
    if (st->max_attempts) printf("attempts     %" PRIu32 " of %" PRIu32 "\n", st->attempts, st->max_attempts);
    else printf("attempts     %" PRIu32 " (retried forever)\n", st->attempts);
    if (st->next_retry_at_ms) {
        fputs("next retry   ", stdout);
        put_time(stdout, st->next_retry_at_ms);
        fputs(" (", stdout);
        put_in(stdout, st->next_retry_at_ms);
        fputs(")\n", stdout);
    }
    if (st->has_head) {
        fputs("head         ", stdout);
        print_value_line(stdout, &st->head);
        if (st->head_caller_type) {
            printf(" (from %s ", st->head_caller_type);
            put_id(stdout, st->head_caller_id);
            fputs(")\n", stdout);
        } else {
            fputs(" (from the ingress)\n", stdout);
        }
    }
    if (*st->last_error) {
        const char *p = st->last_error, *nl;
        fputs("last error   ", stdout);
        put_time(stdout, st->last_error_at_ms);
        fputc('\n', stdout);
        for (; *p; p = nl + 1) {            /* full text, indented (tracebacks) */
            nl = strchr(p, '\n');
            if (!nl) {
                printf("  %s\n", p);
                break;
            }
            printf("  %.*s\n", (int)(nl - p), p);
        }
    }
    if (st->phase == SM_PHASE_PAUSED)
        printf("# paused: 'statemesh skip %s ID' moves the head message to dead letters, "
               "'statemesh resume %s ID' retries it now\n", st->type, st->type);
}

int cmd_inspect(sm_client *c, const struct args *a)
{
    sm_address_statuses l;
    sm_error err;
    char what[2200];

    if (a->npos != 3) return usage_error("inspect needs TYPE ID");
    snprintf(what, sizeof what, "inspect %.1024s %.1024s", a->pos[1], a->pos[2]);
    if (sm_client_inspect(c, a->pos[1], a->pos[2], a->timeout_ms, &l, &err) != SM_OK)
        return rpc_error(what, &err, a->address);
    if (a->json) print_status_json(&l.items[0]);
    else print_status_text(&l.items[0]);
    sm_address_statuses_cleanup(&l);
    return 0;
}

int cmd_stuck(sm_client *c, const struct args *a)
{
    sm_address_statuses l;
    sm_error err;

    if (a->npos != 1) return usage_error("stuck takes no arguments (filter with --type T)");
    if (sm_client_list_stuck(c, a->type, (uint32_t)a->limit, a->timeout_ms, &l, &err) != SM_OK)
        return rpc_error("stuck", &err, a->address);
    for (size_t i = 0; i < l.n; i++) {
        const sm_address_status *st = &l.items[i];
        if (a->json) {
            print_status_json(st);
            continue;
        }
        printf("%s ", st->type);
        put_id(stdout, st->id);
        printf(" %s %" PRIu32 "/", sm_phase_name(st->phase), st->attempts);
        if (st->max_attempts) printf("%" PRIu32, st->max_attempts);
        else fputs("forever", stdout);
        printf(" queued=%" PRIu64 " ", st->queued_messages);
        valjson_put_string(stdout, st->last_error, strlen(st->last_error));
        fputc('\n', stdout);
    }
    if (a->json) printf("{\"retrying\":%" PRIu64 ",\"paused\":%" PRIu64 "}\n", l.retrying, l.paused);
    else printf("# retrying=%" PRIu64 " paused=%" PRIu64 "\n", l.retrying, l.paused);
    sm_address_statuses_cleanup(&l);
    return 0;
}

int cmd_skip_resume(sm_client *c, const struct args *a, bool skip)
{
    sm_error err;
    char what[2200];
    uint64_t id = 0;
    int rc;

    if (a->npos != 3) return usage_error("%s needs TYPE ID", skip ? "skip" : "resume");
    snprintf(what, sizeof what, "%s %.1024s %.1024s", skip ? "skip" : "resume", a->pos[1], a->pos[2]);
    rc = skip ? sm_client_skip(c, a->pos[1], a->pos[2], a->timeout_ms, &id, &err)
              : sm_client_resume(c, a->pos[1], a->pos[2], a->timeout_ms, &err);
    if (rc != SM_OK) return rpc_error(what, &err, a->address);
    if (a->json) {
        if (skip) printf("{\"dead_letter_id\":%" PRIu64 "}\n", id);
        else fputs("{\"resumed\":true}\n", stdout);
    } else if (skip) {
        printf("skipped: the head message is dead letter %" PRIu64 "\n", id);
    } else {
        fputs("resumed\n", stdout);
    }
    return 0;
}
