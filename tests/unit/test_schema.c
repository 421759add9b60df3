/* test_schema.c — esr/schema.h: the failure message (pointer and rule) of every keyword family, what is refused at
 * compile time and how it is named, Unicode code points, $ref (recursive, $id, anchors, cycles), the work limits,
 * schema sets, the ledger schemas of schemas/, concurrent use of one compiled schema, and `esr schema check`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <sys/wait.h>

#include "envelope.h"
#include "schema.h"
#include "unit_util.h"

static esr_schema *compile(const char *text, esr_error *err) {
  return esr_schema_compile_text(text, strlen(text), "test.json", err);
}

/* Validates `instance` against `schema` with `prefix`; expects `want` (NULL: valid) as the exact message. */
static void expect_p(const char *schema, const char *instance, const char *prefix, const char *want) {
  esr_error err = {0};
  esr_schema *s = compile(schema, &err);
  if (!s) fail_msg("%s: refused: %s", schema, err.msg);
  cJSON *doc = cJSON_Parse(instance);
  if (!doc) fail_msg("bad test instance %s", instance);
  esr_error verr = {0};
  esr_code rc = esr_schema_validate(s, doc, prefix, &verr);
  if (!want && rc != ESR_E_OK) fail_msg("%s against %s: expected valid, got %s", instance, schema, verr.msg);
  if (want) {
    if (rc != ESR_E_BADINPUT) fail_msg("%s against %s: expected \"%s\", got code %d", instance, schema, want, rc);
    if (strcmp(verr.msg, want) != 0)
      fail_msg("%s against %s:\n  expected \"%s\"\n  got      \"%s\"", instance, schema, want, verr.msg);
    /* the same verdict without an error buffer */
    assert_int_equal(esr_schema_validate(s, doc, prefix, NULL), ESR_E_BADINPUT);
  }
  cJSON_Delete(doc);
  esr_schema_free(s);
}

static void expect(const char *schema, const char *instance, const char *want) {
  expect_p(schema, instance, NULL, want);
}

/* Expects `schema` to be refused with ESR_E_CONFIG and a message holding each of the NULL-terminated mentions. */
static void refused(const char *schema, ...) {
  esr_error err = {0};
  esr_schema *s = compile(schema, &err);
  if (s) fail_msg("%s: expected a refusal", schema);
  assert_int_equal(err.code, ESR_E_CONFIG);
  assert_contains(err.msg, "test.json: ");
  assert_null(strchr(err.msg, '\n'));
  va_list ap;
  va_start(ap, schema);
  for (const char *m; (m = va_arg(ap, const char *));) assert_contains(err.msg, m);
  va_end(ap);
}

static void accepted(const char *schema) {
  esr_error err = {0};
  esr_schema *s = compile(schema, &err);
  if (!s) fail_msg("%s: refused: %s", schema, err.msg);
  esr_schema_free(s);
}

/* ---------------------------------------------------------------------------------------------------------------- */

static void type_messages(void **state) {
  expect("{\"type\":\"string\"}", "\"x\"", NULL);
  expect("{\"type\":\"string\"}", "5", ": must be a string");
  expect("{\"type\":\"object\"}", "[]", ": must be an object");
  expect("{\"type\":\"array\"}", "{}", ": must be an array");
  expect("{\"type\":\"boolean\"}", "0", ": must be a boolean");
  expect("{\"type\":\"null\"}", "false", ": must be null");
  expect("{\"type\":\"number\"}", "\"1\"", ": must be a number");
  expect("{\"type\":[\"string\",\"null\"]}", "5", ": must be a string or null");
  expect("{\"type\":[\"integer\",\"array\",\"object\"]}", "1.5", ": must be an object, an array or an integer");
  /* integer: a number without fractional part, whatever its spelling */
  expect("{\"type\":\"integer\"}", "1.0", NULL);
  expect("{\"type\":\"integer\"}", "1e3", NULL);
  expect("{\"type\":\"integer\"}", "-0", NULL);
  expect("{\"type\":\"integer\"}", "1.5", ": must be an integer");
  expect("{\"type\":\"number\"}", "1", NULL);
}

static void value_messages(void **state) {
  expect("{\"enum\":[\"USD\",\"EUR\"]}", "\"GBP\"", ": must be one of \"USD\", \"EUR\"");
  expect("{\"enum\":[\"USD\",\"EUR\"]}", "\"EUR\"", NULL);
  expect("{\"enum\":[1,{\"a\":[true,null]}]}", "{\"a\":[true,null]}", NULL);
  expect("{\"enum\":[false]}", "0", ": must be one of false");
  expect("{\"enum\":[]}", "0", ": is not allowed (\"enum\" is empty)");
  /* deep equality: numbers by value, members in any order */
  expect("{\"const\":{\"a\":1,\"b\":[1,2]}}", "{\"b\":[1.0,2e0],\"a\":1.0}", NULL);
  expect("{\"const\":{\"a\":1}}", "{\"a\":2}", ": must be equal to {\"a\":1}");
  expect("{\"const\":{\"a\":1}}", "{\"a\":1,\"b\":2}", ": must be equal to {\"a\":1}");
  expect("{\"const\":[1,2]}", "[2,1]", ": must be equal to [1,2]");
  expect("{\"const\":null}", "null", NULL);
}

static void number_messages(void **state) {
  expect("{\"minimum\":1}", "0", ": must be >= 1");
  expect("{\"minimum\":1}", "1", NULL);
  expect("{\"maximum\":10}", "11", ": must be <= 10");
  expect("{\"exclusiveMinimum\":0}", "0", ": must be > 0");
  expect("{\"exclusiveMaximum\":0.5}", "0.5", ": must be < 0.5");
  expect("{\"exclusiveMaximum\":0.5}", "0.49", NULL);
  expect("{\"minimum\":1}", "\"0\"", NULL); /* numeric keywords apply to numbers only */
  /* multipleOf on decimal literals behaves as written */
  expect("{\"multipleOf\":0.0001}", "0.0075", NULL);
  expect("{\"multipleOf\":0.0001}", "0.00751", ": must be a multiple of 0.0001");
  expect("{\"multipleOf\":0.01}", "19.99", NULL);
  expect("{\"multipleOf\":0.1}", "0.3", NULL);
  expect("{\"multipleOf\":1.5}", "4.5", NULL);
  expect("{\"multipleOf\":2}", "7", ": must be a multiple of 2");
  expect("{\"multipleOf\":3}", "9007199254740990", NULL);
  expect("{\"multipleOf\":3}", "9007199254740991", ": must be a multiple of 3");
  expect("{\"multipleOf\":0.123456789}", "1e308", ": must be a multiple of 0.123456789");
  expect("{\"multipleOf\":1e-9}", "1.0000000001", ": must be a multiple of 1e-09");
  expect("{\"maximum\":9007199254740992}", "9007199254740992", NULL);
}

