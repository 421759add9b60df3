/* test_worker.c — integration tests of `esr run` as a black box: a mock Kafka cluster process, a producer, worker
 * processes, and the state read from their SQLite files. Label `integration`.
 *   group_mode_bad_input  — every kind of bad input in group mode; balances, positions and log digests equal the
 *                           oracle; the DLQ holds exactly the expected sources with their reasons, bytes unchanged;
 *                           SIGTERM exits 0 with the outbox empty.
 *   retention_gap         — the log start moves past the stored offset while the worker is stopped; on restart the
 *                           partition is refused with the needed offset and the log start, and nothing is applied.
 *   static_split_resume   — static assignment split over two workers (partitions 0-1 and 2,3), each touching only its
 *                           partitions; restarts resume at the stored offsets and the final state is exact.
 *   refusal_after_writes  — a handler that writes, then refuses some events (tests/plugins/good.so): the worker's
 *                           fast path (no savepoint per event) rolls the batch back at the first such refusal and
 *                           applies it again, that handler with a savepoint per event from then on; the state holds
 *                           exactly the accepted events and the dead-letter topic each refused one once.
 *   transactional_outputs — outputs.transactional = true (a transactional producer per partition) on the mock, with a
 *                           SIGKILL and a restart: dead letters and emitted events all published, each once. The mock
 *                           only imitates transactions (no commit or abort markers), so this shows that the
 *                           transactional path publishes, not the fencing a real broker adds.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "esrt_case.h"
#include "esrt_kafka.h"
#include "esrt_ledger.h"
#include "esrt_state.h"

#define LEDGER_SO ESR_BUILD_DIR "/handlers/ledger.so"
#define ECHO_SO ESR_BUILD_DIR "/tests/plugins/ledger_echo.so" /* the ledger, emitting one event per applied one */
#define GOOD_SO ESR_TEST_PLUGIN_DIR "/good.so" /* writes test_events and test_kv, then returns "result" */
#define CAUGHT_UP_MS 60000

static void free_producer(void *p) { esrt_producer_free(p); }
static void free_client(void *rk) { rd_kafka_destroy(rk); }

static int setup(void **state) {
  *state = esrt_case_new("integration");
  return *state ? 0 : -1;
}

static int teardown(void **state) {
  esrt_case_end(*state);
  return 0;
}

static esrt_event *generate(const esrt_gen_opts *o, size_t *n) {
  esrt_event *ev = esrt_ledger_generate(o, n);
  assert_non_null(ev);
  return ev;
}

/* Produces events [from, to) and waits for every delivery report. */
static void produce(esrt_producer *p, const char *topic, esrt_event *ev, size_t from, size_t to) {
  for (size_t i = from; i < to; i++)
    assert_int_equal(0, esrt_produce(p, topic, ev[i].partition, ev[i].key, ev[i].key_len, ev[i].value,
                                     ev[i].value_len, &ev[i].offset));
  assert_int_equal(0, esrt_producer_flush(p, 60000));
  for (size_t i = from; i < to; i++) assert_true(ev[i].offset >= 0);
}

/* The full comparison: state of every account and partition, then the dead-letter topic. */
static void expect_exact(const char *bootstrap, esrt_oracle *o, const esrt_records *src, const char *topic,
                         const char *dlq_topic, const char *const *dirs, size_t n_dirs, int partitions,
                         int allow_duplicates) {
  esrt_state st = {0};
  for (size_t d = 0; d < n_dirs; d++) assert_int_equal(0, esrt_state_read(&st, dirs[d], topic, partitions, 1));
  size_t state_diffs = esrt_compare_state(o, &st, stderr, 20);
  size_t n_acc;
  esrt_oracle_accounts(o, &n_acc);
  printf("# state: %zu accounts in the oracle, %zu in the databases, %zu differences\n", n_acc, st.n_accounts,
         state_diffs);
  esrt_state_free(&st);
  assert_int_equal(0, state_diffs);

  esrt_records dlq = {0};
  assert_int_equal(0, esrt_consume_all(bootstrap, dlq_topic, &dlq, 60000));
  esrt_dlq_summary sum;
  size_t dlq_diffs = esrt_compare_dlq(o, topic, src, &dlq, &sum, stderr, 20);
  printf("# dead letters: %zu expected, %zu messages, %zu distinct, %zu duplicates, %zu differences\n",
         esrt_oracle_dead_count(o), sum.messages, sum.distinct, sum.duplicates, dlq_diffs);
  esrt_records_free(&dlq);
  assert_int_equal(0, dlq_diffs);
  assert_int_equal(esrt_oracle_dead_count(o), sum.distinct);
  if (!allow_duplicates) assert_int_equal(0, sum.duplicates);
}

