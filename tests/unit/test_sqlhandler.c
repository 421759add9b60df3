/* test_sqlhandler.c — handlers written in SQL (sqlhandler.h): the ledger as a YAML file gives the same state and the
 * same dead letters (offset and reason) as the C ledger on a generated stream holding every kind of bad event; options
 * are declared, overridden and refused; a bad file is refused naming its line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "esrt_ledger.h"
#include "host.h"
#include "log.h"
#include "partition.h"
#include "registry.h"
#include "sqlhandler.h"
#include "statedigest.h"
#include "unit_util.h"

#define LEDGER_SO ESR_BUILD_DIR "/handlers/ledger.so"
#define LEDGER_YAML ESR_SOURCE_DIR "/handlers/ledger/ledger.yaml"

typedef struct side {
  char *dir;
  esr_registry reg;
  esr_partition_env env;
  esr_partition *p;
} side;

static void side_open(side *s, const char *handler, const esr_kv *opts, size_t n_opts) {
  memset(s, 0, sizeof *s);
  s->dir = tu_mkdtemp();
  assert_non_null(s->dir);
  esr_error err = {0};
  char *paths[] = {(char *)handler};
  if (esr_registry_load(&s->reg, paths, 1, esr_host_api_table(), opts, n_opts, &err) != ESR_E_OK)
    fail_msg("%s", err.msg);
  s->env = (esr_partition_env){.registry = &s->reg, .state_dir = s->dir, .dlq_topic = "dlq", .store = {.cache_mb = 2}};
  if (esr_partition_open(&s->env, "ledger", 0, 1, &s->p, &err) != ESR_E_OK) fail_msg("%s", err.msg);
}

static void side_close(side *s) {
  esr_partition_close(s->p);
  esr_registry_clear(&s->reg);
  tu_rmrf(s->dir);
  free(s->dir);
}

static sqlite3 *db_of(side *s) { return esr_store_db(esr_partition_store(s->p)); }

static void apply(side *s, int64_t offset, const char *key, size_t key_len, const char *value, size_t value_len) {
  esr_message m = {.offset = offset, .key = key, .key_len = key_len, .value = value, .value_len = value_len};
  esr_error err = {0};
  if (esr_partition_apply(s->p, &m, &err) != ESR_E_OK) fail_msg("apply @%lld: %s", (long long)offset, err.msg);
}

static void commit(side *s) {
  esr_error err = {0};
  if (esr_partition_commit(s->p, &err) != ESR_E_OK) fail_msg("commit: %s", err.msg);
}

/* Every row of a query as one text line per row (typeof and value of each column), for comparison. */
static char *rows(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) fail_msg("%s: %s", sql, sqlite3_errmsg(db));
  size_t cap = 1 << 16, n = 0;
  char *out = malloc(cap);
  assert_non_null(out);
  out[0] = '\0';
  while (sqlite3_step(st) == SQLITE_ROW) {
    for (int c = 0; c < sqlite3_column_count(st); c++) {
      const char *t = (const char *)sqlite3_column_text(st, c);
      char cell[600];
      int k = snprintf(cell, sizeof cell, "%s%d:%s", c ? "|" : "", sqlite3_column_type(st, c), t ? t : "NULL");
      if (n + (size_t)k + 2 >= cap) {
        cap *= 2;
        out = realloc(out, cap);
        assert_non_null(out);
      }
      memcpy(out + n, cell, (size_t)k);
      n += (size_t)k;
    }
    out[n++] = '\n';
    out[n] = '\0';
  }
  sqlite3_finalize(st);
  return out;
}

