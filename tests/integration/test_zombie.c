/* test_zombie.c — a worker that lost its partitions publishes nothing for them (label `integration`). Worker W1 (group
 * mode, a handler that emits one event per applied event and takes 300 us per event: tests/plugins/ledger_echo.c)
 * owns all 4 partitions of a ledger topic and is working through a backlog when it is stopped (SIGSTOP) right after
 * one of its publications landed, with an open batch of up to 1000 events. A second worker W2 (its own state directory, the same
 * group and remote checkpoint store) joins; once the stopped member's session times out, W2 gets every partition,
 * resumes it (from a checkpoint or the log) and catches up with the whole log, publishing everything. Then W1 is woken
 * (SIGCONT): it still holds its batch and queued messages, commits them (a zombie) and, without the publication gate,
 * would publish their dead letters and emitted events for partitions W2 owns. The test asserts:
 *   - the premises: W1 was stopped in the middle of its backlog; W2 owned and caught up every partition before W1
 *     woke; W1 committed events after it woke (its databases moved past where they were at the stop) and its gate
 *     refused at least one publication round ("ownership check failed");
 *   - nothing published by W1 after it lost them: no message of the dead-letter or the emit topic was created (its
 *     timestamp, set by the producer) after W1 woke, and the topics' ends did not move (W2 had nothing left to
 *     publish, and W1, when the group gives it partitions back, finds its rows already there);
 *   - zero duplicates, and exactly the expected outputs, in both topics read with isolation.level=read_committed.
 * It prints the longest time the workers measured from an ownership check to the last row of its round handed to
 * the producer: the window the check leaves open (see gate.c and the README).
 */
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "esrt_case.h"
#include "esrt_kafka.h"
#include "esrt_ledger.h"
#include "esrt_recovery.h"
#include "esrt_state.h"

#define ECHO_SO ESR_BUILD_DIR "/tests/plugins/ledger_echo.so"
#define P 4
#define SESSION_MS 6000
#define WARMUP 2000
#define BURST 8000

static void free_producer(void *p) { esrt_producer_free(p); }
static void free_client(void *rk) { rd_kafka_destroy(rk); }

static int64_t wall_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int64_t consumed(const char *dir) {
  int64_t total = 0;
  for (int p = 0; p < P; p++) {
    esrt_part_state ps;
    if (esrt_read_position(dir, "ledger", p, &ps) == 0 && ps.present) total += ps.next_offset;
  }
  return total;
}

static int64_t high(rd_kafka_t *rk, const char *topic) {
  int64_t total = 0;
  int n = esrt_partition_count(rk, topic);
  for (int p = 0; p < n; p++) {
    int64_t lo, hi;
    assert_int_equal(0, esrt_watermarks(rk, topic, p, &lo, &hi));
    total += hi;
  }
  return total;
}

static uint64_t owned(const char *log) {
  esrt_wlog l = {0};
  assert_int_equal(0, esrt_wlog_read(&l, log, "ledger"));
  uint64_t m = esrt_wlog_owned_mask(&l);
  esrt_wlog_free(&l);
  return m;
}

/* The largest "longest X ms" of the gate's statistics lines in a log (-1: none); the lines are printed. */
static double longest_window(const char *path, const char *who) {
  char *text = esrt_read_file(path, NULL);
  double best = -1;
  static const char what[] = "check to last row handed to the producer: longest ";
  for (char *at = text ? strstr(text, what) : NULL; at; at = strstr(at + 1, what)) {
    double v = strtod(at + sizeof what - 1, NULL);
    if (v > best) best = v;
    char *from = at, *to = strchr(at, '"');
    while (from > text && from[-1] != '"') from--;
    printf("# %s: %.*s\n", who, (int)(to ? to - from : 0), from);
  }
  free(text);
  return best;
}

