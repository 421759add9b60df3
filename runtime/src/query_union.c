/* query_union.c — the esr_union virtual table module: one table of many partition databases, each read through its
 * own connection (query.h says what a query sees). Read-only by construction: the module has no xUpdate, so SQLite
 * refuses any write to a union table, and the partition connections are opened read-only anyway.
 *
 * Pushdown. xBestIndex hands constraints on real columns (=, >, >=, <, <=, IS) to xFilter with the collation the
 * outer query compares with (sqlite3_vtab_collation), and xFilter adds them to each partition's own SELECT, so that a
 * lookup by key uses each partition's index. This is exact only when the partition compares as the outer query would:
 * same collation (asked for explicitly) and the same affinity (the union column's declared type is the partition's:
 * `uniform`); other constraints are left to SQLite alone. Nothing is marked omitted: SQLite checks every constraint
 * again on the rows returned, so a pushed constraint can only save work, never change a result. `partition = N`
 * with an integer N, and `topic = 'T'` compared with BINARY, select which partitions are read at all. */
#include <stdlib.h>
#include <string.h>

#include "query_int.h"

typedef struct uvtab {
  sqlite3_vtab base;
  esr_query *q;
  const esr_qtable *t;
} uvtab;

/* One constraint as xFilter receives it (idxStr "col op collation;" in argv order). */
typedef struct ucons {
  int col; /* union column index: 0 partition, 1 topic, 2.. the table's columns */
  char op[3];
  char coll[16];
} ucons;

typedef struct ucursor {
  sqlite3_vtab_cursor base;
  char *idx;            /* the plan the cached statements were prepared for */
  sqlite3_stmt **stmts; /* per partition, prepared lazily for idx */
  ucons *cons;
  int n_cons;
  sqlite3_value **args; /* this scan's constraint values (copies) */
  int n_args;
  size_t part; /* the partition being read */
  sqlite3_stmt *cur;
  int eof;
  sqlite3_int64 rowid;
} ucursor;

#define FIXED_COLS 2 /* partition, topic */

static int builtin_collation(const char *c) {
  return sqlite3_stricmp(c, "BINARY") == 0 || sqlite3_stricmp(c, "NOCASE") == 0 || sqlite3_stricmp(c, "RTRIM") == 0;
}

static int u_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out, char **errmsg) {
  esr_query *q = aux;
  if (argc < 4) {
    *errmsg = sqlite3_mprintf("esr_union: the table number is missing");
    return SQLITE_ERROR;
  }
  long idx = strtol(argv[3], NULL, 10);
  if (idx < 0 || (size_t)idx >= q->n_tables) {
    *errmsg = sqlite3_mprintf("esr_union: no table %s", argv[3]);
    return SQLITE_ERROR;
  }
  const esr_qtable *t = &q->tables[idx];
  sqlite3_str *ddl = sqlite3_str_new(db);
  sqlite3_str_appendf(ddl, "CREATE TABLE x(\"%w\" INTEGER, \"%w\" TEXT HIDDEN", t->pcol, t->tcol);
  for (int i = 0; i < t->n_cols; i++) {
    const esr_qcol *c = &t->cols[i];
    sqlite3_str_appendf(ddl, ", \"%w\"", c->name);
    if (c->type[0]) sqlite3_str_appendf(ddl, " \"%w\"", c->type);
    if (c->uniform && builtin_collation(c->coll)) sqlite3_str_appendf(ddl, " COLLATE %s", c->coll);
  }
  sqlite3_str_appendall(ddl, ")");
  char *sql = sqlite3_str_finish(ddl);
  if (!sql) return SQLITE_NOMEM;
  int rc = sqlite3_declare_vtab(db, sql);
  sqlite3_free(sql);
  if (rc != SQLITE_OK) {
    *errmsg = sqlite3_mprintf("esr_union: table %s: %s", t->name, sqlite3_errmsg(db));
    return rc;
  }
  uvtab *v = sqlite3_malloc(sizeof *v);
  if (!v) return SQLITE_NOMEM;
  memset(v, 0, sizeof *v);
  v->q = q;
  v->t = t;
  *out = &v->base;
  return SQLITE_OK;
}

static int u_disconnect(sqlite3_vtab *vt) {
  sqlite3_free(vt);
  return SQLITE_OK;
}

