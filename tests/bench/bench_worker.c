/* bench_worker.c — `esr run` as a child process, and its partition databases read in-process (sqlite3 C API,
 * read-only, WAL: never blocks the worker's commits). */
#include <ctype.h>
#include <dirent.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

struct bench_poller {
  char dir[1024];
  char topic[256];
  int partitions;
  sqlite3 **db;
  sqlite3_stmt **st;
};

bench_poller *bench_poller_new(const char *dir, const char *topic, int partitions) {
  bench_poller *pl = calloc(1, sizeof *pl);
  if (!pl) bench_fail("out of memory");
  snprintf(pl->dir, sizeof pl->dir, "%s", dir);
  snprintf(pl->topic, sizeof pl->topic, "%s", topic);
  pl->partitions = partitions;
  pl->db = calloc((size_t)partitions, sizeof *pl->db);
  pl->st = calloc((size_t)partitions, sizeof *pl->st);
  if (!pl->db || !pl->st) bench_fail("out of memory");
  return pl;
}

static void poller_close(bench_poller *pl, int p) {
  sqlite3_finalize(pl->st[p]);
  sqlite3_close(pl->db[p]);
  pl->st[p] = NULL;
  pl->db[p] = NULL;
}

void bench_poller_free(bench_poller *pl) {
  if (!pl) return;
  for (int p = 0; p < pl->partitions; p++) poller_close(pl, p);
  free(pl->db);
  free(pl->st);
  free(pl);
}

int64_t bench_poller_next(bench_poller *pl, int p) {
  if (!pl->db[p]) {
    char path[1400], wal[1410];
    snprintf(path, sizeof path, "%s/%s-%d.db", pl->dir, pl->topic, p);
    snprintf(wal, sizeof wal, "%s-wal", path);
    if (access(wal, F_OK) != 0) return -1; /* not created yet, or not in WAL mode yet: do not get in its way */
    if (sqlite3_open_v2(path, &pl->db[p], SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
      poller_close(pl, p);
      return -1;
    }
    sqlite3_busy_timeout(pl->db[p], 100);
    if (sqlite3_prepare_v2(pl->db[p], "SELECT next_offset FROM esr_offsets WHERE topic = ?1 AND partition = ?2", -1,
                           &pl->st[p], NULL) != SQLITE_OK) {
      poller_close(pl, p); /* the table is not there yet */
      return -1;
    }
    sqlite3_bind_text(pl->st[p], 1, pl->topic, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(pl->st[p], 2, p);
  }
  int rc = sqlite3_step(pl->st[p]);
  int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(pl->st[p], 0) : rc == SQLITE_DONE ? 0 : -1;
  sqlite3_reset(pl->st[p]);
  return v;
}

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

void bench_worker_start(bench_worker *w, const bench_env *env, const char *topic, const char *dlq, const char *dir,
                        const char *parts, const char *extra) {
  memset(w, 0, sizeof *w);
  snprintf(w->dir, sizeof w->dir, "%s", dir);
  char conf[1100];
  snprintf(conf, sizeof conf, "%s.conf", dir);
  if (esrt_write_file(conf,
                      "topics = %s\nstate.dir = %s\nhandlers = %s\ndlq.topic = %s\nassignment = static\n"
                      "partitions = %s\nkafka.bootstrap.servers = %s\n%s%s",
                      topic, dir, env->handler, dlq, parts, env->bootstrap, env->sets ? env->sets : "",
                      extra ? extra : "") != 0)
    bench_fail("cannot write %s", conf);
  char *argv[] = {(char *)env->esr_bin, "run", "--config", conf, NULL};
  if (env->preload) setenv("LD_PRELOAD", env->preload, 1); /* the worker's alone: read at its exec */
  w->started = bench_now_s();
  int rc = esrt_spawn(&w->proc, env->root, base_name(dir), argv, 0);
  if (env->preload) unsetenv("LD_PRELOAD");
  if (rc != 0) bench_fail("cannot start %s", env->esr_bin);
}

void bench_worker_fail(bench_worker *w, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "esr-bench: the worker's log (%s), last lines:\n", w->proc.err_path);
  esrt_print_tail(stderr, w->proc.err_path, 15, "  worker| ");
  bench_fail("%s", msg);
}

void bench_worker_stop(bench_worker *w) {
  int code = esrt_stop(&w->proc, 30000);
  if (code != 0) bench_worker_fail(w, "the worker exited with code %d after SIGTERM (expected 0)", code);
}

long bench_worker_vmhwm_kib(const bench_worker *w) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/status", (int)w->proc.pid);
  char *s = esrt_read_file(path, NULL);
  long kib = 0;
  const char *at = s ? strstr(s, "VmHWM:") : NULL;
  if (at) kib = strtol(at + 6, NULL, 10);
  free(s);
  return kib;
}

