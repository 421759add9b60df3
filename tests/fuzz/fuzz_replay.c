/* fuzz_replay.c — replays a libFuzzer harness's seed corpus as regression cases in the normal builds (gcc or clang,
 * release or ASan, no libFuzzer): linked with one harness, it runs LLVMFuzzerTestOneInput on every file of the
 * corpus directory ESR_FUZZ_CORPUS, one cmocka case per file named after it, so a crash, a failed CHECK (a trap), an
 * ASan report or a leak names the input. A missing or empty corpus fails: replaying nothing proves nothing.
 *   fuzz_<harness>_corpus            the corpus directory compiled in
 *   fuzz_<harness>_corpus FILE...    these files instead (a finding of scripts/fuzz.sh, under gcc) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void replay_one(void **state) {
  const char *path = *state;
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("%s: cannot open", path);
  size_t cap = 4096, n = 0;
  uint8_t *buf = malloc(cap);
  assert_non_null(buf);
  for (size_t got; (got = fread(buf + n, 1, cap - n, f)) > 0;) {
    n += got;
    if (n == cap) {
      uint8_t *bigger = realloc(buf, cap *= 2);
      assert_non_null(bigger);
      buf = bigger;
    }
  }
  int err = ferror(f);
  fclose(f);
  if (err) fail_msg("%s: read error", path);
  /* an exact-size copy, so that ASan sees a read past the input's end */
  uint8_t *exact = malloc(n ? n : 1);
  assert_non_null(exact);
  memcpy(exact, buf, n);
  free(buf);
  LLVMFuzzerTestOneInput(exact, n);
  free(exact);
}

static int by_name(const void *a, const void *b) {
  return strcmp(((const struct CMUnitTest *)a)->name, ((const struct CMUnitTest *)b)->name);
}

int main(int argc, char **argv) {
  size_t n = 0, cap = 256 + (size_t)argc;
  struct CMUnitTest *tests = calloc(cap, sizeof *tests);
  char **paths = calloc(cap, sizeof *paths);
  if (!tests || !paths) return 1;
  if (argc > 1) {
    for (int i = 1; i < argc; i++) paths[n++] = strdup(argv[i]);
  } else {
    DIR *d = opendir(ESR_FUZZ_CORPUS);
    if (!d) {
      fprintf(stderr, "fuzz replay: cannot open the corpus %s\n", ESR_FUZZ_CORPUS);
      return 1;
    }
    for (struct dirent *e; (e = readdir(d));) {
      if (e->d_name[0] == '.') continue;
      if (n == cap) {
        struct CMUnitTest *t2 = realloc(tests, 2 * cap * sizeof *tests);
        if (t2) tests = t2;
        char **p2 = realloc(paths, 2 * cap * sizeof *paths);
        if (p2) paths = p2;
        if (!t2 || !p2) return 1;
        cap *= 2;
      }
      size_t len = strlen(ESR_FUZZ_CORPUS) + strlen(e->d_name) + 2;
      paths[n] = malloc(len);
      if (!paths[n]) return 1;
      snprintf(paths[n], len, "%s/%s", ESR_FUZZ_CORPUS, e->d_name);
      n++;
    }
    closedir(d);
  }
  if (n == 0) {
    fprintf(stderr, "fuzz replay: no input in %s\n", argc > 1 ? "the arguments" : ESR_FUZZ_CORPUS);
    return 1;
  }
  for (size_t i = 0; i < n; i++) {
    if (!paths[i]) return 1;
    const char *slash = strrchr(paths[i], '/');
    tests[i] = (struct CMUnitTest){.name = slash ? slash + 1 : paths[i], .test_func = replay_one,
                                   .initial_state = paths[i]};
  }
  qsort(tests, n, sizeof *tests, by_name);
  int failed = _cmocka_run_group_tests(ESR_FUZZ_HARNESS, tests, n, NULL, NULL);
  for (size_t i = 0; i < n; i++) free(paths[i]);
  free(paths);
  free(tests);
  return failed;
}