static void expect_outbox_empty(const char *dir, const char *topic, int partitions) {
  for (int p = 0; p < partitions; p++) {
    esrt_part_state ps;
    assert_int_equal(0, esrt_read_position(dir, topic, p, &ps));
    if (ps.outbox != 0) fprintf(stderr, "%s[%d]: %" PRId64 " outbox rows left\n", topic, p, ps.outbox);
    assert_int_equal(0, ps.outbox);
  }
}

/* Waits until the file contains `needle`, failing after timeout_ms (or when the process died). */
static int wait_for_log(esrt_proc *p, const char *path, const char *needle, int timeout_ms) {
  int64_t deadline = esrt_now_ms() + timeout_ms;
  while (!esrt_file_contains(path, needle)) {
    if (esrt_now_ms() >= deadline) {
      fprintf(stderr, "'%s' not in %s after %d ms\n", needle, path, timeout_ms);
      return -1;
    }
    if (!esrt_alive(p) && !esrt_file_contains(path, needle)) {
      fprintf(stderr, "%s exited (code %d) without logging '%s'\n", p->name, esrt_exit_code(p), needle);
      return -1;
    }
    esrt_sleep_ms(10);
  }
  return 0;
}

/* ------------------------------------------------------------------------------------------------------------ */

static void group_mode_bad_input(void **state) {
  esrt_case *c = *state;
  const int P = 4;
  const char *topics[] = {"ledger:4", "ledger.dlq:1", NULL};
  esrt_mock mock;
  assert_int_equal(0, esrt_mock_start(&mock, ESR_BIN, c->dir, 3, topics, 20000));

  /* ~570 events over 40 accounts, a quarter of them bad (every kind at least once, up front), plus the whale's
   * 1,030 events that end in int64 overflows. */
  esrt_gen_opts g = {.seed = 20261125, .events = 1600, .accounts = 40, .partitions = P, .bad_share = 0.25,
                     .whale = 1, .prefix_kinds = 1};
  size_t n;
  esrt_event *ev = generate(&g, &n);
  esrt_producer *prod = esrt_case_defer(c, free_producer, esrt_producer_new(mock.bootstrap));
  assert_non_null(prod);
  produce(prod, "ledger", ev, 0, n);

  esrt_records src = {0};
  esrt_oracle *o = esrt_ledger_oracle_from_log(mock.bootstrap, "ledger", P, ev, n, &src);
  assert_non_null(o);
  /* every bad kind was produced and every reason is expected at least once */
  for (int k = 0; esrt_ledger_bad_kinds[k].kind; k++) {
    int found = 0;
    for (size_t i = 0; i < n && !found; i++) found = strcmp(ev[i].kind, esrt_ledger_bad_kinds[k].kind) == 0;
    assert_true(found);
  }
  int overflow = 0;
  for (size_t i = 0; i < n; i++) overflow += strcmp(ev[i].kind, "whale-overflow") == 0;
  assert_int_equal(3, overflow);

  char state_dir[1100], conf[1024];
  snprintf(state_dir, sizeof state_dir, "%s/state", c->dir);
  assert_int_equal(0, esrt_write_worker_config(conf, sizeof conf, c->dir, "group", mock.bootstrap, "ledger",
                                               "ledger.dlq", state_dir, LEDGER_SO,
                                               "assignment = group\n"
                                               "kafka.group.id = esr-it-group\n"
                                               "kafka.session.timeout.ms = 6000\n"
                                               "batch.max.events = 50\n"
                                               "log.format = json\n"));
  esrt_proc w;
  assert_int_equal(0, esrt_start_worker(&w, ESR_BIN, c->dir, "worker", conf));
  rd_kafka_t *rk = esrt_case_defer(c, free_client, esrt_kafka_client_new(mock.bootstrap));
  assert_non_null(rk);
  const char *dirs[] = {state_dir};
  int64_t t0 = esrt_now_ms();
  assert_int_equal(0, esrt_wait_caught_up(rk, "ledger", P, dirs, 1, CAUGHT_UP_MS));
  printf("# group mode: caught up with %zu events in %" PRId64 " ms (including the group join)\n", n,
         esrt_now_ms() - t0);
  assert_true(esrt_alive(&w));
  expect_exact(mock.bootstrap, o, &src, "ledger", "ledger.dlq", dirs, 1, P, 0);

  /* SIGTERM: a clean stop, exit 0, nothing left in any outbox, and the state still exact. */
  assert_int_equal(0, esrt_stop(&w, 30000));
  assert_true(esrt_file_contains(w.err_path, "stopped cleanly"));
  expect_outbox_empty(state_dir, "ledger", P);
  expect_exact(mock.bootstrap, o, &src, "ledger", "ledger.dlq", dirs, 1, P, 0);

  esrt_oracle_free(o);
  esrt_records_free(&src);
  esrt_events_free(ev, n);
  esrt_case_cleanup(c);
  assert_int_equal(0, esrt_mock_stop(&mock));
  c->passed = 1;
}

