/* unit_util.h — small helpers shared by the unit tests (header-only, include after cmocka.h): temporary directories
 * that are removed afterwards, files, and assertions on messages. */
#ifndef ESR_UNIT_UTIL_H
#define ESR_UNIT_UTIL_H

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef ESR_TEST_PLUGIN_DIR
#error "ESR_TEST_PLUGIN_DIR must be defined by the build"
#endif

/* Fails the test with both strings when `needle` is not in `hay`. */
#define assert_contains(hay, needle)                                                                                   \
  do {                                                                                                                 \
    const char *hay_ = (hay), *needle_ = (needle);                                                                    \
    if (!hay_ || !strstr(hay_, needle_)) fail_msg("expected \"%s\" in \"%s\"", needle_, hay_ ? hay_ : "(null)");     \
  } while (0)

#define assert_not_contains(hay, needle)                                                                               \
  do {                                                                                                                 \
    const char *hay_ = (hay), *needle_ = (needle);                                                                    \
    if (hay_ && strstr(hay_, needle_)) fail_msg("did not expect \"%s\" in \"%s\"", needle_, hay_);                    \
  } while (0)

/* A fresh directory under $TMPDIR (or /tmp); the caller frees the returned path. */
static inline char *tu_mkdtemp(void) {
  const char *base = getenv("TMPDIR");
  char tmpl[4096];
  snprintf(tmpl, sizeof tmpl, "%s/esr-unit-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(tmpl)) {
    fprintf(stderr, "mkdtemp %s: %s\n", tmpl, strerror(errno));
    return NULL;
  }
  return strdup(tmpl);
}

static inline int tu_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* rm -rf `dir`; NULL is a no-op. */
static inline void tu_rmrf(const char *dir) {
  if (dir) nftw(dir, tu_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline int tu_write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t n = fwrite(data, 1, len, f);
  return fclose(f) == 0 && n == len ? 0 : -1;
}

static inline int tu_write_text(const char *path, const char *text) { return tu_write_file(path, text, strlen(text)); }

/* The whole file, NUL-terminated; *len (optional) set to its size. The caller frees it. */
static inline char *tu_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  size_t got;
  while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
    n += got;
    if (cap - n - 1 == 0) {
      char *grown = realloc(buf, cap * 2);
      if (!grown) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = grown;
      cap *= 2;
    }
  }
  fclose(f);
  if (!buf) return NULL;
  buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

static inline int tu_file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

#endif
