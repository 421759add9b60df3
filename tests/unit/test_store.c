/* test_store.c — esr/store.h: state and resume position commit and roll back together, per-event savepoints, the
 * handler guard (authorizer), refusal of foreign or broken databases, the statement cache, handler versions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "store.h"
#include "unit_util.h"

typedef struct fixture {
  char *dir;
  esr_store *s;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f || !(f->dir = tu_mkdtemp())) return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  esr_store_close(f->s);
  tu_rmrf(f->dir);
  free(f->dir);
  free(f);
  return 0;
}

static esr_store *open_store(fixture *f, const char *topic, int32_t partition) {
  esr_store *s = NULL;
  esr_error err = {0};
  esr_store_opts opts = {.cache_mb = 2};
  esr_code rc = esr_store_open(f->dir, topic, partition, &opts, &s, &err);
  if (rc != ESR_E_OK) fail_msg("esr_store_open: %s", err.msg);
  return s;
}

static void reopen(fixture *f) {
  esr_store_close(f->s);
  f->s = open_store(f, "ledger", 3);
}

static void exec_ok(esr_store *s, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(esr_store_db(s), sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", sql, msg);
}

static int64_t query_int(esr_store *s, const char *sql) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(esr_store_db(s), sql, -1, &st, NULL) != SQLITE_OK)
    fail_msg("%s: %s", sql, sqlite3_errmsg(esr_store_db(s)));
  int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
  sqlite3_finalize(st);
  return v;
}

static int table_exists(esr_store *s, const char *name) {
  char sql[200];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '%s'", name);
  return query_int(s, sql) == 1;
}

static esr_position position(int64_t next, uint8_t fill, int64_t applied, int64_t dead) {
  esr_position p;
  memset(&p, 0, sizeof p);
  p.next_offset = next;
  memset(p.log_digest, fill, sizeof p.log_digest);
  p.applied = applied;
  p.dead = dead;
  return p;
}

static void path_and_settings(void **state) {
  fixture *f = *state;
  char buf[300];
  esr_store_path(buf, sizeof buf, "/var/lib/esr", "ledger", 12);
  assert_string_equal(buf, "/var/lib/esr/ledger-12.db");
  f->s = open_store(f, "ledger", 3);
  esr_store_path(buf, sizeof buf, f->dir, "ledger", 3);
  assert_true(tu_file_exists(buf));
  assert_string_equal(esr_store_topic(f->s), "ledger");
  assert_int_equal(esr_store_partition(f->s), 3);
  /* WAL with synchronous=NORMAL: what lets the position and state roll back together without an fsync per event */
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(esr_store_db(f->s), "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
  sqlite3_finalize(st);
  assert_int_equal(query_int(f->s, "PRAGMA synchronous"), 1);
  /* a new database starts at offset 0 with a zero digest */
  const esr_position *p = esr_store_position(f->s);
  assert_int_equal(p->next_offset, 0);
  assert_int_equal(p->applied, 0);
  assert_int_equal(p->dead, 0);
  uint8_t zero[ESR_DIGEST_LEN] = {0};
  assert_memory_equal(p->log_digest, zero, ESR_DIGEST_LEN);
  assert_false(esr_store_in_batch(f->s));
  esr_store_close(NULL);
}

static void commit_keeps_state_and_offset_together(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  f->s = open_store(f, "ledger", 3);
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  assert_true(esr_store_in_batch(f->s));
  exec_ok(f->s, "CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER)");
  exec_ok(f->s, "INSERT INTO kv VALUES ('a', 1), ('b', 2)");
  esr_position pos = position(10, 0xab, 9, 1);
  assert_int_equal(esr_store_commit(f->s, &pos, &err), ESR_E_OK);
  assert_false(esr_store_in_batch(f->s));
  assert_int_equal(esr_store_position(f->s)->next_offset, 10);

  reopen(f);
  const esr_position *p = esr_store_position(f->s);
  assert_int_equal(p->next_offset, 10);
  assert_int_equal(p->applied, 9);
  assert_int_equal(p->dead, 1);
  assert_memory_equal(p->log_digest, pos.log_digest, ESR_DIGEST_LEN);
  assert_int_equal(query_int(f->s, "SELECT sum(v) FROM kv"), 3);
  /* and the row in esr_offsets is the one the store reads */
  assert_int_equal(query_int(f->s, "SELECT next_offset FROM esr_offsets WHERE topic = 'ledger' AND partition = 3"), 10);
  assert_int_equal(query_int(f->s, "SELECT count(*) FROM esr_offsets"), 1);
}

