/* test_faults.c — storage faults under a running worker, black box (label `integration`). The worker runs with the
 * SQLite fault shim of tests/support/esrt_faultvfs.c preloaded; the test switches faults on and off through its control
 * file while events flow, and asserts each premise from the shim's log (the fault really struck).
 *   corrupt_commit_rebuilds      — a COMMIT reports SQLITE_CORRUPT: the partition's database is moved aside and rebuilt
 *                                  from the recovery ladder, the worker goes on (under ASan: no use after free of the
 *                                  partition's slot, which the rebuild frees while its caller still used it).
 *   commit_faults_retry          — disk full, an I/O error and out of memory at COMMIT, one after the other: the
 *                                  partition rolls back, retries while the fault lasts (the shim sees the retries),
 *                                  applies nothing meanwhile, and resumes when the fault clears; the end state and dead
 *                                  letters equal the oracle (nothing lost, nothing applied twice).
 *   checkpoint_faults_keep_going — I/O errors and a full disk while checkpoints are written: the partitions keep
 *                                  applying, no incomplete checkpoint is ever taken for a complete one, and checkpoints
 *                                  succeed again once the fault clears.
 *   state_ahead_of_log_is_named  — the log ends before the state's offset (the cluster was replaced): the partition is
 *                                  refused with a message that says so, not as a retention gap.
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

#include "esrt_case.h"
#include "esrt_kafka.h"
#include "esrt_ledger.h"
#include "esrt_recovery.h"
#include "esrt_state.h"

#define LEDGER_SO ESR_BUILD_DIR "/handlers/ledger.so"
#define SHIM_SO ESR_BUILD_DIR "/tests/support/esrt_faultvfs.so"
#define P 2
#define WAIT_MS 120000

static void free_producer(void *p) { esrt_producer_free(p); }
static void free_client(void *rk) { rd_kafka_destroy(rk); }

typedef struct rig {
  esrt_case *c;
  esrt_mock mock;
  esrt_producer *prod;
  rd_kafka_t *rk;
  esrt_event *ev;
  size_t n, produced;
  char state_dir[1100], conf[1100], faults[1100], faults_log[1100];
  esrt_proc w;
} rig;

static void rig_start(rig *R, esrt_case *c, int events, const char *extra) {
  memset(R, 0, sizeof *R);
  R->c = c;
  const char *topics[] = {"ledger:2", "ledger.dlq:1", NULL};
  assert_int_equal(0, esrt_mock_start(&R->mock, ESR_BIN, c->dir, 1, topics, 20000));
  esrt_gen_opts g = {.seed = 77, .events = events, .accounts = 300, .partitions = P, .bad_share = 0.03,
                     .prefix_kinds = 1};
  R->ev = esrt_ledger_generate(&g, &R->n);
  assert_non_null(R->ev);
  R->prod = esrt_case_defer(c, free_producer, esrt_producer_new(R->mock.bootstrap));
  assert_non_null(R->prod);
  R->rk = esrt_case_defer(c, free_client, esrt_kafka_client_new(R->mock.bootstrap));
  assert_non_null(R->rk);
  snprintf(R->state_dir, sizeof R->state_dir, "%s/state", c->dir);
  snprintf(R->faults, sizeof R->faults, "%s/faults.conf", c->dir);
  snprintf(R->faults_log, sizeof R->faults_log, "%s/faults.log", c->dir);
  assert_int_equal(0, esrt_write_file(R->faults, "# no fault yet\n"));
  assert_int_equal(0, esrt_write_worker_config(R->conf, sizeof R->conf, c->dir, "worker", R->mock.bootstrap, "ledger",
                                               "ledger.dlq", R->state_dir, LEDGER_SO,
                                               "assignment = static\npartitions = 0-1\n%s", extra));
  /* The shim is preloaded into the worker only (the variables are set around its start). */
  const char *asan = getenv("ASAN_OPTIONS");
  char *saved_asan = asan ? strdup(asan) : NULL;
  char opts[1200];
  snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", asan ? asan : "", asan && *asan ? ":" : "");
  setenv("ASAN_OPTIONS", opts, 1);
  setenv("LD_PRELOAD", SHIM_SO, 1);
  setenv("ESRT_FAULTS", R->faults, 1);
  setenv("ESRT_FAULTS_LOG", R->faults_log, 1);
  assert_int_equal(0, esrt_start_worker(&R->w, ESR_BIN, c->dir, "worker", R->conf));
  unsetenv("LD_PRELOAD");
  unsetenv("ESRT_FAULTS");
  unsetenv("ESRT_FAULTS_LOG");
  if (saved_asan)
    setenv("ASAN_OPTIONS", saved_asan, 1);
  else
    unsetenv("ASAN_OPTIONS");
  free(saved_asan);
}

