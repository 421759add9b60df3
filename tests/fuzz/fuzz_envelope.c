/* fuzz_envelope.c — libFuzzer harness for esr_envelope_parse (esr/envelope.h): any bytes, never a crash or a leak, and
 * on success the invariants the worker relies on, among them strict JSON: every string of the tree (names included) is
 * valid UTF-8 and exactly as long as its literal decodes to (cJSON cuts a string at \u0000 or a bad \u escape), no BOM,
 * no control byte but tab, CR and LF anywhere in the value. The checks here are written independently of envelope.c's.
 * Run by scripts/fuzz.sh; every file of corpus/fuzz_envelope is also replayed under ctest (fuzz_replay.c). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
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

/* Valid UTF-8 (RFC 3629), by decoding: no overlong form, no surrogate, nothing above U+10FFFF, no truncation. */
static int valid_utf8(const unsigned char *s) {
  while (*s) {
    unsigned c = *s, cp, min;
    int n;
    if (c < 0x80) {
      s++;
      continue;
    }
    if ((c & 0xe0) == 0xc0) n = 1, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0) n = 2, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0) n = 3, cp = c & 0x07, min = 0x10000;
    else return 0;
    for (int i = 1; i <= n; i++) {
      if ((s[i] & 0xc0) != 0x80) return 0; /* a NUL ends the loop here too */
      cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    s += n + 1;
  }
  return 1;
}

static int hexval(unsigned char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The string literal that starts at the next '"' of *p (the text between string literals holds no quote): checks that
 * `s` is as long as the literal decodes to, and moves *p past it. */
static void check_literal(const char *s, const unsigned char **p, const unsigned char *end) {
  while (*p < end && **p != '"') (*p)++;
  CHECK(*p < end);
  size_t want = 0;
  const unsigned char *q = *p + 1;
  while (q < end && *q != '"') {
    if (*q != '\\') {
      CHECK(*q >= 0x20); /* control characters only escaped */
      want++, q++;
      continue;
    }
    CHECK(end - q >= 2);
    if (q[1] != 'u') {
      want++, q += 2;
      continue;
    }
    CHECK(end - q >= 6);
    long cp = 0;
    for (int i = 2; i < 6; i++) {
      int h = hexval(q[i]);
      CHECK(h >= 0);
      cp = cp * 16 + h;
    }
    q += 6;
    if (cp >= 0xd800 && cp <= 0xdbff) { /* a pair: one code point in 4 bytes */
      CHECK(end - q >= 6 && q[0] == '\\' && q[1] == 'u');
      q += 6, want += 4;
    } else {
      want += cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
    }
  }
  CHECK(q < end);
  *p = q + 1;
  CHECK(s && strlen(s) == want); /* shorter: a NUL cut the string */
}

/* Names and string values in document order (cJSON keeps it), beside the raw literals. */
static void check_strings(const cJSON *node, int in_object, const unsigned char **p, const unsigned char *end) {
  for (; node; node = node->next) {
    if (in_object) {
      CHECK(valid_utf8((const unsigned char *)node->string));
      check_literal(node->string, p, end);
    }
    if (cJSON_IsString(node)) {
      CHECK(valid_utf8((const unsigned char *)node->valuestring));
      check_literal(node->valuestring, p, end);
    }
    if (node->child) check_strings(node->child, cJSON_IsObject(node), p, end);
  }
}

static int digit_at(const unsigned char *p, const unsigned char *end) { return p < end && *p >= '0' && *p <= '9'; }

/* The end of the RFC 8259 number at p, -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, or NULL. */
static const unsigned char *rfc_number(const unsigned char *p, const unsigned char *end) {
  if (p < end && *p == '-') p++;
  if (!digit_at(p, end)) return NULL;
  if (*p++ != '0')
    while (digit_at(p, end)) p++;
  if (p < end && *p == '.') {
    if (!digit_at(++p, end)) return NULL;
    while (digit_at(p, end)) p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    if (++p < end && (*p == '+' || *p == '-')) p++;
    if (!digit_at(p, end)) return NULL;
    while (digit_at(p, end)) p++;
  }
  return p;
}

static void check_strict(const esr_envelope *env, const uint8_t *data, size_t size) {
  const unsigned char *end = data + size;
  CHECK(!(size >= 3 && data[0] == 0xef && data[1] == 0xbb && data[2] == 0xbf));
  for (size_t i = 0; i < size; i++) CHECK(data[i] >= 0x20 || data[i] == '\t' || data[i] == '\n' || data[i] == '\r');
  const unsigned char *p = data;
  check_strings(env->root, 0, &p, end);
  while (p < end) CHECK(*p++ != '"'); /* every literal had its string */
  /* every number literal follows the RFC grammar (01, 1., -.5 do not) */
  for (p = data; p < end;) {
    if (*p == '"') {
      for (p++; p < end && *p != '"'; p++)
        if (*p == '\\') p++;
      p++;
    } else if (*p == '-' || digit_at(p, end)) {
      p = rfc_number(p, end);
      CHECK(p && (p == end || !strchr("0123456789+-.eE", *p)));
    } else {
      p++;
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  esr_envelope env;
  char msg[256];
  msg[0] = '\0';
  esr_envelope_result r = esr_envelope_parse(data, size, &env, msg, sizeof msg);
  if (r == ESR_ENVELOPE_OK) {
    check_ok(&env);
    check_strict(&env, data, size);
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