static void rollback_drops_state_and_offset_together(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  f->s = open_store(f, "ledger", 3);
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  exec_ok(f->s, "CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER)");
  exec_ok(f->s, "INSERT INTO kv VALUES ('a', 1)");
  esr_position pos = position(10, 1, 1, 0);
  assert_int_equal(esr_store_commit(f->s, &pos, &err), ESR_E_OK);

  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  exec_ok(f->s, "INSERT INTO kv VALUES ('b', 2)");
  exec_ok(f->s, "CREATE TABLE other(x)");
  assert_int_equal(esr_store_rollback(f->s, &err), ESR_E_OK);
  assert_false(esr_store_in_batch(f->s));
  assert_int_equal(esr_store_position(f->s)->next_offset, 10);

  reopen(f);
  assert_int_equal(esr_store_position(f->s)->next_offset, 10);
  assert_int_equal(query_int(f->s, "SELECT count(*) FROM kv"), 1);
  assert_false(table_exists(f->s, "other"));
  /* rollback without a batch is a no-op */
  assert_int_equal(esr_store_rollback(f->s, &err), ESR_E_OK);
}

static void close_with_open_batch_rolls_back(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  f->s = open_store(f, "ledger", 3);
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  exec_ok(f->s, "CREATE TABLE kv(k)");
  esr_position pos = position(5, 2, 5, 0);
  assert_int_equal(esr_store_commit(f->s, &pos, &err), ESR_E_OK);
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  exec_ok(f->s, "INSERT INTO kv VALUES ('lost')");
  reopen(f); /* closes with the batch open */
  assert_int_equal(query_int(f->s, "SELECT count(*) FROM kv"), 0);
  assert_int_equal(esr_store_position(f->s)->next_offset, 5);
}

static void failed_commit_keeps_committed_position(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  f->s = open_store(f, "ledger", 3);
  /* a deferred foreign key makes COMMIT itself fail, after the position row was written */
  exec_ok(f->s, "PRAGMA foreign_keys = ON");
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  exec_ok(f->s, "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
                "CREATE TABLE child(pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)");
  esr_position first = position(4, 4, 4, 0);
  assert_int_equal(esr_store_commit(f->s, &first, &err), ESR_E_OK);

  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  exec_ok(f->s, "INSERT INTO child VALUES (42)");
  esr_position second = position(9, 9, 9, 0);
  esr_code rc = esr_store_commit(f->s, &second, &err);
  assert_int_not_equal(rc, ESR_E_OK);
  assert_int_equal(err.code, ESR_E_SQLITE);
  assert_int_equal(err.lib_code & 0xff, SQLITE_CONSTRAINT);
  assert_false(esr_store_in_batch(f->s));
  assert_int_equal(esr_store_position(f->s)->next_offset, 4);
  assert_true(sqlite3_get_autocommit(esr_store_db(f->s))); /* rolled back, not left open */

  reopen(f);
  assert_int_equal(esr_store_position(f->s)->next_offset, 4);
  assert_memory_equal(esr_store_position(f->s)->log_digest, first.log_digest, ESR_DIGEST_LEN);
  assert_int_equal(query_int(f->s, "SELECT count(*) FROM child"), 0);
}

static void batch_state_errors(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  f->s = open_store(f, "ledger", 3);
  esr_position pos = position(1, 0, 1, 0);
  assert_int_equal(esr_store_commit(f->s, &pos, &err), ESR_E_STATE);
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_STATE);
  assert_true(esr_store_in_batch(f->s));
  assert_int_equal(esr_store_commit(f->s, &pos, &err), ESR_E_OK);
  assert_int_equal(esr_store_position(f->s)->next_offset, 1);
}