static const char *op_text(unsigned char op) {
  switch (op) {
  case SQLITE_INDEX_CONSTRAINT_EQ: return "=";
  case SQLITE_INDEX_CONSTRAINT_GT: return ">";
  case SQLITE_INDEX_CONSTRAINT_GE: return ">=";
  case SQLITE_INDEX_CONSTRAINT_LT: return "<";
  case SQLITE_INDEX_CONSTRAINT_LE: return "<=";
  case SQLITE_INDEX_CONSTRAINT_IS: return "IS";
  }
  return NULL;
}

static int u_best_index(sqlite3_vtab *vt, sqlite3_index_info *info) {
  uvtab *v = (uvtab *)vt;
  const esr_qtable *t = v->t;
  sqlite3_str *plan = sqlite3_str_new(NULL);
  double cost = 1e6 * (double)(v->q->n_parts ? v->q->n_parts : 1);
  int argi = 0;
  for (int i = 0; i < info->nConstraint; i++) {
    const struct sqlite3_index_constraint *c = &info->aConstraint[i];
    const char *op = op_text(c->op);
    if (!c->usable || !op || c->iColumn < 0) continue;
    const char *coll = sqlite3_vtab_collation(info, i);
    if (!coll) coll = "BINARY";
    if (c->iColumn == 0) {
      if (c->op != SQLITE_INDEX_CONSTRAINT_EQ) continue;
      cost /= (double)(v->q->n_parts ? v->q->n_parts : 1);
    } else if (c->iColumn == 1) {
      if (c->op != SQLITE_INDEX_CONSTRAINT_EQ || sqlite3_stricmp(coll, "BINARY") != 0) continue;
      cost /= 2;
    } else {
      const esr_qcol *col = &t->cols[c->iColumn - FIXED_COLS];
      if (!col->uniform || !builtin_collation(coll)) continue;
      cost /= c->op == SQLITE_INDEX_CONSTRAINT_EQ || c->op == SQLITE_INDEX_CONSTRAINT_IS ? 100 : 4;
    }
    info->aConstraintUsage[i].argvIndex = ++argi;
    info->aConstraintUsage[i].omit = 0; /* SQLite checks it again: pushdown only saves work */
    sqlite3_str_appendf(plan, "%d %s %s;", c->iColumn, op, coll);
  }
  char *s = sqlite3_str_finish(plan);
  if (argi > 0 && !s) return SQLITE_NOMEM;
  info->idxStr = s;
  info->needToFreeIdxStr = 1;
  info->estimatedCost = cost;
  info->estimatedRows = (sqlite3_int64)(cost > 1 ? cost : 1);
  return SQLITE_OK;
}

static int u_open(sqlite3_vtab *vt, sqlite3_vtab_cursor **out) {
  uvtab *v = (uvtab *)vt;
  ucursor *c = sqlite3_malloc(sizeof *c);
  if (!c) return SQLITE_NOMEM;
  memset(c, 0, sizeof *c);
  c->stmts = sqlite3_malloc64(sizeof *c->stmts * (v->q->n_parts + 1));
  if (!c->stmts) {
    sqlite3_free(c);
    return SQLITE_NOMEM;
  }
  memset(c->stmts, 0, sizeof *c->stmts * (v->q->n_parts + 1));
  c->eof = 1;
  *out = &c->base;
  return SQLITE_OK;
}

static void drop_plan(ucursor *c, size_t n_parts) {
  for (size_t i = 0; i < n_parts; i++) {
    sqlite3_finalize(c->stmts[i]);
    c->stmts[i] = NULL;
  }
  sqlite3_free(c->idx);
  c->idx = NULL;
  sqlite3_free(c->cons);
  c->cons = NULL;
  c->n_cons = 0;
}

static void drop_args(ucursor *c) {
  for (int i = 0; i < c->n_args; i++) sqlite3_value_free(c->args[i]);
  sqlite3_free(c->args);
  c->args = NULL;
  c->n_args = 0;
}

static int u_close(sqlite3_vtab_cursor *cur) {
  ucursor *c = (ucursor *)cur;
  uvtab *v = (uvtab *)cur->pVtab;
  drop_plan(c, v->q->n_parts);
  drop_args(c);
  sqlite3_free(c->stmts);
  sqlite3_free(c);
  return SQLITE_OK;
}

