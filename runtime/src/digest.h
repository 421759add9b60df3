/* esr/digest.h — the log digest: a SHA-256 hash chain over every event a partition consumed.
 *
 * d' = SHA-256(d || be64(offset) || be32(key length, or 0xffffffff for no key) || key || be32(value length) || value),
 * starting from 32 zero bytes. Two states with the same next_offset and log digest were produced by the same events,
 * whatever the batching. A hasher is used by one thread at a time.
 */
#ifndef ESR_DIGEST_H
#define ESR_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct esr_hasher esr_hasher;

esr_code esr_hasher_new(esr_hasher **out, esr_error *err);
void esr_hasher_free(esr_hasher *h);
/* Advances `digest` (32 bytes, in place) by one event. */
void esr_digest_chain(esr_hasher *h, uint8_t digest[32], int64_t offset, const void *key, size_t key_len,
                      const void *value, size_t value_len);
/* Lower-case hex of a digest into out (65 bytes). */
void esr_digest_hex(const uint8_t digest[32], char out[65]);

#endif