/* ------------------------------------------------------------------------------------------------------------ */

static int64_t q_int(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(SQLITE_OK, sqlite3_prepare_v2(db, sql, -1, &st, NULL));
  assert_int_equal(SQLITE_ROW, sqlite3_step(st));
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static void refusal_after_writes(void **state) {
  esrt_case *c = *state;
  enum { P = 2, N = 400, KEYS = 7, EVERY = 25 };
  const char *topics[] = {"kv:2", "kv.dlq:1", NULL};
  esrt_mock mock;
  assert_int_equal(0, esrt_mock_start(&mock, ESR_BIN, c->dir, 3, topics, 20000));
  esrt_producer *prod = esrt_case_defer(c, free_producer, esrt_producer_new(mock.bootstrap));
  rd_kafka_t *rk = esrt_case_defer(c, free_client, esrt_kafka_client_new(mock.bootstrap));
  assert_non_null(prod);
  assert_non_null(rk);
  /* Event i goes to partition i % 2 with key k<i % KEYS>; every EVERY-th is refused after the handler wrote both of
   * its tables. Expected per partition: the offsets of the accepted events, and each key's last accepted value. */
  int64_t offset[N];
  char expect_v[P][KEYS][16] = {{{0}}};
  int accepted[P] = {0}, refused = 0;
  for (int i = 0; i < N; i++) {
    char key[16], value[256];
    int p = i % P, k = i % KEYS, reject = i % EVERY == EVERY - 1;
    snprintf(key, sizeof key, "k%d", k);
    snprintf(value, sizeof value, "{\"type\":\"test.event\",\"data\":{\"k\":\"%s\",\"v\":\"%d\"%s}}", key, i,
             reject ? ",\"result\":\"reject\",\"error\":\"refused after writing\"" : "");
    assert_int_equal(0, esrt_produce(prod, "kv", p, key, strlen(key), value, strlen(value), &offset[i]));
    if (reject) {
      refused++;
    } else {
      accepted[p]++;
      snprintf(expect_v[p][k], sizeof expect_v[p][k], "%d", i);
    }
  }
  assert_int_equal(0, esrt_producer_flush(prod, 60000));

  char state_dir[1100], conf[1024];
  snprintf(state_dir, sizeof state_dir, "%s/state", c->dir);
  assert_int_equal(0, esrt_write_worker_config(conf, sizeof conf, c->dir, "redo", mock.bootstrap, "kv", "kv.dlq",
                                               state_dir, GOOD_SO,
                                               "assignment = static\npartitions = 0-1\nbatch.max.events = 100\n"));
  esrt_proc w;
  assert_int_equal(0, esrt_start_worker(&w, ESR_BIN, c->dir, "worker", conf));
  const char *dirs[] = {state_dir};
  assert_int_equal(0, esrt_wait_caught_up(rk, "kv", P, dirs, 1, CAUGHT_UP_MS));
  assert_int_equal(0, esrt_stop(&w, 30000));
  /* premise: the fast path met a refusal after writes and the batch was applied again, once for the process */
  char *log = esrt_read_file(w.err_path, NULL);
  assert_non_null(log);
  int redo_lines = 0;
  for (const char *q = log; (q = strstr(q, "changed the database before refusing an event")); q++) redo_lines++;
  free(log);
  assert_int_equal(1, redo_lines);

  for (int p = 0; p < P; p++) {
    char path[1200];
    snprintf(path, sizeof path, "%s/kv-%d.db", state_dir, p);
    sqlite3 *db = NULL;
    assert_int_equal(SQLITE_OK, sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL));
    assert_int_equal(accepted[p], q_int(db, "SELECT count(*) FROM test_events"));
    for (int k = 0; k < KEYS; k++) {
      char sql[128];
      snprintf(sql, sizeof sql, "SELECT coalesce((SELECT CAST(v AS INTEGER) FROM test_kv WHERE k = 'k%d'), -1)", k);
      assert_int_equal(expect_v[p][k][0] ? atoll(expect_v[p][k]) : -1, q_int(db, sql));
    }
    for (int i = p; i < N; i += P) { /* each refused event left no row, each accepted one its row */
      char sql[128];
      snprintf(sql, sizeof sql, "SELECT count(*) FROM test_events WHERE offset = %" PRId64, offset[i]);
      assert_int_equal(i % EVERY == EVERY - 1 ? 0 : 1, q_int(db, sql));
    }
    sqlite3_close(db);
  }
  esrt_records dl = {0};
  assert_int_equal(0, esrt_consume_all(mock.bootstrap, "kv.dlq", &dl, 60000));
  assert_int_equal(refused, (int)dl.n); /* each refused event once */
  for (size_t j = 0; j < dl.n; j++) {
    const char *reason = esrt_record_header(&dl.v[j], "esr-reason");
    assert_non_null(reason);
    assert_string_equal(reason, "rejected");
  }
  printf("# refusal after writes: %d accepted, %d refused (each dead-lettered once), one redo\n",
         accepted[0] + accepted[1], refused);
  esrt_records_free(&dl);
  esrt_case_cleanup(c);
  assert_int_equal(0, esrt_mock_stop(&mock));
  c->passed = 1;
}