/* A number esr_envelope_parse could not hold exactly is NaN: it fails every numeric keyword and "integer". */
static void inexact_numbers_fail(void **state) {
  const char *text = "{\"type\":\"t\",\"data\":{\"amount\":9007199254740993,\"other\":9007199254740993}}";
  esr_envelope env;
  char msg[200];
  assert_int_equal(esr_envelope_parse(text, strlen(text), &env, msg, sizeof msg), ESR_ENVELOPE_OK);
  esr_error err = {0};
  esr_schema *s = compile("{\"properties\":{\"amount\":{\"type\":\"integer\",\"maximum\":9007199254740992},"
                          "\"other\":{\"type\":\"number\"}}}",
                          &err);
  assert_non_null(s);
  assert_int_equal(esr_schema_validate(s, env.data, "/data", &err), ESR_E_BADINPUT);
  assert_contains(err.msg, "/data/amount: is not exactly representable");
  esr_schema_free(s);
  s = compile("{\"properties\":{\"other\":{\"maximum\":1e300}}}", &err);
  assert_int_equal(esr_schema_validate(s, env.data, "/data", &err), ESR_E_BADINPUT);
  assert_contains(err.msg, "/data/other: is not exactly representable");
  esr_schema_free(s);
  s = compile("{\"properties\":{\"other\":{\"type\":\"number\"}}}", &err); /* it is still a number */
  assert_int_equal(esr_schema_validate(s, env.data, "/data", &err), ESR_E_OK);
  esr_schema_free(s);
  esr_envelope_clear(&env);
}

static void string_messages_count_code_points(void **state) {
  expect("{\"minLength\":1}", "\"\"", ": must be at least 1 character long");
  expect("{\"minLength\":2}", "\"\xc3\xa9\"", ": must be at least 2 characters long"); /* é: 2 bytes, 1 code point */
  expect("{\"maxLength\":1}", "\"\xc3\xa9\"", NULL);
  expect("{\"maxLength\":1}", "\"\xf0\x9f\x98\x80\"", NULL); /* an emoji: 4 bytes, 1 code point */
  expect("{\"maxLength\":1}", "\"\\ud83d\\ude00\"", NULL);   /* the same, escaped as a surrogate pair */
  expect("{\"minLength\":2}", "\"\xf0\x9f\x98\x80\"", ": must be at least 2 characters long");
  expect("{\"maxLength\":2}", "\"abc\"", ": must be at most 2 characters long");
  expect("{\"maxLength\":3,\"minLength\":3}", "\"\xc3\xa9t\xc3\xa9\"", NULL);
}

static void pattern_is_an_unanchored_pcre2_search(void **state) {
  expect("{\"pattern\":\"^[A-Z]{3}$\"}", "\"EUR\"", NULL);
  expect("{\"pattern\":\"^[A-Z]{3}$\"}", "\"EURO\"", ": must match the pattern \"^[A-Z]{3}$\"");
  expect("{\"pattern\":\"^[A-Z]{3}$\"}", "\"EUR\\n\"", ": must match the pattern \"^[A-Z]{3}$\""); /* $ is the end */
  expect("{\"pattern\":\"b\"}", "\"abc\"", NULL);
  expect("{\"pattern\":\"^.$\"}", "\"\xc3\xa9\"", NULL);         /* UTF mode: . is one code point */
  expect("{\"pattern\":\"^\\\\u00e9$\"}", "\"\xc3\xa9\"", NULL); /* ECMA-262 \uXXXX */
  expect("{\"pattern\":\"^\\\\d+$\"}", "\"\xd9\xa3\"", ": must match the pattern \"^\\d+$\""); /* \d is ASCII */
  expect("{\"pattern\":\"^\\\\p{Lu}\"}", "\"\xc3\x89t\xc3\xa9\"", NULL);
  expect("{\"pattern\":\"x\"}", "5", NULL); /* applies to strings only */
  /* a long subject that nests deeper than the JIT stack is matched by the interpreter instead */
  char *longstr = malloc(20004);
  longstr[0] = '"';
  for (int i = 1; i <= 20000; i++) longstr[i] = i % 2 ? 'a' : 'b';
  strcpy(longstr + 20001, "\"");
  expect("{\"pattern\":\"^(a|b)*$\"}", longstr, NULL);
  free(longstr);
  /* invalid UTF-8 in the instance is matched safely, never an error */
  cJSON *bad = cJSON_CreateString("a\xff"
                                  "b");
  esr_error err = {0};
  esr_schema *s = compile("{\"pattern\":\"^a\"}", &err);
  assert_int_equal(esr_schema_validate(s, bad, NULL, &err), ESR_E_OK);
  esr_schema_free(s);
  cJSON_Delete(bad);
}

static void array_messages(void **state) {
  expect("{\"minItems\":2}", "[1]", ": must have at least 2 items");
  expect("{\"maxItems\":1}", "[1,2]", ": must have at most 1 item");
  expect("{\"items\":{\"type\":\"integer\"}}", "[1,\"x\"]", "/1: must be an integer");
  expect("{\"items\":[{\"type\":\"integer\"},{\"type\":\"string\"}]}", "[1,2]", "/1: must be a string");
  expect("{\"items\":[{\"type\":\"integer\"}]}", "[1,\"more\",null]", NULL);
  expect("{\"items\":[{\"type\":\"integer\"}],\"additionalItems\":false}", "[1,2]",
         "/1: is not allowed (\"additionalItems\": false)");
  expect("{\"items\":[{}],\"additionalItems\":{\"type\":\"string\"}}", "[1,\"a\",2]", "/2: must be a string");
  expect("{\"additionalItems\":false}", "[1,2]", NULL); /* without an items array it has no effect */
  expect("{\"items\":false}", "[1]", "/0: is not allowed (\"items\": false)");
  expect("{\"contains\":{\"const\":3}}", "[1,2]",
         ": must contain at least one item that matches the \"contains\" schema");
  expect("{\"contains\":{\"const\":3}}", "[1,3]", NULL);
  expect("{\"contains\":true}", "[]", ": must contain at least one item that matches the \"contains\" schema");
}