double bench_wait_caught_up(bench_worker *w, bench_poller *pl, const int64_t *hwm, int first, int count,
                            int period_ms, double timeout_s) {
  int idx = 0; /* partitions before first + idx are caught up; next_offset never moves back */
  double deadline = bench_now_s() + timeout_s;
  for (;;) {
    while (idx < count) {
      int p = first + idx;
      if (hwm[p] > 0) {
        int64_t v = bench_poller_next(pl, p);
        if (v > hwm[p]) bench_worker_fail(w, "partition %d is at offset %lld, past its end %lld", p, (long long)v,
                                          (long long)hwm[p]);
        if (v < hwm[p]) break;
      }
      idx++;
    }
    double now = bench_now_s();
    if (idx == count) return now;
    if (now > deadline) {
      char where[600] = "";
      size_t len = 0;
      for (int i = idx; i < count && len < sizeof where - 60; i++) {
        int64_t v = bench_poller_next(pl, first + i);
        if (v < hwm[first + i])
          len += (size_t)snprintf(where + len, sizeof where - len, " [%d] %lld/%lld", first + i, (long long)v,
                                  (long long)hwm[first + i]);
      }
      bench_worker_fail(w, "the worker did not catch up within %.0f s; behind:%s", timeout_s, where);
    }
    if (!esrt_alive(&w->proc))
      bench_worker_fail(w, "the worker exited (code %d) before catching up", esrt_exit_code(&w->proc));
    esrt_sleep_ms(period_ms);
  }
}

/* utime + stime (clock ticks) of a /proc/.../stat line, and its comm (between the parentheses) into comm. */
static long long stat_ticks(const char *path, char *comm, size_t cap) {
  char *s = esrt_read_file(path, NULL);
  if (!s) return -1;
  char *open = strchr(s, '('), *close = strrchr(s, ')');
  long long ticks = -1;
  if (open && close && close > open) {
    if (comm) snprintf(comm, cap, "%.*s", (int)(close - open - 1), open + 1);
    unsigned long long ut, st;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
      ticks = (long long)(ut + st);
  }
  free(s);
  return ticks;
}

double bench_proc_cpu_s(int pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  long long t = stat_ticks(path, NULL, 0);
  return t < 0 ? -1 : (double)t / (double)sysconf(_SC_CLK_TCK);
}

typedef struct thread_kind {
  char name[32];
  double s;
} thread_kind;

static int by_cpu_desc(const void *a, const void *b) {
  double x = ((const thread_kind *)a)->s, y = ((const thread_kind *)b)->s;
  return x < y ? 1 : x > y ? -1 : 0;
}