/* Produces the next `count` events (or what is left) and waits for their delivery reports. */
static void produce(rig *R, size_t count) {
  size_t to = R->produced + count < R->n ? R->produced + count : R->n;
  for (; R->produced < to; R->produced++) {
    esrt_event *e = &R->ev[R->produced];
    assert_int_equal(0, esrt_produce(R->prod, "ledger", e->partition, e->key, e->key_len, e->value, e->value_len,
                                     &e->offset));
  }
  assert_int_equal(0, esrt_producer_flush(R->prod, 60000));
}

static void caught_up(rig *R) {
  const char *dirs[] = {R->state_dir};
  assert_int_equal(0, esrt_wait_caught_up(R->rk, "ledger", P, dirs, 1, WAIT_MS));
}

/* Lines of the shim's log containing `needle` (0 when the log does not exist yet). */
static int injected(const rig *R, const char *needle) {
  char *text = esrt_read_file(R->faults_log, NULL);
  int n = 0;
  for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
  free(text);
  return n;
}

/* Waits until the shim logged at least `want` faults containing `needle`; fails after WAIT_MS. */
static void wait_injected(rig *R, const char *needle, int want) {
  int64_t deadline = esrt_now_ms() + WAIT_MS;
  while (injected(R, needle) < want) {
    if (!esrt_alive(&R->w) || esrt_now_ms() >= deadline) {
      fprintf(stderr, "expected %d injected faults matching '%s', saw %d (worker %s)\n", want, needle,
              injected(R, needle), esrt_alive(&R->w) ? "running" : "exited");
      fail();
    }
    esrt_sleep_ms(20);
  }
}

static void set_faults(rig *R, const char *rules) { assert_int_equal(0, esrt_write_file(R->faults, "%s", rules)); }

/* The verdict: every event produced, applied or dead-lettered exactly as the oracle says. */
static void verdict(rig *R) {
  caught_up(R);
  esrt_records src = {0};
  esrt_oracle *o = esrt_ledger_oracle_from_log(R->mock.bootstrap, "ledger", P, R->ev, R->produced, &src);
  assert_non_null(o);
  esrt_state st = {0};
  assert_int_equal(0, esrt_state_read(&st, R->state_dir, "ledger", P, 1));
  size_t state_diffs = esrt_compare_state(o, &st, stderr, 20);
  esrt_records dlq = {0};
  assert_int_equal(0, esrt_consume_all(R->mock.bootstrap, "ledger.dlq", &dlq, 60000));
  esrt_dlq_summary sum;
  size_t dlq_diffs = esrt_compare_dlq(o, "ledger", &src, &dlq, &sum, stderr, 20);
  printf("# verdict: %zu events, %zu dead letters expected, %zu distinct in the DLQ; %zu state and %zu dead-letter "
         "differences\n",
         R->produced, esrt_oracle_dead_count(o), sum.distinct, state_diffs, dlq_diffs);
  assert_int_equal(0, state_diffs);
  assert_int_equal(0, dlq_diffs);
  esrt_state_free(&st);
  esrt_records_free(&dlq);
  esrt_records_free(&src);
  esrt_oracle_free(o);
}

static void rig_end(rig *R) {
  assert_true(esrt_alive(&R->w));
  assert_int_equal(0, esrt_stop(&R->w, 30000));
  esrt_events_free(R->ev, R->n);
  esrt_case_cleanup(R->c);
  assert_int_equal(0, esrt_mock_stop(&R->mock));
}

