/* alloc.c — the allocator in use, named, and glibc's malloc tuned when it serves the process (see alloc.h). */
#include "alloc.h"

#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define ESR_ALLOC_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ESR_ALLOC_SANITIZED 1
#endif
#endif

static char g_name[96] = "unknown";

/* glibc under one-way traffic (allocated on one thread, freed on another): a freed block returns to its arena, and
 * memory at the top of a heap is given back to the kernel (trim) and faulted in again at the next growth; blocks of
 * 128 KiB and more (librdkafka's fetch buffers, SQLite's larger ones) are mmap'd and unmapped each time. Keep what was
 * grown: no trim below 256 MiB of free top, grow by 16 MiB, mmap only from 32 MiB. */
#ifndef ESR_ALLOC_SANITIZED
static void tune_glibc(void) {
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  mallopt(M_TOP_PAD, 16 << 20);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
}
#endif

void esr_alloc_setup(void) {
#ifdef ESR_ALLOC_SANITIZED
  snprintf(g_name, sizeof g_name, "the sanitizer's");
  return;
#else
  int (*mi_version)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "mi_version");
  if (mi_version) {
    int v = mi_version();
    snprintf(g_name, sizeof g_name, "mimalloc %d.%d.%d", v / 100, v / 10 % 10, v % 10);
    return;
  }
  int (*mallctl)(const char *, void *, size_t *, void *, size_t) =
      (int (*)(const char *, void *, size_t *, void *, size_t))dlsym(RTLD_DEFAULT, "mallctl");
  if (mallctl) {
    const char *version = NULL;
    size_t len = sizeof version;
    if (mallctl("version", &version, &len, NULL, 0) != 0 || !version) version = "?";
    snprintf(g_name, sizeof g_name, "jemalloc %.*s", (int)strcspn(version, "-"), version);
    return;
  }
  tune_glibc();
  snprintf(g_name, sizeof g_name, "glibc %s (tuned)", gnu_get_libc_version());
#endif
}

const char *esr_alloc_name(void) { return g_name; }
