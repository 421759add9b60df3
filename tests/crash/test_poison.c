/* test_poison.c — poison events (label `crash`): a handler that crashes the process on 5 scattered events of a
 * 20,000-event ledger stream (2 segfaults, 2 abort(), 1 stack overflow); then on 5 events of which two of one
 * partition lie in one batch and the others in two more partitions applied at once (segfaults, aborts, SIGFPE). The worker is restarted whenever it dies, as a
 * supervisor would. At the end those 5 events, and only they, are in the dead-letter topic with reason "crash", every
 * other event is applied exactly once (the ledger oracle, with the 5 forced to "crash"), and the worker is running.
 * It also checks the count of deaths: a poison event costs max.crash.retries + 1 deaths at most (the batch is retried,
 * then re-applied one event per transaction, and the event the signal was recorded on is skipped without dying again).
 * The handler emits one event per applied event (tests/plugins/ledger_echo.c under the poison): the dead letters and
 * the emitted events, read with isolation.level=read_committed, must hold each esr-source exactly once. The premise:
 * some deaths struck while an outbox held rows already in Kafka (counted after each death).
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
#include <unistd.h>

#include <cmocka.h>

#include "esrt_case.h"
#include "esrt_kafka.h"
#include "esrt_ledger.h"
#include "esrt_state.h"

#define POISON_SO ESR_BUILD_DIR "/tests/plugins/ledger_poison.so"
#define P 4
#define EVENTS 20000
#define RETRIES 3

static void free_producer(void *p) { esrt_producer_free(p); }
static void free_client(void *rk) { rd_kafka_destroy(rk); }
static void free_tail(void *t) { esrt_tail_free(t); }

typedef struct outbox_count {
  const esrt_tail *tail;
  int64_t in_kafka;
} outbox_count;

static void count_row(void *arg, const char *key) {
  outbox_count *c = arg;
  c->in_kafka += esrt_tail_has(c->tail, key);
}

/* Rewrites a ledger deposit so that the poison plugin crashes on it: "data":{ -> "data":{"poison":"<how>", */
static void poison(esrt_event *e, const char *how) {
  const char *at = strstr(e->value, "\"data\":{");
  assert_non_null(at);
  size_t head = (size_t)(at - e->value) + 8;
  char insert[64];
  int n = snprintf(insert, sizeof insert, "\"poison\":\"%s\",", how);
  char *v = malloc(e->value_len + (size_t)n + 1);
  assert_non_null(v);
  memcpy(v, e->value, head);
  memcpy(v + head, insert, (size_t)n);
  memcpy(v + head + n, e->value + head, e->value_len - head + 1);
  free(e->value);
  e->value = v;
  e->value_len += (size_t)n;
}

static int64_t consumed_total(const char *state_dir) {
  int64_t total = 0;
  for (int p = 0; p < P; p++) {
    esrt_part_state ps;
    if (esrt_read_position(state_dir, "ledger", p, &ps) == 0) total += ps.next_offset;
  }
  return total;
}

static int is_poison(const int32_t *part, const int64_t *off, int n, int32_t p, int64_t o) {
  for (int i = 0; i < n; i++)
    if (part[i] == p && off[i] == o) return 1;
  return 0;
}

typedef struct poison_plan {
  int events, batch_max, threads;
  int n;               /* poison events */
  const char *how[8];  /* how each one crashes */
  int32_t part[8];     /* the partition of each (-1: any deposit, spread over the stream) */
  int gap;             /* >0: each poison event of a partition is at most this many offsets after the previous one */
  int min_published_deaths; /* the premise of the duplicate count: deaths while an outbox held rows already in Kafka */
} poison_plan;

/* Produces a ledger stream with the plan's poison events, runs the worker under a supervisor that restarts it
 * whenever it dies, until the whole stream is consumed, and compares everything with the oracle. */
