/* test_query.c — esr/query.h: one union table across many partition databases (128, far past SQLite's 10 attached
 * databases) with a partition column; the three output formats (aligned text, CSV by RFC 4180, JSON lines with exact
 * integers); writes, ATTACH and writing pragmas refused before anything runs, and the files left byte for byte as they
 * were (also through `esr query`, exit 2); constraints pushed down to the partitions give the same rows as the same
 * query without pushdown, while reading only the matching rows; partitions with different columns and names that
 * collide with the partition column; checkpoint directories; and one read transaction per partition: a write committed
 * beside an open query is not seen by it, and is not blocked by it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "checkpoint.h"
#include "query.h"
#include "store.h"
#include "unit_util.h"

#define MANY 128

/* Creates <dir>/<topic>-<p>.db as a worker would (esr tables, a position at next_offset), runs `sql` in the same
 * transaction. */
static void make_partition(const char *dir, const char *topic, int32_t p, int64_t next_offset, const char *sql) {
  esr_store_opts so = {.cache_mb = 1};
  esr_store *s = NULL;
  esr_error err = {0};
  assert_int_equal(ESR_E_OK, esr_store_open(dir, topic, p, &so, &s, &err));
  assert_int_equal(ESR_E_OK, esr_store_begin(s, &err));
  char *msg = NULL;
  if (sqlite3_exec(esr_store_db(s), sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", sql, msg);
  esr_position pos = {.next_offset = next_offset, .applied = next_offset};
  assert_int_equal(ESR_E_OK, esr_store_commit(s, &pos, &err));
  esr_store_close(s);
}

/* Runs sql on dir; returns the output (malloc'd) and the code. */
static esr_code run(const char *dir, const char *sql, esr_query_format fmt, char **out, esr_error *err) {
  esr_query *q = NULL;
  esr_code rc = esr_query_open(dir, &q, err);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  if (rc == ESR_E_OK) rc = esr_query_run(q, sql, fmt, f, NULL, err);
  fclose(f);
  esr_query_close(q);
  *out = buf;
  return rc;
}

static char *must(const char *dir, const char *sql, esr_query_format fmt) {
  esr_error err = {0};
  char *out = NULL;
  esr_code rc = run(dir, sql, fmt, &out, &err);
  if (rc != ESR_E_OK) fail_msg("%s: %s", sql, err.msg);
  return out;
}

/* The accounts of partition p in the "many" layout: p % 5 + 1 accounts, balance p * 1000 + i. */
static char *many_dir(void) {
  char *dir = tu_mkdtemp();
  assert_non_null(dir);
  for (int p = 0; p < MANY; p++) {
    char sql[2048];
    int n = snprintf(sql, sizeof sql, "CREATE TABLE accounts(id TEXT PRIMARY KEY, owner TEXT NOT NULL, "
                                      "balance INTEGER NOT NULL) WITHOUT ROWID;");
    for (int i = 0; i <= p % 5; i++)
      n += snprintf(sql + n, sizeof sql - (size_t)n, "INSERT INTO accounts VALUES ('a%d-%d', 'o%d', %d);", p, i, i,
                    p * 1000 + i);
    make_partition(dir, "ledger", p, 10 + p, sql);
  }
  return dir;
}

static void union_over_many_partitions(void **state) {
  (void)state;
  char *dir = many_dir();
  int64_t rows = 0, sum = 0;
  for (int p = 0; p < MANY; p++)
    for (int i = 0; i <= p % 5; i++) rows++, sum += p * 1000 + i;
  char expect[128];
  snprintf(expect, sizeof expect, "%lld,%lld,%d\r\n", (long long)rows, (long long)sum, MANY);
  char *out = must(dir, "SELECT count(*), sum(balance), count(DISTINCT partition) FROM accounts", ESR_QUERY_CSV);
  assert_contains(out, expect);
  free(out);
  /* Every partition's own rows, under its own number; esr's tables are unions too. */
  out = must(dir,
             "SELECT count(*) FROM accounts WHERE balance / 1000 <> partition OR id NOT LIKE 'a' || partition || '-%'",
             ESR_QUERY_CSV);
  assert_string_equal(out, "count(*)\r\n0\r\n");
  free(out);
  out = must(dir, "SELECT count(*), sum(next_offset - partition) FROM esr_offsets", ESR_QUERY_CSV);
  snprintf(expect, sizeof expect, "%d,%d\r\n", MANY, MANY * 10);
  assert_contains(out, expect);
  free(out);
  esr_error err = {0};
  esr_query *q = NULL;
  assert_int_equal(ESR_E_OK, esr_query_open(dir, &q, &err));
  assert_int_equal(MANY, (int)esr_query_partitions(q));
  assert_int_equal(0, esr_query_from_checkpoints(q));
  esr_query_close(q);
  tu_rmrf(dir);
  free(dir);
}

static void three_formats(void **state) {
  (void)state;
  char *dir = tu_mkdtemp();
  make_partition(dir, "t", 0, 1,
                 "CREATE TABLE v(k INTEGER PRIMARY KEY, s TEXT, r REAL, b BLOB);"
                 "INSERT INTO v VALUES (4611686018427387905, 'plain', 1.5, x'00ff');"
                 "INSERT INTO v VALUES (2, 'a,b \"q\"' || char(10) || 'next', NULL, NULL);"
                 "INSERT INTO v VALUES (3, 'né', -0.25, x'');");
  make_partition(dir, "t", 1, 1, "CREATE TABLE v(k INTEGER PRIMARY KEY, s TEXT, r REAL, b BLOB);");

  /* Text: a header, a rule, numbers right-aligned (headers left), a row count. */
  char *out = must(dir, "SELECT partition, k, s, r FROM v WHERE k <> 2 ORDER BY k", ESR_QUERY_TEXT);
  assert_string_equal(out, "partition  k                    s      r\n"
                           "---------  -------------------  -----  -----\n"
                           "        0                    3  né     -0.25\n"
                           "        0  4611686018427387905  plain    1.5\n"
                           "(2 rows)\n");
  free(out);

  /* CSV: quoted when needed, quotes doubled, NULL empty, CRLF. */
  out = must(dir, "SELECT k, s, r, b FROM v ORDER BY k", ESR_QUERY_CSV);
  assert_string_equal(out, "k,s,r,b\r\n"
                           "2,\"a,b \"\"q\"\"\nnext\",,\r\n"
                           "3,né,-0.25,X''\r\n"
                           "4611686018427387905,plain,1.5,X'00FF'\r\n");
  free(out);

  /* JSON lines: one object per row, exact integers, blobs as hex. */
  out = must(dir, "SELECT partition, k, s, r, b FROM v ORDER BY k", ESR_QUERY_JSON);
  assert_contains(out, "{\"partition\":0,\"k\":4611686018427387905,\"s\":\"plain\",\"r\":1.5,\"b\":{\"hex\":\"00ff\"}}\n");
  assert_contains(out, "\"s\":\"a,b \\\"q\\\"\\nnext\",\"r\":null,\"b\":null}\n");
  int lines = 0;
  for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"), lines++) {
    cJSON *j = cJSON_Parse(line);
    if (!j) fail_msg("not JSON: %s", line);
    assert_true(cJSON_IsObject(j));
    assert_int_equal(5, cJSON_GetArraySize(j));
    cJSON_Delete(j);
  }
  assert_int_equal(3, lines);
  free(out);
  /* Reals in the fewest digits that read back as the same double. */
  out = must(dir, "SELECT 0.1 AS a, 1.0 / 3 AS b, 1e300 AS c", ESR_QUERY_CSV);
  assert_string_equal(out, "a,b,c\r\n0.1,0.3333333333333333,1e+300\r\n");
  free(out);
  tu_rmrf(dir);
  free(dir);
}

static void writes_refused(void **state) {
  (void)state;
  char *dir = tu_mkdtemp();
  make_partition(dir, "ledger", 0, 5, "CREATE TABLE accounts(id TEXT PRIMARY KEY, balance INTEGER);"
                                      "INSERT INTO accounts VALUES ('a', 1);");
  make_partition(dir, "ledger", 1, 5, "CREATE TABLE accounts(id TEXT PRIMARY KEY, balance INTEGER);");
  char path[4200];
  snprintf(path, sizeof path, "%s/ledger-0.db", dir);
  uint8_t before[32], after[32];
  int64_t size;
  esr_error err = {0};
  assert_int_equal(ESR_E_OK, esr_file_sha256(path, before, &size, &err));
  static const char *const refused[] = {
      "DELETE FROM accounts",
      "UPDATE accounts SET balance = 0",
      "INSERT INTO accounts(id, balance) VALUES ('b', 2)",
      "CREATE TABLE x(a)",
      "CREATE TEMP TABLE x(a)",
      "DROP TABLE accounts",
      "ATTACH 'other.db' AS o",
      "PRAGMA query_only = 0",
      "PRAGMA journal_mode = delete",
      "SELECT 1; DELETE FROM accounts", /* a read first: nothing runs, not even the read */
      "SELECT * FROM no_such_table",
      "",
  };
  for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
    char *out = NULL;
    esr_code rc = run(dir, refused[i], ESR_QUERY_CSV, &out, &err);
    if (rc != ESR_E_CONFIG) fail_msg("'%s' gave %d (%s), not ESR_E_CONFIG", refused[i], rc, err.msg);
    assert_string_equal(out, "");
    free(out);
  }
  /* The schema-reading pragmas stay allowed. */
  char *out = must(dir, "PRAGMA table_info(accounts)", ESR_QUERY_CSV);
  assert_contains(out, "balance");
  free(out);
  assert_int_equal(ESR_E_OK, esr_file_sha256(path, after, &size, &err));
  assert_memory_equal(before, after, 32);

  /* The command: exit 2, one line naming the refusal. */
  char cmd[9000];
  snprintf(cmd, sizeof cmd, "'%s' query '%s' 'DELETE FROM accounts' 2>'%s/err.txt'", ESR_BIN, dir, dir);
  int st = system(cmd);
  assert_true(WIFEXITED(st));
  assert_int_equal(2, WEXITSTATUS(st));
  snprintf(cmd, sizeof cmd, "%s/err.txt", dir);
  FILE *f = fopen(cmd, "r");
  char line[512] = "";
  assert_non_null(f);
  assert_non_null(fgets(line, sizeof line, f));
  fclose(f);
  assert_contains(line, "accounts may not be modified");
  assert_int_equal(ESR_E_OK, esr_file_sha256(path, after, &size, &err));
  assert_memory_equal(before, after, 32);
  tu_rmrf(dir);
  free(dir);
}

