/* esr/envelope.h — parsing a Kafka message value into an event envelope.
 *
 * The value must be one JSON object, strict RFC 8259 JSON (whitespace around it allowed, nothing else):
 *   {"type":"account.deposited","version":1,"id":"...","time":"2026-11-25T10:00:00Z","data":{...}}
 * `type` (non-empty string, at most 255 bytes) and `data` (object) are required; `version` is an integer in
 * 1..2147483647 and defaults to 1; `id` and `time`, when present, are strings. A value that is not JSON is
 * ESR_ENVELOPE_BAD_JSON, one that is JSON but not such an envelope ESR_ENVELOPE_BAD_ENVELOPE; both come with a message
 * naming the field. Strict means what cJSON alone lets through is BAD_JSON, with a message naming the byte offset and
 * the fault: invalid UTF-8 anywhere in a string (overlong forms, encoded surrogates, code points above U+10FFFF,
 * truncated sequences), raw control characters (< 0x20) in a string, \u0000 or a \u escape without 4 hex digits (cJSON
 * cuts the string there, so a handler would see a shorter string), lone surrogate escapes, whitespace other than space,
 * tab, CR and LF, a UTF-8 byte order mark (RFC 8259 section 8.1: MUST NOT be added; esr does not ignore it), and numbers
 * outside the RFC grammar (01, 1., .5, -.5, +1, 1e). So every string of a parsed envelope is valid UTF-8 without NUL.
 * Numbers: cJSON holds them as doubles; a number whose double is integral but not exactly its literal
 * (9007199254740993, 1.0000000000000001) is set to NaN in the tree, so that no integer reader (esr_json_int53) is
 * deceived by a silent rounding. The envelope owns its cJSON tree; esr_envelope_clear frees it (and is safe on a zeroed envelope).
 */
#ifndef ESR_ENVELOPE_H
#define ESR_ENVELOPE_H

#include <stddef.h>

typedef struct cJSON cJSON;

typedef enum esr_envelope_result {
  ESR_ENVELOPE_OK = 0,
  ESR_ENVELOPE_BAD_JSON,
  ESR_ENVELOPE_BAD_ENVELOPE,
} esr_envelope_result;

typedef struct esr_envelope {
  cJSON *root; /* owned */
  const char *type;
  int version;
  const char *id;
  const char *time;
  cJSON *data; /* inside root */
} esr_envelope;

/* Parses `len` bytes (not NUL-terminated). On failure `out` is cleared and `msg` holds the reason. */
esr_envelope_result esr_envelope_parse(const void *value, size_t len, esr_envelope *out, char *msg, size_t msg_cap);
/* Re-reads type/version/id/time/data from `root` after it was modified (e.g. by an upcast). */
esr_envelope_result esr_envelope_refresh(esr_envelope *env, char *msg, size_t msg_cap);
void esr_envelope_clear(esr_envelope *env);

#endif
