/* cplister.c — remote checkpoint listings on threads of their own, waited for with deadlines (see esr/cplister.h). */
#include "cplister.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"

enum { QUEUED, RUNNING, DONE };

struct esr_cplist_ticket {
  esr_cplister *l;
  char *topic;
  int32_t partition;
  int64_t asked_ms; /* the store has not answered since (when this listing fails or is late) */
  int state;
  int dropped; /* the caller is gone: the thread frees it once listed */
  esr_code rc;
  esr_error err;
  esr_manifest_list *list;
  esr_cplist_ticket *next; /* in the queue */
};

struct esr_cplister {
  pthread_mutex_t mu;
  pthread_cond_t work; /* queued, or stop */
  pthread_cond_t done; /* a listing done */
  esr_cplist_ticket *head, *tail;
  int running, probes; /* listings under way; dropped tickets kept queued as probes */
  int stop;
  _Atomic int cancel;
  int64_t unhealthy_since; /* esr_now_ms() of the first failure or miss since the last success; 0: healthy */
  int n_threads, started;
  pthread_t *threads;
  struct worker_arg *args; /* one per thread: its store */
  char *url;
};

typedef struct worker_arg {
  esr_cplister *l;
  esr_cpstore *store;
} worker_arg;

static int cancelled(void *arg) { return atomic_load(&((esr_cplister *)arg)->cancel); }

static void ticket_free(esr_cplist_ticket *t) {
  if (!t) return;
  esr_manifest_list_free(t->list);
  free(t->topic);
  free(t);
}

/* Under mu: the store has not answered since `since`. */
static void mark_unhealthy(esr_cplister *l, int64_t since) {
  if (!l->unhealthy_since || since < l->unhealthy_since) l->unhealthy_since = since;
}

static void *thread_main(void *arg) {
  worker_arg *w = arg;
  esr_cplister *l = w->l;
  pthread_mutex_lock(&l->mu);
  for (;;) {
    while (!l->head && !l->stop) pthread_cond_wait(&l->work, &l->mu);
    if (l->stop) break;
    esr_cplist_ticket *t = l->head;
    l->head = t->next;
    if (!l->head) l->tail = NULL;
    t->next = NULL;
    t->state = RUNNING;
    if (t->dropped) l->probes--;
    l->running++;
    pthread_mutex_unlock(&l->mu);
    esr_manifest_list *list = NULL;
    esr_error e = {0};
    esr_code rc = esr_cpstore_list(w->store, t->topic, t->partition, &list, &e);
    pthread_mutex_lock(&l->mu);
    l->running--;
    if (rc == ESR_E_OK)
      l->unhealthy_since = 0;
    else if (rc != ESR_E_STATE && rc != ESR_E_CORRUPT && rc != ESR_E_NOMEM) /* the store's failure */
      mark_unhealthy(l, t->asked_ms);
    t->state = DONE;
    t->rc = rc;
    t->err = e;
    t->list = list;
    if (t->dropped)
      ticket_free(t);
    else
      pthread_cond_broadcast(&l->done);
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

esr_code esr_cplister_new(const char *url, const esr_cpstore_opts *opts, int threads, esr_cplister **out,
                          esr_error *err) {
  *out = NULL;
  if (threads < 1) threads = 1;
  esr_cplister *l = calloc(1, sizeof *l);
  if (!l) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->work, NULL);
  pthread_cond_init(&l->done, NULL);
  l->n_threads = threads;
  esr_code rc = ESR_E_OK;
  if (!(l->url = strdup(url)) || !(l->threads = calloc((size_t)threads, sizeof *l->threads)) ||
      !(l->args = calloc((size_t)threads, sizeof *l->args))) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto fail;
  }
  esr_cpstore_opts o = {0};
  if (opts) o = *opts;
  o.cancel = cancelled; /* a stopping worker does not wait for the store's retries */
  o.cancel_arg = l;
  for (int i = 0; i < threads; i++) {
    l->args[i].l = l;
    if ((rc = esr_cpstore_open(url, &o, &l->args[i].store, err)) != ESR_E_OK) goto fail;
  }
  for (int i = 0; i < threads; i++) {
    if (pthread_create(&l->threads[i], NULL, thread_main, &l->args[i]) != 0) {
      rc = esr_error_set(err, ESR_E_NOMEM, 0, "cannot start a checkpoint store thread");
      goto fail;
    }
    l->started++;
  }
  *out = l;
  return ESR_E_OK;
fail:
  esr_cplister_free(l);
  return rc;
}

