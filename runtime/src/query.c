/* query.c — `esr query`: a directory's partition databases found, opened read-only in one read transaction each, their
 * tables gathered into union tables (query_union.c), SQL checked to be read-only and run, rows written as aligned
 * text, CSV or JSON lines (query.h). */
#include "query.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "query_int.h"
#include "valuefmt.h"

/* ------------------------------------------------------------------------------------------------ the directory */

/* "<topic>-<digits><suffix>" -> topic and partition. */
static int parse_part_name(const char *name, const char *suffix, char **topic, int32_t *partition) {
  size_t n = strlen(name), sl = strlen(suffix);
  if (name[0] == '.' || n <= sl || strcmp(name + n - sl, suffix) != 0) return 0;
  size_t end = n - sl, i = end;
  while (i > 0 && isdigit((unsigned char)name[i - 1])) i--;
  if (i == end || end - i > 9 || i < 2 || name[i - 1] != '-') return 0;
  long p = strtol(name + i, NULL, 10);
  if (!(*topic = strndup(name, i - 1))) return -1;
  *partition = (int32_t)p;
  return 1;
}

static int cmp_part(const void *a, const void *b) {
  const esr_qpart *x = a, *y = b;
  int c = strcmp(x->topic, y->topic);
  if (c) return c;
  return (x->partition > y->partition) - (x->partition < y->partition);
}

static esr_code add_part(esr_query *q, size_t *cap, char *topic, int32_t partition, const char *path, esr_error *err) {
  if (q->n_parts == *cap) {
    size_t nc = *cap ? *cap * 2 : 16;
    esr_qpart *g = realloc(q->parts, nc * sizeof *g);
    if (!g) goto nomem;
    q->parts = g;
    *cap = nc;
  }
  esr_qpart *p = &q->parts[q->n_parts];
  memset(p, 0, sizeof *p);
  if (!(p->path = strdup(path))) goto nomem;
  p->topic = topic;
  p->partition = partition;
  q->n_parts++;
  return ESR_E_OK;
nomem:
  free(topic);
  return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
}

/* A state or replay directory: <topic>-<partition>.db files; else a checkpoint directory: the newest complete
 * checkpoint of each <topic>-<partition>/ directory. */
static esr_code discover(esr_query *q, const char *dir, esr_error *err) {
  size_t cap = 0;
  char path[4096];
  esr_code rc = ESR_E_OK;
  for (int pass = 0; pass < 2 && q->n_parts == 0 && rc == ESR_E_OK; pass++) {
    DIR *d = opendir(dir);
    if (!d)
      return esr_error_set(err, errno == ENOENT || errno == ENOTDIR ? ESR_E_CONFIG : ESR_E_IO, errno,
                           "cannot read directory %s: %s", dir, strerror(errno));
    struct dirent *e;
    while (rc == ESR_E_OK && (e = readdir(d))) {
      char *topic = NULL;
      int32_t partition;
      int k = parse_part_name(e->d_name, pass == 0 ? ".db" : "", &topic, &partition);
      if (k < 0) {
        rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
        break;
      }
      if (k == 0) continue;
      struct stat st;
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      if (stat(path, &st) != 0 || (pass == 0 ? !S_ISREG(st.st_mode) : !S_ISDIR(st.st_mode))) {
        free(topic);
        continue;
      }
      if (pass == 1) {
        esr_manifest_list *l = NULL;
        esr_error lerr;
        if (esr_checkpoint_list(dir, topic, partition, &l, &lerr) != ESR_E_OK || l->n == 0 ||
            esr_checkpoint_path(path, sizeof path, dir, topic, partition, l->v[0]->next_offset, ".db") != 0) {
          esr_manifest_list_free(l);
          free(topic);
          continue;
        }
        esr_manifest_list_free(l);
      }
      rc = add_part(q, &cap, topic, partition, path, err);
      if (rc == ESR_E_OK && pass == 1) q->checkpoints = 1;
    }
    closedir(d);
  }
  if (rc != ESR_E_OK) return rc;
  if (q->n_parts == 0)
    return esr_error_set(err, ESR_E_CONFIG, 0,
                         "no partition database in %s: expected <topic>-<partition>.db files (a state or replay "
                         "directory) or <topic>-<partition>/ checkpoint directories",
                         dir);
  qsort(q->parts, q->n_parts, sizeof *q->parts, cmp_part);
  return ESR_E_OK;
}