/* ------------------------------------------------------------------------------------------------------------ */

static void transactional_outputs(void **state) {
  esrt_case *c = *state;
  const int P = 4;
  const char *topics[] = {"ledger:4", "ledger.dlq:1", "ledger.out:2", NULL};
  esrt_mock mock;
  assert_int_equal(0, esrt_mock_start(&mock, ESR_BIN, c->dir, 3, topics, 20000));
  esrt_gen_opts g = {.seed = 77, .events = 3000, .accounts = 100, .partitions = P, .bad_share = 0.1,
                     .prefix_kinds = 1};
  size_t n;
  esrt_event *ev = generate(&g, &n);
  esrt_producer *prod = esrt_case_defer(c, free_producer, esrt_producer_new(mock.bootstrap));
  rd_kafka_t *rk = esrt_case_defer(c, free_client, esrt_kafka_client_new(mock.bootstrap));
  assert_non_null(prod);
  assert_non_null(rk);
  char state_dir[1100], conf[1024];
  snprintf(state_dir, sizeof state_dir, "%s/state", c->dir);
  assert_int_equal(0, esrt_write_worker_config(conf, sizeof conf, c->dir, "txn", mock.bootstrap, "ledger",
                                               "ledger.dlq", state_dir, ECHO_SO,
                                               "assignment = static\npartitions = 0-3\n"
                                               "kafka.group.id = esr-it-txn\noutputs.transactional = true\n"
                                               "batch.max.events = 50\n"));
  const char *dirs[] = {state_dir};
  esrt_proc w;
  produce(prod, "ledger", ev, 0, n / 2);
  assert_int_equal(0, esrt_start_worker(&w, ESR_BIN, c->dir, "worker", conf));
  assert_int_equal(0, esrt_wait_caught_up(rk, "ledger", P, dirs, 1, CAUGHT_UP_MS));
  assert_int_equal(128 + 9, esrt_kill9(&w)); /* the next producers of these transactional.ids fence this one's */
  produce(prod, "ledger", ev, n / 2, n);
  assert_int_equal(0, esrt_start_worker(&w, ESR_BIN, c->dir, "worker-2", conf));
  assert_int_equal(0, esrt_wait_caught_up(rk, "ledger", P, dirs, 1, CAUGHT_UP_MS));
  assert_int_equal(0, esrt_stop(&w, 30000));
  assert_false(esrt_file_contains(w.err_path, "committing a transaction"));
  assert_false(esrt_file_contains(w.err_path, "initialising transactions"));

  esrt_records src = {0}, out = {0};
  esrt_oracle *o = esrt_ledger_oracle_from_log(mock.bootstrap, "ledger", P, ev, n, &src);
  assert_non_null(o);
  expect_exact(mock.bootstrap, o, &src, "ledger", "ledger.dlq", dirs, 1, P, 0);
  assert_int_equal(0, esrt_consume_all(mock.bootstrap, "ledger.out", &out, 60000));
  esrt_dlq_summary sum;
  size_t diffs = esrt_compare_emits(o, "ledger", &src, &out, &sum, stderr, 20);
  printf("# transactional outputs: %zu emitted events, %zu distinct, %zu duplicates, %zu differences\n", sum.messages,
         sum.distinct, sum.duplicates, diffs);
  assert_int_equal(0, diffs);
  assert_int_equal(0, sum.duplicates);

  esrt_records_free(&out);
  esrt_records_free(&src);
  esrt_oracle_free(o);
  esrt_events_free(ev, n);
  esrt_case_cleanup(c);
  assert_int_equal(0, esrt_mock_stop(&mock));
  c->passed = 1;
}

