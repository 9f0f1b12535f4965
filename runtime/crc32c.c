/* crc32c — see crc32c.h. Slicing-by-8 over the reflected polynomial. */
#include "crc32c.h"

#define POLY 0x82F63B78u   /* 0x1EDC6F41 reflected */

void crc32c_init(struct crc32c *t)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        t->t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int k = 1; k < 8; k++)
            t->t[k][i] = (t->t[k - 1][i] >> 8) ^ t->t[0][t->t[k - 1][i] & 0xff];
}

uint32_t crc32c_update(const struct crc32c *t, uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t c = ~crc;

    while (len >= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        c = t->t[7][lo & 0xff] ^ t->t[6][(lo >> 8) & 0xff] ^ t->t[5][(lo >> 16) & 0xff] ^
            t->t[4][lo >> 24] ^ t->t[3][p[4]] ^ t->t[2][p[5]] ^ t->t[1][p[6]] ^ t->t[0][p[7]];
        p += 8;
        len -= 8;
    }
    while (len--) c = (c >> 8) ^ t->t[0][(c ^ *p++) & 0xff];
    return ~c;
}