static int parse_plan(ucursor *c, const char *idx) {
  int n = 0;
  for (const char *p = idx; p && *p; p++) n += *p == ';';
  c->cons = sqlite3_malloc64(sizeof *c->cons * (size_t)(n + 1));
  if (!c->cons) return SQLITE_NOMEM;
  c->n_cons = 0;
  const char *p = idx;
  while (p && *p) {
    ucons *u = &c->cons[c->n_cons];
    int used = 0;
    if (sscanf(p, "%d %2s %15[^;];%n", &u->col, u->op, u->coll, &used) != 3 || used <= 0) return SQLITE_INTERNAL;
    c->n_cons++;
    p += used;
  }
  return SQLITE_OK;
}

static int fail(uvtab *v, const esr_qpart *part, sqlite3 *db) {
  sqlite3_free(v->base.zErrMsg);
  v->base.zErrMsg = sqlite3_mprintf("partition database %s: %s", part->path, sqlite3_errmsg(db));
  v->q->read_failed = 1;
  return SQLITE_ERROR;
}

/* Whether the partition can hold rows matching the partition/topic constraints. */
static int part_wanted(const ucursor *c, const esr_qpart *p) {
  for (int i = 0; i < c->n_cons; i++) {
    sqlite3_value *a = c->args[i];
    if (c->cons[i].col == 0 && sqlite3_value_type(a) == SQLITE_INTEGER && sqlite3_value_int64(a) != p->partition)
      return 0;
    if (c->cons[i].col == 1 && sqlite3_value_type(a) == SQLITE_TEXT &&
        strcmp((const char *)sqlite3_value_text(a), p->topic) != 0)
      return 0;
  }
  return 1;
}

/* The statement of partition i for the current plan, prepared on first use, then reset and bound. NULL with *rc set
 * on failure; NULL with SQLITE_OK when the table is not in that partition. */
static sqlite3_stmt *part_stmt(uvtab *v, ucursor *c, size_t i, int *rc) {
  const esr_qtable *t = v->t;
  const esr_qpart *part = &v->q->parts[i];
  const unsigned char *has = t->has[i];
  *rc = SQLITE_OK;
  if (!has) return NULL;
  if (!c->stmts[i]) {
    sqlite3_str *sql = sqlite3_str_new(part->db);
    sqlite3_str_appendall(sql, "SELECT ");
    for (int k = 0; k < t->n_cols; k++) {
      if (k) sqlite3_str_appendall(sql, ", ");
      if (has[k])
        sqlite3_str_appendf(sql, "\"%w\"", t->cols[k].name);
      else
        sqlite3_str_appendall(sql, "NULL");
    }
    if (t->n_cols == 0) sqlite3_str_appendall(sql, "NULL");
    sqlite3_str_appendf(sql, " FROM \"%w\"", t->name);
    int bind = 0;
    for (int k = 0; k < c->n_cons; k++) {
      const ucons *u = &c->cons[k];
      if (u->col < FIXED_COLS) continue;
      int col = u->col - FIXED_COLS;
      sqlite3_str_appendall(sql, bind ? " AND " : " WHERE ");
      /* A column the partition lacks is NULL there, as in the select list. */
      if (has[col])
        sqlite3_str_appendf(sql, "\"%w\"", t->cols[col].name);
      else
        sqlite3_str_appendall(sql, "NULL");
      sqlite3_str_appendf(sql, " %s ?%d COLLATE %s", u->op, ++bind, u->coll);
    }
    char *text = sqlite3_str_finish(sql);
    if (!text) {
      *rc = SQLITE_NOMEM;
      return NULL;
    }
    int r = sqlite3_prepare_v2(part->db, text, -1, &c->stmts[i], NULL);
    sqlite3_free(text);
    if (r != SQLITE_OK) {
      *rc = fail(v, part, part->db);
      return NULL;
    }
  }
  sqlite3_stmt *st = c->stmts[i];
  sqlite3_reset(st);
  int bind = 0;
  for (int k = 0; k < c->n_cons; k++)
    if (c->cons[k].col >= FIXED_COLS) sqlite3_bind_value(st, ++bind, c->args[k]);
  return st;
}

