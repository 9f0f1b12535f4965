/*
 * config — loading and validating statemeshd's configuration; see config.h.
 *
 * How a load goes:
 *
 *   cfg_load(path)
 *     cfgsrc_load(path)     read the file and its @includes, capped at
 *                           CFG_MAX_FILE_BYTES together: "PATH: cannot read: ...",
 *                           "FILE:LINE: @include "X": PATH: cannot read: ...",
 *                           "PATH: config file is N bytes, over the limit of M"
 *     config_read_string()  libconfig parses the main file's text (the bytes
 *                           that were checked; `-c <(...)` works). Its "syntax
 *                           error" becomes syntax_error(): where cfglex finds
 *                           it, why, and the line with a caret under it
 *     walk the tree         every member of every group is checked against the
 *                           settings we know; each problem adds one line and
 *                           the walk goes on, so one run shows every error
 *     errors? free the draft, return -1   :   move the draft into *out
 *
 * Decisions the header leaves open, recorded here:
 *
 *  - Setting names in messages are paths: "runtime.checkpoint.sync",
 *    "endpoints[2].target". Lines come from libconfig (the setting's own line;
 *    for a missing setting, the line of the group that should hold it).
 *  - runtime.data_dir defaults to "./data", resolved like an explicit value:
 *    relative to the config file's directory. @include paths are resolved
 *    against that directory too.
 *  - ${VAR:-default} follows the shell: the default also applies when VAR is
 *    set but empty. The default runs to the first '}'; a '$' not followed by
 *    '{' is literal. Expanded strings are capped at CFG_MAX_STRING bytes.
 *  - Integers: libconfig 1.5 wraps a literal beyond 32 bits written without
 *    the L suffix (4294967296 reads as 0) and says nothing. For every integer
 *    setting we therefore re-read its literal from the source line
 *    (cfgsrc_int_literal); if it differs from what libconfig parsed, the
 *    literal is what gets range-checked, so "interval_ms = 4294967296" is an
 *    error, not 0.
 *  - Targets of runtime.ingress and of sidecar endpoints: "unix:PATH"
 *    (absolute or relative; "unix:///abs" too), "unix-abstract:NAME", or
 *    "HOST:PORT" / "[IPv6]:PORT" with a numeric port 1..65535. Socket paths
 *    must fit sockaddr_un (107 bytes). Remote endpoints: "dns:///HOST:PORT",
 *    "dns:HOST:PORT", "ipv4:A.B.C.D:PORT[,...]", "ipv6:[ADDR]:PORT[,...]",
 *    "HOST:PORT", "[IPv6]:PORT"; a port is always required (gRPC would
 *    silently default to 443), a DNS authority (dns://SERVER/...) is refused,
 *    and so are unix sockets (that is a sidecar). Nothing is resolved or
 *    dialled here: --check-config works without the names existing.
 *  - Which settings an endpoint needs depends on its mode, and the mode may
 *    come after them in the group, so target/library are checked after the
 *    walk: sidecar and remote need `target` and refuse `library`; embedded
 *    needs `library` and refuses `target`, `streams` and `keepalive_ms` (no
 *    connection exists). `streams` defaults to 4 for remote, else 1. With an
 *    invalid mode the mode-dependent checks are skipped (one error, not a
 *    cascade). `endpoints` may be missing or empty; so may `egresses`.
 *  - library: resolved like data_dir (a file path, never a search of the
 *    dynamic linker's path) and checked to be a readable regular file, so a
 *    typo shows at --check-config time with FILE:LINE. It is not dlopen'ed
 *    here: checking a config runs no module code; a file that is not a usable
 *    module fails statemeshd's start (runtime/embedded.h).
 *  - retry.multiplier accepts an integer or a floating-point literal;
 *    retry.max_backoff_ms must be >= retry.initial_backoff_ms, defaults
 *    included (the message says which one to raise).
 *  - keepalive_ms: 0 (off) or 1000..3600000; below a second gRPC servers
 *    answer with GOAWAY "too_many_pings".
 *  - Integers wider than 32 bits (max_queued_bytes up to 64 GiB,
 *    retention_records up to 2^62) work with or without the L suffix.
 */
#include "config.h"

#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "address.h"
#include "cfglex.h"
#include "cfgsrc.h"
#include "metrics.h"
#include "target.h"

#define CFG_MAX_STRING 4096                 /* any string value after expansion */
#define CFG_SETTING_MAX 96                  /* "endpoints[123].retry.max_backoff_ms" */
#define CFG_QUEUED_MIN (1LL << 20)          /* runtime.max_queued_bytes: 1 MiB.. */
#define CFG_QUEUED_MAX (64LL << 30)         /* ..64 GiB */
#define CFG_EGRESS_NAME_MAX 128
#define CFG_RETENTION_RECORDS_MAX (1LL << 62)

struct loader {
    const char *path;         /* the file as given */
    char *dir;                /* its directory, NULL when it has no '/' */
    char *err;
    size_t errlen;
    size_t used;              /* bytes written into err, excluding NUL */
    int n_errors;
    struct cfgsrc src;        /* the files' text (cfgsrc.h) */
};

/* ---- errors --------------------------------------------------------------- */

/* The path to show for the file libconfig calls `file`: NULL is the main
 * file (handed to libconfig as a string); an @included file is named as
 * written in the directive, relative to the include directory. */
static const char *display_file(const struct loader *ld, const char *file, char *buf,
                                size_t size)
{
    const struct cfgsrc_file *f = cfgsrc_file(&ld->src, file);

    if (f) return f->path;
    if (file == NULL) return ld->path;
    if (file[0] == '/' || ld->dir == NULL) return file;
    cfgsrc_path_join(buf, size, ld->dir, file);
    return buf;
}

/* Appends `text` to err as a line of its own; err stays NUL-terminated,
 * truncated to the caller's buffer. */
static void append_line(struct loader *ld, const char *text)
{
    int w;

    if (ld->err == NULL || ld->errlen == 0 || ld->used + 1 >= ld->errlen) return;
    w = snprintf(ld->err + ld->used, ld->errlen - ld->used, "%s%s", ld->used > 0 ? "\n" : "",
                 text);
    if (w < 0) return;
    ld->used += (size_t)w;
    if (ld->used >= ld->errlen) ld->used = ld->errlen - 1;
}

/* Appends one "FILE:LINE: SETTING: message" line (LINE omitted when 0,
 * SETTING when NULL), `file` being the path to show. */
static void add_error_at(struct loader *ld, const char *file, unsigned line, const char *setting,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void add_error_at(struct loader *ld, const char *file, unsigned line, const char *setting,
                         const char *fmt, ...)
{
    char msg[1024];
    char text[2400];
    char where[1100];
    va_list ap;

    ld->n_errors++;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0)
        snprintf(where, sizeof where, "%s:%u", file, line);
    else
        snprintf(where, sizeof where, "%s", file);
    snprintf(text, sizeof text, "%s: %s%s%s", where, setting ? setting : "", setting ? ": " : "",
             msg);
    append_line(ld, text);
}