/* ------------------------------------------------------------------------------------------------ the schema */

static esr_qtable *table_get(esr_query *q, const char *name, esr_error *err) {
  for (size_t i = 0; i < q->n_tables; i++)
    if (sqlite3_stricmp(q->tables[i].name, name) == 0) return &q->tables[i];
  esr_qtable *g = realloc(q->tables, (q->n_tables + 1) * sizeof *g);
  if (!g) goto nomem;
  q->tables = g;
  esr_qtable *t = &g[q->n_tables];
  memset(t, 0, sizeof *t);
  if (!(t->name = strdup(name)) || !(t->has = calloc(q->n_parts, sizeof *t->has))) {
    free(t->name);
    free(t->has);
    goto nomem;
  }
  q->n_tables++;
  return t;
nomem:
  esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  return NULL;
}

static int col_add(esr_qtable *t, const char *name, const char *type, const char *coll) {
  esr_qcol *g = realloc(t->cols, (size_t)(t->n_cols + 1) * sizeof *g);
  if (!g) return -1;
  t->cols = g;
  esr_qcol *c = &g[t->n_cols];
  c->name = strdup(name);
  c->type = strdup(type ? type : "");
  c->coll = strdup(coll ? coll : "BINARY");
  c->uniform = 1;
  if (!c->name || !c->type || !c->coll) {
    free(c->name);
    free(c->type);
    free(c->coll);
    return -1;
  }
  t->n_cols++;
  return 0;
}

/* Reads one partition's tables and views (inside its read transaction). Phase 0 adds them and their columns to the
 * union tables; phase 1 (once every partition went through phase 0) records which columns the partition has. */