static void unique_items_small_and_large(void **state) {
  expect("{\"uniqueItems\":true}", "[1,2,1.0]", ": must not contain duplicate items (items 0 and 2 are equal)");
  expect("{\"uniqueItems\":true}", "[{\"a\":1,\"b\":2},{\"b\":2,\"a\":1}]",
         ": must not contain duplicate items (items 0 and 1 are equal)");
  expect("{\"uniqueItems\":true}", "[1,\"1\",true,[1],{\"1\":1},null]", NULL);
  expect("{\"uniqueItems\":false}", "[1,1]", NULL);
  /* more than 16 items take the hashing path: same verdicts, same first pair */
  char big[2000] = "[";
  for (int i = 0; i < 40; i++)
    snprintf(big + strlen(big), sizeof big - strlen(big), "%s[%d,{\"k\":%d}]", i ? "," : "", i, i);
  strcat(big, "]");
  expect("{\"uniqueItems\":true}", big, NULL);
  big[strlen(big) - 1] = '\0';
  strcat(big, ",[7,{\"k\":7.0}],[3,{\"k\":3}]]");
  expect("{\"uniqueItems\":true}", big, ": must not contain duplicate items (items 7 and 40 are equal)");
}

static void object_messages(void **state) {
  expect("{\"required\":[\"account\",\"owner\"]}", "{\"owner\":\"x\"}", ": must have property \"account\"");
  expect_p("{\"required\":[\"account\"]}", "{}", "/data", "/data: must have property \"account\"");
  expect("{\"properties\":{\"a\":{\"type\":\"string\"}}}", "{\"a\":1}", "/a: must be a string");
  expect("{\"properties\":{\"a\":{\"type\":\"string\"}}}", "{\"b\":1}", NULL);
  expect("{\"patternProperties\":{\"^x-\":{\"type\":\"integer\"}}}", "{\"x-a\":\"s\"}", "/x-a: must be an integer");
  expect("{\"properties\":{\"a\":true},\"additionalProperties\":false}", "{\"a\":1,\"b\":2}",
         "/b: is not allowed (\"additionalProperties\": false)");
  expect("{\"properties\":{\"a\":true},\"patternProperties\":{\"^b\":true},\"additionalProperties\":false}",
         "{\"a\":1,\"bb\":2}", NULL);
  expect("{\"additionalProperties\":{\"type\":\"integer\"}}", "{\"n\":\"x\"}", "/n: must be an integer");
  expect("{\"propertyNames\":{\"maxLength\":3}}", "{\"abcd\":1}",
         "/abcd: property name must be at most 3 characters long");
  expect("{\"propertyNames\":{\"pattern\":\"^[a-z]+$\"}}", "{\"ok\":1,\"Bad\":2}",
         "/Bad: property name must match the pattern \"^[a-z]+$\"");
  expect("{\"propertyNames\":false}", "{}", NULL);
  expect("{\"propertyNames\":false}", "{\"a\":1}", "/a: property name is not allowed (\"propertyNames\": false)");
  expect("{\"minProperties\":1}", "{}", ": must have at least 1 property");
  expect("{\"maxProperties\":1}", "{\"a\":1,\"b\":2}", ": must have at most 1 property");
  expect("{\"dependencies\":{\"a\":[\"b\"]}}", "{\"a\":1}",
         ": must have property \"b\" when property \"a\" is present");
  expect("{\"dependencies\":{\"a\":[\"b\"]}}", "{\"c\":1}", NULL);
  expect("{\"dependencies\":{\"a\":{\"required\":[\"c\"]}}}", "{\"a\":1}", ": must have property \"c\"");
  /* pointers escape ~ and / */
  expect("{\"properties\":{\"a/b\":{\"properties\":{\"c~d\":{\"type\":\"string\"}}}}}", "{\"a/b\":{\"c~d\":1}}",
         "/a~1b/c~0d: must be a string");
  expect_p("{\"properties\":{\"amount\":{\"minimum\":1}}}", "{\"amount\":0}", "/data", "/data/amount: must be >= 1");
  expect("{\"items\":{\"properties\":{\"v\":{\"type\":\"string\"}}}}", "[{},{\"v\":\"x\"},{\"v\":3}]",
         "/2/v: must be a string");
}

static void logic_messages(void **state) {
  expect("{\"allOf\":[{\"type\":\"object\"},{\"required\":[\"x\"]}]}", "{}", ": must have property \"x\"");
  expect("{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"}]}", "1",
         ": must match at least one schema in \"anyOf\"");
  expect("{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"}]}", "null", NULL);
  expect("{\"oneOf\":[{\"type\":\"integer\"},{\"minimum\":0}]}", "1",
         ": must match exactly one schema in \"oneOf\" (schemas 0 and 1 match)");
  expect("{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"null\"}]}", "1",
         ": must match exactly one schema in \"oneOf\" (none matches)");
  expect("{\"oneOf\":[{\"type\":\"integer\"},{\"minimum\":0}]}", "-1", NULL);
  expect("{\"not\":{\"type\":\"null\"}}", "null", ": must not match the schema in \"not\"");
  const char *cond = "{\"if\":{\"properties\":{\"k\":{\"const\":\"a\"}}},\"then\":{\"required\":[\"x\"]},"
                     "\"else\":{\"required\":[\"y\"]}}";
  expect(cond, "{\"k\":\"a\"}", ": must have property \"x\"");
  expect(cond, "{\"k\":\"b\"}", ": must have property \"y\"");
  expect(cond, "{\"k\":\"a\",\"x\":1}", NULL);
  expect("{\"then\":false}", "1", NULL); /* then/else without if have no effect */
  expect("false", "1", ": is not allowed (the schema is false)");
  expect("true", "{\"anything\":[1]}", NULL);
  expect("{}", "null", NULL);
  expect("{\"properties\":{\"a\":false}}", "{\"a\":1}", "/a: is not allowed (false schema in \"properties\")");
}