/* add_error_at() for the file libconfig calls `file` (see display_file). */
static void add_error(struct loader *ld, const char *file, unsigned line, const char *setting,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void add_error(struct loader *ld, const char *file, unsigned line, const char *setting,
                      const char *fmt, ...)
{
    char msg[1024];
    char fbuf[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    add_error_at(ld, display_file(ld, file, fbuf, sizeof fbuf), line, setting, "%s", msg);
}

/* cfgsrc's reports: the file is already a path to show. */
static void source_error(void *ctx, const char *file, unsigned line, const char *setting,
                         const char *msg)
{
    add_error_at(ctx, file, line, setting, "%s", msg);
}

/* Shows line `line` of `f` under the error just added, indented, with a
 * caret line under [col, col + caret_len) (none when caret_len is 0).
 * A long line is shown as a window around the caret. */
static void show_source_line(struct loader *ld, const struct cfgsrc_file *f, unsigned line,
                             size_t col, size_t caret_len)
{
    enum { INDENT = 4, WIDTH = 100 };
    char text[INDENT + 3 + WIDTH + 3 + 1], caret[INDENT + 3 + WIDTH + 1];
    const char *b, *e;
    size_t from = 0, t = 0, c = 0;

    if (cfgsrc_line(f, line, &b, &e) != 0 || b == e) return;
    if (col > (size_t)(e - b)) col = (size_t)(e - b);
    if (col > WIDTH - 20) from = col - (WIDTH - 20);
    memset(text, ' ', sizeof text);
    memset(caret, ' ', sizeof caret);
    t = c = INDENT;
    if (from > 0) {
        memcpy(text + t, "...", 3);
        t += 3;
        c += 3;
    }
    for (size_t i = from; b + i < e && i < from + WIDTH; i++) {
        unsigned char ch = (unsigned char)b[i];
        text[t++] = ch == '\t' ? '\t' : ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
        if (i < col) caret[c++] = ch == '\t' ? '\t' : ' ';
        else if (i < col + caret_len) caret[c++] = i == col ? '^' : '~';
    }
    if (b + from + WIDTH < e) {
        memcpy(text + t, "...", 3);
        t += 3;
    }
    text[t] = '\0';
    if (col >= (size_t)(e - b) && c < sizeof caret - 1) caret[c++] = '^';   /* past the end */
    caret[c] = '\0';
    append_line(ld, text);
    if (caret_len > 0) append_line(ld, caret);
}

/* libconfig said "syntax error" at file:line; say where and why (cfglex.h).
 * cfglex never places the error after libconfig's line (libconfig stops at
 * the first token it cannot take); if it finds nothing, or disagrees, the
 * message falls back on libconfig's line. */
static void syntax_error(struct loader *ld, const char *lc_file, unsigned lc_line)
{
    const struct cfgsrc_file *f = cfgsrc_file(&ld->src, lc_file);
    char fbuf[1024];
    const char *file = display_file(ld, lc_file, fbuf, sizeof fbuf);
    struct cfglex_diag d;

    if (f && cfglex_explain(f->text, f->len, &d) == 1 && d.line <= lc_line) {
        if (d.near[0])
            add_error_at(ld, file, d.line, NULL, "syntax error near '%s': %s", d.near, d.msg);
        else
            add_error_at(ld, file, d.line, NULL, "syntax error at the end of the file: %s", d.msg);
        show_source_line(ld, f, d.line, d.col, d.caret_len);
        return;
    }
    /* libconfig blames the including file for an error at the end of an
     * included one: look there too. */
    for (size_t i = 0; f && i < ld->src.n_files; i++) {
        const struct cfgsrc_file *g = &ld->src.files[i];
        if (g == f || cfglex_explain(g->text, g->len, &d) != 1) continue;
        add_error_at(ld, g->path, d.line, NULL, "syntax error near '%s': %s", d.near, d.msg);
        show_source_line(ld, g, d.line, d.col, d.caret_len);
        return;
    }
    add_error_at(ld, file, lc_line, NULL, "syntax error");
    if (f) show_source_line(ld, f, lc_line, 0, 0);
}

static void setting_error(struct loader *ld, const config_setting_t *s, const char *name,
                          const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void setting_error(struct loader *ld, const config_setting_t *s, const char *name,
                          const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    add_error(ld, config_setting_source_file(s), config_setting_source_line(s), name, "%s", msg);
}

static const char *type_name(int type)
{
    switch (type) {
    case CONFIG_TYPE_GROUP: return "a group { ... }";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: return "an integer";
    case CONFIG_TYPE_FLOAT: return "a floating-point number";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_ARRAY: return "an array [ ... ]";
    case CONFIG_TYPE_LIST: return "a list ( ... )";
    default: return "nothing";
    }
}

/* Quotes a user-supplied value for a message, shortened if long. */
static const char *shown(char *buf, size_t size, const char *s)
{
    size_t len = strlen(s);
    if (len + 3 <= size)
        snprintf(buf, size, "\"%s\"", s);
    else
        snprintf(buf, size, "\"%.*s...\"", (int)(size - 6), s);
    return buf;
}

/* ---- integer literals as written (cfgsrc.h) -------------------------------- */

/* The literal behind integer setting `s` as written on its line, when it is
 * one libconfig could have read as `parsed` (see cfgsrc_int_literal). */
static int integer_literal(struct loader *ld, const config_setting_t *s, long long parsed,
                           long long *lit)
{
    const struct cfgsrc_file *f = cfgsrc_file(&ld->src, config_setting_source_file(s));

    return cfgsrc_int_literal(f, config_setting_source_line(s), config_setting_name(s), parsed,
                              lit);
}

/* ---- ${VAR} expansion ----------------------------------------------------- */

static int var_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int var_char(char c) { return var_start(c) || (c >= '0' && c <= '9'); }

/* Expands ${VAR} and ${VAR:-default} in `in`. Returns a malloc'd string, or
 * NULL with a message in why. */
static char *expand(const char *in, char *why, size_t whylen)
{
    char *out = malloc(CFG_MAX_STRING + 1);
    size_t o = 0;
    const char *p = in;

    if (out == NULL) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    while (*p) {
        const char *piece = p;
        size_t plen = 1;

        if (p[0] == '$' && p[1] == '{') {
            const char *name = p + 2, *q = name, *close, *def = NULL;
            char var[256];
            const char *val;

            if (*q == '\0') goto unterminated;
            if (!var_start(*q)) goto bad_name;
            while (var_char(*q)) q++;
            if ((size_t)(q - name) >= sizeof var) goto bad_name;
            if (*q == '\0') goto unterminated;
            if (q[0] == ':' && q[1] == '-') def = q + 2;
            else if (q[0] != '}') goto bad_name;
            close = strchr(q, '}');
            if (close == NULL) goto unterminated;
            memcpy(var, name, (size_t)(q - name));
            var[q - name] = '\0';
            val = getenv(var);
            if (def && (val == NULL || val[0] == '\0')) {
                piece = def;
                plen = (size_t)(close - def);
            } else if (val == NULL) {
                snprintf(why, whylen,
                         "environment variable %.64s is not set (set it, or write ${%.64s:-default})",
                         var, var);
                goto fail;
            } else {
                piece = val;
                plen = strlen(val);
            }
            p = close + 1;
        } else {
            p++;
        }
        if (o + plen > CFG_MAX_STRING) {
            snprintf(why, whylen, "value is longer than %d bytes after expansion", CFG_MAX_STRING);
            goto fail;
        }
        memcpy(out + o, piece, plen);
        o += plen;
    }
    out[o] = '\0';
    return out;

unterminated:
    snprintf(why, whylen, "unterminated \"${\" (write ${VAR} or ${VAR:-default})");
    goto fail;
bad_name:
    snprintf(why, whylen,
             "bad variable reference \"%.40s\": write ${VAR} or ${VAR:-default}, "
             "VAR made of [A-Za-z0-9_]", p);
fail:
    free(out);
    return NULL;
}

/* ---- typed getters: each reports its own error and returns -1 ------------- */

static int get_string(struct loader *ld, const config_setting_t *s, const char *name,
                      char **out /* OUT, malloc'd */)
{
    char why[256];

    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        setting_error(ld, s, name, "expected a string in double quotes, got %s",
                      type_name(config_setting_type(s)));
        return -1;
    }
    *out = expand(config_setting_get_string(s), why, sizeof why);
    if (*out == NULL) {
        setting_error(ld, s, name, "%s", why);
        return -1;
    }
    return 0;
}

/* Reads an integer setting as written (see integer_literal). */
static int read_int(struct loader *ld, const config_setting_t *s, const char *name,
                    long long *out)
{
    long long v, lit;
    int type = config_setting_type(s);

    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
        setting_error(ld, s, name, "expected an integer, got %s", type_name(type));
        return -1;
    }
    v = type == CONFIG_TYPE_INT ? config_setting_get_int(s) : config_setting_get_int64(s);
    if (type == CONFIG_TYPE_INT && integer_literal(ld, s, v, &lit) == 0 && lit != v)
        v = lit;   /* libconfig wrapped a >32-bit literal */
    *out = v;
    return 0;
}

static void range_error(struct loader *ld, const config_setting_t *s, const char *name,
                        long long v, const char *range)
{
    if (v == LLONG_MAX || v == LLONG_MIN)
        setting_error(ld, s, name, "value is out of range; must be %s", range);
    else
        setting_error(ld, s, name, "%lld is out of range; must be %s", v, range);
}

static int get_int(struct loader *ld, const config_setting_t *s, const char *name,
                   long long min, long long max, long long *out)
{
    char range[64];
    long long v;

    if (read_int(ld, s, name, &v) != 0) return -1;
    if (v < min || v > max) {
        snprintf(range, sizeof range, "%lld..%lld", min, max);
        range_error(ld, s, name, v, range);
        return -1;
    }
    *out = v;
    return 0;
}

/* Like get_int, but 0 (meaning "off") is also accepted. */
static int get_int_or_off(struct loader *ld, const config_setting_t *s, const char *name,
                          long long min, long long max, long long *out)
{
    char range[80];
    long long v;

    if (read_int(ld, s, name, &v) != 0) return -1;
    if (v != 0 && (v < min || v > max)) {
        snprintf(range, sizeof range, "0 (off) or %lld..%lld", min, max);
        range_error(ld, s, name, v, range);
        return -1;
    }
    *out = v;
    return 0;
}

static int get_bool(struct loader *ld, const config_setting_t *s, const char *name, bool *out)
{
    if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
        setting_error(ld, s, name, "expected true or false, got %s",
                      type_name(config_setting_type(s)));
        return -1;
    }
    *out = config_setting_get_bool(s) != 0;
    return 0;
}

