/* address — see address.h. */
#include "address.h"

#include <string.h>

static int name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

static int name_part_ok(const char *s, size_t len)
{
    if (len == 0) return 0;
    for (size_t i = 0; i < len; i++)
        if (!name_char((unsigned char)s[i])) return 0;
    return 1;
}

const char *addr_check_type(const char *type, size_t len)
{
    const char *slash;

    if (type == NULL || len == 0) return "function type is empty";
    if (len > ADDR_MAX_TYPE) return "function type is longer than 256 bytes";
    slash = memchr(type, '/', len);
    if (slash == NULL)
        return "function type must be namespace/name, e.g. example/greeter";
    if (!name_part_ok(type, (size_t)(slash - type)) ||
        !name_part_ok(slash + 1, len - (size_t)(slash - type) - 1))
        return "function type must be namespace/name with both parts made of [A-Za-z0-9_.-]";
    return NULL;
}

int addr_utf8_ok(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        unsigned cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) { n = 1; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { n = 2; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { n = 3; cp = c & 0x07; }
        else return 0;
        if (len - i - 1 < n) return 0;         /* truncated sequence */
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

const char *addr_check_id(const char *id, size_t len)
{
    if (id == NULL || len == 0) return "id is empty";
    if (len > ADDR_MAX_ID) return "id is longer than 1024 bytes";
    if (memchr(id, '\0', len)) return "id contains a NUL byte";
    if (!addr_utf8_ok((const unsigned char *)id, len)) return "id is not valid UTF-8";
    return NULL;
}

const char *addr_check_state_name(const char *name, size_t len)
{
    if (name == NULL || len == 0) return "state name is empty";
    if (len > ADDR_MAX_STATE_NAME) return "state name is longer than 128 bytes";
    if (!name_part_ok(name, len)) return "state name must be made of [A-Za-z0-9_.-]";
    return NULL;
}

const char *addr_check_pattern(const char *pattern, size_t len)
{
    if (pattern && len >= 2 && pattern[len - 1] == '*' && pattern[len - 2] == '/') {
        if (!name_part_ok(pattern, len - 2))
            return "function pattern must be namespace/name or namespace/*";
        return NULL;
    }
    return addr_check_type(pattern, len);
}

int addr_pattern_match(const char *pattern, const char *type)
{
    size_t plen = strlen(pattern);
    if (plen >= 2 && pattern[plen - 1] == '*' && pattern[plen - 2] == '/')
        return strncmp(pattern, type, plen - 1) == 0 && strchr(type + plen - 1, '/') == NULL;
    return strcmp(pattern, type) == 0;
}
