/* log — logfmt records; see log.h. */
#include "log.h"

#include <stdarg.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *name, enum log_level *out)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *log_level_name(enum log_level level)
{
    if ((unsigned)level > LOG_LEVEL_ERROR) return "unknown";
    return level_names[level];
}

void log_write(const struct log *lg, enum log_level level, const char *event,
               const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    size_t n;
    int w;
    va_list ap;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof line, "ts=%Y-%m-%dT%H:%M:%S", &tm);
    w = snprintf(line + n, sizeof line - n, ".%03dZ level=%s event=%s",
                 (int)(tv.tv_usec / 1000), log_level_name(level), event);
    if (w > 0) n += (size_t)w;
    if (fmt && fmt[0] && n < sizeof line - 2) {
        line[n++] = ' ';
        va_start(ap, fmt);
        w = vsnprintf(line + n, sizeof line - n, fmt, ap);
        va_end(ap);
        if (w > 0) n += (size_t)w;
    }
    if (n > sizeof line - 2) n = sizeof line - 2;
    line[n++] = '\n';
    /* One write per record so concurrent writers never interleave lines. */
    fwrite(line, 1, n, lg->out ? lg->out : stderr);
    fflush(lg->out ? lg->out : stderr);
}

const char *log_quote(char *buf, size_t size, const char *s)
{
    size_t o = 0;
    int quote = (s == NULL || *s == '\0');

    if (size < 8) {
        if (size) buf[0] = '\0';
        return buf;
    }
    if (s == NULL) s = "";
    for (const char *p = s; *p && !quote; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) quote = 1;
    }
    if (!quote) {
        size_t len = strlen(s);
        if (len < size) {
            memcpy(buf, s, len + 1);
            return buf;
        }
        quote = 1;
    }
    buf[o++] = '"';
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        char esc[8];
        size_t elen;
        if (c == '"' || c == '\\') { esc[0] = '\\'; esc[1] = (char)c; elen = 2; }
        else if (c == '\n') { memcpy(esc, "\\n", 2); elen = 2; }
        else if (c == '\t') { memcpy(esc, "\\t", 2); elen = 2; }
        else if (c < ' ' || c == 0x7f) { snprintf(esc, sizeof esc, "\\x%02x", c); elen = 4; }
        else { esc[0] = (char)c; elen = 1; }
        if (o + elen + 5 > size) {           /* room for ..." and NUL */
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(buf + o, esc, elen);
        o += elen;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}