/* True when `g` is a group; otherwise reports "expected a group { shape },
 * got TYPE" under `name` and returns false. */
static bool expect_group(struct loader *ld, const config_setting_t *g, const char *name,
                         const char *shape)
{
    if (config_setting_is_group(g)) return true;
    setting_error(ld, g, name, "expected a group { %s }, got %s", shape,
                  type_name(config_setting_type(g)));
    return false;
}

static void unknown_setting(struct loader *ld, const config_setting_t *s, const char *name,
                            const char *known)
{
    setting_error(ld, s, name, "unknown setting; expected one of: %s", known);
}

/* ---- targets (checked by target.c) ---------------------------------------- */

/* Reads a string setting and checks it as a target of `kind`. */
static int get_target(struct loader *ld, const config_setting_t *s, const char *name,
                      enum target_kind kind, char **out)
{
    char why[128], buf[96];
    const char *bad;

    if (get_string(ld, s, name, out) != 0) return -1;
    bad = target_check(*out, kind, why, sizeof why);
    if (bad) {
        setting_error(ld, s, name, "%s is not a valid address: %s", shown(buf, sizeof buf, *out),
                      bad);
        free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

/* ---- data_dir ------------------------------------------------------------- */

/* dir resolved against the config file's directory `base` (NULL: the
 * working directory) unless it is absolute; leading "./" dropped.
 * Returns malloc'd or NULL (no memory). */
static char *resolve_dir(const char *base, const char *dir)
{
    size_t n;
    char *r;

    if (dir[0] == '/') return strdup(dir);
    while (dir[0] == '.' && dir[1] == '/') {
        dir += 2;
        while (*dir == '/') dir++;
    }
    if (strcmp(dir, ".") == 0) dir = "";
    if (base == NULL) return strdup(dir[0] ? dir : ".");
    if (dir[0] == '\0') return strdup(base);
    n = (size_t)cfgsrc_path_join(NULL, 0, base, dir) + 1;
    if ((r = malloc(n)) != NULL) cfgsrc_path_join(r, n, base, dir);
    return r;
}

/* ---- sections ------------------------------------------------------------- */

static void load_checkpoint(struct loader *ld, config_setting_t *g, struct cfg *c)
{
    const char *known = "interval_ms, sync";
    char name[CFG_SETTING_MAX];

    if (!expect_group(ld, g, "runtime.checkpoint", "interval_ms = ...; sync = ...;")) return;
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *key = config_setting_name(s);
        long long v;

        snprintf(name, sizeof name, "runtime.checkpoint.%s", key);
        if (strcmp(key, "interval_ms") == 0) {
            if (get_int(ld, s, name, 0, 60000, &v) == 0) c->checkpoint_interval_ms = (int)v;
        } else if (strcmp(key, "sync") == 0) {
            (void)get_bool(ld, s, name, &c->checkpoint_sync);
        } else {
            unknown_setting(ld, s, name, known);
        }
    }
}

static void load_storage(struct loader *ld, config_setting_t *g, struct cfg *c)
{
    const char *known = "block_cache_bytes, write_buffer_bytes, compression, max_open_files";
    char name[CFG_SETTING_MAX];

    if (!expect_group(ld, g, "runtime.storage", "block_cache_bytes = ...; ...")) return;
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *key = config_setting_name(s);
        long long v;

        snprintf(name, sizeof name, "runtime.storage.%s", key);
        if (strcmp(key, "block_cache_bytes") == 0) {
            if (get_int(ld, s, name, 1LL << 20, CFG_QUEUED_MAX, &v) == 0)
                c->storage_block_cache_bytes = (size_t)v;
        } else if (strcmp(key, "write_buffer_bytes") == 0) {
            if (get_int(ld, s, name, 1LL << 20, 1LL << 30, &v) == 0)
                c->storage_write_buffer_bytes = (size_t)v;
        } else if (strcmp(key, "compression") == 0) {
            (void)get_bool(ld, s, name, &c->storage_compression);
        } else if (strcmp(key, "max_open_files") == 0) {
            if (get_int(ld, s, name, 20, 100000, &v) == 0) c->storage_max_open_files = (int)v;
        } else {
            unknown_setting(ld, s, name, known);
        }
    }
}

static int group_list_length(struct loader *ld, config_setting_t *list, const char *name,
                             const char *shape);

/* runtime.auth = { tokens = ( { file = "..."; role = "..."; }, ... ); };
 * Each file is read now (auth_read_token_file) so --check-config shows a
 * bad one with its line; duplicates are refused. */
static void load_auth_token(struct loader *ld, config_setting_t *g, int idx,
                            struct auth_source *t, uint8_t hash[AUTH_HASH_BYTES], int *ok)
{
    char name[CFG_SETTING_MAX], base[48], buf[160], why[512], *str = NULL;
    config_setting_t *s_file = NULL;
    int seen_role = 0;

    *ok = 0;
    snprintf(base, sizeof base, "runtime.auth.tokens[%d]", idx);
    if (!expect_group(ld, g, base, "file = \"...\"; role = \"...\";")) return;
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *key = config_setting_name(s);

        snprintf(name, sizeof name, "%s.%s", base, key);
        if (strcmp(key, "file") == 0) {
            if (get_string(ld, s, name, &str) != 0) continue;
            s_file = s;
            if (str[0] == '\0') setting_error(ld, s, name, "must not be empty");
            else if (!(t->path = resolve_dir(ld->dir, str))) setting_error(ld, s, name, "out of memory");
            free(str);
        } else if (strcmp(key, "role") == 0) {
            seen_role = 1;
            if (get_string(ld, s, name, &str) != 0) continue;
            if (auth_role_parse(str, &t->role) != 0)
                setting_error(ld, s, name, "unknown role %s; use \"client\", \"metrics\", "
                              "\"admin\" or \"peer\"", shown(buf, sizeof buf, str));
            free(str);
        } else {
            unknown_setting(ld, s, name, "file, role");
        }
    }
    if (!s_file) {
        snprintf(name, sizeof name, "%s.file", base);
        setting_error(ld, g, name, "missing; name the file that holds the token");
    }
    if (!seen_role) {
        snprintf(name, sizeof name, "%s.role", base);
        setting_error(ld, g, name, "missing; use \"client\", \"metrics\" or \"admin\"");
    }
    if (!t->path) return;
    snprintf(name, sizeof name, "%s.file", base);
    if (auth_read_token_file(t->path, hash, why, sizeof why) != 0) {
        setting_error(ld, s_file, name, "%s %s%s", shown(buf, sizeof buf, t->path), why,
                      strncmp(why, "cannot read", 11) == 0
                          ? " (relative paths start at the config file's directory)" : "");
        return;
    }
    *ok = 1;
}

/* runtime.auth.certificates = ( { identity = "..."; role = "..."; }, ... );
 * An identity is a SAN or CN exactly as the certificate states it
 * (printable, no comma, 1..1024 bytes); each at most once. */
static void load_auth_certs(struct loader *ld, config_setting_t *list, struct cfg *c)
{
    int n = group_list_length(ld, list, "runtime.auth.certificates",
                              "( { identity = ...; role = ...; }, ... )");
    char name[CFG_SETTING_MAX], base[48], buf[160];

    if (n < 0) return;
    if (n == 0) {
        setting_error(ld, list, "runtime.auth.certificates", "is empty; list certificate "
                      "identities with their roles, or remove the setting");
        return;
    }
    if (!(c->auth_certs = calloc((size_t)n, sizeof *c->auth_certs))) {
        setting_error(ld, list, "runtime.auth.certificates", "out of memory");
        return;
    }
    c->n_auth_certs = (size_t)n;
    for (int i = 0; i < n; i++) {
        config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
        struct auth_cert *e = &c->auth_certs[i];
        int seen_id = 0, seen_role = 0;

        snprintf(base, sizeof base, "runtime.auth.certificates[%d]", i);
        if (!expect_group(ld, g, base, "identity = \"spiffe://...\"; role = \"...\";")) continue;
        for (int k = 0; k < config_setting_length(g); k++) {
            config_setting_t *s = config_setting_get_elem(g, (unsigned)k);
            const char *key = config_setting_name(s);
            char *str = NULL;

            snprintf(name, sizeof name, "%s.%s", base, key);
            if (strcmp(key, "identity") == 0) {
                seen_id = 1;
                if (get_string(ld, s, name, &str) != 0) continue;
                size_t len = strlen(str);
                int bad = len == 0 || len > 1024;
                for (size_t j = 0; j < len && !bad; j++)
                    bad = str[j] == ',' || (unsigned char)str[j] < 0x21 || (unsigned char)str[j] > 0x7e;
                if (bad) {
                    setting_error(ld, s, name, "%s is not a certificate identity: give one subject "
                                  "alternative name (or the common name) exactly, 1..1024 "
                                  "printable bytes without spaces or commas",
                                  shown(buf, sizeof buf, str));
                    free(str);
                    continue;
                }
                for (int j = 0; j < i; j++)
                    if (c->auth_certs[j].identity && strcmp(c->auth_certs[j].identity, str) == 0) {
                        setting_error(ld, s, name, "%s is also certificates[%d]; give each "
                                      "identity once", shown(buf, sizeof buf, str), j);
                        bad = 1;
                        break;
                    }
                if (bad) free(str);
                else e->identity = str;
            } else if (strcmp(key, "role") == 0) {
                seen_role = 1;
                if (get_string(ld, s, name, &str) != 0) continue;
                if (auth_role_parse(str, &e->role) != 0)
                    setting_error(ld, s, name, "unknown role %s; use \"client\", \"metrics\", "
                                  "\"admin\" or \"peer\"", shown(buf, sizeof buf, str));
                free(str);
            } else {
                unknown_setting(ld, s, name, "identity, role");
            }
        }
        if (!seen_id) {
            snprintf(name, sizeof name, "%s.identity", base);
            setting_error(ld, g, name, "missing; give the certificate's SAN or common name");
        }
        if (!seen_role) {
            snprintf(name, sizeof name, "%s.role", base);
            setting_error(ld, g, name, "missing; use \"client\", \"metrics\" or \"admin\"");
        }
    }
}

