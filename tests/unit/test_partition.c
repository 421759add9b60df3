/* test_partition.c — esr/partition.h, the heart of exactly-once: one partition's messages applied through the real
 * ledger handler and the good test plugin into its store, with no publisher (outbox rows stay in esr_outbox).
 * Balances, counters, dead letters (reason, bytes, coordinates), redelivery, savepoint rollback of rejected events,
 * exact amounts, FATAL stops, commit/rollback/reopen, the log digest's independence of batching, the authorizer, emits,
 * migrations, upcasts and the outbox's life after commit. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <sqlite3.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host.h"
#include "log.h"
#include "outbox.h"
#include "partition.h"
#include "registry.h"
#include "unit_util.h"
#include "unit_outbox.h"

#define LEDGER ESR_BUILD_DIR "/handlers/ledger.so"
#define GOOD ESR_TEST_PLUGIN_DIR "/good.so"
#define TOPIC "ledger"
#define DLQ "ledger.dlq"
#define TWO53 INT64_C(9007199254740992)

typedef struct fixture {
  char *dir;
  esr_registry reg;
  esr_partition_env env;
  esr_partition *p;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f || !(f->dir = tu_mkdtemp())) return -1;
  esr_error err = {0};
  char *paths[] = {LEDGER, GOOD};
  if (esr_registry_load(&f->reg, paths, 2, esr_host_api_table(), NULL, 0, &err) != ESR_E_OK) {
    fprintf(stderr, "loading the plugins: %s\n", err.msg);
    return -1;
  }
  f->env = (esr_partition_env){
      .registry = &f->reg, .publisher = NULL, .state_dir = f->dir, .dlq_topic = DLQ, .store = {.cache_mb = 2}};
  if (esr_partition_open(&f->env, TOPIC, 0, 1, &f->p, &err) != ESR_E_OK) {
    fprintf(stderr, "opening the partition: %s\n", err.msg);
    return -1;
  }
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  esr_partition_close(f->p);
  esr_registry_clear(&f->reg);
  tu_rmrf(f->dir);
  free(f->dir);
  free(f);
  return 0;
}

static void reopen(fixture *f) {
  esr_partition_close(f->p);
  f->p = NULL;
  esr_error err = {0};
  if (esr_partition_open(&f->env, TOPIC, 0, 1, &f->p, &err) != ESR_E_OK) fail_msg("reopen: %s", err.msg);
}

/* --- messages --- */

/* printf into one of a ring of buffers (enough for the few live at a time). */
static char *J(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *J(const char *fmt, ...) {
  static char ring[16][4096];
  static unsigned next;
  char *b = ring[next++ % 16];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b, sizeof ring[0], fmt, ap);
  va_end(ap);
  return b;
}

#define OPEN(acc)                                                                                                      \
  J("{\"type\":\"account.opened\",\"id\":\"open-%s\",\"time\":\"2026-01-01T00:00:00Z\","                             \
    "\"data\":{\"account\":\"%s\",\"owner\":\"Owner of %s\"}}",                                                        \
    acc, acc, acc)
/* amount is JSON text: 10, 1.5, "10", null ... */
#define DEP(acc, amount)                                                                                               \
  J("{\"type\":\"account.deposited\",\"time\":\"2026-01-02T00:00:00Z\",\"data\":{\"account\":\"%s\",\"amount\":%s}}", \
    acc, amount)
#define WD(acc, amount)                                                                                                \
  J("{\"type\":\"account.withdrawn\",\"time\":\"2026-01-03T00:00:00Z\",\"data\":{\"account\":\"%s\",\"amount\":%s}}", \
    acc, amount)
/* an event for the good plugin; data is JSON text */
#define TEST(data) J("{\"type\":\"test.event\",\"data\":%s}", data)

static esr_code apply_bytes(esr_partition *p, int64_t offset, const void *key, size_t key_len, const void *value,
                            size_t value_len, esr_error *err) {
  esr_message m = {.offset = offset, .key = key, .key_len = key_len, .value = value, .value_len = value_len};
  return esr_partition_apply(p, &m, err);
}

static void apply_in(esr_partition *p, int64_t offset, const char *key, const char *value) {
  esr_error err = {0};
  if (apply_bytes(p, offset, key, key ? strlen(key) : 0, value, strlen(value), &err) != ESR_E_OK)
    fail_msg("apply @%lld: %s", (long long)offset, err.msg);
}

static void apply_ok(fixture *f, int64_t offset, const char *key, const char *value) {
  apply_in(f->p, offset, key, value);
}

static void commit_ok(fixture *f) {
  esr_error err = {0};
  if (esr_partition_commit(f->p, &err) != ESR_E_OK) fail_msg("commit: %s", err.msg);
}

/* --- reading the state --- */

static sqlite3 *db(fixture *f) { return esr_store_db(esr_partition_store(f->p)); }

#define NO_ROW INT64_MIN

static int64_t q_int(sqlite3 *d, const char *sql) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(d, sql, -1, &st, NULL) != SQLITE_OK) fail_msg("%s: %s", sql, sqlite3_errmsg(d));
  int64_t v = NO_ROW;
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

