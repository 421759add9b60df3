/* assign.c — the Kafka side of the worker, on the main thread: the group's rebalance callback (eager or cooperative)
 * and static assignment, which apply thread owns which partition (the least loaded one, when a partition arrives), and
 * opening and closing partitions by requests to their owners, in parallel, waiting for each (a partition is released
 * only after its owner committed). Nothing is dropped silently: a partition that cannot be opened is logged by its
 * owner, and running out of memory stops the worker. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "log.h"
#include "worker_int.h"

/* Sends one request of `kind` to every applier and waits for all. Main thread only (it owns every `bcast`). */
void esr__assign_broadcast(esr_worker *w, ctl_kind kind) {
  for (int i = 0; i < w->n_appliers; i++) {
    if (!w->appliers[i].started) continue;
    w->appliers[i].bcast = (ctl){.kind = kind};
    esr__applier_submit(&w->appliers[i], &w->appliers[i].bcast);
  }
  for (int i = 0; i < w->n_appliers; i++)
    if (w->appliers[i].started) esr__applier_wait(&w->appliers[i], &w->appliers[i].bcast);
}

static int *owner_ref(esr_worker *w, size_t t, int32_t p) {
  if ((size_t)p >= w->owner_cap[t]) {
    size_t cap = (size_t)p + 16;
    int *g = realloc(w->owner[t], cap * sizeof *g);
    if (!g) return NULL;
    for (size_t i = w->owner_cap[t]; i < cap; i++) g[i] = -1;
    w->owner[t] = g;
    w->owner_cap[t] = cap;
  }
  return &w->owner[t][p];
}

static applier *least_loaded(esr_worker *w) {
  applier *best = &w->appliers[0];
  for (int i = 1; i < w->n_appliers; i++)
    if (w->appliers[i].owned < best->owned) best = &w->appliers[i];
  return best;
}

static void fail_nomem(esr_worker *w, const char *what) {
  esr_error e;
  esr_error_set(&e, ESR_E_NOMEM, 0, "out of memory while %s: stopping the worker rather than drop a partition", what);
  esr__worker_fatal(w, &e);
}

/* Asks the partition's owner (chosen now when it has none) to open it; NULL when it cannot be asked. */
static applier *request_open(esr_worker *w, const rd_kafka_topic_partition_t *tp, ctl *c) {
  int t = esr__worker_topic_index(w, tp->topic);
  if (t < 0) {
    esr_log(ESR_LOG_ERROR, "worker", "%s[%d] was assigned but is not in topics: not consuming it", tp->topic,
            (int)tp->partition);
    return NULL;
  }
  int *owner = owner_ref(w, (size_t)t, tp->partition);
  if (!owner) {
    fail_nomem(w, "assigning a partition");
    return NULL;
  }
  applier *a = *owner >= 0 ? &w->appliers[*owner] : least_loaded(w);
  if (*owner < 0) {
    a->owned++; /* counted now, so that the next partition of this list goes to the next least loaded thread */
    *owner = a->index;
  }
  *c = (ctl){.kind = CTL_OPEN, .topic = (size_t)t, .partition = tp->partition};
  esr__applier_submit(a, c);
  return a;
}

/* Waits for an open request; adds the partition to `ok` at its start offset, or gives up its ownership. */
static void finish_open(esr_worker *w, applier *a, ctl *c, const rd_kafka_topic_partition_t *tp,
                        rd_kafka_topic_partition_list_t *ok) {
  esr__applier_wait(a, c);
  if (c->offset < 0) { /* not opened (the owner logged why): not owned */
    a->owned--;
    w->owner[c->topic][c->partition] = -1;
    return;
  }
  rd_kafka_queue_t *pq = rd_kafka_queue_get_partition(w->rk, tp->topic, tp->partition);
  if (pq) {
    rd_kafka_queue_forward(pq, a->queue);
    rd_kafka_queue_destroy(pq);
  }
  rd_kafka_topic_partition_list_add(ok, tp->topic, tp->partition)->offset = c->offset;
}

