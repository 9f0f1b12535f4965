/*
 * cfgsrc — the text of a configuration: the main file and every file it
 * @includes, read once, capped in size, split into lines.
 *
 * config.c reads the files here before libconfig sees them, for three
 * reasons:
 *
 *  - A cap. libconfig 1.5's scanner is quadratic in the length of a token
 *    (a 1 MiB string takes 0.5 s, 4 MiB 8 s, 10 MiB over 20 s) and in the
 *    number of settings of a group, so a stray or hostile file could stall
 *    start-up. cfgsrc_load() refuses, before any parsing, a configuration
 *    whose files together exceed `max_bytes` and any string literal longer
 *    than CFGSRC_MAX_LITERAL.
 *  - @include problems named where they are: a missing file, a directory,
 *    an absolute path (libconfig 1.5 puts the include directory in front of
 *    it), nesting deeper than libconfig's 10 levels. libconfig itself only
 *    says "cannot open include file".
 *  - The source as written, for what libconfig does not keep: the exact
 *    integer literal behind a setting (libconfig 1.5 wraps literals beyond
 *    32 bits written without an L suffix: 4294967296 reads as 0), the line
 *    to show under a syntax error.
 *
 * Include paths are resolved as libconfig does: relative to the include
 * directory (the main file's directory), for nested includes too.
 * Files are identified by the name libconfig gives them: NULL for the main
 * file (it is handed to libconfig as a string), the directive's text for
 * an included file.
 */
#ifndef SM_CFGSRC_H
#define SM_CFGSRC_H

#include <stddef.h>

#define CFGSRC_MAX_LITERAL (64 * 1024)   /* bytes of one string literal, quotes included */
#define CFGSRC_MAX_DEPTH 10              /* libconfig 1.5's include nesting limit */

struct cfgsrc_file {
    char *name;          /* as libconfig names it: NULL for the main file */
    char *path;          /* as opened (and shown in messages) */
    char *text;          /* NUL-terminated; no other NUL inside */
    size_t len;
    size_t *line_start;  /* line_start[i] = offset of line i+1 */
    size_t n_lines;
};

struct cfgsrc {
    struct cfgsrc_file *files;   /* files[0] is the main file */
    size_t n_files;
    size_t total;                /* bytes of all files read */
};

/* Receives each problem found, in the config contract's terms: the file
 * (NULL: the main file), its line (0: none), a setting or directive
 * (NULL: none) and the message. */
typedef void cfgsrc_report_fn(void *ctx, const char *file, unsigned line, const char *setting,
                              const char *msg);

/* Reads `path` and, recursively, the files it @includes (resolved against
 * `include_dir`, or the working directory when NULL). Returns 0, or -1
 * after reporting every problem found. Either way the caller releases *src
 * with cfgsrc_cleanup(). */
int cfgsrc_load(struct cfgsrc *src /* OUT */, const char *path, const char *include_dir,
                size_t max_bytes, cfgsrc_report_fn *report, void *ctx)
    __attribute__((warn_unused_result));
void cfgsrc_cleanup(struct cfgsrc *src);

/* The path of `name` in directory `dir`: "DIR/NAME" (no second '/' after
 * a dir that ends in one), or name alone when it is absolute or dir is
 * NULL (the working directory). Written to buf as snprintf does; returns
 * the length of the whole path (buf too small when >= size). */
int cfgsrc_path_join(char *buf, size_t size, const char *dir, const char *name);

/* The file libconfig calls `name` (NULL: the main file), or NULL. */
const struct cfgsrc_file *cfgsrc_file(const struct cfgsrc *src, const char *name);

/* Line `line` (1-based) of `f` as [*begin, *end) without its newline;
 * -1 when there is no such line. */
int cfgsrc_line(const struct cfgsrc_file *f, unsigned line, const char **begin /* OUT */,
                const char **end /* OUT */);

/* The integer literal behind setting `setting_name` on line `line` of `f`,
 * as written (decimal or 0x hex, optional sign; saturated to LLONG_MIN/MAX).
 * Several settings of that name may share the line (list elements): the
 * literal chosen is the first that libconfig could have read as `parsed`,
 * i.e. equal to it, or equal once wrapped to 32 bits. Returns 0 with *lit,
 * or -1 when none is found. */
int cfgsrc_int_literal(const struct cfgsrc_file *f, unsigned line, const char *setting_name,
                       long long parsed, long long *lit /* OUT */);

#endif