/* ------------------------------------------------------------------------------------------------------------ */

static void retention_gap(void **state) {
  esrt_case *c = *state;
  const char *topics[] = {"gap:1", "gap.dlq:1", NULL};
  esrt_mock mock;
  assert_int_equal(0, esrt_mock_start(&mock, ESR_BIN, c->dir, 1, topics, 20000));
  esrt_producer *prod = esrt_case_defer(c, free_producer, esrt_producer_new(mock.bootstrap));
  assert_non_null(prod);
  rd_kafka_t *rk = esrt_case_defer(c, free_client, esrt_kafka_client_new(mock.bootstrap));
  assert_non_null(rk);

  /* A few events: two accounts opened, a deposit each. */
  static const char *const first[][2] = {
      {"alice", "{\"type\":\"account.opened\",\"data\":{\"account\":\"alice\",\"owner\":\"Alice\"}}"},
      {"bob", "{\"type\":\"account.opened\",\"data\":{\"account\":\"bob\",\"owner\":\"Bob\"}}"},
      {"alice", "{\"type\":\"account.deposited\",\"data\":{\"account\":\"alice\",\"amount\":100}}"},
      {"bob", "{\"type\":\"account.deposited\",\"data\":{\"account\":\"bob\",\"amount\":250}}"},
      {"alice", "{\"type\":\"account.withdrawn\",\"data\":{\"account\":\"alice\",\"amount\":30}}"},
  };
  const int n_first = 5;
  for (int i = 0; i < n_first; i++)
    assert_int_equal(0, esrt_produce(prod, "gap", 0, first[i][0], strlen(first[i][0]), first[i][1],
                                     strlen(first[i][1]), NULL));
  assert_int_equal(0, esrt_producer_flush(prod, 30000));

  char state_dir[1100], conf[1024];
  snprintf(state_dir, sizeof state_dir, "%s/state", c->dir);
  assert_int_equal(0, esrt_write_worker_config(conf, sizeof conf, c->dir, "gap", mock.bootstrap, "gap", "gap.dlq",
                                               state_dir, LEDGER_SO, "assignment = static\npartitions = 0\n"));
  esrt_proc w;
  assert_int_equal(0, esrt_start_worker(&w, ESR_BIN, c->dir, "worker", conf));
  const char *dirs[] = {state_dir};
  assert_int_equal(0, esrt_wait_caught_up(rk, "gap", 1, dirs, 1, CAUGHT_UP_MS));
  assert_int_equal(0, esrt_stop(&w, 30000));

  esrt_state before = {0};
  assert_int_equal(0, esrt_state_read(&before, state_dir, "gap", 1, 1));
  assert_int_equal(n_first, before.parts[0].next_offset);
  assert_int_equal(2, before.n_accounts);
  assert_int_equal(70, before.accounts[0].balance);  /* alice */
  assert_int_equal(250, before.accounts[1].balance); /* bob */

  /* While it is stopped: > 5 MiB of applicable deposits (1 KiB each), past the mock's retention. */
  const int n_big = 6000;
  char *memo = malloc(1001);
  assert_non_null(memo);
  memset(memo, 'm', 1000);
  memo[1000] = '\0';
  for (int i = 0; i < n_big; i++) {
    char value[1200];
    const char *who = i % 2 ? "alice" : "bob";
    int len = snprintf(value, sizeof value,
                       "{\"type\":\"account.deposited\",\"data\":{\"account\":\"%s\",\"amount\":1,\"memo\":\"%s\"}}",
                       who, memo);
    assert_int_equal(0, esrt_produce(prod, "gap", 0, who, strlen(who), value, (size_t)len, NULL));
  }
  free(memo);
  assert_int_equal(0, esrt_producer_flush(prod, 60000));
  int64_t lo = -1, hi = -1;
  int64_t deadline = esrt_now_ms() + 10000;
  do {
    assert_int_equal(0, esrt_watermarks(rk, "gap", 0, &lo, &hi));
    if (lo > n_first) break;
    esrt_sleep_ms(20);
  } while (esrt_now_ms() < deadline);
  printf("# gap: stored next_offset %d; the log now spans [%" PRId64 ", %" PRId64 ")\n", n_first, lo, hi);
  assert_int_equal(n_first + n_big, hi);
  assert_true(lo > n_first); /* retention dropped events the worker never applied */

  /* Restart: the partition must be refused, naming the needed offset and the log start. */
  esrt_proc w2;
  assert_int_equal(0, esrt_start_worker(&w2, ESR_BIN, c->dir, "worker-restart", conf));
  char need[64], start[64];
  snprintf(need, sizeof need, "no longer holds offset %d", n_first);
  snprintf(start, sizeof start, "starts at %" PRId64, lo);
  assert_int_equal(0, wait_for_log(&w2, w2.err_path, need, 30000));
  assert_true(esrt_file_contains(w2.err_path, start));
  /* The worker stops that partition but keeps running and stops cleanly; only then is the state final. */
  assert_true(esrt_alive(&w2));
  assert_int_equal(0, esrt_stop(&w2, 30000));

  esrt_state after = {0};
  assert_int_equal(0, esrt_state_read(&after, state_dir, "gap", 1, 1));
  assert_int_equal(before.parts[0].next_offset, after.parts[0].next_offset);
  assert_int_equal(before.parts[0].applied, after.parts[0].applied);
  assert_int_equal(before.parts[0].dead, after.parts[0].dead);
  assert_memory_equal(before.parts[0].digest, after.parts[0].digest, 32);
  assert_int_equal(before.n_accounts, after.n_accounts);
  for (size_t i = 0; i < before.n_accounts; i++) {
    assert_string_equal(before.accounts[i].id, after.accounts[i].id);
    assert_int_equal(before.accounts[i].balance, after.accounts[i].balance);
  }
  /* nothing was dead-lettered either: the events were neither applied nor skipped */
  esrt_records dlq = {0};
  assert_int_equal(0, esrt_consume_all(mock.bootstrap, "gap.dlq", &dlq, 30000));
  assert_int_equal(0, dlq.n);
  esrt_records_free(&dlq);

  esrt_state_free(&before);
  esrt_state_free(&after);
  esrt_case_cleanup(c);
  assert_int_equal(0, esrt_mock_stop(&mock));
  c->passed = 1;
}