/* Each query twice: as written (constraints pushed down) and with every column hidden behind a unary + (nothing
 * pushed down); the rows must be the same. */
static void pushdown_agrees(void **state) {
  (void)state;
  char *dir = tu_mkdtemp();
  for (int p = 0; p < 12; p++) {
    char sql[4096];
    int n = snprintf(sql, sizeof sql,
                     "CREATE TABLE items(id TEXT COLLATE NOCASE PRIMARY KEY, n INTEGER, label TEXT, x) WITHOUT ROWID;");
    for (int i = 0; i < 20; i++)
      n += snprintf(sql + n, sizeof sql - (size_t)n,
                    "INSERT INTO items VALUES ('%s%d-%d', %d, %s, %s);", i % 2 ? "Key" : "key", p, i, (p * 7 + i) % 13,
                    i % 4 == 0 ? "NULL" : i % 4 == 1 ? "'Apple'" : i % 4 == 2 ? "'apple'" : "'b'",
                    i % 3 == 0 ? "'5'" : i % 3 == 1 ? "5" : "5.0");
    make_partition(dir, p < 6 ? "alpha" : "beta", p, 20, sql);
  }
  static const char *const where[][2] = {
      {"id = 'KEY3-5'", "+id = 'KEY3-5'"},
      {"id = 'Key3-5' COLLATE BINARY", "+id = 'Key3-5' COLLATE BINARY"},
      {"id = 'key3-5' COLLATE BINARY", "+id = 'key3-5' COLLATE BINARY"},
      {"id > 'Key5' AND id <= 'key7'", "+id > 'Key5' AND +id <= 'key7'"},
      {"label = 'apple'", "+label = 'apple'"},
      {"label = 'APPLE' COLLATE NOCASE", "+label = 'APPLE' COLLATE NOCASE"},
      {"label IS NULL", "+label IS NULL"},
      {"label < 'a'", "+label < 'a'"},
      {"n >= 7 AND n < 10", "+n >= 7 AND +n < 10"},
      {"n = '7'", "+n = 7"},
      {"x = 5", "+x = 5"},
      {"x = '5'", "+x = '5'"},
      {"partition = 3", "+partition = 3"},
      {"partition = '3'", "+partition = 3"},
      {"partition = 3 AND n = 2", "+partition = 3 AND +n = 2"},
      {"topic = 'beta' AND n > 10", "+topic = 'beta' AND +n > 10"},
      {"topic = 'BETA' COLLATE NOCASE", "+topic = 'BETA' COLLATE NOCASE"},
  };
  for (size_t i = 0; i < sizeof where / sizeof *where; i++) {
    char a[512], b[512];
    snprintf(a, sizeof a, "SELECT partition, topic, id, n, label, x FROM items WHERE %s ORDER BY 1, 3", where[i][0]);
    snprintf(b, sizeof b, "SELECT partition, topic, id, n, label, x FROM items WHERE %s ORDER BY 1, 3", where[i][1]);
    char *ra = must(dir, a, ESR_QUERY_JSON), *rb = must(dir, b, ESR_QUERY_JSON);
    if (strcmp(ra, rb) != 0) fail_msg("%s\n%s\n!=\n%s", where[i][0], ra, rb);
    if (i < 2) assert_true(strlen(ra) > 0); /* the lookups do find rows */
    free(ra);
    free(rb);
  }
  /* A key lookup reads the matching rows only; its unpushed twin reads all 240. */
  esr_error err = {0};
  esr_query *q = NULL;
  assert_int_equal(ESR_E_OK, esr_query_open(dir, &q, &err));
  FILE *devnull = fopen("/dev/null", "w");
  assert_int_equal(ESR_E_OK, esr_query_run(q, "SELECT * FROM items WHERE id = 'key3-4'", ESR_QUERY_CSV, devnull, NULL, &err));
  assert_int_equal(1, (int)esr_query_rows_read(q));
  assert_int_equal(ESR_E_OK, esr_query_run(q, "SELECT * FROM items WHERE +id = 'key3-4'", ESR_QUERY_CSV, devnull, NULL, &err));
  assert_int_equal(1 + 240, (int)esr_query_rows_read(q));
  assert_int_equal(ESR_E_OK, esr_query_run(q, "SELECT * FROM items WHERE partition = 4", ESR_QUERY_CSV, devnull, NULL, &err));
  assert_int_equal(1 + 240 + 20, (int)esr_query_rows_read(q));
  /* A join reuses each partition's statement for every probe. */
  int64_t rows = 0;
  assert_int_equal(ESR_E_OK, esr_query_run(q, "SELECT a.id FROM items a JOIN items b ON b.id = a.id AND b.partition = "
                                              "a.partition WHERE a.partition < 2",
                                           ESR_QUERY_CSV, devnull, &rows, &err));
  assert_int_equal(40, (int)rows);
  fclose(devnull);
  esr_query_close(q);
  tu_rmrf(dir);
  free(dir);
}

