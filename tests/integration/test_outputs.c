/* test_outputs.c — publish once (esr/outputs.h) against the mock cluster (label `integration`): partitions of the
 * library (esr/partition.h) with a real publisher and read-back, driven through the good test plugin, which dead-letters
 * every third event and emits one event for each other one. Each case counts, with an independent read_committed
 * reader, the messages of every esr-source in the dead-letter and output topics, and fails on any duplicate:
 *   - rows published and acknowledged but not deleted (a crash between publish and delete) are dropped after a reopen,
 *     and the marks then saved are the highest acknowledged offsets;
 *   - restored from an older copy of its database (a checkpoint), a partition re-applies the log and publishes none of
 *     what the newer state already published, and publishes what is new;
 *   - while a re-application is under way the marks stay where the older copy had them, so that a crash in the middle
 *     still finds everything on the next read-back;
 *   - with a key set too small for the range, the read-back runs in windows and drops everything still;
 *   - one read-back serves two partitions that publish to the same topics, each dropping only its own rows;
 *   - what a read-back read is not read again after the next open (the marks move to the ends read), even in the
 *     output partitions the partition never published to;
 *   - rows whose delivery failed (the broker down past message.timeout.ms) are read back before they are sent again,
 *     and published once when the broker is back;
 *   - with outputs.readback off, the same restore publishes duplicates (the premise of the cases above).
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include "config.h"
#include "esrt_case.h"
#include "esrt_kafka.h"
#include "host.h"
#include "outputs.h"
#include "partition.h"
#include "publisher.h"
#include "readback.h"
#include "registry.h"

#define GOOD ESR_TEST_PLUGIN_DIR "/good.so"
#define SRC "src"
#define DLQ "dlq"
#define OUT "out"
#define NP 2

typedef struct fixture {
  esrt_case *c;
  esrt_mock mock;
  int mock_up;
  esr_config *cfg;
  esr_registry reg;
  int reg_loaded;
  esr_publisher *pub;
  esr_readback *rb;
  esr_partition_env env;
  char state[1100];
  esr_partition *p[NP];
} fixture;

static void on_delivery(void *opaque, const esr_delivery *d) {
  fixture *f = opaque;
  if (d->sink < NP && f->p[d->sink]) esr_partition_delivered(f->p[d->sink], d);
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f || !(f->c = esrt_case_new("outputs"))) return -1;
  const char *topics[] = {SRC ":2", DLQ ":1", OUT ":3", NULL};
  esr_error err = {0};
  if (esrt_mock_start(&f->mock, ESR_BIN, f->c->dir, 1, topics, 20000) != 0) return -1;
  f->mock_up = 1;
  char *paths[] = {GOOD};
  if (!(f->cfg = esr_config_new()) ||
      esr_config_set(f->cfg, "kafka.bootstrap.servers", f->mock.bootstrap, "test", &err) != ESR_E_OK ||
      esr_publisher_new(f->cfg, on_delivery, f, &f->pub, &err) != ESR_E_OK ||
      esr_readback_new(f->cfg, &f->rb, &err) != ESR_E_OK ||
      esr_registry_load(&f->reg, paths, 1, esr_host_api_table(), NULL, 0, &err) != ESR_E_OK) {
    fprintf(stderr, "setup: %s\n", err.msg);
    return -1;
  }
  f->reg_loaded = 1;
  snprintf(f->state, sizeof f->state, "%s/state", f->c->dir);
  if (mkdir(f->state, 0755) != 0) return -1;
  f->env = (esr_partition_env){.registry = &f->reg,
                               .publisher = f->pub,
                               .state_dir = f->state,
                               .dlq_topic = DLQ,
                               .store = {.cache_mb = 2},
                               .outputs = {.readback = 1}};
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  for (int i = 0; i < NP; i++) esr_partition_close(f->p[i]);
  esr_readback_free(f->rb);
  esr_publisher_free(f->pub);
  if (f->reg_loaded) esr_registry_clear(&f->reg);
  esr_config_free(f->cfg);
  if (f->mock_up) esrt_mock_stop(&f->mock);
  esrt_case_end(f->c);
  free(f);
  return 0;
}

static void open_p(fixture *f, int i) {
  esr_error err = {0};
  assert_null(f->p[i]);
  if (esr_partition_open(&f->env, SRC, i, (uint64_t)i, &f->p[i], &err) != ESR_E_OK) fail_msg("open: %s", err.msg);
}

static void close_p(fixture *f, int i) {
  esr_partition_close(f->p[i]);
  f->p[i] = NULL;
}

/* Event `off` of partition i: every third is rejected (a dead letter), the others emit one event to OUT. */
static void apply_range(fixture *f, int i, int64_t from, int64_t to) {
  for (int64_t off = from; off < to; off++) {
    char v[300];
    if (off % 3 == 0)
      snprintf(v, sizeof v, "{\"type\":\"test.event\",\"data\":{\"result\":\"reject\",\"error\":\"no %" PRId64 "\"}}",
               off);
    else
      snprintf(v, sizeof v,
               "{\"type\":\"test.event\",\"data\":{\"emit\":[{\"topic\":\"" OUT "\",\"key\":\"k%" PRId64
               "\",\"value\":\"v%d-%" PRId64 "\"}]}}",
               off % 7, i, off);
    char key[32];
    snprintf(key, sizeof key, "k%" PRId64, off % 7);
    esr_message m = {.offset = off, .key = key, .key_len = strlen(key), .value = v, .value_len = strlen(v)};
    esr_error err = {0};
    if (esr_partition_apply(f->p[i], &m, &err) != ESR_E_OK) fail_msg("apply @%" PRId64 ": %s", off, err.msg);
  }
  esr_error err = {0};
  if (esr_partition_commit(f->p[i], &err) != ESR_E_OK) fail_msg("commit: %s", err.msg);
}

