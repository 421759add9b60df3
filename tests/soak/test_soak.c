/* test_soak.c — two workers under a paced stream while real faults strike (label `soak`; the long setting `slow`).
 *
 * Two `esr run` workers in group mode (ledger handler, 4 partitions, a shared file:// checkpoint store, /metrics on
 * a port each) apply a paced stream of ledger events with bad ones mixed in, while the test, one episode at a time:
 *   (a) broker-stop   stops the mock cluster process (SIGSTOP) and resumes it (SIGCONT);
 *   (b) disk-full     fills worker 0's state directory's file system (a size-limited tmpfs mounted by the test; it
 *                     needs root) and frees it again;
 *   (c) rolling       restarts the workers with SIGTERM one at a time, as a rollout would;
 *   (d) paused-worker stops worker 1 (SIGSTOP) past the session timeout so that its partitions move, then resumes it;
 *   (e) corrupt-store corrupts the newest checkpoint of every partition in the store, and restarts both workers on
 *                     empty state directories (lost volumes), so that the ladder must meet the damaged checkpoints.
 * While each episode lasts the test asserts what /metrics and /readyz show (premises included: the broker really
 * stopped, the disk really filled, the partitions really moved, the damaged checkpoints were really met). After each
 * episode, with no help: both workers alive and ready, every partition caught up, every balance, position, count and
 * log digest equal to the independent oracle (nothing lost or applied twice); at the end the dead-letter topic too.
 * It prints, per episode, what the worker did and how long it took to recover (deploy/README.md's table).
 *
 * Settings: short by default (a few thousand events, 10 s broker stop, well under 3 minutes); ESR_SOAK_LONG=1 for
 * the long one (the 30 s broker stop of the issue, longer faults, a faster stream; ctest: soak_long, label slow).
 * ESR_SOAK_SEED fixes the stream (default: from the clock, printed).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "esrt_case.h"
#include "esrt_http.h"
#include "esrt_kafka.h"
#include "esrt_ledger.h"
#include "esrt_state.h"

#define LEDGER_SO ESR_BUILD_DIR "/handlers/ledger.so"
#define P 4
#define SESSION_MS 6000
#define RECOVER_MS 90000 /* the longest any recovery may take before the test fails */

typedef struct settings {
  int rate;          /* events per second */
  int broker_stop_s; /* (a) */
  int disk_full_s;   /* (b): how long the disk stays full once the worker has felt it */
  int long_run;
} settings;

typedef struct wk {
  char name[8];
  char dir[1100];
  char conf[1024];
  esrt_proc proc;
  int port;
  int starts;
} wk;

typedef struct figure {
  const char *episode;
  char did[300];
  int64_t recover_ms;
} figure;

typedef struct run {
  esrt_case *c;
  settings s;
  esrt_mock mock;
  esrt_producer *prod;
  rd_kafka_t *rk;
  esrt_event *ev;
  size_t n, produced;
  int64_t t_rate;
  size_t produced_at_rate;
  int paused_production;
  char store[1100];
  wk w[2];
  int mounted;
  figure figs[8];
  int n_figs;
} run;

static void free_producer(void *p) { esrt_producer_free(p); }
static void free_client(void *rk) { rd_kafka_destroy(rk); }
static void unmount(void *dir) { umount2(dir, MNT_DETACH); }

/* ---- production: RATE events per second, in the background of every wait ---- */

static void pump(run *R) {
  if (!R->paused_production) {
    int64_t due = (int64_t)R->produced_at_rate + (esrt_now_ms() - R->t_rate) * R->s.rate / 1000;
    while ((int64_t)R->produced < due && R->produced < R->n) {
      esrt_event *e = &R->ev[R->produced++];
      assert_int_equal(0, esrt_produce(R->prod, "ledger", e->partition, e->key, e->key_len, e->value, e->value_len,
                                       &e->offset));
    }
  }
  esrt_producer_poll(R->prod, 0);
}

static void pump_for(run *R, int ms) {
  int64_t until = esrt_now_ms() + ms;
  do {
    pump(R);
    esrt_sleep_ms(5);
  } while (esrt_now_ms() < until);
}

/* ---- workers ---- */