static void columns_differ(void **state) {
  (void)state;
  char *dir = tu_mkdtemp();
  make_partition(dir, "m", 0, 1,
                 "CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT); INSERT INTO t VALUES (1, 'b0');"
                 "CREATE TABLE own(partition INTEGER, topic TEXT); INSERT INTO own VALUES (77, 'mine');"
                 "CREATE VIEW big AS SELECT a * 10 AS a10 FROM t;");
  make_partition(dir, "m", 1, 1, "CREATE TABLE t(a INTEGER PRIMARY KEY, c TEXT); INSERT INTO t VALUES (2, 'c1');"
                                 "CREATE TABLE only1(z); INSERT INTO only1 VALUES ('z1');");
  char *out = must(dir, "SELECT * FROM t ORDER BY a", ESR_QUERY_CSV);
  assert_string_equal(out, "partition,a,b,c\r\n0,1,b0,\r\n1,2,,c1\r\n");
  free(out);
  out = must(dir, "SELECT * FROM t WHERE c = 'c1' OR b = 'b0' ORDER BY a", ESR_QUERY_CSV);
  assert_string_equal(out, "partition,a,b,c\r\n0,1,b0,\r\n1,2,,c1\r\n");
  free(out);
  out = must(dir, "SELECT esr_partition, esr_topic, partition, topic FROM own", ESR_QUERY_CSV);
  assert_string_equal(out, "esr_partition,esr_topic,partition,topic\r\n0,m,77,mine\r\n");
  free(out);
  out = must(dir, "SELECT * FROM only1", ESR_QUERY_CSV);
  assert_string_equal(out, "partition,z\r\n1,z1\r\n");
  free(out);
  out = must(dir, "SELECT partition, topic, a10 FROM big", ESR_QUERY_CSV);
  assert_string_equal(out, "partition,topic,a10\r\n0,m,10\r\n");
  free(out);
  tu_rmrf(dir);
  free(dir);
}