/* The first column of the first row as text (owned), or NULL. */
static char *q_text(sqlite3 *d, const char *sql) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(d, sql, -1, &st, NULL) != SQLITE_OK) fail_msg("%s: %s", sql, sqlite3_errmsg(d));
  char *v = NULL;
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
    v = strdup((const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  return v;
}

static int64_t balance(fixture *f, const char *account) {
  return q_int(db(f), J("SELECT balance FROM accounts WHERE id = '%s'", account));
}

static int64_t outbox_count(fixture *f) {
  int64_t n = -1;
  esr_error err = {0};
  if (esr_outbox_count(esr_partition_store(f->p), &n, &err) != ESR_E_OK) fail_msg("%s", err.msg);
  return n;
}

static void assert_position_equal(const esr_position *a, const esr_position *b) {
  assert_int_equal(a->next_offset, b->next_offset);
  assert_int_equal(a->applied, b->applied);
  assert_int_equal(a->dead, b->dead);
  assert_memory_equal(a->log_digest, b->log_digest, ESR_DIGEST_LEN);
}

/* ------------------------------------------------------------------------------------------------------------------ */

static void ledger_sequence_balances_and_counters(void **state) {
  fixture *f = *state;
  assert_int_equal(esr_partition_next_offset(f->p), 0);
  assert_int_equal(esr_partition_batch_events(f->p), 0);
  assert_string_equal(esr_partition_topic(f->p), TOPIC);
  assert_int_equal(esr_partition_id(f->p), 0);
  apply_ok(f, 0, "a1", OPEN("a1"));
  apply_ok(f, 1, "a1", DEP("a1", "100"));
  apply_ok(f, 2, "a1", WD("a1", "30"));
  apply_ok(f, 3, "a1", DEP("a1", "5"));
  assert_int_equal(esr_partition_batch_events(f->p), 4);
  assert_true(esr_partition_batch_started(f->p) > 0);
  assert_int_equal(esr_partition_next_offset(f->p), 4);
  assert_int_equal(esr_partition_committed(f->p)->next_offset, 0); /* not yet committed */
  assert_int_equal(balance(f, "a1"), 75);
  commit_ok(f);
  assert_int_equal(esr_partition_batch_events(f->p), 0);
  const esr_position *c = esr_partition_committed(f->p);
  assert_int_equal(c->next_offset, 4);
  assert_int_equal(c->applied, 4);
  assert_int_equal(c->dead, 0);
  assert_null(esr_partition_stopped(f->p));
  assert_int_equal(outbox_count(f), 0);

  /* an overdraft is a business rejection: dead-lettered, balance kept, the batch goes on */
  apply_ok(f, 4, "a1", WD("a1", "1000"));
  apply_ok(f, 5, "b2", OPEN("b2"));
  apply_ok(f, 6, "b2", DEP("b2", "7"));
  commit_ok(f);
  assert_int_equal(balance(f, "a1"), 75);
  assert_int_equal(balance(f, "b2"), 7);
  c = esr_partition_committed(f->p);
  assert_int_equal(c->next_offset, 7);
  assert_int_equal(c->applied, 6);
  assert_int_equal(c->dead, 1);
  tu_rows rows = tu_outbox(esr_partition_store(f->p));
  assert_int_equal(rows.n, 1);
  assert_string_equal(rows.v[0].reason, "rejected");
  assert_contains(rows.v[0].error, "insufficient funds");
  assert_contains(rows.v[0].error, "ledger");
  assert_int_equal(rows.v[0].src_offset, 4);
  assert_int_equal(rows.v[0].src_index, 0);
  tu_rows_free(&rows);
  /* the handler used the events' own times, never the clock */
  char *opened = q_text(db(f), "SELECT opened_at FROM accounts WHERE id = 'a1'");
  char *updated = q_text(db(f), "SELECT updated_at FROM accounts WHERE id = 'a1'");
  assert_string_equal(opened, "2026-01-01T00:00:00Z");
  assert_string_equal(updated, "2026-01-02T00:00:00Z");
  free(opened);
  free(updated);
}

typedef struct dl_case {
  const char *key;
  size_t key_len;
  const char *value;
  size_t value_len;
  const char *reason;
  const char *mention; /* in the error message */
} dl_case;

#define LIT(s) s, sizeof(s) - 1

static void dead_letter_reasons_keep_message_bytes(void **state) {
  fixture *f = *state;
  static const char bad_json[] = "not json \xff\x00 tail";
  char unknown_version[300], rejected[300], invalid_amount[300], key_mismatch[300], nul_key[300];
  snprintf(unknown_version, sizeof unknown_version, "%s",
           "{\"type\":\"account.deposited\",\"version\":9,\"data\":{\"account\":\"a1\",\"amount\":1}}");
  snprintf(rejected, sizeof rejected, "%s", DEP("zz", "10"));
  snprintf(invalid_amount, sizeof invalid_amount, "%s", DEP("a1", "1.5"));
  snprintf(key_mismatch, sizeof key_mismatch, "%s", DEP("a1", "1"));
  snprintf(nul_key, sizeof nul_key, "%s", DEP("a", "1"));
  const dl_case cases[] = {
      {"k0", 2, bad_json, sizeof bad_json - 1, "bad-json", "JSON"},
      {NULL, 0, LIT("[1,2]"), "bad-envelope", "object"},
      {"", 0, LIT("{\"type\":\"nobody.knows\",\"data\":{}}"), "unknown-type", "nobody.knows"},
      {"a1", 2, unknown_version, strlen(unknown_version), "unknown-version", "version 9"},
      {"zz", 2, rejected, strlen(rejected), "rejected", "never opened"},
      {"a1", 2, invalid_amount, strlen(invalid_amount), "invalid", "amount"},
      {"other", 5, key_mismatch, strlen(key_mismatch), "invalid", "key"},
      {"a\0b", 3, nul_key, strlen(nul_key), "invalid", "key"},
      {"t", 1, LIT("{\"type\":\"t\",\"version\":0,\"data\":{}}"), "bad-envelope", "version"},
  };
  size_t n = sizeof cases / sizeof *cases;
  for (size_t i = 0; i < n; i++) {
    esr_error err = {0};
    const dl_case *c = &cases[i];
    esr_code rc = apply_bytes(f->p, (int64_t)i, c->key, c->key_len, c->value, c->value_len, &err);
    if (rc != ESR_E_OK) fail_msg("case %zu: %s", i, err.msg);
  }
  assert_int_equal(esr_partition_next_offset(f->p), n);
  commit_ok(f);
  const esr_position *c = esr_partition_committed(f->p);
  assert_int_equal(c->next_offset, n);
  assert_int_equal(c->dead, n);
  assert_int_equal(c->applied, 0);

  reopen(f); /* the dead letters are as durable as the state */
  tu_rows rows = tu_outbox(esr_partition_store(f->p));
  assert_int_equal(rows.n, n);
  for (size_t i = 0; i < n; i++) {
    const tu_row *r = &rows.v[i];
    const dl_case *w = &cases[i];
    if (strcmp(r->reason, w->reason) != 0)
      fail_msg("case %zu: reason %s, want %s (%s)", i, r->reason, w->reason, r->error);
    assert_contains(r->error, w->mention);
    assert_string_equal(r->topic, DLQ);
    assert_int_equal(r->src_offset, (int64_t)i);
    assert_int_equal(r->src_index, 0);
    if (w->key == NULL) {
      assert_null(r->key);
    } else {
      assert_non_null(r->key);
      assert_int_equal(r->key_len, w->key_len);
      assert_memory_equal(r->key, w->key, w->key_len);
    }
    assert_int_equal(r->value_len, w->value_len);
    assert_memory_equal(r->value, w->value, w->value_len);
  }
  tu_rows_free(&rows);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM accounts"), 0);
}

/* Issue 10: cJSON alone let these reach the ledger. "acc-0005\u0000evil" arrived as "acc-0005", matched the Kafka key
 * acc-0005 and was deposited; a raw control character was applied as is; invalid UTF-8 was stored as TEXT that other
 * SQLite clients cannot read. The strict envelope dead-letters each as bad-json, naming the byte. */
static void strict_json_dead_letters_nul_controls_and_bad_utf8(void **state) {
  fixture *f = *state;
  apply_ok(f, 0, "acc-0005", OPEN("acc-0005"));
  commit_ok(f);
  static const char nul[] =
      "{\"type\":\"account.deposited\",\"time\":\"t\",\"data\":{\"account\":\"acc-0005\\u0000evil\",\"amount\":500}}";
  static const char ctl[] =
      "{\"type\":\"account.deposited\",\"time\":\"t\",\"data\":{\"account\":\"acc-0005\",\"amount\":7,\"memo\":\"a\x01\"}}";
  static const char utf8[] =
      "{\"type\":\"account.opened\",\"time\":\"t\",\"data\":{\"account\":\"acc-\xff" "9\",\"owner\":\"x\"}}";
  static const char zero[] =
      "{\"type\":\"account.deposited\",\"time\":\"t\",\"data\":{\"account\":\"acc-0005\",\"amount\":0100}}";
  const dl_case cases[] = {
      {"acc-0005", 8, LIT(nul), "bad-json", "\\u0000"},
      {"acc-0005", 8, LIT(ctl), "bad-json", "control character 0x01"},
      {"acc-\xff" "9", 6, LIT(utf8), "bad-json", "UTF-8"},
      {"acc-0005", 8, LIT(zero), "bad-json", "leading zero"},
  };
  size_t n = sizeof cases / sizeof *cases;
  for (size_t i = 0; i < n; i++) {
    esr_error err = {0};
    const dl_case *c = &cases[i];
    if (apply_bytes(f->p, (int64_t)(1 + i), c->key, c->key_len, c->value, c->value_len, &err) != ESR_E_OK)
      fail_msg("case %zu: %s", i, err.msg);
  }
  commit_ok(f);
  assert_int_equal(balance(f, "acc-0005"), 0);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM accounts"), 1);
  assert_int_equal(esr_partition_committed(f->p)->dead, n);
  tu_rows rows = tu_outbox(esr_partition_store(f->p));
  assert_int_equal(rows.n, n);
  for (size_t i = 0; i < n; i++) {
    if (strcmp(rows.v[i].reason, cases[i].reason) != 0)
      fail_msg("case %zu: reason %s, want %s (%s)", i, rows.v[i].reason, cases[i].reason, rows.v[i].error);
    assert_contains(rows.v[i].error, cases[i].mention);
    assert_contains(rows.v[i].error, "at byte ");
    assert_int_equal(rows.v[i].value_len, cases[i].value_len);
    assert_memory_equal(rows.v[i].value, cases[i].value, cases[i].value_len);
  }
  tu_rows_free(&rows);
}

static void redelivered_offsets_are_skipped(void **state) {
  fixture *f = *state;
  apply_ok(f, 0, "a1", OPEN("a1"));
  apply_ok(f, 1, "a1", DEP("a1", "10"));
  apply_ok(f, 2, "a1", DEP("a1", "20"));
  commit_ok(f);
  esr_position before = *esr_partition_committed(f->p);
  /* below next_offset: already consumed, whatever the message says now */
  apply_ok(f, 1, "a1", DEP("a1", "1000"));
  apply_ok(f, 0, "a1", "garbage");
  assert_int_equal(esr_partition_batch_events(f->p), 0);
  assert_int_equal(balance(f, "a1"), 30);
  commit_ok(f);
  assert_position_equal(esr_partition_committed(f->p), &before);
  assert_int_equal(outbox_count(f), 0);

  /* within an open batch too */
  apply_ok(f, 3, "a1", DEP("a1", "1"));
  apply_ok(f, 3, "a1", DEP("a1", "500"));
  assert_int_equal(esr_partition_batch_events(f->p), 1);
  assert_int_equal(balance(f, "a1"), 31);

  /* offsets may jump (compaction, transaction markers): the next offset follows the message */
  apply_ok(f, 10, "a1", DEP("a1", "1"));
  assert_int_equal(esr_partition_next_offset(f->p), 11);
  apply_ok(f, 7, "a1", DEP("a1", "1000"));
  commit_ok(f);
  assert_int_equal(balance(f, "a1"), 32);

  /* and after a restart */
  reopen(f);
  assert_int_equal(esr_partition_next_offset(f->p), 11);
  apply_ok(f, 10, "a1", DEP("a1", "1000"));
  apply_ok(f, 0, "a1", OPEN("a1"));
  assert_int_equal(esr_partition_batch_events(f->p), 0);
  assert_int_equal(balance(f, "a1"), 32);
}

static void rejected_event_leaves_state_unchanged_though_handler_wrote(void **state) {
  fixture *f = *state;
  apply_ok(f, 0, "x", TEST("{\"k\":\"x\",\"v\":\"1\"}"));
  /* the handler writes test_events and test_kv, then refuses: none of it may stay */
  apply_ok(f, 1, "x", TEST("{\"k\":\"x\",\"v\":\"2\",\"result\":\"reject\",\"error\":\"business says no\"}"));
  apply_ok(f, 2, "y", TEST("{\"k\":\"y\",\"v\":\"3\",\"result\":\"invalid\",\"error\":\"malformed thing\"}"));
  apply_ok(f, 3, "z", TEST("{\"k\":\"z\",\"v\":\"4\"}"));
  char *x = q_text(db(f), "SELECT v FROM test_kv WHERE k = 'x'");
  assert_string_equal(x, "1");
  free(x);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM test_kv WHERE k = 'y'"), 0);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM test_events"), 2);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM test_events WHERE offset IN (1, 2)"), 0);
  commit_ok(f);
  reopen(f);
  x = q_text(db(f), "SELECT group_concat(k || '=' || v, ',') FROM (SELECT * FROM test_kv ORDER BY k)");
  assert_string_equal(x, "x=1,z=4");
  free(x);
  tu_rows rows = tu_outbox(esr_partition_store(f->p));
  assert_int_equal(rows.n, 2);
  assert_string_equal(rows.v[0].reason, "rejected");
  assert_contains(rows.v[0].error, "business says no");
  assert_contains(rows.v[0].error, "good");
  assert_int_equal(rows.v[0].src_offset, 1);
  assert_string_equal(rows.v[1].reason, "invalid");
  assert_contains(rows.v[1].error, "malformed thing");
  assert_int_equal(rows.v[1].src_offset, 2);
  tu_rows_free(&rows);
  const esr_position *c = esr_partition_committed(f->p);
  assert_int_equal(c->applied, 2);
  assert_int_equal(c->dead, 2);

  /* the ledger's own rejection: a second open changes nothing */
  apply_ok(f, 4, "a1", OPEN("a1"));
  apply_ok(f, 5, "a1", DEP("a1", "9"));
  apply_ok(f, 6, "a1", J("{\"type\":\"account.opened\",\"time\":\"2027-01-01T00:00:00Z\",\"data\":{\"account\":\"a1\","
                        "\"owner\":\"Mallory\"}}"));
  assert_int_equal(balance(f, "a1"), 9);
  char *owner = q_text(db(f), "SELECT owner FROM accounts WHERE id = 'a1'");
  assert_string_equal(owner, "Owner of a1");
  free(owner);
}