/* ------------------------------------------------------------------------------------------------------------ */

/* Which partition databases exist in dir (bit p set for <topic>-<p>.db). */
static unsigned dbs_in(const char *dir, const char *topic, int partitions) {
  unsigned mask = 0;
  for (int p = 0; p < partitions; p++) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s-%d.db", dir, topic, p);
    if (access(path, F_OK) == 0) mask |= 1u << p;
  }
  return mask;
}

static void static_split_resume(void **state) {
  esrt_case *c = *state;
  const int P = 4;
  const char *topics[] = {"ledger:4", "ledger.dlq:1", NULL};
  esrt_mock mock;
  assert_int_equal(0, esrt_mock_start(&mock, ESR_BIN, c->dir, 3, topics, 20000));
  esrt_gen_opts g = {.seed = 7, .events = 800, .accounts = 60, .partitions = P, .bad_share = 0.1, .prefix_kinds = 1};
  size_t n;
  esrt_event *ev = generate(&g, &n);
  esrt_producer *prod = esrt_case_defer(c, free_producer, esrt_producer_new(mock.bootstrap));
  assert_non_null(prod);
  rd_kafka_t *rk = esrt_case_defer(c, free_client, esrt_kafka_client_new(mock.bootstrap));
  assert_non_null(rk);
  size_t half = n / 2;
  produce(prod, "ledger", ev, 0, half);

  char dir_a[1100], dir_b[1100], conf_a[1024], conf_b[1024];
  snprintf(dir_a, sizeof dir_a, "%s/state-a", c->dir);
  snprintf(dir_b, sizeof dir_b, "%s/state-b", c->dir);
  assert_int_equal(0, esrt_write_worker_config(conf_a, sizeof conf_a, c->dir, "a", mock.bootstrap, "ledger",
                                               "ledger.dlq", dir_a, LEDGER_SO,
                                               "assignment = static\npartitions = 0-1\nbatch.max.events = 20\n"));
  assert_int_equal(0, esrt_write_worker_config(conf_b, sizeof conf_b, c->dir, "b", mock.bootstrap, "ledger",
                                               "ledger.dlq", dir_b, LEDGER_SO,
                                               "assignment = static\npartitions = 2,3\nbatch.max.ms = 5\n"));
  esrt_proc a, b;
  assert_int_equal(0, esrt_start_worker(&a, ESR_BIN, c->dir, "worker-a", conf_a));
  assert_int_equal(0, esrt_start_worker(&b, ESR_BIN, c->dir, "worker-b", conf_b));
  const char *dirs[] = {dir_a, dir_b};
  assert_int_equal(0, esrt_wait_caught_up(rk, "ledger", P, dirs, 2, CAUGHT_UP_MS));
  /* each worker touched only its own partitions */
  assert_int_equal(0x3, dbs_in(dir_a, "ledger", P));
  assert_int_equal(0xc, dbs_in(dir_b, "ledger", P));
  assert_int_equal(0, esrt_stop(&a, 30000));
  assert_int_equal(0, esrt_stop(&b, 30000));

  int64_t stored[4];
  for (int p = 0; p < P; p++) {
    esrt_part_state ps;
    assert_int_equal(0, esrt_read_position(p < 2 ? dir_a : dir_b, "ledger", p, &ps));
    assert_true(ps.present);
    stored[p] = ps.next_offset;
  }

  /* More events while both are stopped; the restarts must resume exactly at the stored offsets. */
  produce(prod, "ledger", ev, half, n);
  esrt_proc a2, b2;
  assert_int_equal(0, esrt_start_worker(&a2, ESR_BIN, c->dir, "worker-a2", conf_a));
  assert_int_equal(0, esrt_start_worker(&b2, ESR_BIN, c->dir, "worker-b2", conf_b));
  for (int p = 0; p < P; p++) {
    char line[128];
    snprintf(line, sizeof line, "ledger[%d]: assigned; resuming at offset %" PRId64 " ", p, stored[p]);
    esrt_proc *w = p < 2 ? &a2 : &b2;
    assert_int_equal(0, wait_for_log(w, w->err_path, line, 30000));
  }
  assert_int_equal(0, esrt_wait_caught_up(rk, "ledger", P, dirs, 2, CAUGHT_UP_MS));
  assert_int_equal(0, esrt_stop(&a2, 30000));
  assert_int_equal(0, esrt_stop(&b2, 30000));
  assert_int_equal(0x3, dbs_in(dir_a, "ledger", P));
  assert_int_equal(0xc, dbs_in(dir_b, "ledger", P));
  expect_outbox_empty(dir_a, "ledger", 2);

  esrt_records src = {0};
  esrt_oracle *o = esrt_ledger_oracle_from_log(mock.bootstrap, "ledger", P, ev, n, &src);
  assert_non_null(o);
  expect_exact(mock.bootstrap, o, &src, "ledger", "ledger.dlq", dirs, 2, P, 0);

  esrt_oracle_free(o);
  esrt_records_free(&src);
  esrt_events_free(ev, n);
  esrt_case_cleanup(c);
  assert_int_equal(0, esrt_mock_stop(&mock));
  c->passed = 1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(group_mode_bad_input, setup, teardown),
      cmocka_unit_test_setup_teardown(retention_gap, setup, teardown),
      cmocka_unit_test_setup_teardown(static_split_resume, setup, teardown),
      cmocka_unit_test_setup_teardown(transactional_outputs, setup, teardown),
      cmocka_unit_test_setup_teardown(refusal_after_writes, setup, teardown),
  };
  return cmocka_run_group_tests_name("integration", tests, NULL, NULL);
}
