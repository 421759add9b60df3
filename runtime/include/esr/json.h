/* esr/json.h — exact integers from cJSON, header-only (handler plugins may include it; it needs cJSON.h).
 *
 * cJSON keeps every number as a double: valueint saturates at INT_MAX and integers above 2^53 lose precision. Money
 * amounts and counters must be read with esr_json_int53, which accepts only a number that is integral and within
 * [lo, hi] (both inside ±2^53) and never rounds. Numbers parsed by esr_envelope_parse whose literal a double cannot
 * hold exactly (9007199254740993 would read as 2^53) are NaN there and refused here; a tree from plain cJSON_Parse
 * cannot make that distinction.
 */
#ifndef ESR_JSON_H
#define ESR_JSON_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>

#define ESR_INT53_MAX ((int64_t)9007199254740992) /* 2^53 */

/* 1 and *out set when `item` is a number, integral, within [lo, hi]; 0 otherwise. */
static inline int esr_json_int53(const cJSON *item, int64_t lo, int64_t hi, int64_t *out) {
  if (!item || !cJSON_IsNumber(item)) return 0;
  double d = item->valuedouble;
  if (!isfinite(d) || d != floor(d) || d < (double)lo || d > (double)hi) return 0;
  if (d < -(double)ESR_INT53_MAX || d > (double)ESR_INT53_MAX) return 0;
  *out = (int64_t)d;
  return 1;
}

/* The string value of member `name` of `obj`, or NULL when absent or not a string. */
static inline const char *esr_json_string(const cJSON *obj, const char *name) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
  return cJSON_IsString(item) ? item->valuestring : NULL;
}

#endif
