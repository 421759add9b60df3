/* statediff.c — the differences between two partition states, table by table, row by row (statediff.h). */
#include "statediff.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "statetables.h"

#define VALUE_CAP 200
#define KEY_CAP 600

typedef struct differ {
  int max_rows;
  esr_diff_fn fn;
  void *arg;
  esr_diff_counts *counts;
  int64_t table_rows; /* rows that differ in the current table */
} differ;

static void report(differ *d, esr_diff_kind kind, const char *table, const char *key, const char *column,
                   const char *a, const char *b) {
  if (!d->fn) return;
  esr_diff_item it = {kind, table, key, column, a, b};
  d->fn(d->arg, &it);
}

/* A row differs: counted; reported while the table's limit allows. Returns 1 when it may be reported. */
static int row_differs(differ *d) {
  d->counts->rows++;
  if (d->table_rows++ >= d->max_rows) return 0;
  d->counts->shown++;
  return 1;
}

static void columns_text(const esr_st_table *t, char *buf, size_t cap) {
  size_t o = 0;
  buf[0] = '\0';
  for (int i = 0; i < t->n_cols && o < cap; i++) {
    const esr_st_column *c = &t->cols[i];
    o += (size_t)snprintf(buf + o, cap - o, "%s%s%s%s%s%s", i ? ", " : "", c->name, c->type[0] ? " " : "", c->type,
                          c->pk ? " KEY" : "", c->notnull ? " NOT NULL" : "");
  }
}

/* "(name=value, ...)" of the first `n` select columns of the current row. */
static void key_text(const esr_st_table *t, sqlite3_stmt *st, int n, char *buf, size_t cap) {
  size_t o = (size_t)snprintf(buf, cap, "(");
  for (int i = 0; i < n && o < cap; i++) {
    char v[VALUE_CAP];
    esr_st_format(st, i, v, sizeof v);
    o += (size_t)snprintf(buf + o, cap - o, "%s%s=%s", i ? ", " : "", t->cols[t->order[i]].name, v);
  }
  if (o < cap) snprintf(buf + o, cap - o, ")");
}

static int same_value(sqlite3_stmt *a, sqlite3_stmt *b, int col, esr_st_buf *x, esr_st_buf *y) {
  x->n = y->n = 0;
  if (esr_st_encode(x, a, col) || esr_st_encode(y, b, col)) return 0;
  return x->n == y->n && memcmp(x->p, y->p, x->n) == 0;
}

static int has_null(sqlite3_stmt *st, int n) {
  for (int i = 0; i < n; i++)
    if (sqlite3_column_type(st, i) == SQLITE_NULL) return 1;
  return 0;
}

/* Order of two rows by the table's canonical order, and whether they are the same row (its key). */
static int compare_rows(const esr_st_table *t, sqlite3_stmt *a, sqlite3_stmt *b, int *same_key) {
  for (int i = 0; i < t->n_pk; i++) {
    int c = esr_st_compare(a, i, b, i);
    if (c) return *same_key = 0, c;
  }
  if (!has_null(a, t->n_pk) && !has_null(b, t->n_pk)) return *same_key = 1, 0;
  /* A NULL in a key (rowid tables allow it): the whole row is the key. */
  for (int i = t->n_pk; i < t->n_cols; i++) {
    int c = esr_st_compare(a, i, b, i);
    if (c) return *same_key = 0, c;
  }
  return *same_key = 1, 0;
}

static esr_code step_row(sqlite3 *db, sqlite3_stmt *st, int *has, esr_error *err) {
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) return *has = 1, ESR_E_OK;
  *has = 0;
  return rc == SQLITE_DONE ? ESR_E_OK : esr_st_error(db, err, "reading a table");
}

