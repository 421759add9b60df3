/* promtext.h — a writer of the Prometheus text exposition format (version 0.0.4), into a growing buffer.
 *
 * A family is announced once (# HELP, # TYPE) and followed by its samples; label values are escaped (\\, \", \n),
 * HELP text too (\\, \n); numbers are written exactly for integers and with 17 significant digits otherwise (NaN and
 * infinities as Prometheus spells them). Histograms take their bucket counts non-cumulative and write them cumulative,
 * with +Inf, _sum and _count. Names are the caller's: it must use [a-zA-Z_:][a-zA-Z0-9_:]* and label names
 * [a-zA-Z_][a-zA-Z0-9_]* (not checked). Running out of memory is remembered and reported by esr_prom_take, so callers
 * write without checking each call. Not thread-safe: one writer per buffer.
 */
#ifndef ESR_PROMTEXT_H
#define ESR_PROMTEXT_H

#include <stddef.h>
#include <stdint.h>

typedef struct esr_prom {
  char *buf;
  size_t len, cap;
  int oom;
} esr_prom;

#define ESR_PROM_INIT {NULL, 0, 0, 0}

/* type: "counter", "gauge", "histogram", "untyped". */
void esr_prom_family(esr_prom *p, const char *name, const char *type, const char *help);
/* labels: name, value, name, value, ..., NULL (or NULL itself for none). */
void esr_prom_sample(esr_prom *p, const char *name, const char *const *labels, double value);
void esr_prom_sample_int(esr_prom *p, const char *name, const char *const *labels, int64_t value);
/* One histogram series: `n` upper bounds (increasing, +Inf implied) and n + 1 counts (the last one above every
 * bound), not cumulative; sum of the observed values. */
void esr_prom_histogram(esr_prom *p, const char *name, const char *const *labels, const double *bounds, size_t n,
                        const int64_t *counts, double sum);
/* The text (NUL-terminated, the caller frees it) and its length; NULL when memory ran out (the buffer is freed). */
char *esr_prom_take(esr_prom *p, size_t *len);
void esr_prom_free(esr_prom *p);

#endif