static void load_auth(struct loader *ld, config_setting_t *g, struct cfg *c)
{
    config_setting_t *list = NULL;
    uint8_t(*hashes)[AUTH_HASH_BYTES];
    int *ok, n;

    if (!expect_group(ld, g, "runtime.auth", "tokens = ( { file = ...; role = ...; }, ... );"))
        return;
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        char name[CFG_SETTING_MAX];
        snprintf(name, sizeof name, "runtime.auth.%s", config_setting_name(s));
        if (strcmp(config_setting_name(s), "tokens") == 0) list = s;
        else if (strcmp(config_setting_name(s), "certificates") == 0) load_auth_certs(ld, s, c);
        else unknown_setting(ld, s, name, "tokens, certificates");
    }
    if (!list && c->n_auth_certs) return;        /* certificates only */
    if (!list) {
        setting_error(ld, g, "runtime.auth.tokens", "missing; list the token files (or "
                      "certificates), or remove runtime.auth for an open runtime");
        return;
    }
    n = group_list_length(ld, list, "runtime.auth.tokens", "( { file = ...; role = ...; }, ... )");
    if (n < 0) return;
    if (n == 0) {
        setting_error(ld, list, "runtime.auth.tokens", "is empty: no one could call the "
                      "runtime; list at least one token file, or remove runtime.auth");
        return;
    }
    c->auth_tokens = calloc((size_t)n, sizeof *c->auth_tokens);
    hashes = calloc((size_t)n, sizeof *hashes);
    ok = calloc((size_t)n, sizeof *ok);
    if (!c->auth_tokens || !hashes || !ok) {
        setting_error(ld, list, "runtime.auth.tokens", "out of memory");
        free(hashes);
        free(ok);
        return;
    }
    c->n_auth_tokens = (size_t)n;
    for (int i = 0; i < n; i++) {
        config_setting_t *t = config_setting_get_elem(list, (unsigned)i);
        load_auth_token(ld, t, i, &c->auth_tokens[i], hashes[i], &ok[i]);
        for (int j = 0; ok[i] && j < i; j++)
            if (ok[j] && memcmp(hashes[i], hashes[j], AUTH_HASH_BYTES) == 0) {
                char name[CFG_SETTING_MAX];
                snprintf(name, sizeof name, "runtime.auth.tokens[%d].file", i);
                setting_error(ld, t, name, "holds the same token as tokens[%d]; every token "
                              "must be unique", j);
                break;
            }
    }
    memset(hashes, 0, (size_t)n * sizeof *hashes);
    free(hashes);
    free(ok);
}

/* A `tls = { cert; key; ca; require_client_cert; }` group named `group`
 * ("runtime.tls", "endpoints[N].tls", "cluster.etcd_tls", ...). server: the ingress (require_client_cert
 * allowed). Paths resolve like data_dir; the files are read and checked
 * now (tls_check), so a missing file or a key that does not match its
 * certificate stops the start, not the first handshake. */
static void load_tls(struct loader *ld, config_setting_t *g, const char *group, int server,
                     struct cfg_tls *t)
{
    const char *known = server ? "cert, key, ca, require_client_cert" : "ca, cert, key";
    char name[CFG_SETTING_MAX], why[1200];
    const char *bad;
    int errors = ld->n_errors;

    snprintf(name, sizeof name, "%s", group);
    if (!expect_group(ld, g, name, server ? "cert = \"server.crt\"; key = \"server.key\"; ..."
                                          : "ca = \"ca.crt\"; ...")) return;
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *key = config_setting_name(s);
        char **slot = strcmp(key, "cert") == 0 ? &t->cert
                    : strcmp(key, "key") == 0  ? &t->key
                    : strcmp(key, "ca") == 0   ? &t->ca
                                               : NULL;
        char *str = NULL;

        snprintf(name, sizeof name, "%s.%s", group, key);
        if (slot) {
            if (get_string(ld, s, name, &str) != 0) continue;
            if (str[0] == '\0') {
                setting_error(ld, s, name, "must not be empty; give the path of a PEM file");
            } else {
                free(*slot);
                if (!(*slot = resolve_dir(ld->dir, str))) setting_error(ld, s, name, "out of memory");
            }
            free(str);
        } else if (server && strcmp(key, "require_client_cert") == 0) {
            (void)get_bool(ld, s, name, &t->require_client_cert);
        } else {
            unknown_setting(ld, s, name, known);
        }
    }
    t->on = true;
    if (ld->n_errors != errors) return;
    if ((bad = tls_check(t, server, why, sizeof why)) != NULL) {
        snprintf(name, sizeof name, "%s.%s", group, bad);
        setting_error(ld, g, name, "%s", why);
    }
}

/* runtime.tracing (trace.h): otlp is required; sample_ratio 0..1. */
static void load_tracing(struct loader *ld, config_setting_t *g, struct cfg *c)
{
    const char *known = "otlp, sample_ratio, tls";
    char name[CFG_SETTING_MAX];
    struct cfg_tracing *t = &c->tracing;

    if (!expect_group(ld, g, "runtime.tracing", "otlp = \"host:port\"; sample_ratio = 0.1;"))
        return;
    t->on = true;
    t->sample_ratio = 1.0;
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *key = config_setting_name(s);
        char *str = NULL;

        snprintf(name, sizeof name, "runtime.tracing.%s", key);
        if (strcmp(key, "otlp") == 0) {
            if (get_target(ld, s, name, TARGET_REMOTE, &str) != 0) continue;
            free(t->otlp);
            t->otlp = str;
        } else if (strcmp(key, "sample_ratio") == 0) {
            double v;
            int type = config_setting_type(s);
            if (type == CONFIG_TYPE_FLOAT) v = config_setting_get_float(s);
            else if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64) v = (double)config_setting_get_int64(s);
            else {
                setting_error(ld, s, name, "must be a number from 0 to 1 (e.g. 0.1)");
                continue;
            }
            if (!(v >= 0.0 && v <= 1.0)) {
                setting_error(ld, s, name, "is %g; use a number from 0 (record no new trace) to 1 "
                              "(record every one)", v);
                continue;
            }
            t->sample_ratio = v;
        } else if (strcmp(key, "tls") == 0) {
            load_tls(ld, s, "runtime.tracing.tls", 0, &t->tls);
        } else {
            unknown_setting(ld, s, name, known);
        }
    }
    if (!t->otlp)
        setting_error(ld, g, "runtime.tracing.otlp",
                      "missing; give the OTLP/gRPC collector as \"host:port\" (e.g. \"127.0.0.1:4317\")");
}