static int64_t position(rig *R, int32_t partition) {
  esrt_part_state ps;
  assert_int_equal(0, esrt_read_position(R->state_dir, "ledger", partition, &ps));
  return ps.present ? ps.next_offset : 0;
}

static void corrupt_commit_rebuilds(void **state) {
  esrt_case *c = *state;
  rig R;
  /* Large batches: the batches are committed by the idle tick, the path that used the freed slot. */
  rig_start(&R, c, 3000, "batch.max.events = 5000\n");
  produce(&R, 1000);
  caught_up(&R);
  set_faults(&R, "write corrupt ledger-0.db-wal 1\n");
  produce(&R, 1000);
  wait_injected(&R, "ledger-0.db-wal", 1);
  produce(&R, 1000);
  verdict(&R);
  char aside[2200];
  assert_true(esrt_dir_count_prefix(R.state_dir, "ledger-0.db.corrupt-", aside, sizeof aside) >= 1);
  assert_true(esrt_file_contains(R.w.err_path, "ledger[0]: the live database is damaged"));
  rig_end(&R);
  c->passed = 1;
}

static void commit_faults_retry(void **state) {
  esrt_case *c = *state;
  rig R;
  rig_start(&R, c, 4000, "batch.max.events = 200\n");
  produce(&R, 800);
  caught_up(&R);
  static const char *const kinds[] = {"full", "ioerr", "nomem"};
  for (int k = 0; k < 3; k++) {
    char rule[200], needle[64];
    snprintf(rule, sizeof rule, "write %s ledger-1.db-wal\n", kinds[k]);
    snprintf(needle, sizeof needle, "write %s", kinds[k]);
    int64_t before = position(&R, 1);
    set_faults(&R, rule);
    produce(&R, 800);
    /* The first failed commit, then at least two retries that failed too: it retries while the fault lasts. */
    wait_injected(&R, needle, 3);
    int64_t lo, hi;
    assert_int_equal(0, esrt_watermarks(R.rk, "ledger", 1, &lo, &hi));
    assert_true(hi > before);
    int64_t during = position(&R, 1);
    printf("# %s at COMMIT: partition 1 stays at offset %" PRId64 " (was %" PRId64 ", the log ends at %" PRId64
           ") while %d commits failed\n",
           kinds[k], during, before, hi, injected(&R, needle));
    assert_int_equal(during, before); /* nothing committed while every commit fails */
    assert_true(esrt_alive(&R.w));
    set_faults(&R, "# cleared\n");
    caught_up(&R); /* resumes once the fault clears */
  }
  produce(&R, R.n);
  verdict(&R);
  rig_end(&R);
  c->passed = 1;
}

static void checkpoint_faults_keep_going(void **state) {
  esrt_case *c = *state;
  rig R;
  rig_start(&R, c, 4000, "batch.max.events = 100\ncheckpoint.interval.events = 100\ncheckpoint.keep = 100\n");
  produce(&R, 500);
  caught_up(&R);
  char cp_dir[1200];
  snprintf(cp_dir, sizeof cp_dir, "%s/checkpoints", R.state_dir);
  static const char *const kinds[] = {"ioerr", "full"};
  for (int k = 0; k < 2; k++) {
    char rule[200], needle[64];
    snprintf(rule, sizeof rule, "write %s checkpoints/\n", kinds[k]);
    snprintf(needle, sizeof needle, "write %s", kinds[k]);
    int64_t offs[128];
    int before = esrt_checkpoint_offsets(cp_dir, "ledger", 0, offs, 128);
    set_faults(&R, rule);
    produce(&R, 800);
    wait_injected(&R, needle, 2);
    caught_up(&R); /* the partitions keep applying while no checkpoint can be written */
    int during = esrt_checkpoint_offsets(cp_dir, "ledger", 0, offs, 128);
    printf("# %s while checkpointing: %d faults injected, the worker caught up; complete checkpoints of partition 0: "
           "%d before, %d during\n",
           kinds[k], injected(&R, needle), before, during);
    assert_true(esrt_alive(&R.w));
    /* Whatever is listed as complete must be whole: a failed write never leaves a checkpoint that looks complete. */
    for (int i = 0; i < during; i++) {
      char db[1400], msg[200];
      esrt_checkpoint_file(db, sizeof db, cp_dir, "ledger", 0, offs[i], ".db");
      assert_int_equal(1, esrt_quick_check(db, msg, sizeof msg));
    }
    set_faults(&R, "# cleared\n");
    int64_t newest = during ? offs[0] : -1;
    produce(&R, 800);
    caught_up(&R);
    int64_t deadline = esrt_now_ms() + WAIT_MS;
    for (;;) { /* checkpoints succeed again */
      int after = esrt_checkpoint_offsets(cp_dir, "ledger", 0, offs, 128);
      if (after > 0 && offs[0] > newest) break;
      assert_true(esrt_now_ms() < deadline);
      esrt_sleep_ms(50);
    }
  }
  produce(&R, R.n);
  verdict(&R);
  rig_end(&R);
  c->passed = 1;
}