static void annotations_are_ignored(void **state) {
  expect("{\"$schema\":\"http://json-schema.org/draft-07/schema#\",\"$comment\":\"c\",\"title\":\"t\","
         "\"description\":\"d\",\"default\":5,\"examples\":[1],\"readOnly\":true,\"writeOnly\":false,"
         "\"contentMediaType\":\"application/json\",\"contentEncoding\":\"base64\",\"type\":\"string\"}",
         "\"not base64!\"", NULL);
}

/* ---------------------------------------------------------------------------------------------------------------- */

static void refusals_name_origin_keyword_and_location(void **state) {
  refused("{\"properties\":{\"time\":{\"type\":\"string\",\"format\":\"date-time\"}}}", "\"format\" is not supported",
          "at /properties/time/format", NULL);
  refused("{\"properties\":{\"a\":{\"$ref\":\"http://example.com/a.json\"}}}",
          "remote $ref \"http://example.com/a.json\"", "at /properties/a/$ref", NULL);
  refused("{\"$ref\":\"other.json#/definitions/x\"}", "remote $ref \"other.json#/definitions/x\"", "at /$ref", NULL);
  refused("{\"properties\":{\"amount\":{\"minimun\":1}}}", "unknown keyword \"minimun\"",
          "at /properties/amount/minimun", NULL);
  refused("{\"items\":[{\"tpye\":\"string\"}]}", "unknown keyword \"tpye\"", "at /items/0/tpye", NULL);
  refused("{\"$schema\":\"http://json-schema.org/draft-04/schema#\"}",
          "$schema \"http://json-schema.org/draft-04/schema#\"", "draft-07", "at /$schema", NULL);
  refused("{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\"}", "is not supported", NULL);
  refused("{\"exclusiveMinimum\":true,\"minimum\":0}", "the boolean form is draft-04", "at /exclusiveMinimum", NULL);
  refused("{\"pattern\":\"(\"}", "is not a valid regular expression", "at /pattern", NULL);
  refused("{\"patternProperties\":{\"[\":true}}", "is not a valid regular expression", "at /patternProperties", NULL);
  refused("{\"type\":\"text\"}", "unknown type \"text\"", "at /type", NULL);
  refused("{\"minLength\":-1}", "non-negative integer", "at /minLength", NULL);
  refused("{\"minLength\":1.5}", "non-negative integer", NULL);
  refused("{\"multipleOf\":0}", "greater than 0", NULL);
  refused("{\"required\":[1]}", "array of strings", "at /required", NULL);
  refused("{\"properties\":{\"a\":5}}", "a schema must be an object or a boolean, not a number", "at /properties/a",
          NULL);
  refused("{\"allOf\":[]}", "non-empty array", NULL);
  refused("[]", "a schema must be an object or a boolean, not an array", "at the root", NULL);
  refused("{\"minimum\":1,\"minimum\":2}", "duplicate keyword \"minimum\"", NULL);
  refused("{\"$ref\":\"#/definitions/missing\"}", "no such location", "at /$ref", NULL);
  refused("{\"$ref\":\"#nowhere\"}", "no subschema declares the $id \"#nowhere\"", NULL);
  refused("{\"$ref\":5}", "\"$ref\" must be a string", NULL);
  /* in-place cycles would loop forever */
  refused("{\"allOf\":[{\"$ref\":\"#\"}]}", "cycle that never descends into the instance", NULL);
  refused("{\"definitions\":{\"a\":{\"$ref\":\"#/definitions/b\"},\"b\":{\"not\":{\"$ref\":\"#/definitions/a\"}}}}",
          "cycle", "/definitions/a", "/definitions/b", NULL);
  /* typos are caught anywhere, also in definitions nobody uses */
  refused("{\"definitions\":{\"unused\":{\"maxLenght\":3}}}", "unknown keyword \"maxLenght\"", NULL);
  /* the origin prefixes the message; a file name as origin */
  esr_error err = {0};
  const char *text = "{\"format\":\"email\"}";
  assert_null(esr_schema_compile_text(text, strlen(text), "schemas/user.created.v1.json", &err));
  assert_int_equal(err.code, ESR_E_CONFIG);
  assert_true(strncmp(err.msg, "schemas/user.created.v1.json: ", 30) == 0);
  assert_int_equal(esr_code_exit_status(err.code), 2);
  /* not JSON */
  assert_null(esr_schema_compile_text("{\"type\":", 8, "x.json", &err));
  assert_int_equal(err.code, ESR_E_CONFIG);
  assert_contains(err.msg, "x.json: not valid JSON");
  assert_null(esr_schema_compile_text("{} {}", 5, "x.json", &err));
  assert_contains(err.msg, "trailing data");
}

static void keyword_names_inside_properties_are_property_names(void **state) {
  accepted("{\"properties\":{\"minimun\":{\"type\":\"integer\"},\"format\":{\"type\":\"string\"},\"$ref\":{}}}");
  expect("{\"properties\":{\"$ref\":{\"type\":\"string\"}}}", "{\"$ref\":1}", "/$ref: must be a string");
  accepted("{\"required\":[\"format\",\"minimun\"],\"dependencies\":{\"format\":[\"pattern\"]}}");
  accepted("{\"definitions\":{\"format\":{\"type\":\"string\"}},\"enum\":[{\"format\":1,\"$ref\":\"http://x\"}]}");
  accepted("{\"const\":{\"minimun\":1}}");
}

static void siblings_of_ref_are_ignored(void **state) {
  const char *s = "{\"definitions\":{\"r\":{\"type\":\"array\"}},"
                  "\"properties\":{\"foo\":{\"$ref\":\"#/definitions/r\",\"maxItems\":1,\"format\":\"x\"}}}";
  expect(s, "{\"foo\":[1,2,3]}", NULL);
  expect(s, "{\"foo\":1}", "/foo: must be an array");
}

