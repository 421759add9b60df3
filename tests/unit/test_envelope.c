/* test_envelope.c — esr/envelope.h (what is accepted as an event envelope, what is bad JSON, what is a bad envelope)
 * and esr/json.h (exact integers: esr_json_int53 never rounds). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "esr/envelope.h"
#include "esr/json.h"
#include "unit_util.h"

static esr_envelope_result parse(const char *text, esr_envelope *env, char *msg, size_t cap) {
  return esr_envelope_parse(text, strlen(text), env, msg, cap);
}

/* Parses `text` and expects result `want`; for failures also that the message mentions `mention` and `env` is clear. */
static void expect(const char *text, esr_envelope_result want, const char *mention) {
  esr_envelope env;
  char msg[300] = "";
  esr_envelope_result r = parse(text, &env, msg, sizeof msg);
  if (r != want) fail_msg("%s: got result %d, want %d (%s)", text, r, want, msg);
  if (want != ESR_ENVELOPE_OK) {
    assert_null(env.root);
    assert_null(env.type);
    assert_null(env.data);
    assert_true(msg[0] != '\0');
    if (mention) assert_contains(msg, mention);
  }
  esr_envelope_clear(&env);
}

static void good_envelope_fields(void **state) {
  const char *text = "{\"type\":\"account.deposited\",\"version\":3,\"id\":\"e-1042\","
                     "\"time\":\"2026-11-25T10:00:00Z\",\"data\":{\"account\":\"a1\",\"amount\":2500}}";
  esr_envelope env;
  char msg[200] = "";
  assert_int_equal(parse(text, &env, msg, sizeof msg), ESR_ENVELOPE_OK);
  assert_non_null(env.root);
  assert_string_equal(env.type, "account.deposited");
  assert_int_equal(env.version, 3);
  assert_string_equal(env.id, "e-1042");
  assert_string_equal(env.time, "2026-11-25T10:00:00Z");
  assert_true(cJSON_IsObject(env.data));
  assert_string_equal(esr_json_string(env.data, "account"), "a1");
  assert_ptr_equal(env.data, cJSON_GetObjectItemCaseSensitive(env.root, "data"));
  esr_envelope_clear(&env);
  assert_null(env.root);
  esr_envelope_clear(&env); /* twice is fine */
}

static void version_defaults_to_1_and_optional_fields_absent(void **state) {
  esr_envelope env;
  assert_int_equal(parse("{\"type\":\"t\",\"data\":{}}", &env, NULL, 0), ESR_ENVELOPE_OK);
  assert_int_equal(env.version, 1);
  assert_null(env.id);
  assert_null(env.time);
  assert_string_equal(env.type, "t");
  esr_envelope_clear(&env);
}

static void version_limits(void **state) {
  expect("{\"type\":\"t\",\"version\":2147483647,\"data\":{}}", ESR_ENVELOPE_OK, NULL);
  expect("{\"type\":\"t\",\"version\":1,\"data\":{}}", ESR_ENVELOPE_OK, NULL);
  expect("{\"type\":\"t\",\"version\":2147483648,\"data\":{}}", ESR_ENVELOPE_BAD_ENVELOPE, "version");
}

static void bad_json(void **state) {
  esr_envelope env;
  char msg[200] = "";
  assert_int_equal(esr_envelope_parse("", 0, &env, msg, sizeof msg), ESR_ENVELOPE_BAD_JSON);
  assert_null(env.root);
  assert_contains(msg, "empty");
  assert_int_equal(esr_envelope_parse(NULL, 0, &env, msg, sizeof msg), ESR_ENVELOPE_BAD_JSON);
  expect("hello", ESR_ENVELOPE_BAD_JSON, "JSON");
  expect("{\"type\":\"t\",\"data\":{}", ESR_ENVELOPE_BAD_JSON, "JSON");           /* truncated */
  expect("{\"type\":\"t\",\"data\":{", ESR_ENVELOPE_BAD_JSON, NULL);              /* truncated */
  expect("{\"type\":\"t\",\"data\":{}} x", ESR_ENVELOPE_BAD_JSON, "trailing");    /* trailing data */
  expect("{\"type\":\"t\",\"data\":{}}{}", ESR_ENVELOPE_BAD_JSON, "trailing");    /* two documents */
  expect("{\"type\":\"t\",\"data\":{}},", ESR_ENVELOPE_BAD_JSON, "trailing");
  expect("{type:\"t\",\"data\":{}}", ESR_ENVELOPE_BAD_JSON, NULL);                /* unquoted name */
  expect("   ", ESR_ENVELOPE_BAD_JSON, NULL);
  expect("\xff\xfe{}", ESR_ENVELOPE_BAD_JSON, NULL);
}

