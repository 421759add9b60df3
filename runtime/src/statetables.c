/* statetables.c — the tables of a partition's state, their canonical row order and the typed encoding of values. */
#include "statetables.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

esr_code esr_st_error(sqlite3 *db, esr_error *err, const char *what) {
  int code = db ? sqlite3_extended_errcode(db) : SQLITE_CANTOPEN;
  const char *msg = db ? sqlite3_errmsg(db) : "cannot open";
  const char *file = db ? sqlite3_db_filename(db, "main") : NULL;
  esr_code c = code == SQLITE_NOTADB || (code & 0xff) == SQLITE_CORRUPT ? ESR_E_CORRUPT : ESR_E_SQLITE;
  return esr_error_set(err, c, code, "%s of %s: %s", what, file && *file ? file : "the database", msg);
}

esr_code esr_st_open_ro(const char *path, sqlite3 **out, esr_error *err) {
  *out = NULL;
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
    int code = db ? sqlite3_extended_errcode(db) : SQLITE_CANTOPEN;
    esr_code rc = esr_error_set(err, (code & 0xff) == SQLITE_NOTADB ? ESR_E_CORRUPT : ESR_E_IO, code, "cannot open %s: %s",
                                path, db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return rc;
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, 5000);
  /* sqlite3_open_v2 reads nothing yet: a file that is not a database shows here. */
  if (sqlite3_exec(db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL) != SQLITE_OK) {
    esr_code rc = esr_st_error(db, err, "reading the schema");
    sqlite3_close(db);
    return rc;
  }
  *out = db;
  return ESR_E_OK;
}

int esr_st_buf_put(esr_st_buf *b, const void *data, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n) cap *= 2;
    uint8_t *g = realloc(b->p, cap);
    if (!g) return -1;
    b->p = g;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->n, data, n);
  b->n += n;
  return 0;
}

void esr_st_buf_free(esr_st_buf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

static void be(uint8_t *out, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; i--, v >>= 8) out[i] = (uint8_t)v;
}

static int put_bytes(esr_st_buf *b, uint8_t type, const void *p, size_t n) {
  uint8_t h[5] = {type};
  be(h + 1, (uint64_t)n, 4);
  if (esr_st_buf_put(b, h, sizeof h) != 0) return -1;
  return esr_st_buf_put(b, p, n);
}

int esr_st_encode(esr_st_buf *b, sqlite3_stmt *st, int col) {
  uint8_t v[9];
  switch (sqlite3_column_type(st, col)) {
  case SQLITE_INTEGER:
    v[0] = 1;
    be(v + 1, (uint64_t)sqlite3_column_int64(st, col), 8);
    return esr_st_buf_put(b, v, 9);
  case SQLITE_FLOAT: {
    double d = sqlite3_column_double(st, col);
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    v[0] = 2;
    be(v + 1, bits, 8);
    return esr_st_buf_put(b, v, 9);
  }
  case SQLITE_TEXT: {
    const unsigned char *t = sqlite3_column_text(st, col);
    return put_bytes(b, 3, t, (size_t)sqlite3_column_bytes(st, col));
  }
  case SQLITE_BLOB: {
    const void *p = sqlite3_column_blob(st, col);
    return put_bytes(b, 4, p, (size_t)sqlite3_column_bytes(st, col));
  }
  default:
    v[0] = 0;
    return esr_st_buf_put(b, v, 1);
  }
}

int esr_st_encode_text(esr_st_buf *b, const char *s) {
  if (!s) {
    uint8_t z = 0;
    return esr_st_buf_put(b, &z, 1);
  }
  return put_bytes(b, 3, s, strlen(s));
}

static int put_int(esr_st_buf *b, int64_t v) {
  uint8_t x[9] = {1};
  be(x + 1, (uint64_t)v, 8);
  return esr_st_buf_put(b, x, 9);
}

