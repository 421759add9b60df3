/* test_schema_suite.c — esr/schema.h against the official JSON-Schema-Test-Suite, draft7 (Debian package
 * json-schema-test-suite). Every case of every file at the top level of the draft7 directory runs, except
 * refRemote.json (it needs a web server). A schema esr refuses by policy — only a remote $ref, which esr never fetches
 * — has its cases counted and listed as refused; every other case must give the expected result. The directory can be
 * overridden with ESR_JSON_SCHEMA_SUITE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"

#define SUITE_DIR "/usr/share/json-schema-test-suite/tests/draft7"

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 1 << 16, n = 0, got;
  char *buf = malloc(cap);
  while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
    n += got;
    if (n + 1 == cap) {
      char *p = realloc(buf, cap *= 2);
      if (!p) {
        free(buf);
        buf = NULL;
      }
      buf = p;
    }
  }
  fclose(f);
  if (buf) buf[n] = '\0';
  return buf;
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

typedef struct totals {
  int files, passed, refused, failed;
} totals;

static void run_file(const char *dir, const char *name, totals *t) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  char *text = read_file(path);
  if (!text) fail_msg("cannot read %s", path);
  cJSON *groups = cJSON_Parse(text);
  free(text);
  if (!cJSON_IsArray(groups)) fail_msg("%s: not a JSON array", path);
  t->files++;
  const cJSON *g;
  cJSON_ArrayForEach(g, groups) {
    const char *gdesc = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "description"));
    const cJSON *tests = cJSON_GetObjectItemCaseSensitive(g, "tests");
    esr_error err = {0};
    esr_schema *s = esr_schema_compile(cJSON_GetObjectItemCaseSensitive(g, "schema"), name, &err);
    if (!s) {
      int n = cJSON_GetArraySize(tests);
      if (strstr(err.msg, "remote $ref")) {
        printf("  refused by policy: %s / %s (%d cases): %s\n", name, gdesc, n, err.msg);
        t->refused += n;
      } else {
        printf("  FAILED: %s / %s: schema refused: %s\n", name, gdesc, err.msg);
        t->failed += n;
      }
      continue;
    }
    const cJSON *c;
    cJSON_ArrayForEach(c, tests) {
      const char *cdesc = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "description"));
      int want = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "valid"));
      esr_error verr = {0};
      esr_code rc = esr_schema_validate(s, cJSON_GetObjectItemCaseSensitive(c, "data"), NULL, &verr);
      int got = rc == ESR_E_OK;
      if (got == want && (got || rc == ESR_E_BADINPUT)) {
        t->passed++;
      } else {
        printf("  FAILED: %s / %s / %s: expected %s, got %s%s%s\n", name, gdesc, cdesc, want ? "valid" : "invalid",
               got ? "valid" : "invalid", got ? "" : ": ", got ? "" : verr.msg);
        t->failed++;
      }
    }
    esr_schema_free(s);
  }
  cJSON_Delete(groups);
}

static void draft7(void **state) {
  const char *dir = getenv("ESR_JSON_SCHEMA_SUITE");
  if (!dir || !*dir) dir = SUITE_DIR;
  DIR *d = opendir(dir);
  if (!d) fail_msg("%s: not found; install the Debian package json-schema-test-suite (scripts/setup.sh does)", dir);
  char *names[256];
  size_t n = 0;
  struct dirent *de;
  while ((de = readdir(d)) && n < 256) {
    size_t len = strlen(de->d_name);
    if (len > 5 && strcmp(de->d_name + len - 5, ".json") == 0 && strcmp(de->d_name, "refRemote.json") != 0)
      names[n++] = strdup(de->d_name);
  }
  closedir(d);
  qsort(names, n, sizeof *names, name_cmp);
  totals t = {0};
  for (size_t i = 0; i < n; i++) {
    run_file(dir, names[i], &t);
    free(names[i]);
  }
  printf("draft7: %d files, %d cases passed, %d refused by policy (remote $ref), %d failed\n", t.files, t.passed,
         t.refused, t.failed);
  assert_true(t.files > 0);
  assert_int_equal(t.failed, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(draft7)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