static void trailing_nul_inside_length_is_bad_json(void **state) {
  const char text[] = "{\"type\":\"t\",\"data\":{}}";
  esr_envelope env;
  char msg[200] = "";
  /* sizeof includes the terminating NUL: a value with a NUL byte after the object is not just whitespace */
  assert_int_equal(esr_envelope_parse(text, sizeof text, &env, msg, sizeof msg), ESR_ENVELOPE_BAD_JSON);
  assert_contains(msg, "trailing");
}

static void length_is_respected_without_nul(void **state) {
  /* The value is not NUL-terminated: bytes after `len` must not be read as part of it. */
  const char text[] = "{\"type\":\"t\",\"data\":{}}GARBAGE";
  esr_envelope env;
  assert_int_equal(esr_envelope_parse(text, strlen(text) - 7, &env, NULL, 0), ESR_ENVELOPE_OK);
  assert_string_equal(env.type, "t");
  esr_envelope_clear(&env);
  /* and a length that cuts the object is truncated JSON */
  assert_int_equal(esr_envelope_parse(text, 10, &env, NULL, 0), ESR_ENVELOPE_BAD_JSON);
}

static void whitespace_around_is_accepted(void **state) {
  expect(" \t\r\n{\"type\":\"t\",\"data\":{}} \r\n\t ", ESR_ENVELOPE_OK, NULL);
  expect("{ \"type\" : \"t\" ,\n \"data\" : { } }\n", ESR_ENVELOPE_OK, NULL);
}

static void bad_envelope_root(void **state) {
  expect("[{\"type\":\"t\",\"data\":{}}]", ESR_ENVELOPE_BAD_ENVELOPE, "object");
  expect("42", ESR_ENVELOPE_BAD_ENVELOPE, "object");
  expect("\"a string\"", ESR_ENVELOPE_BAD_ENVELOPE, "object");
  expect("null", ESR_ENVELOPE_BAD_ENVELOPE, "object");
  expect("true", ESR_ENVELOPE_BAD_ENVELOPE, "object");
}

static void bad_envelope_type(void **state) {
  expect("{\"data\":{}}", ESR_ENVELOPE_BAD_ENVELOPE, "type");
  expect("{\"type\":\"\",\"data\":{}}", ESR_ENVELOPE_BAD_ENVELOPE, "type");
  expect("{\"type\":5,\"data\":{}}", ESR_ENVELOPE_BAD_ENVELOPE, "type");
  expect("{\"type\":null,\"data\":{}}", ESR_ENVELOPE_BAD_ENVELOPE, "type");
  expect("{\"type\":[\"t\"],\"data\":{}}", ESR_ENVELOPE_BAD_ENVELOPE, "type");
  expect("{\"Type\":\"t\",\"data\":{}}", ESR_ENVELOPE_BAD_ENVELOPE, "type"); /* names are case-sensitive */
  /* at most 255 bytes */
  char text[600], name[300];
  memset(name, 'a', 255);
  name[255] = '\0';
  snprintf(text, sizeof text, "{\"type\":\"%s\",\"data\":{}}", name);
  expect(text, ESR_ENVELOPE_OK, NULL);
  name[255] = 'a';
  name[256] = '\0';
  snprintf(text, sizeof text, "{\"type\":\"%s\",\"data\":{}}", name);
  expect(text, ESR_ENVELOPE_BAD_ENVELOPE, "type");
}

