/* test_envelope.c — esr/envelope.h (what is accepted as an event envelope, what is bad JSON, what is a bad envelope)
 * and esr/json.h (exact integers: esr_json_int53 never rounds). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "envelope.h"
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

/* --- strict JSON (RFC 8259): what cJSON alone accepts and the envelope refuses --- */

/* `len` bytes of `text` are bad JSON whose message names byte `at` and says `what`. */
static void expect_bad_at(const char *text, size_t len, size_t at, const char *what) {
  esr_envelope env;
  char msg[300] = "", want[40];
  esr_envelope_result r = esr_envelope_parse(text, len, &env, msg, sizeof msg);
  if (r != ESR_ENVELOPE_BAD_JSON) fail_msg("%.*s: got result %d, want bad JSON (%s)", (int)len, text, r, msg);
  snprintf(want, sizeof want, "at byte %zu:", at);
  assert_contains(msg, want);
  assert_contains(msg, what);
  assert_null(env.root);
  assert_null(env.type);
  assert_null(env.data);
}

/* An envelope whose data holds the string "<lead><fault>" (fault_len bytes, NULs allowed); the fault is expected at
 * its first byte. */
static void expect_bad_string(const char *lead, const char *fault, size_t fault_len, const char *what) {
  static const char head[] = "{\"type\":\"t\",\"data\":{\"s\":\"", tail[] = "\"}}";
  char text[300];
  size_t n = 0, ll = strlen(lead);
  assert_true(sizeof head + ll + fault_len + sizeof tail < sizeof text);
  memcpy(text, head, sizeof head - 1), n += sizeof head - 1;
  memcpy(text + n, lead, ll), n += ll;
  memcpy(text + n, fault, fault_len), n += fault_len;
  memcpy(text + n, tail, sizeof tail - 1), n += sizeof tail - 1;
  expect_bad_at(text, n, sizeof head - 1 + ll, what);
}
#define BAD_STRING(lead, fault, what) expect_bad_string(lead, fault, sizeof fault - 1, what)

/* The envelope with data {"s":"<inner>"} is accepted and "s" holds exactly `want` (want_len bytes). */
static void expect_string_ok(const char *inner, const char *want, size_t want_len) {
  char text[300];
  snprintf(text, sizeof text, "{\"type\":\"t\",\"data\":{\"s\":\"%s\"}}", inner);
  esr_envelope env;
  char msg[300] = "";
  if (parse(text, &env, msg, sizeof msg) != ESR_ENVELOPE_OK) fail_msg("%s refused: %s", text, msg);
  const char *s = esr_json_string(env.data, "s");
  assert_non_null(s);
  assert_int_equal(strlen(s), want_len);
  assert_memory_equal(s, want, want_len);
  esr_envelope_clear(&env);
}

/* The case: "acc-0005\u0000evil" reached the ledger as "acc-0005" and matched the Kafka key acc-0005. */
static void escaped_nul_refused_not_cut(void **state) {
  static const char acc[] = "{\"type\":\"account.deposited\",\"data\":{\"account\":\"acc-0005\\u0000evil\",\"amount\":1}}";
  expect_bad_at(acc, sizeof acc - 1, (size_t)(strstr(acc, "\\u0000") - acc), "\\u0000");
  BAD_STRING("", "\\u0000", "U+0000");
  BAD_STRING("ab", "\\u0000", "U+0000");
  /* in a member name too: "type\u0000x" would read as "type" */
  static const char key[] = "{\"type\":\"t\",\"type\\u0000x\":\"u\",\"data\":{}}";
  expect_bad_at(key, sizeof key - 1, (size_t)(strstr(key, "\\u0000") - key), "\\u0000");
  static const char type[] = "{\"type\":\"t\\u0000x\",\"data\":{}}";
  expect_bad_at(type, sizeof type - 1, (size_t)(strstr(type, "\\u0000") - type), "\\u0000");
  /* other escapes of control characters are fine, and decode to what they say */
  expect_string_ok("a\\u0001b", "a\x01" "b", 3);
  expect_string_ok("\\t\\n\\r\\b\\f\\/\\\\\\\"", "\t\n\r\b\f/\\\"", 8);
  expect_string_ok("\\u001f\\u0041\\u00e9", "\x1f" "A\xc3\xa9", 4);
}

