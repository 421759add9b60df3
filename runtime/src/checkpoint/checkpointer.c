/* checkpointer.c — a thread that writes, prunes and uploads partition checkpoints, one job at a time. */
#include "checkpointer.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "clock.h"
#include "cplister.h"
#include "log.h"
#include "metrics.h"
#include "recovery.h"
#include "store.h"

struct esr_verify_ticket {
  _Atomic int state;
  _Atomic int refs;
  char msg[400]; /* written before state becomes CORRUPT */
};

int esr_verify_state(esr_verify_ticket *t, const char **msg) {
  int st = atomic_load(&t->state);
  if (msg) *msg = t->msg;
  return st;
}

void esr_verify_release(esr_verify_ticket *t) {
  if (t && atomic_fetch_sub(&t->refs, 1) == 1) free(t);
}

typedef struct job {
  char *topic;
  int32_t partition;
  esr_verify_ticket *verify; /* a verification job, not a checkpoint */
  esr_manifest *upload;      /* an upload deferred while the store was unreachable, not a checkpoint */
  int waited;   /* someone waits on it: keep it after it ran, they free it */
  int done;
  esr_code rc;
  esr_error err;
  int64_t next_offset;
  struct job *next;
} job;

struct esr_checkpointer {
  esr_checkpointer_opts opts;
  char *state_dir, *cp_dir;
  esr_cpstore *store;
  esr_cplister *lister; /* the store's listings for recovery, or NULL */
  int users_fd;         /* shared lock on <cp_dir>/.esr-users.lock while this checkpointer writes there */
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* jobs queued, a job done, stop */
  job *head, *tail;   /* verifications (first) and checkpoints */
  job *uploads;        /* deferred uploads, one per partition at most: run when nothing else waits */
  int running;         /* a job is being worked on */
  int uploading;       /* ... and it is a deferred upload */
  int stop;
  _Atomic int cancel;  /* stopping: abandon what runs */
  _Atomic int preempt; /* a job arrived while a deferred upload to an unreachable store runs: abandon the upload */
};

static int cancelled(void *arg) { return atomic_load(&((esr_checkpointer *)arg)->cancel); }
static int store_cancelled(void *arg) {
  esr_checkpointer *c = arg;
  return atomic_load(&c->cancel) || atomic_load(&c->preempt);
}

static int store_down(esr_checkpointer *c) { return c->lister && esr_cplister_unhealthy_ms(c->lister) > 0; }

/* Under mu: a job arrived. A deferred upload to an unreachable store must not keep it waiting for its retries. */
static void preempt_upload(esr_checkpointer *c) {
  if (c->uploading && store_down(c)) atomic_store(&c->preempt, 1);
}

static void job_free(job *j);

/* Under mu: queues the upload of m for later (taking m), replacing an older one of the same partition. */
static void defer_upload(esr_checkpointer *c, esr_manifest *m) {
  for (job *u = c->uploads; u; u = u->next)
    if (u->partition == m->partition && strcmp(u->topic, m->topic) == 0) {
      if (u->upload->next_offset <= m->next_offset) {
        esr_manifest_free(u->upload);
        u->upload = m;
      } else {
        esr_manifest_free(m);
      }
      return;
    }
  job *u = calloc(1, sizeof *u);
  if (!u || !(u->topic = strdup(m->topic))) {
    free(u);
    esr_manifest_free(m); /* only an upload lost: the next checkpoint uploads again */
    return;
  }
  u->partition = m->partition;
  u->upload = m;
  job **end = &c->uploads;
  while (*end) end = &(*end)->next;
  *end = u;
  pthread_cond_broadcast(&c->cv);
}

