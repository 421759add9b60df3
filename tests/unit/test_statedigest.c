/* test_statedigest.c — statedigest.h and statediff.h: equal states give equal digests whatever their history (rows
 * written in another order, in other transactions, deleted and written again, VACUUM, a VACUUM INTO copy, esr's own
 * tables different); a changed value, a value of another type, a missing or extra row, a changed row of a table
 * without key, an extra table or column each change the digest, and the diff names the table, the row and the column
 * with both values; the summary reads the position and the digest of a file together. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "statediff.h"
#include "statedigest.h"
#include "unit_util.h"

typedef struct fixture {
  char *dir;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f || !(f->dir = tu_mkdtemp())) return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  tu_rmrf(f->dir);
  free(f->dir);
  free(f);
  return 0;
}

static sqlite3 *open_db(fixture *f, const char *name) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", f->dir, name);
  sqlite3 *db = NULL;
  assert_int_equal(SQLITE_OK, sqlite3_open(path, &db));
  /* Hundreds of one-row transactions: no fsync each (durability is not what is tested, and a slow disk made this
   * test take a minute). */
  assert_int_equal(SQLITE_OK, sqlite3_exec(db, "PRAGMA synchronous=OFF", NULL, NULL, NULL));
  return db;
}

static void exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", sql, msg);
}

static const char SCHEMA[] =
    "CREATE TABLE accounts(id TEXT PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE seq(n INTEGER PRIMARY KEY, note TEXT);"
    "CREATE TABLE tags(name TEXT PRIMARY KEY, v);"
    "CREATE TABLE log(what TEXT, amount);"
    "CREATE TABLE esr_offsets(topic TEXT, partition INTEGER, next_offset INTEGER, log_digest BLOB, "
    "  applied_count INTEGER, dead_count INTEGER, updated_at TEXT);";

/* The same content, written one row per transaction in one order. */
static void fill_forward(sqlite3 *db) {
  exec(db, SCHEMA);
  char sql[256];
  for (int i = 0; i < 200; i++) {
    snprintf(sql, sizeof sql, "INSERT INTO accounts VALUES('a%03d', 'o%d', %d)", i, i % 7, i * 10);
    exec(db, sql);
    snprintf(sql, sizeof sql, "INSERT INTO seq VALUES(%d, 'n%d')", i, i);
    exec(db, sql);
  }
  exec(db, "INSERT INTO tags VALUES('x', 1), ('y', 2.5), ('z', x'00ff'), ('w', NULL)");
  exec(db, "INSERT INTO log VALUES('in', 5), ('out', 3), ('in', 5), (NULL, NULL)");
  exec(db, "INSERT INTO esr_offsets VALUES('ledger', 0, 10, x'00', 1, 2, 'now')");
}

/* ... and in another order, in one transaction, with rows deleted and written again, then VACUUM. */
static void fill_backward(sqlite3 *db) {
  exec(db, SCHEMA);
  exec(db, "BEGIN");
  char sql[256];
  for (int i = 199; i >= 0; i--) {
    snprintf(sql, sizeof sql, "INSERT INTO accounts VALUES('a%03d', 'temp', 0)", i);
    exec(db, sql);
    snprintf(sql, sizeof sql, "UPDATE accounts SET owner = 'o%d', balance = %d WHERE id = 'a%03d'", i % 7, i * 10, i);
    exec(db, sql);
    snprintf(sql, sizeof sql, "INSERT INTO seq VALUES(%d, 'n%d')", i, i);
    exec(db, sql);
  }
  exec(db, "INSERT INTO accounts VALUES('gone', 'x', 1); DELETE FROM accounts WHERE id = 'gone'");
  exec(db, "INSERT INTO log VALUES(NULL, NULL), ('in', 5), ('in', 5), ('out', 3)");
  exec(db, "INSERT INTO tags VALUES('w', NULL), ('z', x'00ff'), ('y', 2.5), ('x', 1)");
  exec(db, "COMMIT");
  exec(db, "VACUUM");
  exec(db, "INSERT INTO esr_offsets VALUES('other', 9, 99, x'11', 5, 6, 'then')"); /* esr_* is not state */
}