static void start(run *R, int i) {
  wk *w = &R->w[i];
  char name[32];
  snprintf(name, sizeof name, "%s-%d", w->name, ++w->starts);
  assert_int_equal(0, esrt_start_worker(&w->proc, ESR_BIN, R->c->dir, name, w->conf));
  w->port = esrt_http_worker_port(w->proc.err_path, 20000);
  assert_true(w->port > 0);
}

static void check_alive(run *R) {
  for (int i = 0; i < 2; i++)
    if (!esrt_alive(&R->w[i].proc))
      fail_msg("%s exited on its own with code %d", R->w[i].proc.name, esrt_exit_code(&R->w[i].proc));
}

static long get(run *R, int i, const char *path, char **body) {
  char url[128];
  long status = 0;
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", R->w[i].port, path);
  if (body) *body = NULL;
  if (esrt_http_get(url, 3000, &status, body) != 0) return -1;
  return status;
}

static double metric(run *R, int i, const char *name, const char *filter) {
  char *text = NULL;
  if (get(R, i, "/metrics", &text) != 200) {
    free(text);
    return -1;
  }
  double v = esrt_prom_sum(text, name, filter);
  free(text);
  return v;
}

/* Both workers alive and ready, every partition's newest database at the high watermark with an empty outbox. */
static int settled(run *R) {
  check_alive(R);
  for (int i = 0; i < 2; i++)
    if (get(R, i, "/readyz", NULL) != 200) return 0;
  for (int p = 0; p < P; p++) {
    int64_t lo, hi;
    if (esrt_watermarks(R->rk, "ledger", p, &lo, &hi) != 0) return 0;
    esrt_part_state best = {0};
    for (int i = 0; i < 2; i++) {
      esrt_part_state ps;
      if (esrt_read_position(R->w[i].dir, "ledger", p, &ps) == 0 && ps.present && ps.next_offset > best.next_offset)
        best = ps;
    }
    if (hi > 0 && (best.next_offset != hi || best.outbox != 0)) return 0;
  }
  return 1;
}

/* Waits (producing) until settled; returns how long it took. */
static int64_t wait_settled(run *R, const char *what) {
  int64_t t0 = esrt_now_ms();
  while (!settled(R)) {
    if (esrt_now_ms() - t0 > RECOVER_MS) fail_msg("%s: not recovered after %d ms", what, RECOVER_MS);
    pump_for(R, 100);
  }
  return esrt_now_ms() - t0;
}

/* Stops production, waits until everything produced is delivered and applied, and compares every partition's newest
 * database with the oracle (balances, positions, counts, log digest); with dlq, the dead-letter topic too. */
static void verify(run *R, const char *after, int dlq) {
  R->paused_production = 1;
  assert_int_equal(0, esrt_producer_flush(R->prod, 60000));
  wait_settled(R, after);
  esrt_records src = {0};
  esrt_oracle *o = esrt_ledger_oracle_from_log(R->mock.bootstrap, "ledger", P, R->ev, R->produced, &src);
  assert_non_null(o);
  esrt_state st = {0};
  st.partitions = 0;
  for (int p = 0; p < P; p++) {
    int best = -1;
    int64_t off = -1;
    for (int i = 0; i < 2; i++) {
      esrt_part_state ps;
      if (esrt_read_position(R->w[i].dir, "ledger", p, &ps) == 0 && ps.present && ps.next_offset > off) {
        off = ps.next_offset;
        best = i;
      }
    }
    assert_true(best >= 0);
    assert_int_equal(0, esrt_state_read_one(&st, R->w[best].dir, "ledger", P, p));
  }
  size_t diffs = esrt_compare_state(o, &st, stderr, 10);
  esrt_state_free(&st);
  if (diffs) fail_msg("after %s: %zu differences from the oracle", after, diffs);
  if (dlq) {
    esrt_records dl = {0};
    assert_int_equal(0, esrt_consume_all(R->mock.bootstrap, "ledger.dlq", &dl, 60000));
    esrt_dlq_summary sum;
    size_t d = esrt_compare_dlq(o, "ledger", &src, &dl, &sum, stderr, 10);
    printf("soak: dead-letter topic: %zu messages, %zu distinct sources, %zu duplicates\n", sum.messages, sum.distinct,
           sum.duplicates);
    esrt_records_free(&dl);
    if (d) fail_msg("the dead-letter topic differs from the oracle in %zu places", d);
  }
  printf("soak: after %s: %zu events, state and positions equal the oracle\n", after, R->produced);
  esrt_records_free(&src);
  esrt_oracle_free(o);
  R->paused_production = 0;
  R->t_rate = esrt_now_ms();
  R->produced_at_rate = R->produced;
}

