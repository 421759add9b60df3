/* bench_worker.c — `esr run` as a child process, and its partition databases read in-process (sqlite3 C API,
 * read-only, WAL: never blocks the worker's commits). */
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
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
  w->started = bench_now_s();
  if (esrt_spawn(&w->proc, env->root, base_name(dir), argv, 0) != 0) bench_fail("cannot start %s", env->esr_bin);
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