static void savepoint_rollback_to_undoes_only_the_event(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  f->s = open_store(f, "ledger", 3);
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  exec_ok(f->s, "CREATE TABLE kv(k TEXT PRIMARY KEY)");
  exec_ok(f->s, "INSERT INTO kv VALUES ('before')");
  /* event 1: kept */
  assert_int_equal(esr_store_savepoint(f->s, &err), ESR_E_OK);
  exec_ok(f->s, "INSERT INTO kv VALUES ('event1')");
  assert_int_equal(esr_store_release(f->s, &err), ESR_E_OK);
  /* event 2: undone */
  assert_int_equal(esr_store_savepoint(f->s, &err), ESR_E_OK);
  exec_ok(f->s, "INSERT INTO kv VALUES ('event2')");
  exec_ok(f->s, "DELETE FROM kv WHERE k = 'before'");
  assert_int_equal(esr_store_rollback_to(f->s, &err), ESR_E_OK);
  assert_true(esr_store_in_batch(f->s));
  assert_false(sqlite3_get_autocommit(esr_store_db(f->s))); /* the batch is still open */
  /* event 3: kept */
  assert_int_equal(esr_store_savepoint(f->s, &err), ESR_E_OK);
  exec_ok(f->s, "INSERT INTO kv VALUES ('event3')");
  assert_int_equal(esr_store_release(f->s, &err), ESR_E_OK);
  esr_position pos = position(3, 3, 2, 1);
  assert_int_equal(esr_store_commit(f->s, &pos, &err), ESR_E_OK);
  reopen(f);
  assert_int_equal(query_int(f->s, "SELECT count(*) FROM kv"), 3);
  assert_int_equal(query_int(f->s, "SELECT count(*) FROM kv WHERE k = 'event2'"), 0);
  assert_int_equal(query_int(f->s, "SELECT count(*) FROM kv WHERE k = 'before'"), 1);
}

static int prepare_rc(esr_store *s, const char *sql) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(esr_store_db(s), sql, -1, &st, NULL);
  sqlite3_finalize(st);
  return rc;
}

static const char *const DENIED[] = {
    "COMMIT",
    "END",
    "ROLLBACK",
    "BEGIN",
    "BEGIN IMMEDIATE",
    "SAVEPOINT handler_sp",
    "RELEASE esr_event",
    "ROLLBACK TO esr_event",
    "ATTACH ':memory:' AS other",
    "DETACH other",
    "PRAGMA journal_mode=DELETE",
    "PRAGMA main.journal_mode = DELETE",
    "PRAGMA journal_mode",
    "PRAGMA synchronous=OFF",
    "PRAGMA writable_schema=ON",
    "PRAGMA locking_mode=EXCLUSIVE",
    "PRAGMA wal_checkpoint(TRUNCATE)",
};

static const char *const ALLOWED[] = {
    "INSERT INTO kv VALUES ('x', 1)",
    "UPDATE kv SET v = v + 1",
    "DELETE FROM kv WHERE k = 'nothing'",
    "SELECT * FROM kv",
    "CREATE TABLE IF NOT EXISTS handler_table(a)",
    "CREATE INDEX IF NOT EXISTS kv_v ON kv(v)",
    "PRAGMA table_info(kv)",
    "PRAGMA foreign_keys",
    "PRAGMA page_count",
    "PRAGMA user_version",
};