/* Uploads checkpoint m and prunes the store; logs the outcome. */
static void upload(esr_checkpointer *c, const esr_manifest *m, int64_t written_ms) {
  esr_error e = {0};
  int64_t t1 = esr_now_ms(), uploaded = -1;
  esr_code rc = esr_cpstore_upload(c->store, c->cp_dir, m, &e);
  if (c->lister) esr_cplister_report(c->lister, rc);
  if (rc != ESR_E_OK) {
    if (rc != ESR_E_STATE) esr_metrics_checkpoint_failed(ESR_CPFAIL_UPLOAD);
    if (rc != ESR_E_STATE || !atomic_load(&c->cancel))
      esr_log(rc == ESR_E_STATE ? ESR_LOG_DEBUG : ESR_LOG_WARN, "checkpoint",
              "%s[%d]: upload of checkpoint %" PRId64 " to %s %s: %s", m->topic, (int)m->partition, m->next_offset,
              esr_cpstore_url(c->store), rc == ESR_E_STATE ? "put off" : "failed", e.msg);
  } else {
    uploaded = esr_now_ms() - t1;
    esr_metrics_checkpoint_uploaded(m->topic, m->partition, m->next_offset);
    if (esr_cpstore_prune(c->store, m->topic, m->partition, c->opts.keep, &e) != ESR_E_OK) {
      esr_metrics_checkpoint_failed(ESR_CPFAIL_PRUNE);
      esr_log(ESR_LOG_WARN, "checkpoint", "%s[%d]: pruning remote checkpoints: %s", m->topic, (int)m->partition,
              e.msg);
    }
  }
  if (written_ms < 0) {
    if (uploaded >= 0)
      esr_log(ESR_LOG_INFO, "checkpoint", "%s[%d]: checkpoint at offset %" PRId64 " uploaded in %" PRId64 " ms",
              m->topic, (int)m->partition, m->next_offset, uploaded);
  } else if (uploaded >= 0) {
    esr_log(ESR_LOG_INFO, "checkpoint",
            "%s[%d]: checkpoint at offset %" PRId64 " (%.1f MB) written in %" PRId64 " ms, uploaded in %" PRId64 " ms",
            m->topic, (int)m->partition, m->next_offset, (double)m->size / 1e6, written_ms, uploaded);
  } else {
    esr_log(ESR_LOG_INFO, "checkpoint", "%s[%d]: checkpoint at offset %" PRId64 " (%.1f MB) written in %" PRId64 " ms",
            m->topic, (int)m->partition, m->next_offset, (double)m->size / 1e6, written_ms);
  }
}

static void run(esr_checkpointer *c, job *j) {
  char db[4096];
  esr_store_path(db, sizeof db, c->state_dir, j->topic, j->partition);
  if (j->verify) {
    esr_error e = {0};
    int64_t t0 = esr_now_ms();
    esr_code rc = esr_recovery_check_db(db, &e);
    if (rc == ESR_E_CORRUPT) {
      snprintf(j->verify->msg, sizeof j->verify->msg, "%s", e.msg);
      atomic_store(&j->verify->state, ESR_VERIFY_CORRUPT);
    } else {
      if (rc != ESR_E_OK) /* not a verdict on the data (an I/O error, the file busy): count it as checked, say so */
        esr_log(ESR_LOG_WARN, "recovery", "%s[%d]: integrity check could not run: %s", j->topic, (int)j->partition,
                e.msg);
      else
        esr_log(ESR_LOG_DEBUG, "recovery", "%s[%d]: integrity check ok in %" PRId64 " ms", j->topic,
                (int)j->partition, esr_now_ms() - t0);
      atomic_store(&j->verify->state, ESR_VERIFY_OK);
    }
    return;
  }
  esr_checkpoint_opts o = {.progress = cancelled, .progress_arg = c};
  esr_manifest *m = NULL;
  int64_t t0 = esr_now_ms();
  j->rc = esr_checkpoint_write(db, c->cp_dir, j->topic, j->partition, &o, &m, &j->err);
  if (j->rc != ESR_E_OK) {
    if (j->rc != ESR_E_STATE || !atomic_load(&c->cancel)) {
      esr_metrics_checkpoint_failed(ESR_CPFAIL_WRITE);
      esr_log(ESR_LOG_WARN, "checkpoint", "%s[%d]: checkpoint failed: %s", j->topic, (int)j->partition, j->err.msg);
    }
    return;
  }
  int64_t written = esr_now_ms() - t0;
  esr_metrics_checkpoint_written(j->topic, j->partition, m->next_offset, t0);
  j->next_offset = m->next_offset;
  esr_error e;
  if (esr_checkpoint_prune(c->cp_dir, j->topic, j->partition, c->opts.keep, &e) != ESR_E_OK) {
    esr_metrics_checkpoint_failed(ESR_CPFAIL_PRUNE);
    esr_log(ESR_LOG_WARN, "checkpoint", "%s[%d]: pruning local checkpoints: %s", j->topic, (int)j->partition, e.msg);
  }
  if (!c->store || store_down(c)) {
    esr_log(ESR_LOG_INFO, "checkpoint", "%s[%d]: checkpoint at offset %" PRId64 " (%.1f MB) written in %" PRId64 " ms%s",
            m->topic, (int)m->partition, m->next_offset, (double)m->size / 1e6, written,
            c->store ? "; its upload waits: the store is unreachable" : "");
    if (!c->store) {
      esr_manifest_free(m);
      return;
    }
    /* Later, when nothing else waits: a release (esr_checkpointer_now) must not wait for an unreachable store. */
    pthread_mutex_lock(&c->mu);
    defer_upload(c, m);
    pthread_mutex_unlock(&c->mu);
    return;
  }
  upload(c, m, written);
  esr_manifest_free(m);
}