static void raw_control_characters_in_strings_refused(void **state) {
  BAD_STRING("x", "\x01y", "control character 0x01");
  BAD_STRING("", "\x1f", "control character 0x1f");
  BAD_STRING("tab", "\t", "control character 0x09");
  BAD_STRING("line", "\nbreak", "control character 0x0a");
  BAD_STRING("cr", "\r", "control character 0x0d");
  /* a raw NUL inside the value's length cut the string, like \u0000 */
  BAD_STRING("acc-0005", "\0evil", "control character 0x00");
  static const char key[] = "{\"type\":\"t\",\"data\":{\"a\x02\":1}}";
  expect_bad_at(key, sizeof key - 1, (size_t)(strchr(key, 0x02) - key), "control character 0x02");
  expect_string_ok("del\x7f ok", "del\x7f ok", 7); /* DEL (0x7f) is not a control character in JSON */
}

static void invalid_utf8_in_strings_refused(void **state) {
  BAD_STRING("acc-", "\xff" "9", "UTF-8");             /* the account id */
  BAD_STRING("", "\xfe", "UTF-8");
  BAD_STRING("a", "\x80", "continuation byte 0x80");  /* a continuation byte with no lead */
  BAD_STRING("", "\xbf", "continuation byte");
  BAD_STRING("", "\xc0\xaf", "overlong");             /* '/' in two bytes */
  BAD_STRING("", "\xc1\xbf", "overlong");
  BAD_STRING("", "\xe0\x80\xaf", "overlong");         /* three bytes */
  BAD_STRING("", "\xe0\x9f\xbf", "overlong");         /* U+07FF in three bytes */
  BAD_STRING("", "\xf0\x80\x80\xaf", "overlong");     /* four bytes */
  BAD_STRING("", "\xf0\x8f\xbf\xbf", "overlong");     /* U+FFFF in four bytes */
  BAD_STRING("", "\xed\xa0\x80", "surrogate");        /* U+D800 encoded */
  BAD_STRING("x", "\xed\xbf\xbf", "surrogate");       /* U+DFFF encoded */
  BAD_STRING("", "\xed\xa0\xbd\xed\xb8\x80", "surrogate"); /* CESU-8 pair of U+1F600 */
  BAD_STRING("", "\xf4\x90\x80\x80", "above U+10FFFF"); /* U+110000 */
  BAD_STRING("", "\xf5\x80\x80\x80", "above U+10FFFF");
  BAD_STRING("", "\xf8\x88\x80\x80\x80", "UTF-8");
  BAD_STRING("", "\xc3", "truncated");                /* the string ends inside a sequence */
  BAD_STRING("", "\xe2\x82", "truncated");
  BAD_STRING("", "\xf0\x9d\x84", "truncated");
  BAD_STRING("", "\xe2" "A", "truncated");
  BAD_STRING("", "\xc3\xc3\xa9", "truncated");
  static const char key[] = "{\"type\":\"t\",\"data\":{\"\xe9t\xe9\":1}}"; /* Latin-1 in a member name */
  expect_bad_at(key, sizeof key - 1, (size_t)(strchr(key, 0xe9) - key), "UTF-8");
  /* the boundaries of valid UTF-8 are accepted byte for byte */
  expect_string_ok("\xc2\x80", "\xc2\x80", 2);                  /* U+0080 */
  expect_string_ok("\xdf\xbf\xe0\xa0\x80", "\xdf\xbf\xe0\xa0\x80", 5); /* U+07FF U+0800 */
  expect_string_ok("\xed\x9f\xbf\xee\x80\x80", "\xed\x9f\xbf\xee\x80\x80", 6); /* U+D7FF U+E000 */
  expect_string_ok("\xef\xbf\xbf\xf0\x90\x80\x80", "\xef\xbf\xbf\xf0\x90\x80\x80", 7); /* U+FFFF U+10000 */
  expect_string_ok("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf", 4);  /* U+10FFFF */
  expect_string_ok("caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e", 14);
  expect_string_ok("\\ud83d\\ude00", "\xf0\x9f\x98\x80", 4);     /* an escaped surrogate pair is one code point */
}

