/*
 * cfglex — libconfig 1.5's tokens and grammar, to locate syntax errors; see
 * cfglex.h.
 *
 * cfglex_explain() is a parser with an explicit stack (a file of a million
 * '{' must not overflow the C stack), one frame per open group, list or
 * array; the top-level settings are frame 0. Each frame is in one state:
 *
 *   settings (top level, group):   NAME --name--> EQUALS --'='--> VALUE
 *                                   ^                              |
 *                                   +--';' ','-- AFTER <--value----+
 *                                   (AFTER also takes the next NAME directly:
 *                                    the terminator is optional)
 *   values (list, array):          FIRST --value--> AFTER --','--> VALUE
 *                                                   AFTER --closer--> pop
 *
 * The first token that fits no transition is the error. Before it is
 * reported, three readings of what the user meant are tried:
 *
 *  - a string that ran past the end of its line (or of the file) before
 *    the error: almost certainly a missing '"', so the string is blamed;
 *  - a value where a ',' was due, on a later line: the ',' is missing at
 *    the end of the earlier line, so that line is shown;
 *  - an unclosed '{' / '(' / '[' at the end of the file: the opener is
 *    shown, and if a later line inside it is indented no deeper than the
 *    opener's line, the closer probably belongs before that line.
 */
#include "cfglex.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tokens --------------------------------------------------------------- */

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_hex(char c) { return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }
static bool is_punct(char c) { return c != '\0' && strchr("=:;,{}()[]\"#", c) != NULL; }

void cfglex_init(struct cfglex *lx, const char *text, size_t len)
{
    memset(lx, 0, sizeof *lx);
    lx->text = text;
    lx->len = len;
    lx->line = 1;
}

static void newline_at(struct cfglex *lx, size_t at)
{
    lx->line++;
    lx->line_start = at + 1;
}

static bool comment_start(const struct cfglex *lx, size_t at)
{
    const char *t = lx->text;
    return t[at] == '#' ||
           (t[at] == '/' && at + 1 < lx->len && (t[at + 1] == '/' || t[at + 1] == '*'));
}

/* Skips whitespace and comments. */
static void skip_blank(struct cfglex *lx)
{
    const char *t = lx->text;

    while (lx->pos < lx->len) {
        char c = t[lx->pos];

        if (c == '\n') {
            newline_at(lx, lx->pos);
            lx->pos++;
        } else if (is_space(c)) {
            lx->pos++;
        } else if (c == '#' || (c == '/' && lx->pos + 1 < lx->len && t[lx->pos + 1] == '/')) {
            const char *nl = memchr(t + lx->pos, '\n', lx->len - lx->pos);
            if (nl == NULL) return;          /* not a comment for libconfig: see cfglex_next */
            lx->pos = (size_t)(nl - t);
        } else if (c == '/' && lx->pos + 1 < lx->len && t[lx->pos + 1] == '*') {
            lx->pos += 2;
            while (lx->pos < lx->len &&
                   !(t[lx->pos] == '*' && lx->pos + 1 < lx->len && t[lx->pos + 1] == '/')) {
                if (t[lx->pos] == '\n') newline_at(lx, lx->pos);
                lx->pos++;
            }
            lx->pos = lx->pos < lx->len ? lx->pos + 2 : lx->len;
        } else {
            return;
        }
    }
}

static size_t count_digits(const char *p, const char *e)
{
    const char *q = p;
    while (q < e && is_digit(*q)) q++;
    return (size_t)(q - p);
}

static size_t int_suffix(const char *p, const char *e)
{
    if (p < e && *p == 'L') return p + 1 < e && p[1] == 'L' ? 2 : 1;
    return 0;
}

static size_t exponent(const char *p, const char *e)
{
    const char *q = p + 1;
    size_t d;

    if (p >= e || (*p != 'e' && *p != 'E')) return 0;
    if (q < e && (*q == '-' || *q == '+')) q++;
    d = count_digits(q, e);
    return d ? (size_t)(q + d - p) : 0;
}

/* The longest integer or float literal at p (0 if none), as the scanner's
 * longest-match rule would take it. */
