/* applier.c — an apply thread: its mailbox of requests from the main thread (open, close, drain, rewind, exit), its
 * loop over the queue its partitions' messages are forwarded to (up to ROUND messages between looks at batches, the
 * outbox and requests), batching that adapts to the load, and idle housekeeping. Its partitions' lives are in slot.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "crashguard.h"
#include "json_arena.h"
#include "log.h"
#include "worker_int.h"

#define FOR_EACH_SLOT(a, s)                                                                                            \
  for (size_t t_ = 0; t_ < (a)->w->cfg->n_topics; t_++)                                                                \
    for (size_t p_ = 0; p_ < (a)->topics[t_].cap; p_++)                                                                \
      if (((s) = (a)->topics[t_].by_partition[p_]))

static slot *slot_of_message(applier *a, const rd_kafka_message_t *m) {
  size_t n = a->w->cfg->n_topics;
  for (size_t t = 0; t < n; t++)
    if (a->topics[t].rkt == m->rkt) return esr__slot_find(a, t, m->partition);
  int t = esr__worker_topic_index(a->w, rd_kafka_topic_name(m->rkt));
  if (t < 0) return NULL;
  a->topics[t].rkt = m->rkt;
  return esr__slot_find(a, (size_t)t, m->partition);
}

void esr__applier_delivery(void *opaque, const esr_delivery *d) {
  applier *a = opaque;
  size_t t = (size_t)(d->sink >> 48);
  int32_t partition = (int32_t)((d->sink >> 16) & 0xffffffff);
  if (t >= a->w->cfg->n_topics) return;
  slot *s = esr__slot_find(a, t, partition);
  if (!s || (s->gen & 0xffff) != (d->sink & 0xffff)) return; /* the partition moved on; its next owner resends */
  if (!d->ok)
    esr_log(ESR_LOG_WARN, "outbox", "%s[%d]: outbox row %" PRId64 " not delivered: %s; it will be sent again",
            esr__slot_topic(a, s), (int)partition, d->seq, d->error);
  esr_partition_delivered(s->p, d);
}

static void on_message(applier *a, rd_kafka_message_t *m) {
  if (m->err) {
    slot *s = m->rkt ? slot_of_message(a, m) : NULL;
    if (s && !s->paused &&
        (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET || m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)) {
      esr__slot_gap(a, s);
      return;
    }
    if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
      char buf[512];
      rd_kafka_fatal_error(a->w->rk, buf, sizeof buf);
      esr_error e;
      esr_error_set(&e, ESR_E_KAFKA, m->err, "fatal Kafka error: %s", buf);
      esr__worker_fatal(a->w, &e);
      return;
    }
    esr_log(ESR_LOG_WARN, "kafka", "consumer: %s%s%s", rd_kafka_message_errstr(m), m->rkt ? " on " : "",
            m->rkt ? rd_kafka_topic_name(m->rkt) : "");
    return;
  }
  slot *s = slot_of_message(a, m);
  if (!s || s->paused) return; /* not ours any more, or stopped: it will be fetched again from the stored position */
  esr_message em = {m->offset, m->key, m->key_len, m->payload, m->len};
  esr_error err;
  int was_open = esr_partition_batch_events(s->p) > 0;
  esr_code rc = esr_partition_apply(s->p, &em, &err);
  atomic_fetch_add_explicit(&a->consumed, 1, memory_order_relaxed);
  if (rc == ESR_E_OK) {
    if (!was_open && esr_partition_batch_events(s->p) > 0) a->open_batches++;
    if (esr_partition_batch_events(s->p) >= a->w->cfg->batch_max_events || esr_partition_commit_due(s->p))
      esr__slot_commit(a, s);
    return;
  }
  if (rc == ESR_E_PLUGIN) {
    esr__slot_commit(a, s); /* keep the events before the one the handler refused */
    esr__slot_stop(a, s, err.msg);
    return;
  }
  if (rc == ESR_E_REDO) { /* rolled back on purpose (partition.c's fast path): again from the committed position */
    esr__slot_pause(a, s, 0);
    return;
  }
  esr__slot_lost_batch(a, s, &err);
}

/* Whether the log holds events of this partition past the open batch that have not arrived yet (librdkafka's cached
 * high watermark, from the last fetch response): the thread idles because fetching is slower than applying (a broker
 * serving small message sets), not because the partition is caught up. */
static int behind_log(applier *a, slot *s) {
  int64_t lo = -1, hi = -1;
  return rd_kafka_get_watermark_offsets(a->w->rk, esr__slot_topic(a, s), s->partition, &lo, &hi) ==
             RD_KAFKA_RESP_ERR_NO_ERROR &&
         hi > esr_partition_next_offset(s->p);
}