static void guard_denies_transaction_control_attach_and_pragmas(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  f->s = open_store(f, "ledger", 3);
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  exec_ok(f->s, "CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER)");
  assert_int_equal(esr_store_savepoint(f->s, &err), ESR_E_OK);
  esr_store_guard(f->s, 1);
  for (size_t i = 0; i < sizeof DENIED / sizeof *DENIED; i++) {
    int rc = prepare_rc(f->s, DENIED[i]);
    if (rc != SQLITE_AUTH) fail_msg("'%s' with the guard on: rc %d, want SQLITE_AUTH", DENIED[i], rc);
    /* and sqlite3_exec, as a plugin would call it */
    rc = sqlite3_exec(esr_store_db(f->s), DENIED[i], NULL, NULL, NULL);
    if (rc != SQLITE_AUTH) fail_msg("exec '%s' with the guard on: rc %d, want SQLITE_AUTH", DENIED[i], rc);
  }
  for (size_t i = 0; i < sizeof ALLOWED / sizeof *ALLOWED; i++) {
    char *msg = NULL;
    int rc = sqlite3_exec(esr_store_db(f->s), ALLOWED[i], NULL, NULL, &msg);
    if (rc != SQLITE_OK) fail_msg("'%s' with the guard on: %s", ALLOWED[i], msg);
  }
  /* the statement cache is guarded too */
  assert_null(esr_store_stmt(f->s, "COMMIT", &err));
  assert_int_not_equal(err.code, ESR_E_OK);
  esr_store_guard(f->s, 0);
  assert_false(sqlite3_get_autocommit(esr_store_db(f->s))); /* nothing broke the batch */
  assert_int_equal(esr_store_release(f->s, &err), ESR_E_OK);
  esr_position pos = position(1, 1, 1, 0);
  assert_int_equal(esr_store_commit(f->s, &pos, &err), ESR_E_OK);
  reopen(f);
  assert_int_equal(query_int(f->s, "SELECT count(*) FROM kv"), 1);
  assert_true(table_exists(f->s, "handler_table"));
}

static void guard_off_allows_again(void **state) {
  fixture *f = *state;
  f->s = open_store(f, "ledger", 3);
  esr_store_guard(f->s, 1);
  assert_int_equal(prepare_rc(f->s, "PRAGMA journal_mode"), SQLITE_AUTH);
  assert_int_equal(prepare_rc(f->s, "BEGIN"), SQLITE_AUTH);
  esr_store_guard(f->s, 0);
  assert_int_equal(prepare_rc(f->s, "PRAGMA journal_mode"), SQLITE_OK);
  assert_int_equal(prepare_rc(f->s, "BEGIN"), SQLITE_OK);
  assert_int_equal(prepare_rc(f->s, "ATTACH ':memory:' AS other"), SQLITE_OK);
}

static void guard_off_resets_statement_left_mid_step(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  f->s = open_store(f, "ledger", 3);
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  exec_ok(f->s, "CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER); INSERT INTO kv VALUES ('a', 1), ('b', 2), ('c', 3)");
  assert_int_equal(esr_store_savepoint(f->s, &err), ESR_E_OK);
  esr_store_guard(f->s, 1);
  /* "handler code": a writing statement whose RETURNING rows are not read to the end */
  sqlite3_stmt *st = esr_store_stmt(f->s, "UPDATE kv SET v = v * 10 RETURNING k", &err);
  assert_non_null(st);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_true(sqlite3_stmt_busy(st));
  sqlite3_stmt *reader = esr_store_stmt(f->s, "SELECT k FROM kv ORDER BY k", &err);
  assert_int_equal(sqlite3_step(reader), SQLITE_ROW);
  esr_store_guard(f->s, 0);
  assert_false(sqlite3_stmt_busy(st));
  assert_false(sqlite3_stmt_busy(reader));
  assert_int_equal(esr_store_release(f->s, &err), ESR_E_OK);
  esr_position pos = position(1, 1, 1, 0);
  esr_code rc = esr_store_commit(f->s, &pos, &err);
  if (rc != ESR_E_OK) fail_msg("commit: %s", err.msg);
  reopen(f);
  assert_int_equal(query_int(f->s, "SELECT sum(v) FROM kv"), 60);
  assert_int_equal(esr_store_position(f->s)->next_offset, 1);
}