static void job_free(job *j) {
  if (!j) return;
  esr_verify_release(j->verify);
  esr_manifest_free(j->upload);
  free(j->topic);
  free(j);
}

#define BACKGROUND_NICE 10

static void *thread_main(void *arg) {
  esr_checkpointer *c = arg;
  /* Background work: checkpoints and integrity checks yield the CPU to the apply threads, so that a restart's
   * checks of large databases do not delay the first events (lowering one's own priority needs no privilege). */
  pthread_setname_np(pthread_self(), "esr-checkpoint");
  setpriority(PRIO_PROCESS, (id_t)gettid(), BACKGROUND_NICE);
  pthread_mutex_lock(&c->mu);
  for (;;) {
    while (!c->head && !c->uploads && !c->stop) pthread_cond_wait(&c->cv, &c->mu);
    if (c->stop) break;
    if (!c->head) { /* nothing else waits: a deferred upload */
      job *u = c->uploads;
      c->uploads = u->next;
      c->running = c->uploading = 1;
      atomic_store(&c->preempt, 0);
      pthread_mutex_unlock(&c->mu);
      upload(c, u->upload, -1);
      pthread_mutex_lock(&c->mu);
      c->running = c->uploading = 0;
      if (atomic_exchange(&c->preempt, 0) && !atomic_load(&c->cancel)) {
        esr_manifest *m = u->upload; /* put off for the job that came: again later (unless a newer one came) */
        u->upload = NULL;
        defer_upload(c, m);
      }
      job_free(u);
      pthread_cond_broadcast(&c->cv);
      continue;
    }
    job *j = c->head;
    c->head = j->next;
    if (!c->head) c->tail = NULL;
    c->running = 1;
    pthread_mutex_unlock(&c->mu);
    run(c, j);
    pthread_mutex_lock(&c->mu);
    c->running = 0;
    j->done = 1;
    if (!j->waited) job_free(j);
    pthread_cond_broadcast(&c->cv);
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

/* Temporary files of writers killed mid-way (a SIGKILL during a checkpoint, a download or a restore) are removed
 * when no other writer can be using them: every checkpointer holds a shared lock on the checkpoint directory while
 * it lives, and the one that can take it exclusively at start is alone there (the state directory is locked by
 * its worker). Then it keeps a shared lock, so that a worker starting later on the same directory does not sweep. */
static void sweep_temporaries(esr_checkpointer *c) {
  char path[4200];
  if (mkdir(c->cp_dir, 0750) != 0 && errno != EEXIST) return; /* the first checkpoint will say why */
  snprintf(path, sizeof path, "%s/.esr-users.lock", c->cp_dir);
  c->users_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (c->users_fd < 0) return;
  if (flock(c->users_fd, LOCK_EX | LOCK_NB) == 0) {
    int n = 0;
    esr_error e = {0};
    if (esr_checkpoint_sweep(c->cp_dir, c->state_dir, &n, &e) != ESR_E_OK)
      esr_log(ESR_LOG_WARN, "checkpoint", "removing temporary files left by a killed worker: %s", e.msg);
    else if (n > 0)
      esr_log(ESR_LOG_INFO, "checkpoint", "removed %d temporary files left by a killed worker in %s", n, c->cp_dir);
  } else {
    esr_log(ESR_LOG_DEBUG, "checkpoint", "%s is in use by another worker: its temporary files are left alone",
            c->cp_dir);
  }
  while (flock(c->users_fd, LOCK_SH) != 0 && errno == EINTR) {
  }
}

esr_code esr_checkpointer_new(const esr_checkpointer_opts *opts, esr_checkpointer **out, esr_error *err) {
  *out = NULL;
  esr_checkpointer *c = calloc(1, sizeof *c);
  if (!c) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  c->opts = *opts;
  c->users_fd = -1;
  if (c->opts.keep < 1) c->opts.keep = 1;
  c->state_dir = strdup(opts->state_dir);
  c->cp_dir = strdup(opts->cp_dir);
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  esr_code rc = ESR_E_OK;
  if (!c->state_dir || !c->cp_dir) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto fail;
  }
  if (opts->store_url) {
    esr_cpstore_opts so = opts->store_opts;
    so.cancel = store_cancelled; /* neither a stop nor a job waits for an unreachable store's retries */
    so.cancel_arg = c;
    if ((rc = esr_cpstore_open(opts->store_url, &so, &c->store, err)) != ESR_E_OK) {
      esr_error_prefix(err, "config: checkpoint.store");
      goto fail;
    }
    /* A store that cannot work is the configuration's to fix, now; one that cannot be reached now is retried. */
    esr_error e = {0};
    esr_code crc = esr_cpstore_check(c->store, &e);
    if (crc == ESR_E_CONFIG || crc == ESR_E_NOMEM) {
      rc = crc;
      if (err) *err = e;
      esr_error_prefix(err, "config: checkpoint.store");
      goto fail;
    }
    if (crc != ESR_E_OK)
      esr_log(ESR_LOG_WARN, "checkpoint",
              "the checkpoint store cannot be reached now (%s): checkpoints are kept locally, uploads and recovery "
              "retry it",
              e.msg);
    if (opts->lister_threads > 0 &&
        (rc = esr_cplister_new(opts->store_url, &opts->store_opts, opts->lister_threads, &c->lister, err)) !=
            ESR_E_OK) {
      esr_error_prefix(err, "config: checkpoint.store");
      goto fail;
    }
    if (crc != ESR_E_OK && c->lister) esr_cplister_report(c->lister, crc); /* no partition waits for it */
  }
  sweep_temporaries(c);
  if (pthread_create(&c->thread, NULL, thread_main, c) != 0) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "cannot start the checkpoint thread");
    goto fail;
  }
  *out = c;
  return ESR_E_OK;