static void bad_envelope_version(void **state) {
  expect("{\"type\":\"t\",\"version\":0,\"data\":{}}", ESR_ENVELOPE_BAD_ENVELOPE, "version");
  expect("{\"type\":\"t\",\"version\":-1,\"data\":{}}", ESR_ENVELOPE_BAD_ENVELOPE, "version");
  expect("{\"type\":\"t\",\"version\":1.5,\"data\":{}}", ESR_ENVELOPE_BAD_ENVELOPE, "version");
  expect("{\"type\":\"t\",\"version\":\"1\",\"data\":{}}", ESR_ENVELOPE_BAD_ENVELOPE, "version");
  expect("{\"type\":\"t\",\"version\":null,\"data\":{}}", ESR_ENVELOPE_BAD_ENVELOPE, "version");
  expect("{\"type\":\"t\",\"version\":true,\"data\":{}}", ESR_ENVELOPE_BAD_ENVELOPE, "version");
  expect("{\"type\":\"t\",\"version\":1e300,\"data\":{}}", ESR_ENVELOPE_BAD_ENVELOPE, "version");
}

static void bad_envelope_data(void **state) {
  expect("{\"type\":\"t\"}", ESR_ENVELOPE_BAD_ENVELOPE, "data");
  expect("{\"type\":\"t\",\"data\":[]}", ESR_ENVELOPE_BAD_ENVELOPE, "data");
  expect("{\"type\":\"t\",\"data\":\"x\"}", ESR_ENVELOPE_BAD_ENVELOPE, "data");
  expect("{\"type\":\"t\",\"data\":null}", ESR_ENVELOPE_BAD_ENVELOPE, "data");
  expect("{\"type\":\"t\",\"data\":1}", ESR_ENVELOPE_BAD_ENVELOPE, "data");
}

static void bad_envelope_id_time(void **state) {
  expect("{\"type\":\"t\",\"id\":5,\"data\":{}}", ESR_ENVELOPE_BAD_ENVELOPE, "id");
  expect("{\"type\":\"t\",\"id\":null,\"data\":{}}", ESR_ENVELOPE_BAD_ENVELOPE, "id");
  expect("{\"type\":\"t\",\"time\":1764064800,\"data\":{}}", ESR_ENVELOPE_BAD_ENVELOPE, "time");
  expect("{\"type\":\"t\",\"time\":{},\"data\":{}}", ESR_ENVELOPE_BAD_ENVELOPE, "time");
}

static void message_buffer_is_optional_and_bounded(void **state) {
  esr_envelope env;
  assert_int_equal(parse("nope", &env, NULL, 0), ESR_ENVELOPE_BAD_JSON);
  char small[8];
  memset(small, 'x', sizeof small);
  assert_int_equal(parse("{\"data\":{}}", &env, small, sizeof small), ESR_ENVELOPE_BAD_ENVELOPE);
  assert_true(memchr(small, '\0', sizeof small) != NULL);
}

static void refresh_rereads_after_modification(void **state) {
  esr_envelope env;
  assert_int_equal(parse("{\"type\":\"t\",\"version\":1,\"data\":{\"a\":1}}", &env, NULL, 0), ESR_ENVELOPE_OK);
  cJSON_ReplaceItemInObjectCaseSensitive(env.root, "version", cJSON_CreateNumber(2));
  cJSON_ReplaceItemInObjectCaseSensitive(env.root, "data", cJSON_Parse("{\"b\":2}"));
  cJSON_AddStringToObject(env.root, "id", "new-id");
  char msg[200];
  assert_int_equal(esr_envelope_refresh(&env, msg, sizeof msg), ESR_ENVELOPE_OK);
  assert_int_equal(env.version, 2);
  assert_string_equal(env.id, "new-id");
  assert_non_null(cJSON_GetObjectItemCaseSensitive(env.data, "b"));
  /* a modification that breaks the envelope is reported and clears it */
  cJSON_DeleteItemFromObjectCaseSensitive(env.root, "data");
  assert_int_equal(esr_envelope_refresh(&env, msg, sizeof msg), ESR_ENVELOPE_BAD_ENVELOPE);
  assert_contains(msg, "data");
  assert_null(env.root);
  esr_envelope_clear(&env);
}