int esr_st_encode_table(esr_st_buf *b, const esr_st_table *t) {
  if (esr_st_buf_put(b, "T", 1) || esr_st_encode_text(b, t->name) || put_int(b, t->n_cols)) return -1;
  for (int i = 0; i < t->n_cols; i++) {
    const esr_st_column *c = &t->cols[i];
    if (esr_st_encode_text(b, c->name) || esr_st_encode_text(b, c->type) || esr_st_encode_text(b, c->dflt) ||
        put_int(b, c->notnull) || put_int(b, c->pk) || put_int(b, c->hidden))
      return -1;
  }
  return 0;
}

static int type_class(int type) {
  switch (type) {
  case SQLITE_NULL: return 0;
  case SQLITE_INTEGER:
  case SQLITE_FLOAT: return 1;
  case SQLITE_TEXT: return 2;
  default: return 3;
  }
}

int esr_st_compare(sqlite3_stmt *a, int ca, sqlite3_stmt *b, int cb) {
  int ta = sqlite3_column_type(a, ca), tb = sqlite3_column_type(b, cb);
  int ka = type_class(ta), kb = type_class(tb);
  if (ka != kb) return ka < kb ? -1 : 1;
  if (ka == 0) return 0;
  if (ka == 1) {
    if (ta == SQLITE_INTEGER && tb == SQLITE_INTEGER) {
      int64_t x = sqlite3_column_int64(a, ca), y = sqlite3_column_int64(b, cb);
      return x < y ? -1 : x > y;
    }
    /* As SQLite compares an integer with a real: exactly, not through a rounding double. */
    if (ta == SQLITE_INTEGER || tb == SQLITE_INTEGER) {
      int flip = ta != SQLITE_INTEGER;
      int64_t i = flip ? sqlite3_column_int64(b, cb) : sqlite3_column_int64(a, ca);
      double r = flip ? sqlite3_column_double(a, ca) : sqlite3_column_double(b, cb);
      int c;
      if (isnan(r)) c = 1;
      else if (r < -9223372036854775808.0) c = 1;
      else if (r >= 9223372036854775808.0) c = -1;
      else {
        int64_t ri = (int64_t)r;
        if (i != ri) c = i < ri ? -1 : 1;
        else {
          double frac = r - (double)ri;
          c = frac > 0 ? -1 : frac < 0 ? 1 : 0;
        }
      }
      return flip ? -c : c;
    }
    double x = sqlite3_column_double(a, ca), y = sqlite3_column_double(b, cb);
    return x < y ? -1 : x > y;
  }
  const void *pa = ka == 2 ? (const void *)sqlite3_column_text(a, ca) : sqlite3_column_blob(a, ca);
  int na = sqlite3_column_bytes(a, ca);
  const void *pb = kb == 2 ? (const void *)sqlite3_column_text(b, cb) : sqlite3_column_blob(b, cb);
  int nb = sqlite3_column_bytes(b, cb);
  int n = na < nb ? na : nb;
  int c = n ? memcmp(pa, pb, (size_t)n) : 0;
  if (c) return c < 0 ? -1 : 1;
  return na < nb ? -1 : na > nb;
}

void esr_st_format(sqlite3_stmt *st, int col, char *buf, size_t cap) {
  if (!cap) return;
  switch (sqlite3_column_type(st, col)) {
  case SQLITE_NULL: snprintf(buf, cap, "NULL"); return;
  case SQLITE_INTEGER: snprintf(buf, cap, "%lld", (long long)sqlite3_column_int64(st, col)); return;
  case SQLITE_FLOAT: /* 1.0, not 1: a real must not read as the integer it differs from */
    snprintf(buf, cap, "%.17g", sqlite3_column_double(st, col));
    if (!strpbrk(buf, ".eEnN") && strlen(buf) + 3 <= cap) strcat(buf, ".0");
    return;
  case SQLITE_TEXT: {
    const char *t = (const char *)sqlite3_column_text(st, col);
    int n = sqlite3_column_bytes(st, col);
    size_t o = 0;
    buf[o++] = '\'';
    for (int i = 0; i < n && o + 6 < cap; i++) {
      unsigned char ch = (unsigned char)t[i];
      if (ch == '\'') {
        buf[o++] = '\'';
        buf[o++] = '\'';
      } else if (ch < 0x20 || ch == 0x7f) {
        o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
      } else {
        buf[o++] = (char)ch;
      }
      if (i + 1 < n && o + 6 >= cap) {
        memcpy(buf + o, "...", 3);
        o += 3;
        break;
      }
    }
    buf[o++] = '\'';
    buf[o] = '\0';
    return;
  }
  default: {
    const unsigned char *p = sqlite3_column_blob(st, col);
    int n = sqlite3_column_bytes(st, col);
    size_t o = (size_t)snprintf(buf, cap, "x'");
    for (int i = 0; i < n && o + 6 < cap; i++) o += (size_t)snprintf(buf + o, cap - o, "%02x", p[i]);
    if (o + 2 < cap) snprintf(buf + o, cap - o, "'");
    return;
  }
  }
}