fail:
  esr_cplister_free(c->lister);
  esr_cpstore_close(c->store);
  if (c->users_fd >= 0) close(c->users_fd);
  free(c->state_dir);
  free(c->cp_dir);
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
  free(c);
  return rc;
}

void esr_checkpointer_free(esr_checkpointer *c) {
  if (!c) return;
  atomic_store(&c->cancel, 1);
  pthread_mutex_lock(&c->mu);
  c->stop = 1;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
  pthread_join(c->thread, NULL);
  for (job *j = c->head, *n; j; j = n) {
    n = j->next;
    if (!j->waited) job_free(j); /* waited jobs belong to their waiters, who are gone by now */
  }
  for (job *u = c->uploads, *n; u; u = n) { /* not uploaded: the next worker's checkpoints will be */
    n = u->next;
    job_free(u);
  }
  esr_cplister_free(c->lister);
  esr_cpstore_close(c->store);
  if (c->users_fd >= 0) close(c->users_fd);
  free(c->state_dir);
  free(c->cp_dir);
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
  free(c);
}

/* Queues a checkpoint job; returns the queued one for this partition when there is one already (then *fresh = 0).
 * Under mu. */
static job *enqueue(esr_checkpointer *c, const char *topic, int32_t partition, int *fresh) {
  for (job *j = c->head; j; j = j->next)
    if (!j->verify && j->partition == partition && strcmp(j->topic, topic) == 0) {
      *fresh = 0;
      return j;
    }
  job *j = calloc(1, sizeof *j);
  if (!j || !(j->topic = strdup(topic))) {
    free(j);
    return NULL;
  }
  j->partition = partition;
  if (c->tail)
    c->tail->next = j;
  else
    c->head = j;
  c->tail = j;
  *fresh = 1;
  preempt_upload(c);
  pthread_cond_broadcast(&c->cv);
  return j;
}