static void amounts_invalid_never_rounded(void **state) {
  fixture *f = *state;
  apply_ok(f, 0, "a1", OPEN("a1"));
  static const char *const bad[] = {"1.5", "0", "9007199254740994", "\"10\"", "-5", "null", "true", "1e400",
                                    "0.999999", "[10]", "{}"};
  size_t n = sizeof bad / sizeof *bad;
  for (size_t i = 0; i < n; i++) apply_ok(f, 1 + (int64_t)i, "a1", DEP("a1", bad[i]));
  int64_t off = 1 + (int64_t)n;
  apply_ok(f, off++, "a1", J("{\"type\":\"account.deposited\",\"data\":{\"account\":\"a1\"}}")); /* no amount */
  assert_int_equal(balance(f, "a1"), 0);
  /* 2^53 is the largest amount and is exact */
  apply_ok(f, off++, "a1", DEP("a1", "9007199254740992"));
  assert_true(balance(f, "a1") == TWO53);
  apply_ok(f, off++, "a1", WD("a1", "1.5"));
  apply_ok(f, off++, "a1", WD("a1", "9007199254740992"));
  assert_int_equal(balance(f, "a1"), 0);
  commit_ok(f);
  tu_rows rows = tu_outbox(esr_partition_store(f->p));
  assert_int_equal(rows.n, n + 2);
  for (size_t i = 0; i < rows.n; i++) {
    if (strcmp(rows.v[i].reason, "invalid") != 0)
      fail_msg("row %zu (offset %lld): %s: %s", i, (long long)rows.v[i].src_offset, rows.v[i].reason, rows.v[i].error);
    assert_contains(rows.v[i].error, "amount");
  }
  tu_rows_free(&rows);
}

/* 9007199254740993 is 2^53 + 1: JSON parsers that keep doubles read it as 2^53. The ledger's contract is "never
 * rounded": the deposit must be dead-lettered as invalid, not applied as 9007199254740992. */
static void amount_2p53_plus_1_invalid_not_rounded(void **state) {
  fixture *f = *state;
  apply_ok(f, 0, "a1", OPEN("a1"));
  apply_ok(f, 1, "a1", DEP("a1", "9007199254740993"));
  int64_t b = balance(f, "a1");
  if (b != 0) fail_msg("a deposit of 9007199254740993 was applied as %lld", (long long)b);
  tu_rows rows = tu_outbox(esr_partition_store(f->p));
  assert_int_equal(rows.n, 1);
  assert_string_equal(rows.v[0].reason, "invalid");
  tu_rows_free(&rows);
}

static void balance_overflow_rejected(void **state) {
  fixture *f = *state;
  apply_ok(f, 0, "a1", OPEN("a1"));
  /* 1023 * 2^53 fits in int64; one more 2^53 is 2^63, one past INT64_MAX */
  int64_t off = 1;
  for (int i = 0; i < 1023; i++) apply_ok(f, off++, "a1", DEP("a1", "9007199254740992"));
  assert_true(balance(f, "a1") == 1023 * TWO53);
  apply_ok(f, off++, "a1", DEP("a1", "9007199254740992"));
  assert_true(balance(f, "a1") == 1023 * TWO53);
  assert_int_equal(q_int(db(f), "SELECT typeof(balance) = 'integer' FROM accounts WHERE id = 'a1'"), 1);
  /* a small deposit still fits */
  apply_ok(f, off++, "a1", DEP("a1", "1"));
  assert_true(balance(f, "a1") == 1023 * TWO53 + 1);
  commit_ok(f);
  tu_rows rows = tu_outbox(esr_partition_store(f->p));
  assert_int_equal(rows.n, 1);
  assert_string_equal(rows.v[0].reason, "rejected");
  assert_contains(rows.v[0].error, "overflow");
  assert_int_equal(rows.v[0].src_offset, 1024);
  tu_rows_free(&rows);
  assert_int_equal(esr_partition_committed(f->p)->applied, 1025);
}

static void fatal_stops_before_event_and_commit_keeps_earlier(void **state) {
  fixture *f = *state;
  apply_ok(f, 0, "a1", OPEN("a1"));
  apply_ok(f, 1, "a1", DEP("a1", "10"));
  esr_error err = {0};
  const char *fatal = TEST("{\"k\":\"f\",\"v\":\"1\",\"result\":\"fatal\",\"error\":\"broken invariant\"}");
  assert_int_equal(apply_bytes(f->p, 2, "f", 1, fatal, strlen(fatal), &err), ESR_E_PLUGIN);
  assert_contains(err.msg, "broken invariant");
  const char *why = esr_partition_stopped(f->p);
  assert_non_null(why);
  assert_contains(why, "broken invariant");
  assert_contains(why, "fatal");
  assert_contains(why, "good");
  assert_contains(why, "@2");
  /* stopped before that event: the position and the batch hold the events before it */
  assert_int_equal(esr_partition_next_offset(f->p), 2);
  assert_int_equal(esr_partition_batch_events(f->p), 2);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM test_kv"), 0);
  /* nothing more is applied */
  assert_int_equal(apply_bytes(f->p, 3, "a1", 2, DEP("a1", "5"), strlen(DEP("a1", "5")), &err), ESR_E_STATE);
  assert_contains(err.msg, "broken invariant");
  assert_int_equal(esr_partition_next_offset(f->p), 2);
  /* committing keeps the events before it */
  commit_ok(f);
  const esr_position *c = esr_partition_committed(f->p);
  assert_int_equal(c->next_offset, 2);
  assert_int_equal(c->applied, 2);
  assert_int_equal(c->dead, 0);
  assert_int_equal(outbox_count(f), 0); /* a fatal event is not a dead letter */
  reopen(f);
  assert_null(esr_partition_stopped(f->p));
  assert_int_equal(esr_partition_next_offset(f->p), 2);
  assert_int_equal(balance(f, "a1"), 10);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM test_events"), 0);
  /* the same event stops it again: a restart does not skip it */
  assert_int_equal(apply_bytes(f->p, 2, "f", 1, fatal, strlen(fatal), &err), ESR_E_PLUGIN);
  assert_int_equal(esr_partition_next_offset(f->p), 2);
}

static void unknown_status_stops_too(void **state) {
  fixture *f = *state;
  apply_ok(f, 0, "x", TEST("{\"k\":\"a\"}"));
  esr_error err = {0};
  const char *v = TEST("{\"k\":\"b\",\"result\":42}");
  assert_int_equal(apply_bytes(f->p, 1, "x", 1, v, strlen(v), &err), ESR_E_PLUGIN);
  assert_non_null(esr_partition_stopped(f->p));
  assert_contains(esr_partition_stopped(f->p), "unknown status");
  assert_int_equal(esr_partition_next_offset(f->p), 1);
  commit_ok(f);
  assert_int_equal(esr_partition_committed(f->p)->next_offset, 1);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM test_kv WHERE k = 'b'"), 0);
}

static void commit_close_reopen_resumes(void **state) {
  fixture *f = *state;
  apply_ok(f, 0, "a1", OPEN("a1"));
  apply_ok(f, 1, "a1", DEP("a1", "40"));
  apply_ok(f, 2, "a1", "{broken");
  apply_ok(f, 3, "x", TEST("{\"k\":\"x\",\"v\":\"1\"}"));
  apply_ok(f, 4, "a1", WD("a1", "15"));
  commit_ok(f);
  esr_position before = *esr_partition_committed(f->p);
  assert_int_equal(before.next_offset, 5);
  reopen(f);
  assert_position_equal(esr_partition_committed(f->p), &before);
  assert_int_equal(esr_partition_next_offset(f->p), 5);
  assert_int_equal(balance(f, "a1"), 25);
  assert_int_equal(outbox_count(f), 1);
  apply_ok(f, 4, "a1", WD("a1", "15")); /* redelivered after the restart */
  apply_ok(f, 5, "a1", DEP("a1", "1"));
  commit_ok(f);
  assert_int_equal(balance(f, "a1"), 26);
  assert_int_equal(esr_partition_committed(f->p)->applied, before.applied + 1);
  assert_int_equal(esr_partition_committed(f->p)->next_offset, 6);
  /* committing with no open batch is a no-op */
  commit_ok(f);
  assert_int_equal(esr_partition_committed(f->p)->next_offset, 6);
}

