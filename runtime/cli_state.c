/*
 * cli_state — `statemesh state list | set | delete` (cli.h; `state get` is
 * in cli.c). See docs/state-admin.md.
 *
 *   state list TYPE [--prefix P] [--after ID] [--limit N] [--json]
 *       one id per line (put_id: JSON-quoted if empty or holding a space,
 *       quote or control character), in the runtime's order (key group,
 *       then id bytes); when the page is full, a last line
 *       "# next: --after ID" (ID as above) to continue with. --json: one
 *       document {"ids":[...],"more":B,"next_after":ID|null}.
 *   state set TYPE ID NAME VALUE [--type T] [--json]
 *       VALUE encoded as for send; prints "set" ({"set":true}) once durable.
 *   state delete TYPE ID [NAME] [--json]
 *       prints "deleted N" ({"deleted":N}): how many values existed.
 *
 * Bad arguments found here or by the SDK are usage errors (exit 2), what
 * the runtime refuses is exit 1, as for every command.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "statemesh/client.h"

int state_option_use(const struct args *a)
{
    const char *sub = a->npos >= 2 ? a->pos[1] : "";
    bool list = strcmp(sub, "list") == 0, set = strcmp(sub, "set") == 0;

    if (a->type && !set) return usage_error("--type only applies to state set (the value encoding)");
    if ((a->prefix || a->has_after || a->has_limit) && !list)
        return usage_error("--prefix, --after and --limit only apply to state list");
    return 0;
}

static int cmd_list(sm_client *c, const struct args *a)
{
    sm_state_ids p;
    sm_error err;
    char what[400];
    int rc;

    if (a->npos != 3) return usage_error("state list needs TYPE (and no more arguments)");
    if (a->has_after && !*a->after_text) return usage_error("--after wants an id, got ''");
    snprintf(what, sizeof what, "state list %.256s", a->pos[2]);
    rc = sm_client_state_list(c, a->pos[2], a->prefix, a->has_after ? a->after_text : NULL,
                              a->has_limit ? (uint32_t)a->limit : 0, a->timeout_ms, &p, &err);
    if (rc == SM_EINVAL) return usage_error("%s", err.message);   /* found locally */
    if (rc != SM_OK) return rpc_error(what, &err, a->address);
    if (a->json) {
        fputs("{\"ids\":[", stdout);
        for (size_t i = 0; i < p.n; i++) {
            if (i) fputc(',', stdout);
            valjson_put_string(stdout, p.ids[i], strlen(p.ids[i]));
        }
        printf("],\"more\":%s,\"next_after\":", p.more ? "true" : "false");
        if (p.more) valjson_put_string(stdout, p.next_after_id, strlen(p.next_after_id));
        else fputs("null", stdout);
        fputs("}\n", stdout);
    } else {
        for (size_t i = 0; i < p.n; i++) {
            put_id(stdout, p.ids[i]);
            fputc('\n', stdout);
        }
        if (p.more) {
            fputs("# next: --after ", stdout);
            put_id(stdout, p.next_after_id);
            fputc('\n', stdout);
        }
    }
    sm_state_ids_cleanup(&p);
    return 0;
}

static int cmd_set(sm_client *c, const struct args *a)
{
    struct gbuf store = {NULL, 0};
    uint8_t scalar[8];
    char what[2400];
    sm_value v;
    sm_error err;
    int rc;

    if (a->npos != 6) return usage_error("state set needs TYPE ID NAME VALUE");
    if ((rc = encode_arg(a->type, a->pos[5], &v, scalar, &store))) {
        free(store.p);
        return rc;
    }
    snprintf(what, sizeof what, "state set %.256s %.1024s %.128s", a->pos[2], a->pos[3], a->pos[4]);
    rc = sm_client_state_set(c, a->pos[2], a->pos[3], a->pos[4], &v, a->timeout_ms, &err);
    free(store.p);
    if (rc == SM_EINVAL) return usage_error("%s", err.message);
    if (rc != SM_OK) return rpc_error(what, &err, a->address);
    puts(a->json ? "{\"set\":true}" : "set");
    return 0;
}

static int cmd_delete(sm_client *c, const struct args *a)
{
    const char *name = a->npos == 5 ? a->pos[4] : NULL;
    char what[2400];
    uint32_t n = 0;
    sm_error err;
    int rc;

    if (a->npos != 4 && a->npos != 5) return usage_error("state delete needs TYPE ID [NAME]");
    if (name && !*name) return usage_error("state delete: NAME is empty (leave it out to delete all)");
    snprintf(what, sizeof what, "state delete %.256s %.1024s%s%.128s", a->pos[2], a->pos[3],
             name ? " " : "", name ? name : "");
    rc = sm_client_state_delete(c, a->pos[2], a->pos[3], name, a->timeout_ms, &n, &err);
    if (rc == SM_EINVAL) return usage_error("%s", err.message);
    if (rc != SM_OK) return rpc_error(what, &err, a->address);
    if (a->json) printf("{\"deleted\":%" PRIu32 "}\n", n);
    else printf("deleted %" PRIu32 "\n", n);
    return 0;
}

int cmd_state_admin(sm_client *c, const struct args *a)
{
    const char *sub = a->pos[1];
    if (strcmp(sub, "list") == 0) return cmd_list(c, a);
    if (strcmp(sub, "set") == 0) return cmd_set(c, a);
    if (strcmp(sub, "delete") == 0) return cmd_delete(c, a);
    return usage_error("unknown state subcommand '%s' (get, list, set or delete)", sub);
}