/* "name" with inner quotes doubled. */
static int quote_ident(esr_st_buf *b, const char *name) {
  if (esr_st_buf_put(b, "\"", 1)) return -1;
  for (const char *p = name; *p; p++)
    if (esr_st_buf_put(b, p, 1) || (*p == '"' && esr_st_buf_put(b, "\"", 1))) return -1;
  return esr_st_buf_put(b, "\"", 1);
}

static int put_str(esr_st_buf *b, const char *s) { return esr_st_buf_put(b, s, strlen(s)); }

static char *dup_text(sqlite3_stmt *st, int col) {
  const char *t = (const char *)sqlite3_column_text(st, col);
  return t ? strdup(t) : NULL;
}

static void table_clear(esr_st_table *t) {
  for (int i = 0; i < t->n_cols; i++) {
    free(t->cols[i].name);
    free(t->cols[i].type);
    free(t->cols[i].dflt);
  }
  free(t->cols);
  free(t->order);
  free(t->name);
  free(t->select_sql);
  memset(t, 0, sizeof *t);
}

void esr_st_tables_free(esr_st_tables *t) {
  if (!t) return;
  for (size_t i = 0; i < t->n; i++) table_clear(&t->v[i]);
  free(t->v);
  memset(t, 0, sizeof *t);
}

static esr_code nomem(esr_error *err) { return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory"); }

/* Columns (PRAGMA table_xinfo), the row order and the SELECT of one table. */
static esr_code describe(sqlite3 *db, esr_st_table *t, esr_error *err) {
  esr_st_buf sql = {0};
  sqlite3_stmt *st = NULL;
  esr_code rc = ESR_E_OK;
  if (put_str(&sql, "PRAGMA main.table_xinfo(") || quote_ident(&sql, t->name) || put_str(&sql, ")") ||
      esr_st_buf_put(&sql, "", 1)) {
    rc = nomem(err);
    goto done;
  }
  if (sqlite3_prepare_v2(db, (const char *)sql.p, -1, &st, NULL) != SQLITE_OK) {
    rc = esr_st_error(db, err, "reading the columns");
    goto done;
  }
  int cap = 0, step;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    if (t->n_cols == cap) {
      cap = cap ? cap * 2 : 8;
      esr_st_column *g = realloc(t->cols, (size_t)cap * sizeof *g);
      if (!g) {
        rc = nomem(err);
        goto done;
      }
      t->cols = g;
    }
    esr_st_column *c = &t->cols[t->n_cols++];
    memset(c, 0, sizeof *c);
    c->name = dup_text(st, 1);
    c->type = dup_text(st, 2);
    if (!c->type) c->type = strdup("");
    c->notnull = sqlite3_column_int(st, 3);
    c->dflt = dup_text(st, 4);
    c->pk = sqlite3_column_int(st, 5);
    c->hidden = sqlite3_column_int(st, 6);
    if (!c->name || !c->type || (sqlite3_column_type(st, 4) != SQLITE_NULL && !c->dflt)) {
      rc = nomem(err);
      goto done;
    }
    if (c->pk) t->n_pk++;
  }
  if (step != SQLITE_DONE) {
    rc = esr_st_error(db, err, "reading the columns");
    goto done;
  }
  if (!(t->order = calloc((size_t)t->n_cols + 1, sizeof *t->order))) {
    rc = nomem(err);
    goto done;
  }
  int k = 0;
  for (int pos = 1; pos <= t->n_pk; pos++)
    for (int i = 0; i < t->n_cols; i++)
      if (t->cols[i].pk == pos) t->order[k++] = i;
  for (int i = 0; i < t->n_cols; i++)
    if (!t->cols[i].pk) t->order[k++] = i;
  sql.n = 0;
  if (put_str(&sql, "SELECT ")) goto oom;
  for (int i = 0; i < t->n_cols; i++)
    if ((i && put_str(&sql, ", ")) || quote_ident(&sql, t->cols[t->order[i]].name)) goto oom;
  if (!t->n_cols && put_str(&sql, "NULL")) goto oom;
  if (put_str(&sql, " FROM main.") || quote_ident(&sql, t->name)) goto oom;
  if (t->n_pk) {
    if (put_str(&sql, " ORDER BY ")) goto oom;
    for (int i = 0; i < t->n_cols; i++)
      if ((i && put_str(&sql, ", ")) || quote_ident(&sql, t->cols[t->order[i]].name) || put_str(&sql, " COLLATE BINARY"))
        goto oom;
  }
  if (esr_st_buf_put(&sql, "", 1)) goto oom;
  t->select_sql = (char *)sql.p;
  sql.p = NULL;
  goto done;
oom:
  rc = nomem(err);
done:
  sqlite3_finalize(st);
  esr_st_buf_free(&sql);
  return rc;
}

