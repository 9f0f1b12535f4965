/*
 * log — one line per event, logfmt, to stderr.
 *
 *   ts=2026-11-24T10:00:00.123Z level=info event=ingress.listen addr=127.0.0.1:7070
 *
 * Every record has ts, level and event; the caller adds key=value pairs
 * through a printf format. Values that may hold spaces, quotes or control
 * characters go through log_quote(), which makes a logfmt-safe quoted copy.
 *
 * There is no global logger: each module holds a `struct log *` handed to it
 * at creation (NULL = silent). LOG() checks the level before evaluating its
 * arguments, so disabled debug lines cost one compare.
 */
#ifndef SM_LOG_H
#define SM_LOG_H

#include <stdio.h>

enum log_level { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

struct log {
    enum log_level level;
    FILE *out;               /* not owned; stderr by default */
};

/* Parses "debug", "info", "warn" or "error". Returns 0, or -1 if unknown. */
int log_level_parse(const char *name, enum log_level *out /* OUT */);
const char *log_level_name(enum log_level level);

/* Writes one record. Use the LOG_* macros, which check the level first. */
void log_write(const struct log *lg, enum log_level level, const char *event,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Copies `s` into buf as a logfmt value: bare if it needs no quoting, else
 * double-quoted with \" \\ \n \t and \xNN escapes; truncated with "..." to
 * fit. Returns buf. */
const char *log_quote(char *buf, size_t size, const char *s);

#define LOG_AT(lg, lvl, event, ...)                                        \
    do {                                                                   \
        const struct log *lg_ = (lg);                                      \
        if (lg_ && (lvl) >= lg_->level) log_write(lg_, (lvl), (event), __VA_ARGS__); \
    } while (0)

#define LOG_DEBUG(lg, event, ...) LOG_AT(lg, LOG_LEVEL_DEBUG, event, __VA_ARGS__)
#define LOG_INFO(lg, event, ...)  LOG_AT(lg, LOG_LEVEL_INFO, event, __VA_ARGS__)
#define LOG_WARN(lg, event, ...)  LOG_AT(lg, LOG_LEVEL_WARN, event, __VA_ARGS__)
#define LOG_ERROR(lg, event, ...) LOG_AT(lg, LOG_LEVEL_ERROR, event, __VA_ARGS__)

/* For the impossible: logs file and line, then aborts. */
#define SM_PANIC(msg)                                                      \
    do {                                                                   \
        fprintf(stderr, "level=error event=panic file=%s line=%d msg=\"%s\"\n", \
                __FILE__, __LINE__, (msg));                                \
        abort();                                                           \
    } while (0)

#endif