static void load_runtime(struct loader *ld, config_setting_t *g, struct cfg *c)
{
    const char *known = "data_dir, ingress, log_level, max_message_bytes, checkpoint, "
                        "max_queued_bytes, idempotency_retention_hours, state_cache_bytes, "
                        "state_filter_bytes, max_streams_per_connection, max_calls, storage, "
                        "admin, auth, metrics, tls, tracing";
    char name[CFG_SETTING_MAX];

    if (!expect_group(ld, g, "runtime", "...")) return;
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *key = config_setting_name(s);
        char *str = NULL;
        long long v;

        snprintf(name, sizeof name, "runtime.%s", key);
        if (strcmp(key, "data_dir") == 0) {
            if (get_string(ld, s, name, &str) != 0) continue;
            if (str[0] == '\0') {
                setting_error(ld, s, name, "must not be empty");
                free(str);
                continue;
            }
            free(c->data_dir);
            c->data_dir = resolve_dir(ld->dir, str);
            free(str);
            if (c->data_dir == NULL) setting_error(ld, s, name, "out of memory");
        } else if (strcmp(key, "ingress") == 0) {
            if (get_target(ld, s, name, TARGET_LISTEN, &str) != 0) continue;
            free(c->ingress);
            c->ingress = str;
        } else if (strcmp(key, "metrics") == 0) {
            struct sockaddr_storage sa;
            socklen_t salen;
            char why[200], buf[80];
            if (get_string(ld, s, name, &str) != 0) continue;
            if (metrics_parse_addr(str, &sa, &salen, why, sizeof why) != 0) {
                setting_error(ld, s, name, "%s: %s", shown(buf, sizeof buf, str), why);
                free(str);
                continue;
            }
            free(c->metrics);
            c->metrics = str;
        } else if (strcmp(key, "admin") == 0) {
            if (get_target(ld, s, name, TARGET_LISTEN, &str) != 0) continue;
            free(c->admin);
            c->admin = str;
        } else if (strcmp(key, "auth") == 0) {
            load_auth(ld, s, c);
        } else if (strcmp(key, "log_level") == 0) {
            char buf[64];
            if (get_string(ld, s, name, &str) != 0) continue;
            if (log_level_parse(str, &c->log_level) != 0)
                setting_error(ld, s, name, "unknown level %s; use debug, info, warn or error",
                              shown(buf, sizeof buf, str));
            free(str);
        } else if (strcmp(key, "max_message_bytes") == 0) {
            if (get_int(ld, s, name, 1024, 64LL * 1024 * 1024, &v) == 0)
                c->max_message_bytes = (size_t)v;
        } else if (strcmp(key, "max_queued_bytes") == 0) {
            if (get_int(ld, s, name, CFG_QUEUED_MIN, CFG_QUEUED_MAX, &v) == 0)
                c->max_queued_bytes = (size_t)v;
        } else if (strcmp(key, "state_cache_bytes") == 0) {
            if (get_int(ld, s, name, 0, CFG_QUEUED_MAX, &v) == 0) c->state_cache_bytes = (size_t)v;
        } else if (strcmp(key, "state_filter_bytes") == 0) {
            if (get_int(ld, s, name, 0, CFG_STATE_FILTER_MAX, &v) == 0)
                c->state_filter_bytes = (size_t)v;
        } else if (strcmp(key, "idempotency_retention_hours") == 0) {
            if (get_int(ld, s, name, 1, 8760, &v) == 0) c->idempotency_retention_hours = (int)v;
        } else if (strcmp(key, "max_streams_per_connection") == 0) {
            if (get_int(ld, s, name, 1, 1000000, &v) == 0) c->max_streams_per_connection = (int)v;
        } else if (strcmp(key, "max_calls") == 0) {
            if (get_int(ld, s, name, 1, 1000000, &v) == 0) c->max_calls = (long)v;
        } else if (strcmp(key, "checkpoint") == 0) {
            load_checkpoint(ld, s, c);
        } else if (strcmp(key, "storage") == 0) {
            load_storage(ld, s, c);
        } else if (strcmp(key, "tls") == 0) {
            load_tls(ld, s, "runtime.tls", 1, &c->tls);
        } else if (strcmp(key, "tracing") == 0) {
            load_tracing(ld, s, c);
        } else {
            unknown_setting(ld, s, name, known);
        }
    }
    if (c->n_auth_certs && !c->tls.ca) {
        config_setting_t *a = config_setting_get_member(g, "auth");
        setting_error(ld, a ? config_setting_get_member(a, "certificates") : g,
                      "runtime.auth.certificates", "needs runtime.tls with a ca: client "
                      "certificates are only verified against it (add require_client_cert = "
                      "true to demand one)");
    }
    if (c->admin && c->ingress && strcmp(c->admin, c->ingress) == 0)
        setting_error(ld, config_setting_get_member(g, "admin"), "runtime.admin",
                      "is the same address as runtime.ingress; give the admin listener its "
                      "own address, or remove runtime.admin to serve Admin on the ingress");
}

/* Reads retry.multiplier: an integer or a floating-point literal. */
static int get_multiplier(struct loader *ld, const config_setting_t *s, const char *name,
                          double *out)
{
    int type = config_setting_type(s);
    double v;

    if (type == CONFIG_TYPE_FLOAT)
        v = config_setting_get_float(s);
    else if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64)
        v = (double)config_setting_get_int64(s);
    else {
        setting_error(ld, s, name, "expected a number such as 2.0, got %s", type_name(type));
        return -1;
    }
    if (type == CONFIG_TYPE_INT) {
        long long lit;
        if (integer_literal(ld, s, (long long)config_setting_get_int(s), &lit) == 0) v = (double)lit;
    }
    if (!(v >= 1.0 && v <= 10.0)) {           /* also false for NaN */
        setting_error(ld, s, name, "%g is out of range; must be 1.0..10.0", v);
        return -1;
    }
    *out = v;
    return 0;
}

static void load_retry(struct loader *ld, config_setting_t *g, const char *base,
                       struct cfg_retry *r)
{
    const char *known = "initial_backoff_ms, multiplier, max_backoff_ms, max_attempts, "
                        "on_exhausted";
    char name[CFG_SETTING_MAX], buf[80], *str;
    config_setting_t *s_initial = NULL, *s_max = NULL;
    int initial_ok = 1, max_ok = 1;

    snprintf(name, sizeof name, "%s.retry", base);
    if (!expect_group(ld, g, name, "initial_backoff_ms = ...; multiplier = ...; "
                                   "max_backoff_ms = ...; max_attempts = ...;"))
        return;
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *key = config_setting_name(s);
        long long v;

        snprintf(name, sizeof name, "%s.retry.%s", base, key);
        if (strcmp(key, "initial_backoff_ms") == 0) {
            s_initial = s;
            initial_ok = get_int(ld, s, name, 1, 3600000, &v) == 0;
            if (initial_ok) r->initial_backoff_ms = (int)v;
        } else if (strcmp(key, "multiplier") == 0) {
            (void)get_multiplier(ld, s, name, &r->multiplier);
        } else if (strcmp(key, "max_backoff_ms") == 0) {
            s_max = s;
            max_ok = get_int(ld, s, name, 1, 3600000, &v) == 0;
            if (max_ok) r->max_backoff_ms = (int)v;
        } else if (strcmp(key, "max_attempts") == 0) {
            if (get_int(ld, s, name, 0, 1000000, &v) == 0) r->max_attempts = (int)v;
        } else if (strcmp(key, "on_exhausted") == 0) {
            if (get_string(ld, s, name, &str) != 0) continue;
            if (strcmp(str, "dead_letter") == 0)
                r->pause_on_exhausted = false;
            else if (strcmp(str, "pause") == 0)
                r->pause_on_exhausted = true;
            else
                setting_error(ld, s, name, "unknown value %s; use \"dead_letter\" or \"pause\"",
                              shown(buf, sizeof buf, str));
            free(str);
        } else {
            unknown_setting(ld, s, name, known);
        }
    }
    if (initial_ok && max_ok && r->max_backoff_ms < r->initial_backoff_ms) {
        if (s_max) {
            snprintf(name, sizeof name, "%s.retry.max_backoff_ms", base);
            setting_error(ld, s_max, name, "%d is below initial_backoff_ms (%d); must be >= it",
                          r->max_backoff_ms, r->initial_backoff_ms);
        } else {
            snprintf(name, sizeof name, "%s.retry.initial_backoff_ms", base);
            setting_error(ld, s_initial ? s_initial : g, name,
                          "%d is above the default max_backoff_ms (%d); raise max_backoff_ms too",
                          r->initial_backoff_ms, r->max_backoff_ms);
        }
    }
}

static const char *mode_name(enum cfg_mode m)
{
    return m == CFG_MODE_REMOTE ? "remote" : m == CFG_MODE_EMBEDDED ? "embedded" : "sidecar";
}

/* Resolves an embedded endpoint's library against the config file's directory
 * and checks that it is a readable regular file. Loading it (dlopen, the init
 * symbol) is left to statemeshd's start: --check-config runs no module code. */
static void check_library(struct loader *ld, const config_setting_t *s, const char *name,
                          const char *value, struct cfg_endpoint *ep)
{
    char buf[CFG_MAX_STRING + 16];
    struct stat st;

    if (value[0] == '\0') {
        setting_error(ld, s, name, "must not be empty; give the path of a .so built with "
                      "the C SDK (see runtime/embedded.h)");
        return;
    }
    ep->library = resolve_dir(ld->dir, value);
    if (ep->library == NULL) {
        setting_error(ld, s, name, "out of memory");
        return;
    }
    if (stat(ep->library, &st) != 0 || access(ep->library, R_OK) != 0) {
        int e = errno;
        setting_error(ld, s, name, "%s: %s (relative paths start at the config file's "
                      "directory)", shown(buf, sizeof buf, ep->library), strerror(e));
    } else if (!S_ISREG(st.st_mode)) {
        setting_error(ld, s, name, "%s is not a regular file", shown(buf, sizeof buf, ep->library));
    } else {
        return;
    }
    free(ep->library);
    ep->library = NULL;
}

