/* test_crash.c — the crash suite (label `crash`): a seeded ledger stream of tens of thousands of events (about 5% bad,
 * of every kind, plus an account driven into int64 overflow) is produced while a worker is SIGKILLed at random moments
 * at least 50 times and restarted each time — mostly with static assignment (restarts in milliseconds) after 20-400 ms
 * (every 8th round after 0.9-2.5 s, so that dead letters get published before the kill), a few rounds in a row in
 * group mode with a short session timeout (the dead member's partitions are handed to the next one). Every other kill
 * waits (briefly) for an open batch, and the suite asserts its premise: at least MIN_MID_BATCH_KILLS kills struck while
 * a batch transaction was open (read from the partitions' in-flight markers right after each kill). Then
 * the rest of the stream is produced, a cold worker catches up (its throughput is printed), and every account's
 * balance, every partition's position and log digest, and the set of dead-lettered source offsets with their reasons
 * must equal the oracle's, which folds the topic read back from Kafka. Any difference fails and prints the first ones.
 * Outputs are published once: the handler (tests/plugins/ledger_echo.c) emits one event per applied event, and the
 * dead-letter topic and the emitted events, read with isolation.level=read_committed, must hold each esr-source
 * exactly once, and exactly those the oracle expects. The premise of that count is asserted too: at least
 * MIN_PUBLISHED_KILLS kills struck while rows already in Kafka were still in an outbox (read after each kill from the
 * databases and from the output topics), which is when a restart would publish them again without the read-back.
 *
 * Environment: ESR_CRASH_SEED (default: from the clock; always printed), ESR_CRASH_EVENTS (default 40000),
 * ESR_CRASH_KILLS (default 56, never below 50), ESR_CRASH_GROUP_ROUNDS (default 3).
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "esrt_case.h"
#include "esrt_kafka.h"
#include "esrt_ledger.h"
#include "esrt_state.h"

#define LEDGER_SO ESR_BUILD_DIR "/tests/plugins/ledger_echo.so" /* the ledger, emitting one event per applied event */
#define P 4
#define MIN_MID_BATCH_KILLS 20 /* of at least 50, half of them aimed at an open batch */
#define MIN_PUBLISHED_KILLS 10 /* kills with rows in an outbox that were already in Kafka */

static long env_long(const char *name, long def) {
  const char *v = getenv(name);
  return v && *v ? strtol(v, NULL, 10) : def;
}

static void free_producer(void *p) { esrt_producer_free(p); }
static void free_client(void *rk) { rd_kafka_destroy(rk); }
static void free_tail(void *t) { esrt_tail_free(t); }