static figure *fig(run *R, const char *episode) {
  figure *f = &R->figs[R->n_figs++];
  f->episode = episode;
  return f;
}

/* ---- episodes ---- */

static void broker_stop(run *R) {
  double before = metric(R, 0, "esr_events_applied_total", NULL) + metric(R, 1, "esr_events_applied_total", NULL);
  assert_int_equal(0, esrt_signal(&R->mock.proc, SIGSTOP));
  int64_t t0 = esrt_now_ms(), until = t0 + R->s.broker_stop_s * 1000;
  int64_t delivered = esrt_producer_delivered(R->prod);
  double first = -1, last = -1;
  int not_ready = 0;
  while (esrt_now_ms() < until) {
    pump_for(R, 500);
    check_alive(R);
    for (int i = 0; i < 2; i++) /* a broker outage never gets a pod killed */
      if (get(R, i, "/healthz", NULL) != 200) fail_msg("%s: /healthz failed while the broker was stopped", R->w[i].name);
    not_ready += get(R, 0, "/readyz", NULL) != 200;
    double a = metric(R, 0, "esr_events_applied_total", NULL) + metric(R, 1, "esr_events_applied_total", NULL);
    if (esrt_now_ms() - t0 > 2000) { /* what was in flight before the stop has landed by then */
      if (first < 0) first = a;
      last = a;
    }
  }
  /* Premises: nothing was delivered to the stopped broker, nothing applied while it was stopped. */
  assert_int_equal(delivered, esrt_producer_delivered(R->prod));
  assert_true(first >= before && last == first);
  assert_int_equal(0, esrt_signal(&R->mock.proc, SIGCONT));
  int64_t rec = wait_settled(R, "broker stop");
  double reb = metric(R, 0, "esr_rebalances_total", NULL);
  figure *f = fig(R, "(a) broker stopped (SIGSTOP of the mock cluster)");
  snprintf(f->did, sizeof f->did,
           "for %d s: /healthz 200 throughout, applies nothing (esr_events_applied_total flat), /readyz %s; "
           "after: resumes at its committed offsets (worker 0: %.0f rebalances so far)",
           R->s.broker_stop_s, not_ready ? "503 at times (the group session expired)" : "200", reb);
  f->recover_ms = rec;
  verify(R, "broker stop", 0);
}

static void disk_full(run *R) {
  if (!R->mounted) {
    printf("soak: (b) disk-full skipped: the test is not root and cannot mount a size-limited tmpfs\n");
    return;
  }
  char filler[1200];
  snprintf(filler, sizeof filler, "%s/filler", R->w[0].dir);
  int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  static char chunk[1 << 16];
  memset(chunk, 0xab, sizeof chunk);
  while (write(fd, chunk, sizeof chunk) > 0) {
  }
  assert_int_equal(ENOSPC, errno); /* premise: the file system is full */
  close(fd);
  int64_t t0 = esrt_now_ms();
  double full = 0;
  int ready = 200;
  char *body = NULL;
  while (full < 1 || ready == 200) { /* the worker felt it and says so */
    if (esrt_now_ms() - t0 > 60000) fail_msg("disk full: no rolled-back batch or /readyz still 200 after 60 s");
    pump_for(R, 200);
    check_alive(R);
    full = metric(R, 0, "esr_batches_rolled_back_total", "cause=\"full\"");
    free(body);
    ready = get(R, 0, "/readyz", &body);
  }
  int64_t felt = esrt_now_ms() - t0;
  assert_non_null(strstr(body, "paused"));
  free(body);
  assert_int_equal(200, get(R, 0, "/healthz", NULL));
  pump_for(R, R->s.disk_full_s * 1000);
  double rolled = metric(R, 0, "esr_batches_rolled_back_total", "cause=\"full\"");
  double cpfail = metric(R, 0, "esr_checkpoint_failures_total", NULL);
  assert_int_equal(0, unlink(filler));
  int64_t rec = wait_settled(R, "disk full");
  figure *f = fig(R, "(b) state volume full (tmpfs filled)");
  snprintf(f->did, sizeof f->did,
           "felt within %.1f s: batches rolled back (esr_batches_rolled_back_total{cause=\"full\"} %.0f, retried with "
           "backoff up to 30 s), partitions paused, /readyz 503, /healthz 200, %.0f checkpoint failures; nothing "
           "dead-lettered; after freeing: resumes by itself",
           felt / 1000.0, rolled, cpfail);
  f->recover_ms = rec;
  verify(R, "disk full", 0);
}