static void state_ahead_of_log_is_named(void **state) {
  esrt_case *c = *state;
  rig R;
  rig_start(&R, c, 400, "");
  produce(&R, 400);
  caught_up(&R);
  int64_t at = position(&R, 0);
  assert_true(at > 3);
  assert_int_equal(0, esrt_stop(&R.w, 30000));
  /* The cluster is replaced: a new one whose log holds three events of partition 0. */
  esrt_case_cleanup(c);
  assert_int_equal(0, esrt_mock_stop(&R.mock));
  const char *topics[] = {"ledger:2", "ledger.dlq:1", NULL};
  assert_int_equal(0, esrt_mock_start(&R.mock, ESR_BIN, c->dir, 1, topics, 20000));
  R.prod = esrt_case_defer(c, free_producer, esrt_producer_new(R.mock.bootstrap));
  assert_non_null(R.prod);
  int sent = 0;
  for (size_t i = 0; i < R.n && sent < 3; i++) {
    if (R.ev[i].partition != 0) continue;
    assert_int_equal(0, esrt_produce(R.prod, "ledger", 0, R.ev[i].key, R.ev[i].key_len, R.ev[i].value,
                                     R.ev[i].value_len, NULL));
    sent++;
  }
  assert_int_equal(0, esrt_producer_flush(R.prod, 60000));
  char conf[1100];
  assert_int_equal(0, esrt_write_worker_config(conf, sizeof conf, c->dir, "worker2", R.mock.bootstrap, "ledger",
                                               "ledger.dlq", R.state_dir, LEDGER_SO,
                                               "assignment = static\npartitions = 0\n"));
  esrt_proc w;
  assert_int_equal(0, esrt_start_worker(&w, ESR_BIN, c->dir, "worker2", conf));
  const char *wlog = w.err_path;
  char want[200];
  snprintf(want, sizeof want, "the state is at offset %" PRId64 " but the log ends at 3", at);
  int64_t deadline = esrt_now_ms() + WAIT_MS;
  while (!esrt_file_contains(wlog, want)) {
    if (!esrt_alive(&w) || esrt_now_ms() >= deadline) {
      fprintf(stderr, "no line saying '%s' in %s\n", want, wlog);
      fail();
    }
    esrt_sleep_ms(20);
  }
  assert_false(esrt_file_contains(wlog, "deleted by retention"));
  assert_int_equal(at, position(&R, 0)); /* refused: nothing applied, nothing rewound */
  assert_int_equal(0, esrt_stop(&w, 30000));
  esrt_events_free(R.ev, R.n);
  esrt_case_cleanup(c);
  assert_int_equal(0, esrt_mock_stop(&R.mock));
  c->passed = 1;
}

static int setup(void **state) {
  *state = esrt_case_new("faults");
  return *state ? 0 : -1;
}

static int teardown(void **state) {
  esrt_case_end(*state);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(corrupt_commit_rebuilds, setup, teardown),
      cmocka_unit_test_setup_teardown(commit_faults_retry, setup, teardown),
      cmocka_unit_test_setup_teardown(checkpoint_faults_keep_going, setup, teardown),
      cmocka_unit_test_setup_teardown(state_ahead_of_log_is_named, setup, teardown),
  };
  return cmocka_run_group_tests_name("faults", tests, NULL, NULL);
}