static void run_poison(esrt_case *c, const poison_plan *plan) {
  /* Under ASan the worker's own fatal-signal handler must see the signals (it records the event that crashed). */
  const char *asan = getenv("ASAN_OPTIONS");
  char opts[1024];
  snprintf(opts, sizeof opts, "%s%shandle_segv=0:handle_sigbus=0:handle_sigfpe=0:handle_abort=0:detect_leaks=0",
           asan ? asan : "", asan && *asan ? ":" : "");
  setenv("ASAN_OPTIONS", opts, 1);

  esrt_mock mock;
  const char *topics[] = {"ledger:4", "ledger.dlq:1", "ledger.out:2", NULL};
  assert_int_equal(0, esrt_mock_start(&mock, ESR_BIN, c->dir, 3, topics, 20000));
  esrt_gen_opts g = {.seed = 4242, .events = plan->events, .accounts = 1000, .partitions = P, .bad_share = 0.02};
  size_t n;
  esrt_event *ev = esrt_ledger_generate(&g, &n);
  assert_non_null(ev);

  /* Choose deposits: spread over the stream, or a few at a time in the partitions the plan names. */
  int chosen[8], k = 0;
  size_t last_in[P] = {0};
  for (size_t i = n / 8; i < n && k < plan->n; i++) {
    if (strcmp(ev[i].kind, "deposit") != 0) continue;
    int32_t want = plan->part[k];
    if (want < 0 && i < (size_t)k * (n / (size_t)plan->n) + n / 8) continue;
    if (want >= 0 && ev[i].partition != want) continue;
    if (want >= 0 && last_in[want] && i <= last_in[want] + 400) continue; /* not back to back */
    chosen[k] = (int)i;
    last_in[ev[i].partition] = i;
    poison(&ev[i], plan->how[k]);
    k++;
  }
  assert_int_equal(k, plan->n);

  esrt_producer *prod = esrt_case_defer(c, free_producer, esrt_producer_new(mock.bootstrap));
  assert_non_null(prod);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(0, esrt_produce(prod, "ledger", ev[i].partition, ev[i].key, ev[i].key_len, ev[i].value,
                                     ev[i].value_len, &ev[i].offset));
  assert_int_equal(0, esrt_producer_flush(prod, 60000)); /* the whole stream is a backlog before the worker starts */
  int32_t ppart[8];
  int64_t poff[8];
  for (int i = 0; i < plan->n; i++) {
    ppart[i] = ev[chosen[i]].partition;
    poff[i] = ev[chosen[i]].offset;
    printf("# poison %d: %s at ledger[%d]@%" PRId64 "\n", i, plan->how[i], (int)ppart[i], poff[i]);
  }
  /* The premise of the several-in-one-batch plan: consecutive poison events of a partition lie closer together than a
   * batch holds, in a backlog, so a batch that reaches the first one holds the next one too. */
  for (int i = 1; plan->gap > 0 && i < plan->n; i++) {
    for (int j = 0; j < i; j++) {
      if (ppart[j] != ppart[i]) continue;
      int64_t d = poff[i] > poff[j] ? poff[i] - poff[j] : poff[j] - poff[i];
      assert_true(d <= plan->gap && d < plan->batch_max);
    }
  }

  char state_dir[1100], conf[1024];
  snprintf(state_dir, sizeof state_dir, "%s/state", c->dir);
  assert_int_equal(0, esrt_write_worker_config(conf, sizeof conf, c->dir, "worker", mock.bootstrap, "ledger",
                                               "ledger.dlq", state_dir, POISON_SO,
                                               "assignment = static\npartitions = 0-3\nmax.crash.retries = %d\n"
                                               "batch.max.events = %d\napply.threads = %d\n",
                                               RETRIES, plan->batch_max, plan->threads));
  const char *outputs[] = {"ledger.dlq", "ledger.out", NULL};
  esrt_tail *tail = esrt_case_defer(c, free_tail, esrt_tail_new(mock.bootstrap, outputs));
  assert_non_null(tail);
  int published_deaths = 0;
  /* The supervisor: restart the worker whenever it dies, until it has consumed the whole stream. */
  esrt_proc w;
  int deaths = 0, by_signal[65] = {0};
  int max_deaths = plan->n * (RETRIES + 1);
  assert_int_equal(0, esrt_start_worker(&w, ESR_BIN, c->dir, "worker-00", conf));
  int64_t deadline = esrt_now_ms() + 300000;
  while (consumed_total(state_dir) < (int64_t)n) {
    if (esrt_now_ms() >= deadline) {
      fprintf(stderr, "not caught up after %d deaths\n", deaths);
      fail();
    }
    if (!esrt_alive(&w)) {
      int code = esrt_exit_code(&w);
      if (code <= 128) {
        fprintf(stderr, "the worker exited with code %d instead of dying by a signal\n", code);
        fail();
      }
      by_signal[(code - 128) & 63]++;
      deaths++;
      assert_int_equal(0, esrt_tail_catch_up(tail, 60000));
      outbox_count oc = {tail, 0};
      for (int p = 0; p < P; p++) assert_int_equal(0, esrt_outbox_keys(state_dir, "ledger", p, count_row, &oc));
      published_deaths += oc.in_kafka > 0;
      if (deaths > max_deaths) {
        fprintf(stderr, "%d deaths: more than max.crash.retries + 1 per poison event (%d): a verdict was lost\n",
                deaths, max_deaths);
        fail();
      }
      char name[32];
      snprintf(name, sizeof name, "worker-%02d", deaths);
      assert_int_equal(0, esrt_start_worker(&w, ESR_BIN, c->dir, name, conf));
    }
    esrt_sleep_ms(5);
  }
  rd_kafka_t *rk = esrt_case_defer(c, free_client, esrt_kafka_client_new(mock.bootstrap));
  assert_non_null(rk);
  const char *dirs[] = {state_dir};
  assert_int_equal(0, esrt_wait_caught_up(rk, "ledger", P, dirs, 1, 120000));
  assert_true(esrt_alive(&w)); /* still running after the poison */
  printf("# %d deaths (SIGSEGV %d, SIGABRT %d, SIGFPE %d); at most %d allowed (max.crash.retries + 1 per poison "
         "event)\n",
         deaths, by_signal[SIGSEGV], by_signal[SIGABRT], by_signal[SIGFPE], max_deaths);
  assert_true(deaths >= plan->n); /* every poison event killed the process at least once: the handler really crashes */
  assert_int_equal(0, esrt_stop(&w, 30000));

  /* The oracle: the ledger's fold of the log, with the poison events dead-lettered as "crash". */
  esrt_records src = {0};
  assert_int_equal(0, esrt_consume_all(mock.bootstrap, "ledger", &src, 60000));
  assert_int_equal(src.n, n);
  esrt_oracle *o = esrt_oracle_new(P);
  assert_non_null(o);
  for (int p = 0; p < P; p++) {
    for (int64_t off = 0;; off++) {
      const esrt_record *r = esrt_records_find(&src, p, off);
      if (!r) break;
      if (is_poison(ppart, poff, plan->n, p, off))
        esrt_oracle_feed_dead(o, p, off, r->key, r->key_len, r->value, r->value_len, "crash");
      else
        esrt_oracle_feed(o, p, off, r->key, r->key_len, r->value, r->value_len);
    }
  }
  esrt_state st = {0};
  assert_int_equal(0, esrt_state_read(&st, state_dir, "ledger", P, 1));
  size_t state_diffs = esrt_compare_state(o, &st, stderr, 20);
  esrt_records dlq = {0};
  assert_int_equal(0, esrt_consume_all(mock.bootstrap, "ledger.dlq", &dlq, 60000));
  esrt_dlq_summary sum;
  size_t dlq_diffs = esrt_compare_dlq(o, "ledger", &src, &dlq, &sum, stderr, 20);
  assert_true(esrt_topic_whole(rk, "ledger.dlq") && esrt_topic_whole(rk, "ledger.out"));
  esrt_records out = {0};
  assert_int_equal(0, esrt_consume_all(mock.bootstrap, "ledger.out", &out, 60000));
  esrt_dlq_summary emitted;
  size_t emit_diffs = esrt_compare_emits(o, "ledger", &src, &out, &emitted, stderr, 20);
  esrt_records_free(&out);
  int crash_letters = 0;
  for (size_t i = 0; i < dlq.n; i++) {
    const char *reason = esrt_record_header(&dlq.v[i], "esr-reason");
    if (reason && strcmp(reason, "crash") == 0) {
      const char *p = esrt_record_header(&dlq.v[i], "esr-partition"), *off = esrt_record_header(&dlq.v[i], "esr-offset");
      assert_true(p && off && is_poison(ppart, poff, plan->n, (int32_t)atoi(p), strtoll(off, NULL, 10)));
      crash_letters++;
    }
  }
  printf("# dead letters with reason crash: %d (distinct sources in the DLQ: %zu, %zu duplicates); emitted events: %zu "
         "distinct, %zu duplicates (read_committed); %zu state, %zu dead-letter and %zu emit differences from the "
         "oracle; %d deaths struck while an outbox held rows already in Kafka\n",
         crash_letters, sum.distinct, sum.duplicates, emitted.distinct, emitted.duplicates, state_diffs, dlq_diffs,
         emit_diffs, published_deaths);
  assert_int_equal(0, state_diffs);
  assert_int_equal(0, dlq_diffs);
  assert_int_equal(0, emit_diffs);
  assert_int_equal(0, sum.duplicates);
  assert_int_equal(0, emitted.duplicates);
  assert_true(published_deaths >= plan->min_published_deaths); /* the premise of the duplicate count */
  assert_true(crash_letters >= plan->n);

  esrt_state_free(&st);
  esrt_records_free(&dlq);
  esrt_records_free(&src);
  esrt_oracle_free(o);
  esrt_events_free(ev, n);
  esrt_case_cleanup(c);
  assert_int_equal(0, esrt_mock_stop(&mock));
}

