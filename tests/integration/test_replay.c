/* test_replay.c — the audit commands against the mock cluster (label `integration`): `esr replay`, `esr replay
 * verify`, `esr verify` (A B and --live), `esr digest`.
 *   replay_to_an_offset_and_to_a_time_equal_the_oracle — a replay of the whole log, to an offset and to an instant
 *       between two bursts of production each equal the ledger oracle fed with exactly that prefix of each partition
 *       (balances, positions, counts, log digests); the dead letters of the replay sit in its databases with the
 *       worker's reasons; the instant is found from message timestamps, the mock not answering offsets-for-times.
 *   replay_refuses_what_it_must — --to beyond a partition's end is refused naming the end (exit 2); an --out that is
 *       not empty is refused (exit 2) unless --force; a worker's state.dir is refused as --out even with --force.
 *   replay_refuses_a_log_that_retention_cut — when retention deleted the log's start and no checkpoint covers the
 *       gap, the replay is refused (exit 4) naming the needed offset and the log start, and leaves nothing behind.
 *   verify_live_beside_a_running_worker_and_a_changed_row — `esr verify --live` run while the worker runs (alive
 *       before and after, still applying afterwards, final state exact) says equal; a row changed by hand in the live
 *       database makes it exit 1 naming the table, the row, the column and both values.
 *   replay_starts_from_a_checkpoint — with the worker's configuration a replay (to the end, to an offset, to an
 *       instant found from the timestamps first) starts from its newest checkpoint at
 *       or before the target, says so, applies only the events after it, and gives the oracle's state; the same from
 *       offset 0 with --no-checkpoints gives the same digests; verify --live --from-checkpoints says what it trusts.
 *   tampering_fails_replay_verify — a signed replay verifies (signature, files, state and log digests); a changed row,
 *       a changed manifest, another key each fail (exit 1); `esr digest` prints the manifest's state digests.
 *   a_non_deterministic_handler_is_caught — a handler that reads the clock: two replays differ (`esr verify A B`
 *       exit 1 naming its table), and `esr verify --live` says two replays differ; the same with the deterministic
 *       ledger is equal (exit 0).
 *   the_engine_hooks_see_every_event_and_its_verdict — the replay engine (replay.h) called directly in two ranges, as
 *       `esr history` will: its hooks see every event once, before and after, each with the oracle's verdict (applied,
 *       or dead-lettered with the oracle's reason and a message), and the position ends at the oracle's. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sqlite3.h>

#include "config.h"
#include "partition.h"
#include "readback.h"
#include "replay.h"
#include "replay_run.h"
#include "esrt_case.h"
#include "esrt_kafka.h"
#include "esrt_ledger.h"
#include "esrt_state.h"

#define LEDGER_SO ESR_BUILD_DIR "/handlers/ledger.so"
#define CLOCK_SO ESR_BUILD_DIR "/tests/plugins/ledger_clock.so"

static void free_producer(void *p) { esrt_producer_free(p); }
static void free_client(void *rk) { rd_kafka_destroy(rk); }
static void free_oracle(void *o) { esrt_oracle_free(o); }

static int setup(void **state) {
  *state = esrt_case_new("replay");
  return *state ? 0 : -1;
}

static int teardown(void **state) {
  esrt_case_end(*state);
  return 0;
}

/* One case's cluster and clients. */
typedef struct rig {
  esrt_case *c;
  esrt_mock mock;
  esrt_producer *prod;
  rd_kafka_t *rk;
  int partitions;
  esrt_event *ev;
  size_t n;
} rig;

/* The events outlive the case's stack frame until teardown (an assertion ends the frame early). */
typedef struct event_list {
  esrt_event *ev;
  size_t n;
} event_list;

static void free_events(void *arg) {
  event_list *e = arg;
  esrt_events_free(e->ev, e->n);
  free(e);
}

static void rig_start(rig *r, esrt_case *c, int partitions) {
  memset(r, 0, sizeof *r);
  r->c = c;
  r->partitions = partitions;
  char t[32];
  snprintf(t, sizeof t, "ledger:%d", partitions);
  const char *topics[] = {t, "ledger.dlq:1", NULL};
  assert_int_equal(0, esrt_mock_start(&r->mock, ESR_BIN, c->dir, 1, topics, 20000));
  r->prod = esrt_case_defer(c, free_producer, esrt_producer_new(r->mock.bootstrap));
  r->rk = esrt_case_defer(c, free_client, esrt_kafka_client_new(r->mock.bootstrap));
  assert_non_null(r->prod);
  assert_non_null(r->rk);
}

static void rig_stop(rig *r) {
  esrt_case_cleanup(r->c);
  assert_int_equal(0, esrt_mock_stop(&r->mock));
}

static void generate(rig *r, uint64_t seed, int events, int accounts) {
  esrt_gen_opts g = {.seed = seed, .events = events, .accounts = accounts, .partitions = r->partitions,
                     .bad_share = 0.15, .prefix_kinds = 1};
  event_list *e = esrt_case_defer(r->c, free_events, calloc(1, sizeof *e));
  assert_non_null(e);
  e->ev = r->ev = esrt_ledger_generate(&g, &r->n);
  e->n = r->n;
  assert_non_null(r->ev);
}

/* Produces events [from, to) and waits for every delivery report. */
static void produce(rig *r, size_t from, size_t to) {
  for (size_t i = from; i < to; i++)
    assert_int_equal(0, esrt_produce(r->prod, "ledger", r->ev[i].partition, r->ev[i].key, r->ev[i].key_len,
                                     r->ev[i].value, r->ev[i].value_len, &r->ev[i].offset));
  assert_int_equal(0, esrt_producer_flush(r->prod, 60000));
  for (size_t i = from; i < to; i++) assert_true(r->ev[i].offset >= 0);
}