static esr_code read_schema(esr_query *q, size_t pi, int phase, esr_error *err) {
  esr_qpart *p = &q->parts[pi];
  sqlite3_stmt *tabs = NULL, *cols = NULL;
  esr_code rc = ESR_E_OK;
  if (sqlite3_prepare_v2(p->db,
                         "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') "
                         "AND substr(name, 1, 7) <> 'sqlite_' ORDER BY name",
                         -1, &tabs, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(p->db, "SELECT name FROM pragma_table_xinfo(?1) WHERE hidden IN (0, 2, 3) ORDER BY cid", -1,
                         &cols, NULL) != SQLITE_OK)
    goto sqlfail;
  int r;
  while ((r = sqlite3_step(tabs)) == SQLITE_ROW) {
    const char *tname = (const char *)sqlite3_column_text(tabs, 0);
    esr_qtable *t = table_get(q, tname, err);
    if (!t) {
      rc = ESR_E_NOMEM;
      goto out;
    }
    if (phase == 1 && !(t->has[pi] = calloc((size_t)t->n_cols + 1, 1))) goto nomem;
    sqlite3_bind_text(cols, 1, tname, -1, SQLITE_TRANSIENT);
    while ((r = sqlite3_step(cols)) == SQLITE_ROW) {
      const char *cname = (const char *)sqlite3_column_text(cols, 0);
      int k = 0;
      while (k < t->n_cols && sqlite3_stricmp(t->cols[k].name, cname) != 0) k++; /* names match as in SQLite */
      if (phase == 1) {
        if (k < t->n_cols) t->has[pi][k] = 1;
        continue;
      }
      const char *type = NULL, *coll = NULL;
      if (sqlite3_table_column_metadata(p->db, "main", tname, cname, &type, &coll, NULL, NULL, NULL) != SQLITE_OK) {
        type = NULL; /* a view's column has no declared type */
        coll = NULL;
      }
      if (k == t->n_cols) {
        if (col_add(t, cname, type, coll) != 0) goto nomem;
      } else if (strcmp(t->cols[k].type, type ? type : "") != 0 ||
                 sqlite3_stricmp(t->cols[k].coll, coll ? coll : "BINARY") != 0) {
        t->cols[k].uniform = 0; /* partitions compare this column differently: no pushdown */
      }
    }
    sqlite3_reset(cols);
    if (r != SQLITE_DONE) goto sqlfail;
  }
  if (r != SQLITE_DONE) goto sqlfail;
  goto out;
nomem:
  rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  goto out;
sqlfail:
  rc = esr_error_set(err, ESR_E_SQLITE, sqlite3_extended_errcode(p->db), "partition database %s: %s", p->path,
                     sqlite3_errmsg(p->db));
out:
  sqlite3_finalize(tabs);
  sqlite3_finalize(cols);
  return rc;
}

/* The partition and topic columns' names: "partition" and "topic" unless the table has a column so named. */
static void fixed_names(esr_qtable *t) {
  int p = 0, tp = 0;
  for (int i = 0; i < t->n_cols; i++) {
    p |= sqlite3_stricmp(t->cols[i].name, "partition") == 0;
    tp |= sqlite3_stricmp(t->cols[i].name, "topic") == 0;
  }
  snprintf(t->pcol, sizeof t->pcol, "%s", p ? "esr_partition" : "partition");
  snprintf(t->tcol, sizeof t->tcol, "%s", tp ? "esr_topic" : "topic");
}

/* ------------------------------------------------------------------------------------------------ open / close */

static int authorize(void *arg, int action, const char *a1, const char *a2, const char *db, const char *trigger) {
  esr_query *q = arg;
  (void)a2;
  (void)db;
  (void)trigger;
  static const char *const readable[] = {"table_info", "table_xinfo", "table_list", "index_list", "index_info",
                                         "index_xinfo", "collation_list", "function_list", "module_list",
                                         "pragma_list", "compile_options", NULL};
  switch (action) {
  case SQLITE_ATTACH:
  case SQLITE_DETACH:
    snprintf(q->denied, sizeof q->denied, "%s is not allowed", action == SQLITE_ATTACH ? "ATTACH" : "DETACH");
    return SQLITE_DENY;
  case SQLITE_PRAGMA:
    for (const char *const *r = readable; *r; r++)
      if (a1 && sqlite3_stricmp(a1, *r) == 0) return SQLITE_OK;
    snprintf(q->denied, sizeof q->denied, "PRAGMA %.60s is not allowed (only pragmas that read the schema are)",
             a1 ? a1 : "");
    return SQLITE_DENY;
  }
  return SQLITE_OK;
}

void esr_query_close(esr_query *q) {
  if (!q) return;
  sqlite3_close(q->db); /* first: its union tables' cursors hold statements of the partition connections */
  for (size_t i = 0; i < q->n_parts; i++) {
    if (q->parts[i].db) {
      sqlite3_exec(q->parts[i].db, "ROLLBACK", NULL, NULL, NULL);
      sqlite3_close(q->parts[i].db);
    }
    free(q->parts[i].topic);
    free(q->parts[i].path);
  }
  for (size_t i = 0; i < q->n_tables; i++) {
    esr_qtable *t = &q->tables[i];
    for (int k = 0; k < t->n_cols; k++) {
      free(t->cols[k].name);
      free(t->cols[k].type);
      free(t->cols[k].coll);
    }
    free(t->cols);
    if (t->has)
      for (size_t j = 0; j < q->n_parts; j++) free(t->has[j]);
    free(t->has);
    free(t->name);
  }
  free(q->tables);
  free(q->parts);
  free(q);
}

size_t esr_query_partitions(const esr_query *q) { return q->n_parts; }
int esr_query_from_checkpoints(const esr_query *q) { return q->checkpoints; }
int64_t esr_query_rows_read(const esr_query *q) { return q->rows_read; }

esr_code esr_query_open(const char *dir, esr_query **out, esr_error *err) {
  *out = NULL;
  esr_query *q = calloc(1, sizeof *q);
  if (!q) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  char *abs = realpath(dir, NULL); /* an absolute path: SQLite would read "file:..." as a URI */
  esr_code rc;
  if (!abs) {
    rc = esr_error_set(err, errno == ENOENT || errno == ENOTDIR ? ESR_E_CONFIG : ESR_E_IO, errno, "%s: %s", dir,
                       strerror(errno));
    goto fail;
  }
  if ((rc = discover(q, abs, err)) != ESR_E_OK) goto fail;
  for (size_t i = 0; i < q->n_parts; i++) {
    esr_qpart *p = &q->parts[i];
    int r = sqlite3_open_v2(p->path, &p->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (r == SQLITE_OK) {
      sqlite3_busy_timeout(p->db, 5000); /* a worker's WAL recovery or checkpoint can hold a lock for a moment */
      sqlite3_extended_result_codes(p->db, 1);
      r = sqlite3_exec(p->db, "BEGIN", NULL, NULL, NULL);
    }
    if (r != SQLITE_OK) {
      rc = esr_error_set(err, ESR_E_IO, r, "cannot open partition database %s: %s", p->path,
                         p->db ? sqlite3_errmsg(p->db) : sqlite3_errstr(r));
      goto fail;
    }
    if ((rc = read_schema(q, i, 0, err)) != ESR_E_OK) goto fail; /* the first read: the snapshot starts here */
  }
  for (size_t i = 0; i < q->n_parts; i++)
    if ((rc = read_schema(q, i, 1, err)) != ESR_E_OK) goto fail;
  for (size_t i = 0; i < q->n_tables; i++) fixed_names(&q->tables[i]);

  int r = sqlite3_open_v2(":memory:", &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (r != SQLITE_OK) {
    rc = esr_error_set(err, ESR_E_SQLITE, r, "cannot open an in-memory database: %s", sqlite3_errstr(r));
    goto fail;
  }
  sqlite3_extended_result_codes(q->db, 1);
  if ((rc = esr__union_create(q, err)) != ESR_E_OK) goto fail;
  sqlite3_limit(q->db, SQLITE_LIMIT_ATTACHED, 0);
  sqlite3_exec(q->db, "PRAGMA query_only = 1", NULL, NULL, NULL);
  sqlite3_set_authorizer(q->db, authorize, q);
  free(abs);
  *out = q;
  return ESR_E_OK;
fail:
  free(abs);
  esr_query_close(q);
  return rc;
}

/* ------------------------------------------------------------------------------------------------ output */

typedef struct text_rows {
  char **cells; /* n_rows * n_cols, row-major; the header first */
  unsigned char *right; /* per cell: right-aligned (a number) */
  size_t n, cap;
  int n_cols;
} text_rows;

static int text_add(text_rows *t, const char *s, int right) {
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 256;
    char **g = realloc(t->cells, cap * sizeof *g);
    if (!g) return -1;
    t->cells = g;
    unsigned char *r = realloc(t->right, cap);
    if (!r) return -1;
    t->right = r;
    t->cap = cap;
  }
  if (!(t->cells[t->n] = strdup(s))) return -1;
  t->right[t->n] = (unsigned char)right;
  t->n++;
  return 0;
}

static void text_free(text_rows *t) {
  for (size_t i = 0; i < t->n; i++) free(t->cells[i]);
  free(t->cells);
  free(t->right);
}

static int text_print(const text_rows *t, FILE *out) {
  size_t *w = calloc((size_t)t->n_cols + 1, sizeof *w);
  if (!w) return -1;
  for (size_t i = 0; i < t->n; i++) {
    size_t c = i % (size_t)t->n_cols, l = esr_utf8_width((const unsigned char *)t->cells[i], strlen(t->cells[i]));
    if (l > w[c]) w[c] = l;
  }
  size_t rows = t->n / (size_t)t->n_cols;
  for (size_t r = 0; r < rows; r++) {
    for (int c = 0; c < t->n_cols; c++) {
      size_t i = r * (size_t)t->n_cols + (size_t)c;
      size_t l = esr_utf8_width((const unsigned char *)t->cells[i], strlen(t->cells[i]));
      if (c) fputs("  ", out);
      if (t->right[i]) fprintf(out, "%*s", (int)(w[c] - l), "");
      fputs(t->cells[i], out);
      if (!t->right[i] && c + 1 < t->n_cols) fprintf(out, "%*s", (int)(w[c] - l), "");
    }
    fputs("\n", out);
    if (r == 0) {
      for (int c = 0; c < t->n_cols; c++) {
        if (c) fputs("  ", out);
        for (size_t k = 0; k < w[c]; k++) fputc('-', out);
      }
      fputs("\n", out);
    }
  }
  free(w);
  return 0;
}

static void csv_field(FILE *out, const char *s, size_t n) {
  int quote = 0;
  for (size_t i = 0; i < n && !quote; i++) quote = s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
  if (!quote) {
    fwrite(s, 1, n, out);
    return;
  }
  fputc('"', out);
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '"') fputc('"', out);
    fputc(s[i], out);
  }
  fputc('"', out);
}