/* Commits batches that are due, retries paused partitions, runs outbox housekeeping. Batching adapts to the load:
 * when the thread's queue is empty (idle: it keeps up with the log) every open batch of a partition caught up with
 * its log is committed at once, so that a quiet partition's events are durable within milliseconds (one still behind
 * its log waits for its next fetch, up to the age limit: a slow fetch must not turn a catch-up into tiny batches); while a backlog waits, a batch may stay open up to 10 x
 * batch.max.ms so that it fills (one transaction per partition per batch.max.events: with many partitions per thread,
 * the plain age limit would commit batches of a few dozen events during a catch-up). */
static void tick(applier *a, int64_t now, int idle) {
  int open = 0;
  slot *s;
  int64_t max_age = a->w->cfg->batch_max_ms;
  if (!idle && rd_kafka_queue_length(a->queue) >= (size_t)a->w->cfg->batch_max_events) max_age *= 10;
  FOR_EACH_SLOT(a, s) {
    if (s->corrupt) {
      esr__slot_rebuild(a, s, s->corrupt_why); /* here, where nothing else holds the slot */
      continue;
    }
    if (s->verify) {
      esr__slot_check_verdict(a, s);
      if (!(s = a->topics[t_].by_partition[p_])) continue; /* rebuilt or refused */
    }
    if (s->paused) {
      if (s->retry_at && now >= s->retry_at) esr__slot_resume(a, s);
      continue;
    }
    if (esr_partition_batch_events(s->p) > 0) {
      if ((idle && !behind_log(a, s)) || now - esr_partition_batch_started(s->p) >= max_age)
        esr__slot_commit(a, s);
      else
        open++;
    }
    esr_error err;
    if (esr_partition_tick(s->p, &err) != ESR_E_OK) esr__slot_lost_batch(a, s, &err);
    else esr__gate_want(a, s, 1); /* rows the last publication left (a full queue, a resend) */
    esr__slot_checkpoint_if_old(a, s, now);
    esr__slot_sample(a, s, now);
  }
  a->open_batches = open;
  esr__gate_round(a);
}

/* Before shutdown: commit everything, publish the outbox (bounded), and stop applying. */
static void drain(applier *a) {
  slot *s;
  FOR_EACH_SLOT(a, s) if (!s->paused) esr__slot_commit(a, s);
  esr__gate_flush(a, NULL, 0, esr_now_ms() + SHUTDOWN_FLUSH_MS);
  esr__gate_log_stats(a);
  a->draining = 1;
}

static void serve_ctl(applier *a, ctl *c) {
  slot *s;
  switch (c->kind) {
  case CTL_OPEN: c->offset = esr__slot_open(a, c->topic, c->partition); break;
  case CTL_CLOSE:
    if ((s = esr__slot_find(a, c->topic, c->partition))) esr__slot_close(a, s);
    break;
  case CTL_REWIND:
    if ((s = esr__slot_find(a, c->topic, c->partition)) && !s->paused) {
      esr_partition_rollback(s->p);
      esr__slot_pause(a, s, 0);
    }
    break;
  case CTL_DRAIN: drain(a); break;
  case CTL_EXIT: a->exit = 1; break;
  }
}

static void serve_ctls(applier *a) {
  pthread_mutex_lock(&a->mu);
  ctl *c = a->head;
  a->head = a->tail = NULL;
  pthread_mutex_unlock(&a->mu);
  while (c) {
    ctl *next = c->next;
    serve_ctl(a, c);
    pthread_mutex_lock(&a->mu);
    c->done = 1;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    c = next;
  }
}

void *esr__applier_main(void *arg) {
  applier *a = arg;
  char name[16];
  snprintf(name, sizeof name, "esr-apply-%d", a->index);
  pthread_setname_np(pthread_self(), name); /* for top -H, perf, gdb */
  esr_crash_thread_begin(); /* a stack overflow in a handler must still be recorded */
  int64_t last_tick = esr_now_ms();
  while (!a->exit) {
    if (atomic_exchange(&a->ctl_pending, 0)) serve_ctls(a);
    if (a->exit) break;
    /* A round: wait for a first message, then take what is queued, up to ROUND messages or a request. */
    int n = 0;
    rd_kafka_message_t *m;
    while (n < ROUND && !atomic_load_explicit(&a->ctl_pending, memory_order_relaxed) &&
           !atomic_load_explicit(&a->check_ready, memory_order_relaxed) &&
           (m = rd_kafka_consume_queue(a->queue, n ? 0 : a->open_batches || a->check_in_flight ? IDLE_MS : 100))) {
      if (!a->draining) on_message(a, m);
      rd_kafka_message_destroy(m);
      n++;
    }
    esr_publisher_poll(a->pub, 0);
    esr__gate_poll(a);
    int64_t now = esr_now_ms();
    esr_metrics_beat(a->index, now); /* /healthz: this loop came round */
    if (!a->draining && (now - last_tick >= TICK_MS || !n)) {
      tick(a, now, !n); /* no message for IDLE_MS: the thread keeps up, commit what is open */
      last_tick = now;
    }
  }
  esr_crash_thread_end();
  esr_json_arena_release();
  return NULL;
}

