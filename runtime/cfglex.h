/*
 * cfglex — the lexical and grammatical shape of a libconfig 1.5 file, for
 * saying where a syntax error really is.
 *
 * libconfig reports every parse failure as "syntax error" on the line its
 * scanner had reached, which is often not where the mistake is: a missing
 * ',' between list elements shows on the next line, an unclosed '{' or
 * string at the end of the file. This module re-reads the text with the
 * same token rules and grammar and names the first token that cannot be
 * right, with a hint. It is a diagnostic aid only: libconfig stays the one
 * parser that decides whether a file is valid (config.c asks here only
 * after libconfig refused the file), so a disagreement can cost a worse
 * message, never a wrong configuration.
 *
 * Token rules followed (libconfig 1.5's scanner): whitespace is space, tab,
 * CR, LF and FF; comments are '#' and '//' to the end of the line (a newline
 * is required: on a last line without one they are an error) and C comments
 * (an unclosed one runs to the end of the file); names are
 * [A-Za-z*][-A-Za-z0-9_*]*; true/false in any case; integers [-+]?[0-9]+
 * and hex 0x.. (no sign), either with an L or LL suffix; floats with a '.'
 * or an exponent; strings in double quotes with backslash escapes (they may
 * span lines; adjacent strings concatenate); '=' or ':'; ';' or ',' after a
 * setting (optional); `@include "FILE"` at the start of a line.
 *
 * Grammar: settings are NAME ('='|':') VALUE [';'|','] ; a value is a
 * scalar, a group { settings }, a list ( value, ... ) or an array
 * [ scalar, ... ]. No trailing ',' in lists or arrays.
 *
 * Decision (stricter than the scanner, for messages only): characters glued
 * together that do not form one token, such as "10x", "0x1G", "$HOME" or
 * "'abc'", are read as one bad token, because that is what a user wrote.
 */
#ifndef SM_CFGLEX_H
#define SM_CFGLEX_H

#include <stdbool.h>
#include <stddef.h>

enum cfglex_kind {
    CFGLEX_EOF = 0,
    CFGLEX_NAME,
    CFGLEX_INT,          /* decimal or hex, with or without L/LL */
    CFGLEX_FLOAT,
    CFGLEX_BOOL,
    CFGLEX_STRING,       /* start/len include the quotes (when closed) */
    CFGLEX_EQUALS,       /* '=' or ':' */
    CFGLEX_SEMICOLON,
    CFGLEX_COMMA,
    CFGLEX_LBRACE,
    CFGLEX_RBRACE,
    CFGLEX_LPAREN,
    CFGLEX_RPAREN,
    CFGLEX_LBRACKET,
    CFGLEX_RBRACKET,
    CFGLEX_INCLUDE,      /* @include "NAME": start/len cover NAME only */
    CFGLEX_BAD           /* anything else, up to the next space or punctuation */
};

struct cfglex_token {
    enum cfglex_kind kind;
    size_t start, len;    /* byte span in the text */
    unsigned line;        /* 1-based line of the first byte */
    unsigned end_line;    /* line of the last byte (strings may span lines) */
    size_t col;           /* 0-based byte column of the first byte */
    bool line_first;      /* no other token before it on its line */
    bool unterminated;    /* a string or include name without its closing '"' */
};

/* A tokenizer over text[0..len); it does not own the text. */
struct cfglex {
    const char *text;
    size_t len;
    size_t pos;
    unsigned line;
    size_t line_start;    /* offset of the current line */
    unsigned last_line;   /* line of the last token returned, 0 before any */
};

void cfglex_init(struct cfglex *lx, const char *text, size_t len);
/* The next token; CFGLEX_EOF at the end (and at every call after it). */
void cfglex_next(struct cfglex *lx, struct cfglex_token *tok /* OUT */);

/* Where the first syntax error in a file is. `near` names the offending
 * token (empty at the end of the file); line/col/caret_len are where to
 * point in the file, which for a missing separator is the end of the line
 * before the token. msg is the hint, e.g. "missing ',' at the end of line 7?" */
struct cfglex_diag {
    unsigned line;
    size_t col;
    size_t caret_len;     /* >= 1 */
    char near[64];        /* the token as written, shortened, printable */
    char msg[256];
};

/* Parses text[0..len) and describes its first syntax error. Returns 1 with
 * *d filled, 0 when the text parses (then libconfig's view stands), -1 when
 * out of memory. */
int cfglex_explain(const char *text, size_t len, struct cfglex_diag *d /* OUT */)
    __attribute__((warn_unused_result));

#endif