static uint64_t mix(uint64_t *s) { /* splitmix64, for the kill schedule */
  uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

typedef struct run {
  esrt_case *c;
  esrt_mock mock;
  esrt_producer *prod;
  esrt_event *ev;
  size_t n, produced, phase_a_end;
  char state_dir[1100];
  uint64_t rng;
  int kills, group_kills;
  int busy_kills; /* kills that struck while delivered events were still unapplied */
  int mid_batch_kills; /* kills that struck while a batch transaction was open (the in-flight marker says so) */
  int64_t worst_restart_ms;
  esrt_tail *tail;      /* the output topics, read after each kill */
  int published_kills;  /* kills after which an outbox held rows already in Kafka */
  int64_t published_rows;
} run;

typedef struct outbox_count {
  const esrt_tail *tail;
  int64_t rows, in_kafka;
} outbox_count;

static void count_row(void *arg, const char *key) {
  outbox_count *c = arg;
  c->rows++;
  c->in_kafka += esrt_tail_has(c->tail, key);
}

/* After a kill: how many rows of the outboxes were already in the output topics (published, not yet deleted). */
static int64_t published_in_outboxes(run *R) {
  assert_int_equal(0, esrt_tail_catch_up(R->tail, 60000));
  outbox_count c = {R->tail, 0, 0};
  for (int p = 0; p < P; p++) assert_int_equal(0, esrt_outbox_keys(R->state_dir, "ledger", p, count_row, &c));
  return c.in_kafka;
}

static void produce_one(run *R) {
  esrt_event *e = &R->ev[R->produced++];
  assert_int_equal(0, esrt_produce(R->prod, "ledger", e->partition, e->key, e->key_len, e->value, e->value_len,
                                   &e->offset));
}

static int64_t consumed_total(run *R) {
  int64_t total = 0;
  for (int p = 0; p < P; p++) {
    esrt_part_state ps;
    if (esrt_read_position(R->state_dir, "ledger", p, &ps) == 0) total += ps.next_offset;
  }
  return total;
}

/* Whether a batch was open in some partition when the worker died: the in-flight marker
 * (<state.dir>/<topic>-<p>.inflight, esr/crashguard.h) holds the first offset of the open batch, -1 when none. */
static int batch_was_open(run *R) {
  for (int p = 0; p < P; p++) {
    char path[1200];
    snprintf(path, sizeof path, "%s/ledger-%d.inflight", R->state_dir, p);
    char *text = esrt_read_file(path, NULL);
    long long first = text ? strtoll(text, NULL, 10) : -1;
    free(text);
    if (first >= 0) return 1;
  }
  return 0;
}

/* One round: write a config, start a worker, let it run for a random time while events keep arriving, SIGKILL it. */
static void kill_round(run *R, int round, int rounds, int group) {
  size_t quota = R->phase_a_end / (size_t)rounds;
  if (round == rounds - 1) quota = R->phase_a_end - R->produced;
  size_t burst = quota / 2, paced = quota - burst;
  for (size_t i = 0; i < burst && R->produced < R->phase_a_end; i++) produce_one(R); /* a backlog for the restart */

  static const int batch_events[] = {1, 7, 50, 500, 1000};
  static const int batch_ms[] = {1, 10, 50, 100};
  char conf[1024], extra[512];
  int be = batch_events[mix(&R->rng) % 5], bm = batch_ms[mix(&R->rng) % 4];
  if (group)
    snprintf(extra, sizeof extra,
             "assignment = group\nkafka.group.id = esr-crash\nkafka.session.timeout.ms = %d\n"
             "kafka.heartbeat.interval.ms = 1000\nbatch.max.events = %d\nbatch.max.ms = %d\n",
             4000 + (int)(mix(&R->rng) % 2001), be, bm);
  else
    snprintf(extra, sizeof extra, "assignment = static\npartitions = 0-3\nbatch.max.events = %d\nbatch.max.ms = %d\n",
             be, bm);
  assert_int_equal(0, esrt_write_worker_config(conf, sizeof conf, R->c->dir, "round", R->mock.bootstrap, "ledger",
                                               "ledger.dlq", R->state_dir, LEDGER_SO, "%s", extra));
  char name[32];
  snprintf(name, sizeof name, "worker-r%02d%s", round, group ? "-group" : "");
  esrt_proc w;
  int64_t before = consumed_total(R);
  int64_t started = esrt_now_ms();
  assert_int_equal(0, esrt_start_worker(&w, ESR_BIN, R->c->dir, name, conf));
  if (group) {
    /* Kill it only once it owns partitions and applies events: that is the rebalance path after a member died. */
    int64_t deadline = esrt_now_ms() + 90000;
    while (consumed_total(R) <= before) {
      esrt_producer_poll(R->prod, 10);
      if (!esrt_alive(&w) || esrt_now_ms() >= deadline) {
        fprintf(stderr, "round %d (group): no progress in %" PRId64 " ms (worker %s)\n", round,
                esrt_now_ms() - started, esrt_alive(&w) ? "running" : "exited");
        fail();
      }
    }
    int64_t took = esrt_now_ms() - started;
    if (took > R->worst_restart_ms) R->worst_restart_ms = took;
  }
  /* Mostly 20-400 ms; every 8th round lives 0.9-2.5 s, long enough for the worker's dead-letter producer (whose first
   * acknowledgement comes about 0.9 s after start) to deliver, so kills also fall between a delivery and the
   * deletion of its outbox row (a duplicate dead letter), not only before any delivery. */
  int delay = round % 8 == 7 ? 900 + (int)(mix(&R->rng) % 1601) : 20 + (int)(mix(&R->rng) % 381);
  int64_t t0 = esrt_now_ms(), kill_at = t0 + delay;
  size_t paced_done = 0;
  for (;;) {
    int64_t now = esrt_now_ms();
    if (now >= kill_at) break;
    /* event k of the paced half is due at t0 + k * delay / paced */
    while (paced_done < paced && R->produced < R->phase_a_end &&
           t0 + (int64_t)((double)paced_done * delay / (double)paced) <= now) {
      produce_one(R);
      paced_done++;
    }
    esrt_producer_poll(R->prod, 1);
  }
  /* Every other round aims: the kill waits (up to 500 ms) until a batch is open, so that many kills land between a
   * batch's first write and its COMMIT; the other rounds strike wherever they fall. */
  for (int64_t aim_until = esrt_now_ms() + 500; round % 2 && esrt_now_ms() < aim_until && !batch_was_open(R);) {
    if (paced_done < paced && R->produced < R->phase_a_end) {
      produce_one(R);
      paced_done++;
    }
    esrt_producer_poll(R->prod, 1);
  }
  if (!esrt_alive(&w)) {
    fprintf(stderr, "round %d: the worker exited on its own (code %d) before the kill\n", round, esrt_exit_code(&w));
    fail();
  }
  int64_t delivered = esrt_producer_delivered(R->prod);
  int code = esrt_kill9(&w);
  assert_int_equal(128 + SIGKILL, code);
  R->kills++;
  if (consumed_total(R) < delivered) R->busy_kills++;
  if (batch_was_open(R)) R->mid_batch_kills++;
  if (group) R->group_kills++;
  int64_t published = published_in_outboxes(R);
  if (published > 0) R->published_kills++;
  R->published_rows += published;
  while (paced_done++ < paced && R->produced < R->phase_a_end) produce_one(R); /* the rest arrives while it is dead */
}

static void crash_many_times(void **state) {
  run R;
  memset(&R, 0, sizeof R);
  R.c = *state;
  uint64_t seed = (uint64_t)env_long("ESR_CRASH_SEED", 0);
  if (!seed) seed = ((uint64_t)time(NULL) << 16) ^ (uint64_t)getpid();
  long events = env_long("ESR_CRASH_EVENTS", 40000);
  int rounds = (int)env_long("ESR_CRASH_KILLS", 56);
  if (rounds < 50) rounds = 50;
  int group_rounds = (int)env_long("ESR_CRASH_GROUP_ROUNDS", 3);
  if (group_rounds > rounds) group_rounds = rounds;
  printf("# seed %" PRIu64 " (rerun with ESR_CRASH_SEED=%" PRIu64 "), %ld events, %d kills (%d in group mode)\n",
         seed, seed, events, rounds, group_rounds);
  fflush(stdout);
  R.rng = seed;

  /* the mock keeps at most 5 MiB per partition: enough partitions for the outputs that none is dropped */
  const char *topics[] = {"ledger:4", "ledger.dlq:1", "ledger.out:4", NULL};
  assert_int_equal(0, esrt_mock_start(&R.mock, ESR_BIN, R.c->dir, 3, topics, 20000));
  esrt_gen_opts g = {.seed = seed, .events = (int)events, .accounts = 2000, .partitions = P, .bad_share = 0.05,
                     .whale = 1, .prefix_kinds = 1};
  R.ev = esrt_ledger_generate(&g, &R.n);
  assert_non_null(R.ev);
  R.phase_a_end = R.n / 2; /* half arrives during the kills, the other half before the final cold catch-up */
  R.prod = esrt_case_defer(R.c, free_producer, esrt_producer_new(R.mock.bootstrap));
  assert_non_null(R.prod);
  snprintf(R.state_dir, sizeof R.state_dir, "%s/state", R.c->dir);
  const char *outputs[] = {"ledger.dlq", "ledger.out", NULL};
  R.tail = esrt_case_defer(R.c, free_tail, esrt_tail_new(R.mock.bootstrap, outputs));
  assert_non_null(R.tail);

  /* The kill rounds: group rounds in a row in the middle, static ones around them. */
  int64_t t_kills = esrt_now_ms();
  int group_from = (rounds - group_rounds) / 2;
  for (int r = 0; r < rounds; r++) kill_round(&R, r, rounds, r >= group_from && r < group_from + group_rounds);
  assert_int_equal(0, esrt_producer_flush(R.prod, 60000));
  int64_t after_kills = consumed_total(&R);
  printf("# %d SIGKILLs in %.1f s (%d in group mode; slowest group hand-over %" PRId64 " ms); %d struck while "
         "delivered events were still unapplied, %d while a batch transaction was open; %" PRId64 " of %zu events "
         "consumed so far\n",
         R.kills, (double)(esrt_now_ms() - t_kills) / 1000.0, R.group_kills, R.worst_restart_ms, R.busy_kills,
         R.mid_batch_kills, after_kills, R.phase_a_end);
  printf("# %d kills struck while an outbox held rows already in Kafka (%" PRId64 " such rows in all): a restart "
         "without the read-back would publish them again\n",
         R.published_kills, R.published_rows);
  /* The premise of the whole suite: kills that land inside a batch, between its first write and its COMMIT. */
  assert_true(R.mid_batch_kills >= MIN_MID_BATCH_KILLS);
  /* ... and of publishing once: kills between a publication and the deletion of its rows. */
  assert_true(R.published_kills >= MIN_PUBLISHED_KILLS);

  /* The rest of the stream, then a cold restart that must catch up with everything. */
  while (R.produced < R.n) produce_one(&R);
  assert_int_equal(0, esrt_producer_flush(R.prod, 60000));
  int64_t from = consumed_total(&R);
  int64_t backlog = (int64_t)R.n - from;
  printf("# cold restart with %" PRId64 " of %zu events (%.0f%%) still to apply\n", backlog, R.n,
         100.0 * (double)backlog / (double)R.n);
  char conf[1024];
  assert_int_equal(0, esrt_write_worker_config(conf, sizeof conf, R.c->dir, "final", R.mock.bootstrap, "ledger",
                                               "ledger.dlq", R.state_dir, LEDGER_SO,
                                               "assignment = static\npartitions = 0-3\n"));
  esrt_proc w;
  int64_t t0 = esrt_now_ms(), t_applied = 0;
  assert_int_equal(0, esrt_start_worker(&w, ESR_BIN, R.c->dir, "worker-final", conf));
  int64_t deadline = t0 + 300000;
  while (consumed_total(&R) < (int64_t)R.n) {
    if (!esrt_alive(&w) || esrt_now_ms() >= deadline) {
      fprintf(stderr, "the final worker did not consume everything (%s)\n", esrt_alive(&w) ? "timeout" : "exited");
      fail();
    }
    esrt_sleep_ms(2);
  }
  t_applied = esrt_now_ms();
  rd_kafka_t *rk = esrt_case_defer(R.c, free_client, esrt_kafka_client_new(R.mock.bootstrap));
  assert_non_null(rk);
  const char *dirs[] = {R.state_dir};
  assert_int_equal(0, esrt_wait_caught_up(rk, "ledger", P, dirs, 1, 120000));
  int64_t t_drained = esrt_now_ms();
  double secs = (double)(t_applied - t0) / 1000.0;
  printf("# catch-up from a cold restart: %" PRId64 " events applied in %.3f s = %.0f events/s (process start "
         "included); dead-letter outbox drained after %.3f s\n",
         backlog, secs, (double)backlog / (secs > 0 ? secs : 0.001), (double)(t_drained - t0) / 1000.0);
  assert_int_equal(0, esrt_stop(&w, 30000));

  /* The verdict: the state and the dead letters against the oracle of the log as Kafka holds it. */
  esrt_records src = {0};
  esrt_oracle *o = esrt_ledger_oracle_from_log(R.mock.bootstrap, "ledger", P, R.ev, R.n, &src);
  assert_non_null(o);
  esrt_state st = {0};
  assert_int_equal(0, esrt_state_read(&st, R.state_dir, "ledger", P, 1));
  size_t n_acc;
  esrt_oracle_accounts(o, &n_acc);
  size_t state_diffs = esrt_compare_state(o, &st, stderr, 20);
  esrt_records dlq = {0};
  assert_int_equal(0, esrt_consume_all(R.mock.bootstrap, "ledger.dlq", &dlq, 60000));
  esrt_dlq_summary sum;
  size_t dlq_diffs = esrt_compare_dlq(o, "ledger", &src, &dlq, &sum, stderr, 20);
  assert_true(esrt_topic_whole(rk, "ledger.dlq") && esrt_topic_whole(rk, "ledger.out")); /* counts of whole topics */
  esrt_records out = {0};
  assert_int_equal(0, esrt_consume_all(R.mock.bootstrap, "ledger.out", &out, 60000));
  esrt_dlq_summary emitted;
  size_t emit_diffs = esrt_compare_emits(o, "ledger", &src, &out, &emitted, stderr, 20);
  printf("# verdict: %zu/%zu accounts, %d partitions (offsets, counts, log digests); dead letters: %zu expected, "
         "%zu distinct in the DLQ, %zu duplicates; emitted events: %zu distinct, %zu duplicates (read_committed); "
         "%zu state, %zu dead-letter and %zu emit differences\n",
         st.n_accounts, n_acc, P, esrt_oracle_dead_count(o), sum.distinct, sum.duplicates, emitted.distinct,
         emitted.duplicates, state_diffs, dlq_diffs, emit_diffs);
  assert_int_equal(0, state_diffs);
  assert_int_equal(0, dlq_diffs);
  assert_int_equal(0, emit_diffs);
  assert_int_equal(0, sum.duplicates);
  assert_int_equal(0, emitted.duplicates);
  assert_true(R.kills >= 50);
  esrt_records_free(&out);

  esrt_state_free(&st);
  esrt_records_free(&dlq);
  esrt_records_free(&src);
  esrt_oracle_free(o);
  esrt_events_free(R.ev, R.n);
  esrt_case_cleanup(R.c);
  assert_int_equal(0, esrt_mock_stop(&R.mock));
  R.c->passed = 1;
}

static int setup(void **state) {
  *state = esrt_case_new("crash");
  return *state ? 0 : -1;
}

static int teardown(void **state) {
  esrt_case_end(*state);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(crash_many_times, setup, teardown),
  };
  return cmocka_run_group_tests_name("crash", tests, NULL, NULL);
}
