/* unit_outbox.h — collecting outbox rows into owned copies, so that tests can check them after the scan (include after
 * cmocka.h and esr/outbox.h). */
#ifndef ESR_UNIT_OUTBOX_H
#define ESR_UNIT_OUTBOX_H

#include <stdlib.h>
#include <string.h>

#include "outbox.h"

typedef struct tu_row {
  int64_t seq;
  char *topic;
  void *key; /* NULL when the row has no key */
  size_t key_len;
  void *value;
  size_t value_len;
  int64_t src_offset;
  int src_index;
  char *reason, *error;
} tu_row;

typedef struct tu_rows {
  tu_row *v;
  size_t n, cap;
} tu_rows;

static inline void *tu_dup_bytes(const void *p, size_t n) {
  void *c = malloc(n + 1);
  if (c && n) memcpy(c, p, n);
  if (c) ((char *)c)[n] = '\0';
  return c;
}

static inline int tu_rows_add(void *arg, const esr_outbox_row *row) {
  tu_rows *rows = arg;
  if (rows->n == rows->cap) {
    rows->cap = rows->cap ? rows->cap * 2 : 16;
    rows->v = realloc(rows->v, rows->cap * sizeof *rows->v);
  }
  tu_row *r = &rows->v[rows->n++];
  r->seq = row->seq;
  r->topic = row->topic ? strdup(row->topic) : NULL;
  r->key = row->key ? tu_dup_bytes(row->key, row->key_len) : NULL;
  r->key_len = row->key_len;
  r->value = tu_dup_bytes(row->value, row->value_len);
  r->value_len = row->value_len;
  r->src_offset = row->src_offset;
  r->src_index = row->src_index;
  r->reason = row->reason ? strdup(row->reason) : NULL;
  r->error = row->error ? strdup(row->error) : NULL;
  return 0;
}

static inline void tu_rows_free(tu_rows *rows) {
  for (size_t i = 0; i < rows->n; i++) {
    free(rows->v[i].topic);
    free(rows->v[i].key);
    free(rows->v[i].value);
    free(rows->v[i].reason);
    free(rows->v[i].error);
  }
  free(rows->v);
  memset(rows, 0, sizeof *rows);
}

/* Every row of the store's outbox, in seq order. */
static inline tu_rows tu_outbox(esr_store *s) {
  tu_rows rows = {0};
  int64_t last = 0;
  esr_error err = {0};
  if (esr_outbox_scan(s, 0, 1000000, tu_rows_add, &rows, &last, &err) != ESR_E_OK) fail_msg("scan: %s", err.msg);
  return rows;
}

#endif
