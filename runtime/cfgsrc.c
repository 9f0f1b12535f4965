/*
 * cfgsrc — reading a configuration's files with a cap; see cfgsrc.h.
 *
 *   cfgsrc_load(path)
 *     load_file(main)        open, fstat: a regular file over the budget is
 *                            refused before a byte is read; anything else
 *                            (a pipe from `-c <(...)`) is read up to the
 *                            budget + 1 byte
 *       tokenize (cfglex)    string literals over CFGSRC_MAX_LITERAL: refused;
 *                            each `@include "NAME"`: load_file(include_dir/NAME)
 *                            with what is left of the budget
 *
 * The budget is for all files together, counted as libconfig will read
 * them: a file included twice counts twice.
 */
#include "cfgsrc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfglex.h"

struct load {
    struct cfgsrc *src;
    const char *include_dir;
    size_t max_bytes;
    cfgsrc_report_fn *report;
    void *ctx;
};

/* Where an @include directive is: the including file and line, the name. */
struct include_site {
    const char *file;
    unsigned line;
    const char *name;
};

static void reportf(const struct load *ld, const char *file, unsigned line, const char *setting,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void reportf(const struct load *ld, const char *file, unsigned line, const char *setting,
                    const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ld->report(ld->ctx, file, line, setting, msg);
}

/* Reports a problem with the file at `path`: the main file as
 * "PATH: MSG", an included one against its directive as
 * "FILE:LINE: @include "NAME": PATH: MSG". */
static void file_problem(const struct load *ld, const char *path, const struct include_site *from,
                         const char *msg)
{
    char directive[300];

    if (from == NULL) {
        reportf(ld, path, 0, NULL, "%s", msg);
        return;
    }
    snprintf(directive, sizeof directive, "@include \"%.250s\"", from->name);
    reportf(ld, from->file, from->line, directive, "%s: %s", path, msg);
}

static int split_lines(struct cfgsrc_file *f)
{
    size_t lines = 1;

    for (size_t i = 0; i < f->len; i++)
        if (f->text[i] == '\n') lines++;
    f->line_start = malloc(lines * sizeof *f->line_start);
    if (f->line_start == NULL) return -1;
    f->line_start[0] = 0;
    f->n_lines = 1;
    for (size_t i = 0; i < f->len; i++)
        if (f->text[i] == '\n') f->line_start[f->n_lines++] = i + 1;
    return 0;
}

/* Reads all of fd, or stops once more than `max` bytes came: then *over. */
static char *read_all(int fd, size_t hint, size_t max, size_t *len, bool *over)
{
    size_t cap = (hint < max ? hint : max) + 1, n = 0;
    char *buf = malloc(cap + 1);

    *over = false;
    while (buf) {
        ssize_t r;
        if (n == cap) {
            char *b;
            cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            if (n == cap) {                  /* read max + 1 bytes: over */
                *over = true;
                break;
            }
            b = realloc(buf, cap + 1);
            if (b == NULL) {
                free(buf);
                return NULL;
            }
            buf = b;
        }
        r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            free(buf);
            return NULL;
        }
        if (r == 0) break;
        n += (size_t)r;
        if (n > max) {
            *over = true;
            break;
        }
    }
    if (buf) buf[n] = '\0';
    *len = n;
    return buf;
}

static int load_file(struct load *ld, const char *path, const struct include_site *from,
                     int depth);