void esr_cplister_free(esr_cplister *l) {
  if (!l) return;
  atomic_store(&l->cancel, 1);
  pthread_mutex_lock(&l->mu);
  l->stop = 1;
  pthread_cond_broadcast(&l->work);
  pthread_mutex_unlock(&l->mu);
  for (int i = 0; i < l->started; i++) pthread_join(l->threads[i], NULL);
  for (esr_cplist_ticket *t = l->head, *n; t; t = n) { /* never started: only dropped ones are left */
    n = t->next;
    ticket_free(t);
  }
  for (int i = 0; l->args && i < l->n_threads; i++) esr_cpstore_close(l->args[i].store);
  free(l->args);
  free(l->threads);
  free(l->url);
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->work);
  pthread_cond_destroy(&l->done);
  free(l);
}

esr_cplist_ticket *esr_cplister_ask(esr_cplister *l, const char *topic, int32_t partition) {
  esr_cplist_ticket *t = calloc(1, sizeof *t);
  if (!t || !(t->topic = strdup(topic))) {
    free(t);
    return NULL;
  }
  t->l = l;
  t->partition = partition;
  t->asked_ms = esr_now_ms();
  pthread_mutex_lock(&l->mu);
  if (l->stop) {
    pthread_mutex_unlock(&l->mu);
    ticket_free(t);
    return NULL;
  }
  if (l->tail)
    l->tail->next = t;
  else
    l->head = t;
  l->tail = t;
  pthread_cond_signal(&l->work);
  pthread_mutex_unlock(&l->mu);
  return t;
}

int esr_cplister_wait(esr_cplist_ticket *t, int timeout_ms) {
  esr_cplister *l = t->l;
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  if (timeout_ms > 0) {
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
  }
  pthread_mutex_lock(&l->mu);
  int timed_out = timeout_ms <= 0;
  while (t->state != DONE && !timed_out && !l->stop)
    timed_out = pthread_cond_timedwait(&l->done, &l->mu, &until) != 0;
  int done = t->state == DONE;
  if (!done) mark_unhealthy(l, t->asked_ms); /* late: later callers with a valid local state need not wait for it */
  pthread_mutex_unlock(&l->mu);
  return done;
}

esr_code esr_cplister_result(esr_cplist_ticket *t, esr_manifest_list **out, esr_error *err) {
  esr_cplister *l = t->l;
  *out = NULL;
  pthread_mutex_lock(&l->mu);
  esr_code rc;
  if (t->state != DONE) {
    rc = esr_error_set(err, ESR_E_STATE, 0, "listing %s-%d in %s: not done yet", t->topic, (int)t->partition, l->url);
  } else {
    rc = t->rc;
    if (rc == ESR_E_OK) {
      *out = t->list;
      t->list = NULL;
    } else if (err) {
      *err = t->err;
    }
  }
  pthread_mutex_unlock(&l->mu);
  return rc;
}

void esr_cplister_drop(esr_cplist_ticket *t) {
  if (!t) return;
  esr_cplister *l = t->l;
  pthread_mutex_lock(&l->mu);
  if (t->state == DONE) {
    ticket_free(t);
  } else if (t->state == RUNNING) {
    t->dropped = 1; /* its thread frees it */
  } else if (l->unhealthy_since && !l->running && !l->probes && !l->stop) {
    t->dropped = 1; /* kept queued as a probe: the lister learns when the store is back */
    l->probes++;
  } else {
    esr_cplist_ticket **p = &l->head, *prev = NULL;
    while (*p && *p != t) {
      prev = *p;
      p = &(*p)->next;
    }
    if (*p) *p = t->next;
    if (l->tail == t) l->tail = prev;
    ticket_free(t);
  }
  pthread_mutex_unlock(&l->mu);
}

void esr_cplister_report(esr_cplister *l, esr_code rc) {
  if (!l || rc == ESR_E_STATE || rc == ESR_E_CORRUPT || rc == ESR_E_NOMEM) return; /* says nothing of the store */
  pthread_mutex_lock(&l->mu);
  if (rc == ESR_E_OK)
    l->unhealthy_since = 0;
  else
    mark_unhealthy(l, esr_now_ms());
  pthread_mutex_unlock(&l->mu);
}

int64_t esr_cplister_unhealthy_ms(esr_cplister *l) {
  pthread_mutex_lock(&l->mu);
  int64_t since = l->unhealthy_since;
  pthread_mutex_unlock(&l->mu);
  if (!since) return 0;
  int64_t ms = esr_now_ms() - since;
  return ms > 0 ? ms : 1;
}

const char *esr_cplister_url(const esr_cplister *l) { return l->url; }