/* Five deposits spread over the stream and the partitions, each with its own way of crashing. */
static void poison_events_are_isolated(void **state) {
  esrt_case *c = *state;
  poison_plan plan = {.events = EVENTS, .batch_max = 500, .threads = 2, .n = 5,
                      .how = {"segv", "abort", "loop", "segv", "abort"}, .part = {-1, -1, -1, -1, -1},
                      .min_published_deaths = 5};
  run_poison(c, &plan);
  c->passed = 1;
}

/* Two poison events of one partition in one batch, and poison events in two more partitions applied at the same time
 * by two apply threads: each verdict must outlive the deaths the others cause (the livelock of issue 10). */
static void several_poison_events_in_one_batch(void **state) {
  esrt_case *c = *state;
  /* Its poison events lie in the first batches, before much is published: the duplicate count is not its point. */
  poison_plan plan = {.events = 12000, .batch_max = 2000, .threads = 2, .n = 5, .gap = 600,
                      .how = {"segv", "fpe", "abort", "segv", "fpe"}, .part = {0, 0, 1, 2, 1},
                      .min_published_deaths = 0};
  run_poison(c, &plan);
  c->passed = 1;
}

static int setup(void **state) {
  *state = esrt_case_new("poison");
  return *state ? 0 : -1;
}

static int teardown(void **state) {
  esrt_case_end(*state);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(poison_events_are_isolated, setup, teardown),
      cmocka_unit_test_setup_teardown(several_poison_events_in_one_batch, setup, teardown),
  };
  return cmocka_run_group_tests_name("poison", tests, NULL, NULL);
}
