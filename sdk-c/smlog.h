/*
 * smlog — the SDK's logfmt lines on stderr (internal to libstatemesh).
 *
 *   ts=2026-11-24T10:00:00.123Z level=info event=fn.listen addr=unix:/tmp/x.sock
 *
 * One write per line. SM__LOG checks the level before evaluating its
 * arguments. Values that may hold spaces or quotes go through sm__quote(),
 * which writes a logfmt-safe (quoted, escaped, truncated) copy into a
 * caller buffer. The level lives in the object that logs (no globals).
 */
#ifndef STATEMESH_SMLOG_H
#define STATEMESH_SMLOG_H

#include <stddef.h>

#include "statemesh/function.h"

void sm__log_write(sm_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *sm__quote(char *buf, size_t size, const char *s);
/* Parses debug|info|warn|error|off; returns `dflt` for NULL or unknown. */
sm_log_level sm__log_level_parse(const char *s, sm_log_level dflt);

#define SM__LOG(cur, lvl, event, ...)                                           \
    do {                                                                        \
        if ((lvl) >= (cur) && (cur) != SM_LOG_OFF) sm__log_write((lvl), (event), __VA_ARGS__); \
    } while (0)

#endif