static void checkpoint_directory(void **state) {
  (void)state;
  char *dir = tu_mkdtemp();
  char cp[4200], db[4300];
  snprintf(cp, sizeof cp, "%s/checkpoints", dir);
  esr_error err = {0};
  for (int p = 0; p < 2; p++) {
    for (int round = 1; round <= 2; round++) {
      char sql[256];
      snprintf(sql, sizeof sql, "CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY); INSERT INTO t VALUES (%d);",
               round);
      make_partition(dir, "ledger", p, round * 100 + p, sql);
      esr_store_path(db, sizeof db, dir, "ledger", p);
      esr_manifest *m = NULL;
      assert_int_equal(ESR_E_OK, esr_checkpoint_write(db, cp, "ledger", p, NULL, &m, &err));
      esr_manifest_free(m);
    }
  }
  /* The newest checkpoint of each partition: offset 200 + p, both rows. */
  char *out = must(cp, "SELECT o.partition, o.next_offset, (SELECT count(*) FROM t WHERE t.partition = o.partition) "
                       "FROM esr_offsets o ORDER BY 1",
                   ESR_QUERY_CSV);
  assert_contains(out, "\r\n0,200,2\r\n1,201,2\r\n");
  free(out);
  esr_query *q = NULL;
  assert_int_equal(ESR_E_OK, esr_query_open(cp, &q, &err));
  assert_int_equal(1, esr_query_from_checkpoints(q));
  esr_query_close(q);
  /* A directory without partition databases. */
  char empty[4200];
  snprintf(empty, sizeof empty, "%s/empty", dir);
  assert_int_equal(0, mkdir(empty, 0755));
  assert_int_equal(ESR_E_CONFIG, esr_query_open(empty, &q, &err));
  assert_contains(err.msg, "no partition database");
  assert_null(q);
  tu_rmrf(dir);
  free(dir);
}

