/* envelope.c — JSON envelope parsing; strict, because whatever is accepted here is replayed forever. */
#include "esr/envelope.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "esr/json.h"

static esr_envelope_result fail(esr_envelope *env, esr_envelope_result r, char *msg, size_t cap, const char *fmt,
                                ...) {
  if (msg && cap) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
  }
  esr_envelope_clear(env);
  return r;
}

esr_envelope_result esr_envelope_refresh(esr_envelope *env, char *msg, size_t cap) {
  cJSON *root = env->root;
  if (!cJSON_IsObject(root))
    return fail(env, ESR_ENVELOPE_BAD_ENVELOPE, msg, cap, "the value is JSON but not an object");
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
  if (!type) return fail(env, ESR_ENVELOPE_BAD_ENVELOPE, msg, cap, "missing \"type\"");
  if (!cJSON_IsString(type) || !type->valuestring[0] || strlen(type->valuestring) > 255)
    return fail(env, ESR_ENVELOPE_BAD_ENVELOPE, msg, cap, "\"type\" must be a non-empty string of at most 255 bytes");
  const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
  int64_t v = 1;
  if (version && !esr_json_int53(version, 1, 2147483647, &v))
    return fail(env, ESR_ENVELOPE_BAD_ENVELOPE, msg, cap, "\"version\" must be an integer >= 1");
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
  if (id && !cJSON_IsString(id)) return fail(env, ESR_ENVELOPE_BAD_ENVELOPE, msg, cap, "\"id\" must be a string");
  const cJSON *time = cJSON_GetObjectItemCaseSensitive(root, "time");
  if (time && !cJSON_IsString(time))
    return fail(env, ESR_ENVELOPE_BAD_ENVELOPE, msg, cap, "\"time\" must be a string");
  cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
  if (!data) return fail(env, ESR_ENVELOPE_BAD_ENVELOPE, msg, cap, "missing \"data\"");
  if (!cJSON_IsObject(data)) return fail(env, ESR_ENVELOPE_BAD_ENVELOPE, msg, cap, "\"data\" must be an object");
  env->type = type->valuestring;
  env->version = (int)v;
  env->id = id ? id->valuestring : NULL;
  env->time = time ? time->valuestring : NULL;
  env->data = data;
  return ESR_ENVELOPE_OK;
}

/* Whether the number literal text[0..len) denotes exactly the integral double d. */
static int literal_is(const char *text, size_t len, double d) {
  char digits[420];
  size_t n = 0, i = 0;
  int exp10 = 0, frac = 0;
  if (i < len && text[i] == '-') i++;
  for (; i < len && text[i] != 'e' && text[i] != 'E'; i++) {
    if (text[i] == '.') {
      frac = 1;
      continue;
    }
    if (n + 1 >= sizeof digits) return 0;
    if (n > 0 || text[i] != '0') digits[n++] = text[i]; /* no leading zeros */
    if (frac) exp10--;                                  /* every fraction digit scales by 1/10 */
  }
  if (i < len) { /* exponent: copied out, the value is not NUL-terminated */
    char ebuf[16];
    size_t elen = len - i - 1;
    if (elen == 0 || elen >= sizeof ebuf) return 0;
    memcpy(ebuf, text + i + 1, elen);
    ebuf[elen] = '\0';
    long e = strtol(ebuf, NULL, 10);
    if (e > 400 || e < -400) return 0;
    exp10 += (int)e;
  }
  /* digits * 10^exp10 must be an integer: trailing digits dropped by a negative exponent must be zeros */
  while (exp10 < 0 && n > 0) {
    if (digits[n - 1] != '0') return 0;
    n--;
    exp10++;
  }
  if (n == 0) return d == 0.0;
  while (exp10 > 0) {
    if (n + 1 >= sizeof digits) return 0;
    digits[n++] = '0';
    exp10--;
  }
  digits[n] = '\0';
  char exact[420];
  snprintf(exact, sizeof exact, "%.0f", fabs(d)); /* glibc prints a double's exact decimal value */
  return strcmp(exact, digits) == 0;
}

/* cJSON reads every number as a double, so 9007199254740993 arrives as 9007199254740992 and 1.0000000000000001 as 1:
 * an integer reader would be deceived without a trace. Walk the number literals of the raw text in document order
 * (cJSON keeps that order) beside the tree's number nodes, and turn every number whose double is integral but not
 * exactly its literal into NaN, which esr_json_int53 and any careful reader refuse. */
typedef struct num_scan {
  const char *p, *end;
} num_scan;

static int next_literal(num_scan *sc, const char **start, size_t *len) {
  while (sc->p < sc->end) {
    char c = *sc->p;
    if (c == '"') {
      for (sc->p++; sc->p < sc->end && *sc->p != '"'; sc->p++)
        if (*sc->p == '\\') sc->p++;
      sc->p++;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      *start = sc->p;
      while (sc->p < sc->end && (strchr("+-.eE", *sc->p) || (*sc->p >= '0' && *sc->p <= '9'))) sc->p++;
      *len = (size_t)(sc->p - *start);
      return 1;
    } else {
      sc->p++;
    }
  }
  return 0;
}

static void mark_inexact(cJSON *node, num_scan *sc) {
  for (; node; node = node->next) {
    if (cJSON_IsNumber(node)) {
      const char *lit;
      size_t len;
      if (!next_literal(sc, &lit, &len)) return;
      double d = node->valuedouble;
      /* Fast path: short integer literals (<= 15 digits) are always exact. */
      int simple = len <= 15 && !memchr(lit, '.', len) && !memchr(lit, 'e', len) && !memchr(lit, 'E', len);
      if (!simple && isfinite(d) && d == floor(d) && !literal_is(lit, len, d)) {
        node->valuedouble = NAN;
        node->valueint = 0;
      }
    }
    if (node->child) mark_inexact(node->child, sc);
  }
}

esr_envelope_result esr_envelope_parse(const void *value, size_t len, esr_envelope *env, char *msg, size_t cap) {
  memset(env, 0, sizeof *env);
  if (!value || len == 0) return fail(env, ESR_ENVELOPE_BAD_JSON, msg, cap, "empty value");
  const char *end = NULL;
  env->root = cJSON_ParseWithLengthOpts(value, len, &end, 0);
  if (!env->root) {
    size_t at = end ? (size_t)(end - (const char *)value) : 0;
    return fail(env, ESR_ENVELOPE_BAD_JSON, msg, cap, "not valid JSON (at byte %zu of %zu)", at, len);
  }
  for (const char *p = end; p < (const char *)value + len; p++) {
    if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
      return fail(env, ESR_ENVELOPE_BAD_JSON, msg, cap, "not valid JSON: trailing data at byte %zu of %zu",
                  (size_t)(p - (const char *)value), len);
  }
  num_scan sc = {value, (const char *)value + len};
  mark_inexact(env->root, &sc);
  return esr_envelope_refresh(env, msg, cap);
}

void esr_envelope_clear(esr_envelope *env) {
  if (!env) return;
  cJSON_Delete(env->root);
  memset(env, 0, sizeof *env);
}