static void foreign_position_is_corrupt(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  f->s = open_store(f, "ledger", 3);
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  esr_position pos = position(10, 1, 10, 0);
  assert_int_equal(esr_store_commit(f->s, &pos, &err), ESR_E_OK);
  esr_store_close(f->s);
  f->s = NULL;
  char from[4300], to[4300];
  esr_store_path(from, sizeof from, f->dir, "ledger", 3);
  /* another partition of the same topic */
  esr_store_path(to, sizeof to, f->dir, "ledger", 4);
  assert_int_equal(rename(from, to), 0);
  esr_store *s = (esr_store *)1;
  esr_store_opts opts = {0};
  assert_int_equal(esr_store_open(f->dir, "ledger", 4, &opts, &s, &err), ESR_E_CORRUPT);
  assert_null(s);
  assert_int_equal(err.code, ESR_E_CORRUPT);
  assert_contains(err.msg, "ledger-3");
  assert_contains(err.msg, "ledger-4");
  /* another topic */
  esr_store_path(from, sizeof from, f->dir, "orders", 3);
  assert_int_equal(rename(to, from), 0);
  assert_int_equal(esr_store_open(f->dir, "orders", 3, &opts, &s, &err), ESR_E_CORRUPT);
  assert_null(s);
  assert_contains(err.msg, "ledger-3");
}

static void garbage_file_is_corrupt(void **state) {
  fixture *f = *state;
  char path[4300];
  esr_store_path(path, sizeof path, f->dir, "ledger", 0);
  char junk[8192];
  for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)("this is not a database "[i % 23]);
  assert_int_equal(tu_write_file(path, junk, sizeof junk), 0);
  esr_store *s = (esr_store *)1;
  esr_error err = {0};
  esr_code rc = esr_store_open(f->dir, "ledger", 0, NULL, &s, &err);
  assert_int_equal(rc, ESR_E_CORRUPT);
  assert_null(s);
  assert_contains(err.msg, path);
  /* the file is left as it was, for inspection */
  size_t len = 0;
  char *after = tu_read_file(path, &len);
  assert_int_equal(len, sizeof junk);
  assert_memory_equal(after, junk, sizeof junk);
  free(after);
}

static void unopenable_directory_is_an_error(void **state) {
  fixture *f = *state;
  char dir[4300];
  snprintf(dir, sizeof dir, "%s/missing/dir", f->dir);
  esr_store *s = (esr_store *)1;
  esr_error err = {0};
  assert_int_not_equal(esr_store_open(dir, "ledger", 0, NULL, &s, &err), ESR_E_OK);
  assert_null(s);
  assert_contains(err.msg, dir);
}

static void statement_cache_returns_same_reset_statement(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  f->s = open_store(f, "ledger", 3);
  sqlite3_stmt *a = esr_store_stmt(f->s, "SELECT ?1 UNION ALL SELECT 2", &err);
  assert_non_null(a);
  assert_int_equal(sqlite3_bind_int(a, 1, 42), SQLITE_OK);
  assert_int_equal(sqlite3_step(a), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(a, 0), 42);
  assert_true(sqlite3_stmt_busy(a));
  sqlite3_stmt *b = esr_store_stmt(f->s, "SELECT ?1 UNION ALL SELECT 2", &err);
  assert_ptr_equal(a, b);
  assert_false(sqlite3_stmt_busy(b));                 /* reset */
  assert_int_equal(sqlite3_step(b), SQLITE_ROW);
  assert_int_equal(sqlite3_column_type(b, 0), SQLITE_NULL); /* bindings cleared */
  sqlite3_stmt *c = esr_store_stmt(f->s, "SELECT 3", &err);
  assert_non_null(c);
  assert_ptr_not_equal(a, c);

  /* many statements (the cache grows) keep their identity */
  sqlite3_stmt *st[200];
  char sql[64];
  for (int i = 0; i < 200; i++) {
    snprintf(sql, sizeof sql, "SELECT %d", i);
    st[i] = esr_store_stmt(f->s, sql, &err);
    assert_non_null(st[i]);
  }
  for (int i = 0; i < 200; i++) {
    snprintf(sql, sizeof sql, "SELECT %d", i);
    assert_ptr_equal(esr_store_stmt(f->s, sql, &err), st[i]);
    assert_int_equal(sqlite3_step(st[i]), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st[i], 0), i);
  }
  assert_ptr_equal(esr_store_stmt(f->s, "SELECT ?1 UNION ALL SELECT 2", &err), a);

  /* SQL that does not compile: NULL and the reason */
  esr_error_clear(&err);
  assert_null(esr_store_stmt(f->s, "SELEKT nothing", &err));
  assert_int_equal(err.code, ESR_E_SQLITE);
  assert_contains(err.msg, "syntax error");
  assert_null(esr_store_stmt(f->s, "SELECT * FROM no_such_table", &err));
  assert_contains(err.msg, "no_such_table");
}