/* One read transaction per partition for the life of the query: a writer commits beside it (never blocked: WAL), and
 * the query keeps seeing the partition as it was when it was opened. */
static void one_snapshot_per_partition(void **state) {
  (void)state;
  char *dir = tu_mkdtemp();
  make_partition(dir, "ledger", 0, 1, "CREATE TABLE accounts(id TEXT PRIMARY KEY, balance INTEGER);"
                                      "INSERT INTO accounts VALUES ('a', 100);");
  esr_error err = {0};
  esr_query *q = NULL;
  assert_int_equal(ESR_E_OK, esr_query_open(dir, &q, &err));
  esr_store_opts so = {.cache_mb = 1};
  esr_store *s = NULL;
  assert_int_equal(ESR_E_OK, esr_store_open(dir, "ledger", 0, &so, &s, &err));
  assert_int_equal(ESR_E_OK, esr_store_begin(s, &err));
  assert_int_equal(SQLITE_OK, sqlite3_exec(esr_store_db(s), "UPDATE accounts SET balance = 250", NULL, NULL, NULL));
  esr_position pos = {.next_offset = 2};
  assert_int_equal(ESR_E_OK, esr_store_commit(s, &pos, &err)); /* not blocked by the open query */
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_int_equal(ESR_E_OK, esr_query_run(q, "SELECT a.balance, o.next_offset FROM accounts a, esr_offsets o",
                                           ESR_QUERY_CSV, f, NULL, &err));
  fclose(f);
  assert_string_equal(buf, "balance,next_offset\r\n100,1\r\n");
  free(buf);
  esr_query_close(q);
  char *out = must(dir, "SELECT a.balance, o.next_offset FROM accounts a, esr_offsets o", ESR_QUERY_CSV);
  assert_string_equal(out, "balance,next_offset\r\n250,2\r\n");
  free(out);
  esr_store_close(s);
  tu_rmrf(dir);
  free(dir);
}

int main(void) {
  esr_store_init_library();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(union_over_many_partitions), cmocka_unit_test(three_formats),
      cmocka_unit_test(writes_refused),             cmocka_unit_test(pushdown_agrees),
      cmocka_unit_test(columns_differ),             cmocka_unit_test(checkpoint_directory),
      cmocka_unit_test(one_snapshot_per_partition),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
