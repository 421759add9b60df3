/* promtext.c — the Prometheus text exposition format, written into a growing buffer (see promtext.h). */
#include "promtext.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(esr_prom *p, size_t more) {
  if (p->oom) return -1;
  if (p->len + more + 1 <= p->cap) return 0;
  size_t cap = p->cap ? p->cap : 4096;
  while (cap < p->len + more + 1) cap *= 2;
  char *g = realloc(p->buf, cap);
  if (!g) {
    p->oom = 1;
    return -1;
  }
  p->buf = g;
  p->cap = cap;
  return 0;
}

static void put(esr_prom *p, const char *s, size_t n) {
  if (reserve(p, n)) return;
  memcpy(p->buf + p->len, s, n);
  p->len += n;
  p->buf[p->len] = '\0';
}

static void puts_(esr_prom *p, const char *s) { put(p, s, strlen(s)); }

/* Escapes \ and newline (and " when quoted, for label values). */
static void put_escaped(esr_prom *p, const char *s, int quoted) {
  for (; *s; s++) {
    if (*s == '\\')
      put(p, "\\\\", 2);
    else if (*s == '\n')
      put(p, "\\n", 2);
    else if (quoted && *s == '"')
      put(p, "\\\"", 2);
    else
      put(p, s, 1);
  }
}

static void put_number(esr_prom *p, double v) {
  char num[40];
  if (isnan(v))
    snprintf(num, sizeof num, "NaN");
  else if (isinf(v))
    snprintf(num, sizeof num, v > 0 ? "+Inf" : "-Inf");
  else if (v == floor(v) && fabs(v) < 9007199254740992.0)
    snprintf(num, sizeof num, "%.0f", v);
  else if (snprintf(num, sizeof num, "%.15g", v), strtod(num, NULL) != v) /* the shortest of the two that reads back */
    snprintf(num, sizeof num, "%.17g", v);
  puts_(p, num);
}

static void put_labels(esr_prom *p, const char *const *labels, const char *extra_name, const char *extra_value) {
  int any = 0;
  if (labels) {
    for (size_t i = 0; labels[i]; i += 2) {
      puts_(p, any ? "," : "{");
      puts_(p, labels[i]);
      puts_(p, "=\"");
      put_escaped(p, labels[i + 1] ? labels[i + 1] : "", 1);
      puts_(p, "\"");
      any = 1;
    }
  }
  if (extra_name) {
    puts_(p, any ? "," : "{");
    puts_(p, extra_name);
    puts_(p, "=\"");
    put_escaped(p, extra_value, 1);
    puts_(p, "\"");
    any = 1;
  }
  if (any) puts_(p, "}");
}

void esr_prom_family(esr_prom *p, const char *name, const char *type, const char *help) {
  puts_(p, "# HELP ");
  puts_(p, name);
  puts_(p, " ");
  put_escaped(p, help, 0);
  puts_(p, "\n# TYPE ");
  puts_(p, name);
  puts_(p, " ");
  puts_(p, type);
  puts_(p, "\n");
}

static void sample(esr_prom *p, const char *name, const char *suffix, const char *const *labels, const char *xn,
                   const char *xv, double value) {
  puts_(p, name);
  if (suffix) puts_(p, suffix);
  put_labels(p, labels, xn, xv);
  puts_(p, " ");
  put_number(p, value);
  puts_(p, "\n");
}

void esr_prom_sample(esr_prom *p, const char *name, const char *const *labels, double value) {
  sample(p, name, NULL, labels, NULL, NULL, value);
}

void esr_prom_sample_int(esr_prom *p, const char *name, const char *const *labels, int64_t value) {
  puts_(p, name);
  put_labels(p, labels, NULL, NULL);
  char num[32];
  snprintf(num, sizeof num, " %lld\n", (long long)value);
  puts_(p, num);
}

void esr_prom_histogram(esr_prom *p, const char *name, const char *const *labels, const double *bounds, size_t n,
                        const int64_t *counts, double sum) {
  int64_t cum = 0;
  char le[40];
  for (size_t i = 0; i < n; i++) {
    cum += counts[i];
    snprintf(le, sizeof le, "%g", bounds[i]);
    sample(p, name, "_bucket", labels, "le", le, (double)cum);
  }
  cum += counts[n];
  sample(p, name, "_bucket", labels, "le", "+Inf", (double)cum);
  sample(p, name, "_sum", labels, NULL, NULL, sum);
  sample(p, name, "_count", labels, NULL, NULL, (double)cum);
}

char *esr_prom_take(esr_prom *p, size_t *len) {
  if (p->oom) {
    esr_prom_free(p);
    return NULL;
  }
  if (!p->buf && reserve(p, 0)) return NULL;
  if (!p->len) p->buf[0] = '\0';
  char *out = p->buf;
  if (len) *len = p->len;
  p->buf = NULL;
  p->len = p->cap = 0;
  return out;
}

void esr_prom_free(esr_prom *p) {
  free(p->buf);
  p->buf = NULL;
  p->len = p->cap = 0;
  p->oom = 0;
}