/* Moves to the next row: the current partition's, or the first row of a later partition. */
static int advance(uvtab *v, ucursor *c) {
  for (;;) {
    if (c->cur) {
      int r = sqlite3_step(c->cur);
      if (r == SQLITE_ROW) {
        c->rowid++;
        v->q->rows_read++;
        return SQLITE_OK;
      }
      sqlite3_stmt *done = c->cur;
      c->cur = NULL;
      int rc = r == SQLITE_DONE ? SQLITE_OK : fail(v, &v->q->parts[c->part], sqlite3_db_handle(done));
      sqlite3_reset(done); /* ends the statement; the partition's read transaction stays open */
      if (rc != SQLITE_OK) return rc;
      c->part++;
    }
    while (c->part < v->q->n_parts && (!v->t->has[c->part] || !part_wanted(c, &v->q->parts[c->part]))) c->part++;
    if (c->part >= v->q->n_parts) {
      c->eof = 1;
      return SQLITE_OK;
    }
    int rc;
    c->cur = part_stmt(v, c, c->part, &rc);
    if (rc != SQLITE_OK) return rc;
    if (!c->cur) c->part++;
  }
}

static int u_filter(sqlite3_vtab_cursor *cur, int idx_num, const char *idx_str, int argc, sqlite3_value **argv) {
  (void)idx_num;
  ucursor *c = (ucursor *)cur;
  uvtab *v = (uvtab *)cur->pVtab;
  if (c->cur) sqlite3_reset(c->cur);
  c->cur = NULL;
  if (!c->idx || strcmp(c->idx, idx_str ? idx_str : "") != 0) {
    drop_plan(c, v->q->n_parts);
    if (!(c->idx = sqlite3_mprintf("%s", idx_str ? idx_str : ""))) return SQLITE_NOMEM;
    int rc = parse_plan(c, c->idx);
    if (rc != SQLITE_OK) return rc;
  }
  drop_args(c);
  if (argc != c->n_cons) return SQLITE_INTERNAL;
  if (argc > 0) {
    if (!(c->args = sqlite3_malloc64(sizeof *c->args * (size_t)argc))) return SQLITE_NOMEM;
    for (int i = 0; i < argc; i++) {
      if (!(c->args[i] = sqlite3_value_dup(argv[i]))) {
        c->n_args = i;
        return SQLITE_NOMEM;
      }
    }
    c->n_args = argc;
  }
  c->part = 0;
  c->eof = 0;
  c->rowid = 0;
  return advance(v, c);
}

static int u_next(sqlite3_vtab_cursor *cur) { return advance((uvtab *)cur->pVtab, (ucursor *)cur); }

static int u_eof(sqlite3_vtab_cursor *cur) { return ((ucursor *)cur)->eof; }

static int u_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i) {
  ucursor *c = (ucursor *)cur;
  uvtab *v = (uvtab *)cur->pVtab;
  const esr_qpart *part = &v->q->parts[c->part];
  if (i == 0)
    sqlite3_result_int64(ctx, part->partition);
  else if (i == 1)
    sqlite3_result_text(ctx, part->topic, -1, SQLITE_STATIC);
  else
    sqlite3_result_value(ctx, sqlite3_column_value(c->cur, i - FIXED_COLS));
  return SQLITE_OK;
}

static int u_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid) {
  ucursor *c = (ucursor *)cur;
  *rowid = ((sqlite3_int64)c->part << 40) | c->rowid; /* unique within a scan */
  return SQLITE_OK;
}

static const sqlite3_module MODULE = {
    .iVersion = 1,
    .xCreate = u_connect,
    .xConnect = u_connect,
    .xBestIndex = u_best_index,
    .xDisconnect = u_disconnect,
    .xDestroy = u_disconnect,
    .xOpen = u_open,
    .xClose = u_close,
    .xFilter = u_filter,
    .xNext = u_next,
    .xEof = u_eof,
    .xColumn = u_column,
    .xRowid = u_rowid,
};

esr_code esr__union_create(esr_query *q, esr_error *err) {
  int r = sqlite3_create_module_v2(q->db, "esr_union", &MODULE, q, NULL);
  if (r != SQLITE_OK)
    return esr_error_set(err, ESR_E_SQLITE, r, "registering the union module: %s", sqlite3_errmsg(q->db));
  for (size_t i = 0; i < q->n_tables; i++) {
    char *sql = sqlite3_mprintf("CREATE VIRTUAL TABLE \"%w\" USING esr_union(%lld)", q->tables[i].name, (long long)i);
    if (!sql) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    r = sqlite3_exec(q->db, sql, NULL, NULL, NULL);
    sqlite3_free(sql);
    if (r != SQLITE_OK)
      return esr_error_set(err, ESR_E_SQLITE, sqlite3_extended_errcode(q->db), "table %s: %s", q->tables[i].name,
                           sqlite3_errmsg(q->db));
  }
  return ESR_E_OK;
}
