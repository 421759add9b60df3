/* envelope.c — JSON envelope parsing; strict, because whatever is accepted here is replayed forever. */
#include "esr/envelope.h"

#include <cjson/cJSON.h>
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
  return esr_envelope_refresh(env, msg, cap);
}

void esr_envelope_clear(esr_envelope *env) {
  if (!env) return;
  cJSON_Delete(env->root);
  memset(env, 0, sizeof *env);
}