static esr_code diff_keyed(differ *d, sqlite3 *da, sqlite3 *db, const esr_st_table *t, esr_error *err) {
  sqlite3_stmt *a = NULL, *b = NULL;
  esr_st_buf x = {0}, y = {0};
  esr_code rc = ESR_E_OK;
  if (sqlite3_prepare_v2(da, t->select_sql, -1, &a, NULL) != SQLITE_OK) {
    rc = esr_st_error(da, err, "reading a table");
    goto done;
  }
  if (sqlite3_prepare_v2(db, t->select_sql, -1, &b, NULL) != SQLITE_OK) {
    rc = esr_st_error(db, err, "reading a table");
    goto done;
  }
  int ha, hb;
  if ((rc = step_row(da, a, &ha, err)) != ESR_E_OK || (rc = step_row(db, b, &hb, err)) != ESR_E_OK) goto done;
  char key[KEY_CAP], va[VALUE_CAP], vb[VALUE_CAP];
  while (ha || hb) {
    int same = 0, c = !ha ? 1 : !hb ? -1 : compare_rows(t, a, b, &same);
    if (c < 0 || c > 0) {
      sqlite3_stmt *st = c < 0 ? a : b;
      if (row_differs(d)) {
        key_text(t, st, t->n_pk, key, sizeof key);
        report(d, c < 0 ? ESR_DIFF_ROW_ONLY_A : ESR_DIFF_ROW_ONLY_B, t->name, key, NULL, NULL, NULL);
      }
      rc = c < 0 ? step_row(da, a, &ha, err) : step_row(db, b, &hb, err);
      if (rc != ESR_E_OK) goto done;
      continue;
    }
    int counted = 0, shown = 0;
    for (int i = 0; i < t->n_cols; i++) {
      if (same_value(a, b, i, &x, &y)) continue;
      if (!counted) {
        counted = 1;
        shown = row_differs(d);
        if (shown) key_text(t, a, t->n_pk, key, sizeof key);
      }
      if (!shown) break;
      esr_st_format(a, i, va, sizeof va);
      esr_st_format(b, i, vb, sizeof vb);
      report(d, ESR_DIFF_VALUE, t->name, key, t->cols[t->order[i]].name, va, vb);
    }
    if ((rc = step_row(da, a, &ha, err)) != ESR_E_OK || (rc = step_row(db, b, &hb, err)) != ESR_E_OK) goto done;
  }
done:
  sqlite3_finalize(a);
  sqlite3_finalize(b);
  esr_st_buf_free(&x);
  esr_st_buf_free(&y);
  return rc;
}

/* ---- tables without a key: the rows' encodings, sorted, compared as multisets -------------------------------- */

typedef struct rowset {
  esr_st_buf bytes;
  size_t *off, *len;
  size_t n, cap;
} rowset;

static void rowset_free(rowset *r) {
  esr_st_buf_free(&r->bytes);
  free(r->off);
  free(r->len);
}

static int cmp_enc(const uint8_t *p, size_t n, const uint8_t *q, size_t m) {
  size_t k = n < m ? n : m;
  int c = memcmp(p, q, k);
  if (c) return c;
  return n < m ? -1 : n > m;
}

static int row_cmp(const void *x, const void *y, void *arg) {
  const rowset *r = arg;
  size_t i = *(const size_t *)x, j = *(const size_t *)y;
  return cmp_enc(r->bytes.p + r->off[i], r->len[i], r->bytes.p + r->off[j], r->len[j]);
}

static esr_code read_rows(sqlite3 *db, const esr_st_table *t, rowset *r, size_t **order, esr_error *err) {
  sqlite3_stmt *st = NULL;
  *order = NULL;
  if (sqlite3_prepare_v2(db, t->select_sql, -1, &st, NULL) != SQLITE_OK) return esr_st_error(db, err, "reading a table");
  int step;
  esr_code rc = ESR_E_OK;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    if (r->n == r->cap) {
      r->cap = r->cap ? r->cap * 2 : 256;
      size_t *o = realloc(r->off, r->cap * sizeof *o);
      if (o) r->off = o;
      size_t *l = realloc(r->len, r->cap * sizeof *l);
      if (l) r->len = l;
      if (!o || !l) goto oom;
    }
    size_t at = r->bytes.n;
    for (int i = 0; i < t->n_cols; i++)
      if (esr_st_encode(&r->bytes, st, i)) goto oom;
    r->off[r->n] = at;
    r->len[r->n] = r->bytes.n - at;
    r->n++;
  }
  if (step != SQLITE_DONE) {
    rc = esr_st_error(db, err, "reading a table");
    goto done;
  }
  if (!(*order = malloc((r->n + 1) * sizeof **order))) goto oom;
  for (size_t i = 0; i < r->n; i++) (*order)[i] = i;
  qsort_r(*order, r->n, sizeof **order, row_cmp, r);
  goto done;
oom:
  rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory reading table %s", t->name);
done:
  sqlite3_finalize(st);
  return rc;
}

