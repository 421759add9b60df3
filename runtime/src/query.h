/* esr/query.h — read-only SQL over every partition database of a state, checkpoint or replay directory at once.
 *
 * esr_query_open finds the partition databases of a directory: the files `<topic>-<partition>.db` of a worker's
 * state.dir or of a replay's output, or else, in a checkpoint directory, the newest complete checkpoint of each
 * `<topic>-<partition>/` (the one with the highest offset whose manifest exists). It opens each read-only (a query
 * cannot change them, and needs no lock a worker would wait for: in WAL mode a reader never blocks the writer), starts
 * one read transaction on each, and reads its tables and views while in it: every query then sees each partition as
 * it was at that instant (partitions may be at different instants from one another), until esr_query_close.
 *
 * Each table or view name found in any partition becomes one table of a private in-memory database: a virtual table
 * (module esr_union) that is the union of that table across the partitions, with a `partition` column first (named
 * `esr_partition` when the table has a column called partition) and a hidden `topic` column (`esr_topic` likewise),
 * which SELECT * leaves out. Columns are the union of the partitions' columns by name, a partition that lacks one gives
 * NULL. SQLite attaches at most 10 databases; the module reads each partition through its own connection instead, so
 * the number of partitions has no limit but file descriptors. Constraints on columns (=, <, <=, >, >=, IS) are pushed
 * down to each partition's own SQLite with the collation the query asked for (and still checked above), so a lookup
 * by primary key uses each partition's index; `partition = N` reads only that partition.
 *
 * esr_query_run runs SQL text (one statement or several) against those tables. Every statement is compiled before any
 * runs, and the whole text is refused (ESR_E_CONFIG, nothing run) when one does not compile or is not read-only
 * (sqlite3_stmt_readonly: INSERT, UPDATE, DELETE, CREATE, DROP, ...); ATTACH, DETACH and pragmas other than the
 * schema-reading ones are refused too. Output: aligned text (held in memory to measure the columns, then a row count
 * line), CSV (RFC 4180: a header line, CRLF, NULL as an empty field) or JSON lines (one object per row; exact
 * integers; a blob as {"hex": "..."}).
 */
#ifndef ESR_QUERY_H
#define ESR_QUERY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"

typedef struct esr_query esr_query;

typedef enum esr_query_format { ESR_QUERY_TEXT = 0, ESR_QUERY_CSV, ESR_QUERY_JSON } esr_query_format;

/* ESR_E_CONFIG when dir holds no partition database (or is not a directory); ESR_E_IO / ESR_E_SQLITE when one cannot
 * be opened or read. */
esr_code esr_query_open(const char *dir, esr_query **out, esr_error *err);
/* Ends the read transactions and closes every connection. NULL is a no-op. */
void esr_query_close(esr_query *q);

/* Partition databases opened, and whether they are checkpoints (1) or live/replayed databases (0). */
size_t esr_query_partitions(const esr_query *q);
int esr_query_from_checkpoints(const esr_query *q);

/* Rows the partitions' own statements returned so far: what the query read after pushdown. */
int64_t esr_query_rows_read(const esr_query *q);

/* Runs `sql`, writing every result set to out. *rows (may be NULL) counts the rows written. ESR_E_CONFIG: refused
 * (see above) or an error SQLite reports against the query itself; ESR_E_SQLITE / ESR_E_IO: a partition could not be
 * read. */
esr_code esr_query_run(esr_query *q, const char *sql, esr_query_format fmt, FILE *out, int64_t *rows, esr_error *err);

#endif
