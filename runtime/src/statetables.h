/* statetables.h — what a partition's state is, for the state digest (statedigest.h) and the state diff (statediff.h).
 *
 * The state is every table of the database whose name does not start with `esr_` or `sqlite_` (any case): esr's own
 * tables (position, outbox, handler versions, dead letters of a replay) and SQLite's are bookkeeping, not state.
 * Virtual tables are left out (their content lives in shadow tables, which are ordinary tables and count). Tables come
 * in name order (byte order). A table is described by its columns as PRAGMA table_xinfo gives them (name, declared type,
 * NOT NULL, default, position in the primary key, hidden), and its rows are read in a canonical order: a table with a
 * declared primary key (WITHOUT ROWID, INTEGER PRIMARY KEY, or any other) by its key columns, then every other column,
 * all compared as BINARY; a table without one in no particular order (the caller sorts the rows' encodings), its
 * rowid left out. Values are encoded with their type (esr_st_encode), so 1, 1.0, '1' and x'31' all differ, and equal
 * values always encode the same, whatever the page layout. Errors: ESR_E_SQLITE (ESR_E_CORRUPT for a damaged file).
 */
#ifndef ESR_STATETABLES_H
#define ESR_STATETABLES_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;

typedef struct esr_st_column {
  char *name;
  char *type;  /* as declared ("" when none) */
  char *dflt;  /* the default's SQL text, or NULL */
  int notnull;
  int pk;      /* 1-based position in the primary key, 0 when not part of it */
  int hidden;  /* table_xinfo's hidden: 0 normal, 2/3 generated */
} esr_st_column;

typedef struct esr_st_table {
  char *name;
  esr_st_column *cols;
  int n_cols;
  int n_pk;
  int *order; /* column indexes in row order of the SELECT: key columns first (by key position), then the others */
  char *select_sql; /* reads every column in `order`, rows in canonical order (unordered when n_pk == 0) */
} esr_st_table;

typedef struct esr_st_tables {
  esr_st_table *v;
  size_t n;
} esr_st_tables;

/* Reads the tables of the state of `db` (the main database). The caller frees with esr_st_tables_free. */
esr_code esr_st_tables_read(sqlite3 *db, esr_st_tables *out, esr_error *err);
void esr_st_tables_free(esr_st_tables *t);
/* The table called `name` in t, or NULL. */
const esr_st_table *esr_st_tables_find(const esr_st_tables *t, const char *name);
/* 1 when the two tables have the same columns (every table_xinfo field). */
int esr_st_same_columns(const esr_st_table *a, const esr_st_table *b);

/* A growable byte buffer. */
typedef struct esr_st_buf {
  uint8_t *p;
  size_t n, cap;
} esr_st_buf;

int esr_st_buf_put(esr_st_buf *b, const void *data, size_t n); /* 0, or -1 when out of memory */
void esr_st_buf_free(esr_st_buf *b);

/* Appends the typed encoding of column `col` of the current row of st: a type byte (0 NULL, 1 INTEGER, 2 REAL,
 * 3 TEXT, 4 BLOB), then big-endian int64, the double's IEEE-754 bits, or a big-endian 32-bit length and the bytes. */
int esr_st_encode(esr_st_buf *b, sqlite3_stmt *st, int col);
/* Appends the encoding of a string as TEXT (NULL as NULL). */
int esr_st_encode_text(esr_st_buf *b, const char *s);
/* Appends the encoding of the table's description: name and every column's table_xinfo fields. */
int esr_st_encode_table(esr_st_buf *b, const esr_st_table *t);

/* SQLite's BINARY order of two column values (NULL < numbers < text < blobs): < 0, 0, > 0. */
int esr_st_compare(sqlite3_stmt *a, int col_a, sqlite3_stmt *b, int col_b);
/* A value as an SQL literal for messages (NULL, 42, 1.5, 'text', x'0a1b'), cut to about `cap` bytes. */
void esr_st_format(sqlite3_stmt *st, int col, char *buf, size_t cap);

/* "<what> of <path>: <sqlite message>" as ESR_E_SQLITE, or ESR_E_CORRUPT for a damaged or foreign file. */
esr_code esr_st_error(sqlite3 *db, esr_error *err, const char *what);
/* Opens a database read-only (no file is created; a WAL database is read as of its last commit, beside its
 * writer). */
esr_code esr_st_open_ro(const char *path, sqlite3 **out, esr_error *err);

#endif