static size_t number_len(const char *p, const char *e, enum cfglex_kind *kind)
{
    const char *q = p, *r;
    size_t best = 0, d1, l;

    if (e - p >= 3 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && is_hex(p[2])) {
        r = p + 2;
        while (r < e && is_hex(*r)) r++;
        best = (size_t)(r - p) + int_suffix(r, e);
        *kind = CFGLEX_INT;
    }
    if (q < e && (*q == '-' || *q == '+')) q++;
    d1 = count_digits(q, e);
    if (d1) {
        l = (size_t)(q + d1 - p) + int_suffix(q + d1, e);
        if (l > best) best = l, *kind = CFGLEX_INT;
    }
    r = q + d1;
    if (r < e && *r == '.') {                       /* [0-9]*\.[0-9]*(exp)? */
        r++;
        r += count_digits(r, e);
        r += exponent(r, e);
        l = (size_t)(r - p);
        if (l > best) best = l, *kind = CFGLEX_FLOAT;
    }
    if (d1) {                                       /* [0-9]+(\.[0-9]*)?exp */
        size_t x;
        r = q + d1;
        if (r < e && *r == '.') r += 1 + count_digits(r + 1, e);
        x = exponent(r, e);
        l = (size_t)(r + x - p);
        if (x && l > best) best = l, *kind = CFGLEX_FLOAT;
    }
    return best;
}

static bool word_is(const char *p, size_t n, const char *w)
{
    if (strlen(w) != n) return false;
    for (size_t i = 0; i < n; i++)
        if ((p[i] | 0x20) != w[i]) return false;
    return true;
}

void cfglex_next(struct cfglex *lx, struct cfglex_token *tok)
{
    const char *t = lx->text, *e = lx->text + lx->len, *p;
    size_t q;

    skip_blank(lx);
    memset(tok, 0, sizeof *tok);
    tok->start = lx->pos;
    tok->line = tok->end_line = lx->line;
    tok->col = lx->pos - lx->line_start;
    tok->line_first = lx->line != lx->last_line;
    if (lx->pos >= lx->len) {
        tok->kind = CFGLEX_EOF;
        return;
    }
    lx->last_line = lx->line;
    p = t + lx->pos;
    tok->len = 1;
    if (*p == '#' || (*p == '/' && p + 1 < e && p[1] == '/')) {
        tok->kind = CFGLEX_BAD;                /* a line comment without its newline */
        tok->len = lx->len - lx->pos;
        lx->pos = lx->len;
        return;
    }
    switch (*p) {
    case '=': case ':': tok->kind = CFGLEX_EQUALS; break;
    case ';': tok->kind = CFGLEX_SEMICOLON; break;
    case ',': tok->kind = CFGLEX_COMMA; break;
    case '{': tok->kind = CFGLEX_LBRACE; break;
    case '}': tok->kind = CFGLEX_RBRACE; break;
    case '(': tok->kind = CFGLEX_LPAREN; break;
    case ')': tok->kind = CFGLEX_RPAREN; break;
    case '[': tok->kind = CFGLEX_LBRACKET; break;
    case ']': tok->kind = CFGLEX_RBRACKET; break;
    case '"':
        tok->kind = CFGLEX_STRING;
        for (q = lx->pos + 1; q < lx->len && t[q] != '"'; q++) {
            if (t[q] == '\\' && q + 1 < lx->len) q++;
            if (t[q] == '\n') newline_at(lx, q);
        }
        tok->unterminated = q >= lx->len;
        tok->len = (q < lx->len ? q + 1 : q) - lx->pos;
        break;
    default: {
        bool at_line_start = true;
        size_t run = 0, n = 0;
        enum cfglex_kind kind = CFGLEX_BAD;

        for (size_t i = lx->line_start; i < lx->pos; i++)
            if (t[i] != ' ' && t[i] != '\t') at_line_start = false;
        if (at_line_start && (size_t)(e - p) > 9 && memcmp(p, "@include", 8) == 0 &&
            (p[8] == ' ' || p[8] == '\t')) {
            const char *r = p + 8;
            while (r < e && (*r == ' ' || *r == '\t')) r++;
            if (r < e && *r == '"') {
                tok->kind = CFGLEX_INCLUDE;
                tok->start = (size_t)(r + 1 - t);
                for (q = tok->start; q < lx->len && t[q] != '"'; q++)
                    if (t[q] == '\n') newline_at(lx, q);
                tok->unterminated = q >= lx->len;
                tok->len = q - tok->start;
                lx->pos = q < lx->len ? q + 1 : q;
                tok->end_line = lx->line;
                return;
            }
        }
        while (lx->pos + run < lx->len && !is_space(p[run]) && !is_punct(p[run]) &&
               !comment_start(lx, lx->pos + run))
            run++;
        if (run == 1 && *p == '$' && p + 1 < e && p[1] == '{') {      /* ${VAR} unquoted */
            while (p + run < e && p[run] != '}' && p[run] != '\n') run++;
            if (p + run < e && p[run] == '}') run++;
        }
        if (is_alpha(*p) || *p == '*') {
            n = 1;
            while (n < run && (is_alpha(p[n]) || is_digit(p[n]) || p[n] == '-' || p[n] == '_' ||
                               p[n] == '*'))
                n++;
            kind = word_is(p, n, "true") || word_is(p, n, "false") ? CFGLEX_BOOL : CFGLEX_NAME;
        } else {
            n = number_len(p, p + run, &kind);
        }
        if (n == 0 || n != run) kind = CFGLEX_BAD;
        tok->kind = kind;
        tok->len = run;
    }
    }
    lx->pos = tok->start + tok->len;
    tok->end_line = lx->line;
}