static void refs_pointers_escapes_and_anchors(void **state) {
  expect("{\"definitions\":{\"a\":{\"type\":\"integer\"},\"b\":{\"$ref\":\"#/definitions/a\"}},"
         "\"$ref\":\"#/definitions/b\"}",
         "\"x\"", ": must be an integer");
  expect("{\"tilde~field\":{\"type\":\"integer\"},\"slash/field\":{\"type\":\"integer\"},"
         "\"percent%field\":{\"type\":\"integer\"},\"properties\":{\"t\":{\"$ref\":\"#/tilde~0field\"},"
         "\"s\":{\"$ref\":\"#/slash~1field\"},\"p\":{\"$ref\":\"#/percent%25field\"}}}",
         "{\"t\":1,\"s\":2,\"p\":\"x\"}", "/p: must be an integer");
  expect("{\"items\":[{\"type\":\"integer\"},{\"$ref\":\"#/items/0\"}]}", "[1,\"x\"]", "/1: must be an integer");
  /* $id: base URIs and "#name" anchors */
  const char *ids = "{\"$id\":\"http://example.com/root.json\","
                    "\"definitions\":{\"A\":{\"$id\":\"#foo\",\"type\":\"integer\"},"
                    "\"B\":{\"$id\":\"other.json\",\"definitions\":{\"X\":{\"$id\":\"#bar\",\"type\":\"string\"}}}},"
                    "\"properties\":{\"a\":{\"$ref\":\"#foo\"},\"b\":{\"$ref\":\"other.json#bar\"},"
                    "\"c\":{\"$ref\":\"http://example.com/root.json#/definitions/A\"}}}";
  expect(ids, "{\"a\":1,\"b\":\"s\",\"c\":2}", NULL);
  expect(ids, "{\"b\":1}", "/b: must be a string");
  expect(ids, "{\"c\":\"2\"}", "/c: must be an integer");
  refused("{\"$id\":\"http://example.com/root.json\",\"$ref\":\"http://example.com/other.json\"}", "remote $ref", NULL);
}

/* A tree whose nodes refer to the root: recursion follows the instance, at compile time nothing loops. */
static void recursive_ref(void **state) {
  const char *tree = "{\"type\":\"object\",\"required\":[\"value\"],\"properties\":{\"value\":{\"type\":\"integer\"},"
                     "\"children\":{\"type\":\"array\",\"items\":{\"$ref\":\"#\"}}},\"additionalProperties\":false}";
  expect(tree, "{\"value\":1,\"children\":[{\"value\":2},{\"value\":3,\"children\":[{\"value\":4,\"children\":[]}]}]}",
         NULL);
  expect(tree, "{\"value\":1,\"children\":[{\"value\":2},{\"value\":3,\"children\":[{\"value\":\"4\"}]}]}",
         "/children/1/children/0/value: must be an integer");
  expect(tree, "{\"value\":1,\"children\":[{\"value\":2,\"extra\":0}]}",
         "/children/0/extra: is not allowed (\"additionalProperties\": false)");
  /* mutual recursion through definitions */
  const char *mutual = "{\"$ref\":\"#/definitions/node\",\"definitions\":{\"node\":{\"type\":\"object\","
                       "\"properties\":{\"next\":{\"$ref\":\"#/definitions/link\"}}},"
                       "\"link\":{\"anyOf\":[{\"type\":\"null\"},{\"$ref\":\"#/definitions/node\"}]}}}";
  expect(mutual, "{\"next\":{\"next\":{\"next\":null}}}", NULL);
  /* anyOf reports where it fails as a whole: the branches' own failures are not reported */
  expect(mutual, "{\"next\":{\"next\":{\"next\":5}}}", "/next: must match at least one schema in \"anyOf\"");
}

/* ---------------------------------------------------------------------------------------------------------------- */

static char *nested_arrays(int depth) {
  char *t = malloc((size_t)depth * 2 + 1);
  memset(t, '[', (size_t)depth);
  memset(t + depth, ']', (size_t)depth);
  t[depth * 2] = '\0';
  return t;
}

static void limits_fail_closed(void **state) {
  esr_error err = {0};
  /* depth: a deep instance fails instead of exhausting the stack */
  esr_schema *s = compile("{\"items\":{\"$ref\":\"#\"}}", &err);
  char *text = nested_arrays(900);
  cJSON *deep = cJSON_Parse(text);
  assert_non_null(deep);
  assert_int_equal(esr_schema_validate(s, deep, NULL, &err), ESR_E_BADINPUT);
  assert_contains(err.msg, "is nested too deeply to validate");
  /* ... and the limit is not turned into success by "not" */
  esr_schema_free(s);
  s = compile("{\"not\":{\"items\":{\"$ref\":\"#/not\"}}}", &err);
  assert_non_null(s);
  assert_int_equal(esr_schema_validate(s, deep, NULL, &err), ESR_E_BADINPUT);
  assert_contains(err.msg, "is nested too deeply to validate");
  cJSON_Delete(deep);
  free(text);
  esr_schema_free(s);

  /* work: 2^40 evaluations are cut at ESR_SCHEMA_MAX_STEPS */
  char big[8000] = "{\"$ref\":\"#/definitions/d0\",\"definitions\":{";
  for (int i = 0; i < 40; i++)
    snprintf(big + strlen(big), sizeof big - strlen(big),
             "\"d%d\":{\"anyOf\":[{\"$ref\":\"#/definitions/d%d\"},{\"$ref\":\"#/definitions/d%d\"}]},", i, i + 1,
             i + 1);
  strcat(big, "\"d40\":{\"type\":\"string\"}}}");
  s = compile(big, &err);
  assert_non_null(s);
  cJSON *five = cJSON_CreateNumber(5);
  assert_int_equal(esr_schema_validate(s, five, NULL, &err), ESR_E_BADINPUT);
  assert_contains(err.msg, "ESR_SCHEMA_MAX_STEPS");
  cJSON *str = cJSON_CreateString("x");
  assert_int_equal(esr_schema_validate(s, str, NULL, &err), ESR_E_OK); /* the first branch succeeds at once */
  esr_schema_free(s);

  /* catastrophic backtracking: the match limit fails the value, even under "not" */
  s = compile("{\"not\":{\"pattern\":\"^(a|a)*$\"}}", &err);
  cJSON *evil = cJSON_CreateString("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab");
  assert_int_equal(esr_schema_validate(s, evil, NULL, &err), ESR_E_BADINPUT);
  assert_contains(err.msg, "cannot be matched against the pattern");
  assert_int_equal(esr_schema_validate(s, str, NULL, &err), ESR_E_OK);
  esr_schema_free(s);
  cJSON_Delete(evil);
  cJSON_Delete(five);
  cJSON_Delete(str);

  /* schema nesting */
  char *nest = malloc(ESR_SCHEMA_MAX_NESTING * 10 + 100);
  strcpy(nest, "");
  for (int i = 0; i < ESR_SCHEMA_MAX_NESTING + 5; i++) strcat(nest, "{\"not\":");
  strcat(nest, "true");
  for (int i = 0; i < ESR_SCHEMA_MAX_NESTING + 5; i++) strcat(nest, "}");
  refused(nest, "nested deeper than", NULL);
  free(nest);
}