static void rolled_back_batch_returns_to_last_commit(void **state) {
  fixture *f = *state;
  apply_ok(f, 0, "a1", OPEN("a1"));
  apply_ok(f, 1, "a1", DEP("a1", "10"));
  apply_ok(f, 2, "a1", DEP("a1", "20"));
  commit_ok(f);
  esr_position committed = *esr_partition_committed(f->p);
  apply_ok(f, 3, "a1", DEP("a1", "5"));
  apply_ok(f, 4, "a1", "bad json");
  apply_ok(f, 5, "x", TEST("{\"k\":\"x\",\"emit\":[{\"topic\":\"out\",\"key\":\"k\",\"value\":\"v\"}]}"));
  assert_int_equal(esr_partition_next_offset(f->p), 6);
  assert_int_equal(outbox_count(f), 2);
  esr_partition_rollback(f->p);
  assert_int_equal(esr_partition_next_offset(f->p), 3);
  assert_int_equal(esr_partition_batch_events(f->p), 0);
  assert_position_equal(esr_partition_committed(f->p), &committed);
  assert_int_equal(balance(f, "a1"), 30);
  assert_int_equal(outbox_count(f), 0);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM test_events"), 0);
  esr_partition_rollback(f->p); /* nothing open: harmless */

  /* the worker rewinds and the same messages are applied once */
  apply_ok(f, 3, "a1", DEP("a1", "5"));
  apply_ok(f, 4, "a1", "bad json");
  apply_ok(f, 5, "x", TEST("{\"k\":\"x\",\"emit\":[{\"topic\":\"out\",\"key\":\"k\",\"value\":\"v\"}]}"));
  commit_ok(f);
  assert_int_equal(balance(f, "a1"), 35);
  assert_int_equal(esr_partition_committed(f->p)->dead, 1);
  assert_int_equal(esr_partition_committed(f->p)->applied, 5);
  assert_int_equal(outbox_count(f), 2);

  /* closing with an open batch rolls it back */
  apply_ok(f, 6, "a1", DEP("a1", "100"));
  reopen(f);
  assert_int_equal(esr_partition_next_offset(f->p), 6);
  assert_int_equal(balance(f, "a1"), 35);
}

/* --- the log digest --- */

typedef struct tmsg {
  int64_t offset;
  char *key; /* NULL: no key */
  size_t key_len;
  char *value;
  size_t value_len;
} tmsg;

static size_t digest_messages(tmsg *m, size_t cap) {
  size_t n = 0;
#define ADD(k, v)                                                                                                      \
  do {                                                                                                                 \
    const char *k_ = (k);                                                                                              \
    m[n].offset = (int64_t)n;                                                                                          \
    m[n].key = k_ ? strdup(k_) : NULL;                                                                                 \
    m[n].key_len = k_ ? strlen(k_) : 0;                                                                                \
    m[n].value = strdup(v);                                                                                            \
    m[n].value_len = strlen(m[n].value);                                                                               \
    n++;                                                                                                               \
  } while (0)
  ADD("a1", OPEN("a1"));
  ADD("b2", OPEN("b2"));
  ADD("a1", DEP("a1", "100"));
  ADD("junk", "{oops");
  ADD("b2", DEP("b2", "50"));
  ADD("a1", WD("a1", "30"));
  ADD("b2", WD("b2", "500"));
  ADD(NULL, TEST("{\"emit\":[{\"topic\":\"out\",\"value\":\"e\"}]}"));
  ADD("", TEST("{\"k\":\"empty-key\",\"v\":\"1\"}"));
  ADD("q", "{\"type\":\"nobody.knows\",\"data\":{}}");
  ADD("a1", DEP("a1", "1.5"));
  for (int i = 11; (size_t)n < cap && i < 40; i++) {
    char num[32];
    snprintf(num, sizeof num, "%d", i);
    if (i % 3 == 0)
      ADD("a1", DEP("a1", num));
    else if (i % 3 == 1)
      ADD("b2", WD("b2", "1"));
    else
      ADD(num, TEST(J("{\"k\":\"k%d\",\"v\":\"%d\"}", i, i)));
  }
#undef ADD
  return n;
}

static void free_messages(tmsg *m, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(m[i].key);
    free(m[i].value);
  }
}

/* The logical state of a partition as text: accounts, test_kv and the outbox without its seq numbers. */
static char *dump_state(sqlite3 *d) {
  char *a = q_text(d, "SELECT group_concat(id || '=' || balance, ',') FROM (SELECT * FROM accounts ORDER BY id)");
  char *k =
      q_text(d, "SELECT group_concat(k || '=' || ifnull(v, 'NULL'), ',') FROM (SELECT * FROM test_kv ORDER BY k)");
  char *o = q_text(d, "SELECT group_concat(topic || '|' || CASE WHEN key IS NULL THEN 'NULL' ELSE 'x' || hex(key) END "
                      "|| '|' || hex(value) || '|' || "
                      "src_offset || '|' || src_index || '|' || ifnull(reason, ''), ';') "
                      "FROM (SELECT * FROM esr_outbox ORDER BY src_offset, src_index)");
  size_t len = (a ? strlen(a) : 0) + (k ? strlen(k) : 0) + (o ? strlen(o) : 0) + 16;
  char *s = malloc(len);
  snprintf(s, len, "%s\n%s\n%s", a ? a : "", k ? k : "", o ? o : "");
  free(a);
  free(k);
  free(o);
  return s;
}

typedef struct run_plan {
  const char *name;
  int commit_every;  /* commit after every N messages */
  int reopen_every;  /* close and reopen after every N messages (0: never) */
  int rollback_at;   /* roll the open batch back once after this message and replay from the committed offset (-1) */
  int redeliver;     /* re-apply each message once more after it was applied */
} run_plan;

static void run_messages(fixture *f, const run_plan *plan, const tmsg *m, size_t n, esr_position *out, char **state) {
  char dir[4300];
  snprintf(dir, sizeof dir, "%s/%s", f->dir, plan->name);
  assert_int_equal(mkdir(dir, 0700), 0);
  esr_partition_env env = f->env;
  env.state_dir = dir;
  esr_partition *p = NULL;
  esr_error err = {0};
  if (esr_partition_open(&env, TOPIC, 0, 1, &p, &err) != ESR_E_OK) fail_msg("%s", err.msg);
  int rolled_back = 0;
  for (size_t i = 0; i < n; i++) {
    if (apply_bytes(p, m[i].offset, m[i].key, m[i].key_len, m[i].value, m[i].value_len, &err) != ESR_E_OK)
      fail_msg("%s @%zu: %s", plan->name, i, err.msg);
    if (plan->redeliver && apply_bytes(p, m[i].offset, "x", 1, "y", 1, &err) != ESR_E_OK)
      fail_msg("%s redelivery @%zu: %s", plan->name, i, err.msg);
    if (!rolled_back && plan->rollback_at >= 0 && (size_t)plan->rollback_at == i) {
      rolled_back = 1;
      esr_partition_rollback(p);
      i = (size_t)esr_partition_next_offset(p) - 1; /* replay from the committed offset (wraps to SIZE_MAX at 0) */
      continue;
    }
    if ((i + 1) % (size_t)plan->commit_every == 0 && esr_partition_commit(p, &err) != ESR_E_OK)
      fail_msg("%s commit: %s", plan->name, err.msg);
    if (plan->reopen_every && (i + 1) % (size_t)plan->reopen_every == 0) {
      if (esr_partition_commit(p, &err) != ESR_E_OK) fail_msg("%s commit: %s", plan->name, err.msg);
      esr_partition_close(p);
      p = NULL;
      if (esr_partition_open(&env, TOPIC, 0, 1, &p, &err) != ESR_E_OK) fail_msg("%s reopen: %s", plan->name, err.msg);
    }
  }
  if (esr_partition_commit(p, &err) != ESR_E_OK) fail_msg("%s commit: %s", plan->name, err.msg);
  *out = *esr_partition_committed(p);
  *state = dump_state(esr_store_db(esr_partition_store(p)));
  esr_partition_close(p);
}

static void log_digest_independent_of_batching(void **state) {
  fixture *f = *state;
  tmsg m[64];
  size_t n = digest_messages(m, 40);
  assert_true(n >= 30);
  static const run_plan plans[] = {
      {"one-batch", 1000, 0, -1, 0},
      {"every-event", 1, 0, -1, 0},
      {"threes-reopen-rollback", 3, 7, 16, 1},
      {"fives-rollback-early", 5, 0, 2, 1},
  };
  esr_position pos[4];
  char *st[4];
  for (int r = 0; r < 4; r++) run_messages(f, &plans[r], m, n, &pos[r], &st[r]);
  assert_int_equal(pos[0].next_offset, n);
  assert_true(pos[0].applied > 0);
  assert_true(pos[0].dead > 0);
  uint8_t zero[ESR_DIGEST_LEN] = {0};
  assert_memory_not_equal(pos[0].log_digest, zero, ESR_DIGEST_LEN);
  for (int r = 1; r < 4; r++) {
    assert_position_equal(&pos[r], &pos[0]);
    if (strcmp(st[r], st[0]) != 0) fail_msg("%s: state\n%s\ndiffers from\n%s", plans[r].name, st[r], st[0]);
  }
  for (int r = 0; r < 4; r++) free(st[r]);
  free_messages(m, n);
}

