/* metrics.c — the process's metrics registry and its Prometheus text (see metrics.h). */
#include "metrics.h"

#include <dirent.h>
#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"
#include "promtext.h"

static const char *const REASONS[ESR_DL_N] = {"bad-json", "bad-envelope", "unknown-type", "unknown-version",
                                              "schema",   "rejected",     "invalid",      "crash", "other"};
static const char *const STATES[ESR_PSTATE_N] = {"unowned", "recovering", "running", "paused", "stopped", "refused"};
static const char *const CP_WHERE[ESR_CPFAIL_N] = {"write", "upload", "prune"};
static const char *const STEPS[5] = {"refused", "live", "local", "remote", "log"};
static const char *const CAUSES[] = {"full", "io", "nomem", "readonly", "corrupt", "other"};
#define N_CAUSES (sizeof CAUSES / sizeof CAUSES[0])

static const double COMMIT_BOUNDS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define N_COMMIT (sizeof COMMIT_BOUNDS / sizeof COMMIT_BOUNDS[0])
static const double RECOVERY_BOUNDS[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
#define N_RECOVERY (sizeof RECOVERY_BOUNDS / sizeof RECOVERY_BOUNDS[0])

_Atomic int64_t esr_metrics_beats[256];

static struct {
  pthread_mutex_t mu;
  esr_pmetrics **parts;
  size_t n, cap;
  _Atomic int64_t commit_buckets[N_COMMIT + 1], commit_sum_ns;
  _Atomic int64_t recovery_buckets[5][N_RECOVERY + 1], recovery_sum_ms[5];
  _Atomic int64_t rolled_back[N_CAUSES];
  _Atomic int64_t cp_written, cp_uploaded, cp_failures[ESR_CPFAIL_N];
  _Atomic int64_t rebalances, kafka_errors, pruned, dropped;
  _Atomic int phase;
  _Atomic int appliers;
} R = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int64_t ld(_Atomic int64_t *c) { return atomic_load_explicit(c, memory_order_relaxed); }

int esr_metrics_reason_index(const char *reason) {
  for (int i = 0; i < ESR_DL_OTHER; i++)
    if (strcmp(REASONS[i], reason) == 0) return i;
  return ESR_DL_OTHER;
}

const char *esr_metrics_reason_name(int index) { return index >= 0 && index < ESR_DL_N ? REASONS[index] : "other"; }

static esr_pmetrics *find_locked(const char *topic, int32_t partition) {
  for (size_t i = 0; i < R.n; i++)
    if (R.parts[i]->partition == partition && strcmp(R.parts[i]->topic, topic) == 0) return R.parts[i];
  return NULL;
}

esr_pmetrics *esr_metrics_partition_find(const char *topic, int32_t partition) {
  pthread_mutex_lock(&R.mu);
  esr_pmetrics *m = find_locked(topic, partition);
  pthread_mutex_unlock(&R.mu);
  return m;
}

esr_pmetrics *esr_metrics_partition(const char *topic, int32_t partition) {
  pthread_mutex_lock(&R.mu);
  esr_pmetrics *m = find_locked(topic, partition);
  if (m) goto out;
  if (R.n == R.cap) {
    size_t cap = R.cap ? R.cap * 2 : 64;
    esr_pmetrics **g = realloc(R.parts, cap * sizeof *g);
    if (!g) goto out;
    R.parts = g;
    R.cap = cap;
  }
  if (!(m = calloc(1, sizeof *m))) goto out;
  snprintf(m->topic, sizeof m->topic, "%s", topic);
  m->partition = partition;
  atomic_init(&m->next_offset, -1);
  atomic_init(&m->outbox_rows, -1);
  atomic_init(&m->cp_offset, -1);
  atomic_init(&m->uploaded_offset, -1);
  R.parts[R.n++] = m;
out:
  pthread_mutex_unlock(&R.mu);
  return m;
}

void esr_metrics_reset(void) {
  pthread_mutex_lock(&R.mu);
  for (size_t i = 0; i < R.n; i++) free(R.parts[i]);
  free(R.parts);
  R.parts = NULL;
  R.n = R.cap = 0;
  pthread_mutex_unlock(&R.mu);
  for (size_t i = 0; i <= N_COMMIT; i++) esr_metrics_set(&R.commit_buckets[i], 0);
  esr_metrics_set(&R.commit_sum_ns, 0);
  for (int s = 0; s < 5; s++) {
    for (size_t i = 0; i <= N_RECOVERY; i++) esr_metrics_set(&R.recovery_buckets[s][i], 0);
    esr_metrics_set(&R.recovery_sum_ms[s], 0);
  }
  for (size_t i = 0; i < N_CAUSES; i++) esr_metrics_set(&R.rolled_back[i], 0);
  for (int i = 0; i < ESR_CPFAIL_N; i++) esr_metrics_set(&R.cp_failures[i], 0);
  esr_metrics_set(&R.cp_written, 0);
  esr_metrics_set(&R.cp_uploaded, 0);
  esr_metrics_set(&R.rebalances, 0);
  esr_metrics_set(&R.kafka_errors, 0);
  esr_metrics_set(&R.pruned, 0);
  esr_metrics_set(&R.dropped, 0);
  atomic_store(&R.phase, ESR_PHASE_STARTING);
  atomic_store(&R.appliers, 0);
}

void esr_metrics_state(esr_pmetrics *m, int state) {
  if (!m) return;
  atomic_store_explicit(&m->state, state, memory_order_relaxed);
  esr_metrics_set(&m->released_ms, state == ESR_PSTATE_UNOWNED ? esr_now_ms() : 0);
}

void esr_metrics_committed(esr_pmetrics *m, int64_t next_offset, int64_t applied, const int *dead, int64_t now) {
  if (!m) return;
  if (applied) esr_metrics_add(&m->applied, applied);
  if (dead)
    for (int i = 0; i < ESR_DL_N; i++)
      if (dead[i]) esr_metrics_add(&m->dead[i], dead[i]);
  int64_t before = atomic_exchange_explicit(&m->next_offset, next_offset, memory_order_relaxed);
  if (next_offset != before && next_offset > ld(&m->cp_offset)) {
    int64_t zero = 0;
    atomic_compare_exchange_strong_explicit(&m->uncovered_ms, &zero, now, memory_order_relaxed, memory_order_relaxed);
  }
}

void esr_metrics_outbox(esr_pmetrics *m, int64_t rows) {
  if (m) esr_metrics_set(&m->outbox_rows, rows);
}

void esr_metrics_commit_seconds(double seconds) {
  size_t i = 0;
  while (i < N_COMMIT && seconds > COMMIT_BOUNDS[i]) i++;
  esr_metrics_add(&R.commit_buckets[i], 1);
  esr_metrics_add(&R.commit_sum_ns, (int64_t)(seconds * 1e9));
}

void esr_metrics_rolled_back(int code, int lib_code) {
  size_t cause = N_CAUSES - 1; /* other */
  int primary = lib_code & 0xff;
  if (code == ESR_E_CORRUPT || (code == ESR_E_SQLITE && (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB)))
    cause = 4;
  else if (code == ESR_E_SQLITE && primary == SQLITE_FULL)
    cause = 0;
  else if (code == ESR_E_IO || (code == ESR_E_SQLITE && primary == SQLITE_IOERR))
    cause = 1;
  else if (code == ESR_E_NOMEM || (code == ESR_E_SQLITE && primary == SQLITE_NOMEM))
    cause = 2;
  else if (code == ESR_E_SQLITE && primary == SQLITE_READONLY)
    cause = 3;
  esr_metrics_add(&R.rolled_back[cause], 1);
}

void esr_metrics_recovery(int step, double seconds) {
  if (step < 0 || step > 4) step = 0;
  size_t i = 0;
  while (i < N_RECOVERY && seconds > RECOVERY_BOUNDS[i]) i++;
  esr_metrics_add(&R.recovery_buckets[step][i], 1);
  esr_metrics_add(&R.recovery_sum_ms[step], (int64_t)(seconds * 1000));
}

void esr_metrics_checkpoint_written(const char *topic, int32_t partition, int64_t offset, int64_t started_ms) {
  esr_metrics_add(&R.cp_written, 1);
  esr_pmetrics *m = esr_metrics_partition_find(topic, partition);
  if (!m) return;
  esr_metrics_set(&m->cp_offset, offset);
  /* Commits that came after the copy began are not in it: they are uncovered since then at most. */
  esr_metrics_set(&m->uncovered_ms, offset >= ld(&m->next_offset) ? 0 : started_ms);
}

void esr_metrics_checkpoint_uploaded(const char *topic, int32_t partition, int64_t offset) {
  esr_metrics_add(&R.cp_uploaded, 1);
  esr_pmetrics *m = esr_metrics_partition_find(topic, partition);
  if (m && offset > ld(&m->uploaded_offset)) esr_metrics_set(&m->uploaded_offset, offset);
}

void esr_metrics_checkpoint_failed(int where) {
  if (where >= 0 && where < ESR_CPFAIL_N) esr_metrics_add(&R.cp_failures[where], 1);
}

void esr_metrics_rebalance(void) { esr_metrics_add(&R.rebalances, 1); }
void esr_metrics_phase(int phase) { atomic_store(&R.phase, phase); }
void esr_metrics_kafka_error(void) { esr_metrics_add(&R.kafka_errors, 1); }
void esr_metrics_pruned(int64_t files) { esr_metrics_add(&R.pruned, files); }
void esr_metrics_dropped(void) { esr_metrics_add(&R.dropped, 1); }

void esr_metrics_appliers(int n) {
  int64_t now = esr_now_ms();
  for (int i = 0; i < 256; i++) atomic_store(&esr_metrics_beats[i], now);
  atomic_store(&R.appliers, n > 256 ? 256 : n);
}

/* A copy of the list of entries (the entries themselves are never freed while the registry is in use). */
static esr_pmetrics **snapshot(size_t *n) {
  pthread_mutex_lock(&R.mu);
  esr_pmetrics **v = malloc((R.n ? R.n : 1) * sizeof *v);
  if (v) {
    if (R.n) memcpy(v, R.parts, R.n * sizeof *v);
    *n = R.n;
  }
  pthread_mutex_unlock(&R.mu);
  return v;
}

int esr_metrics_ready(char *why, size_t cap) {
  int phase = atomic_load(&R.phase);
  if (phase != ESR_PHASE_RUNNING) {
    snprintf(why, cap, "%s", phase == ESR_PHASE_STARTING ? "starting" : "draining for shutdown");
    return 0;
  }
  size_t n = 0;
  esr_pmetrics **v = snapshot(&n);
  if (!v) {
    snprintf(why, cap, "out of memory");
    return 0;
  }
  int ready = 1;
  for (size_t i = 0; i < n && ready; i++) {
    int st = atomic_load_explicit(&v[i]->state, memory_order_relaxed);
    if (st != ESR_PSTATE_UNOWNED && st != ESR_PSTATE_RUNNING) {
      snprintf(why, cap, "%s[%d] is %s", v[i]->topic, (int)v[i]->partition, STATES[st]);
      ready = 0;
    }
  }
  free(v);
  if (ready) snprintf(why, cap, "ready");
  return ready;
}

int esr_metrics_healthy(int64_t now, int64_t stall_ms, char *why, size_t cap) {
  int n = atomic_load(&R.appliers);
  for (int i = 0; i < n; i++) {
    int64_t age = now - atomic_load_explicit(&esr_metrics_beats[i], memory_order_relaxed);
    if (age > stall_ms) {
      snprintf(why, cap, "apply thread %d has not come round its loop for %lld ms", i, (long long)age);
      return 0;
    }
  }
  snprintf(why, cap, "ok");
  return 1;
}

/* ---- rendering ---- */

static int64_t g_dir_bytes;
static int dir_walk(const char *path, const struct stat *st, int flag, struct FTW *f) {
  (void)path, (void)flag, (void)f;
  g_dir_bytes += (int64_t)st->st_blocks * 512;
  return 0;
}

static pthread_mutex_t g_walk_mu = PTHREAD_MUTEX_INITIALIZER; /* nftw's callback has no argument */

static int64_t dir_bytes(const char *dir) {
  pthread_mutex_lock(&g_walk_mu);
  g_dir_bytes = 0;
  int64_t r = nftw(dir, dir_walk, 16, FTW_PHYS) == 0 ? g_dir_bytes : -1;
  pthread_mutex_unlock(&g_walk_mu);
  return r;
}

static void process_metrics(esr_prom *p) {
  long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
  FILE *f = fopen("/proc/self/stat", "r");
  if (f) {
    char buf[2048];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *r = strrchr(buf, ')'); /* the command name may hold blanks */
    unsigned long utime = 0, stime = 0, vsize = 0;
    unsigned long long start = 0;
    long rss = 0;
    if (r && sscanf(r + 2,
                    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d %llu %lu %ld", &utime,
                    &stime, &start, &vsize, &rss) == 5) {
      esr_prom_family(p, "process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.");
      esr_prom_sample(p, "process_cpu_seconds_total", NULL, (double)(utime + stime) / (double)tck);
      esr_prom_family(p, "process_resident_memory_bytes", "gauge", "Resident memory size, in bytes.");
      esr_prom_sample_int(p, "process_resident_memory_bytes", NULL, (int64_t)rss * page);
      esr_prom_family(p, "process_virtual_memory_bytes", "gauge", "Virtual memory size, in bytes.");
      esr_prom_sample_int(p, "process_virtual_memory_bytes", NULL, (int64_t)vsize);
      FILE *u = fopen("/proc/stat", "r");
      double btime = -1;
      if (u) {
        char line[256];
        while (fgets(line, sizeof line, u))
          if (sscanf(line, "btime %lf", &btime) == 1) break;
        fclose(u);
      }
      if (btime >= 0) {
        esr_prom_family(p, "process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch, in seconds.");
        esr_prom_sample(p, "process_start_time_seconds", NULL, btime + (double)start / (double)tck);
      }
    }
  }
  DIR *d = opendir("/proc/self/fd");
  if (d) {
    int64_t n = -1; /* the directory's own descriptor is not counted */
    while (readdir(d)) n++;
    closedir(d);
    n -= 2; /* . and .. */
    esr_prom_family(p, "process_open_fds", "gauge", "Number of open file descriptors.");
    esr_prom_sample_int(p, "process_open_fds", NULL, n);
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    esr_prom_family(p, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    esr_prom_sample_int(p, "process_max_fds", NULL, (int64_t)rl.rlim_cur);
  }
}

static int cmp_part(const void *a, const void *b) {
  const esr_pmetrics *x = *(esr_pmetrics *const *)a, *y = *(esr_pmetrics *const *)b;
  int c = strcmp(x->topic, y->topic);
  return c ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

char *esr_metrics_render(const esr_metrics_source *src, size_t *len) {
  esr_prom p = ESR_PROM_INIT;
  size_t n = 0;
  esr_pmetrics **v = snapshot(&n);
  if (!v) return NULL;
  qsort(v, n, sizeof *v, cmp_part);
  int64_t now = esr_now_ms();
  char pbuf[16];
#define PL(m) (snprintf(pbuf, sizeof pbuf, "%d", (int)(m)->partition), pbuf)

  esr_prom_family(&p, "esr_build_info", "gauge", "esr's version (the value is always 1).");
  esr_prom_sample(&p, "esr_build_info", (const char *const[]){"version", ESR_VERSION, NULL}, 1);

  esr_prom_family(&p, "esr_events_applied_total", "counter",
                  "Events applied to a partition's state by this process (counted when their batch commits).");
  for (size_t i = 0; i < n; i++)
    esr_prom_sample_int(&p, "esr_events_applied_total",
                        (const char *const[]){"topic", v[i]->topic, "partition", PL(v[i]), NULL}, ld(&v[i]->applied));

  esr_prom_family(&p, "esr_dead_letters_total", "counter",
                  "Events written to the dead-letter topic's outbox by this process, by reason (counted at commit).");
  for (size_t i = 0; i < n; i++)
    for (int r = 0; r < ESR_DL_N; r++)
      esr_prom_sample_int(&p, "esr_dead_letters_total",
                          (const char *const[]){"topic", v[i]->topic, "partition", PL(v[i]), "reason", REASONS[r], NULL},
                          ld(&v[i]->dead[r]));

  esr_prom_family(&p, "esr_crash_quarantines_total", "counter",
                  "Events dead-lettered with reason crash: the process died on them more than max.crash.retries times.");
  int64_t crashes = 0;
  for (size_t i = 0; i < n; i++) crashes += ld(&v[i]->dead[ESR_DL_CRASH]);
  esr_prom_sample_int(&p, "esr_crash_quarantines_total", NULL, crashes);

  esr_prom_family(&p, "esr_partition_state", "gauge",
                  "1 for the state each partition this worker owns is in (running, recovering, paused, stopped, refused).");
  for (size_t i = 0; i < n; i++) {
    int st = atomic_load_explicit(&v[i]->state, memory_order_relaxed);
    if (st == ESR_PSTATE_UNOWNED) continue;
    for (int s = 1; s < ESR_PSTATE_N; s++)
      esr_prom_sample_int(&p, "esr_partition_state",
                          (const char *const[]){"topic", v[i]->topic, "partition", PL(v[i]), "state", STATES[s], NULL},
                          s == st);
  }

  esr_prom_family(&p, "esr_partition_next_offset", "gauge",
                  "The committed position of each owned partition: the next offset to apply.");
  for (size_t i = 0; i < n; i++)
    if (atomic_load(&v[i]->state) != ESR_PSTATE_UNOWNED && ld(&v[i]->next_offset) >= 0)
      esr_prom_sample_int(&p, "esr_partition_next_offset",
                          (const char *const[]){"topic", v[i]->topic, "partition", PL(v[i]), NULL},
                          ld(&v[i]->next_offset));

  /* The high watermarks once, for both families. */
  int64_t *hi = calloc(n ? n : 1, sizeof *hi);
  for (size_t i = 0; i < n; i++) {
    if (hi) hi[i] = -1;
    if (hi && src && src->watermark && atomic_load(&v[i]->state) != ESR_PSTATE_UNOWNED &&
        src->watermark(src->arg, v[i]->topic, v[i]->partition, &hi[i]) != 0)
      hi[i] = -1;
  }
  esr_prom_family(&p, "esr_partition_high_watermark", "gauge",
                  "The end of each owned partition's log (the offset the next event will get), as the consumer last saw it.");
  for (size_t i = 0; i < n && hi; i++)
    if (hi[i] >= 0)
      esr_prom_sample_int(&p, "esr_partition_high_watermark",
                          (const char *const[]){"topic", v[i]->topic, "partition", PL(v[i]), NULL}, hi[i]);
  esr_prom_family(&p, "esr_partition_lag", "gauge",
                  "Events in each owned partition's log not yet applied (high watermark - committed position).");
  for (size_t i = 0; i < n && hi; i++) {
    int64_t next = ld(&v[i]->next_offset);
    if (hi[i] >= 0 && next >= 0)
      esr_prom_sample_int(&p, "esr_partition_lag",
                          (const char *const[]){"topic", v[i]->topic, "partition", PL(v[i]), NULL},
                          hi[i] > next ? hi[i] - next : 0);
  }
  free(hi);

  esr_prom_family(&p, "esr_outbox_rows", "gauge",
                  "Rows in each owned partition's outbox (dead letters, emitted events) not yet acknowledged by Kafka.");
  for (size_t i = 0; i < n; i++)
    if (atomic_load(&v[i]->state) != ESR_PSTATE_UNOWNED && ld(&v[i]->outbox_rows) >= 0)
      esr_prom_sample_int(&p, "esr_outbox_rows",
                          (const char *const[]){"topic", v[i]->topic, "partition", PL(v[i]), NULL},
                          ld(&v[i]->outbox_rows));

  esr_prom_family(&p, "esr_checkpoint_age_seconds", "gauge",
                  "How long each owned partition has had committed changes that no checkpoint holds (0: its newest "
                  "checkpoint holds its state).");
  for (size_t i = 0; i < n; i++) {
    if (atomic_load(&v[i]->state) == ESR_PSTATE_UNOWNED) continue;
    int64_t since = ld(&v[i]->uncovered_ms);
    esr_prom_sample(&p, "esr_checkpoint_age_seconds",
                    (const char *const[]){"topic", v[i]->topic, "partition", PL(v[i]), NULL},
                    since > 0 && now > since ? (double)(now - since) / 1000.0 : 0.0);
  }

  esr_prom_family(&p, "esr_batch_commit_seconds", "histogram",
                  "Time to commit a batch's SQLite transaction (state, position and outbox rows), in seconds.");
  int64_t counts[N_RECOVERY > N_COMMIT ? N_RECOVERY + 1 : N_COMMIT + 1];
  for (size_t i = 0; i <= N_COMMIT; i++) counts[i] = ld(&R.commit_buckets[i]);
  esr_prom_histogram(&p, "esr_batch_commit_seconds", NULL, COMMIT_BOUNDS, N_COMMIT, counts,
                     (double)ld(&R.commit_sum_ns) / 1e9);

  esr_prom_family(&p, "esr_batches_rolled_back_total", "counter",
                  "Batches rolled back by a storage fault, by cause (full, io, nomem, readonly, corrupt, other); "
                  "the partition retries from its committed position.");
  for (size_t c = 0; c < N_CAUSES; c++)
    esr_prom_sample_int(&p, "esr_batches_rolled_back_total", (const char *const[]){"cause", CAUSES[c], NULL},
                        ld(&R.rolled_back[c]));

  esr_prom_family(&p, "esr_recovery_total", "counter",
                  "Partitions opened, by the step of the recovery ladder that gave their state (refused: none could).");
  for (int s = 0; s < 5; s++) {
    int64_t t = 0;
    for (size_t i = 0; i <= N_RECOVERY; i++) t += ld(&R.recovery_buckets[s][i]);
    esr_prom_sample_int(&p, "esr_recovery_total", (const char *const[]){"step", STEPS[s], NULL}, t);
  }
  esr_prom_family(&p, "esr_recovery_seconds", "histogram",
                  "Time the recovery ladder took to give a partition its state, by step, in seconds.");
  for (int s = 0; s < 5; s++) {
    for (size_t i = 0; i <= N_RECOVERY; i++) counts[i] = ld(&R.recovery_buckets[s][i]);
    esr_prom_histogram(&p, "esr_recovery_seconds", (const char *const[]){"step", STEPS[s], NULL}, RECOVERY_BOUNDS,
                       N_RECOVERY, counts, (double)ld(&R.recovery_sum_ms[s]) / 1000.0);
  }

  esr_prom_family(&p, "esr_checkpoints_total", "counter", "Checkpoints written locally.");
  esr_prom_sample_int(&p, "esr_checkpoints_total", NULL, ld(&R.cp_written));
  esr_prom_family(&p, "esr_checkpoint_uploads_total", "counter", "Checkpoints uploaded to the remote store.");
  esr_prom_sample_int(&p, "esr_checkpoint_uploads_total", NULL, ld(&R.cp_uploaded));
  esr_prom_family(&p, "esr_checkpoint_failures_total", "counter",
                  "Checkpoints that failed, by where: write (the local copy), upload (to the remote store), prune.");
  for (int w = 0; w < ESR_CPFAIL_N; w++)
    esr_prom_sample_int(&p, "esr_checkpoint_failures_total", (const char *const[]){"where", CP_WHERE[w], NULL},
                        ld(&R.cp_failures[w]));

  esr_prom_family(&p, "esr_rebalances_total", "counter", "Consumer-group rebalances this worker took part in.");
  esr_prom_sample_int(&p, "esr_rebalances_total", NULL, ld(&R.rebalances));
  esr_prom_family(&p, "esr_kafka_errors_total", "counter",
                  "Errors librdkafka reported for the consumer (brokers down, timeouts); the worker retries them.");
  esr_prom_sample_int(&p, "esr_kafka_errors_total", NULL, ld(&R.kafka_errors));

  char why[300];
  esr_prom_family(&p, "esr_ready", "gauge", "1 when /readyz answers 200.");
  esr_prom_sample_int(&p, "esr_ready", NULL, esr_metrics_ready(why, sizeof why));

  if (src && src->state_dir) {
    int64_t bytes = dir_bytes(src->state_dir);
    if (bytes >= 0) {
      esr_prom_family(&p, "esr_state_dir_bytes", "gauge",
                      "Disk space used by state.dir (databases, checkpoints, set-aside files), in bytes.");
      esr_prom_sample_int(&p, "esr_state_dir_bytes", NULL, bytes);
    }
    struct statvfs sv;
    if (statvfs(src->state_dir, &sv) == 0) {
      esr_prom_family(&p, "esr_state_dir_free_bytes", "gauge",
                      "Free space on state.dir's file system for an unprivileged process, in bytes.");
      esr_prom_sample_int(&p, "esr_state_dir_free_bytes", NULL, (int64_t)sv.f_bavail * (int64_t)sv.f_frsize);
    }
  }
  esr_prom_family(&p, "esr_state_files_pruned_total", "counter",
                  "Set-aside databases (*.corrupt-*, *.old-*) removed beyond state.aside.keep.");
  esr_prom_sample_int(&p, "esr_state_files_pruned_total", NULL, ld(&R.pruned));
  esr_prom_family(&p, "esr_state_dropped_total", "counter",
                  "Databases of partitions this worker no longer owns, dropped once the store held a checkpoint of them.");
  esr_prom_sample_int(&p, "esr_state_dropped_total", NULL, ld(&R.dropped));
  process_metrics(&p);
#undef PL
  free(v);
  return esr_prom_take(&p, len);
}