static int64_t high(rig *r, int32_t p) {
  int64_t lo, hi;
  assert_int_equal(0, esrt_watermarks(r->rk, "ledger", p, &lo, &hi));
  return hi;
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs `esr ARGS...` to its end; returns the exit code; the paths of its stdout and stderr go to out/err. */
static int run_esr(esrt_case *c, const char *name, const char *const *args, char *out, char *err) {
  char *argv[40] = {(char *)ESR_BIN};
  int n = 1;
  for (const char *const *a = args; *a && n < 39; a++) argv[n++] = (char *)*a;
  argv[n] = NULL;
  esrt_proc p;
  assert_int_equal(0, esrt_spawn(&p, c->dir, name, argv, 0));
  if (esrt_wait(&p, 180000) != 0) {
    esrt_kill9(&p);
    fail_msg("esr %s did not end within 180 s", args[0]);
  }
  if (out) snprintf(out, 1024, "%s", p.out_path);
  if (err) snprintf(err, 1024, "%s", p.err_path);
  return esrt_exit_code(&p);
}

/* Asserts that the file holds `needle`, printing it otherwise. */
static void says(const char *path, const char *needle) {
  if (esrt_file_contains(path, needle)) return;
  esrt_print_tail(stderr, path, 60, "  | ");
  fail_msg("%s lacks \"%s\"", path, needle);
}

static void does_not_say(const char *path, const char *needle) {
  if (!esrt_file_contains(path, needle)) return;
  esrt_print_tail(stderr, path, 60, "  | ");
  fail_msg("%s holds \"%s\"", path, needle);
}

/* An oracle fed with the records of each partition whose offset is below bound[p] (the whole log when bound NULL). */
static esrt_oracle *oracle_of_prefix(rig *r, const esrt_records *src, const int64_t *bound) {
  esrt_oracle *o = esrt_case_defer(r->c, free_oracle, esrt_oracle_new(r->partitions));
  assert_non_null(o);
  for (size_t i = 0; i < src->n; i++) {
    const esrt_record *x = &src->v[i];
    if (bound && x->offset >= bound[x->partition]) continue;
    const char *why = esrt_oracle_feed(o, x->partition, x->offset, x->key, x->key_len, x->value, x->value_len);
    assert_true(!why || strcmp(why, "order") != 0);
  }
  return o;
}

/* The state in dir equals the oracle (accounts, positions, counts, log digests). A replay keeps its dead letters in
 * esr_outbox: they are compared by expect_dead_letters, not counted as unpublished rows. */
static void expect_state(rig *r, esrt_oracle *o, const char *dir) {
  esrt_state st = {0};
  assert_int_equal(0, esrt_state_read(&st, dir, "ledger", r->partitions, 1));
  for (int p = 0; p < st.partitions; p++) st.parts[p].outbox = 0;
  size_t diffs = esrt_compare_state(o, &st, stderr, 20);
  size_t n;
  esrt_oracle_accounts(o, &n);
  printf("# %s: %zu accounts in the oracle, %zu in the databases, %zu differences\n", dir, n, st.n_accounts, diffs);
  esrt_state_free(&st);
  assert_int_equal(0, diffs);
}

/* The dead letters in the replay's databases (esr_outbox rows with a reason) are exactly the oracle's, with its
 * reasons. */
static void expect_dead_letters(rig *r, esrt_oracle *o, const char *dir) {
  size_t k = 0, total = esrt_oracle_dead_count(o);
  for (int p = 0; p < r->partitions; p++) {
    char path[1400];
    snprintf(path, sizeof path, "%s/ledger-%d.db", dir, p);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(SQLITE_OK, sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL));
    assert_int_equal(SQLITE_OK, sqlite3_prepare_v2(db,
                                                   "SELECT src_offset, reason FROM esr_outbox WHERE reason IS NOT NULL "
                                                   "ORDER BY src_offset",
                                                   -1, &st, NULL));
    while (sqlite3_step(st) == SQLITE_ROW) {
      int32_t wp;
      int64_t wo;
      const char *wr;
      assert_true(k < total);
      esrt_oracle_dead_at(o, k++, &wp, &wo, &wr);
      int64_t off = sqlite3_column_int64(st, 0);
      const char *reason = (const char *)sqlite3_column_text(st, 1);
      if (wp != p || wo != off || strcmp(wr, reason) != 0)
        fail_msg("dead letter %zu: the replay has %d@%" PRId64 " (%s), the oracle %d@%" PRId64 " (%s)", k - 1, p, off,
                 reason, (int)wp, wo, wr);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  assert_int_equal(total, k);
  printf("# %s: %zu dead letters, each with the oracle's reason\n", dir, k);
}

/* ------------------------------------------------------------------------------------------------------------ */

static void replay_to_an_offset_and_to_a_time_equal_the_oracle(void **state) {
  esrt_case *c = *state;
  rig r;
  rig_start(&r, c, 3);
  generate(&r, 1212, 1500, 60);
  /* Two bursts: every message of the first is stamped at or before `at`, every message of the second after it. */
  size_t half = 700;
  produce(&r, 0, half);
  int64_t at = wall_ms();
  while (wall_ms() <= at + 1) esrt_sleep_ms(1); /* the clock has moved past `at`: the second burst is later */
  produce(&r, half, r.n);
  int64_t bound_time[3], bound_off[3] = {150, 150, 150};
  for (int p = 0; p < 3; p++) {
    bound_time[p] = 0;
    for (size_t i = 0; i < half; i++)
      if (r.ev[i].partition == p) bound_time[p]++;
    assert_true(bound_time[p] > 0 && bound_time[p] < high(&r, p)); /* the instant is inside every partition */
    assert_true(bound_off[p] < high(&r, p));
  }
  esrt_records src = {0};
  assert_int_equal(0, esrt_consume_all(r.mock.bootstrap, "ledger", &src, 60000));

  char when[64], out_all[1100], out_t[1100], out_o[1100], so[1024], se[1024];
  time_t secs = (time_t)(at / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  strftime(when, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(when + strlen(when), 32, ".%03dZ", (int)(at % 1000));
  snprintf(out_all, sizeof out_all, "%s/all", c->dir);
  snprintf(out_t, sizeof out_t, "%s/at-time", c->dir);
  snprintf(out_o, sizeof out_o, "%s/at-offset", c->dir);

  const char *all[] = {"replay", "--bootstrap", r.mock.bootstrap, "--handlers", LEDGER_SO, "--topic", "ledger",
                       "--out", out_all, NULL};
  assert_int_equal(0, run_esr(c, "replay-all", all, so, se));
  esrt_oracle *whole = oracle_of_prefix(&r, &src, NULL);
  expect_state(&r, whole, out_all);
  expect_dead_letters(&r, whole, out_all);

  const char *to_time[] = {"replay", "--bootstrap", r.mock.bootstrap, "--handlers", LEDGER_SO, "--topic", "ledger",
                           "--to", when, "--out", out_t, NULL};
  assert_int_equal(0, run_esr(c, "replay-time", to_time, so, se));
  expect_state(&r, oracle_of_prefix(&r, &src, bound_time), out_t);
  char manifest[1200];
  snprintf(manifest, sizeof manifest, "%s/replay.json", out_t);
  says(manifest, "\"target_found_by\":\t\"message timestamps\""); /* the mock does not answer offsets-for-times */
  says(manifest, when);

  char to[32];
  snprintf(to, sizeof to, "%" PRId64, bound_off[0]);
  const char *to_off[] = {"replay", "--bootstrap", r.mock.bootstrap, "--handlers", LEDGER_SO, "--topic", "ledger",
                          "--to", to, "--out", out_o, NULL};
  assert_int_equal(0, run_esr(c, "replay-offset", to_off, so, se));
  esrt_oracle *prefix = oracle_of_prefix(&r, &src, bound_off);
  expect_state(&r, prefix, out_o);
  expect_dead_letters(&r, prefix, out_o);
  esrt_records_free(&src);
  rig_stop(&r);
  c->passed = 1;
}

static void replay_refuses_what_it_must(void **state) {
  esrt_case *c = *state;
  rig r;
  rig_start(&r, c, 2);
  generate(&r, 77, 200, 10);
  produce(&r, 0, r.n);
  int64_t end0 = high(&r, 0), end1 = high(&r, 1);
  char beyond[32], end_text[64], out[1100], so[1024], se[1024];
  int64_t shortest = end0 < end1 ? end0 : end1, longest = end0 < end1 ? end1 : end0;
  snprintf(beyond, sizeof beyond, "%" PRId64, longest); /* beyond the shorter partition's end */
  snprintf(end_text, sizeof end_text, "which ends at %" PRId64, shortest);
  assert_true(shortest < longest);
  snprintf(out, sizeof out, "%s/out", c->dir);
  const char *too_far[] = {"replay", "--bootstrap", r.mock.bootstrap, "--handlers", LEDGER_SO, "--topic", "ledger",
                           "--to", beyond, "--out", out, NULL};
  assert_int_equal(2, run_esr(c, "beyond", too_far, so, se));
  says(se, end_text);
  says(se, "beyond the end of the log");
  assert_int_equal(-1, access(out, F_OK)); /* a refused replay leaves nothing behind */

  /* --out not empty: refused unless --force. */
  assert_int_equal(0, mkdir(out, 0755));
  char other[1200];
  snprintf(other, sizeof other, "%s/notes.txt", out);
  assert_int_equal(0, esrt_write_file(other, "the auditor's notes\n"));
  const char *plain[] = {"replay", "--bootstrap", r.mock.bootstrap, "--handlers", LEDGER_SO, "--topic", "ledger",
                         "--out", out, NULL};
  assert_int_equal(2, run_esr(c, "not-empty", plain, so, se));
  says(se, "is not empty");
  const char *forced[] = {"replay", "--bootstrap", r.mock.bootstrap, "--handlers", LEDGER_SO, "--topic", "ledger",
                          "--out", out, "--force", NULL};
  assert_int_equal(0, run_esr(c, "forced", forced, so, se));
  assert_int_equal(0, access(other, F_OK)); /* what a replay does not write stays */

  /* A worker's state directory is never an output. */
  char live[1100], lock[1200];
  snprintf(live, sizeof live, "%s/state", c->dir);
  assert_int_equal(0, mkdir(live, 0755));
  snprintf(lock, sizeof lock, "%s/.esr.lock", live);
  assert_int_equal(0, esrt_write_file(lock, "%s", ""));
  const char *into_live[] = {"replay", "--bootstrap", r.mock.bootstrap, "--handlers", LEDGER_SO, "--topic", "ledger",
                             "--out", live, "--force", NULL};
  assert_int_equal(2, run_esr(c, "into-live", into_live, so, se));
  says(se, "state directory");

  const char *bad_to[] = {"replay", "--bootstrap", r.mock.bootstrap, "--handlers", LEDGER_SO, "--topic", "ledger",
                          "--to", "yesterday", "--out", out, "--force", NULL};
  assert_int_equal(2, run_esr(c, "bad-to", bad_to, so, se));
  says(se, "neither an offset");
  rig_stop(&r);
  c->passed = 1;
}

/* A worker with static assignment of every partition and frequent checkpoints (and `extra` config lines); its config
 * path goes to conf. */
static void start_worker_with(rig *r, esrt_proc *w, const char *name, const char *handler, char *conf, char *state_dir,
                              const char *extra) {
  snprintf(state_dir, 1100, "%s/state-%s", r->c->dir, name);
  assert_int_equal(0, esrt_write_worker_config(conf, 1024, r->c->dir, name, r->mock.bootstrap, "ledger", "ledger.dlq",
                                               state_dir, handler,
                                               "assignment = static\npartitions = 0-%d\ncheckpoint.interval.events = "
                                               "300\ncheckpoint.interval.ms = 0\nbatch.max.events = 100\n%s",
                                               r->partitions - 1, extra));
  assert_int_equal(0, esrt_start_worker(w, ESR_BIN, r->c->dir, name, conf));
}

static void start_worker(rig *r, esrt_proc *w, const char *name, const char *handler, char *conf, char *state_dir) {
  start_worker_with(r, w, name, handler, conf, state_dir, "");
}

static void wait_caught_up(rig *r, const char *state_dir) {
  const char *dirs[] = {state_dir};
  assert_int_equal(0, esrt_wait_caught_up(r->rk, "ledger", r->partitions, dirs, 1, 60000));
}

static void verify_live_beside_a_running_worker_and_a_changed_row(void **state) {
  esrt_case *c = *state;
  rig r;
  rig_start(&r, c, 2);
  generate(&r, 4242, 3000, 80);
  esrt_proc w;
  char conf[1024], sd[1100], so[1024], se[1024];
  start_worker(&r, &w, "worker", LEDGER_SO, conf, sd);
  produce(&r, 0, 1500);
  wait_caught_up(&r, sd);
  /* More events arrive while the proof runs: the worker keeps applying beside it. */
  for (size_t i = 1500; i < 2500; i++)
    assert_int_equal(0, esrt_produce(r.prod, "ledger", r.ev[i].partition, r.ev[i].key, r.ev[i].key_len, r.ev[i].value,
                                     r.ev[i].value_len, &r.ev[i].offset));
  assert_true(esrt_alive(&w));
  const char *live[] = {"verify", "--live", "--config", conf, NULL};
  assert_int_equal(0, run_esr(c, "verify-live", live, so, se));
  assert_true(esrt_alive(&w)); /* the premise: the worker ran through the whole proof */
  says(so, "ledger[0] at offset");
  says(so, "ledger[1] at offset");
  says(so, "equal");
  does_not_say(so, "DIFFERENT");
  assert_int_equal(0, esrt_producer_flush(r.prod, 60000));
  produce(&r, 2500, r.n); /* and it goes on applying after it */
  wait_caught_up(&r, sd);
  esrt_records src = {0};
  assert_int_equal(0, esrt_consume_all(r.mock.bootstrap, "ledger", &src, 60000));
  esrt_oracle *o = oracle_of_prefix(&r, &src, NULL);
  esrt_state st = {0};
  assert_int_equal(0, esrt_state_read(&st, sd, "ledger", r.partitions, 1));
  assert_int_equal(0, esrt_compare_state(o, &st, stderr, 20));
  esrt_state_free(&st);
  esrt_records_free(&src);
  assert_int_equal(0, esrt_stop(&w, 30000));

  /* A row changed by hand in the live database. */
  size_t n_acc;
  const esrt_oracle_account *acc = esrt_oracle_accounts(o, &n_acc);
  const esrt_oracle_account *victim = NULL;
  for (size_t i = 0; i < n_acc && !victim; i++)
    if (acc[i].partition == 1 && acc[i].balance > 0) victim = &acc[i];
  assert_non_null(victim);
  char path[1200], sql[300], expect[400];
  snprintf(path, sizeof path, "%s/ledger-1.db", sd);
  sqlite3 *db = NULL;
  assert_int_equal(SQLITE_OK, sqlite3_open(path, &db));
  snprintf(sql, sizeof sql, "UPDATE accounts SET balance = balance + 7 WHERE id = '%s'", victim->id);
  assert_int_equal(SQLITE_OK, sqlite3_exec(db, sql, NULL, NULL, NULL));
  assert_int_equal(1, sqlite3_changes(db));
  sqlite3_close(db);
  assert_int_equal(1, run_esr(c, "verify-changed", live, so, se));
  says(so, "ledger[1] at offset");
  says(so, "DIFFERENT");
  snprintf(expect, sizeof expect, "table accounts, row (id='%s'), column balance: live %" PRId64 ", replay %" PRId64,
           victim->id, victim->balance + 7, victim->balance);
  says(so, expect);
  says(so, "a second replay gives the same state as the first");
  rig_stop(&r);
  c->passed = 1;
}

/* The first number after `key` in a file, or -1. */
static int64_t number_after(const char *path, const char *key) {
  char *text = esrt_read_file(path, NULL);
  const char *at = text ? strstr(text, key) : NULL;
  int64_t v = at ? strtoll(at + strlen(key), NULL, 10) : -1;
  free(text);
  return v;
}

static void replay_starts_from_a_checkpoint(void **state) {
  esrt_case *c = *state;
  rig r;
  rig_start(&r, c, 1);
  generate(&r, 999, 2000, 50);
  esrt_proc w;
  char conf[1024], sd[1100], so[1024], se[1024], store[1100], store_line[1200];
  snprintf(store, sizeof store, "%s/store", c->dir);
  assert_int_equal(0, mkdir(store, 0755));
  snprintf(store_line, sizeof store_line, "checkpoint.store = file://%s\n", store);
  start_worker_with(&r, &w, "worker", LEDGER_SO, conf, sd, store_line);
  produce(&r, 0, 1200);
  wait_caught_up(&r, sd);
  assert_int_equal(0, esrt_stop(&w, 30000)); /* checkpoint.on.release: a checkpoint at the end */
  int64_t at = wall_ms();                     /* every event so far is stamped at or before it */
  while (wall_ms() <= at + 1) esrt_sleep_ms(1);
  produce(&r, 1200, r.n); /* events after the newest checkpoint, and after `at` */
  int64_t end = high(&r, 0);
  char cp[1300];
  snprintf(cp, sizeof cp, "%s/checkpoints/ledger-0/%020" PRId64 ".json", sd, (int64_t)1200);
  /* The premise: the worker left a checkpoint at its end (1200 events, one partition). */
  assert_int_equal(0, access(cp, F_OK));

  char from_cp[1100], from_zero[1100], manifest[1200];
  snprintf(from_cp, sizeof from_cp, "%s/from-checkpoint", c->dir);
  snprintf(from_zero, sizeof from_zero, "%s/from-zero", c->dir);
  const char *with[] = {"replay", "--config", conf, "--out", from_cp, NULL};
  assert_int_equal(0, run_esr(c, "replay-cp", with, so, se));
  says(se, "ledger[0]: starting from the checkpoint at offset 1200 (local");
  snprintf(manifest, sizeof manifest, "%s/replay.json", from_cp);
  assert_int_equal(1200, number_after(manifest, "\"from\":\t"));
  assert_int_equal(end - 1200, number_after(manifest, "\"events\":\t"));
  esrt_records src = {0};
  assert_int_equal(0, esrt_consume_all(r.mock.bootstrap, "ledger", &src, 60000));
  esrt_oracle *o = oracle_of_prefix(&r, &src, NULL);
  expect_state(&r, o, from_cp);
  esrt_records_free(&src);

  const char *without[] = {"replay", "--config", conf, "--out", from_zero, "--no-checkpoints", NULL};
  assert_int_equal(0, run_esr(c, "replay-zero", without, so, se));
  does_not_say(se, "starting from the checkpoint");
  snprintf(manifest, sizeof manifest, "%s/replay.json", from_zero);
  assert_int_equal(end, number_after(manifest, "\"events\":\t"));
  const char *cmp[] = {"verify", from_cp, from_zero, NULL};
  assert_int_equal(0, run_esr(c, "verify-cp-zero", cmp, so, se));
  says(so, "ledger-0.db: A ");
  says(so, "equal");

  /* A target before the newest checkpoint: an older one, or offset 0. */
  char out_old[1100];
  snprintf(out_old, sizeof out_old, "%s/older", c->dir);
  const char *older[] = {"replay", "--config", conf, "--out", out_old, "--to", "1000", NULL};
  assert_int_equal(0, run_esr(c, "replay-older", older, so, se));
  snprintf(manifest, sizeof manifest, "%s/replay.json", out_old);
  assert_true(number_after(manifest, "\"from\":\t") <= 1000);

  /* A time target with checkpoints: where the prefix ends is found first (from the timestamps: the mock does not
   * answer offsets-for-times), then the newest checkpoint at or before it is used: here the one at its very end. */
  char when[64], out_time[1100];
  time_t secs = (time_t)(at / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  strftime(when, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(when + strlen(when), 32, ".%03dZ", (int)(at % 1000));
  snprintf(out_time, sizeof out_time, "%s/at-time", c->dir);
  const char *timed[] = {"replay", "--config", conf, "--out", out_time, "--to", when, NULL};
  assert_int_equal(0, run_esr(c, "replay-time-cp", timed, so, se));
  snprintf(manifest, sizeof manifest, "%s/replay.json", out_time);
  says(manifest, "\"target_found_by\":\t\"message timestamps\"");
  assert_int_equal(1200, number_after(manifest, "\"next_offset\":\t"));
  assert_int_equal(1200, number_after(manifest, "\"from\":\t"));
  assert_int_equal(0, number_after(manifest, "\"events\":\t"));
  int64_t first[1] = {1200};
  assert_int_equal(0, esrt_consume_all(r.mock.bootstrap, "ledger", &src, 60000));
  expect_state(&r, oracle_of_prefix(&r, &src, first), out_time);
  esrt_records_free(&src);

  const char *live_cp[] = {"verify", "--live", "--config", conf, "--from-checkpoints", NULL};
  assert_int_equal(0, run_esr(c, "verify-live-cp", live_cp, so, se));
  says(so, "from the worker's own checkpoints");
  says(so, "replayed from checkpoint 1200");

  /* Without the local checkpoints, the remote store's: fetched, verified, used. */
  char remote[1300], moved[1300], out_remote[1100];
  snprintf(remote, sizeof remote, "%s/ledger-0/%020" PRId64 ".json", store, (int64_t)1200);
  int64_t deadline = esrt_now_ms() + 30000; /* uploads run in the background: the worker may have just sent it */
  while (access(remote, F_OK) != 0 && esrt_now_ms() < deadline) esrt_sleep_ms(20);
  assert_int_equal(0, access(remote, F_OK)); /* the premise: the store holds the checkpoint at 1200 */
  snprintf(cp, sizeof cp, "%s/checkpoints", sd);
  snprintf(moved, sizeof moved, "%s/checkpoints.moved", sd);
  assert_int_equal(0, rename(cp, moved));
  snprintf(out_remote, sizeof out_remote, "%s/from-remote", c->dir);
  const char *rem[] = {"replay", "--config", conf, "--out", out_remote, NULL};
  assert_int_equal(0, run_esr(c, "replay-remote", rem, so, se));
  says(se, "ledger[0]: starting from the checkpoint at offset 1200 (remote file://");
  const char *cmp_remote[] = {"verify", from_cp, out_remote, NULL};
  assert_int_equal(0, run_esr(c, "verify-cp-remote", cmp_remote, so, se));
  assert_int_equal(-1, access(cp, F_OK)); /* isolated: nothing was written to the worker's checkpoint directory */
  rig_stop(&r);
  c->passed = 1;
}

static void replay_refuses_a_log_that_retention_cut(void **state) {
  esrt_case *c = *state;
  rig r;
  rig_start(&r, c, 1);
  /* > 5 MiB in the partition (1 KiB events): past the mock's retention, which moves the log start. */
  char *value = malloc(1200);
  assert_non_null(value);
  int len = snprintf(value, 1200, "{\"type\":\"account.opened\",\"data\":{\"account\":\"k\",\"owner\":\"%01000d\"}}", 0);
  for (int i = 0; i < 6000; i++) assert_int_equal(0, esrt_produce(r.prod, "ledger", 0, "k", 1, value, (size_t)len, NULL));
  free(value);
  assert_int_equal(0, esrt_producer_flush(r.prod, 60000));
  int64_t lo, hi;
  assert_int_equal(0, esrt_watermarks(r.rk, "ledger", 0, &lo, &hi));
  assert_true(lo > 0); /* the premise: retention deleted the log's start */
  char out[1100], so[1024], se[1024], expect[200];
  snprintf(out, sizeof out, "%s/out", c->dir);
  const char *rep[] = {"replay", "--bootstrap", r.mock.bootstrap, "--handlers", LEDGER_SO, "--topic", "ledger",
                       "--out", out, NULL};
  assert_int_equal(4, run_esr(c, "replay-gap", rep, so, se));
  says(se, "it needs the log from offset 0");
  snprintf(expect, sizeof expect, "the log now starts at %" PRId64, lo);
  says(se, expect);
  says(se, "refusing to skip them");
  assert_int_equal(-1, access(out, F_OK)); /* nothing left behind */
  /* A target of offset 0 needs no log at all. */
  const char *empty[] = {"replay", "--bootstrap", r.mock.bootstrap, "--handlers", LEDGER_SO, "--topic", "ledger",
                         "--out", out, "--to", "0", NULL};
  assert_int_equal(0, run_esr(c, "replay-empty", empty, so, se));
  rig_stop(&r);
  c->passed = 1;
}

static void write_key(const char *dir, const char *name, char *priv, char *pub) {
  EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  assert_non_null(k);
  snprintf(priv, 1100, "%s/%s.pem", dir, name);
  snprintf(pub, 1100, "%s/%s.pub.pem", dir, name);
  FILE *f = fopen(priv, "w");
  assert_non_null(f);
  assert_int_equal(1, PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL));
  fclose(f);
  assert_non_null(f = fopen(pub, "w"));
  assert_int_equal(1, PEM_write_PUBKEY(f, k));
  fclose(f);
  EVP_PKEY_free(k);
}

static void copy_dir(esrt_case *c, const char *from, const char *to) {
  char *argv[] = {"/bin/cp", "-r", (char *)from, (char *)to, NULL};
  esrt_proc p;
  assert_int_equal(0, esrt_spawn(&p, c->dir, "cp", argv, 0));
  assert_int_equal(0, esrt_wait(&p, 30000));
  assert_int_equal(0, esrt_exit_code(&p));
}

/* Replaces the first `from` in a file with `to` (same length or not). */
static void edit_file(const char *path, const char *from, const char *to) {
  size_t len;
  char *text = esrt_read_file(path, &len);
  assert_non_null(text);
  char *at = strstr(text, from);
  assert_non_null(at);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fwrite(text, 1, (size_t)(at - text), f);
  fputs(to, f);
  fputs(at + strlen(from), f);
  fclose(f);
  free(text);
}

/* Overwrites the bytes that follow the first `key` in a file with `repl` (same length: the rest stays in place). */
static void overwrite_after(const char *path, const char *key, const char *repl) {
  size_t len;
  char *text = esrt_read_file(path, &len);
  assert_non_null(text);
  char *at = strstr(text, key);
  assert_non_null(at);
  at += strlen(key);
  assert_true(strlen(at) >= strlen(repl));
  memcpy(at, repl, strlen(repl));
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fwrite(text, 1, len, f);
  fclose(f);
  free(text);
}

static void tampering_fails_replay_verify(void **state) {
  esrt_case *c = *state;
  rig r;
  rig_start(&r, c, 2);
  generate(&r, 31337, 600, 30);
  produce(&r, 0, r.n);
  char priv[1100], pub[1100], priv2[1100], pub2[1100], out[1100], so[1024], se[1024];
  write_key(c->dir, "auditor", priv, pub);
  write_key(c->dir, "someone", priv2, pub2);
  snprintf(out, sizeof out, "%s/signed", c->dir);
  const char *rep[] = {"replay", "--bootstrap", r.mock.bootstrap, "--handlers", LEDGER_SO, "--topic", "ledger",
                       "--out", out, "--sign-key", priv, NULL};
  assert_int_equal(0, run_esr(c, "replay-signed", rep, so, se));
  const char *check[] = {"replay", "verify", out, "--pub", pub, "--bootstrap", r.mock.bootstrap, NULL};
  assert_int_equal(0, run_esr(c, "verify-intact", check, so, se));
  says(so, "ok     signature: replay.json is signed");
  says(so, "ok     ledger-1.db: state digest recomputed");
  says(so, "ok     ledger[1]: log digest of offsets [0, ");
  says(so, "every check passed");

  /* esr digest prints what the manifest says. */
  char db0[1200], manifest[1200];
  snprintf(db0, sizeof db0, "%s/ledger-0.db", out);
  snprintf(manifest, sizeof manifest, "%s/replay.json", out);
  const char *dig[] = {"digest", db0, NULL};
  assert_int_equal(0, run_esr(c, "digest", dig, so, se));
  char *line = esrt_read_file(so, NULL);
  assert_non_null(line);
  assert_true(strlen(line) > 66 && line[64] == ' ' && line[65] == ' ');
  line[64] = '\0';
  says(manifest, line);
  free(line);

  /* A row changed in a copy of the output. */
  char rowed[1100], db[1200];
  snprintf(rowed, sizeof rowed, "%s/row-changed", c->dir);
  copy_dir(c, out, rowed);
  snprintf(db, sizeof db, "%s/ledger-0.db", rowed);
  sqlite3 *h = NULL;
  assert_int_equal(SQLITE_OK, sqlite3_open(db, &h));
  assert_int_equal(SQLITE_OK, sqlite3_exec(h, "UPDATE accounts SET balance = balance + 1 WHERE id = "
                                              "(SELECT min(id) FROM accounts)",
                                           NULL, NULL, NULL));
  assert_int_equal(1, sqlite3_changes(h));
  sqlite3_close(h);
  const char *check_rowed[] = {"replay", "verify", rowed, "--pub", pub, NULL};
  assert_int_equal(1, run_esr(c, "verify-rowed", check_rowed, so, se));
  says(so, "ok     signature");
  says(so, "FAILED ledger-0.db: state digest recomputed");
  says(so, "FAILED ledger-0.db: SHA-256");

  /* A changed manifest: the counts of partition 1 made up. */
  char edited[1100], em[1200];
  snprintf(edited, sizeof edited, "%s/manifest-changed", c->dir);
  copy_dir(c, out, edited);
  snprintf(em, sizeof em, "%s/replay.json", edited);
  edit_file(em, "\"applied_total\":\t", "\"applied_total\":\t1");
  const char *check_edited[] = {"replay", "verify", edited, "--pub", pub, NULL};
  assert_int_equal(1, run_esr(c, "verify-edited", check_edited, so, se));
  says(so, "FAILED signature: does not match replay.json");

  /* Another key. */
  const char *other_key[] = {"replay", "verify", out, "--pub", pub2, NULL};
  assert_int_equal(1, run_esr(c, "verify-other-key", other_key, so, se));
  says(so, "FAILED signature");

  /* Without a key, a changed state digest in the manifest still fails: it is recomputed from the file. */
  char digest_ed[1100], dm[1200];
  snprintf(digest_ed, sizeof digest_ed, "%s/digest-changed", c->dir);
  copy_dir(c, out, digest_ed);
  snprintf(dm, sizeof dm, "%s/replay.json", digest_ed);
  overwrite_after(dm, "\"state_digest\":\t\"", "0000000000000000000000000000000000000000000000000000000000000000");
  const char *no_key[] = {"replay", "verify", digest_ed, NULL};
  int code = run_esr(c, "verify-no-key", no_key, so, se);
  says(so, "note   signature: not checked");
  assert_int_equal(1, code);
  rig_stop(&r);
  c->passed = 1;
}

static void a_non_deterministic_handler_is_caught(void **state) {
  esrt_case *c = *state;
  rig r;
  rig_start(&r, c, 1);
  generate(&r, 55, 400, 20);
  produce(&r, 0, r.n);
  char a[1100], b[1100], so[1024], se[1024];
  /* The deterministic ledger: two replays are equal (the comparison can say "equal"). */
  snprintf(a, sizeof a, "%s/ledger-a", c->dir);
  snprintf(b, sizeof b, "%s/ledger-b", c->dir);
  const char *la[] = {"replay", "--bootstrap", r.mock.bootstrap, "--handlers", LEDGER_SO, "--topic", "ledger", "--out",
                      a, NULL};
  const char *lb[] = {"replay", "--bootstrap", r.mock.bootstrap, "--handlers", LEDGER_SO, "--topic", "ledger", "--out",
                      b, NULL};
  assert_int_equal(0, run_esr(c, "ledger-a", la, so, se));
  assert_int_equal(0, run_esr(c, "ledger-b", lb, so, se));
  const char *same[] = {"verify", a, b, NULL};
  assert_int_equal(0, run_esr(c, "verify-ledger", same, so, se));

  /* The clock-reading one: two replays of the same events differ, in its table. */
  snprintf(a, sizeof a, "%s/clock-a", c->dir);
  snprintf(b, sizeof b, "%s/clock-b", c->dir);
  const char *ca[] = {"replay", "--bootstrap", r.mock.bootstrap, "--handlers", CLOCK_SO, "--topic", "ledger", "--out",
                      a, NULL};
  const char *cb[] = {"replay", "--bootstrap", r.mock.bootstrap, "--handlers", CLOCK_SO, "--topic", "ledger", "--out",
                      b, NULL};
  assert_int_equal(0, run_esr(c, "clock-a", ca, so, se));
  assert_int_equal(0, run_esr(c, "clock-b", cb, so, se));
  const char *differ[] = {"verify", a, b, NULL};
  assert_int_equal(1, run_esr(c, "verify-clock", differ, so, se));
  says(so, "ledger-0.db: A ");
  says(so, "DIFFERENT");
  says(so, "table clock_seen, row (offset=");
  says(so, "column ns: A ");
  does_not_say(so, "table accounts"); /* the ledger's own table is the same in both */

  /* verify --live against a worker running it: the live state differs, and two replays say why. */
  esrt_proc w;
  char conf[1024], sd[1100];
  start_worker(&r, &w, "clock-worker", CLOCK_SO, conf, sd);
  wait_caught_up(&r, sd);
  const char *live[] = {"verify", "--live", "--config", conf, NULL};
  assert_int_equal(1, run_esr(c, "verify-live-clock", live, so, se));
  says(so, "DIFFERENT");
  says(so, "two replays of the same events differ");
  says(so, "not deterministic");
  says(so, "table clock_seen, row (offset=");
  assert_int_equal(0, esrt_stop(&w, 30000));
  rig_stop(&r);
  c->passed = 1;
}

/* What the engine's hooks saw. */
typedef struct seen_events {
  esrt_oracle *o;
  int64_t before, after, applied, dead, wrong, with_time;
  int64_t last_before; /* the offset of the last before hook, which the after hook must match */
} seen_events;

static esr_code hook_before(void *arg, esr_partition *p, const esr_replay_event *ev, esr_error *err) {
  (void)p, (void)err;
  seen_events *s = arg;
  s->before++;
  s->last_before = ev->offset;
  if (ev->timestamp_ms > 0) s->with_time++;
  return ESR_E_OK;
}

static esr_code hook_after(void *arg, esr_partition *p, const esr_replay_event *ev, esr_error *err) {
  (void)err;
  seen_events *s = arg;
  s->after++;
  const char *want = esrt_oracle_reason(s->o, esr_partition_id(p), ev->offset);
  if (ev->offset != s->last_before || ev->applied != !want || (want && (!ev->reason || strcmp(want, ev->reason) != 0)) ||
      (!ev->applied && (!ev->error || !ev->error[0]))) {
    if (s->wrong++ < 5)
      fprintf(stderr, "offset %" PRId64 ": the hook saw %s (%s), the oracle says %s\n", ev->offset,
              ev->applied ? "applied" : "dead-lettered", ev->reason ? ev->reason : "-", want ? want : "applied");
  }
  if (ev->applied)
    s->applied++;
  else
    s->dead++;
  return ESR_E_OK;
}

/* The engine as `esr history` will use it: a partition of its own, hooks before and after each event. */
static void the_engine_hooks_see_every_event_and_its_verdict(void **state) {
  esrt_case *c = *state;
  rig r;
  rig_start(&r, c, 1);
  generate(&r, 8080, 700, 25);
  produce(&r, 0, r.n);
  esrt_records src = {0};
  assert_int_equal(0, esrt_consume_all(r.mock.bootstrap, "ledger", &src, 60000));
  esrt_oracle *o = oracle_of_prefix(&r, &src, NULL);
  esrt_records_free(&src);
  esr_error err = {0};
  esr_config *cfg = esr_config_new();
  assert_non_null(cfg);
  assert_int_equal(ESR_E_OK, esr_config_set(cfg, "kafka.bootstrap.servers", r.mock.bootstrap, "test", &err));
  assert_int_equal(ESR_E_OK, esr_config_set(cfg, "handlers", LEDGER_SO, "test", &err));
  esr_replayer *rp = NULL;
  if (esr_replayer_new(cfg, &rp, &err) != ESR_E_OK) fail_msg("esr_replayer_new: %s", err.msg);
  char dir[1100];
  snprintf(dir, sizeof dir, "%s/engine", c->dir);
  assert_int_equal(0, mkdir(dir, 0755));
  esr_partition_env env;
  esr_replayer_partition_env(rp, dir, &env);
  esr_partition *part = NULL;
  if (esr_partition_open(&env, "ledger", 0, 0, &part, &err) != ESR_E_OK) fail_msg("open: %s", err.msg);
  esr_readback *rb;
  if (esr_readback_new(cfg, &rb, &err) != ESR_E_OK) fail_msg("readback: %s", err.msg);
  seen_events s = {.o = o, .last_before = -1};
  esr_replay_hooks hooks = {hook_before, hook_after, &s};
  /* In two ranges, as a caller that stops and goes on would: [0, 300), then to the end. */
  esr_replay_range first = {.to = 300, .stop_after_ms = -1, .batch_events = 64, .hooks = &hooks};
  esr_replay_outcome out;
  if (esr_replay_apply(rb, part, &first, &out, &err) != ESR_E_OK) fail_msg("apply: %s", err.msg);
  assert_int_equal(300, out.events);
  assert_int_equal(300, esr_partition_committed(part)->next_offset);
  esr_replay_range rest = {.to = -1, .stop_after_ms = -1, .hooks = &hooks};
  if (esr_replay_apply(rb, part, &rest, &out, &err) != ESR_E_OK) fail_msg("apply: %s", err.msg);
  const esrt_oracle_part *op = esrt_oracle_part_of(o, 0);
  printf("# hooks: %" PRId64 " before, %" PRId64 " after (%" PRId64 " applied, %" PRId64 " dead-lettered), %" PRId64
         " with a timestamp; the oracle: %" PRId64 " applied, %" PRId64 " dead\n",
         s.before, s.after, s.applied, s.dead, s.with_time, op->applied, op->dead);
  assert_int_equal(op->next_offset, s.before);
  assert_int_equal(op->next_offset, s.after);
  assert_int_equal(op->next_offset, s.with_time);
  assert_int_equal(op->applied, s.applied);
  assert_int_equal(op->dead, s.dead);
  assert_true(s.dead > 0 && s.applied > 0);
  assert_int_equal(0, s.wrong);
  assert_int_equal(op->next_offset, esr_partition_committed(part)->next_offset);
  assert_memory_equal(op->digest, esr_partition_committed(part)->log_digest, 32);
  esr_readback_free(rb);
  esr_partition_close(part);
  esr_replayer_free(rp);
  esr_config_free(cfg);
  rig_stop(&r);
  c->passed = 1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(replay_to_an_offset_and_to_a_time_equal_the_oracle, setup, teardown),
      cmocka_unit_test_setup_teardown(replay_refuses_what_it_must, setup, teardown),
      cmocka_unit_test_setup_teardown(replay_refuses_a_log_that_retention_cut, setup, teardown),
      cmocka_unit_test_setup_teardown(verify_live_beside_a_running_worker_and_a_changed_row, setup, teardown),
      cmocka_unit_test_setup_teardown(replay_starts_from_a_checkpoint, setup, teardown),
      cmocka_unit_test_setup_teardown(tampering_fails_replay_verify, setup, teardown),
      cmocka_unit_test_setup_teardown(a_non_deterministic_handler_is_caught, setup, teardown),
      cmocka_unit_test_setup_teardown(the_engine_hooks_see_every_event_and_its_verdict, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