static void log_digest_differs_if_one_byte_differs(void **state) {
  fixture *f = *state;
  tmsg m[64];
  size_t n = digest_messages(m, 40);
  run_plan plan = {"original", 4, 0, -1, 0};
  esr_position orig, changed;
  char *st_orig, *st_changed;
  run_messages(f, &plan, m, n, &orig, &st_orig);

  /* one byte of a value that does not change the meaning: a space inside the JSON */
  char *v = m[4].value;
  size_t vl = strlen(v);
  char *spaced = malloc(vl + 2);
  spaced[0] = ' ';
  memcpy(spaced + 1, v, vl + 1);
  m[4].value = spaced;
  m[4].value_len = vl + 1;
  plan.name = "one-space-more";
  run_messages(f, &plan, m, n, &changed, &st_changed);
  assert_int_equal(changed.next_offset, orig.next_offset);
  assert_int_equal(changed.applied, orig.applied);
  assert_string_equal(st_changed, st_orig); /* same state ... */
  assert_memory_not_equal(changed.log_digest, orig.log_digest, ESR_DIGEST_LEN); /* ... from other events */
  free(st_changed);
  m[4].value = v;
  m[4].value_len = vl;
  free(spaced);

  /* one byte of a key */
  m[3].key[0] = 'J';
  plan.name = "one-key-byte";
  run_messages(f, &plan, m, n, &changed, &st_changed);
  assert_memory_not_equal(changed.log_digest, orig.log_digest, ESR_DIGEST_LEN);
  free(st_changed);
  m[3].key[0] = 'j';

  /* no key vs an empty key */
  free(m[8].key);
  m[8].key = NULL;
  plan.name = "null-instead-of-empty-key";
  run_messages(f, &plan, m, n, &changed, &st_changed);
  assert_memory_not_equal(changed.log_digest, orig.log_digest, ESR_DIGEST_LEN);
  free(st_changed);
  free(st_orig);
  free_messages(m, n);
}

static void be_put(uint8_t *out, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; i--, v >>= 8) out[i] = (uint8_t)v;
}

/* d' = SHA-256(d || be64(offset) || be32(key length or 0xffffffff) || key || be32(value length) || value) */
static void chain_by_hand(uint8_t d[32], int64_t offset, const void *key, size_t key_len, const void *value,
                          size_t value_len) {
  size_t n = 32 + 8 + 4 + key_len + 4 + value_len;
  uint8_t *buf = malloc(n), *p = buf;
  memcpy(p, d, 32);
  p += 32;
  be_put(p, (uint64_t)offset, 8);
  p += 8;
  be_put(p, key ? (uint32_t)key_len : 0xffffffffu, 4);
  p += 4;
  if (key_len) memcpy(p, key, key_len);
  p += key_len;
  be_put(p, (uint32_t)value_len, 4);
  p += 4;
  if (value_len) memcpy(p, value, value_len);
  unsigned int len = 32;
  assert_int_equal(EVP_Digest(buf, n, d, &len, EVP_sha256(), NULL), 1);
  free(buf);
}

static void log_digest_follows_documented_formula(void **state) {
  fixture *f = *state;
  const char *v0 = OPEN("a1");
  char *v0c = strdup(v0);
  const char *v1 = "not json";
  char *v2 = strdup(TEST("{}"));
  esr_error err = {0};
  assert_int_equal(apply_bytes(f->p, 0, "a1", 2, v0c, strlen(v0c), &err), ESR_E_OK);
  assert_int_equal(apply_bytes(f->p, 1, NULL, 0, v1, strlen(v1), &err), ESR_E_OK);
  assert_int_equal(apply_bytes(f->p, 5, "", 0, v2, strlen(v2), &err), ESR_E_OK);
  commit_ok(f);
  uint8_t d[32] = {0};
  chain_by_hand(d, 0, "a1", 2, v0c, strlen(v0c));
  chain_by_hand(d, 1, NULL, 0, v1, strlen(v1));
  chain_by_hand(d, 5, "", 0, v2, strlen(v2));
  assert_memory_equal(esr_partition_committed(f->p)->log_digest, d, 32);
  free(v0c);
  free(v2);
}

/* --- the handler's sandbox --- */

static void authorizer_blocks_handler_transaction_control_without_breaking_batch(void **state) {
  fixture *f = *state;
  static const char *const denied[] = {"COMMIT",
                                       "ROLLBACK",
                                       "BEGIN",
                                       "END",
                                       "SAVEPOINT mine",
                                       "RELEASE esr_event",
                                       "ROLLBACK TO esr_event",
                                       "ATTACH ':memory:' AS other",
                                       "DETACH other",
                                       "PRAGMA journal_mode=DELETE",
                                       "PRAGMA synchronous=OFF"};
  size_t n = sizeof denied / sizeof *denied;
  apply_ok(f, 0, "a1", OPEN("a1"));
  char data[2048] = "{\"k\":\"sandbox\",\"v\":\"1\",\"sql\":[";
  for (size_t i = 0; i < n; i++) {
    strcat(data, i ? ",\"" : "\"");
    strcat(data, denied[i]);
    strcat(data, "\"");
  }
  strcat(data, ",\"INSERT INTO test_kv(k, v) VALUES ('via-sql', '2')\"]}");
  apply_ok(f, 1, "x", TEST(data));
  apply_ok(f, 2, "a1", DEP("a1", "10"));
  assert_null(esr_partition_stopped(f->p));
  assert_int_equal(esr_partition_batch_events(f->p), 3);
  for (size_t i = 0; i < n; i++) {
    int64_t rc = q_int(db(f), J("SELECT rc FROM test_sql_log WHERE offset = 1 AND seq = %zu", i));
    if (rc != SQLITE_AUTH) fail_msg("the handler's '%s' gave %lld, want SQLITE_AUTH", denied[i], (long long)rc);
  }
  assert_int_equal(q_int(db(f), J("SELECT rc FROM test_sql_log WHERE offset = 1 AND seq = %zu", n)), SQLITE_OK);
  commit_ok(f);
  reopen(f);
  assert_int_equal(esr_partition_committed(f->p)->next_offset, 3);
  assert_int_equal(esr_partition_committed(f->p)->applied, 3);
  assert_int_equal(balance(f, "a1"), 10);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM test_kv WHERE k IN ('sandbox', 'via-sql')"), 2);
  char *mode = q_text(db(f), "PRAGMA journal_mode");
  assert_string_equal(mode, "wal");
  free(mode);
  assert_int_equal(q_int(db(f), "PRAGMA synchronous"), 1);
}

static void handler_statement_left_mid_step_does_not_break_batch(void **state) {
  fixture *f = *state;
  apply_ok(f, 0, "x", TEST("{\"leave_busy\":true}"));
  apply_ok(f, 1, "x", TEST("{\"k\":\"after\",\"v\":\"1\"}"));
  apply_ok(f, 2, "x", TEST("{\"leave_busy\":true,\"result\":\"reject\"}"));
  commit_ok(f);
  reopen(f);
  assert_int_equal(esr_partition_committed(f->p)->next_offset, 3);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM test_kv"), 3);
}

static void emits_are_outbox_rows_numbered_per_event(void **state) {
  fixture *f = *state;
  apply_ok(f, 0, "src", TEST("{\"emit\":[{\"topic\":\"out\",\"key\":\"k1\",\"value\":\"v1\"},"
                             "{\"topic\":\"out2\",\"key\":null,\"value\":\"v2\"}]}"));
  apply_ok(f, 1, "src", TEST("{\"emit\":[{\"topic\":\"out\",\"key\":\"k3\",\"value\":\"v3\"}]}"));
  /* emitted then rejected: the emit goes with the rest of the event */
  apply_ok(f, 2, "src", TEST("{\"emit\":[{\"topic\":\"out\",\"key\":\"k4\",\"value\":\"v4\"}],\"result\":\"reject\"}"));
  /* a good emit, then a bad one: invalid, and neither stays */
  apply_ok(f, 3, "src", TEST("{\"emit\":[{\"topic\":\"out\",\"key\":\"k5\",\"value\":\"v5\"},{\"topic\":\"out\"}]}"));
  apply_ok(f, 4, "src", TEST("{\"emit\":[{\"topic\":\"out\",\"key\":\"\",\"value\":\"\"}]}"));
  commit_ok(f);
  reopen(f);
  tu_rows rows = tu_outbox(esr_partition_store(f->p));
  static const struct {
    const char *topic, *key, *value, *reason;
    int64_t offset;
    int index;
  } want[] = {
      {"out", "k1", "v1", NULL, 0, 1}, {"out2", NULL, "v2", NULL, 0, 2},        {"out", "k3", "v3", NULL, 1, 1},
      {DLQ, "src", NULL, "rejected", 2, 0}, {DLQ, "src", NULL, "invalid", 3, 0}, {"out", "", "", NULL, 4, 1},
  };
  assert_int_equal(rows.n, sizeof want / sizeof *want);
  for (size_t i = 0; i < rows.n; i++) {
    const tu_row *r = &rows.v[i];
    assert_string_equal(r->topic, want[i].topic);
    assert_int_equal(r->src_offset, want[i].offset);
    assert_int_equal(r->src_index, want[i].index);
    if (want[i].key) {
      assert_non_null(r->key);
      assert_int_equal(r->key_len, strlen(want[i].key));
      assert_memory_equal(r->key, want[i].key, r->key_len);
    } else {
      assert_null(r->key);
    }
    if (want[i].reason) {
      assert_string_equal(r->reason, want[i].reason);
    } else {
      assert_null(r->reason);
      assert_null(r->error);
      assert_int_equal(r->value_len, strlen(want[i].value));
      assert_memory_equal(r->value, want[i].value, r->value_len);
    }
  }
  tu_rows_free(&rows);
  assert_int_equal(esr_partition_committed(f->p)->applied, 3);
  assert_int_equal(esr_partition_committed(f->p)->dead, 2);
}