/* Opens the listed partitions on their appliers (in parallel; one at a time when memory is short), forwards each
 * one's queue to its owner and returns the list to assign, each at its stored next offset. A partition that cannot be
 * opened is left out, and its owner logged why. */
static rd_kafka_topic_partition_list_t *open_partitions(esr_worker *w, const rd_kafka_topic_partition_list_t *parts) {
  rd_kafka_topic_partition_list_t *ok = rd_kafka_topic_partition_list_new(parts->cnt ? parts->cnt : 1);
  ctl *cs = calloc((size_t)parts->cnt + 1, sizeof *cs);
  applier **who = calloc((size_t)parts->cnt + 1, sizeof *who);
  if (!cs || !who) {
    for (int i = 0; i < parts->cnt; i++) {
      ctl c;
      applier *a = request_open(w, &parts->elems[i], &c);
      if (a) finish_open(w, a, &c, &parts->elems[i], ok);
    }
  } else {
    for (int i = 0; i < parts->cnt; i++) who[i] = request_open(w, &parts->elems[i], &cs[i]);
    for (int i = 0; i < parts->cnt; i++)
      if (who[i]) finish_open(w, who[i], &cs[i], &parts->elems[i], ok);
  }
  free(cs);
  free(who);
  return ok;
}

/* Asks the partition's owner to commit and close it; NULL when this worker does not own it. */
static applier *request_close(esr_worker *w, const rd_kafka_topic_partition_t *tp, ctl *c) {
  int t = esr__worker_topic_index(w, tp->topic);
  if (t < 0 || (size_t)tp->partition >= w->owner_cap[t]) return NULL;
  int *owner = &w->owner[t][tp->partition];
  if (*owner < 0) { /* refused at assignment (not opened): it leaves this worker now */
    esr_metrics_state(esr_metrics_partition_find(tp->topic, tp->partition), ESR_PSTATE_UNOWNED);
    return NULL;
  }
  applier *a = &w->appliers[*owner];
  a->owned--;
  *owner = -1;
  *c = (ctl){.kind = CTL_CLOSE, .topic = (size_t)t, .partition = tp->partition};
  esr__applier_submit(a, c);
  return a;
}

/* Asks each partition's owner to commit and close it (in parallel; one at a time when memory is short), and waits. */
static void close_partitions(esr_worker *w, const rd_kafka_topic_partition_list_t *parts) {
  ctl *cs = calloc((size_t)parts->cnt + 1, sizeof *cs);
  applier **who = calloc((size_t)parts->cnt + 1, sizeof *who);
  if (!cs || !who) {
    for (int i = 0; i < parts->cnt; i++) {
      ctl c;
      applier *a = request_close(w, &parts->elems[i], &c);
      if (a) esr__applier_wait(a, &c);
    }
  } else {
    for (int i = 0; i < parts->cnt; i++) who[i] = request_close(w, &parts->elems[i], &cs[i]);
    for (int i = 0; i < parts->cnt; i++)
      if (who[i]) esr__applier_wait(who[i], &cs[i]);
  }
  free(cs);
  free(who);
}

/* Every partition some applier owns, as a list. */
static rd_kafka_topic_partition_list_t *owned_partitions(esr_worker *w) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
  for (size_t t = 0; t < w->cfg->n_topics; t++)
    for (size_t p = 0; p < w->owner_cap[t]; p++)
      if (w->owner[t][p] >= 0) rd_kafka_topic_partition_list_add(l, w->cfg->topics[t], (int32_t)p);
  return l;
}

void esr__assign_close_all(esr_worker *w) {
  rd_kafka_topic_partition_list_t *l = owned_partitions(w);
  close_partitions(w, l);
  rd_kafka_topic_partition_list_destroy(l);
}