static void rolling(run *R) {
  int64_t worst = 0;
  char did[200] = "";
  for (int i = 0; i < 2; i++) {
    int64_t t0 = esrt_now_ms();
    assert_int_equal(0, esrt_signal(&R->w[i].proc, SIGTERM));
    while (esrt_wait(&R->w[i].proc, 0) != 0) {
      if (esrt_now_ms() - t0 > 60000) fail_msg("%s: no exit 60 s after SIGTERM", R->w[i].name);
      pump_for(R, 20);
    }
    int64_t drain = esrt_now_ms() - t0;
    assert_int_equal(0, esrt_exit_code(&R->w[i].proc));
    start(R, i);
    int64_t t1 = esrt_now_ms();
    int64_t rec = wait_settled(R, "rolling restart");
    rec += esrt_now_ms() - t1 - rec; /* from the restart */
    if (rec + drain > worst) worst = rec + drain;
    size_t l = strlen(did);
    snprintf(did + l, sizeof did - l, "%s%s drained in %.1f s", i ? ", " : "", R->w[i].name, drain / 1000.0);
  }
  double live = metric(R, 0, "esr_recovery_total", "step=\"live\"") + metric(R, 1, "esr_recovery_total", "step=\"live\"");
  assert_true(live >= 1); /* premise: the restarted workers resumed from their own databases */
  figure *f = fig(R, "(c) rolling restart (SIGTERM, one worker at a time)");
  snprintf(f->did, sizeof f->did,
           "commits, checkpoints what it releases, exits 0 (%s); the other worker takes its partitions meanwhile; "
           "the restarted one resumes from its live databases (esr_recovery_total{step=\"live\"})",
           did);
  f->recover_ms = worst;
  verify(R, "rolling restart", 0);
}

static int running_partitions(run *R, int i) {
  double v = metric(R, i, "esr_partition_state", "state=\"running\"");
  return v < 0 ? -1 : (int)v;
}

static void paused_worker(run *R) {
  double reb0 = metric(R, 0, "esr_rebalances_total", NULL);
  assert_true(running_partitions(R, 1) >= 1); /* premise: worker 1 owns partitions to lose */
  assert_int_equal(0, esrt_signal(&R->w[1].proc, SIGSTOP));
  int64_t t0 = esrt_now_ms();
  while (running_partitions(R, 0) != P) { /* its partitions move to worker 0 */
    if (esrt_now_ms() - t0 > 60000) fail_msg("worker 1's partitions did not move to worker 0 within 60 s");
    pump_for(R, 200);
  }
  int64_t moved = esrt_now_ms() - t0;
  pump_for(R, 2000);
  assert_true(metric(R, 0, "esr_rebalances_total", NULL) > reb0);
  assert_int_equal(0, esrt_signal(&R->w[1].proc, SIGCONT));
  int64_t rec = wait_settled(R, "paused worker");
  figure *f = fig(R, "(d) worker paused past the session timeout (SIGSTOP)");
  snprintf(f->did, sizeof f->did,
           "its partitions moved to the other worker after %.1f s (session timeout %d ms; the mock hands over after "
           "about 2 x); resumed, it learns it lost them, rejoins and gets a share back",
           moved / 1000.0, SESSION_MS);
  f->recover_ms = rec;
  verify(R, "paused worker", 0);
}

