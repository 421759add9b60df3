/* json_arena.c — per-thread bump allocation for cJSON during one event; malloc/free outside. */
#include "json_arena.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 65536

typedef struct big { /* an allocation larger than what the chunk has left: freed at end */
  struct big *next;
  max_align_t align[];
} big;

static _Thread_local struct {
  char *chunk; /* CHUNK bytes, kept between events */
  size_t used;
  int active;
  big *bigs;
} t;

static void *arena_malloc(size_t n) {
  if (!t.active) return malloc(n);
  size_t need = (n + 15) & ~(size_t)15;
  if (t.chunk && t.used + need <= CHUNK) {
    void *p = t.chunk + t.used;
    t.used += need;
    return p;
  }
  big *b = malloc(sizeof *b + n);
  if (!b) return NULL;
  b->next = t.bigs;
  t.bigs = b;
  return b->align;
}

static void arena_free(void *p) {
  if (!p) return;
  if (t.chunk && (char *)p >= t.chunk && (char *)p < t.chunk + CHUNK) return; /* reset at end */
  for (big *b = t.bigs; b; b = b->next)
    if ((void *)b->align == p) return; /* freed at end */
  free(p);
}

void esr_json_arena_install(void) {
  cJSON_Hooks hooks = {.malloc_fn = arena_malloc, .free_fn = arena_free};
  cJSON_InitHooks(&hooks);
}

void esr_json_arena_begin(void) {
  if (!t.chunk) t.chunk = malloc(CHUNK); /* without it, every allocation is a "big" one: still correct */
  t.used = 0;
  t.active = 1;
}

void esr_json_arena_end(void) {
  t.active = 0;
  t.used = 0;
  while (t.bigs) {
    big *b = t.bigs;
    t.bigs = b->next;
    free(b);
  }
}

void esr_json_arena_release(void) {
  esr_json_arena_end();
  free(t.chunk);
  t.chunk = NULL;
}