void esr__assign_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                         void *opaque) {
  esr_worker *w = opaque;
  int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
  rd_kafka_error_t *e = NULL;
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    esr_metrics_rebalance();
    rd_kafka_topic_partition_list_t *ok = open_partitions(w, parts);
    if (cooperative)
      e = rd_kafka_incremental_assign(rk, ok);
    else
      rd_kafka_assign(rk, ok);
    rd_kafka_topic_partition_list_destroy(ok);
  } else {
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
      close_partitions(w, parts);
    } else {
      esr_log(ESR_LOG_ERROR, "worker", "rebalance error: %s; releasing every partition", rd_kafka_err2str(err));
      esr__assign_close_all(w);
    }
    if (cooperative && err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
      e = rd_kafka_incremental_unassign(rk, parts);
    else
      rd_kafka_assign(rk, NULL);
  }
  if (e) {
    esr_log(ESR_LOG_ERROR, "worker", "rebalance: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
  }
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) esr_metrics_phase(ESR_PHASE_RUNNING); /* joined: no longer starting */
}

/* A message on the main queue means a partition's queue was not forwarded: never drop it silently (the applier
 * would take the next one for a legitimate gap), rewind its owner to the stored position instead. */
void esr__assign_stray(esr_worker *w, rd_kafka_message_t *m) {
  if (m->err) {
    esr_log(ESR_LOG_WARN, "kafka", "consumer: %s", rd_kafka_message_errstr(m));
    return;
  }
  int t = esr__worker_topic_index(w, rd_kafka_topic_name(m->rkt));
  int owner = t >= 0 && (size_t)m->partition < w->owner_cap[t] ? w->owner[t][m->partition] : -1;
  esr_log(ESR_LOG_ERROR, "worker", "%s[%d]@%" PRId64 " arrived on the main queue; rewinding the partition",
          rd_kafka_topic_name(m->rkt), (int)m->partition, m->offset);
  if (owner < 0) return;
  ctl c = {.kind = CTL_REWIND, .topic = (size_t)t, .partition = m->partition};
  esr__applier_submit(&w->appliers[owner], &c);
  esr__applier_wait(&w->appliers[owner], &c);
}

/* Static assignment: the configured partitions of every topic, each at its stored offset. */
esr_code esr__assign_static(esr_worker *w, esr_error *err) {
  rd_kafka_topic_partition_list_t *want = rd_kafka_topic_partition_list_new(16);
  esr_code rc = ESR_E_OK;
  for (size_t t = 0; t < w->cfg->n_topics; t++) {
    const char *name = w->cfg->topics[t];
    int count;
    if ((rc = esr_kafka_partition_count(w->rk, name, 10000, &count, err)) != ESR_E_OK) goto out;
    for (size_t i = 0; i < w->cfg->n_partitions; i++) {
      if (w->cfg->partitions[i] >= count) {
        rc = esr_error_set(err, ESR_E_CONFIG, 0,
                           "config: partitions: topic %s has %d partitions (0-%d); partition %d does not exist", name,
                           count, count - 1, w->cfg->partitions[i]);
        goto out;
      }
    }
    int owned = 0;
    for (int p = 0; p < count; p++) {
      if (!esr_config_static_owns(w->cfg, p)) continue;
      owned++;
      rd_kafka_topic_partition_list_add(want, name, p);
    }
    if (!owned)
      esr_log(ESR_LOG_WARN, "worker", "topic %s: instance %d/%d owns none of its %d partitions", name,
              w->cfg->instance_index, w->cfg->instance_count, count);
  }
  rd_kafka_topic_partition_list_t *ok = open_partitions(w, want);
  rd_kafka_resp_err_t e = rd_kafka_assign(w->rk, ok);
  rd_kafka_topic_partition_list_destroy(ok);
  if (e) rc = esr_error_set(err, ESR_E_KAFKA, e, "assign: %s", rd_kafka_err2str(e));
out:
  rd_kafka_topic_partition_list_destroy(want);
  return rc;
}

esr_code esr__assign_subscribe(esr_worker *w, esr_error *err) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)w->cfg->n_topics);
  for (size_t t = 0; t < w->cfg->n_topics; t++)
    rd_kafka_topic_partition_list_add(l, w->cfg->topics[t], RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t e = rd_kafka_subscribe(w->rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) return esr_error_set(err, ESR_E_KAFKA, e, "subscribe: %s", rd_kafka_err2str(e));
  return ESR_E_OK;
}
