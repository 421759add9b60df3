/* statediff.h — where two partition states differ: tables, columns, rows and values (what `esr verify` prints when two
 * state digests differ).
 *
 * Both states are read as statedigest.h hashes them (statetables.h): the same tables, columns and canonical row order,
 * so that the diff is empty exactly when the digests are equal. Rows of a table with a primary key are matched by
 * their key and compared column by column; rows of a table without one are matched whole (a changed row shows as one
 * row only in A and one only in B). The caller sees each difference through a callback, with values as SQL literals;
 * rows are reported up to a limit per table, and counted all. Run it inside a read transaction on each database for a
 * consistent answer beside a running worker.
 */
#ifndef ESR_STATEDIFF_H
#define ESR_STATEDIFF_H

#include <stdint.h>

#include "error.h"

typedef struct sqlite3 sqlite3;

typedef enum esr_diff_kind {
  ESR_DIFF_TABLE_ONLY_A = 1, /* the table exists in A only */
  ESR_DIFF_TABLE_ONLY_B,
  ESR_DIFF_COLUMNS,    /* the table's columns differ (a, b: the column lists) */
  ESR_DIFF_ROW_ONLY_A, /* a row of A that B lacks (key: the row) */
  ESR_DIFF_ROW_ONLY_B,
  ESR_DIFF_VALUE, /* the row `key` exists in both; `column` differs: a, b its values */
} esr_diff_kind;

typedef struct esr_diff_item {
  esr_diff_kind kind;
  const char *table;
  const char *key;    /* the row: "(id='a1')", its primary key; a table without key: every column */
  const char *column; /* ESR_DIFF_VALUE */
  const char *a, *b;  /* values as SQL literals (ESR_DIFF_VALUE), or column lists (ESR_DIFF_COLUMNS) */
} esr_diff_item;

/* Called for each difference reported; the item is valid during the call. */
typedef void (*esr_diff_fn)(void *arg, const esr_diff_item *d);

typedef struct esr_diff_counts {
  int64_t tables; /* tables that differ (present in one only, other columns, or other rows) */
  int64_t rows;   /* rows that differ: only in A, only in B, or with other values (counted once) */
  int64_t shown;  /* rows reported to the callback */
} esr_diff_counts;

/* Compares the states of the main databases of a and b. At most max_rows differing rows per table are reported to fn
 * (fn may be NULL to count only). */
esr_code esr_state_diff(sqlite3 *a, sqlite3 *b, int max_rows, esr_diff_fn fn, void *arg, esr_diff_counts *counts,
                        esr_error *err);

#endif