void esr__applier_submit(applier *a, ctl *c) {
  c->done = 0;
  c->next = NULL;
  pthread_mutex_lock(&a->mu);
  if (a->tail)
    a->tail->next = c;
  else
    a->head = c;
  a->tail = c;
  pthread_mutex_unlock(&a->mu);
  atomic_store(&a->ctl_pending, 1);
  rd_kafka_queue_yield(a->queue); /* wakes a wait in rd_kafka_consume_queue */
}

void esr__applier_wait(applier *a, ctl *c) {
  pthread_mutex_lock(&a->mu);
  while (!c->done) pthread_cond_wait(&a->cv, &a->mu);
  pthread_mutex_unlock(&a->mu);
}

esr_code esr__applier_init(esr_worker *w, applier *a, int index, esr_error *err) {
  a->w = w;
  a->index = index;
  pthread_mutex_init(&a->mu, NULL);
  pthread_cond_init(&a->cv, NULL);
  if (!(a->topics = calloc(w->cfg->n_topics, sizeof *a->topics)))
    return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  esr_code prc = esr_publisher_new(w->cfg, esr__applier_delivery, a, &a->pub, err);
  if (prc != ESR_E_OK) return prc;
  esr_publisher_warm(a->pub, w->cfg->dlq_topic);
  esr_code grc = esr__gate_init(a, err);
  if (grc != ESR_E_OK) return grc;
  if (w->cfg->checkpoint_store) {
    esr_cpstore_opts so = {.endpoint = w->cfg->checkpoint_s3_endpoint, .region = w->cfg->checkpoint_s3_region};
    esr_code rc = esr_cpstore_open(w->cfg->checkpoint_store, &so, &a->store, err);
    if (rc != ESR_E_OK) return esr_error_prefix(err, "config: checkpoint.store");
  }
  a->recovery = (esr_recovery_env){.state_dir = w->cfg->state_dir,
                                   .cp_dir = w->cp_dir,
                                   .store = a->store,
                                   .lister = esr_checkpointer_lister(w->checkpointer),
                                   .store_wait_ms = w->cfg->recovery_store_wait_ms,
                                   .store_wait_cold_ms = w->cfg->recovery_store_wait_cold_ms,
                                   .quick_check = 0, /* checked in the background: see check_verdict */
                                   .bounds = esr__worker_log_bounds,
                                   .bounds_arg = w};
  a->env = (esr_partition_env){.registry = &w->registry,
                               .publisher = a->pub,
                               .state_dir = w->cfg->state_dir,
                               .dlq_topic = w->cfg->dlq_topic,
                               .store = {.cache_mb = w->cfg->sqlite_cache_mb},
                               .max_crash_retries = w->cfg->max_crash_retries,
                               .fast_path = 1,
                               .batch_max = w->cfg->batch_max_events,
                               .last_crash = &w->last_crash,
                               .schemas = w->schemas,
                               .outputs = {.readback = w->cfg->outputs_readback,
                                           .max_bytes = (size_t)w->cfg->outputs_readback_max_mb << 20}};
  return ESR_E_OK;
}

void esr__applier_fini(esr_worker *w, applier *a) {
  if (a->topics) {
    for (size_t t = 0; t < w->cfg->n_topics; t++) {
      for (size_t p = 0; p < a->topics[t].cap; p++) {
        if (a->topics[t].by_partition[p]) {
          esr__gate_slot_close(a, a->topics[t].by_partition[p]);
          esr_partition_close(a->topics[t].by_partition[p]->p);
          free(a->topics[t].by_partition[p]);
        }
      }
      free(a->topics[t].by_partition);
    }
    free(a->topics);
  }
  if (a->queue) rd_kafka_queue_destroy(a->queue);
  esr__gate_fini(a);
  esr_publisher_free(a->pub);
  esr_cpstore_close(a->store);
  pthread_mutex_destroy(&a->mu);
  pthread_cond_destroy(&a->cv);
}