/* Scans one loaded file for over-long literals and @includes. */
static int scan_file(struct load *ld, size_t idx, int depth)
{
    const char *text = ld->src->files[idx].text, *path = ld->src->files[idx].path;
    struct cfglex lx;
    struct cfglex_token tok;
    int rc = 0;

    cfglex_init(&lx, text, ld->src->files[idx].len);
    for (cfglex_next(&lx, &tok); tok.kind != CFGLEX_EOF; cfglex_next(&lx, &tok)) {
        if (tok.kind == CFGLEX_STRING && tok.len > CFGSRC_MAX_LITERAL) {
            reportf(ld, path, tok.line, NULL, "string literal is %zu bytes, over the limit of %d",
                    tok.len, CFGSRC_MAX_LITERAL);
            rc = -1;
        } else if (tok.kind == CFGLEX_INCLUDE && !tok.unterminated) {
            char directive[300], *name = strndup(text + tok.start, tok.len), *resolved = NULL;
            struct include_site site = {path, tok.line, name};

            if (name == NULL) return -1;
            snprintf(directive, sizeof directive, "@include \"%.250s\"", name);
            if (depth + 1 > CFGSRC_MAX_DEPTH) {
                reportf(ld, path, tok.line, directive, "includes nest more than %d deep "
                        "(does a file include itself?)", CFGSRC_MAX_DEPTH);
                rc = -1;
            } else if (ld->include_dir && name[0] == '/') {
                reportf(ld, path, tok.line, directive, "absolute paths are not supported; "
                        "write the path relative to %s (the main config file's directory)",
                        ld->include_dir);
                rc = -1;
            } else {
                size_t n = (size_t)cfgsrc_path_join(NULL, 0, ld->include_dir, name) + 1;
                if ((resolved = malloc(n)) == NULL) {
                    free(name);
                    return -1;
                }
                cfgsrc_path_join(resolved, n, ld->include_dir, name);
                if (load_file(ld, resolved, &site, depth + 1) != 0) rc = -1;
            }
            free(resolved);
            free(name);
            /* load_file may have moved the files array; text/path did not move */
        }
    }
    return rc;
}

static int load_file(struct load *ld, const char *path, const struct include_site *from,
                     int depth)
{
    struct cfgsrc *src = ld->src;
    struct cfgsrc_file *f, *files;
    struct stat st;
    size_t left = ld->max_bytes > src->total ? ld->max_bytes - src->total : 0, len = 0;
    char *text = NULL, detail[300];
    const char *nul;
    bool over = false;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(detail, sizeof detail, "cannot read: %s", strerror(errno));
        if (fd >= 0) close(fd);
        file_problem(ld, path, from, detail);
        return -1;
    }
    if (S_ISDIR(st.st_mode) || (from && !S_ISREG(st.st_mode))) {
        close(fd);
        file_problem(ld, path, from, from == NULL ? "cannot read: Is a directory"
                     : S_ISDIR(st.st_mode) ? "is a directory, not a file"
                     : "is not a regular file");
        return -1;
    }
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > left) {
        len = (size_t)st.st_size;
        over = true;
    } else {
        text = read_all(fd, S_ISREG(st.st_mode) ? (size_t)st.st_size : 65536, left, &len, &over);
        if (text == NULL) {
            snprintf(detail, sizeof detail, "cannot read: %s", strerror(errno));
            close(fd);
            file_problem(ld, path, from, detail);
            return -1;
        }
    }
    close(fd);
    if (over) {
        free(text);
        if (from == NULL && !S_ISREG(st.st_mode))
            reportf(ld, path, 0, NULL, "config file is over the limit of %zu bytes",
                    ld->max_bytes);
        else if (from == NULL)
            reportf(ld, path, 0, NULL, "config file is %zu bytes, over the limit of %zu", len,
                    ld->max_bytes);
        else {
            snprintf(detail, sizeof detail, "is %zu bytes; with the %zu bytes read before it "
                     "the configuration is over the limit of %zu bytes", len, src->total,
                     ld->max_bytes);
            file_problem(ld, path, from, detail);
        }
        return -1;
    }
    nul = memchr(text, '\0', len);
    if (nul) {
        unsigned line = 1;
        for (const char *p = text; p < nul; p++) line += *p == '\n';
        reportf(ld, path, line, NULL, "contains a NUL byte; a config file is text");
        free(text);
        return -1;
    }

    files = realloc(src->files, (src->n_files + 1) * sizeof *files);
    if (files == NULL) {
        free(text);
        return -1;
    }
    src->files = files;
    f = &src->files[src->n_files++];
    memset(f, 0, sizeof *f);
    f->text = text;
    f->len = len;
    f->path = strdup(path);
    f->name = from ? strdup(from->name) : NULL;
    src->total += len;
    if (f->path == NULL || (from && f->name == NULL) || split_lines(f) != 0) {
        reportf(ld, path, 0, NULL, "out of memory");
        return -1;
    }
    return scan_file(ld, src->n_files - 1, depth);
}

int cfgsrc_load(struct cfgsrc *src, const char *path, const char *include_dir, size_t max_bytes,
                cfgsrc_report_fn *report, void *ctx)
{
    struct load ld = {src, include_dir, max_bytes, report, ctx};

    memset(src, 0, sizeof *src);
    return load_file(&ld, path, NULL, 0);
}