static void clear_is_safe_on_zeroed(void **state) {
  esr_envelope env;
  memset(&env, 0, sizeof env);
  esr_envelope_clear(&env);
  esr_envelope_clear(NULL);
}

/* --- esr_json_int53 --- */

static int int53_text(const char *json, int64_t lo, int64_t hi, int64_t *out) {
  cJSON *item = cJSON_Parse(json);
  assert_non_null(item);
  int ok = esr_json_int53(item, lo, hi, out);
  cJSON_Delete(item);
  return ok;
}

static void int53_accepts_integers_in_range(void **state) {
  int64_t v = -7;
  assert_true(int53_text("1", 1, ESR_INT53_MAX, &v));
  assert_int_equal(v, 1);
  assert_true(int53_text("9007199254740992", 1, ESR_INT53_MAX, &v)); /* 2^53 */
  assert_true(v == ESR_INT53_MAX);
  assert_true(int53_text("-9007199254740992", -ESR_INT53_MAX, 0, &v));
  assert_true(v == -ESR_INT53_MAX);
  assert_true(int53_text("1.0", 1, 10, &v)); /* integral value */
  assert_int_equal(v, 1);
  assert_true(int53_text("1e3", 1, 1000, &v));
  assert_int_equal(v, 1000);
  assert_true(int53_text("-1", -10, 10, &v));
  assert_true(v == -1);
  assert_true(int53_text("0", 0, 0, &v));
  assert_int_equal(v, 0);
}

static void int53_rejects_out_of_range_and_fractions(void **state) {
  int64_t v = 12345;
  assert_false(int53_text("9007199254740994", 1, ESR_INT53_MAX, &v));  /* 2^53 + 2 */
  assert_false(int53_text("9007199254740994", 1, INT64_MAX, &v));      /* even with a careless hi */
  assert_false(int53_text("-9007199254740994", INT64_MIN, 0, &v));
  assert_false(int53_text("18446744073709551616", 1, INT64_MAX, &v));  /* 2^64 */
  assert_false(int53_text("1.5", 1, 10, &v));
  assert_false(int53_text("0.0000001", -1, 1, &v));
  assert_false(int53_text("-1", 1, 10, &v));
  assert_false(int53_text("0", 1, 10, &v));
  assert_false(int53_text("11", 1, 10, &v));
  assert_false(int53_text("1e400", 1, INT64_MAX, &v)); /* strtod gives infinity */
  assert_true(v == 12345);                              /* untouched on failure */
}

static void int53_rejects_non_numbers(void **state) {
  int64_t v = 99;
  assert_false(int53_text("\"10\"", 1, 100, &v));
  assert_false(int53_text("true", 0, 100, &v));
  assert_false(int53_text("null", 0, 100, &v));
  assert_false(int53_text("[1]", 0, 100, &v));
  assert_false(int53_text("{\"a\":1}", 0, 100, &v));
  assert_false(esr_json_int53(NULL, 0, 100, &v));
  cJSON *nan = cJSON_CreateNumber(NAN), *inf = cJSON_CreateNumber(INFINITY), *ninf = cJSON_CreateNumber(-INFINITY);
  assert_false(esr_json_int53(nan, INT64_MIN, INT64_MAX, &v));
  assert_false(esr_json_int53(inf, INT64_MIN, INT64_MAX, &v));
  assert_false(esr_json_int53(ninf, INT64_MIN, INT64_MAX, &v));
  cJSON_Delete(nan);
  cJSON_Delete(inf);
  cJSON_Delete(ninf);
  assert_true(v == 99);
}

/* 9007199254740993 (2^53 + 1) is not representable as a double: cJSON reads it as 2^53. The contract says the value is
 * never rounded, so it must be refused rather than taken as 9007199254740992. */
/* cJSON reads 9007199254740993 as the double 2^53; the envelope parser sees the literal and makes such numbers NaN so
 * that esr_json_int53 refuses them instead of rounding. A plain cJSON tree cannot carry that distinction. */
