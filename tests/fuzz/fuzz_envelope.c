/* fuzz_envelope.c — libFuzzer harness for esr_envelope_parse (esr/envelope.h): any bytes, never a crash or a leak, and
 * on success the invariants the worker relies on. Run by scripts/fuzz.sh. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "esr/envelope.h"
#include "esr/json.h"

#define CHECK(cond)                                                                                                    \
  do {                                                                                                                 \
    if (!(cond)) __builtin_trap();                                                                                     \
  } while (0)

static void check_ok(const esr_envelope *env) {
  CHECK(cJSON_IsObject(env->root));
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(env->root, "type");
  CHECK(cJSON_IsString(type) && env->type == type->valuestring);
  size_t tlen = strlen(env->type);
  CHECK(tlen >= 1 && tlen <= 255);
  CHECK(env->version >= 1);
  const cJSON *version = cJSON_GetObjectItemCaseSensitive(env->root, "version");
  int64_t v;
  CHECK(version ? esr_json_int53(version, 1, 2147483647, &v) && v == env->version : env->version == 1);
  CHECK(cJSON_IsObject(env->data) && env->data == cJSON_GetObjectItemCaseSensitive(env->root, "data"));
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(env->root, "id");
  CHECK(id ? cJSON_IsString(id) && env->id == id->valuestring : env->id == NULL);
  const cJSON *time = cJSON_GetObjectItemCaseSensitive(env->root, "time");
  CHECK(time ? cJSON_IsString(time) && env->time == time->valuestring : env->time == NULL);
}

/* No number in the tree is integral-looking yet rounded: inexact integers are NaN, and esr_json_int53 refuses NaN. */
static void check_numbers(const cJSON *node) {
  for (; node; node = node->next) {
    if (cJSON_IsNumber(node) && isnan(node->valuedouble)) {
      int64_t out;
      CHECK(!esr_json_int53(node, -ESR_INT53_MAX, ESR_INT53_MAX, &out));
    }
    check_numbers(node->child);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  esr_envelope env;
  char msg[256];
  msg[0] = '\0';
  esr_envelope_result r = esr_envelope_parse(data, size, &env, msg, sizeof msg);
  if (r == ESR_ENVELOPE_OK) {
    check_ok(&env);
    check_numbers(env.root);
    /* printed and parsed again, it is still an envelope with the same type and version */
    char *text = cJSON_PrintUnformatted(env.root);
    if (text) {
      esr_envelope again;
      CHECK(esr_envelope_parse(text, strlen(text), &again, msg, sizeof msg) == ESR_ENVELOPE_OK);
      CHECK(strcmp(again.type, env.type) == 0 && again.version == env.version);
      CHECK((again.id == NULL) == (env.id == NULL) && (!env.id || strcmp(again.id, env.id) == 0));
      esr_envelope_clear(&again);
      free(text);
    }
  } else {
    CHECK(r == ESR_ENVELOPE_BAD_JSON || r == ESR_ENVELOPE_BAD_ENVELOPE);
    CHECK(env.root == NULL && env.type == NULL && env.data == NULL && env.id == NULL && env.time == NULL);
    CHECK(msg[0] != '\0' && strlen(msg) < sizeof msg);
  }
  esr_envelope_clear(&env);
  esr_envelope_clear(&env); /* twice is fine */
  return 0;
}