static void messages_are_one_line(void **state) {
  expect("{\"additionalProperties\":false}", "{\"a\\nb\":1}", "/a?b: is not allowed (\"additionalProperties\": false)");
  refused("{\"pattern\":\"(\\n\"}", "is not a valid regular expression", NULL);
}

/* The compiled schema keeps nothing of its document; NULLs are handled. */
static void ownership_and_nulls(void **state) {
  esr_error err = {0};
  cJSON *doc = cJSON_Parse("{\"properties\":{\"a\":{\"enum\":[\"x\",\"y\"]}},\"required\":[\"a\"]}");
  esr_schema *s = esr_schema_compile(doc, "mem", &err);
  cJSON_Delete(doc);
  assert_non_null(s);
  assert_string_equal(esr_schema_origin(s), "mem");
  cJSON *inst = cJSON_Parse("{\"a\":\"z\"}");
  assert_int_equal(esr_schema_validate(s, inst, NULL, &err), ESR_E_BADINPUT);
  assert_string_equal(err.msg, "/a: must be one of \"x\", \"y\"");
  assert_int_equal(esr_schema_validate(s, NULL, NULL, &err), ESR_E_STATE);
  assert_int_equal(esr_schema_validate(NULL, inst, NULL, &err), ESR_E_STATE);
  cJSON_Delete(inst);
  esr_schema_free(s);
  esr_schema_free(NULL);
  assert_null(esr_schema_compile(NULL, "x", &err));
  assert_null(esr_schema_compile_text("", 0, "x", NULL));
  assert_int_equal(esr_schema_load("/nonexistent/x.v1.json", &s, &err), ESR_E_CONFIG);
  assert_null(s);
  assert_int_equal(err.code, ESR_E_CONFIG);
  assert_contains(err.msg, "/nonexistent/x.v1.json: cannot open the schema");
}

/* ---------------------------------------------------------------------------------------------------------------- */

static void write_in(const char *dir, const char *name, const char *text) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  assert_int_equal(tu_write_text(path, text), 0);
}

static void schema_set_load_and_find(void **state) {
  char *dir = tu_mkdtemp();
  assert_non_null(dir);
  esr_error err = {0};
  esr_schema_set *set;
  assert_int_equal(esr_schema_set_load(dir, &set, &err), ESR_E_OK); /* empty is fine */
  assert_non_null(set);
  assert_int_equal(esr_schema_set_count(set), 0);
  assert_null(esr_schema_set_find(set, "a", 1));
  esr_schema_set_free(set);

  write_in(dir, "order.placed.v1.json", "{\"required\":[\"id\"]}");
  write_in(dir, "order.placed.v2.json", "{\"required\":[\"id\",\"total\"]}");
  write_in(dir, "order.placed.v10.json", "{\"required\":[\"id\",\"total\",\"lines\"]}");
  write_in(dir, "a.v1.json", "true");
  write_in(dir, "README.md", "not a schema");
  write_in(dir, ".hidden.json", "not JSON, but hidden");
  if (esr_schema_set_load(dir, &set, &err) != ESR_E_OK) fail_msg("%s", err.msg);
  assert_int_equal(esr_schema_set_count(set), 4);
  const esr_schema *s = esr_schema_set_find(set, "order.placed", 2);
  assert_non_null(s);
  assert_contains(esr_schema_origin(s), "order.placed.v2.json");
  assert_non_null(esr_schema_set_find(set, "order.placed", 10));
  assert_non_null(esr_schema_set_find(set, "a", 1));
  assert_null(esr_schema_set_find(set, "order.placed", 3));
  assert_null(esr_schema_set_find(set, "order", 1));
  assert_null(esr_schema_set_find(set, NULL, 1));
  assert_int_equal(esr_schema_set_latest(set, "order.placed"), 10);
  assert_int_equal(esr_schema_set_latest(set, "nothing"), 0);
  const char *type;
  int version;
  assert_non_null(esr_schema_set_at(set, 0, &type, &version));
  assert_string_equal(type, "a");
  assert_non_null(esr_schema_set_at(set, 3, &type, &version)); /* (type, version) order: 10 after 2 */
  assert_string_equal(type, "order.placed");
  assert_int_equal(version, 10);
  assert_null(esr_schema_set_at(set, 4, NULL, NULL));
  cJSON *inst = cJSON_Parse("{\"id\":1}");
  assert_int_equal(esr_schema_validate(s, inst, "/data", &err), ESR_E_BADINPUT);
  assert_string_equal(err.msg, "/data: must have property \"total\"");
  cJSON_Delete(inst);
  esr_schema_set_free(set);
  esr_schema_set_free(NULL);

  /* one bad file refuses the whole set, naming it */
  write_in(dir, "order.shipped.v1.json", "{\"properties\":{\"at\":{\"format\":\"date-time\"}}}");
  assert_int_equal(esr_schema_set_load(dir, &set, &err), ESR_E_CONFIG);
  assert_null(set);
  assert_int_equal(err.code, ESR_E_CONFIG);
  assert_contains(err.msg, "order.shipped.v1.json: \"format\" is not supported");
  char path[4200];
  snprintf(path, sizeof path, "%s/order.shipped.v1.json", dir);
  remove(path);
  const char *bad_names[] = {"order.v0.json", "order.v01.json", "order.json",
                             "v1.json",       "order.vx.json",  "order.v99999999999.json"};
  for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
    write_in(dir, bad_names[i], "true");
    assert_int_equal(esr_schema_set_load(dir, &set, &err), ESR_E_CONFIG);
    assert_null(set);
    assert_int_equal(err.code, ESR_E_CONFIG);
    assert_contains(err.msg, bad_names[i]);
    assert_contains(err.msg, "must be named <type>.v<version>.json");
    snprintf(path, sizeof path, "%s/%s", dir, bad_names[i]);
    remove(path);
  }
  write_in(dir, "broken.v1.json", "{\"type\":");
  assert_int_equal(esr_schema_set_load(dir, &set, &err), ESR_E_CONFIG);
  assert_null(set);
  assert_contains(err.msg, "broken.v1.json: not valid JSON");
  tu_rmrf(dir);
  free(dir);
  assert_int_equal(esr_schema_set_load("/nonexistent-esr-dir", &set, &err), ESR_E_CONFIG);
  assert_null(set);
  assert_int_equal(err.code, ESR_E_CONFIG);
  assert_contains(err.msg, "/nonexistent-esr-dir");
}