static void event_fields_seen_by_handler(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  const char *v0 = J("{\"type\":\"test.fields\",\"version\":1,\"id\":\"e-1\",\"time\":\"2026-11-25T10:00:00Z\","
                     "\"data\":{}}");
  assert_int_equal(apply_bytes(f->p, 0, NULL, 0, v0, strlen(v0), &err), ESR_E_OK);
  const char *v1 = TEST("{}");
  assert_int_equal(apply_bytes(f->p, 1, "\x01\x00z", 3, v1, strlen(v1), &err), ESR_E_OK);
  assert_int_equal(apply_bytes(f->p, 2, "", 0, v1, strlen(v1), &err), ESR_E_OK);
  commit_ok(f);
  char *row = q_text(db(f), "SELECT topic || '|' || part || '|' || type || '|' || version || '|' || "
                            "CASE WHEN key IS NULL THEN 'NULL' ELSE hex(key) END || '|' || id || '|' || time "
                            "FROM test_events WHERE offset = 0");
  assert_string_equal(row, "ledger|0|test.fields|1|NULL|e-1|2026-11-25T10:00:00Z");
  free(row);
  row = q_text(db(f), "SELECT hex(key) || '|' || typeof(key) || '|' || ifnull(id, 'NULL') || '|' || "
                      "ifnull(time, 'NULL') FROM test_events WHERE offset = 1");
  assert_string_equal(row, "01007A|blob|NULL|NULL");
  free(row);
  row = q_text(db(f), "SELECT typeof(key) || '|' || length(key) FROM test_events WHERE offset = 2");
  assert_string_equal(row, "blob|0"); /* an empty key is not no key */
  free(row);
}

static void upcast_runs_before_apply(void **state) {
  fixture *f = *state;
  apply_ok(f, 0, "u", "{\"type\":\"testup.event\",\"version\":1,\"data\":{\"k\":\"u1\"}}");
  apply_ok(f, 1, "u", "{\"type\":\"testup.event\",\"data\":{\"k\":\"u2\"}}");
  apply_ok(f, 2, "u", "{\"type\":\"testup.event\",\"version\":2,\"data\":{\"k\":\"u3\"}}");
  apply_ok(f, 3, "u", "{\"type\":\"testup.event\",\"version\":3,\"data\":{\"k\":\"u4\"}}");
  apply_ok(f, 4, "u", "{\"type\":\"testup.event\",\"version\":1,\"data\":{\"k\":\"u5\",\"upcast\":\"invalid\"}}");
  apply_ok(f, 5, "u", "{\"type\":\"testup.event\",\"version\":1,\"data\":{\"k\":\"u6\",\"upcast\":\"break\"}}");
  commit_ok(f);
  char *versions = q_text(db(f), "SELECT group_concat(offset || ':' || version, ',') FROM "
                                 "(SELECT * FROM test_events ORDER BY offset)");
  assert_string_equal(versions, "0:2,1:2,2:2");
  free(versions);
  tu_rows rows = tu_outbox(esr_partition_store(f->p));
  assert_int_equal(rows.n, 3);
  assert_string_equal(rows.v[0].reason, "unknown-version");
  assert_int_equal(rows.v[0].src_offset, 3);
  assert_string_equal(rows.v[1].reason, "invalid");
  assert_contains(rows.v[1].error, "cannot upcast");
  assert_string_equal(rows.v[2].reason, "invalid");
  assert_contains(rows.v[2].error, "upcast");
  tu_rows_free(&rows);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM test_kv"), 3);
}

/* What an upcast writes is part of the event: undone when the event is dead-lettered. An upcast cannot emit (its rows
 * would share de-duplication keys with apply's). */
static void upcast_effects_roll_back_with_the_event_and_emit_is_refused(void **state) {
  fixture *f = *state;
  apply_ok(f, 0, "u", "{\"type\":\"testup.event\",\"version\":1,"
                      "\"data\":{\"upcast_write\":\"gone\",\"upcast\":\"invalid\"}}");
  apply_ok(f, 1, "u", "{\"type\":\"testup.event\",\"version\":1,\"data\":{\"upcast_write\":\"kept\"}}");
  apply_ok(f, 2, "u", "{\"type\":\"testup.event\",\"version\":1,\"data\":{\"upcast_emit\":true}}");
  commit_ok(f);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM test_kv WHERE k = 'gone'"), 0);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM test_kv WHERE k = 'kept'"), 1);
  char *emit = q_text(db(f), "SELECT v FROM test_kv WHERE k = 'upcast-emit'");
  assert_string_equal(emit, "refused");
  free(emit);
  tu_rows rows = tu_outbox(esr_partition_store(f->p));
  assert_int_equal(rows.n, 1); /* only the dead letter of offset 0 */
  assert_string_equal(rows.v[0].reason, "invalid");
  assert_int_equal(rows.v[0].src_offset, 0);
  tu_rows_free(&rows);
}

/* esr's own tables belong to the host: a handler may read them but not change them, so it cannot lose a dead letter or
 * move the position. */
static void handler_cannot_change_esr_tables(void **state) {
  fixture *f = *state;
  static const char *const denied[] = {
      "DELETE FROM esr_outbox",
      "UPDATE esr_handlers SET schema_version = 99",
      "UPDATE esr_offsets SET next_offset = 1000",
      "INSERT INTO esr_outbox(topic, src_offset, src_index) VALUES ('x', 1, 9)",
      "DROP TABLE esr_outbox",
      "CREATE TRIGGER sneaky AFTER INSERT ON esr_outbox BEGIN SELECT 1; END",
      "CREATE INDEX sneaky ON esr_outbox(topic)",
      "ALTER TABLE esr_offsets ADD COLUMN x"};
  size_t n = sizeof denied / sizeof *denied;
  apply_ok(f, 0, "k", "not json");
  commit_ok(f);
  char data[2048] = "{\"sql\":[";
  for (size_t i = 0; i < n; i++) {
    strcat(data, i ? ",\"" : "\"");
    strcat(data, denied[i]);
    strcat(data, "\"");
  }
  strcat(data, ",\"SELECT count(*) FROM esr_outbox\"]}");
  apply_ok(f, 1, "x", TEST(data));
  commit_ok(f);
  for (size_t i = 0; i < n; i++) {
    int64_t rc = q_int(db(f), J("SELECT rc FROM test_sql_log WHERE offset = 1 AND seq = %zu", i));
    if (rc != SQLITE_AUTH) fail_msg("the handler's '%s' gave %lld, want SQLITE_AUTH", denied[i], (long long)rc);
  }
  assert_int_equal(q_int(db(f), J("SELECT rc FROM test_sql_log WHERE offset = 1 AND seq = %zu", n)), SQLITE_OK);
  reopen(f);
  assert_int_equal(esr_partition_committed(f->p)->next_offset, 2);
  tu_rows rows = tu_outbox(esr_partition_store(f->p));
  assert_int_equal(rows.n, 1);
  assert_string_equal(rows.v[0].reason, "bad-json");
  tu_rows_free(&rows);
}

/* Ledger deposits v2 carry a currency; v1 deposits are upcast to v2 with EUR (the currency of every account so far). */
static void ledger_deposit_v1_upcast_and_v2_currency(void **state) {
  fixture *f = *state;
  apply_ok(f, 0, "a1", OPEN("a1"));
  apply_ok(f, 1, "a1", DEP("a1", "10")); /* v1: upcast, EUR */
  apply_ok(f, 2, "a1", "{\"type\":\"account.deposited\",\"version\":2,\"data\":{\"account\":\"a1\",\"amount\":5,"
                       "\"currency\":\"EUR\"}}");
  apply_ok(f, 3, "a1", "{\"type\":\"account.deposited\",\"version\":2,\"data\":{\"account\":\"a1\",\"amount\":7,"
                       "\"currency\":\"USD\"}}");
  apply_ok(f, 4, "a1", "{\"type\":\"account.deposited\",\"version\":2,\"data\":{\"account\":\"a1\",\"amount\":7}}");
  apply_ok(f, 5, "a1", "{\"type\":\"account.deposited\",\"version\":2,\"data\":{\"account\":\"a1\",\"amount\":7,"
                       "\"currency\":\"eur\"}}");
  commit_ok(f);
  assert_int_equal(balance(f, "a1"), 15);
  char *cur = q_text(db(f), "SELECT currency FROM accounts WHERE id = 'a1'");
  assert_string_equal(cur, "EUR");
  free(cur);
  tu_rows rows = tu_outbox(esr_partition_store(f->p));
  assert_int_equal(rows.n, 3);
  assert_string_equal(rows.v[0].reason, "rejected");
  assert_contains(rows.v[0].error, "USD");
  assert_string_equal(rows.v[1].reason, "invalid");
  assert_contains(rows.v[1].error, "currency");
  assert_string_equal(rows.v[2].reason, "invalid");
  tu_rows_free(&rows);
}

/* With schemas, data that fails its type's schema is dead-lettered with reason "schema", the JSON pointer and the rule;
 * an old version is validated after its upcast, against the current version's schema. */