/* Waits until the partitions have nothing in flight. */
static void wait_acks(fixture *f) {
  int64_t deadline = esrt_now_ms() + 20000;
  for (;;) {
    int n = 0;
    for (int i = 0; i < NP; i++) n += f->p[i] ? esr_partition_in_flight(f->p[i]) : 0;
    if (!n) return;
    assert_true(esrt_now_ms() < deadline);
    esr_publisher_poll(f->pub, 20);
  }
}

/* Publishes what partition i has (read-backs as they are due), waits for the acknowledgements; with `delete`, the
 * acknowledged rows are deleted (and the marks saved) as a worker's tick does. */
static void publish(fixture *f, int i, int delete) {
  esr_error err = {0};
  for (int round = 0; round < 200; round++) {
    if (esr_partition_readback_due(f->p[i]) &&
        esr_partitions_readback(f->rb, &f->p[i], 1, 10000, &err) != ESR_E_OK)
      fail_msg("read-back: %s", err.msg);
    if (esr_partition_publish(f->p[i], &err) != ESR_E_OK) fail_msg("publish: %s", err.msg);
    wait_acks(f);
    if (delete && esr_partition_tick(f->p[i], &err) != ESR_E_OK) fail_msg("tick: %s", err.msg);
    if (!esr_partition_unpublished(f->p[i]) && !esr_partition_readback_due(f->p[i])) return;
  }
  fail_msg("partition %d: still publishing after 200 rounds", i);
}

typedef struct counts {
  size_t messages, distinct, duplicates;
} counts;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The messages of `topic` whose esr-source is of SRC partition `part` (-1: any), read back with read_committed. */
static counts count(fixture *f, const char *topic, int part) {
  esrt_records r = {0};
  assert_int_equal(0, esrt_consume_all(f->mock.bootstrap, topic, &r, 20000));
  char **keys = calloc(r.n + 1, sizeof *keys);
  assert_non_null(keys);
  counts c = {0};
  char prefix[32];
  snprintf(prefix, sizeof prefix, SRC "/%d/", part);
  for (size_t k = 0; k < r.n; k++) {
    const char *src = esrt_record_header(&r.v[k], "esr-source");
    assert_non_null(src);
    if (part >= 0 && strncmp(src, prefix, strlen(prefix)) != 0) continue;
    keys[c.messages++] = (char *)src;
  }
  qsort(keys, c.messages, sizeof *keys, cmp_str);
  for (size_t k = 0; k < c.messages; k++) {
    if (k && strcmp(keys[k], keys[k - 1]) == 0)
      c.duplicates++;
    else
      c.distinct++;
  }
  free(keys);
  esrt_records_free(&r);
  return c;
}