/* The schemas of the repository: they load, and they say what the ledger handler expects. */
static void ledger_schemas(void **state) {
  esr_error err = {0};
  esr_schema_set *set;
  if (esr_schema_set_load(ESR_SOURCE_DIR "/schemas", &set, &err) != ESR_E_OK) fail_msg("%s", err.msg);
  assert_int_equal(esr_schema_set_count(set), 11); /* the ledger's 4, the orders' 3 and the inventory's 4 */
  assert_int_equal(esr_schema_set_latest(set, "account.deposited"), 2);
  static const struct {
    const char *type;
    int version;
    const char *data, *want;
  } cases[] = {
      {"account.opened", 1, "{\"account\":\"a1\",\"owner\":\"Alice\"}", NULL},
      {"account.opened", 1, "{\"account\":\"a1\"}", "/data: must have property \"owner\""},
      {"account.opened", 1, "{\"account\":\"a1\",\"owner\":\"\"}", "/data/owner: must be at least 1 character long"},
      {"account.opened", 1, "{\"account\":\"a1\",\"owner\":\"A\",\"x\":1}",
       "/data/x: is not allowed (\"additionalProperties\": false)"},
      {"account.opened", 1, "{\"account\":7,\"owner\":\"A\"}", "/data/account: must be a string"},
      {"account.deposited", 1, "{\"account\":\"a1\",\"amount\":2500}", NULL},
      {"account.deposited", 1, "{\"account\":\"a1\",\"amount\":9007199254740992}", NULL},
      {"account.deposited", 1, "{\"account\":\"a1\",\"amount\":0}", "/data/amount: must be >= 1"},
      {"account.deposited", 1, "{\"account\":\"a1\",\"amount\":2.5}", "/data/amount: must be an integer"},
      {"account.deposited", 1, "{\"account\":\"a1\",\"amount\":\"5\"}", "/data/amount: must be an integer"},
      {"account.deposited", 1, "{\"account\":\"a1\",\"amount\":1e16}", "/data/amount: must be <= 9007199254740992"},
      {"account.withdrawn", 1, "{\"account\":\"a1\",\"amount\":1}", NULL},
      {"account.withdrawn", 1, "{\"amount\":1}", "/data: must have property \"account\""},
      {"account.deposited", 2, "{\"account\":\"a1\",\"amount\":5,\"currency\":\"EUR\"}", NULL},
      {"account.deposited", 2, "{\"account\":\"a1\",\"amount\":5}", "/data: must have property \"currency\""},
      {"account.deposited", 2, "{\"account\":\"a1\",\"amount\":5,\"currency\":\"eur\"}",
       "/data/currency: must match the pattern \"^[A-Z]{3}$\""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const esr_schema *s = esr_schema_set_find(set, cases[i].type, cases[i].version);
    assert_non_null(s);
    cJSON *data = cJSON_Parse(cases[i].data);
    esr_code rc = esr_schema_validate(s, data, "/data", &err);
    if (!cases[i].want && rc != ESR_E_OK) fail_msg("%s: %s", cases[i].data, err.msg);
    if (cases[i].want && (rc != ESR_E_BADINPUT || strcmp(err.msg, cases[i].want) != 0))
      fail_msg("%s: expected \"%s\", got \"%s\"", cases[i].data, cases[i].want, rc ? err.msg : "valid");
    cJSON_Delete(data);
  }
  esr_schema_set_free(set);
}

/* ---------------------------------------------------------------------------------------------------------------- */

typedef struct worker_arg {
  const esr_schema *s;
  int mismatches;
} worker_arg;

static void *validate_loop(void *p) {
  worker_arg *a = p;
  cJSON *good = cJSON_Parse("{\"account\":\"a1\",\"amount\":5,\"currency\":\"EUR\",\"tags\":[\"x\",\"y\"]}");
  cJSON *bad = cJSON_Parse("{\"account\":\"a1\",\"amount\":5,\"currency\":\"EURO\",\"tags\":[\"x\"]}");
  for (int i = 0; i < 3000; i++) {
    esr_error err = {0};
    if (esr_schema_validate(a->s, good, "/data", &err) != ESR_E_OK) a->mismatches++;
    if (esr_schema_validate(a->s, bad, "/data", &err) != ESR_E_BADINPUT ||
        strcmp(err.msg, "/data/currency: must match the pattern \"^[A-Z]{3}$\"") != 0)
      a->mismatches++;
  }
  cJSON_Delete(good);
  cJSON_Delete(bad);
  return NULL;
}

/* One compiled schema shared by threads: validation writes nothing in it. */
static void shared_across_threads(void **state) {
  esr_error err = {0};
  esr_schema *s = compile("{\"properties\":{\"currency\":{\"pattern\":\"^[A-Z]{3}$\"},"
                          "\"tags\":{\"uniqueItems\":true,\"items\":{\"enum\":[\"x\",\"y\"]}}},"
                          "\"patternProperties\":{\"^a\":{\"minLength\":1}},\"required\":[\"amount\"]}",
                          &err);
  assert_non_null(s);
  pthread_t t[4];
  worker_arg args[4] = {{s, 0}, {s, 0}, {s, 0}, {s, 0}};
  for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&t[i], NULL, validate_loop, &args[i]), 0);
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(args[i].mismatches, 0);
  }
  esr_schema_free(s);
}