static int int53_via_envelope(const char *number, int64_t *out) {
  char json[256];
  snprintf(json, sizeof json, "{\"type\":\"t\",\"data\":{\"n\":%s}}", number);
  esr_envelope env;
  char msg[200];
  assert_int_equal(esr_envelope_parse(json, strlen(json), &env, msg, sizeof msg), ESR_ENVELOPE_OK);
  int ok = esr_json_int53(cJSON_GetObjectItemCaseSensitive(env.data, "n"), 1, ESR_INT53_MAX, out);
  esr_envelope_clear(&env);
  return ok;
}

static void int53_rejects_2p53_plus_1_instead_of_rounding(void **state) {
  int64_t v = 0;
  if (int53_via_envelope("9007199254740993", &v)) fail_msg("9007199254740993 was accepted as %lld (rounded)", (long long)v);
  if (int53_via_envelope("1.0000000000000001", &v)) fail_msg("1.0000000000000001 was accepted as %lld", (long long)v);
  if (int53_via_envelope("4503599627370496.5", &v)) fail_msg("4503599627370496.5 was accepted as %lld", (long long)v);
  if (int53_via_envelope("90071992547409930e-1", &v)) fail_msg("90071992547409930e-1 accepted as %lld", (long long)v);
  /* exact spellings of representable integers stay accepted */
  assert_true(int53_via_envelope("9007199254740992", &v));
  assert_true(v == ESR_INT53_MAX);
  assert_true(int53_via_envelope("90071992547409920e-1", &v));
  assert_true(v == ESR_INT53_MAX);
  assert_true(int53_via_envelope("2.50e1", &v));
  assert_int_equal(v, 25);
  assert_true(int53_via_envelope("0.00001e5", &v));
  assert_int_equal(v, 1);
  assert_true(int53_via_envelope("1000000000000000", &v));
}

/* A number at the very end of a value that is not NUL-terminated: its exponent must be read within the length (the
 * fuzzer found an over-read here; ASan catches it in this test). */
static void number_at_end_of_unterminated_value(void **state) {
  static const char *const values[] = {"81.00e00", "1212345678901234567890e-3", "1e5", "2.5E+10"};
  for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
    size_t len = strlen(values[i]);
    char *exact = malloc(len); /* no NUL after it */
    memcpy(exact, values[i], len);
    esr_envelope env;
    char msg[200];
    assert_int_equal(esr_envelope_parse(exact, len, &env, msg, sizeof msg), ESR_ENVELOPE_BAD_ENVELOPE);
    free(exact);
  }
}

static void json_string_helper(void **state) {
  cJSON *o = cJSON_Parse("{\"s\":\"x\",\"n\":1,\"z\":null}");
  assert_string_equal(esr_json_string(o, "s"), "x");
  assert_null(esr_json_string(o, "n"));
  assert_null(esr_json_string(o, "z"));
  assert_null(esr_json_string(o, "missing"));
  assert_null(esr_json_string(o, "S"));
  cJSON_Delete(o);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(good_envelope_fields),
      cmocka_unit_test(version_defaults_to_1_and_optional_fields_absent),
      cmocka_unit_test(version_limits),
      cmocka_unit_test(bad_json),
      cmocka_unit_test(trailing_nul_inside_length_is_bad_json),
      cmocka_unit_test(length_is_respected_without_nul),
      cmocka_unit_test(whitespace_around_is_accepted),
      cmocka_unit_test(bad_envelope_root),
      cmocka_unit_test(bad_envelope_type),
      cmocka_unit_test(bad_envelope_version),
      cmocka_unit_test(bad_envelope_data),
      cmocka_unit_test(bad_envelope_id_time),
      cmocka_unit_test(message_buffer_is_optional_and_bounded),
      cmocka_unit_test(refresh_rereads_after_modification),
      cmocka_unit_test(clear_is_safe_on_zeroed),
      cmocka_unit_test(int53_accepts_integers_in_range),
      cmocka_unit_test(int53_rejects_out_of_range_and_fractions),
      cmocka_unit_test(int53_rejects_non_numbers),
      cmocka_unit_test(int53_rejects_2p53_plus_1_instead_of_rounding),
      cmocka_unit_test(number_at_end_of_unterminated_value),
      cmocka_unit_test(json_string_helper),
  };
  return cmocka_run_group_tests_name("envelope", tests, NULL, NULL);
}