void bench_proc_threads(int pid, double events, char *buf, size_t cap) {
  thread_kind k[32];
  int n = 0;
  char dir[64];
  snprintf(dir, sizeof dir, "/proc/%d/task", pid);
  buf[0] = '\0';
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[400], comm[64], kind[32];
    snprintf(path, sizeof path, "%s/%s/stat", dir, e->d_name);
    long long t = stat_ticks(path, comm, sizeof comm);
    if (t < 0) continue;
    size_t len = strlen(comm); /* threads of one kind: the name without its trailing digits */
    while (len && isdigit((unsigned char)comm[len - 1])) len--;
    if (len < strlen(comm)) {
      snprintf(kind, sizeof kind, "%.*s*", (int)len, comm);
    } else {
      snprintf(kind, sizeof kind, "%s", comm);
    }
    int i = 0;
    while (i < n && strcmp(k[i].name, kind) != 0) i++;
    if (i == n) {
      if (n == (int)(sizeof k / sizeof *k)) continue;
      snprintf(k[n].name, sizeof k[n].name, "%s", kind);
      k[n++].s = 0;
    }
    k[i].s += (double)t / (double)sysconf(_SC_CLK_TCK);
  }
  closedir(d);
  qsort(k, (size_t)n, sizeof *k, by_cpu_desc);
  size_t len = 0;
  for (int i = 0; i < n && len + 48 < cap; i++)
    if (k[i].s > 0)
      len += (size_t)snprintf(buf + len, cap - len, "%s%s %.2f", len ? ", " : "", k[i].name, k[i].s * 1e6 / events);
}

/* ---- state directories read and written while no worker runs ---- */

static sqlite3 *state_open(const char *dir, const char *topic, int p, int flags) {
  char path[1400];
  snprintf(path, sizeof path, "%s/%s-%d.db", dir, topic, p);
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) bench_fail("cannot open %s: %s", path, sqlite3_errmsg(db));
  sqlite3_busy_timeout(db, 5000);
  return db;
}

int64_t bench_state_applied(const char *dir, const char *topic, int partitions) {
  int64_t sum = 0;
  for (int p = 0; p < partitions; p++) {
    sqlite3 *db = state_open(dir, topic, p, SQLITE_OPEN_READONLY);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT applied_count FROM esr_offsets", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
      sum += sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  return sum;
}

/* The accounts go round-robin over the partitions, in key order within each (ids sort after the stream's). */
void bench_state_grow(const char *dir, const char *topic, int partitions, int accounts) {
  for (int p = 0; p < partitions; p++) {
    sqlite3 *db = state_open(dir, topic, p, SQLITE_OPEN_READWRITE);
    sqlite3_stmt *st = NULL;
    if (sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA cache_size=-65536; BEGIN", NULL,
                     NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO accounts(id, owner, balance, opened_at, updated_at, currency) "
                           "VALUES (?1, ?2, ?3, '2026-11-24T08:00:00.000Z', '2026-11-25T09:30:00.000Z', 'EUR')",
                           -1, &st, NULL) != SQLITE_OK)
      bench_fail("growing %s-%d: %s", topic, p, sqlite3_errmsg(db));
    for (int i = p; i < accounts; i += partitions) {
      char id[32], owner[48];
      snprintf(id, sizeof id, "grown-%09d", i);
      snprintf(owner, sizeof owner, "Owner of account number %09d", i);
      sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(st, 2, owner, -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64(st, 3, 100000 + i % 977);
      if (sqlite3_step(st) != SQLITE_DONE) bench_fail("growing %s-%d: %s", topic, p, sqlite3_errmsg(db));
      sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    /* Folded into the database, as a worker's idle partition does: the restart reads no WAL of this. */
    if (sqlite3_exec(db, "COMMIT; PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL) != SQLITE_OK)
      bench_fail("growing %s-%d: %s", topic, p, sqlite3_errmsg(db));
    sqlite3_close(db);
  }
}

int64_t bench_state_bytes(const char *dir, const char *topic, int partitions) {
  int64_t sum = 0;
  for (int p = 0; p < partitions; p++) {
    char path[1400];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s-%d.db", dir, topic, p);
    if (stat(path, &st) == 0) sum += st.st_size;
  }
  return sum;
}
