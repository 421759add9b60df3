/* fuzz_schema.c — libFuzzer harness for esr/schema.h. The input's first line is a schema, the rest one or more JSON
 * documents. The schema is compiled when it parses; each document (at most 8) is validated twice, with and without an
 * error buffer. Never a crash, a leak, a hang or a blown stack (the validator bounds depth and work), and every verdict
 * is deterministic, coded ESR_E_OK or ESR_E_BADINPUT, with a one-line "/data<pointer>: <rule>" message. Refusals are
 * ESR_E_CONFIG with a one-line message naming the origin. Run by scripts/fuzz.sh. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"

#define CHECK(cond)                                                                                                    \
  do {                                                                                                                 \
    if (!(cond)) __builtin_trap();                                                                                     \
  } while (0)

static int one_line(const char *s) { return strchr(s, '\n') == NULL && strchr(s, '\r') == NULL; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *text = (const char *)data;
  const char *nl = memchr(text, '\n', size);
  size_t schema_len = nl ? (size_t)(nl - text) : size;
  esr_error err = {0};
  esr_schema *s = esr_schema_compile_text(text, schema_len, "fuzz.json", &err);
  if (!s) {
    CHECK(err.code == ESR_E_CONFIG || err.code == ESR_E_NOMEM);
    CHECK(strncmp(err.msg, "fuzz.json: ", 11) == 0 && one_line(err.msg));
    return 0;
  }
  if (!nl) {
    esr_schema_free(s);
    return 0;
  }
  const char *p = nl + 1, *end = text + size;
  for (int docs = 0; docs < 8 && p < end; docs++) {
    const char *doc_end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &doc_end, 0);
    if (!doc) break;
    esr_error e1 = {0}, e2 = {0};
    esr_code r1 = esr_schema_validate(s, doc, "/data", &e1);
    esr_code r2 = esr_schema_validate(s, doc, "/data", &e2);
    esr_code r3 = esr_schema_validate(s, doc, NULL, NULL);
    CHECK(r1 == ESR_E_OK || r1 == ESR_E_BADINPUT || r1 == ESR_E_NOMEM);
    CHECK(r1 == r2 && r1 == r3);
    if (r1 != ESR_E_OK) {
      CHECK(strcmp(e1.msg, e2.msg) == 0);
      CHECK(strncmp(e1.msg, "/data", 5) == 0 && strstr(e1.msg, ": ") && one_line(e1.msg));
    }
    cJSON_Delete(doc);
    p = doc_end;
  }
  esr_schema_free(s);
  return 0;
}
