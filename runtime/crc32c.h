/*
 * crc32c — CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected), the
 * checksum of savepoint blocks (savepoint.h). Table-driven, 8 bytes at a
 * time; the table is computed on first use into storage the caller owns, so
 * there is no global state.
 *
 *     struct crc32c t;
 *     crc32c_init(&t);
 *     uint32_t c = crc32c_update(&t, 0, data, len);     // CRC of data
 *     c = crc32c_update(&t, c, more, more_len);         // continued
 *
 * crc32c_update(&t, 0, "123456789", 9) == 0xE3069283 (the check value).
 */
#ifndef SM_CRC32C_H
#define SM_CRC32C_H

#include <stddef.h>
#include <stdint.h>

struct crc32c {
    uint32_t t[8][256];
};

void crc32c_init(struct crc32c *t);
/* The CRC of the bytes so far (`crc` = 0 to start) followed by data. */
uint32_t crc32c_update(const struct crc32c *t, uint32_t crc, const void *data, size_t len);

#endif