static void schema_violations_are_dead_lettered(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  esr_schema_set *set;
  if (esr_schema_set_load(ESR_SOURCE_DIR "/schemas", &set, &err) != ESR_E_OK) fail_msg("loading schemas: %s", err.msg);
  f->env.schemas = set;
  apply_ok(f, 0, "a1", OPEN("a1"));
  apply_ok(f, 1, "a1", DEP("a1", "0"));   /* minimum 1 */
  apply_ok(f, 2, "a1", DEP("a1", "25")); /* v1: upcast to v2 with EUR, then valid */
  apply_ok(f, 3, "a1", "{\"type\":\"account.deposited\",\"version\":2,\"data\":{\"account\":\"a1\",\"amount\":5,"
                       "\"currency\":\"euro\"}}");
  apply_ok(f, 4, "a1", "{\"type\":\"account.opened\",\"data\":{\"account\":\"a1\",\"owner\":\"x\",\"extra\":1}}");
  commit_ok(f);
  f->env.schemas = NULL;
  esr_schema_set_free(set);
  assert_int_equal(balance(f, "a1"), 25);
  tu_rows rows = tu_outbox(esr_partition_store(f->p));
  assert_int_equal(rows.n, 3);
  for (size_t i = 0; i < rows.n; i++) assert_string_equal(rows.v[i].reason, "schema");
  assert_contains(rows.v[0].error, "/data/amount");
  assert_contains(rows.v[1].error, "/data/currency");
  assert_contains(rows.v[2].error, "extra");
  tu_rows_free(&rows);
}

/* --- migrations --- */

static void migrate_runs_once(void **state) {
  fixture *f = *state;
  char *row = q_text(db(f), "SELECT name || ':' || schema_version || ':' || plugin_version FROM esr_handlers "
                            "WHERE name = 'good'");
  assert_string_equal(row, "good:1:1.2.3");
  free(row);
  assert_int_equal(q_int(db(f), "SELECT schema_version FROM esr_handlers WHERE name = 'ledger'"), 2);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM test_migrations"), 1);
  assert_int_equal(q_int(db(f), "SELECT from_version FROM test_migrations"), 0);
  reopen(f);
  reopen(f);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM test_migrations"), 1);
  /* the migration did not move the position */
  assert_int_equal(esr_partition_next_offset(f->p), 0);
}

static void newer_handler_tables_refused(void **state) {
  fixture *f = *state;
  apply_ok(f, 0, "x", TEST("{\"k\":\"kept\"}"));
  commit_ok(f);
  esr_partition_close(f->p);
  f->p = NULL;
  char path[4300];
  esr_store_path(path, sizeof path, f->dir, TOPIC, 0);
  sqlite3 *d = NULL;
  assert_int_equal(sqlite3_open(path, &d), SQLITE_OK);
  assert_int_equal(sqlite3_exec(d, "UPDATE esr_handlers SET schema_version = 5 WHERE name = 'good'", NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(d);
  esr_error err = {0};
  esr_partition *p = (esr_partition *)1;
  assert_int_equal(esr_partition_open(&f->env, TOPIC, 0, 1, &p, &err), ESR_E_PLUGIN);
  assert_null(p);
  assert_contains(err.msg, "good");
  assert_contains(err.msg, "version 5");
  assert_contains(err.msg, GOOD);
  /* nothing was touched */
  assert_int_equal(sqlite3_open(path, &d), SQLITE_OK);
  assert_int_equal(q_int(d, "SELECT schema_version FROM esr_handlers WHERE name = 'good'"), 5);
  assert_int_equal(q_int(d, "SELECT count(*) FROM test_kv"), 1);
  assert_int_equal(q_int(d, "SELECT count(*) FROM test_migrations"), 1);
  sqlite3_close(d);
}

static void failed_migration_rolled_back_and_refused(void **state) {
  fixture *f = *state;
  char dir[4300];
  snprintf(dir, sizeof dir, "%s/fresh", f->dir);
  assert_int_equal(mkdir(dir, 0700), 0);
  esr_partition_env env = f->env;
  env.state_dir = dir;
  esr_error err = {0};
  esr_partition *p = NULL;
  setenv("ESR_TEST_GOOD_MIGRATE_FAIL", "test", 1);
  esr_code rc = esr_partition_open(&env, TOPIC, 0, 1, &p, &err);
  unsetenv("ESR_TEST_GOOD_MIGRATE_FAIL");
  assert_int_equal(rc, ESR_E_PLUGIN);
  assert_null(p);
  assert_contains(err.msg, "migrate");
  assert_contains(err.msg, "refused on purpose");
  char path[4300];
  esr_store_path(path, sizeof path, dir, TOPIC, 0);
  sqlite3 *d = NULL;
  assert_int_equal(sqlite3_open(path, &d), SQLITE_OK);
  assert_int_equal(q_int(d, "SELECT count(*) FROM sqlite_master WHERE name = 'test_migrate_junk'"), 0);
  assert_int_equal(q_int(d, "SELECT count(*) FROM esr_handlers WHERE name = 'good'"), 0);
  sqlite3_close(d);
  /* fixed: the next open migrates */
  if (esr_partition_open(&env, TOPIC, 0, 1, &p, &err) != ESR_E_OK) fail_msg("%s", err.msg);
  assert_int_equal(q_int(esr_store_db(esr_partition_store(p)), "SELECT count(*) FROM test_migrations"), 1);
  esr_partition_close(p);
}

/* --- the outbox after commit --- */

static void delivered(esr_partition *p, int64_t seq, int ok) {
  esr_delivery d = {.seq = seq, .ok = ok, .error = ok ? NULL : "failed", .topic = "dlq", .partition = 0,
                    .offset = ok ? seq : -1};
  esr_partition_delivered(p, &d);
}

static void delivered_rows_deleted_in_next_transaction(void **state) {
  fixture *f = *state;
  apply_ok(f, 0, "a", "x1");
  apply_ok(f, 1, "a", "x2");
  apply_ok(f, 2, "a", "x3");
  commit_ok(f);
  tu_rows rows = tu_outbox(esr_partition_store(f->p));
  assert_int_equal(rows.n, 3);
  int64_t s0 = rows.v[0].seq, s1 = rows.v[1].seq, s2 = rows.v[2].seq;
  tu_rows_free(&rows);
  esr_error err = {0};
  /* no publisher: publishing is a no-op that keeps the rows */
  assert_int_equal(esr_partition_publish(f->p, &err), ESR_E_OK);
  assert_int_equal(outbox_count(f), 3);

  /* acknowledged while idle: tick deletes it in a transaction of its own */
  delivered(f->p, s0, 1);
  assert_int_equal(esr_partition_tick(f->p, &err), ESR_E_OK);
  assert_int_equal(outbox_count(f), 2);
  assert_int_equal(esr_partition_committed(f->p)->next_offset, 3);

  /* acknowledged before a batch that is rolled back: the delete is retried */
  delivered(f->p, s1, 1);
  apply_ok(f, 3, "a", DEP("a", "oops"));
  esr_partition_rollback(f->p);
  assert_int_equal(outbox_count(f), 2);
  apply_ok(f, 3, "a", "x4");
  commit_ok(f);
  rows = tu_outbox(esr_partition_store(f->p));
  assert_int_equal(rows.n, 2);
  assert_true(rows.v[0].seq == s2);
  assert_int_equal(rows.v[1].src_offset, 3);
  tu_rows_free(&rows);

  /* a failed delivery deletes nothing */
  delivered(f->p, s2, 0);
  assert_int_equal(esr_partition_tick(f->p, &err), ESR_E_OK);
  assert_int_equal(outbox_count(f), 2);
  assert_int_equal(esr_partition_in_flight(f->p), 0);
  reopen(f);
  assert_int_equal(outbox_count(f), 2);
}

/* A storage failure while a handler runs (here the database is full: max_page_count) is not the event's fault, whatever
 * the handler returns: the batch is lost and retried, the event neither dead-lettered nor stopping the partition. */
static void storage_fault_under_handler_is_retried_not_judged(void **state) {
  fixture *f = *state;
  apply_ok(f, 0, "x", TEST("{\"k\":\"a\"}"));
  commit_ok(f);
  int64_t pages = q_int(db(f), "PRAGMA page_count");
  char sql[64];
  snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld", (long long)pages);
  assert_int_equal(SQLITE_OK, sqlite3_exec(db(f), sql, NULL, NULL, NULL));
  static const char *const results[] = {"reject", "invalid", "fatal", "ok"};
  for (int i = 0; i < 4; i++) {
    char data[200];
    snprintf(data, sizeof data,
             "{\"sql\":\"INSERT INTO test_kv VALUES('big', zeroblob(200000))\",\"result\":\"%s\"}", results[i]);
    const char *v = TEST(data);
    esr_error err = {0};
    assert_int_equal(apply_bytes(f->p, 1, "x", 1, v, strlen(v), &err), ESR_E_SQLITE);
    assert_contains(err.msg, "storage failed");
    assert_int_equal(err.lib_code & 0xff, SQLITE_FULL);
    assert_null(esr_partition_stopped(f->p));
    assert_int_equal(esr_partition_next_offset(f->p), 1); /* the batch was rolled back */
    assert_int_equal(esr_partition_committed(f->p)->dead, 0);
    assert_int_equal(outbox_count(f), 0);
  }
  /* Nothing the handler ran after SQLite rolled the transaction back on its own was committed on the side. */
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM test_sql_log WHERE offset = 1"), 0);
  /* Room again: the same event is now judged by the handler (a rejection). */
  assert_int_equal(SQLITE_OK, sqlite3_exec(db(f), "PRAGMA max_page_count = 1073741823", NULL, NULL, NULL));
  apply_ok(f, 1, "x", TEST("{\"sql\":\"INSERT INTO test_kv VALUES('big', zeroblob(200000))\",\"result\":\"reject\"}"));
  commit_ok(f);
  assert_int_equal(esr_partition_committed(f->p)->dead, 1);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM test_kv WHERE k = 'big'"), 0);
}

/* Writes the partition's in-flight marker as a process that died during the batch starting at `first` leaves it. */
static void write_marker(const char *dir, int64_t first) {
  char path[4200], rec[193];
  snprintf(path, sizeof path, "%s/" TOPIC "-0.inflight", dir);
  int n = snprintf(rec, sizeof rec, "%lld -1 0 0 -1 -1 0 0 0", (long long)first);
  memset(rec + n, ' ', sizeof rec - 1 - (size_t)n);
  rec[191] = '\n';
  rec[192] = '\0';
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  assert_int_equal(fwrite(rec, 1, 192, fp), 192);
  fclose(fp);
}

/* A poison event's verdict must be durable before anything after it runs: once it is dead-lettered the partition asks
 * for a commit at once, so that a second poison event in the same batch cannot roll the verdict back. */
static void poison_verdict_asks_for_commit_at_once(void **state) {
  fixture *f = *state;
  apply_ok(f, 0, "x", TEST("{\"k\":\"a\"}"));
  commit_ok(f);
  esr_partition_close(f->p);
  f->p = NULL;
  write_marker(f->dir, 1);
  esr_crash_record last = {.n = 1};
  snprintf(last.v[0].topic, sizeof last.v[0].topic, TOPIC);
  last.v[0].partition = 0;
  last.v[0].offset = 2;
  last.v[0].signo = SIGSEGV;
  f->env.last_crash = &last;
  f->env.max_crash_retries = 0; /* one recorded death convicts */
  esr_error err = {0};
  if (esr_partition_open(&f->env, TOPIC, 0, 1, &f->p, &err) != ESR_E_OK) fail_msg("reopen: %s", err.msg);
  f->env.last_crash = NULL;
  apply_ok(f, 1, "x", TEST("{\"k\":\"b\"}"));
  assert_false(esr_partition_commit_due(f->p));
  apply_ok(f, 2, "x", TEST("{\"k\":\"c\"}")); /* the poison event: dead-lettered without running the handler */
  assert_true(esr_partition_commit_due(f->p));
  assert_int_equal(esr_partition_next_offset(f->p), 3);
  commit_ok(f);
  assert_false(esr_partition_commit_due(f->p));
  assert_int_equal(esr_partition_committed(f->p)->dead, 1);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM esr_outbox WHERE reason = 'crash' AND src_offset = 2"), 1);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM test_kv WHERE k = 'c'"), 0);
}

