/* test_moving.c — partitions that move between workers (label `integration`): three `esr run` workers in group mode,
 * each with a state directory of its own (as separate pods would have) and one shared remote checkpoint store
 * (file://), on an 8-partition topic that receives events the whole time. One worker is SIGKILLed several times
 * (restarted each time on its own directory), a fourth joins, then two leave (one by SIGTERM, one by SIGKILL).
 * In the end, all events produced and the remaining workers caught up:
 *   - for each partition the database of its current owner (from the logs: assigned, not released since) is at the
 *     high watermark and equals the oracle (accounts, position, counts, log digest); every other copy of it in any
 *     directory (stale, left by a former owner) equals the oracle's fold of the log up to that copy's own offset;
 *   - every dead letter the oracle expects is in the dead-letter topic, and every event the handler emitted (it emits
 *     one per applied event: tests/plugins/ledger_echo.c) is in its topic, each exactly once when read with
 *     isolation.level=read_committed, although partitions resumed from checkpoints older than what their previous
 *     owners had published (the premise, asserted: the workers' read-backs dropped rows already published);
 *   - every assignment of a partition that already had a checkpoint in the store resumed from a checkpoint or a live
 *     database, never by a replay from offset 0 (parsed from the `recovery:` log lines), and the worker that joins
 *     with an empty directory takes every such partition from the remote store.
 * Printed: the time from each SIGKILL to the dead worker's partitions being applied again elsewhere (observed in the
 * new owners' databases; the mock's session-timeout hand-over, ~2 x kafka.session.timeout.ms, dominates it), the
 * hand-over after a SIGTERM, remote checkpoint restore times, checkpoint write and upload times.
 *
 * With ESR_MOVING_STORE=s3 the shared store is an S3 bucket on the local S3-compatible server of tests/s3 instead
 * (ctest runs that variant as test_moving_s3, after the fixture that installs the server).
 *
 * Environment: ESR_MOVING_SEED (default: from the clock; always printed), ESR_MOVING_KILLS (default 3),
 * ESR_MOVING_STORE (file or s3; default file).
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "esrt_case.h"
#include "esrt_kafka.h"
#include "esrt_ledger.h"
#include "esrt_recovery.h"
#include "esrt_s3.h"
#include "esrt_state.h"

#define LEDGER_SO ESR_BUILD_DIR "/tests/plugins/ledger_echo.so" /* the ledger, emitting one event per applied one */
#define P 8
#define MAX_WORKERS 4
#define MAX_LOGS 32
#define SESSION_MS 4000
#define RATE 800 /* events per second while workers come and go */

static long env_long(const char *name, long def) {
  const char *v = getenv(name);
  return v && *v ? strtol(v, NULL, 10) : def;
}

static void free_producer(void *p) { esrt_producer_free(p); }
static void stop_s3(void *s) { esrt_s3_stop(s); }
static void free_client(void *rk) { rd_kafka_destroy(rk); }

