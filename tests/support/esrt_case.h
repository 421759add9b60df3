/* esrt_case.h — the frame of one black-box test case (header-only, no cmocka dependency): a temporary directory for the
 * processes' logs and state, a list of cleanups (Kafka handles, oracles, ...) that also run when an assertion ends the
 * case early, and a teardown that runs them, kills every child, then removes the directory when the case passed or
 * prints the tail of every log and keeps it when it failed. Also the worker's command line and config file. */
#ifndef ESRT_CASE_H
#define ESRT_CASE_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esrt_proc.h"

#define ESRT_CASE_MAX_DEFER 32

typedef struct esrt_case {
  char *dir;
  int passed; /* set by the case as its last statement */
  struct {
    void (*fn)(void *);
    void *arg;
  } defer[ESRT_CASE_MAX_DEFER];
  int n_defer;
} esrt_case;

/* Registers a cleanup; teardown runs them in reverse order. Returns arg, so that creation and registration read as
 * one step: p = esrt_case_defer(c, free_x, new_x()). */
static inline void *esrt_case_defer(esrt_case *c, void (*fn)(void *), void *arg) {
  if (arg && c->n_defer < ESRT_CASE_MAX_DEFER) {
    c->defer[c->n_defer].fn = fn;
    c->defer[c->n_defer].arg = arg;
    c->n_defer++;
  }
  return arg;
}

static inline esrt_case *esrt_case_new(const char *label) {
  esrt_case *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->dir = esrt_mkdtemp(label);
  if (!c->dir) {
    free(c);
    return NULL;
  }
  return c;
}

/* Runs the registered cleanups now (newest first), e.g. before stopping the cluster the handles talk to. */
static inline void esrt_case_cleanup(esrt_case *c) {
  while (c->n_defer > 0) {
    c->n_defer--;
    c->defer[c->n_defer].fn(c->defer[c->n_defer].arg);
  }
}

static inline void esrt_case_end(esrt_case *c) {
  if (!c) return;
  esrt_case_cleanup(c);
  esrt_reap_all();
  if (c->passed) {
    esrt_rmtree(c->dir);
  } else {
    fprintf(stderr, "\n==== the case failed; its processes' logs and state are kept in %s\n", c->dir);
    esrt_dump_logs(stderr, c->dir, 25);
  }
  free(c->dir);
  free(c);
}

/* Writes the worker config "<dir>/<name>.conf" (its path into `path`): the common keys, then the `extra_fmt` lines
 * (printf format). 0 or -1. */
static inline int esrt_write_worker_config(char *path, size_t cap, const char *dir, const char *name,
                                           const char *bootstrap, const char *topic, const char *dlq,
                                           const char *state_dir, const char *handler, const char *extra_fmt, ...)
    __attribute__((format(printf, 10, 11)));
static inline int esrt_write_worker_config(char *path, size_t cap, const char *dir, const char *name,
                                           const char *bootstrap, const char *topic, const char *dlq,
                                           const char *state_dir, const char *handler, const char *extra_fmt, ...) {
  char extra[2048];
  va_list ap;
  va_start(ap, extra_fmt);
  vsnprintf(extra, sizeof extra, extra_fmt, ap);
  va_end(ap);
  snprintf(path, cap, "%s/%s.conf", dir, name);
  return esrt_write_file(path,
                         "# written by the test\n"
                         "topics = %s\n"
                         "state.dir = %s\n"
                         "handlers = %s\n"
                         "dlq.topic = %s\n"
                         "kafka.bootstrap.servers = %s\n"
                         "%s",
                         topic, state_dir, handler, dlq, bootstrap, extra);
}

/* Starts `esr run --config conf` with its logs in dir. 0 or -1. */
static inline int esrt_start_worker(esrt_proc *p, const char *esr_bin, const char *dir, const char *name,
                                    const char *conf) {
  char *argv[] = {(char *)esr_bin, "run", "--config", (char *)conf, NULL};
  return esrt_spawn(p, dir, name, argv, 0);
}

#endif