static void load_endpoint(struct loader *ld, config_setting_t *g, size_t idx,
                          struct cfg_endpoint *ep)
{
    const char *known = "functions, mode, target, library, streams, max_batch, max_in_flight, "
                        "invocation_timeout_ms, keepalive_ms, retry, tls";
    char name[CFG_SETTING_MAX];
    char base[32];
    int seen_functions = 0, mode_ok = 1;
    config_setting_t *s_target = NULL, *s_library = NULL, *s_streams = NULL,
                     *s_keepalive = NULL, *s_tls = NULL;

    snprintf(base, sizeof base, "endpoints[%zu]", idx);
    ep->mode = CFG_MODE_SIDECAR;
    ep->streams = 0;                                 /* 0 until known: depends on mode */
    ep->max_batch = 1000;
    ep->max_in_flight = 1000;
    ep->invocation_timeout_ms = 30000;
    ep->keepalive_ms = 10000;
    ep->retry.initial_backoff_ms = 100;
    ep->retry.multiplier = 2.0;
    ep->retry.max_backoff_ms = 10000;
    ep->retry.max_attempts = CFG_DEFAULT_MAX_ATTEMPTS;
    ep->retry.pause_on_exhausted = false;
    ep->line = (int)config_setting_source_line(g);
    if (!expect_group(ld, g, base, "functions = \"ns/*\"; target = \"...\";")) return;
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *key = config_setting_name(s);
        char *str = NULL;
        char buf[96];
        long long v;

        snprintf(name, sizeof name, "%s.%s", base, key);
        if (strcmp(key, "functions") == 0) {
            const char *bad;
            seen_functions = 1;
            if (get_string(ld, s, name, &str) != 0) continue;
            bad = addr_check_pattern(str, strlen(str));
            if (bad) {
                setting_error(ld, s, name, "bad pattern %s: %s%s", shown(buf, sizeof buf, str),
                              bad, strstr(bad, "/*") ? "" : " (patterns: ns/name or ns/*)");
                free(str);
                continue;
            }
            ep->functions = str;
        } else if (strcmp(key, "target") == 0) {
            s_target = s;                            /* checked once the mode is known */
        } else if (strcmp(key, "library") == 0) {
            s_library = s;
        } else if (strcmp(key, "mode") == 0) {
            mode_ok = 0;
            if (get_string(ld, s, name, &str) != 0) continue;
            if (strcmp(str, "sidecar") == 0)
                ep->mode = CFG_MODE_SIDECAR, mode_ok = 1;
            else if (strcmp(str, "remote") == 0)
                ep->mode = CFG_MODE_REMOTE, mode_ok = 1;
            else if (strcmp(str, "embedded") == 0)
                ep->mode = CFG_MODE_EMBEDDED, mode_ok = 1;
            else
                setting_error(ld, s, name, "unknown mode %s; use sidecar, remote or embedded",
                              shown(buf, sizeof buf, str));
            free(str);
        } else if (strcmp(key, "streams") == 0) {
            s_streams = s;
            if (get_int(ld, s, name, 1, 64, &v) == 0) ep->streams = (int)v;
        } else if (strcmp(key, "max_batch") == 0) {
            if (get_int(ld, s, name, 1, 100000, &v) == 0) ep->max_batch = (int)v;
        } else if (strcmp(key, "max_in_flight") == 0) {
            if (get_int(ld, s, name, 1, 1000000, &v) == 0) ep->max_in_flight = (int)v;
        } else if (strcmp(key, "invocation_timeout_ms") == 0) {
            if (get_int(ld, s, name, 100, 3600000, &v) == 0) ep->invocation_timeout_ms = (int)v;
        } else if (strcmp(key, "keepalive_ms") == 0) {
            s_keepalive = s;
            if (get_int_or_off(ld, s, name, 1000, 3600000, &v) == 0) ep->keepalive_ms = (int)v;
        } else if (strcmp(key, "retry") == 0) {
            load_retry(ld, s, base, &ep->retry);
        } else if (strcmp(key, "tls") == 0) {
            s_tls = s;                               /* read once the target is known */
        } else {
            unknown_setting(ld, s, name, known);
        }
    }
    if (!seen_functions) {
        snprintf(name, sizeof name, "%s.functions", base);
        setting_error(ld, g, name, "missing; say which function types this endpoint serves, "
                      "e.g. functions = \"example/*\"");
    }
    if (ep->streams == 0) ep->streams = ep->mode == CFG_MODE_REMOTE ? 4 : 1;
    if (!mode_ok) return;                /* which of target/library applies is unknown */

    /* What the mode requires and forbids. */
    if (ep->mode == CFG_MODE_EMBEDDED) {
        if (s_target) {
            snprintf(name, sizeof name, "%s.target", base);
            setting_error(ld, s_target, name, "not used in embedded mode (the library is "
                          "loaded in-process); remove it, or set another mode");
        }
        if (s_streams) {
            snprintf(name, sizeof name, "%s.streams", base);
            setting_error(ld, s_streams, name, "not used in embedded mode (there is no "
                          "connection); remove it");
        }
        if (s_keepalive) {
            snprintf(name, sizeof name, "%s.keepalive_ms", base);
            setting_error(ld, s_keepalive, name, "not used in embedded mode (there is no "
                          "connection); remove it");
        }
        if (s_tls) {
            snprintf(name, sizeof name, "%s.tls", base);
            setting_error(ld, s_tls, name, "not used in embedded mode (there is no "
                          "connection); remove it");
        }
        snprintf(name, sizeof name, "%s.library", base);
        if (s_library == NULL) {
            setting_error(ld, g, name, "missing; embedded mode loads a shared library, "
                          "e.g. library = \"lib/libgreeter.so\"");
        } else {
            char *str = NULL;
            if (get_string(ld, s_library, name, &str) == 0) check_library(ld, s_library, name, str, ep);
            free(str);
        }
        return;
    }
    if (s_library) {
        snprintf(name, sizeof name, "%s.library", base);
        setting_error(ld, s_library, name, "only for mode = \"embedded\" (this endpoint is "
                      "%s); remove it, or set mode = \"embedded\" and drop target",
                      mode_name(ep->mode));
    }
    snprintf(name, sizeof name, "%s.target", base);
    if (s_target == NULL) {
        setting_error(ld, g, name, ep->mode == CFG_MODE_REMOTE
                      ? "missing; say where the function servers are, e.g. "
                        "target = \"dns:///greeter.default.svc.cluster.local:7000\""
                      : "missing; say where the function server listens, "
                        "e.g. target = \"unix:/run/fn.sock\"");
    } else {
        char *str = NULL;
        if (get_target(ld, s_target, name,
                       ep->mode == CFG_MODE_REMOTE ? TARGET_REMOTE : TARGET_SIDECAR, &str) == 0)
            ep->target = str;
    }
    if (s_tls && ep->target && strncmp(ep->target, "unix", 4) == 0) {
        snprintf(name, sizeof name, "%s.tls", base);
        setting_error(ld, s_tls, name, "TLS is for TCP targets; a unix socket stays plain "
                      "(its file permissions guard it): remove tls, or use host:port");
    } else if (s_tls) {
        snprintf(name, sizeof name, "%s.tls", base);
        load_tls(ld, s_tls, name, 0, &ep->tls);
    }
}

/* The number of groups in the list setting `name` (e.g. "endpoints"),
 * 0 when it is empty; -1 after reporting that it is not a list of the
 * given `shape`. */
static int group_list_length(struct loader *ld, config_setting_t *list, const char *name,
                             const char *shape)
{
    if (config_setting_is_array(list) && config_setting_length(list) == 0) return 0;
    if (!config_setting_is_list(list)) {
        setting_error(ld, list, name, "expected a list %s, got %s", shape,
                      type_name(config_setting_type(list)));
        return -1;
    }
    return config_setting_length(list);
}