/* Steps one statement to its end, writing its rows. */
static esr_code run_one(esr_query *q, sqlite3_stmt *st, esr_query_format fmt, FILE *out, int64_t *rows,
                        esr_error *err) {
  int n = sqlite3_column_count(st);
  text_rows t = {.n_cols = n};
  char buf[65536];
  esr_code rc = ESR_E_OK;
  if (n > 0 && fmt == ESR_QUERY_TEXT)
    for (int i = 0; i < n; i++)
      if (text_add(&t, sqlite3_column_name(st, i), 0) != 0) goto nomem;
  if (n > 0 && fmt == ESR_QUERY_CSV) {
    for (int i = 0; i < n; i++) {
      if (i) fputc(',', out);
      const char *name = sqlite3_column_name(st, i);
      csv_field(out, name, strlen(name));
    }
    fputs("\r\n", out);
  }
  int r;
  int64_t count = 0;
  q->read_failed = 0;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    count++;
    for (int i = 0; i < n; i++) {
      esr_cell c = esr_cell_of_column(st, i);
      switch (fmt) {
      case ESR_QUERY_TEXT:
        if (text_add(&t, esr_cell_plain(&c, buf, sizeof buf), c.type == SQLITE_INTEGER || c.type == SQLITE_FLOAT) !=
            0)
          goto nomem;
        break;
      case ESR_QUERY_CSV:
        if (i) fputc(',', out);
        if (c.type == SQLITE_TEXT)
          csv_field(out, (const char *)c.p, c.n);
        else if (c.type != SQLITE_NULL)
          fputs(esr_cell_plain(&c, buf, sizeof buf), out);
        break;
      case ESR_QUERY_JSON:
        fputs(i ? "," : "{", out);
        esr_write_json_string(out, sqlite3_column_name(st, i), strlen(sqlite3_column_name(st, i)));
        fputc(':', out);
        esr_write_json_cell(out, &c);
        break;
      }
    }
    if (fmt == ESR_QUERY_CSV) fputs("\r\n", out);
    if (fmt == ESR_QUERY_JSON) fputs(n ? "}\n" : "{}\n", out);
  }
  if (r != SQLITE_DONE) {
    rc = esr_error_set(err, q->read_failed ? ESR_E_SQLITE : ESR_E_CONFIG, sqlite3_extended_errcode(q->db), "%s",
                       sqlite3_errmsg(q->db));
    goto out;
  }
  if (fmt == ESR_QUERY_TEXT && n > 0) {
    if (text_print(&t, out) != 0) goto nomem;
    fprintf(out, "(%" PRId64 " row%s)\n", count, count == 1 ? "" : "s");
  }
  if (rows) *rows += count;
  goto out;