static uint64_t get_be(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

/* "(c=v, ...)" from a row's encoding (esr_st_encode, one value per column). */
static void decode_text(const esr_st_table *t, const uint8_t *p, size_t n, char *buf, size_t cap) {
  size_t o = (size_t)snprintf(buf, cap, "("), at = 0;
  for (int i = 0; i < t->n_cols && at < n && o < cap; i++) {
    char v[VALUE_CAP];
    uint8_t type = p[at++];
    if (type == 0) {
      snprintf(v, sizeof v, "NULL");
    } else if (type == 1 || type == 2) {
      uint64_t bits = get_be(p + at, 8);
      at += 8;
      if (type == 1) {
        snprintf(v, sizeof v, "%lld", (long long)(int64_t)bits);
      } else {
        double dv;
        memcpy(&dv, &bits, sizeof dv);
        snprintf(v, sizeof v, "%.17g", dv);
        if (!strpbrk(v, ".eEnN")) strcat(v, ".0");
      }
    } else {
      size_t len = (size_t)get_be(p + at, 4), k = 0;
      at += 4;
      if (type == 3) {
        k = (size_t)snprintf(v, sizeof v, "'");
        for (size_t j = 0; j < len && k + 5 < sizeof v; j++) v[k++] = (char)p[at + j];
        snprintf(v + k, sizeof v - k, "%s'", len > sizeof v - 6 ? "..." : "");
      } else {
        k = (size_t)snprintf(v, sizeof v, "x'");
        for (size_t j = 0; j < len && k + 6 < sizeof v; j++) k += (size_t)snprintf(v + k, sizeof v - k, "%02x", p[at + j]);
        snprintf(v + k, sizeof v - k, "'");
      }
      at += len;
    }
    o += (size_t)snprintf(buf + o, cap - o, "%s%s=%s", i ? ", " : "", t->cols[t->order[i]].name, v);
  }
  if (o < cap) snprintf(buf + o, cap - o, ")");
}

static esr_code diff_keyless(differ *d, sqlite3 *da, sqlite3 *db, const esr_st_table *t, esr_error *err) {
  rowset ra = {0}, rb = {0};
  size_t *oa = NULL, *ob = NULL;
  esr_code rc = read_rows(da, t, &ra, &oa, err);
  if (rc == ESR_E_OK) rc = read_rows(db, t, &rb, &ob, err);
  size_t i = 0, j = 0;
  char key[KEY_CAP];
  while (rc == ESR_E_OK && (i < ra.n || j < rb.n)) {
    int c = i >= ra.n ? 1
            : j >= rb.n
                ? -1
                : cmp_enc(ra.bytes.p + ra.off[oa[i]], ra.len[oa[i]], rb.bytes.p + rb.off[ob[j]], rb.len[ob[j]]);
    if (c == 0) {
      i++, j++;
      continue;
    }
    const rowset *r = c < 0 ? &ra : &rb;
    size_t k = c < 0 ? oa[i++] : ob[j++];
    if (row_differs(d)) {
      decode_text(t, r->bytes.p + r->off[k], r->len[k], key, sizeof key);
      report(d, c < 0 ? ESR_DIFF_ROW_ONLY_A : ESR_DIFF_ROW_ONLY_B, t->name, key, NULL, NULL, NULL);
    }
  }
  free(oa);
  free(ob);
  rowset_free(&ra);
  rowset_free(&rb);
  return rc;
}

esr_code esr_state_diff(sqlite3 *a, sqlite3 *b, int max_rows, esr_diff_fn fn, void *arg, esr_diff_counts *counts,
                        esr_error *err) {
  esr_diff_counts local;
  if (!counts) counts = &local;
  memset(counts, 0, sizeof *counts);
  differ d = {max_rows < 0 ? 0 : max_rows, fn, arg, counts, 0};
  esr_st_tables ta, tb;
  esr_code rc = esr_st_tables_read(a, &ta, err);
  if (rc != ESR_E_OK) return rc;
  if ((rc = esr_st_tables_read(b, &tb, err)) != ESR_E_OK) {
    esr_st_tables_free(&ta);
    return rc;
  }
  size_t i = 0, j = 0;
  while (rc == ESR_E_OK && (i < ta.n || j < tb.n)) {
    int c = i >= ta.n ? 1 : j >= tb.n ? -1 : strcmp(ta.v[i].name, tb.v[j].name);
    if (c) {
      const esr_st_table *t = c < 0 ? &ta.v[i++] : &tb.v[j++];
      counts->tables++;
      report(&d, c < 0 ? ESR_DIFF_TABLE_ONLY_A : ESR_DIFF_TABLE_ONLY_B, t->name, NULL, NULL, NULL, NULL);
      continue;
    }
    const esr_st_table *x = &ta.v[i++], *y = &tb.v[j++];
    if (!esr_st_same_columns(x, y)) {
      char ca[1024], cb[1024];
      columns_text(x, ca, sizeof ca);
      columns_text(y, cb, sizeof cb);
      counts->tables++;
      report(&d, ESR_DIFF_COLUMNS, x->name, NULL, NULL, ca, cb);
      continue;
    }
    d.table_rows = 0;
    rc = x->n_pk ? diff_keyed(&d, a, b, x, err) : diff_keyless(&d, a, b, x, err);
    if (d.table_rows) counts->tables++;
  }
  esr_st_tables_free(&ta);
  esr_st_tables_free(&tb);
  return rc;
}