static void load_endpoints(struct loader *ld, config_setting_t *list, struct cfg *c)
{
    int n = group_list_length(ld, list, "endpoints", "( { functions = ...; target = ...; }, ... )");

    if (n <= 0) return;
    c->endpoints = calloc((size_t)n, sizeof *c->endpoints);
    if (c->endpoints == NULL) {
        setting_error(ld, list, "endpoints", "out of memory");
        return;
    }
    c->n_endpoints = (size_t)n;
    for (int i = 0; i < n; i++) {
        config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
        struct cfg_endpoint *ep = &c->endpoints[i];

        load_endpoint(ld, g, (size_t)i, ep);
        if (ep->functions == NULL) continue;
        for (int j = 0; j < i; j++) {
            if (c->endpoints[j].functions && strcmp(c->endpoints[j].functions, ep->functions) == 0) {
                char name[CFG_SETTING_MAX], buf[96];
                config_setting_t *f = config_setting_get_member(g, "functions");
                snprintf(name, sizeof name, "endpoints[%d].functions", i);
                setting_error(ld, f ? f : g, name,
                              "pattern %s is already served by endpoints[%d] (line %d); "
                              "each pattern may appear once",
                              shown(buf, sizeof buf, ep->functions), j, c->endpoints[j].line);
                break;
            }
        }
    }
}

/* 1 if `name` is a valid egress name: [A-Za-z0-9_.-]{1,128}. */
static int egress_name_ok(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > CFG_EGRESS_NAME_MAX) return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '.' || *p == '-'))
            return 0;
    return 1;
}

static void load_egress(struct loader *ld, config_setting_t *g, size_t idx, struct cfg_egress *eg)
{
    const char *known = "name, retention_records, retention_hours";
    char name[CFG_SETTING_MAX];
    char base[32];
    int seen_name = 0;

    snprintf(base, sizeof base, "egresses[%zu]", idx);
    eg->retention_records = 0;
    eg->retention_hours = 168;
    eg->line = (int)config_setting_source_line(g);
    if (!expect_group(ld, g, base, "name = \"...\";")) return;
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *key = config_setting_name(s);
        char *str = NULL;
        char buf[160];
        long long v;

        snprintf(name, sizeof name, "%s.%s", base, key);
        if (strcmp(key, "name") == 0) {
            seen_name = 1;
            if (get_string(ld, s, name, &str) != 0) continue;
            if (!egress_name_ok(str)) {
                setting_error(ld, s, name, "bad egress name %s: use 1..%d characters of "
                              "[A-Za-z0-9_.-]", shown(buf, sizeof buf, str), CFG_EGRESS_NAME_MAX);
                free(str);
                continue;
            }
            eg->name = str;
        } else if (strcmp(key, "retention_records") == 0) {
            if (get_int(ld, s, name, 0, CFG_RETENTION_RECORDS_MAX, &v) == 0)
                eg->retention_records = v;
        } else if (strcmp(key, "retention_hours") == 0) {
            if (get_int(ld, s, name, 0, 87600, &v) == 0) eg->retention_hours = (int)v;
        } else {
            unknown_setting(ld, s, name, known);
        }
    }
    if (!seen_name) {
        snprintf(name, sizeof name, "%s.name", base);
        setting_error(ld, g, name, "missing; name the egress, e.g. name = \"receipts\"");
    }
}

static void load_egresses(struct loader *ld, config_setting_t *list, struct cfg *c)
{
    int n = group_list_length(ld, list, "egresses", "( { name = \"...\"; }, ... )");

    if (n <= 0) return;
    c->egresses = calloc((size_t)n, sizeof *c->egresses);
    if (c->egresses == NULL) {
        setting_error(ld, list, "egresses", "out of memory");
        return;
    }
    c->n_egresses = (size_t)n;
    for (int i = 0; i < n; i++) {
        config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
        struct cfg_egress *eg = &c->egresses[i];

        load_egress(ld, g, (size_t)i, eg);
        if (eg->name == NULL) continue;
        for (int j = 0; j < i; j++) {
            if (c->egresses[j].name && strcmp(c->egresses[j].name, eg->name) == 0) {
                char name[CFG_SETTING_MAX], buf[160];
                config_setting_t *f = config_setting_get_member(g, "name");
                snprintf(name, sizeof name, "egresses[%d].name", i);
                setting_error(ld, f ? f : g, name,
                              "egress %s is already declared by egresses[%d] (line %d); "
                              "names must be unique",
                              shown(buf, sizeof buf, eg->name), j, c->egresses[j].line);
                break;
            }
        }
    }
}

/* ---- cluster -------------------------------------------------------------- */

/* [A-Za-z0-9_.-], 1..CFG_CLUSTER_NAME_MAX bytes. */
static int cluster_word_ok(const char *w)
{
    size_t n = strlen(w);
    if (n == 0 || n > CFG_CLUSTER_NAME_MAX) return 0;
    return strspn(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

/* One etcd endpoint: http://host:port or host:port. Returns NULL or why not. */
static const char *etcd_url_problem(const char *u)
{
    const char *colon;
    size_t n;
    long port;
    char *end;

    if (strncmp(u, "https://", 8) == 0) u += 8;
    else if (strncmp(u, "http://", 7) == 0) u += 7;
    else if (strstr(u, "://")) return "the scheme must be http:// or https://";
    n = strlen(u);
    if (n && u[n - 1] == '/') n--;
    colon = memrchr(u, ':', n);
    if (!colon || colon == u || memchr(u, '/', n))
        return "must be http://host:port, https://host:port or host:port";
    port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || end != u + n || port < 1 || port > 65535)
        return "the port must be 1..65535";
    return NULL;
}

static void load_cluster_etcd(struct loader *ld, config_setting_t *s, const char *name,
                              struct cfg_cluster *cl)
{
    int n, type = config_setting_type(s);
    size_t total = 0;
    char *list, buf[160];

    if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST) {
        setting_error(ld, s, name, "expected a list of endpoints [\"http://host:port\", ...], "
                      "got %s", type_name(type));
        return;
    }
    n = config_setting_length(s);
    if (n < 1 || n > 16) {
        setting_error(ld, s, name, "needs 1..16 endpoints, got %d", n);
        return;
    }
    char *urls[16] = {0};
    for (int i = 0; i < n; i++) {
        config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        char ename[CFG_SETTING_MAX + 8];
        const char *why;

        snprintf(ename, sizeof ename, "%s[%d]", name, i);
        if (get_string(ld, e, ename, &urls[i]) != 0) continue;
        if ((why = etcd_url_problem(urls[i])) != NULL || strchr(urls[i], ',')) {
            setting_error(ld, e, ename, "bad etcd endpoint %s: %s", shown(buf, sizeof buf, urls[i]),
                          why ? why : "one endpoint per list element");
            free(urls[i]);
            urls[i] = NULL;
            continue;
        }
        total += strlen(urls[i]) + 1;
    }
    list = calloc(1, total + 1);
    for (int i = 0; i < n; i++) {
        if (urls[i] && list) {
            if (list[0]) strcat(list, ",");
            strcat(list, urls[i]);
        }
        free(urls[i]);
    }
    if (!list) {
        setting_error(ld, s, name, "out of memory");
        return;
    }
    free(cl->etcd);
    cl->etcd = list;
}

static void load_cluster(struct loader *ld, config_setting_t *g, struct cfg *c)
{
    const char *known = "name, node_id, advertise, etcd, etcd_tls, lease_ttl_ms, initial_nodes";
    struct cfg_cluster *cl = &c->cluster;
    char name[CFG_SETTING_MAX], buf[160];

    cl->line = (int)config_setting_source_line(g);
    if (!expect_group(ld, g, "cluster", "name = \"c1\"; node_id = \"n-0\"; etcd = [...]; "
                      "initial_nodes = 3;"))
        return;
    cl->enabled = true;
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *key = config_setting_name(s);
        char *str = NULL;
        long long v;

        snprintf(name, sizeof name, "cluster.%s", key);
        if (strcmp(key, "name") == 0 || strcmp(key, "node_id") == 0) {
            if (get_string(ld, s, name, &str) != 0) continue;
            if (!cluster_word_ok(str)) {
                setting_error(ld, s, name, "bad %s %s: use 1..%d characters of [A-Za-z0-9_.-]",
                              key[0] == 'n' && key[1] == 'a' ? "cluster name" : "node id",
                              shown(buf, sizeof buf, str), CFG_CLUSTER_NAME_MAX);
                free(str);
                continue;
            }
            char **dst = key[1] == 'a' ? &cl->name : &cl->node_id;
            free(*dst);
            *dst = str;
        } else if (strcmp(key, "advertise") == 0) {
            if (get_target(ld, s, name, TARGET_LISTEN, &str) != 0) continue;
            if (strncmp(str, "unix", 4) == 0 || strchr(str, ':') == NULL) {
                setting_error(ld, s, name, "%s: the others reach this node over TCP: use "
                              "host:port", shown(buf, sizeof buf, str));
                free(str);
                continue;
            }
            free(cl->advertise);
            cl->advertise = str;
        } else if (strcmp(key, "etcd") == 0) {
            load_cluster_etcd(ld, s, name, cl);
        } else if (strcmp(key, "etcd_tls") == 0) {
            load_tls(ld, s, "cluster.etcd_tls", 0, &cl->etcd_tls);
        } else if (strcmp(key, "lease_ttl_ms") == 0) {
            if (get_int(ld, s, name, 1000, 600000, &v) != 0) continue;
            if (v % 1000) {
                setting_error(ld, s, name, "%lld is not whole seconds (etcd leases count "
                              "seconds): use a multiple of 1000", v);
                continue;
            }
            cl->lease_ttl_ms = (int)v;
        } else if (strcmp(key, "initial_nodes") == 0) {
            if (get_int(ld, s, name, 1, 100, &v) == 0) cl->initial_nodes = (int)v;
        } else {
            unknown_setting(ld, s, name, known);
        }
    }
    if (!config_setting_get_member(g, "name"))
        setting_error(ld, g, "cluster.name", "missing; name the cluster, e.g. name = \"c1\"");
    if (!config_setting_get_member(g, "node_id"))
        setting_error(ld, g, "cluster.node_id", "missing; e.g. node_id = \"n-${ORDINAL}\"");
    if (!config_setting_get_member(g, "etcd"))
        setting_error(ld, g, "cluster.etcd", "missing; list etcd's endpoints, e.g. "
                      "etcd = [\"http://127.0.0.1:2379\"]");
    if (!config_setting_get_member(g, "initial_nodes"))
        setting_error(ld, g, "cluster.initial_nodes", "missing; the number of nodes the first "
                      "range assignment waits for, e.g. initial_nodes = 3");
    if (cl->etcd) {                 /* https:// and etcd_tls go together (etcd.h) */
        config_setting_t *s_etcd = config_setting_get_member(g, "etcd");
        int https = 0, plain = 0;
        for (const char *p = cl->etcd; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
            if (strncmp(p, "https://", 8) == 0) https++;
            else plain++;
        }
        if (cl->etcd_tls.on && plain)
            setting_error(ld, s_etcd, "cluster.etcd", "with cluster.etcd_tls every endpoint is "
                          "https://host:port");
        else if (!cl->etcd_tls.on && https)
            setting_error(ld, s_etcd, "cluster.etcd", "https:// needs cluster.etcd_tls = { ca = "
                          "\"etcd-ca.crt\"; } (and cert + key when etcd checks client "
                          "certificates)");
    }
}

