/* smlog — logfmt lines for the SDK; see smlog.h. */
#include "smlog.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static const char *const names[] = {"debug", "info", "warn", "error", "off"};

sm_log_level sm__log_level_parse(const char *s, sm_log_level dflt)
{
    if (!s) return dflt;
    for (int i = 0; i <= SM_LOG_OFF; i++)
        if (strcmp(s, names[i]) == 0) return (sm_log_level)i;
    return dflt;
}

void sm__log_write(sm_log_level level, const char *event, const char *fmt, ...)
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
                 (int)(tv.tv_usec / 1000), names[level > SM_LOG_ERROR ? SM_LOG_ERROR : level],
                 event);
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
    fwrite(line, 1, n, stderr);
    fflush(stderr);
}

const char *sm__quote(char *buf, size_t size, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    int quote = 0;

    if (size < 8) {
        if (size) buf[0] = '\0';
        return buf;
    }
    if (!s) s = "";
    if (!*s) quote = 1;
    for (const char *p = s; *p && !quote; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) quote = 1;
    }
    if (!quote && strlen(s) < size) {
        memcpy(buf, s, strlen(s) + 1);
        return buf;
    }
    buf[o++] = '"';
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        char esc[5];
        size_t k = 0;
        if (c == '"' || c == '\\') {
            esc[k++] = '\\';
            esc[k++] = (char)c;
        } else if (c == '\n') {
            esc[k++] = '\\';
            esc[k++] = 'n';
        } else if (c == '\t') {
            esc[k++] = '\\';
            esc[k++] = 't';
        } else if (c < ' ' || c == 0x7f) {
            esc[k++] = '\\';
            esc[k++] = 'x';
            esc[k++] = hex[c >> 4];
            esc[k++] = hex[c & 15];
        } else {
            esc[k++] = (char)c;
        }
        if (o + k + 5 > size) { /* room for ...", NUL */
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(buf + o, esc, k);
        o += k;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}