static void sql_ledger_equals_c_ledger(void **state) {
  side c, y;
  side_open(&c, LEDGER_SO, NULL, 0);
  side_open(&y, LEDGER_YAML, NULL, 0);
  esrt_gen_opts g = {.seed = 99, .events = 12000, .accounts = 400, .partitions = 1, .bad_share = 0.08, .whale = 1,
                     .prefix_kinds = 1};
  size_t n;
  esrt_event *ev = esrt_ledger_generate(&g, &n);
  assert_non_null(ev);
  for (size_t i = 0; i < n; i++) {
    apply(&c, (int64_t)i, ev[i].key, ev[i].key_len, ev[i].value, ev[i].value_len);
    apply(&y, (int64_t)i, ev[i].key, ev[i].key_len, ev[i].value, ev[i].value_len);
    if (i % 500 == 499) {
      commit(&c);
      commit(&y);
    }
  }
  commit(&c);
  commit(&y);
  const esr_position *pc = esr_partition_committed(c.p), *py = esr_partition_committed(y.p);
  printf("# %zu events: C ledger %lld applied, %lld dead-lettered; SQL ledger %lld applied, %lld dead-lettered\n", n,
         (long long)pc->applied, (long long)pc->dead, (long long)py->applied, (long long)py->dead);
  assert_int_equal(pc->applied, py->applied);
  assert_int_equal(pc->dead, py->dead);
  assert_true(pc->dead > 100 && pc->applied > 1000); /* the premise: every outcome occurs, often */
  static const char *const q_accounts = "SELECT * FROM accounts ORDER BY id";
  static const char *const q_dead = "SELECT src_offset, reason FROM esr_outbox ORDER BY src_offset";
  static const char *const q_cols = "SELECT name, type, pk, \"notnull\", dflt_value FROM pragma_table_xinfo('accounts')";
  const char *const qs[] = {q_accounts, q_dead, q_cols};
  for (int i = 0; i < 3; i++) {
    char *a = rows(db_of(&c), qs[i]), *b = rows(db_of(&y), qs[i]);
    if (strcmp(a, b) != 0) {
      size_t k = 0;
      while (a[k] && a[k] == b[k]) k++;
      fail_msg("%s differs at byte %zu: C ledger '%.120s' vs SQL ledger '%.120s'", qs[i], k, a + k, b + k);
    }
    free(a);
    free(b);
  }
  /* The state digest (every handler table, in canonical order) is the same: the SQL ledger is the C ledger. */
  uint8_t dc[32], dy[32];
  esr_error err = {0};
  assert_int_equal(esr_state_digest(db_of(&c), dc, &err), ESR_E_OK);
  assert_int_equal(esr_state_digest(db_of(&y), dy, &err), ESR_E_OK);
  assert_memory_equal(dc, dy, 32);
  /* Whatever the reason, each kind of rejection has a message. */
  char *msgs = rows(db_of(&y), "SELECT DISTINCT reason FROM esr_outbox WHERE error IS NULL OR error = ''");
  assert_string_equal(msgs, "");
  free(msgs);
  esrt_events_free(ev, n);
  side_close(&c);
  side_close(&y);
}

static void options_are_declared_given_and_refused(void **state) {
  side y;
  esr_kv usd[] = {{"ledger.v1.currency", "USD"}};
  side_open(&y, LEDGER_YAML, usd, 1);
  static const char open[] = "{\"type\":\"account.opened\",\"time\":\"t0\",\"data\":{\"account\":\"a\",\"owner\":\"o\"}}";
  static const char dep1[] = "{\"type\":\"account.deposited\",\"version\":1,\"time\":\"t1\",\"data\":{\"account\":\"a\","
                             "\"amount\":5}}";
  apply(&y, 0, "a", 1, open, strlen(open));
  apply(&y, 1, "a", 1, dep1, strlen(dep1));
  commit(&y);
  /* The account is in EUR (the table's default); a v1 deposit is in USD under this option: refused, not applied. */
  char *r = rows(db_of(&y), "SELECT balance FROM accounts");
  assert_string_equal(r, "1:0\n");
  free(r);
  r = rows(db_of(&y), "SELECT reason, error FROM esr_outbox");
  assert_contains(r, "rejected");
  assert_contains(r, "a deposit in USD");
  free(r);
  side_close(&y);
  esr_registry reg = {0};
  esr_error err = {0};
  char *paths[] = {LEDGER_YAML};
  esr_kv bad[] = {{"ledger.v1.currencyy", "USD"}};
  assert_int_equal(esr_registry_load(&reg, paths, 1, esr_host_api_table(), bad, 1, &err), ESR_E_PLUGIN);
  assert_contains(err.msg, "unknown option 'v1.currencyy'");
  esr_registry_clear(&reg);
}