static void paused_worker_publishes_nothing_after_losing_its_partitions(void **state) {
  esrt_case *c = *state;
  esrt_mock mock;
  const char *topics[] = {"ledger:4", "ledger.dlq:1", "ledger.out:2", NULL};
  assert_int_equal(0, esrt_mock_start(&mock, ESR_BIN, c->dir, 3, topics, 20000));
  esrt_gen_opts g = {.seed = 1414, .events = WARMUP + BURST, .accounts = 500, .partitions = P, .bad_share = 0.05,
                     .prefix_kinds = 1};
  size_t n;
  esrt_event *ev = esrt_ledger_generate(&g, &n);
  assert_non_null(ev);
  esrt_producer *prod = esrt_case_defer(c, free_producer, esrt_producer_new(mock.bootstrap));
  rd_kafka_t *rk = esrt_case_defer(c, free_client, esrt_kafka_client_new(mock.bootstrap));
  assert_non_null(prod);
  assert_non_null(rk);

  char store[1100], dir1[1100], dir2[1100], conf1[1024], conf2[1024], extra[1500];
  snprintf(store, sizeof store, "%s/store", c->dir);
  snprintf(dir1, sizeof dir1, "%s/state-1", c->dir);
  snprintf(dir2, sizeof dir2, "%s/state-2", c->dir);
  assert_int_equal(0, mkdir(store, 0755));
  snprintf(extra, sizeof extra,
           "assignment = group\nkafka.group.id = esr-zombie\nkafka.session.timeout.ms = %d\n"
           "kafka.heartbeat.interval.ms = 1000\napply.threads = 1\nbatch.max.events = 1000\nbatch.max.ms = 100\n"
           "checkpoint.interval.events = 500\ncheckpoint.interval.ms = 1000\ncheckpoint.store = file://%s\n",
           SESSION_MS, store);
  assert_int_equal(0, esrt_write_worker_config(conf1, sizeof conf1, c->dir, "w1", mock.bootstrap, "ledger",
                                               "ledger.dlq", dir1, ECHO_SO, "%s", extra));
  assert_int_equal(0, esrt_write_worker_config(conf2, sizeof conf2, c->dir, "w2", mock.bootstrap, "ledger",
                                               "ledger.dlq", dir2, ECHO_SO, "%s", extra));

  /* W1 alone, caught up with a first part of the stream. */
  for (size_t i = 0; i < WARMUP; i++)
    assert_int_equal(0, esrt_produce(prod, "ledger", ev[i].partition, ev[i].key, ev[i].key_len, ev[i].value,
                                     ev[i].value_len, &ev[i].offset));
  assert_int_equal(0, esrt_producer_flush(prod, 30000));
  setenv("ESRT_ECHO_DELAY_US", "300", 1); /* W1 only: slow enough to be caught in the middle of its backlog */
  esrt_proc w1, w2;
  assert_int_equal(0, esrt_start_worker(&w1, ESR_BIN, c->dir, "w1", conf1));
  unsetenv("ESRT_ECHO_DELAY_US");
  const char *d1[] = {dir1};
  assert_int_equal(0, esrt_wait_caught_up(rk, "ledger", P, d1, 1, 120000));
  assert_int_equal((1u << P) - 1, owned(w1.err_path));

  /* The backlog; W1 is stopped right after one of its publications landed (the output topics' ends moved, then
   * stood still for 25 ms), while it still has most of the backlog before it. */
  for (size_t i = WARMUP; i < n; i++)
    assert_int_equal(0, esrt_produce(prod, "ledger", ev[i].partition, ev[i].key, ev[i].key_len, ev[i].value,
                                     ev[i].value_len, &ev[i].offset));
  assert_int_equal(0, esrt_producer_flush(prod, 30000));
  int64_t start = consumed(dir1), deadline = esrt_now_ms() + 60000, moved_at = -1;
  int64_t last = high(rk, "ledger.out") + high(rk, "ledger.dlq");
  for (;;) {
    assert_true(esrt_now_ms() < deadline);
    assert_true(esrt_alive(&w1));
    int64_t h = high(rk, "ledger.out") + high(rk, "ledger.dlq");
    if (h != last) {
      last = h;
      moved_at = esrt_now_ms();
    } else if (moved_at > 0 && esrt_now_ms() - moved_at >= 25 && consumed(dir1) >= start + 500) {
      break;
    }
    esrt_sleep_ms(2);
  }
  assert_int_equal(0, esrt_signal(&w1, SIGSTOP));
  int64_t t_stop = wall_ms();
  esrt_sleep_ms(50); /* stopped for sure */
  int64_t at_stop[P];
  for (int p = 0; p < P; p++) {
    esrt_part_state ps;
    assert_int_equal(0, esrt_read_position(dir1, "ledger", p, &ps));
    at_stop[p] = ps.next_offset;
  }
  int64_t stop_total = consumed(dir1);
  printf("# W1 stopped with %" PRId64 " of %zu events applied (%" PRId64 " since the backlog arrived)\n", stop_total,
         n, stop_total - start);
  assert_true(stop_total < (int64_t)n - 1000); /* premise: in the middle of its backlog */

  /* W2 takes every partition over once the stopped member's session timed out, and catches up. */
  int64_t t0 = esrt_now_ms();
  assert_int_equal(0, esrt_start_worker(&w2, ESR_BIN, c->dir, "w2", conf2));
  const char *d2[] = {dir2};
  assert_int_equal(0, esrt_wait_caught_up(rk, "ledger", P, d2, 1, 120000));
  assert_int_equal((1u << P) - 1, owned(w2.err_path)); /* premise: the partitions moved */
  printf("# W2 owns all %d partitions and caught up %" PRId64 " ms after it started\n", P, esrt_now_ms() - t0);
  int64_t dlq_before = high(rk, "ledger.dlq"), out_before = high(rk, "ledger.out");

  /* W1 wakes: a zombie. */
  int64_t t_wake = wall_ms();
  assert_int_equal(0, esrt_signal(&w1, SIGCONT));
  deadline = esrt_now_ms() + 60000;
  while (!esrt_file_contains(w1.err_path, "ownership check failed") ||
         !esrt_file_contains(w1.err_path, "released at offset")) {
    assert_true(esrt_alive(&w1));
    if (esrt_now_ms() >= deadline) {
      fprintf(stderr, "W1 did not report a refused ownership check and a release within 60 s of waking\n");
      fail();
    }
    esrt_sleep_ms(20);
  }
  int advanced = 0;
  for (int p = 0; p < P; p++) {
    esrt_part_state ps;
    assert_int_equal(0, esrt_read_position(dir1, "ledger", p, &ps));
    advanced += ps.next_offset > at_stop[p];
  }
  printf("# W1 woke %" PRId64 " ms after it was stopped; it committed events after waking in %d partition(s) and "
         "its gate refused to publish for them\n",
         t_wake - t_stop, advanced);
  assert_true(advanced >= 1); /* premise: the zombie had something to publish */

  /* The group settles (W1 may get partitions back and resume them); everything is caught up. */
  const char *both[] = {dir1, dir2};
  assert_int_equal(0, esrt_wait_caught_up_any(rk, "ledger", P, both, 2, 120000));
  assert_true(esrt_alive(&w1) && esrt_alive(&w2));
  assert_int_equal(0, esrt_stop(&w1, 30000));
  assert_int_equal(0, esrt_stop(&w2, 30000));

  /* Nothing published after W1 woke, nothing twice, nothing missing. */
  int64_t dlq_after = high(rk, "ledger.dlq"), out_after = high(rk, "ledger.out");
  esrt_records src = {0}, dlq = {0}, out = {0};
  esrt_oracle *o = esrt_ledger_oracle_from_log(mock.bootstrap, "ledger", P, ev, n, &src);
  assert_non_null(o);
  assert_true(esrt_topic_whole(rk, "ledger.dlq") && esrt_topic_whole(rk, "ledger.out"));
  assert_int_equal(0, esrt_consume_all(mock.bootstrap, "ledger.dlq", &dlq, 60000));
  assert_int_equal(0, esrt_consume_all(mock.bootstrap, "ledger.out", &out, 60000));
  size_t late = 0;
  const esrt_records *lists[] = {&dlq, &out};
  for (int k = 0; k < 2; k++)
    for (size_t i = 0; i < lists[k]->n; i++)
      if (lists[k]->v[i].timestamp >= t_wake) {
        if (late < 10)
          fprintf(stderr, "published after W1 woke: %s at %d/%" PRId64 ", %" PRId64 " ms after\n",
                  esrt_record_header(&lists[k]->v[i], "esr-source"), (int)lists[k]->v[i].partition,
                  lists[k]->v[i].offset, lists[k]->v[i].timestamp - t_wake);
        late++;
      }
  esrt_dlq_summary dsum, esum;
  size_t dlq_diffs = esrt_compare_dlq(o, "ledger", &src, &dlq, &dsum, stderr, 20);
  size_t emit_diffs = esrt_compare_emits(o, "ledger", &src, &out, &esum, stderr, 20);
  double w1_window = longest_window(w1.err_path, "W1"), w2_window = longest_window(w2.err_path, "W2");
  printf("# after W1 woke: %zu messages published (dead-letter topic end %" PRId64 " -> %" PRId64 ", emits %" PRId64
         " -> %" PRId64 "); dead letters %zu distinct, %zu duplicates; emitted events %zu distinct, %zu duplicates "
         "(read_committed); %zu + %zu differences from the oracle\n",
         late, dlq_before, dlq_after, out_before, out_after, dsum.distinct, dsum.duplicates, esum.distinct,
         esum.duplicates, dlq_diffs, emit_diffs);
  printf("# ownership check to the last row of its round handed to the producer: longest %.3f ms (W1), %.3f ms (W2)\n",
         w1_window, w2_window);
  assert_int_equal(0, late);
  assert_int_equal(dlq_before, dlq_after);
  assert_int_equal(out_before, out_after);
  assert_int_equal(0, dlq_diffs);
  assert_int_equal(0, emit_diffs);
  assert_int_equal(0, dsum.duplicates);
  assert_int_equal(0, esum.duplicates);

  esrt_records_free(&src);
  esrt_records_free(&dlq);
  esrt_records_free(&out);
  esrt_oracle_free(o);
  esrt_events_free(ev, n);
  esrt_case_cleanup(c);
  assert_int_equal(0, esrt_mock_stop(&mock));
  c->passed = 1;
}

static int setup(void **state) {
  *state = esrt_case_new("zombie");
  return *state ? 0 : -1;
}

static int teardown(void **state) {
  esrt_case_end(*state);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(paused_worker_publishes_nothing_after_losing_its_partitions, setup, teardown),
  };
  return cmocka_run_group_tests_name("zombie", tests, NULL, NULL);
}
