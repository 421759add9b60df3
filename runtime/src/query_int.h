/* query_int.h — what query.c (the directory, the connections, running and writing) shares with query_union.c (the
 * esr_union virtual table module). Not for other modules. */
#ifndef ESR_QUERY_INT_H
#define ESR_QUERY_INT_H

#include <sqlite3.h>
#include <stdint.h>

#include "error.h"
#include "query.h"

/* One partition database, read-only, in a read transaction for the life of the query. */
typedef struct esr_qpart {
  char *topic;
  int32_t partition;
  char *path;
  sqlite3 *db;
} esr_qpart;

typedef struct esr_qcol {
  char *name;
  char *type;    /* declared type, as the first partition having the column declares it ("" when none) */
  char *coll;    /* its collation (BINARY, NOCASE, RTRIM, or another name) */
  int uniform;   /* 1: every partition having the column declares the same type and collation (pushdown is exact) */
} esr_qcol;

/* One union table: a table or view name found in one or more partitions. */
typedef struct esr_qtable {
  char *name;
  esr_qcol *cols;
  int n_cols;
  unsigned char **has; /* per partition (q->parts order): n_cols flags, 1 where it has the column; NULL: no table */
  char pcol[16];      /* name of the partition column: "partition" or "esr_partition" */
  char tcol[16];      /* name of the hidden topic column: "topic" or "esr_topic" */
} esr_qtable;

struct esr_query {
  esr_qpart *parts;
  size_t n_parts;
  esr_qtable *tables;
  size_t n_tables;
  int checkpoints;
  sqlite3 *db;        /* the in-memory database the union tables live in */
  int read_failed;    /* a partition could not be read during the last statement (set by the module) */
  int64_t rows_read;  /* rows the partitions' own statements returned, since the query was opened */
  char denied[160];   /* what the authorizer refused while the last statement was compiled ("" when nothing) */
};

/* Registers the module on q->db and creates one union table per q->tables entry. */
esr_code esr__union_create(esr_query *q, esr_error *err);

#endif