void cfgsrc_cleanup(struct cfgsrc *src)
{
    if (src == NULL) return;
    for (size_t i = 0; i < src->n_files; i++) {
        free(src->files[i].name);
        free(src->files[i].path);
        free(src->files[i].text);
        free(src->files[i].line_start);
    }
    free(src->files);
    memset(src, 0, sizeof *src);
}

const struct cfgsrc_file *cfgsrc_file(const struct cfgsrc *src, const char *name)
{
    if (src->n_files == 0) return NULL;
    if (name == NULL) return &src->files[0];
    for (size_t i = 1; i < src->n_files; i++)
        if (strcmp(src->files[i].name, name) == 0) return &src->files[i];
    return NULL;
}

int cfgsrc_line(const struct cfgsrc_file *f, unsigned line, const char **begin, const char **end)
{
    const char *nl;

    if (f == NULL || line == 0 || line > f->n_lines) return -1;
    *begin = f->text + f->line_start[line - 1];
    nl = strchr(*begin, '\n');
    *end = nl ? nl : *begin + strlen(*begin);
    return 0;
}

/* ---- integer literals as written ------------------------------------------ */

static int ident_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '*';
}

/* Parses one integer literal at *pp (optional sign, decimal or 0x hex) up to
 * e, as written. Returns 0 with *lit (saturated to LLONG_MIN/MAX) and *pp past
 * it, or -1 when no plain integer literal starts there. */
static int parse_literal(const char **pp, const char *e, long long *lit)
{
    const char *q = *pp;
    char digits[64];
    size_t dl = 0;
    int neg = 0, base = 10;
    unsigned long long v;

    if (q < e && (*q == '-' || *q == '+')) neg = (*q++ == '-');
    if (q + 1 < e && q[0] == '0' && (q[1] == 'x' || q[1] == 'X')) {
        base = 16;
        q += 2;
    }
    while (q < e && dl + 1 < sizeof digits &&
           ((*q >= '0' && *q <= '9') ||
            (base == 16 && ((*q >= 'a' && *q <= 'f') || (*q >= 'A' && *q <= 'F')))))
        digits[dl++] = *q++;
    if (dl == 0 || (q < e && ident_char(*q) && *q != '-')) return -1;
    digits[dl] = '\0';
    errno = 0;
    v = strtoull(digits, NULL, base);
    if (errno == ERANGE || v > (unsigned long long)LLONG_MAX)
        *lit = neg ? LLONG_MIN : LLONG_MAX;
    else
        *lit = neg ? -(long long)v : (long long)v;
    *pp = q;
    return 0;
}

int cfgsrc_int_literal(const struct cfgsrc_file *f, unsigned line, const char *name,
                       long long parsed, long long *lit)
{
    const char *b, *e, *p;
    size_t nlen;

    if (name == NULL || cfgsrc_line(f, line, &b, &e) != 0) return -1;
    nlen = strlen(name);
    for (p = b; p + nlen <= e; p++) {
        const char *q = p + nlen;
        long long v;

        if (*p == '"') {                          /* skip string literals */
            for (p++; p < e && *p != '"'; p++)
                if (*p == '\\' && p + 1 < e) p++;
            if (p >= e) return -1;
            continue;
        }
        if (*p == '#' || (p[0] == '/' && (p[1] == '/' || p[1] == '*'))) return -1;
        if (memcmp(p, name, nlen) != 0 || (p > b && ident_char(p[-1])) ||
            (q < e && ident_char(*q)))
            continue;
        while (q < e && (*q == ' ' || *q == '\t')) q++;
        if (q >= e || (*q != '=' && *q != ':')) continue;
        q++;
        while (q < e && (*q == ' ' || *q == '\t')) q++;
        if (parse_literal(&q, e, &v) != 0) continue;
        if (v == parsed || (long long)(int32_t)(uint32_t)(unsigned long long)v == parsed) {
            *lit = v;
            return 0;
        }
        p = q - 1;
    }
    return -1;
}

int cfgsrc_path_join(char *buf, size_t size, const char *dir, const char *name)
{
    size_t dl;

    if (dir == NULL || name[0] == '/') return snprintf(buf, size, "%s", name);
    dl = strlen(dir);
    return snprintf(buf, size, "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", name);
}
