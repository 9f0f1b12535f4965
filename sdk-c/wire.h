/*
 * wire — hand-written protobuf encoding of the ingress StreamMessage, the
 * SendStream client's hot path (internal to libstatemesh).
 *
 * A SendStreamRequest is just its repeated field 1, so a batch is the
 * concatenation of wire_put_stream_message() outputs: no per-message
 * allocation and no protobuf-c message tree. Field numbers follow
 * protocol/statemesh/v1/ingress.proto and types.proto:
 *
 *   SendStreamRequest  1: StreamMessage messages (repeated)
 *   StreamMessage      1: uint64 seq   2: Address target   3: TypedValue argument
 *                      4: string idempotency_key   5: uint64 delay_ms
 *   Address            1: string type  2: string id
 *   TypedValue         1: string typename   2: bytes value
 *
 * Proto3 defaults (0, "") are omitted, as protobuf encoders do. The unit
 * test test/unit/test_sdk_wire.c decodes the output with protobuf-c.
 */
#ifndef STATEMESH_WIRE_H
#define STATEMESH_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct wire_msg {
    uint64_t seq;
    const char *type;
    size_t type_len;
    const char *id;
    size_t id_len;
    const char *typename;
    size_t typename_len;
    const uint8_t *data;
    size_t data_len;
    const char *key;      /* may be NULL when key_len is 0 */
    size_t key_len;
    uint64_t delay_ms;
};

static inline size_t wire_varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline uint8_t *wire_put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Size of a length-delimited field with a one-byte tag (field numbers < 16). */
static inline size_t wire_ld_size(size_t len)
{
    return 1 + wire_varint_size(len) + len;
}

static inline uint8_t *wire_put_ld(uint8_t *p, unsigned field, const void *data, size_t len)
{
    *p++ = (uint8_t)(field << 3 | 2);
    p = wire_put_varint(p, len);
    if (len) memcpy(p, data, len);
    return p + len;
}

static inline size_t wire_opt_ld_size(size_t len)
{
    return len ? wire_ld_size(len) : 0;
}

/* The three nested lengths of a StreamMessage. */
struct wire_sizes {
    size_t addr, tv, body;
};

static inline void wire_stream_message_sizes(const struct wire_msg *m, struct wire_sizes *s)
{
    s->addr = wire_opt_ld_size(m->type_len) + wire_opt_ld_size(m->id_len);
    s->tv = wire_opt_ld_size(m->typename_len) + wire_opt_ld_size(m->data_len);
    s->body = (m->seq ? 1 + wire_varint_size(m->seq) : 0) + wire_ld_size(s->addr) +
              wire_ld_size(s->tv) + wire_opt_ld_size(m->key_len) +
              (m->delay_ms ? 1 + wire_varint_size(m->delay_ms) : 0);
}

/* Bytes wire_put_stream_message() writes for m. */
static inline size_t wire_stream_message_size(const struct wire_msg *m)
{
    struct wire_sizes s;
    wire_stream_message_sizes(m, &s);
    return wire_ld_size(s.body);
}

/* Writes m as field 1 of a SendStreamRequest at p; returns the end. */
static inline uint8_t *wire_put_stream_message(uint8_t *p, const struct wire_msg *m)
{
    struct wire_sizes s;
    wire_stream_message_sizes(m, &s);
    *p++ = 1 << 3 | 2;
    p = wire_put_varint(p, s.body);
    if (m->seq) {
        *p++ = 1 << 3 | 0;
        p = wire_put_varint(p, m->seq);
    }
    *p++ = 2 << 3 | 2;
    p = wire_put_varint(p, s.addr);
    if (m->type_len) p = wire_put_ld(p, 1, m->type, m->type_len);
    if (m->id_len) p = wire_put_ld(p, 2, m->id, m->id_len);
    *p++ = 3 << 3 | 2;
    p = wire_put_varint(p, s.tv);
    if (m->typename_len) p = wire_put_ld(p, 1, m->typename, m->typename_len);
    if (m->data_len) p = wire_put_ld(p, 2, m->data, m->data_len);
    if (m->key_len) p = wire_put_ld(p, 4, m->key, m->key_len);
    if (m->delay_ms) {
        *p++ = 5 << 3 | 0;
        p = wire_put_varint(p, m->delay_ms);
    }
    return p;
}

#endif