/* Every dead letter is logged at debug level; at info level only the first of an interval, then one summary line per
 * partition (here at close): a stream of bad input must not become a stream of log lines. */
static int count_lines(const char *text, const char *needle) {
  int n = 0;
  for (const char *q = text; (q = strstr(q, needle)); q += strlen(needle)) n++;
  return n;
}

static char *stderr_of_dead_letters(fixture *f, int level, int n) {
  char path[1100];
  snprintf(path, sizeof path, "%s/stderr.log", f->dir);
  fflush(stderr);
  int saved = dup(STDERR_FILENO), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(saved >= 0 && fd >= 0);
  dup2(fd, STDERR_FILENO);
  close(fd);
  esr_log_setup(level, ESR_LOG_TEXT);
  for (int i = 0; i < n; i++) apply_ok(f, i, "k", i % 2 ? "{" : "[]");
  commit_ok(f);
  reopen(f); /* closing the partition logs what is left to summarize */
  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  esr_log_setup(ESR_LOG_WARN, ESR_LOG_TEXT);
  char *text = tu_read_file(path, NULL);
  assert_non_null(text);
  return text;
}

static void dead_letters_logged_first_then_summarized(void **state) {
  fixture *f = *state;
  char *text = stderr_of_dead_letters(f, ESR_LOG_INFO, 200);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM esr_outbox"), 200); /* every one is a dead letter */
  assert_int_equal(count_lines(text, ": dead letter ("), 1);
  assert_int_equal(count_lines(text, "199 more dead letter(s) at offsets 1..199 (bad-json 100, bad-envelope 99)"), 1);
  free(text);
}

static void dead_letters_each_logged_at_debug(void **state) {
  fixture *f = *state;
  char *text = stderr_of_dead_letters(f, ESR_LOG_DEBUG, 30);
  assert_int_equal(count_lines(text, ": dead letter ("), 30);
  assert_int_equal(count_lines(text, "more dead letter(s)"), 0);
  free(text);
}

/* The worker's fast path: no savepoint per event. A refusal that changed nothing needs no undo (the ledger checks
 * before it writes); one that changed something rolls the batch back (ESR_E_REDO), and the batch applied again gives
 * the same state as with savepoints, the handler getting a savepoint per event from then on. */
static void fast_path_redoes_the_batch_when_a_handler_wrote_before_refusing(void **state) {
  fixture *f = *state;
  f->env.fast_path = 1; /* the partition reads its environment at each event */
  esr_plugin *ledger = f->reg.plugins[0], *good = f->reg.plugins[1];
  assert_string_equal(good->handler.name, "good");
  const char *ev[] = {TEST("{\"k\":\"x\",\"v\":\"1\"}"), OPEN("a1"), DEP("a1", "9"),
                      J("{\"type\":\"account.opened\",\"time\":\"2027-01-01T00:00:00Z\",\"data\":{\"account\":\"a1\","
                        "\"owner\":\"Mallory\"}}"),
                      TEST("{\"k\":\"x\",\"v\":\"2\",\"result\":\"reject\",\"error\":\"business says no\"}"),
                      TEST("{\"k\":\"z\",\"v\":\"3\"}")};
  const char *keys[] = {"x", "a1", "a1", "a1", "x", "z"};
  for (int i = 0; i < 4; i++) apply_ok(f, i, keys[i], ev[i]);
  /* the ledger refused offset 3 without writing: no redo, and it keeps the fast path */
  assert_int_equal(atomic_load(&ledger->writes_before_refusing), 0);
  assert_int_equal(esr_partition_next_offset(f->p), 4);
  esr_error err = {0};
  assert_int_equal(apply_bytes(f->p, 4, "x", 1, ev[4], strlen(ev[4]), &err), ESR_E_REDO);
  assert_contains(err.msg, "good");
  assert_int_equal(atomic_load(&good->writes_before_refusing), 1);
  assert_int_equal(esr_partition_next_offset(f->p), 0); /* back to the committed position */
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM test_kv"), 0);
  assert_int_equal(q_int(db(f), "SELECT count(*) FROM esr_outbox"), 0);
  for (int i = 0; i < 6; i++) apply_ok(f, i, keys[i], ev[i]); /* the batch again, and one more event */
  commit_ok(f);
  char *kv = q_text(db(f), "SELECT group_concat(k || '=' || v, ',') FROM (SELECT * FROM test_kv ORDER BY k)");
  assert_string_equal(kv, "x=1,z=3");
  free(kv);
  assert_int_equal(balance(f, "a1"), 9);
  tu_rows rows = tu_outbox(esr_partition_store(f->p));
  assert_int_equal(rows.n, 2);
  assert_int_equal(rows.v[0].src_offset, 3);
  assert_string_equal(rows.v[0].reason, "rejected");
  assert_int_equal(rows.v[1].src_offset, 4);
  assert_contains(rows.v[1].error, "business says no");
  tu_rows_free(&rows);
  const esr_position *c = esr_partition_committed(f->p);
  assert_int_equal(c->applied, 4);
  assert_int_equal(c->dead, 2);
  assert_int_equal(atomic_load(&ledger->writes_before_refusing), 0);
}

int main(void) {
  esr_store_init_library(); /* as the esr command does: the storage-fault tracker needs SQLite's error log */
  esr_log_setup(ESR_LOG_WARN, ESR_LOG_TEXT); /* dead letters are logged at info: keep the output readable */
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(ledger_sequence_balances_and_counters),
      T(dead_letter_reasons_keep_message_bytes),
      T(strict_json_dead_letters_nul_controls_and_bad_utf8),
      T(redelivered_offsets_are_skipped),
      T(rejected_event_leaves_state_unchanged_though_handler_wrote),
      T(amounts_invalid_never_rounded),
      T(amount_2p53_plus_1_invalid_not_rounded),
      T(balance_overflow_rejected),
      T(fatal_stops_before_event_and_commit_keeps_earlier),
      T(unknown_status_stops_too),
      T(commit_close_reopen_resumes),
      T(rolled_back_batch_returns_to_last_commit),
      T(log_digest_independent_of_batching),
      T(log_digest_differs_if_one_byte_differs),
      T(log_digest_follows_documented_formula),
      T(authorizer_blocks_handler_transaction_control_without_breaking_batch),
      T(handler_statement_left_mid_step_does_not_break_batch),
      T(emits_are_outbox_rows_numbered_per_event),
      T(event_fields_seen_by_handler),
      T(upcast_runs_before_apply),
      T(upcast_effects_roll_back_with_the_event_and_emit_is_refused),
      T(handler_cannot_change_esr_tables),
      T(ledger_deposit_v1_upcast_and_v2_currency),
      T(schema_violations_are_dead_lettered),
      T(migrate_runs_once),
      T(newer_handler_tables_refused),
      T(failed_migration_rolled_back_and_refused),
      T(delivered_rows_deleted_in_next_transaction),
      T(storage_fault_under_handler_is_retried_not_judged),
      T(poison_verdict_asks_for_commit_at_once),
      T(dead_letters_logged_first_then_summarized),
      T(dead_letters_each_logged_at_debug),
      T(fast_path_redoes_the_batch_when_a_handler_wrote_before_refusing),
  };
#undef T
  return cmocka_run_group_tests_name("partition", tests, NULL, NULL);
}