static int corrupt_newest(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  char newest[256] = "";
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (l == 23 && strcmp(e->d_name + 20, ".db") == 0 && strcmp(e->d_name, newest) > 0)
      snprintf(newest, sizeof newest, "%s", e->d_name);
  }
  closedir(d);
  if (!newest[0]) return 0;
  char path[1500];
  snprintf(path, sizeof path, "%s/%s", dir, newest);
  int fd = open(path, O_WRONLY);
  assert_true(fd >= 0);
  assert_int_equal(16, pwrite(fd, "corrupt!corrupt!", 16, 4096));
  close(fd);
  return 1;
}

static void wipe(const char *dir) {
  char cmd[1300];
  snprintf(cmd, sizeof cmd, "find '%s' -mindepth 1 -delete", dir);
  assert_int_equal(0, system(cmd));
}

static void corrupt_store(run *R) {
  for (int i = 0; i < 2; i++) {
    assert_int_equal(0, esrt_signal(&R->w[i].proc, SIGTERM));
    assert_int_equal(0, esrt_wait(&R->w[i].proc, 60000));
    assert_int_equal(0, esrt_exit_code(&R->w[i].proc));
  }
  int corrupted = 0;
  for (int p = 0; p < P; p++) {
    char dir[1300];
    snprintf(dir, sizeof dir, "%s/ledger-%d", R->store, p);
    corrupted += corrupt_newest(dir);
  }
  assert_int_equal(P, corrupted); /* premise: every partition had a checkpoint in the store */
  wipe(R->w[0].dir);
  wipe(R->w[1].dir);
  int64_t t0 = esrt_now_ms();
  start(R, 0);
  start(R, 1);
  int64_t rec = wait_settled(R, "corrupt checkpoints");
  rec = esrt_now_ms() - t0;
  double remote = metric(R, 0, "esr_recovery_total", "step=\"remote\"") +
                  metric(R, 1, "esr_recovery_total", "step=\"remote\"");
  double log = metric(R, 0, "esr_recovery_total", "step=\"log\"") + metric(R, 1, "esr_recovery_total", "step=\"log\"");
  /* Premise: the damaged checkpoints were met and set aside. */
  char cmd[1300];
  snprintf(cmd, sizeof cmd, "ls %s/ledger-*/ | grep -c '\\.bad-' > %s/bad.count", R->store, R->c->dir);
  assert_int_equal(0, system(cmd));
  char path[1200];
  snprintf(path, sizeof path, "%s/bad.count", R->c->dir);
  char *count = esrt_read_file(path, NULL);
  int bad = count ? atoi(count) : 0;
  free(count);
  assert_true(bad >= P);
  assert_true(remote + log >= P);
  figure *f = fig(R, "(e) newest checkpoints in the store corrupted, volumes lost");
  snprintf(f->did, sizeof f->did,
           "the ladder finds each damaged checkpoint (SHA-256 mismatch), sets it aside in the store (%d files "
           "*.bad-*), takes the next older one (esr_recovery_total{step=\"remote\"} %.0f, log %.0f) and replays the "
           "rest",
           bad, remote, log);
  f->recover_ms = rec;
  verify(R, "corrupt checkpoints", 1);
}