nomem:
  rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
out:
  text_free(&t);
  return rc;
}

esr_code esr_query_run(esr_query *q, const char *sql, esr_query_format fmt, FILE *out, int64_t *rows,
                       esr_error *err) {
  sqlite3_stmt **stmts = NULL;
  size_t n = 0, cap = 0;
  esr_code rc = ESR_E_OK;
  if (rows) *rows = 0;
  /* Compile everything first: nothing runs unless every statement is a read. */
  for (const char *p = sql; p && *p;) {
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    q->denied[0] = '\0';
    if (sqlite3_prepare_v2(q->db, p, -1, &st, &tail) != SQLITE_OK) {
      if (q->denied[0])
        rc = esr_error_set(err, ESR_E_CONFIG, SQLITE_AUTH, "refused: %s", q->denied);
      else
        rc = esr_error_set(err, ESR_E_CONFIG, sqlite3_extended_errcode(q->db), "%s", sqlite3_errmsg(q->db));
      goto out;
    }
    p = tail;
    if (!st) continue; /* a comment or white space */
    if (n == cap) {
      size_t nc = cap ? cap * 2 : 4;
      sqlite3_stmt **g = realloc(stmts, nc * sizeof *g);
      if (!g) {
        sqlite3_finalize(st);
        rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
        goto out;
      }
      stmts = g;
      cap = nc;
    }
    stmts[n++] = st;
    if (!sqlite3_stmt_readonly(st)) {
      rc = esr_error_set(err, ESR_E_CONFIG, 0, "refused: not a read-only statement: %s", sqlite3_sql(st));
      goto out;
    }
  }
  if (n == 0) {
    rc = esr_error_set(err, ESR_E_CONFIG, 0, "no SQL statement to run");
    goto out;
  }
  for (size_t i = 0; i < n && rc == ESR_E_OK; i++) {
    int64_t r = 0;
    rc = run_one(q, stmts[i], fmt, out, &r, err);
    if (rows) *rows += r;
  }
  fflush(out);
  if (rc == ESR_E_OK && ferror(out)) rc = esr_error_set(err, ESR_E_IO, errno, "writing the output failed");
out:
  for (size_t i = 0; i < n; i++) sqlite3_finalize(stmts[i]);
  free(stmts);
  return rc;
}