static void digest_of(sqlite3 *db, uint8_t out[32]) {
  esr_error err = {0};
  if (esr_state_digest(db, out, &err) != ESR_E_OK) fail_msg("esr_state_digest: %s", err.msg);
}

static void equal_states_have_equal_digests_whatever_their_history(void **state) {
  fixture *f = *state;
  sqlite3 *a = open_db(f, "a.db"), *b = open_db(f, "b.db");
  fill_forward(a);
  fill_backward(b);
  char into[4300];
  snprintf(into, sizeof into, "VACUUM INTO '%s/c.db'", f->dir);
  exec(a, into);
  sqlite3 *c = open_db(f, "c.db");
  uint8_t da[32], db_[32], dc[32];
  digest_of(a, da);
  digest_of(b, db_);
  digest_of(c, dc);
  assert_memory_equal(da, db_, 32);
  assert_memory_equal(da, dc, 32);
  esr_diff_counts n;
  esr_error err = {0};
  assert_int_equal(ESR_E_OK, esr_state_diff(a, b, 10, NULL, NULL, &n, &err));
  assert_int_equal(0, n.rows);
  assert_int_equal(0, n.tables);
  sqlite3_close(a);
  sqlite3_close(b);
  sqlite3_close(c);
}

typedef struct seen {
  int n;
  esr_diff_item v[16];
  char text[16][4][256];
} seen;

static void collect(void *arg, const esr_diff_item *d) {
  seen *s = arg;
  if (s->n >= 16) return;
  esr_diff_item *it = &s->v[s->n];
  *it = *d;
  const char *src[4] = {d->table, d->key, d->column, d->a};
  const char **dst[4] = {&it->table, &it->key, &it->column, &it->a};
  for (int i = 0; i < 4; i++) {
    if (!src[i]) continue;
    snprintf(s->text[s->n][i], sizeof s->text[s->n][i], "%s", src[i]);
    *dst[i] = s->text[s->n][i];
  }
  it->b = NULL;
  if (d->b) { /* kept in the note of a; b compared by the caller through a */
    char *t = s->text[s->n][3];
    size_t len = strlen(t);
    snprintf(t + len, sizeof s->text[s->n][3] - len, " | %s", d->b);
    it->a = t;
  }
  s->n++;
}

/* One change on b, then: the digests differ and the diff reports exactly one item of `kind` naming `table`, with
 * key, column and "a | b" containing the given texts (NULL: not checked). */
static void change_is_seen(fixture *f, const char *name, const char *change, esr_diff_kind kind, const char *table,
                           const char *key, const char *column, const char *values) {
  char an[64], bn[64];
  snprintf(an, sizeof an, "%s-a.db", name);
  snprintf(bn, sizeof bn, "%s-b.db", name);
  sqlite3 *a = open_db(f, an), *b = open_db(f, bn);
  fill_forward(a);
  fill_forward(b);
  exec(b, change);
  uint8_t da[32], db_[32];
  digest_of(a, da);
  digest_of(b, db_);
  if (memcmp(da, db_, 32) == 0) fail_msg("%s: the digest did not change", change);
  seen s = {0};
  esr_diff_counts n;
  esr_error err = {0};
  assert_int_equal(ESR_E_OK, esr_state_diff(a, b, 10, collect, &s, &n, &err));
  if (s.n != 1) fail_msg("%s: %d differences reported, want 1", change, s.n);
  assert_int_equal(kind, s.v[0].kind);
  assert_string_equal(table, s.v[0].table);
  if (key) assert_contains(s.v[0].key, key);
  if (column) assert_string_equal(column, s.v[0].column);
  if (values) assert_contains(s.v[0].a, values);
  sqlite3_close(a);
  sqlite3_close(b);
}