esr_code esr_st_tables_read(sqlite3 *db, esr_st_tables *out, esr_error *err) {
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = NULL;
  esr_code rc = ESR_E_OK;
  /* LIKE is case-insensitive for ASCII, as the store's guard is about esr_* names. */
  if (sqlite3_prepare_v2(db,
                         "SELECT name FROM main.sqlite_schema WHERE type = 'table' AND name NOT LIKE 'esr\\_%' "
                         "ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                         "AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name COLLATE BINARY",
                         -1, &st, NULL) != SQLITE_OK)
    return esr_st_error(db, err, "listing the tables");
  size_t cap = 0;
  int step;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    if (out->n == cap) {
      cap = cap ? cap * 2 : 8;
      esr_st_table *g = realloc(out->v, cap * sizeof *g);
      if (!g) {
        rc = nomem(err);
        goto fail;
      }
      out->v = g;
    }
    esr_st_table *t = &out->v[out->n++];
    memset(t, 0, sizeof *t);
    if (!(t->name = dup_text(st, 0))) {
      rc = nomem(err);
      goto fail;
    }
  }
  if (step != SQLITE_DONE) {
    rc = esr_st_error(db, err, "listing the tables");
    goto fail;
  }
  sqlite3_finalize(st);
  st = NULL;
  for (size_t i = 0; i < out->n; i++)
    if ((rc = describe(db, &out->v[i], err)) != ESR_E_OK) goto fail;
  return ESR_E_OK;
fail:
  sqlite3_finalize(st);
  esr_st_tables_free(out);
  return rc;
}

const esr_st_table *esr_st_tables_find(const esr_st_tables *t, const char *name) {
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->v[i].name, name) == 0) return &t->v[i];
  return NULL;
}

static int same_str(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

int esr_st_same_columns(const esr_st_table *a, const esr_st_table *b) {
  if (a->n_cols != b->n_cols) return 0;
  for (int i = 0; i < a->n_cols; i++) {
    const esr_st_column *x = &a->cols[i], *y = &b->cols[i];
    if (!same_str(x->name, y->name) || !same_str(x->type, y->type) || !same_str(x->dflt, y->dflt) ||
        x->notnull != y->notnull || x->pk != y->pk || x->hidden != y->hidden)
      return 0;
  }
  return 1;
}