/* Expected outputs of events [0, n): dead letters (every third) and emits (the others). */
static void expect(fixture *f, int part, int64_t n, int must_be_once) {
  int64_t dead = (n + 2) / 3, emits = n - dead;
  counts d = count(f, DLQ, part), o = count(f, OUT, part);
  printf("# %s[%d] after %" PRId64 " events: dead letters %zu (%zu distinct), emits %zu (%zu distinct)\n", SRC, part, n,
         d.messages, d.distinct, o.messages, o.distinct);
  assert_int_equal(d.distinct, dead);
  assert_int_equal(o.distinct, emits);
  if (must_be_once) {
    assert_int_equal(d.duplicates, 0);
    assert_int_equal(o.duplicates, 0);
  }
}

static int64_t q_int(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) fail_msg("%s: %s", sql, sqlite3_errmsg(db));
  int64_t v = -1;
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static int64_t outbox_rows(fixture *f, int i) {
  return q_int(esr_store_db(esr_partition_store(f->p[i])), "SELECT count(*) FROM esr_outbox");
}

/* The mark of DLQ[0] in partition i's database (-1: none). */
static int64_t dlq_mark(fixture *f, int i) {
  return q_int(esr_store_db(esr_partition_store(f->p[i])),
               "SELECT acked FROM esr_outputs WHERE topic = '" DLQ "' AND partition = 0");
}

static esr_outputs_stats stats(fixture *f, int i) {
  esr_outputs_stats st;
  esr_outputs_stats_get(esr_partition_outputs(f->p[i]), &st);
  return st;
}

/* Copies partition i's database (closed: its WAL folded in) to `name` in the case's directory, or back. */
static void copy_db(fixture *f, int i, const char *name, int restore) {
  char live[1300], saved[1300], cmd[3000];
  esr_store_path(live, sizeof live, f->state, SRC, i);
  snprintf(saved, sizeof saved, "%s/%s", f->c->dir, name);
  if (restore)
    snprintf(cmd, sizeof cmd, "rm -f '%s-wal' '%s-shm' && cp '%s' '%s'", live, live, saved, live);
  else
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", live, saved);
  assert_int_equal(0, system(cmd));
}

static void crash_between_publish_and_delete_publishes_nothing_twice(void **state) {
  fixture *f = *state;
  open_p(f, 0);
  apply_range(f, 0, 0, 30);
  publish(f, 0, 0); /* published and acknowledged; the process "dies" before the rows are deleted */
  assert_int_equal(outbox_rows(f, 0), 30);
  expect(f, 0, 30, 1);
  close_p(f, 0);

  open_p(f, 0);
  assert_true(esr_partition_readback_due(f->p[0]));
  publish(f, 0, 1);
  esr_outputs_stats st = stats(f, 0);
  printf("# after the reopen: %" PRId64 " read-back(s), %" PRId64 " messages read, %" PRId64 " found, %" PRId64
         " dropped\n", st.readbacks, st.read, st.found, st.dropped);
  assert_int_equal(st.dropped, 30);
  assert_int_equal(outbox_rows(f, 0), 0);
  expect(f, 0, 30, 1);

  /* New rows are published; their acknowledgement moves the mark to the last dead letter's offset. */
  apply_range(f, 0, 30, 33);
  publish(f, 0, 1);
  apply_range(f, 0, 33, 34); /* not published */
  expect(f, 0, 33, 1);
  int64_t lo, hi;
  rd_kafka_t *rk = esrt_kafka_client_new(f->mock.bootstrap);
  assert_non_null(rk);
  assert_int_equal(0, esrt_watermarks(rk, DLQ, 0, &lo, &hi));
  rd_kafka_destroy(rk);
  assert_int_equal(dlq_mark(f, 0), hi - 1);
  f->c->passed = 1;
}

static void restore_from_an_older_copy_republishes_nothing(void **state) {
  fixture *f = *state;
  open_p(f, 0);
  apply_range(f, 0, 0, 30);
  publish(f, 0, 1);
  apply_range(f, 0, 30, 31);
  publish(f, 0, 1);
  close_p(f, 0);
  copy_db(f, 0, "older.db", 0); /* a checkpoint at offset 31 */

  open_p(f, 0);
  apply_range(f, 0, 31, 90);
  publish(f, 0, 1);
  expect(f, 0, 90, 1);
  close_p(f, 0);

  copy_db(f, 0, "older.db", 1);
  open_p(f, 0);
  assert_int_equal(esr_partition_committed(f->p[0])->next_offset, 31);
  apply_range(f, 0, 31, 90); /* the log re-applied from the checkpoint */
  publish(f, 0, 1);
  esr_outputs_stats st = stats(f, 0);
  printf("# re-applied 59 events: %" PRId64 " read-back(s), %" PRId64 " messages read, %" PRId64 " dropped\n",
         st.readbacks, st.read, st.dropped);
  assert_int_equal(st.dropped, 59);
  expect(f, 0, 90, 1);
  apply_range(f, 0, 90, 99); /* and what is new is published */
  publish(f, 0, 1);
  expect(f, 0, 99, 1);
  f->c->passed = 1;
}