static void soak(void **state) {
  esrt_case *c = *state;
  run *R = calloc(1, sizeof *R);
  assert_non_null(R);
  esrt_case_defer(c, free, R);
  R->c = c;
  const char *lv = getenv("ESR_SOAK_LONG");
  R->s = lv && *lv && strcmp(lv, "0") != 0 ? (settings){.rate = 400, .broker_stop_s = 30, .disk_full_s = 30, .long_run = 1}
                                           : (settings){.rate = 150, .broker_stop_s = 10, .disk_full_s = 3};
  const char *sv = getenv("ESR_SOAK_SEED");
  uint64_t seed = sv && *sv ? strtoull(sv, NULL, 10) : (uint64_t)time(NULL);
  printf("soak: %s setting, seed %" PRIu64 " (ESR_SOAK_SEED), %d events/s\n", R->s.long_run ? "long" : "short", seed,
         R->s.rate);
  int64_t t_start = esrt_now_ms();

  const char *topics[] = {"ledger:4", "ledger.dlq:1", NULL};
  assert_int_equal(0, esrt_mock_start(&R->mock, ESR_BIN, c->dir, 1, topics, 20000));
  R->prod = esrt_case_defer(c, free_producer, esrt_producer_new(R->mock.bootstrap));
  R->rk = esrt_case_defer(c, free_client, esrt_kafka_client_new(R->mock.bootstrap));
  assert_non_null(R->prod);
  assert_non_null(R->rk);
  /* The whole log stays in the mock (at most 5 MiB per partition: about 30,000 of these events): the oracle folds it
   * from offset 0. */
  esrt_gen_opts g = {.seed = seed, .events = R->s.long_run ? 100000 : R->s.rate * 240, .accounts = 400,
                     .partitions = P, .bad_share = 0.02, .prefix_kinds = 1};
  R->ev = esrt_ledger_generate(&g, &R->n);
  assert_non_null(R->ev);

  snprintf(R->store, sizeof R->store, "%s/store", c->dir);
  assert_int_equal(0, mkdir(R->store, 0750));
  for (int i = 0; i < 2; i++) {
    wk *w = &R->w[i];
    snprintf(w->name, sizeof w->name, "w%d", i);
    snprintf(w->dir, sizeof w->dir, "%s/w%d", c->dir, i);
    assert_int_equal(0, mkdir(w->dir, 0750));
    assert_int_equal(0, esrt_write_worker_config(
                            w->conf, sizeof w->conf, c->dir, w->name, R->mock.bootstrap, "ledger", "ledger.dlq",
                            w->dir, LEDGER_SO,
                            "assignment = group\nkafka.group.id = soak\nkafka.session.timeout.ms = %d\n"
                            "kafka.heartbeat.interval.ms = 500\nkafka.reconnect.backoff.max.ms = 500\n"
                            "http.listen = 127.0.0.1:0\ncheckpoint.store = file://%s\ncheckpoint.interval.ms = 2000\n"
                            "checkpoint.keep = 3\nbatch.max.ms = 50\napply.threads = 1\n",
                            SESSION_MS, R->store));
  }
  /* Worker 0's state on a small file system of its own, to fill (b). */
  if (geteuid() == 0) {
    if (mount("esr-soak", R->w[0].dir, "tmpfs", 0, "size=24m,mode=0750") != 0)
      fail_msg("mount tmpfs on %s: %s", R->w[0].dir, strerror(errno));
    R->mounted = 1;
    esrt_case_defer(c, unmount, R->w[0].dir);
  }

  R->t_rate = esrt_now_ms();
  pump_for(R, 500);
  start(R, 0);
  start(R, 1);
  pump_for(R, 3000);
  wait_settled(R, "start");
  verify(R, "start", 0);

  broker_stop(R);
  disk_full(R);
  rolling(R);
  paused_worker(R);
  corrupt_store(R);

  printf("\nsoak: %d episodes in %.0f s (%s setting, seed %" PRIu64 ", %zu events)\n", R->n_figs,
         (esrt_now_ms() - t_start) / 1000.0, R->s.long_run ? "long" : "short", seed, R->produced);
  printf("| fault episode | what the worker does | recovered in |\n| --- | --- | --- |\n");
  for (int i = 0; i < R->n_figs; i++)
    printf("| %s | %s | %.1f s |\n", R->figs[i].episode, R->figs[i].did, R->figs[i].recover_ms / 1000.0);
  for (int i = 0; i < 2; i++) assert_int_equal(0, esrt_stop(&R->w[i].proc, 60000));
  esrt_events_free(R->ev, R->n);
  esrt_mock mock = R->mock;
  esrt_case_cleanup(c); /* frees R, unmounts */
  assert_int_equal(0, esrt_mock_stop(&mock));
  c->passed = 1;
}

static int setup(void **state) {
  *state = esrt_case_new("soak");
  return *state ? 0 : -1;
}

static int teardown(void **state) {
  esrt_case_end(*state);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test_setup_teardown(soak, setup, teardown)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