/* ---------------------------------------------------------------------------------------------------------------- */

typedef struct run_result {
  int status;
  char *out, *err;
} run_result;

/* Runs `esr schema ARGS` through the shell with `input` on standard input. */
static run_result run_cli(const char *dir, const char *args, const char *input) {
  char in[4200], out[4200], errp[4200], cmd[16000];
  snprintf(in, sizeof in, "%s/stdin", dir);
  snprintf(out, sizeof out, "%s/stdout", dir);
  snprintf(errp, sizeof errp, "%s/stderr", dir);
  assert_int_equal(tu_write_text(in, input ? input : ""), 0);
  snprintf(cmd, sizeof cmd, "cd '%s' && '%s' schema %s <'%s' >'%s' 2>'%s'", dir, ESR_BIN, args, in, out, errp);
  int st = system(cmd);
  run_result r = {WIFEXITED(st) ? WEXITSTATUS(st) : 128, tu_read_file(out, NULL), tu_read_file(errp, NULL)};
  return r;
}

static void run_free(run_result *r) {
  free(r->out);
  free(r->err);
}

static void cli_schema_check(void **state) {
  char *dir = tu_mkdtemp();
  write_in(dir, "dep.json",
           "{\"properties\":{\"amount\":{\"type\":\"integer\",\"minimum\":1}},\"required\":[\"amount\"]}");
  write_in(dir, "ok.json", "{\"amount\":5}");
  write_in(dir, "low.json", "{\"amount\":0}\n");
  write_in(dir, "bad.json", "{\"minimun\":1}");

  run_result r = run_cli(dir, "check dep.json ok.json", NULL);
  assert_int_equal(r.status, 0);
  assert_string_equal(r.out, "ok.json: valid\n");
  run_free(&r);

  r = run_cli(dir, "check dep.json ok.json low.json", NULL);
  assert_int_equal(r.status, 1);
  assert_string_equal(r.out, "ok.json: valid\nlow.json: invalid: /amount: must be >= 1\n");
  run_free(&r);

  r = run_cli(dir, "check dep.json -", "{\"amount\":3}");
  assert_int_equal(r.status, 0);
  assert_string_equal(r.out, "-: valid\n");
  run_free(&r);

  /* several documents on standard input, one per line; numbers read as the worker reads them */
  r = run_cli(dir, "check dep.json", "{\"amount\":3}\n{}\n\n{\"amount\":9007199254740993}\n{\"amount\":1.0}\n");
  assert_int_equal(r.status, 1);
  assert_string_equal(r.out, "-:1: valid\n-:2: invalid: : must have property \"amount\"\n"
                             "-:4: invalid: /amount: is not exactly representable (an integral number literal beyond "
                             "2^53 that a double cannot hold)\n-:5: valid\n");
  run_free(&r);

  r = run_cli(dir, "check dep.json -", "{\"amount\":");
  assert_int_equal(r.status, 1);
  assert_contains(r.out, "-: invalid: not valid JSON");
  run_free(&r);

  r = run_cli(dir, "check bad.json ok.json", NULL);
  assert_int_equal(r.status, 2);
  assert_string_equal(r.out, "");
  assert_contains(r.err, "bad.json: unknown keyword \"minimun\"");
  assert_int_equal(strchr(r.err, '\n') - r.err + 1, (long)strlen(r.err)); /* one line */
  run_free(&r);

  r = run_cli(dir, "check dep.json missing.json", NULL);
  assert_int_equal(r.status, 2);
  assert_contains(r.err, "missing.json");
  run_free(&r);

  r = run_cli(dir, "check", NULL);
  assert_int_equal(r.status, 2);
  run_free(&r);
  r = run_cli(dir, "frobnicate", NULL);
  assert_int_equal(r.status, 2);
  assert_contains(r.err, "unknown subcommand");
  run_free(&r);
  r = run_cli(dir, "--help", NULL);
  assert_int_equal(r.status, 0);
  assert_contains(r.out, "usage: esr schema check");
  run_free(&r);
  r = run_cli(dir, "check --bogus dep.json", NULL);
  assert_int_equal(r.status, 2);
  run_free(&r);
  tu_rmrf(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(type_messages),
      cmocka_unit_test(value_messages),
      cmocka_unit_test(number_messages),
      cmocka_unit_test(inexact_numbers_fail),
      cmocka_unit_test(string_messages_count_code_points),
      cmocka_unit_test(pattern_is_an_unanchored_pcre2_search),
      cmocka_unit_test(array_messages),
      cmocka_unit_test(unique_items_small_and_large),
      cmocka_unit_test(object_messages),
      cmocka_unit_test(logic_messages),
      cmocka_unit_test(annotations_are_ignored),
      cmocka_unit_test(refusals_name_origin_keyword_and_location),
      cmocka_unit_test(keyword_names_inside_properties_are_property_names),
      cmocka_unit_test(siblings_of_ref_are_ignored),
      cmocka_unit_test(refs_pointers_escapes_and_anchors),
      cmocka_unit_test(recursive_ref),
      cmocka_unit_test(limits_fail_closed),
      cmocka_unit_test(messages_are_one_line),
      cmocka_unit_test(ownership_and_nulls),
      cmocka_unit_test(schema_set_load_and_find),
      cmocka_unit_test(ledger_schemas),
      cmocka_unit_test(shared_across_threads),
      cmocka_unit_test(cli_schema_check),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