static void marks_hold_while_reapplying_so_a_crash_midway_still_finds_everything(void **state) {
  fixture *f = *state;
  open_p(f, 0);
  apply_range(f, 0, 0, 30);
  publish(f, 0, 1);
  apply_range(f, 0, 30, 31);
  publish(f, 0, 1);
  int64_t old_mark = dlq_mark(f, 0);
  assert_true(old_mark >= 0);
  close_p(f, 0);
  copy_db(f, 0, "older.db", 0);
  open_p(f, 0);
  apply_range(f, 0, 31, 90);
  publish(f, 0, 1);
  apply_range(f, 0, 90, 91);
  assert_true(dlq_mark(f, 0) > old_mark); /* the newer state's mark moved on */
  close_p(f, 0);

  copy_db(f, 0, "older.db", 1);
  open_p(f, 0);
  apply_range(f, 0, 31, 60); /* half-way through the re-application ... */
  publish(f, 0, 1);
  apply_range(f, 0, 60, 61);
  publish(f, 0, 1);
  assert_int_equal(dlq_mark(f, 0), old_mark); /* ... the marks have not moved */
  close_p(f, 0);                             /* a crash */
  open_p(f, 0);
  apply_range(f, 0, 61, 91);
  publish(f, 0, 1);
  expect(f, 0, 91, 1);
  apply_range(f, 0, 91, 95);
  publish(f, 0, 1);
  apply_range(f, 0, 95, 96);
  publish(f, 0, 1);
  expect(f, 0, 96, 1);
  assert_true(dlq_mark(f, 0) > old_mark); /* once past everything found, the marks move again */
  f->c->passed = 1;
}

static void a_small_key_set_reads_back_in_windows(void **state) {
  fixture *f = *state;
  f->env.outputs.max_bytes = 2048;
  open_p(f, 0);
  apply_range(f, 0, 0, 10);
  publish(f, 0, 1);
  apply_range(f, 0, 10, 11);
  publish(f, 0, 1);
  close_p(f, 0);
  copy_db(f, 0, "older.db", 0);
  open_p(f, 0);
  apply_range(f, 0, 11, 300);
  publish(f, 0, 1);
  close_p(f, 0);
  copy_db(f, 0, "older.db", 1);
  open_p(f, 0);
  for (int64_t off = 11; off < 300; off += 20) { /* batches, each published */
    apply_range(f, 0, off, off + 20 < 300 ? off + 20 : 300);
    publish(f, 0, 1);
  }
  esr_outputs_stats st = stats(f, 0);
  printf("# 289 events re-applied with a key set of 2 KiB: %" PRId64 " read-back passes, %" PRId64 " dropped\n",
         st.readbacks, st.dropped);
  assert_true(st.readbacks >= 3);
  assert_int_equal(st.dropped, 289);
  expect(f, 0, 300, 1);
  f->c->passed = 1;
}

static void one_readback_serves_two_partitions(void **state) {
  fixture *f = *state;
  for (int i = 0; i < NP; i++) {
    open_p(f, i);
    apply_range(f, i, 0, 20);
    publish(f, i, 0); /* neither deletes what was acknowledged */
    close_p(f, i);
  }
  for (int i = 0; i < NP; i++) open_p(f, i);
  esr_error err = {0};
  assert_int_equal(ESR_E_OK, esr_partitions_readback(f->rb, f->p, NP, 10000, &err));
  for (int i = 0; i < NP; i++) assert_false(esr_partition_readback_due(f->p[i]));
  for (int i = 0; i < NP; i++) publish(f, i, 1);
  for (int i = 0; i < NP; i++) {
    esr_outputs_stats st = stats(f, i);
    assert_int_equal(st.dropped, 20);
    expect(f, i, 20, 1);
  }
  f->c->passed = 1;
}