/* Writes `text` to a file and expects the load to fail with `line` and `what` in the message. */
static void expect_bad(const char *text, int line, const char *what) {
  char *dir = tu_mkdtemp();
  assert_non_null(dir);
  char path[4200];
  snprintf(path, sizeof path, "%s/bad.yaml", dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  esr_error err = {0};
  esr_plugin *p = esr_plugin_load(path, esr_host_api_table(), NULL, &err);
  if (p) fail_msg("loaded: %s", text);
  assert_int_equal(err.code, ESR_E_PLUGIN);
  char at[4300];
  snprintf(at, sizeof at, "%s:%d:", path, line);
  if (line > 0) assert_contains(err.msg, at);
  assert_contains(err.msg, what);
  assert_null(strchr(err.msg, '\n'));
  tu_rmrf(dir);
  free(dir);
}

static void bad_files_are_refused_naming_the_line(void **state) {
  static const char head[] = "name: t\nversion: '1'\nmigrations:\n  1: CREATE TABLE t(k TEXT PRIMARY KEY, n INTEGER)\n";
  char text[2048];
  snprintf(text, sizeof text, "%sevents:\n  t.e:\n    run: INSERT INTO t VALUES (:data.k, 1)\n    chcks: []\n", head);
  expect_bad(text, 8, "unknown key 'chcks'");
  snprintf(text, sizeof text, "%sevents:\n  t.e:\n    run: INSERT INTO t VALUES (:dta.k, 1)\n", head);
  expect_bad(text, 7, "unknown parameter :dta.k");
  snprintf(text, sizeof text, "%sevents:\n  t.e:\n    versions: 2..1\n    run: SELECT 1\n", head);
  expect_bad(text, 7, "versions");
  snprintf(text, sizeof text, "%sevents:\n  t.e:\n    checks:\n      - reject: no\n        unless: 1\n", head);
  expect_bad(text, 7, "no run:");
  snprintf(text, sizeof text, "%sevents:\n  t.e:\n    checks:\n      - reject: no\n    run: SELECT 1\n", head);
  expect_bad(text, 8, "needs invalid: or reject: (the message) and unless:");
  snprintf(text, sizeof text, "%sevents:\n  t.e:\n    checks:\n      - reject: x\n        when: 1\n    run: SELECT 1\n",
           head);
  expect_bad(text, 9, "unknown key 'when' in a check");
  snprintf(text, sizeof text, "%sevents:\n  t.e: {run: [unclosed\n", head);
  expect_bad(text, 7, "not valid YAML");
  expect_bad("name: t\nversion: '1'\nmigrations:\n  2: SELECT 1\nevents:\n  t.e:\n    run: SELECT 1\n", 4,
             "version 1 is missing");
  expect_bad("name: T!\nversion: '1'\nmigrations:\n  1: SELECT 1\nevents:\n  t.e:\n    run: SELECT 1\n", 0, "name");
}

int main(void) {
  esr_store_init_library();
  esr_log_setup(ESR_LOG_ERROR, ESR_LOG_TEXT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(sql_ledger_equals_c_ledger),
      cmocka_unit_test(options_are_declared_given_and_refused),
      cmocka_unit_test(bad_files_are_refused_naming_the_line),
  };
  return cmocka_run_group_tests_name("sqlhandler", tests, NULL, NULL);
}