/* After the whole file: advertise defaults to the ingress address. */
static void finish_cluster(struct loader *ld, const config_setting_t *g, struct cfg *c)
{
    struct cfg_cluster *cl = &c->cluster;
    char buf[160];

    if (!cl->enabled || cl->advertise) return;
    if (strncmp(c->ingress, "unix", 4) == 0 || strchr(c->ingress, ':') == NULL) {
        setting_error(ld, g, "cluster.advertise", "missing: the ingress %s is "
                     "not a TCP address, so say where the others reach this node "
                     "(advertise = \"host:port\")", shown(buf, sizeof buf, c->ingress));
        return;
    }
    if (!(cl->advertise = strdup(c->ingress))) setting_error(ld, g, "cluster", "out of memory");
}

/* ---- public --------------------------------------------------------------- */

void cfg_cleanup(struct cfg *cfg)
{
    if (cfg == NULL) return;
    free(cfg->path);
    free(cfg->data_dir);
    free(cfg->ingress);
    free(cfg->metrics);
    free(cfg->admin);
    for (size_t i = 0; i < cfg->n_auth_tokens; i++) free(cfg->auth_tokens[i].path);
    free(cfg->auth_tokens);
    for (size_t i = 0; i < cfg->n_auth_certs; i++) free(cfg->auth_certs[i].identity);
    free(cfg->auth_certs);
    tls_cfg_cleanup(&cfg->tls);
    free(cfg->tracing.otlp);
    tls_cfg_cleanup(&cfg->tracing.tls);
    for (size_t i = 0; i < cfg->n_endpoints; i++) {
        free(cfg->endpoints[i].functions);
        free(cfg->endpoints[i].target);
        free(cfg->endpoints[i].library);
        tls_cfg_cleanup(&cfg->endpoints[i].tls);
    }
    free(cfg->endpoints);
    for (size_t i = 0; i < cfg->n_egresses; i++) free(cfg->egresses[i].name);
    free(cfg->egresses);
    free(cfg->cluster.name);
    free(cfg->cluster.node_id);
    free(cfg->cluster.advertise);
    free(cfg->cluster.etcd);
    tls_cfg_cleanup(&cfg->cluster.etcd_tls);
    memset(cfg, 0, sizeof *cfg);
}

int cfg_load(const char *path, struct cfg *out, char *err, size_t errlen)
{
    struct loader ld = {.path = path, .err = err, .errlen = errlen};
    struct cfg c = {0};
    config_t lc;
    const char *slash;
    config_setting_t *root;
    int rc = -1;

    memset(out, 0, sizeof *out);
    if (err && errlen) err[0] = '\0';
    config_init(&lc);

    /* @include "x.conf" is relative to the including file's directory. */
    slash = strrchr(path, '/');
    if (slash) {
        ld.dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
        if (ld.dir == NULL) {
            add_error_at(&ld, path, 0, NULL, "out of memory");
            goto out;
        }
        config_set_include_dir(&lc, ld.dir);
    }
    /* Every file read and capped before libconfig sees a byte (cfgsrc.h). */
    if (cfgsrc_load(&ld.src, path, ld.dir, CFG_MAX_FILE_BYTES, source_error, &ld) != 0) {
        if (ld.n_errors == 0) add_error_at(&ld, path, 0, NULL, "out of memory");
        goto out;
    }
    if (!config_read_string(&lc, ld.src.files[0].text)) {
        const char *text = config_error_text(&lc);
        unsigned line = (unsigned)config_error_line(&lc);

        if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
            add_error(&ld, config_error_file(&lc), 0, NULL, "cannot read: %s", text);
        else if (text && strcmp(text, "syntax error") == 0)
            syntax_error(&ld, config_error_file(&lc), line);
        else
            add_error(&ld, config_error_file(&lc), line, NULL, "%s", text ? text : "error");
        goto out;
    }

    c.path = strdup(path);
    c.data_dir = resolve_dir(ld.dir, "./data");
    c.ingress = strdup("127.0.0.1:7070");
    c.log_level = LOG_LEVEL_INFO;
    c.max_message_bytes = 4u * 1024 * 1024;
    c.checkpoint_interval_ms = 0;
    c.checkpoint_sync = true;
    c.max_queued_bytes = CFG_DEFAULT_QUEUED_BYTES;
    c.state_cache_bytes = CFG_DEFAULT_STATE_CACHE;
    c.state_filter_bytes = CFG_DEFAULT_STATE_FILTER;
    c.idempotency_retention_hours = 24;
    c.max_streams_per_connection = 1000;
    c.max_calls = 10000;
    c.storage_block_cache_bytes = CFG_DEFAULT_BLOCK_CACHE;
    c.storage_write_buffer_bytes = CFG_DEFAULT_WRITE_BUFFER;
    c.storage_compression = true;
    c.storage_max_open_files = CFG_DEFAULT_MAX_OPEN_FILES;
    c.cluster.lease_ttl_ms = 5000;
    if (c.path == NULL || c.data_dir == NULL || c.ingress == NULL) {
        add_error_at(&ld, path, 0, NULL, "out of memory");
        goto out;
    }

    root = config_root_setting(&lc);
    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
        const char *key = config_setting_name(s);

        if (strcmp(key, "runtime") == 0)
            load_runtime(&ld, s, &c);
        else if (strcmp(key, "endpoints") == 0)
            load_endpoints(&ld, s, &c);
        else if (strcmp(key, "egresses") == 0)
            load_egresses(&ld, s, &c);
        else if (strcmp(key, "cluster") == 0)
            load_cluster(&ld, s, &c);
        else
            unknown_setting(&ld, s, key, "runtime, endpoints, egresses, cluster");
    }
    if (c.cluster.enabled) finish_cluster(&ld, config_setting_get_member(root, "cluster"), &c);
    if (ld.n_errors == 0) {
        *out = c;
        memset(&c, 0, sizeof c);
        rc = 0;
    }
out:
    cfg_cleanup(&c);
    config_destroy(&lc);
    free(ld.dir);
    cfgsrc_cleanup(&ld.src);
    return rc;
}

int cfg_match_endpoint(const struct cfg *cfg, const char *type)
{
    int wildcard = -1;

    for (size_t i = 0; i < cfg->n_endpoints; i++) {
        const char *p = cfg->endpoints[i].functions;
        size_t plen = strlen(p);

        if (!addr_pattern_match(p, type)) continue;
        if (plen >= 2 && p[plen - 2] == '/' && p[plen - 1] == '*') {
            if (wildcard < 0) wildcard = (int)i;
        } else {
            return (int)i;
        }
    }
    return wildcard;
}

int cfg_find_egress(const struct cfg *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_egresses; i++)
        if (strcmp(cfg->egresses[i].name, name) == 0) return (int)i;
    return -1;
}