static void what_was_read_back_is_not_read_again(void **state) {
  fixture *f = *state;
  open_p(f, 1);
  apply_range(f, 1, 0, 60); /* another partition's outputs: 20 dead letters, 40 emits over the 3 output partitions */
  publish(f, 1, 1);
  open_p(f, 0);
  apply_range(f, 0, 0, 2); /* a dead letter and an emit: their topics are read from their starts */
  publish(f, 0, 1);
  esr_outputs_stats first = stats(f, 0);
  apply_range(f, 0, 2, 3);
  publish(f, 0, 1);
  apply_range(f, 0, 3, 4); /* a transaction after the read-back's epoch: its marks saved */
  close_p(f, 0);
  open_p(f, 0);
  publish(f, 0, 1);
  esr_outputs_stats again = stats(f, 0);
  printf("# first read-back: %" PRId64 " messages read; after a reopen: %" PRId64 "\n", first.read, again.read);
  assert_true(first.read >= 60);
  assert_true(again.read <= 4); /* at most its own outputs since the marks, not the 60 of the other partition */
  expect(f, 0, 4, 1);                /* offset 3's dead letter was published after the reopen */
  f->c->passed = 1;
}

static void failed_deliveries_are_read_back_before_the_resend(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  esr_publisher_free(f->pub); /* a producer that gives up soon */
  assert_int_equal(ESR_E_OK, esr_config_set(f->cfg, "kafka.message.timeout.ms", "1000", "test", &err));
  esr_code rc = esr_publisher_new(f->cfg, on_delivery, f, &f->pub, &err);
  f->env.publisher = f->pub;
  assert_int_equal(ESR_E_OK, rc);
  open_p(f, 0);
  apply_range(f, 0, 0, 12);
  publish(f, 0, 1);
  apply_range(f, 0, 12, 30);
  assert_int_equal(0, esrt_mock_control(&f->mock, "broker-down 1", 5000));
  assert_int_equal(ESR_E_OK, esr_partition_publish(f->p[0], &err));
  assert_true(esr_partition_in_flight(f->p[0]) > 0);
  wait_acks(f); /* every delivery fails: the message timeout */
  assert_int_equal(ESR_E_OK, esr_partition_tick(f->p[0], &err));
  assert_true(esr_partition_unpublished(f->p[0]));
  assert_true(esr_partition_readback_due(f->p[0])); /* before anything is sent again */
  assert_int_equal(0, esrt_mock_control(&f->mock, "broker-up 1", 5000));
  publish(f, 0, 1);
  assert_int_equal(outbox_rows(f, 0), 0);
  expect(f, 0, 30, 1);
  f->c->passed = 1;
}

/* The premise: the same restore without the read-back publishes everything again. */
static void without_readback_a_restore_publishes_duplicates(void **state) {
  fixture *f = *state;
  f->env.outputs.readback = 0;
  open_p(f, 0);
  apply_range(f, 0, 0, 10);
  publish(f, 0, 1);
  close_p(f, 0);
  copy_db(f, 0, "older.db", 0);
  open_p(f, 0);
  apply_range(f, 0, 10, 40);
  publish(f, 0, 1);
  close_p(f, 0);
  copy_db(f, 0, "older.db", 1);
  open_p(f, 0);
  apply_range(f, 0, 10, 40);
  publish(f, 0, 1);
  expect(f, 0, 40, 0);
  counts d = count(f, DLQ, 0), o = count(f, OUT, 0);
  assert_int_equal(d.duplicates + o.duplicates, 30);
  f->c->passed = 1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(crash_between_publish_and_delete_publishes_nothing_twice, setup, teardown),
      cmocka_unit_test_setup_teardown(restore_from_an_older_copy_republishes_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(marks_hold_while_reapplying_so_a_crash_midway_still_finds_everything, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_small_key_set_reads_back_in_windows, setup, teardown),
      cmocka_unit_test_setup_teardown(one_readback_serves_two_partitions, setup, teardown),
      cmocka_unit_test_setup_teardown(what_was_read_back_is_not_read_again, setup, teardown),
      cmocka_unit_test_setup_teardown(failed_deliveries_are_read_back_before_the_resend, setup, teardown),
      cmocka_unit_test_setup_teardown(without_readback_a_restore_publishes_duplicates, setup, teardown),
  };
  return cmocka_run_group_tests_name("outputs", tests, NULL, NULL);
}