void esr_checkpointer_request(esr_checkpointer *c, const char *topic, int32_t partition) {
  int fresh;
  pthread_mutex_lock(&c->mu);
  if (!c->stop) enqueue(c, topic, partition, &fresh);
  pthread_mutex_unlock(&c->mu);
}

esr_code esr_checkpointer_now(esr_checkpointer *c, const char *topic, int32_t partition, int timeout_ms,
                              int64_t *next_offset, esr_error *err) {
  pthread_mutex_lock(&c->mu);
  int fresh = 0;
  job *j = c->stop ? NULL : enqueue(c, topic, partition, &fresh);
  if (!j) {
    pthread_mutex_unlock(&c->mu);
    return esr_error_set(err, ESR_E_STATE, 0, "the checkpoint thread is stopping");
  }
  if (j->waited) { /* only the partition's owner waits on its checkpoint: a second waiter is a caller's bug */
    pthread_mutex_unlock(&c->mu);
    return esr_error_set(err, ESR_E_STATE, 0, "a checkpoint of %s[%d] is already awaited", topic, (int)partition);
  }
  j->waited = 1;
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += timeout_ms / 1000;
  until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  int timed_out = 0;
  while (!j->done && !c->stop && !timed_out) timed_out = pthread_cond_timedwait(&c->cv, &c->mu, &until) != 0;
  esr_code rc;
  if (j->done) {
    rc = j->rc;
    if (rc != ESR_E_OK && err) *err = j->err;
    if (next_offset) *next_offset = j->next_offset;
    job_free(j);
  } else {
    j->waited = 0; /* the thread frees it when it is done (or at stop) */
    rc = esr_error_set(err, ESR_E_IO, 0, "checkpoint of %s[%d] not done within %d ms", topic, (int)partition,
                       timeout_ms);
  }
  pthread_mutex_unlock(&c->mu);
  return rc;
}

esr_cplister *esr_checkpointer_lister(esr_checkpointer *c) { return c ? c->lister : NULL; }

esr_verify_ticket *esr_checkpointer_verify(esr_checkpointer *c, const char *topic, int32_t partition) {
  esr_verify_ticket *t = calloc(1, sizeof *t);
  job *j = calloc(1, sizeof *j);
  if (!t || !j || !(j->topic = strdup(topic))) {
    free(t);
    free(j);
    return NULL;
  }
  atomic_store(&t->refs, 2); /* the caller's and the job's */
  j->partition = partition;
  j->verify = t;
  pthread_mutex_lock(&c->mu);
  if (c->stop) {
    pthread_mutex_unlock(&c->mu);
    job_free(j);
    esr_verify_release(t);
    return NULL;
  }
  /* Ahead of checkpoint jobs: a partition's outbox waits for this verdict. */
  j->next = c->head;
  c->head = j;
  if (!c->tail) c->tail = j;
  preempt_upload(c);
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
  return t;
}

int esr_checkpointer_drain(esr_checkpointer *c, int timeout_ms) {
  int64_t deadline = esr_now_ms() + timeout_ms;
  pthread_mutex_lock(&c->mu);
  int left;
  for (;;) {
    left = c->running;
    for (job *j = c->head; j; j = j->next) left++;
    for (job *u = c->uploads; u; u = u->next) left++;
    if (!left || c->stop || esr_now_ms() >= deadline) break;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&c->cv, &c->mu, &ts);
  }
  pthread_mutex_unlock(&c->mu);
  return left;
}