static uint64_t mix(uint64_t *s) { /* splitmix64 */
  uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

typedef struct worker {
  char name[16];
  char dir[1100];
  char conf[1024];
  esrt_proc proc;
  int running;
  int starts;
} worker;

typedef struct log_ref {
  char path[1024];
  int worker;
} log_ref;

typedef struct run {
  esrt_case *c;
  esrt_mock mock;
  esrt_producer *prod;
  rd_kafka_t *rk;
  esrt_event *ev;
  size_t n, produced;
  int64_t t_rate; /* production is due at RATE per second since t_rate */
  size_t produced_at_rate;
  char store[1100];  /* file:// mode: the store's directory */
  char store_url[1200];
  int s3;
  esrt_s3 s3srv;
  worker w[MAX_WORKERS];
  log_ref logs[MAX_LOGS];
  int n_logs;
  uint64_t rng;
  /* figures */
  int64_t takeover_first[8], takeover_all[8];
  int n_takeovers;
  int64_t sigterm_handover;
} run;

/* ---- production ---- */

static void produce_one(run *R) {
  esrt_event *e = &R->ev[R->produced++];
  assert_int_equal(0, esrt_produce(R->prod, "ledger", e->partition, e->key, e->key_len, e->value, e->value_len,
                                   &e->offset));
}

/* Produces what is due at RATE events per second, and serves delivery reports. */
static void pump(run *R) {
  int64_t due = R->produced_at_rate + (esrt_now_ms() - R->t_rate) * RATE / 1000;
  while ((int64_t)R->produced < due && R->produced < R->n) produce_one(R);
  esrt_producer_poll(R->prod, 0);
}

/* Keeps producing for ms. */
static void pump_for(run *R, int ms) {
  int64_t until = esrt_now_ms() + ms;
  while (esrt_now_ms() < until) {
    pump(R);
    esrt_sleep_ms(5);
  }
}

/* ---- workers ---- */

static void start_worker(run *R, int i) {
  worker *w = &R->w[i];
  char name[32];
  snprintf(name, sizeof name, "%s-%d", w->name, ++w->starts);
  assert_int_equal(0, esrt_start_worker(&w->proc, ESR_BIN, R->c->dir, name, w->conf));
  w->running = 1;
  assert_true(R->n_logs < MAX_LOGS);
  memcpy(R->logs[R->n_logs].path, w->proc.err_path, sizeof R->logs[R->n_logs].path);
  R->logs[R->n_logs].worker = i;
  R->n_logs++;
}

/* The partitions worker i owns now, by its current log. */
static uint64_t owned(run *R, int i) {
  if (!R->w[i].running) return 0;
  esrt_wlog l = {0};
  assert_int_equal(0, esrt_wlog_read(&l, R->w[i].proc.err_path, "ledger"));
  uint64_t m = esrt_wlog_owned_mask(&l);
  esrt_wlog_free(&l);
  return m;
}

static int64_t position(const char *dir, int p) {
  esrt_part_state ps;
  assert_int_equal(0, esrt_read_position(dir, "ledger", p, &ps));
  return ps.present ? ps.next_offset : -1;
}

static void check_alive(run *R) {
  for (int i = 0; i < MAX_WORKERS; i++) {
    if (R->w[i].running && !esrt_alive(&R->w[i].proc)) {
      fprintf(stderr, "%s exited on its own (code %d)\n", R->w[i].proc.name, esrt_exit_code(&R->w[i].proc));
      fail();
    }
  }
}

/* Waits (producing meanwhile) until worker i owns a partition and has applied an event of one of them since. */
static void wait_working(run *R, int i, int timeout_ms) {
  int64_t deadline = esrt_now_ms() + timeout_ms;
  for (;;) {
    check_alive(R);
    uint64_t m = owned(R, i);
    if (m) {
      esrt_wlog l = {0};
      assert_int_equal(0, esrt_wlog_read(&l, R->w[i].proc.err_path, "ledger"));
      int progressed = 0;
      for (int p = 0; p < P && !progressed; p++) {
        if (!(m >> p & 1)) continue;
        const esrt_assignment *a = esrt_wlog_last_assignment(&l, p);
        progressed = a && position(R->w[i].dir, p) > a->offset;
      }
      esrt_wlog_free(&l);
      if (progressed) return;
    }
    if (esrt_now_ms() >= deadline) {
      fprintf(stderr, "%s: not applying anything after %d ms (owns 0x%" PRIx64 ")\n", R->w[i].proc.name, timeout_ms,
              m);
      fail();
    }
    pump_for(R, 50);
  }
}

/* Waits until the running workers' logs say every partition is owned by exactly one of them. */
static void wait_all_owned(run *R, int timeout_ms) {
  int64_t deadline = esrt_now_ms() + timeout_ms;
  for (;;) {
    check_alive(R);
    uint64_t all = 0, twice = 0;
    for (int i = 0; i < MAX_WORKERS; i++) {
      uint64_t m = owned(R, i);
      twice |= all & m;
      all |= m;
    }
    if (all == (1u << P) - 1 && !twice) return;
    if (esrt_now_ms() >= deadline) {
      fprintf(stderr, "partitions owned 0x%" PRIx64 " (twice: 0x%" PRIx64 ") after %d ms\n", all, twice, timeout_ms);
      fail();
    }
    pump_for(R, 50);
  }
}

/* Waits until every partition has a checkpoint in the remote store (an upload logged by some worker; in file://
 * mode also seen in the store's directory). */
static void wait_store_has_all(run *R, int timeout_ms) {
  int64_t deadline = esrt_now_ms() + timeout_ms;
  for (;;) {
    esrt_wlog all = {0};
    for (int k = 0; k < R->n_logs; k++) assert_int_equal(0, esrt_wlog_read(&all, R->logs[k].path, "ledger"));
    int have = 0;
    for (int p = 0; p < P; p++) {
      int64_t off;
      int uploaded = 0;
      for (size_t q = 0; q < all.n_checkpoints && !uploaded; q++)
        uploaded = all.checkpoints[q].partition == p && all.checkpoints[q].upload_ms >= 0;
      have += uploaded && (R->s3 || esrt_checkpoint_offsets(R->store, "ledger", p, &off, 1) == 1);
    }
    esrt_wlog_free(&all);
    if (have == P) return;
    if (esrt_now_ms() >= deadline) {
      fprintf(stderr, "only %d of %d partitions have a checkpoint in the store after %d ms\n", have, P, timeout_ms);
      fail();
    }
    check_alive(R);
    pump_for(R, 50);
  }
}

/* After worker `dead` stopped owning `mask` (with positions pos[] in its directory): waits until another running
 * worker's database of each of those partitions is past pos[p], i.e. the partition is applied again elsewhere.
 * Returns the time of the first and the last such partition, from t0. */
static void wait_taken_over(run *R, int dead, uint64_t mask, const int64_t *pos, int64_t t0, int64_t *first,
                            int64_t *last, int timeout_ms) {
  int64_t deadline = t0 + timeout_ms;
  int64_t at[P];
  for (int p = 0; p < P; p++) at[p] = mask >> p & 1 ? -1 : 0;
  *first = -1;
  for (;;) {
    int open = 0;
    for (int p = 0; p < P; p++) {
      if (at[p] >= 0) continue;
      for (int i = 0; i < MAX_WORKERS && at[p] < 0; i++) {
        if (i == dead || !R->w[i].running) continue;
        if (position(R->w[i].dir, p) > pos[p]) {
          at[p] = esrt_now_ms() - t0;
          if (*first < 0) *first = at[p];
        }
      }
      open += at[p] < 0;
    }
    if (!open) break;
    if (esrt_now_ms() >= deadline) {
      fprintf(stderr, "the partitions of %s (0x%" PRIx64 ") not applied elsewhere after %d ms:", R->w[dead].name, mask,
              timeout_ms);
      for (int p = 0; p < P; p++)
        if (at[p] < 0) fprintf(stderr, " [%d] needs > %" PRId64, p, pos[p]);
      fprintf(stderr, "\n");
      fail();
    }
    check_alive(R);
    pump_for(R, 10);
  }
  *last = 0;
  for (int p = 0; p < P; p++)
    if (at[p] > *last) *last = at[p];
}

/* SIGKILLs worker i once it works, after a random delay; returns after its partitions are applied elsewhere. */
static void kill_and_measure(run *R, int i, const char *why) {
  int delay;
  uint64_t mask;
  do { /* a rebalance during the delay may have taken its partitions away: then wait for it to work again */
    wait_working(R, i, 60000);
    delay = 200 + (int)(mix(&R->rng) % 1300);
    pump_for(R, delay);
    mask = owned(R, i);
  } while (!mask);
  int64_t t_kill = esrt_now_ms();
  assert_int_equal(128 + SIGKILL, esrt_kill9(&R->w[i].proc));
  R->w[i].running = 0;
  int64_t pos[P];
  for (int p = 0; p < P; p++) pos[p] = position(R->w[i].dir, p);
  int64_t first, last;
  wait_taken_over(R, i, mask, pos, t_kill, &first, &last, 60000);
  int n = 0;
  for (int p = 0; p < P; p++) n += (int)(mask >> p & 1);
  printf("# %s: SIGKILL of %s (%d partitions, mask 0x%02" PRIx64 ") after %d ms; applied again elsewhere after "
         "%" PRId64 " ms (first partition) / %" PRId64 " ms (all), kafka.session.timeout.ms %d\n",
         why, R->w[i].proc.name, n, mask, delay, first, last, SESSION_MS);
  fflush(stdout);
  if (R->n_takeovers < 8) {
    R->takeover_first[R->n_takeovers] = first;
    R->takeover_all[R->n_takeovers] = last;
    R->n_takeovers++;
  }
}

static void free_run(void *arg) {
  run *R = arg;
  esrt_events_free(R->ev, R->n);
  free(R);
}

/* ---- verdict helpers ---- */

/* The rows the workers' read-backs dropped as already published, summed over every log line saying so. */
static int64_t readback_dropped(run *R) {
  int64_t total = 0;
  for (int k = 0; k < R->n_logs; k++) {
    char *text = esrt_read_file(R->logs[k].path, NULL);
    if (!text) continue;
    static const char what[] = " outbox rows dropped as already published";
    for (char *at = strstr(text, what); at; at = strstr(at + 1, what)) {
      char *d = at;
      while (d > text && d[-1] >= '0' && d[-1] <= '9') d--;
      total += strtoll(d, NULL, 10);
    }
    free(text);
  }
  return total;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static void print_dist(const char *what, int64_t *v, int n) {
  if (!n) {
    printf("# %s: none\n", what);
    return;
  }
  qsort(v, (size_t)n, sizeof *v, cmp_i64);
  printf("# %s: n=%d min %" PRId64 " median %" PRId64 " max %" PRId64 " ms\n", what, n, v[0], v[n / 2], v[n - 1]);
}

/* Compares one partition's database in dir with an oracle (other partitions absent on both sides). A stale copy
 * left by a SIGKILL may hold outbox rows (dead letters its next owner publishes again): they are not counted. */
static size_t compare_one(esrt_oracle *o, const char *dir, int p, int stale) {
  esrt_state st = {0};
  assert_int_equal(0, esrt_state_read_one(&st, dir, "ledger", P, p));
  if (stale) st.parts[p].outbox = 0;
  size_t diffs = esrt_compare_state(o, &st, stderr, 10);
  esrt_state_free(&st);
  return diffs;
}

static void moving_partitions(void **state) {
  run *R = calloc(1, sizeof *R);
  assert_non_null(R);
  R->c = *state;
  esrt_case_defer(R->c, free_run, R); /* freed by the case's cleanup, after the handles registered below */
  uint64_t seed = (uint64_t)env_long("ESR_MOVING_SEED", 0);
  if (!seed) seed = ((uint64_t)time(NULL) << 16) ^ (uint64_t)getpid();
  int kills = (int)env_long("ESR_MOVING_KILLS", 3);
  printf("# seed %" PRIu64 " (rerun with ESR_MOVING_SEED=%" PRIu64 "), %d kills of one worker, %d partitions, "
         "kafka.session.timeout.ms %d\n",
         seed, seed, kills, P, SESSION_MS);
  fflush(stdout);
  R->rng = seed;

  /* the mock keeps at most 5 MiB per partition: enough partitions for the emitted events that none is dropped */
  const char *topics[] = {"ledger:8", "ledger.dlq:1", "ledger.out:16", NULL};
  assert_int_equal(0, esrt_mock_start(&R->mock, ESR_BIN, R->c->dir, 3, topics, 20000));
  esrt_gen_opts g = {.seed = seed, .events = 150000, .accounts = 4000, .partitions = P, .bad_share = 0.03,
                     .prefix_kinds = 1};
  R->ev = esrt_ledger_generate(&g, &R->n);
  assert_non_null(R->ev);
  R->prod = esrt_case_defer(R->c, free_producer, esrt_producer_new(R->mock.bootstrap));
  assert_non_null(R->prod);
  R->rk = esrt_case_defer(R->c, free_client, esrt_kafka_client_new(R->mock.bootstrap));
  assert_non_null(R->rk);
  const char *kind = getenv("ESR_MOVING_STORE");
  R->s3 = kind && strcmp(kind, "s3") == 0;
  char s3_keys[512] = "";
  if (R->s3) {
    assert_int_equal(0, esrt_s3_start(&R->s3srv, ESR_NODE, ESR_S3_SERVER_DIR, R->c->dir, 60000));
    esrt_case_defer(R->c, stop_s3, &R->s3srv);
    assert_int_equal(0, esrt_s3_make_bucket(&R->s3srv, "esr-moving"));
    /* the workers inherit the credentials */
    setenv("AWS_ACCESS_KEY_ID", ESRT_S3_KEY_ID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", ESRT_S3_SECRET, 1);
    snprintf(R->store_url, sizeof R->store_url, "s3://esr-moving/checkpoints");
    snprintf(s3_keys, sizeof s3_keys, "checkpoint.s3.endpoint = %s\ncheckpoint.s3.region = %s\n",
             R->s3srv.endpoint, ESRT_S3_REGION);
  } else {
    snprintf(R->store, sizeof R->store, "%s/store", R->c->dir);
    assert_int_equal(0, mkdir(R->store, 0755));
    snprintf(R->store_url, sizeof R->store_url, "file://%s", R->store);
  }
  printf("# shared checkpoint store: %s\n", R->store_url);
  for (int i = 0; i < MAX_WORKERS; i++) {
    worker *w = &R->w[i];
    snprintf(w->name, sizeof w->name, "w%d", i);
    snprintf(w->dir, sizeof w->dir, "%s/state-%d", R->c->dir, i);
    assert_int_equal(0, esrt_write_worker_config(w->conf, sizeof w->conf, R->c->dir, w->name, R->mock.bootstrap,
                                                 "ledger", "ledger.dlq", w->dir, LEDGER_SO,
                                                 "assignment = group\nkafka.group.id = esr-moving\n"
                                                 "kafka.session.timeout.ms = %d\nkafka.heartbeat.interval.ms = 1000\n"
                                                 "apply.threads = 2\nbatch.max.events = 100\nbatch.max.ms = 20\n"
                                                 "checkpoint.interval.events = 300\ncheckpoint.interval.ms = 1000\n"
                                                 "checkpoint.keep = 3\ncheckpoint.store = %s\n%s",
                                                 SESSION_MS, R->store_url, s3_keys));
  }

  /* ---- three workers, events flowing ---- */
  int64_t t_start = esrt_now_ms();
  R->t_rate = t_start;
  for (int i = 0; i < 3; i++) start_worker(R, i);
  wait_all_owned(R, 60000);
  for (int i = 0; i < 3; i++) wait_working(R, i, 60000);
  wait_store_has_all(R, 30000);
  printf("# three workers own all %d partitions and every partition has a checkpoint in the store after %" PRId64
         " ms\n",
         P, esrt_now_ms() - t_start);

  /* ---- kill -9 one worker repeatedly, restarting it on its own state directory ---- */
  for (int k = 0; k < kills; k++) {
    char why[32];
    snprintf(why, sizeof why, "kill %d/%d", k + 1, kills);
    kill_and_measure(R, 1, why);
    start_worker(R, 1);
    wait_working(R, 1, 60000);
    wait_all_owned(R, 60000);
  }

  /* ---- a fourth worker joins (empty directory) ---- */
  int64_t t_join = esrt_now_ms();
  start_worker(R, 3);
  wait_working(R, 3, 60000);
  wait_all_owned(R, 60000);
  printf("# w3 joined: applying its first partitions %" PRId64 " ms after its start\n", esrt_now_ms() - t_join);

  /* ---- two leave: SIGTERM one, SIGKILL another ---- */
  wait_working(R, 0, 60000);
  uint64_t m0 = owned(R, 0);
  int64_t t_term = esrt_now_ms();
  assert_int_equal(0, esrt_stop(&R->w[0].proc, 60000));
  R->w[0].running = 0;
  assert_true(esrt_file_contains(R->w[0].proc.err_path, "stopped cleanly"));
  int64_t pos0[P], first, last;
  for (int p = 0; p < P; p++) pos0[p] = position(R->w[0].dir, p);
  wait_taken_over(R, 0, m0, pos0, t_term, &first, &last, 60000);
  R->sigterm_handover = last;
  printf("# SIGTERM of w0 (mask 0x%02" PRIx64 "): its partitions applied again elsewhere after %" PRId64
         " ms (first) / %" PRId64 " ms (all), stop included\n",
         m0, first, last);
  kill_and_measure(R, 2, "removal");
  wait_all_owned(R, 60000);

  /* ---- the rest: a final burst that reaches every partition, then catch-up ---- */
  size_t final_to = R->produced + 4000 < R->n ? R->produced + 4000 : R->n;
  while (R->produced < final_to) produce_one(R);
  assert_int_equal(0, esrt_producer_flush(R->prod, 60000));
  printf("# %zu events produced over %.1f s\n", R->produced, (double)(esrt_now_ms() - t_start) / 1000.0);
  const char *live_dirs[MAX_WORKERS];
  int n_live = 0;
  for (int i = 0; i < MAX_WORKERS; i++)
    if (R->w[i].running) live_dirs[n_live++] = R->w[i].dir;
  assert_int_equal(2, n_live);
  assert_int_equal(0, esrt_wait_caught_up_any(R->rk, "ledger", P, live_dirs, (size_t)n_live, 120000));
  check_alive(R);

  /* The current owner of each partition, by the logs, while they still run. */
  int owner[P];
  for (int p = 0; p < P; p++) owner[p] = -1;
  for (int i = 0; i < MAX_WORKERS; i++) {
    uint64_t m = owned(R, i);
    for (int p = 0; p < P; p++)
      if (m >> p & 1) {
        assert_int_equal(-1, owner[p]); /* one owner each */
        owner[p] = i;
      }
  }
  for (int p = 0; p < P; p++) assert_true(owner[p] >= 0);
  for (int i = 0; i < MAX_WORKERS; i++)
    if (R->w[i].running) {
      assert_int_equal(0, esrt_stop(&R->w[i].proc, 60000));
      R->w[i].running = 0;
    }

  /* ---- the verdict: states ---- */
  esrt_records src = {0};
  esrt_oracle *o = esrt_ledger_oracle_from_log(R->mock.bootstrap, "ledger", P, R->ev, R->produced, &src);
  assert_non_null(o);
  size_t diffs = 0;
  int stale = 0;
  for (int p = 0; p < P; p++) {
    int64_t hi, lo;
    assert_int_equal(0, esrt_watermarks(R->rk, "ledger", p, &lo, &hi));
    assert_int_equal(hi, position(R->w[owner[p]].dir, p));
    esrt_oracle *po = esrt_oracle_prefix(&src, P, p, hi);
    assert_non_null(po);
    diffs += compare_one(po, R->w[owner[p]].dir, p, 0);
    esrt_oracle_free(po);
    /* the full oracle agrees on this partition too (the prefix oracle above is the same fold) */
    assert_int_equal(esrt_oracle_part_of(o, p)->next_offset, hi);
    for (int i = 0; i < MAX_WORKERS; i++) {
      if (i == owner[p]) continue;
      int64_t at = position(R->w[i].dir, p);
      if (at < 0) continue;
      stale++;
      esrt_oracle *so = esrt_oracle_prefix(&src, P, p, at);
      assert_non_null(so);
      size_t d = compare_one(so, R->w[i].dir, p, 1);
      if (d) fprintf(stderr, "stale copy of ledger[%d] in %s at offset %" PRId64 ": %zu differences\n", p,
                     R->w[i].name, at, d);
      diffs += d;
      esrt_oracle_free(so);
    }
  }
  int olds = 0;
  for (int i = 0; i < MAX_WORKERS; i++)
    for (int p = 0; p < P; p++) {
      char prefix[64];
      snprintf(prefix, sizeof prefix, "ledger-%d.db.old-", p);
      int k = esrt_dir_count_prefix(R->w[i].dir, prefix, NULL, 0);
      olds += k > 0 ? k : 0;
    }
  size_t n_acc;
  esrt_oracle_accounts(o, &n_acc);
  printf("# %d live databases replaced by a newer checkpoint were kept aside as .old- files\n", olds);
  printf("# state: %d partitions at their high watermarks in their owners' directories (owners:", P);
  for (int p = 0; p < P; p++) printf(" %d->w%d", p, owner[p]);
  printf("), %zu accounts in the oracle; %d stale copies in former owners' directories each equal to the log's fold "
         "up to its own offset; %zu differences\n",
         n_acc, stale, diffs);
  assert_int_equal(0, diffs);

  /* ---- outputs: every expected dead letter and emitted event, each once (read_committed) ---- */
  assert_true(esrt_topic_whole(R->rk, "ledger.dlq") && esrt_topic_whole(R->rk, "ledger.out"));
  esrt_records dlq = {0}, out = {0};
  assert_int_equal(0, esrt_consume_all(R->mock.bootstrap, "ledger.dlq", &dlq, 60000));
  assert_int_equal(0, esrt_consume_all(R->mock.bootstrap, "ledger.out", &out, 60000));
  esrt_dlq_summary sum, emitted;
  size_t dlq_diffs = esrt_compare_dlq(o, "ledger", &src, &dlq, &sum, stderr, 20);
  size_t emit_diffs = esrt_compare_emits(o, "ledger", &src, &out, &emitted, stderr, 20);
  int64_t dropped = readback_dropped(R);
  printf("# dead letters: %zu expected, %zu messages, %zu distinct, %zu duplicates, %zu differences; emitted events: "
         "%zu messages, %zu distinct, %zu duplicates, %zu differences; the read-backs dropped %" PRId64 " rows already "
         "published\n",
         esrt_oracle_dead_count(o), sum.messages, sum.distinct, sum.duplicates, dlq_diffs, emitted.messages,
         emitted.distinct, emitted.duplicates, emit_diffs, dropped);
  assert_int_equal(0, dlq_diffs);
  assert_int_equal(esrt_oracle_dead_count(o), sum.distinct);
  assert_int_equal(0, emit_diffs);
  assert_int_equal(0, sum.duplicates);
  assert_int_equal(0, emitted.duplicates);
  assert_true(dropped > 0); /* the premise: without the read-back, these rows were published twice */
  esrt_records_free(&dlq);
  esrt_records_free(&out);

  /* ---- the ladder steps of every assignment, from every log ---- */
  esrt_wlog all = {0};
  esrt_wlog per[MAX_LOGS];
  memset(per, 0, sizeof per);
  for (int k = 0; k < R->n_logs; k++) {
    assert_int_equal(0, esrt_wlog_read(&all, R->logs[k].path, "ledger"));
    assert_int_equal(0, esrt_wlog_read(&per[k], R->logs[k].path, "ledger"));
  }
  int by_step[5] = {0}, moved = 0, first_time = 0, bad = 0;
  int64_t remote_ms[256], write_ms[4096], upload_ms[4096];
  int n_remote = 0, n_write = 0, n_upload = 0;
  for (int k = 0; k < R->n_logs; k++) {
    for (size_t j = 0; j < per[k].n_assigned; j++) {
      const esrt_assignment *a = &per[k].assigned[j];
      assert_true(a->ts_ms > 0 && a->opened_ms >= 0);
      int64_t began = a->ts_ms - a->opened_ms;
      /* a checkpoint of this partition was in the store before this ladder began */
      int checkpointed = 0;
      for (size_t q = 0; q < all.n_checkpoints && !checkpointed; q++)
        checkpointed = all.checkpoints[q].partition == a->partition && all.checkpoints[q].upload_ms >= 0 &&
                       all.checkpoints[q].ts_ms < began;
      int s = !strcmp(a->step, "live database")       ? 0
              : !strcmp(a->step, "local checkpoint")  ? 1
              : !strcmp(a->step, "remote checkpoint") ? 2
              : !strcmp(a->step, "log replay from offset 0") ? 3
                                                             : 4;
      assert_true(s < 4);
      if (checkpointed) {
        moved++;
        by_step[s]++;
        if (s == 3) {
          fprintf(stderr, "%s: ledger[%d] was replayed from offset 0 although the store had a checkpoint of it\n",
                  R->logs[k].path, (int)a->partition);
          bad++;
        }
        /* the worker that joined with an empty directory can only have taken it from the store, unless it owned the
         * partition before in this run (a partition may come back to it, its database still there) */
        int had = 0;
        for (int k2 = 0; k2 <= k && !had; k2++) {
          if (R->logs[k2].worker != 3) continue;
          for (size_t j2 = 0; j2 < per[k2].n_assigned && !had; j2++)
            had = per[k2].assigned[j2].partition == a->partition && (k2 < k || j2 < j);
        }
        if (R->logs[k].worker == 3 && s != 2 && !had) {
          fprintf(stderr, "%s: ledger[%d] recovered by '%s' on a worker that never had it\n", R->logs[k].path,
                  (int)a->partition, a->step);
          bad++;
        }
      } else {
        first_time++;
        if (s == 2) { /* a checkpoint no upload line announced: the log reading above would be wrong */
          fprintf(stderr, "%s: ledger[%d] restored from the store before any upload of it was logged\n",
                  R->logs[k].path, (int)a->partition);
          bad++;
        }
      }
      if (s == 2 && n_remote < 256) remote_ms[n_remote++] = a->recovery_ms;
    }
  }
  for (size_t q = 0; q < all.n_checkpoints; q++) {
    if (n_write < 4096) write_ms[n_write++] = all.checkpoints[q].write_ms;
    if (all.checkpoints[q].upload_ms >= 0 && n_upload < 4096) upload_ms[n_upload++] = all.checkpoints[q].upload_ms;
  }
  printf("# assignments: %d first-time (nothing in the store yet), %d of partitions already checkpointed: %d live "
         "database, %d local checkpoint, %d remote checkpoint, %d log replay from offset 0\n",
         first_time, moved, by_step[0], by_step[1], by_step[2], by_step[3]);
  print_dist("remote checkpoint restore (recovery: remote checkpoint in X ms)", remote_ms, n_remote);
  print_dist("checkpoint written", write_ms, n_write);
  char what[128];
  snprintf(what, sizeof what, "checkpoint uploaded to the %s store", R->s3 ? "S3" : "file://");
  print_dist(what, upload_ms, n_upload);
  int64_t tf[8], ta[8];
  memcpy(tf, R->takeover_first, sizeof tf);
  memcpy(ta, R->takeover_all, sizeof ta);
  print_dist("SIGKILL -> first partition of the dead worker applied elsewhere", tf, R->n_takeovers);
  print_dist("SIGKILL -> all partitions of the dead worker applied elsewhere", ta, R->n_takeovers);
  printf("# (kafka.session.timeout.ms %d: the mock hands a dead member's partitions over after ~2x that); SIGTERM "
         "hand-over %" PRId64 " ms\n",
         SESSION_MS, R->sigterm_handover);
  for (int k = 0; k < R->n_logs; k++) esrt_wlog_free(&per[k]);
  esrt_wlog_free(&all);
  assert_int_equal(0, bad);
  assert_true(moved >= kills + 2); /* every kill, the join and the leaves moved checkpointed partitions */
  assert_true(by_step[2] >= 2);    /* at least the joiner's and a leaver's partitions came from the store */

  esrt_oracle_free(o);
  esrt_records_free(&src);
  esrt_mock mock = R->mock;
  esrt_case *c = R->c;
  esrt_case_cleanup(c); /* frees R */
  assert_int_equal(0, esrt_mock_stop(&mock));
  c->passed = 1;
}

static int setup(void **state) {
  *state = esrt_case_new("moving");
  return *state ? 0 : -1;
}

static int teardown(void **state) {
  esrt_case_end(*state);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(moving_partitions, setup, teardown),
  };
  return cmocka_run_group_tests_name("moving", tests, NULL, NULL);
}