static void escapes_checked_with_their_offset(void **state) {
  /* cJSON reads \u with a non-hex digit as U+0000, which cut the string: "x\u00g0y" arrived as "x" */
  BAD_STRING("x", "\\u00g0y", "4 hex digits");
  BAD_STRING("", "\\uzzzz", "4 hex digits");
  BAD_STRING("", "\\u004G", "4 hex digits");
  /* cJSON refused these already, with no reason; the message now says what is wrong and where */
  BAD_STRING("a", "\\x", "invalid escape \\x");
  BAD_STRING("", "\\'", "invalid escape");
  BAD_STRING("", "\\u12", "4 hex digits");
  BAD_STRING("", "\\ud800", "high surrogate");
  BAD_STRING("", "\\ud800\\u0041", "high surrogate");
  BAD_STRING("", "\\udc00", "low surrogate");
}

static void whitespace_is_only_space_tab_cr_lf(void **state) {
  static const char vt[] = "{\x0b\"type\":\"t\",\"data\":{}}";
  expect_bad_at(vt, sizeof vt - 1, 1, "control byte 0x0b outside a string");
  static const char ff[] = "\x0c{\"type\":\"t\",\"data\":{}}";
  expect_bad_at(ff, sizeof ff - 1, 0, "control byte 0x0c");
  static const char nul[] = "{\"type\":\x00\"t\",\"data\":{}}"; /* cJSON skips any byte <= 0x20, NUL included */
  expect_bad_at(nul, sizeof nul - 1, 8, "control byte 0x00");
  static const char one[] = "{\"type\":\"t\",\"data\":{\"n\":1\x01}}";
  expect_bad_at(one, sizeof one - 1, (size_t)(strchr(one, 0x01) - one), "control byte 0x01");
  static const char us[] = "{\"type\":\"t\",\"data\":{}\x1f}";
  expect_bad_at(us, sizeof us - 1, (size_t)(strchr(us, 0x1f) - us), "control byte 0x1f");
}

/* RFC 8259 section 8.1: implementations MUST NOT add a byte order mark and MAY ignore one; esr refuses it. */
static void utf8_byte_order_mark_refused(void **state) {
  static const char bom[] = "\xef\xbb\xbf{\"type\":\"t\",\"data\":{}}";
  expect_bad_at(bom, sizeof bom - 1, 0, "byte order mark");
  static const char bom_ws[] = " \xef\xbb\xbf{\"type\":\"t\",\"data\":{}}"; /* refused by cJSON: not at the start */
  expect(bom_ws, ESR_ENVELOPE_BAD_JSON, NULL);
}

