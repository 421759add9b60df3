/* strset.c — a bounded set of byte strings: open addressing (linear probing, load at most 1/2), FNV-1a hashes kept with
 * the members so that growing the table never rehashes a string. */
#include "strset.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct member {
  uint64_t hash;
  size_t len;
  char s[]; /* len bytes and a NUL */
} member;

struct esr_strset {
  member **v;
  size_t cap, n;
  size_t bytes, max_bytes;
};

#define FIRST_CAP 64

static uint64_t fnv1a(const void *s, size_t len) {
  const unsigned char *p = s;
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 1099511628211ULL;
  return h;
}

esr_code esr_strset_new(size_t max_bytes, esr_strset **out, esr_error *err) {
  *out = NULL;
  esr_strset *set = calloc(1, sizeof *set);
  if (!set) return esr_error_set(err, ESR_E_NOMEM, ENOMEM, "out of memory");
  set->max_bytes = max_bytes;
  set->bytes = sizeof *set;
  *out = set;
  return ESR_E_OK;
}

void esr_strset_free(esr_strset *set) {
  if (!set) return;
  for (size_t i = 0; i < set->cap; i++) free(set->v[i]);
  free(set->v);
  free(set);
}

static size_t slot_of(member *const *v, size_t cap, uint64_t hash, const void *s, size_t len) {
  size_t j = (size_t)hash & (cap - 1);
  for (; v[j]; j = (j + 1) & (cap - 1))
    if (v[j]->hash == hash && v[j]->len == len && memcmp(v[j]->s, s, len) == 0) break;
  return j;
}

static int over(const esr_strset *set, size_t bytes) { return set->max_bytes && bytes > set->max_bytes; }

esr_code esr_strset_add(esr_strset *set, const void *s, size_t len, int *added, esr_error *err) {
  if (added) *added = 0;
  uint64_t hash = fnv1a(s, len);
  if (set->cap && set->v[slot_of(set->v, set->cap, hash, s, len)]) return ESR_E_OK;
  size_t cost = sizeof(member) + len + 1;
  if (len > SIZE_MAX / 2 || over(set, set->bytes + cost))
    return esr_error_set(err, ESR_E_NOMEM, E2BIG, "a set of %zu strings would pass its bound of %zu bytes", set->n,
                         set->max_bytes);
  if ((set->n + 1) * 2 > set->cap) {
    size_t cap = set->cap ? set->cap * 2 : FIRST_CAP;
    size_t grown = set->bytes + cost + (cap - set->cap) * sizeof(member *);
    if (over(set, grown))
      return esr_error_set(err, ESR_E_NOMEM, E2BIG, "a set of %zu strings would pass its bound of %zu bytes", set->n,
                           set->max_bytes);
    member **v = calloc(cap, sizeof *v);
    if (!v) return esr_error_set(err, ESR_E_NOMEM, ENOMEM, "out of memory (a set of %zu strings)", set->n);
    for (size_t i = 0; i < set->cap; i++)
      if (set->v[i]) v[slot_of(v, cap, set->v[i]->hash, set->v[i]->s, set->v[i]->len)] = set->v[i];
    free(set->v);
    set->bytes += (cap - set->cap) * sizeof(member *);
    set->v = v;
    set->cap = cap;
  }
  member *m = malloc(cost);
  if (!m) return esr_error_set(err, ESR_E_NOMEM, ENOMEM, "out of memory (a set of %zu strings)", set->n);
  m->hash = hash;
  m->len = len;
  if (len) memcpy(m->s, s, len);
  m->s[len] = '\0';
  set->v[slot_of(set->v, set->cap, hash, s, len)] = m;
  set->n++;
  set->bytes += cost;
  if (added) *added = 1;
  return ESR_E_OK;
}

int esr_strset_has(const esr_strset *set, const void *s, size_t len) {
  if (!set->cap) return 0;
  return set->v[slot_of(set->v, set->cap, fnv1a(s, len), s, len)] != NULL;
}

size_t esr_strset_count(const esr_strset *set) { return set->n; }

size_t esr_strset_bytes(const esr_strset *set) { return set->bytes; }

void esr_strset_each(const esr_strset *set, int (*fn)(void *arg, const char *s, size_t len), void *arg) {
  for (size_t i = 0; i < set->cap; i++)
    if (set->v[i] && fn(arg, set->v[i]->s, set->v[i]->len)) return;
}