static void handler_versions(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  f->s = open_store(f, "ledger", 3);
  int v = -1;
  assert_int_equal(esr_store_handler_version(f->s, "ledger", &v, &err), ESR_E_OK);
  assert_int_equal(v, 0);
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  assert_int_equal(esr_store_set_handler_version(f->s, "ledger", 3, "1.0.0", &err), ESR_E_OK);
  assert_int_equal(esr_store_set_handler_version(f->s, "other", 1, "0.1", &err), ESR_E_OK);
  esr_position pos = position(0, 0, 0, 0);
  assert_int_equal(esr_store_commit(f->s, &pos, &err), ESR_E_OK);
  reopen(f);
  assert_int_equal(esr_store_handler_version(f->s, "ledger", &v, &err), ESR_E_OK);
  assert_int_equal(v, 3);
  assert_int_equal(esr_store_handler_version(f->s, "other", &v, &err), ESR_E_OK);
  assert_int_equal(v, 1);
  assert_int_equal(esr_store_handler_version(f->s, "nobody", &v, &err), ESR_E_OK);
  assert_int_equal(v, 0);
  /* a later set replaces, a rolled-back set does not */
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  assert_int_equal(esr_store_set_handler_version(f->s, "ledger", 4, "2.0.0", &err), ESR_E_OK);
  assert_int_equal(esr_store_commit(f->s, &pos, &err), ESR_E_OK);
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  assert_int_equal(esr_store_set_handler_version(f->s, "ledger", 9, "9", &err), ESR_E_OK);
  assert_int_equal(esr_store_rollback(f->s, &err), ESR_E_OK);
  reopen(f);
  assert_int_equal(esr_store_handler_version(f->s, "ledger", &v, &err), ESR_E_OK);
  assert_int_equal(v, 4);
}

static void store_error_fills_sqlite_code(void **state) {
  fixture *f = *state;
  f->s = open_store(f, "ledger", 3);
  sqlite3_exec(esr_store_db(f->s), "SELECT * FROM missing_table", NULL, NULL, NULL);
  esr_error err = {0};
  assert_int_equal(esr_store_error(f->s, &err, "doing it"), ESR_E_SQLITE);
  assert_int_equal(err.lib_code, SQLITE_ERROR);
  assert_contains(err.msg, "doing it: ");
  assert_contains(err.msg, "missing_table");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(path_and_settings, setup, teardown),
      cmocka_unit_test_setup_teardown(commit_keeps_state_and_offset_together, setup, teardown),
      cmocka_unit_test_setup_teardown(rollback_drops_state_and_offset_together, setup, teardown),
      cmocka_unit_test_setup_teardown(close_with_open_batch_rolls_back, setup, teardown),
      cmocka_unit_test_setup_teardown(failed_commit_keeps_committed_position, setup, teardown),
      cmocka_unit_test_setup_teardown(batch_state_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(savepoint_rollback_to_undoes_only_the_event, setup, teardown),
      cmocka_unit_test_setup_teardown(guard_denies_transaction_control_attach_and_pragmas, setup, teardown),
      cmocka_unit_test_setup_teardown(guard_off_allows_again, setup, teardown),
      cmocka_unit_test_setup_teardown(guard_off_resets_statement_left_mid_step, setup, teardown),
      cmocka_unit_test_setup_teardown(foreign_position_is_corrupt, setup, teardown),
      cmocka_unit_test_setup_teardown(garbage_file_is_corrupt, setup, teardown),
      cmocka_unit_test_setup_teardown(unopenable_directory_is_an_error, setup, teardown),
      cmocka_unit_test_setup_teardown(statement_cache_returns_same_reset_statement, setup, teardown),
      cmocka_unit_test_setup_teardown(handler_versions, setup, teardown),
      cmocka_unit_test_setup_teardown(store_error_fills_sqlite_code, setup, teardown),
  };
  return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