static void each_kind_of_change_changes_the_digest_and_the_diff_names_it(void **state) {
  fixture *f = *state;
  change_is_seen(f, "value", "UPDATE accounts SET balance = 71 WHERE id = 'a007'", ESR_DIFF_VALUE, "accounts",
                 "(id='a007')", "balance", "70 | 71");
  change_is_seen(f, "type", "UPDATE tags SET v = 1.0 WHERE name = 'x'", ESR_DIFF_VALUE, "tags", "(name='x')", "v",
                 "1 | 1.0"); /* 1 and 1.0 (a column without affinity keeps the type) */
  change_is_seen(f, "text", "UPDATE seq SET note = 'N5' WHERE n = 5", ESR_DIFF_VALUE, "seq", "(n=5)", "note",
                 "'n5' | 'N5'");
  change_is_seen(f, "gone", "DELETE FROM accounts WHERE id = 'a100'", ESR_DIFF_ROW_ONLY_A, "accounts", "(id='a100')",
                 NULL, NULL);
  change_is_seen(f, "extra", "INSERT INTO tags VALUES('new', 0)", ESR_DIFF_ROW_ONLY_B, "tags", "(name='new')", NULL,
                 NULL);
  change_is_seen(f, "dup", "INSERT INTO log VALUES('in', 5)", ESR_DIFF_ROW_ONLY_B, "log", "(what='in', amount=5)",
                 NULL, NULL);
  change_is_seen(f, "table", "CREATE TABLE more(x)", ESR_DIFF_TABLE_ONLY_B, "more", NULL, NULL, NULL);
  change_is_seen(f, "column", "ALTER TABLE tags ADD COLUMN w2 INTEGER", ESR_DIFF_COLUMNS, "tags", NULL, NULL, "w2");
  change_is_seen(f, "blob", "UPDATE tags SET v = x'00fe' WHERE name = 'z'", ESR_DIFF_VALUE, "tags", "(name='z')", "v",
                 "x'00ff' | x'00fe'");
}

static void the_diff_reports_rows_up_to_the_limit_and_counts_them_all(void **state) {
  fixture *f = *state;
  sqlite3 *a = open_db(f, "la.db"), *b = open_db(f, "lb.db");
  fill_forward(a);
  fill_forward(b);
  exec(b, "UPDATE accounts SET balance = balance + 1 WHERE id < 'a050'");
  seen s = {0};
  esr_diff_counts n;
  esr_error err = {0};
  assert_int_equal(ESR_E_OK, esr_state_diff(a, b, 3, collect, &s, &n, &err));
  assert_int_equal(3, s.n);
  assert_int_equal(50, n.rows);
  assert_int_equal(3, n.shown);
  assert_int_equal(1, n.tables);
  assert_contains(s.v[0].key, "'a000'"); /* the first rows in key order */
  sqlite3_close(a);
  sqlite3_close(b);
}

static void the_summary_reads_position_and_digest_of_a_file(void **state) {
  fixture *f = *state;
  sqlite3 *a = open_db(f, "s.db");
  fill_forward(a);
  uint8_t d[32];
  digest_of(a, d);
  sqlite3_close(a);
  char path[4200];
  snprintf(path, sizeof path, "%s/s.db", f->dir);
  esr_state_summary sum;
  esr_error err = {0};
  assert_int_equal(ESR_E_OK, esr_state_summarize_file(path, &sum, &err));
  assert_int_equal(1, sum.has_position);
  assert_string_equal("ledger", sum.topic);
  assert_int_equal(10, sum.next_offset);
  assert_memory_equal(d, sum.state_digest, 32);
  /* Not a database: ESR_E_CORRUPT, nothing created. */
  snprintf(path, sizeof path, "%s/junk.db", f->dir);
  static const char junk[] = "this is not an SQLite database, not at all: a file of text long enough for a header......";
  assert_int_equal(0, tu_write_file(path, junk, sizeof junk - 1));
  assert_int_equal(ESR_E_CORRUPT, esr_state_summarize_file(path, &sum, &err));
  /* Missing: ESR_E_IO, and no file appears. */
  snprintf(path, sizeof path, "%s/none.db", f->dir);
  assert_int_equal(ESR_E_IO, esr_state_summarize_file(path, &sum, &err));
  assert_int_equal(-1, access(path, F_OK));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(equal_states_have_equal_digests_whatever_their_history, setup, teardown),
      cmocka_unit_test_setup_teardown(each_kind_of_change_changes_the_digest_and_the_diff_names_it, setup, teardown),
      cmocka_unit_test_setup_teardown(the_diff_reports_rows_up_to_the_limit_and_counts_them_all, setup, teardown),
      cmocka_unit_test_setup_teardown(the_summary_reads_position_and_digest_of_a_file, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