static void numbers_follow_the_rfc_grammar(void **state) {
  static const char *const bad[][2] = {
      {"01", "leading zero"},   {"-01", "leading zero"}, {"00", "leading zero"},   {"007", "leading zero"},
      {"1.", "decimal point"},  {"-0.", "decimal point"}, {"1.e3", "decimal point"}, {"1.E5", "decimal point"},
      {"-.5", "'-' not followed"}, {"-.5e3", "'-' not followed"},
      /* refused by cJSON already, now with the reason */
      {".5", "digit or '-'"},   {"+1", "digit or '-'"},  {"-", "'-' not followed"},
      {"1e", "exponent"},       {"1e+", "exponent"},     {"1E-", "exponent"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char text[100];
    int at = snprintf(text, sizeof text, "{\"type\":\"t\",\"data\":{\"n\":");
    int n = at + snprintf(text + at, sizeof text - (size_t)at, "%s}}", bad[i][0]);
    expect_bad_at(text, (size_t)n, (size_t)at, bad[i][1]);
  }
  static const char version[] = "{\"type\":\"t\",\"version\":01,\"data\":{}}";
  expect_bad_at(version, sizeof version - 1, (size_t)(strstr(version, "01") - version), "leading zero");
  static const char in_array[] = "{\"type\":\"t\",\"data\":{\"a\":[1,2,03]}}";
  expect_bad_at(in_array, sizeof in_array - 1, (size_t)(strstr(in_array, "03") - in_array), "leading zero");
  static const char *const good[] = {"0", "-0", "0.5", "-0.5e-3", "1E+2", "10", "1e5", "0e0", "-0.0", "123.456E-07",
                                     "9007199254740993"};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    char text[100];
    snprintf(text, sizeof text, "{\"type\":\"t\",\"data\":{\"n\":%s,\"m\":[%s]}}", good[i], good[i]);
    expect(text, ESR_ENVELOPE_OK, NULL);
  }
}

/* The string scan reads 8 bytes at a time: a fault or an escape at any position of a long string is found, at its
 * own offset, and plain bytes around it are kept. */
static void long_strings_checked_at_every_position(void **state) {
  static const unsigned char faults[] = {0x00, 0x01, 0x09, 0x1f, 0x80, 0xbf, 0xc0, 0xf5, 0xff};
  char plain[41];
  memset(plain, 'a', 40);
  plain[40] = '\0';
  for (size_t k = 0; k < 40; k++) {
    for (size_t i = 0; i < sizeof faults; i++) {
      char fault[41];
      memcpy(fault, plain, 40);
      fault[k] = (char)faults[i];
      char lead[41];
      memcpy(lead, plain, k);
      lead[k] = '\0';
      expect_bad_string(lead, fault + k, 40 - k, faults[i] < 0x20 ? "control character" : "UTF-8");
    }
    char inner[60], want[41];
    snprintf(inner, sizeof inner, "%.*s\\\"%.*s", (int)k, plain, (int)(39 - k), plain);
    memcpy(want, plain, 40);
    want[k] = '"';
    expect_string_ok(inner, want, 40);
    snprintf(inner, sizeof inner, "%.*s\xc3\xa9%.*s", (int)k, plain, (int)(38 - k), plain);
    if (k < 39) expect_string_ok(inner, inner, 40);
  }
}

/* A fault far inside a document is reported at its own offset, after numbers were paired with the tree. */
static void fault_after_numbers_and_nested_values(void **state) {
  static const char text[] = "{\"type\":\"t\",\"version\":2,\"data\":{\"a\":[1,{\"b\":2.5}],\"c\":\"ok\",\"d\":\"\x01\"}}";
  expect_bad_at(text, sizeof text - 1, (size_t)(strchr(text, '\x01') - text), "control character 0x01");
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
      cmocka_unit_test(escaped_nul_refused_not_cut),
      cmocka_unit_test(raw_control_characters_in_strings_refused),
      cmocka_unit_test(invalid_utf8_in_strings_refused),
      cmocka_unit_test(escapes_checked_with_their_offset),
      cmocka_unit_test(whitespace_is_only_space_tab_cr_lf),
      cmocka_unit_test(utf8_byte_order_mark_refused),
      cmocka_unit_test(numbers_follow_the_rfc_grammar),
      cmocka_unit_test(fault_after_numbers_and_nested_values),
      cmocka_unit_test(long_strings_checked_at_every_position),
      cmocka_unit_test(int53_accepts_integers_in_range),
      cmocka_unit_test(int53_rejects_out_of_range_and_fractions),
      cmocka_unit_test(int53_rejects_non_numbers),
      cmocka_unit_test(int53_rejects_2p53_plus_1_instead_of_rounding),
      cmocka_unit_test(number_at_end_of_unterminated_value),
      cmocka_unit_test(json_string_helper),
  };
  return cmocka_run_group_tests_name("envelope", tests, NULL, NULL);
}