/* ---- the grammar ------------------------------------------------------------ */

enum ctx { CTX_TOP, CTX_GROUP, CTX_LIST, CTX_ARRAY };
enum state { ST_NAME, ST_EQUALS, ST_VALUE, ST_FIRST, ST_AFTER };

struct frame {
    enum ctx ctx;
    enum state st;
    struct cfglex_token open;   /* the '{' '(' '[' (unset for the top level) */
    size_t indent;              /* indentation of the opener's line */
    unsigned outdented;         /* first later line inside, indented no deeper: 0 = none */
    struct cfglex_token name;   /* settings: the name being defined */
    bool after_string;          /* the last value was a string (another may follow) */
};

struct parser {
    const char *text;
    size_t len;
    struct frame *stack;
    size_t depth, cap;
    struct cfglex_token prev;   /* the last token consumed */
    struct cfglex_diag *d;
};

static char closer_of(enum ctx c) { return c == CTX_GROUP ? '}' : c == CTX_LIST ? ')' : ']'; }
static char opener_of(enum ctx c) { return c == CTX_GROUP ? '{' : c == CTX_LIST ? '(' : '['; }

/* Copies the token as written (up to its line's end) into d->near. */
static void set_near(struct parser *ps, const struct cfglex_token *tok)
{
    size_t o = 0, max = 40;
    char *near = ps->d->near;

    for (size_t i = 0; i < tok->len && ps->text[tok->start + i] != '\n'; i++) {
        unsigned char c = (unsigned char)ps->text[tok->start + i];
        if (i == max) {
            memcpy(near + o, "...", 4);
            return;
        }
        near[o++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    near[o] = '\0';
}

static int fail_at(struct parser *ps, const struct cfglex_token *tok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(struct parser *ps, const struct cfglex_token *tok, const char *fmt, ...)
{
    struct cfglex_diag *d = ps->d;
    const char *nl;
    va_list ap;

    memset(d, 0, sizeof *d);
    d->line = tok->line;
    d->col = tok->col;
    d->caret_len = tok->len ? tok->len : 1;
    nl = memchr(ps->text + tok->start, '\n', tok->len);
    if (nl) d->caret_len = (size_t)(nl - (ps->text + tok->start));
    if (d->caret_len == 0) d->caret_len = 1;
    set_near(ps, tok);
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof d->msg, fmt, ap);
    va_end(ap);
    return 1;
}

/* A separator is missing before `tok`, which starts a later line: point at
 * the end of the line of the previous token. */
static int fail_missing(struct parser *ps, const struct cfglex_token *tok, char sep)
{
    size_t end = ps->prev.start + ps->prev.len, bol = end;

    fail_at(ps, tok, "missing '%c' at the end of line %u?", sep, ps->prev.end_line);
    while (bol > 0 && ps->text[bol - 1] != '\n') bol--;
    ps->d->line = ps->prev.end_line;
    ps->d->col = end - bol;
    ps->d->caret_len = 1;
    return 1;
}

static int fail_unclosed(struct parser *ps, const struct frame *f)
{
    char c = closer_of(f->ctx);

    if (f->outdented)
        return fail_at(ps, &f->open, "this '%c' is never closed; missing '%c' before line %u?",
                       opener_of(f->ctx), c, f->outdented);
    return fail_at(ps, &f->open, "this '%c' is never closed; missing '%c' at the end of the file?",
                   opener_of(f->ctx), c);
}

static int fail_closer(struct parser *ps, const struct cfglex_token *tok, const struct frame *f)
{
    if (f->ctx == CTX_TOP)
        return fail_at(ps, tok, "nothing to close here; one '%.1s' too many?",
                       ps->text + tok->start);
    return fail_at(ps, tok, "it does not close the '%c' on line %u; missing '%c' before it?",
                   opener_of(f->ctx), f->open.line, closer_of(f->ctx));
}

static int fail_bad(struct parser *ps, const struct cfglex_token *tok)
{
    const char *s = ps->text + tok->start;

    if (*s == '#' || *s == '/')
        return fail_at(ps, tok, "a comment on the last line needs a newline after it "
                       "(libconfig 1.5); end the file with a newline");
    if (*s == '\'')
        return fail_at(ps, tok, "strings take double quotes");
    if (memchr(s, '$', tok->len))
        return fail_at(ps, tok, "not a value; write it as a string in double quotes, "
                       "e.g. \"${VAR}\"");
    if (is_digit(*s) || *s == '-' || *s == '+' || *s == '.')
        return fail_at(ps, tok, "not a number");
    return fail_at(ps, tok, "not a setting name, a number, a string or a boolean");
}

static bool starts_value(enum cfglex_kind k)
{
    return k == CFGLEX_INT || k == CFGLEX_FLOAT || k == CFGLEX_BOOL || k == CFGLEX_STRING ||
           k == CFGLEX_LBRACE || k == CFGLEX_LPAREN || k == CFGLEX_LBRACKET;
}

static bool is_closer(enum cfglex_kind k)
{
    return k == CFGLEX_RBRACE || k == CFGLEX_RPAREN || k == CFGLEX_RBRACKET;
}

static bool closes(enum cfglex_kind k, enum ctx c)
{
    return (k == CFGLEX_RBRACE && c == CTX_GROUP) || (k == CFGLEX_RPAREN && c == CTX_LIST) ||
           (k == CFGLEX_RBRACKET && c == CTX_ARRAY);
}

static int push(struct parser *ps, enum ctx c, const struct cfglex_token *open, size_t indent)
{
    struct frame *f;

    if (ps->depth == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 16;
        struct frame *s = realloc(ps->stack, cap * sizeof *s);
        if (s == NULL) return -1;
        ps->stack = s;
        ps->cap = cap;
    }
    f = &ps->stack[ps->depth++];
    memset(f, 0, sizeof *f);
    f->ctx = c;
    f->st = c == CTX_GROUP || c == CTX_TOP ? ST_NAME : ST_FIRST;
    if (open) f->open = *open;
    f->indent = indent;
    return 0;
}

static void value_done(struct frame *f, bool string)
{
    f->st = ST_AFTER;
    f->after_string = string;
}

/* ST_VALUE / ST_FIRST: `tok` must start a value. Returns 1 on error, -1 out
 * of memory, 0 when consumed. */
static int take_value(struct parser *ps, struct frame *f, const struct cfglex_token *tok,
                      size_t indent)
{
    const char *what = f->ctx == CTX_LIST || f->ctx == CTX_ARRAY ? "an element" : "a value";

    switch (tok->kind) {
    case CFGLEX_INT: case CFGLEX_FLOAT: case CFGLEX_BOOL: case CFGLEX_STRING:
        value_done(f, tok->kind == CFGLEX_STRING);
        return 0;
    case CFGLEX_LBRACE: case CFGLEX_LPAREN: case CFGLEX_LBRACKET:
        if (f->ctx == CTX_ARRAY)
            return fail_at(ps, tok, "an array [ ] holds numbers, strings or booleans only; "
                           "use a list ( ) for groups, lists or arrays");
        return push(ps, tok->kind == CFGLEX_LBRACE ? CTX_GROUP : tok->kind == CFGLEX_LPAREN
                        ? CTX_LIST : CTX_ARRAY, tok, indent) ? -1 : 0;
    case CFGLEX_NAME:
        return fail_at(ps, tok, "expected %s; strings take double quotes: \"%.*s\"", what,
                       (int)(tok->len > 60 ? 60 : tok->len), ps->text + tok->start);
    case CFGLEX_EQUALS:
        if (ps->prev.kind == CFGLEX_EQUALS) return fail_at(ps, tok, "one '=' too many?");
        return fail_at(ps, tok, "expected %s", what);
    case CFGLEX_EOF:
        if (ps->depth > 1) return fail_unclosed(ps, f);
        return fail_at(ps, &ps->prev, "missing value after it, at the end of the file");
    default:
        if (f->st == ST_FIRST && closes(tok->kind, f->ctx)) {
            ps->depth--;
            value_done(&ps->stack[ps->depth - 1], false);
            return 0;
        }
        if (f->ctx == CTX_LIST || f->ctx == CTX_ARRAY) {
            if (ps->prev.kind == CFGLEX_COMMA && closes(tok->kind, f->ctx))
                return fail_at(ps, &ps->prev, "no ',' after the last element");
            if (is_closer(tok->kind)) return fail_closer(ps, tok, f);
            return fail_at(ps, tok, "expected an element");
        }
        return fail_at(ps, tok, "missing value after '%.*s ='", (int)(f->name.len > 60 ? 60
                       : f->name.len), ps->text + f->name.start);
    }
}

/* Settings frames (top level, group) in ST_NAME or ST_AFTER. */
static int take_setting(struct parser *ps, struct frame *f, const struct cfglex_token *tok)
{
    switch (tok->kind) {
    case CFGLEX_NAME:
        f->name = *tok;
        f->st = ST_EQUALS;
        return 0;
    case CFGLEX_SEMICOLON: case CFGLEX_COMMA:
        if (f->st == ST_AFTER) {
            f->st = ST_NAME;
            return 0;
        }
        if (ps->prev.kind == CFGLEX_SEMICOLON || ps->prev.kind == CFGLEX_COMMA)
            return fail_at(ps, tok, "one '%.1s' too many?", ps->text + tok->start);
        return fail_at(ps, tok, "expected a setting name");
    case CFGLEX_EOF:
        if (f->ctx == CTX_TOP) return 2;
        return fail_unclosed(ps, f);
    case CFGLEX_RBRACE:
        if (f->ctx == CTX_GROUP) {
            ps->depth--;
            value_done(&ps->stack[ps->depth - 1], false);
            return 0;
        }
        return fail_closer(ps, tok, f);
    case CFGLEX_RPAREN: case CFGLEX_RBRACKET:
        return fail_closer(ps, tok, f);
    case CFGLEX_STRING:
        if (f->st == ST_AFTER && f->after_string) return 0;       /* "a" "b" */
        if (f->st == ST_NAME)
            return fail_at(ps, tok, "expected a setting name; names take no quotes");
        break;
    case CFGLEX_EQUALS:
        if (f->st == ST_NAME) return fail_at(ps, tok, "missing setting name before '='");
        break;
    default:
        break;
    }
    if (f->st == ST_AFTER)
        return fail_at(ps, tok, "expected ';' or the next setting's name");
    return fail_at(ps, tok, "expected a setting name (NAME = VALUE;)");
}

/* Values frames (list, array) in ST_AFTER. */
static int take_separator(struct parser *ps, struct frame *f, const struct cfglex_token *tok)
{
    if (tok->kind == CFGLEX_COMMA) {
        f->st = ST_VALUE;
        return 0;
    }
    if (closes(tok->kind, f->ctx)) {
        ps->depth--;
        value_done(&ps->stack[ps->depth - 1], false);
        return 0;
    }
    if (tok->kind == CFGLEX_STRING && f->after_string) return 0;
    if (tok->kind == CFGLEX_EOF) return fail_unclosed(ps, f);
    if (is_closer(tok->kind)) return fail_closer(ps, tok, f);
    if (tok->kind == CFGLEX_SEMICOLON)
        return fail_at(ps, tok, "the elements of a %s are separated by ','",
                       f->ctx == CTX_LIST ? "list ( )" : "array [ ]");
    if (starts_value(tok->kind) && tok->line > ps->prev.end_line) return fail_missing(ps, tok, ',');
    return fail_at(ps, tok, "expected ',' or '%c'", closer_of(f->ctx));
}

int cfglex_explain(const char *text, size_t len, struct cfglex_diag *d)
{
    struct parser ps = {.text = text, .len = len, .d = d};
    struct cfglex lx;
    struct cfglex_token tok, multiline = {0};
    bool have_multiline = false;
    size_t indent = 0;
    int r = 0;

    memset(d, 0, sizeof *d);
    cfglex_init(&lx, text, len);
    if (push(&ps, CTX_TOP, NULL, 0) != 0) return -1;
    while (r == 0) {
        struct frame *f;

        cfglex_next(&lx, &tok);
        if (tok.kind == CFGLEX_INCLUDE) continue;          /* stands for whole settings */
        if (tok.line_first) indent = tok.col;
        if (tok.kind == CFGLEX_STRING && !have_multiline &&
            (tok.unterminated || tok.end_line > tok.line)) {
            multiline = tok;
            have_multiline = true;
        }
        f = &ps.stack[ps.depth - 1];
        if (f->ctx != CTX_TOP && tok.line_first && tok.col <= f->indent && !f->outdented &&
            !is_closer(tok.kind) && tok.kind != CFGLEX_EOF)
            f->outdented = tok.line;
        if (tok.kind == CFGLEX_BAD) {
            r = fail_bad(&ps, &tok);
            break;
        }
        switch (f->st) {
        case ST_NAME:
            r = take_setting(&ps, f, &tok);
            break;
        case ST_EQUALS:
            if (tok.kind == CFGLEX_EQUALS)
                f->st = ST_VALUE;
            else if (tok.kind == CFGLEX_EOF || tok.line > f->name.end_line)
                r = fail_at(&ps, &f->name, "a setting name must be followed by '=' and a value");
            else
                r = fail_at(&ps, &tok, "missing '=' after '%.*s'?",
                            (int)(f->name.len > 60 ? 60 : f->name.len), text + f->name.start);
            break;
        case ST_VALUE:
        case ST_FIRST:
            r = take_value(&ps, f, &tok, indent);
            break;
        case ST_AFTER:
            r = f->ctx == CTX_TOP || f->ctx == CTX_GROUP ? take_setting(&ps, f, &tok)
                                                         : take_separator(&ps, f, &tok);
            break;
        }
        ps.prev = tok;
    }
    if (r == 1 && have_multiline && multiline.start <= tok.start) {
        const char *nl = memchr(text + multiline.start, '\n', multiline.len);
        size_t first_line_len = nl ? (size_t)(nl - (text + multiline.start)) : multiline.len;
        fail_at(&ps, &multiline, "this string is not closed on its line; missing '\"' at "
                "the end of line %u?", multiline.line);
        d->caret_len = first_line_len ? first_line_len : 1;
    }
    free(ps.stack);
    return r < 0 ? -1 : r == 1 ? 1 : 0;
}
