/* esr/strset.h — a set of byte strings with a memory bound.
 *
 * Holds copies of byte strings (any bytes, NUL included; each copy is also NUL-terminated so that text members read as C
 * strings) in an open-addressing hash table. The set counts every byte it holds (members, their bookkeeping and the
 * table) and refuses an addition that would take it past the bound given at creation: that is ESR_E_NOMEM with
 * lib_code E2BIG, while a failed allocation is ESR_E_NOMEM with lib_code ENOMEM; either way the set is unchanged.
 * Not thread-safe. Used to collect header values read back from Kafka (readback.h) and to de-duplicate dead letters.
 */
#ifndef ESR_STRSET_H
#define ESR_STRSET_H

#include <stddef.h>

#include "error.h"

typedef struct esr_strset esr_strset;

/* A new empty set that may hold up to max_bytes (0: no bound), in *out. ESR_E_NOMEM (*out NULL) when out of memory. */
esr_code esr_strset_new(size_t max_bytes, esr_strset **out, esr_error *err);
/* Frees the set and its copies; NULL is a no-op. */
void esr_strset_free(esr_strset *set);
/* Adds a copy of the len bytes at s. *added (may be NULL) is 1 when s was new, 0 when it was a member already. */
esr_code esr_strset_add(esr_strset *set, const void *s, size_t len, int *added, esr_error *err);
/* 1 when the len bytes at s are a member, 0 otherwise. */
int esr_strset_has(const esr_strset *set, const void *s, size_t len);
size_t esr_strset_count(const esr_strset *set);
/* The bytes the set holds now (what its bound is compared with). */
size_t esr_strset_bytes(const esr_strset *set);
/* Calls fn for each member, in no particular order (s is the set's own NUL-terminated copy, valid until the set changes
 * or is freed); fn returns non-zero to stop. The set must not change during the walk. */
void esr_strset_each(const esr_strset *set, int (*fn)(void *arg, const char *s, size_t len), void *arg);

#endif
