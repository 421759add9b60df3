/* worker.c — the `esr run` process: assignment (group or static) on the main thread, application on apply threads.
 *
 * Threads. The main thread owns the consumer handle: it serves rebalance callbacks and consumer-wide errors in
 * rd_kafka_consumer_poll. Each apply thread ("applier") owns a set of partitions and alone touches their SQLite
 * connections. librdkafka hands messages to the owner without a queue of ours: each assigned partition's queue is
 * forwarded to its applier's queue before the partition is assigned, and the applier consumes that queue with
 * rd_kafka_consume_queue, up to ROUND messages between looks at its batches, outbox and requests. Not the batch or
 * callback paths: 2.0.2's rd_kafka_consume_batch_queue does not drop messages a seek made outdated, and
 * rd_kafka_consume_callback_queue takes the whole queue out at once, which hides it from the fetcher's
 * queued.max.messages.kbytes bound (measured: 985 MB RSS instead of 375 MB for a 2 M-event backlog).
 * Every applier has its own dead-letter producer, so delivery reports come back on the thread that owns the partition.
 * The main thread talks to appliers with control requests (open, close, drain, rewind, exit) and waits for them: a
 * partition is released only after its owner committed its batch.
 */
#include "esr/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "esr/checkpointer.h"
#include "esr/clock.h"
#include "esr/crashguard.h"
#include "esr/host.h"
#include "esr/json_arena.h"
#include "esr/kafka.h"
#include "esr/log.h"
#include "esr/partition.h"
#include "esr/recovery.h"

#define RETRY_BACKOFF_MS 1000
#define TICK_MS 20
#define IDLE_MS 5 /* no message for this long while batches are open: commit them */
#define ROUND 512 /* messages applied between two looks at batches, outbox and requests */
#define STATS_MS 10000
#define REVOKE_FLUSH_MS 5000
#define SHUTDOWN_FLUSH_MS 10000
#define RELEASE_CHECKPOINT_MS 120000

typedef struct applier applier;

typedef struct slot {
  esr_partition *p;
  int32_t partition;
  size_t topic;
  uint32_t gen;
  int paused;       /* stopped for good (gap, fatal handler) or waiting for retry_at */
  int64_t retry_at; /* 0: stopped for good */
  int64_t cp_offset, cp_at; /* the last checkpoint asked for: at which offset, when (esr_now_ms) */
  int64_t replay_end;       /* log end seen by recovery: "caught up" is logged once the partition reaches it */
  int64_t replay_from, replay_started;
  esr_verify_ticket *verify; /* the live database's integrity check under way: outbox and checkpoints wait for it */
} slot;

typedef struct topic_slots {
  rd_kafka_topic_t *rkt; /* as seen on messages, to find the topic without strcmp */
  slot **by_partition;
  size_t cap;
} topic_slots;

typedef enum ctl_kind { CTL_OPEN, CTL_CLOSE, CTL_DRAIN, CTL_REWIND, CTL_EXIT } ctl_kind;

/* A request from the main thread to an applier; `done` is set under the applier's mutex. */
typedef struct ctl {
  ctl_kind kind;
  size_t topic;
  int32_t partition;
  int64_t offset; /* CTL_OPEN: where the partition starts; -1 when it could not be opened */
  int done;
  struct ctl *next;
} ctl;

struct applier {
  esr_worker *w;
  int index;
  pthread_t thread;
  int started;
  rd_kafka_queue_t *queue;
  esr_publisher *pub;
  esr_partition_env env;
  esr_cpstore *store; /* the remote checkpoint store, for recovery on this thread */
  esr_recovery_env recovery;
  topic_slots *topics;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  ctl *head, *tail;
  int owned; /* partitions owned; changed by the main thread only */
  int draining;
  int exit;
  int open_batches;
  _Atomic int ctl_pending; /* the main thread queued a request: end the round */
  _Atomic int64_t consumed;
};

struct esr_worker {
  const esr_config *cfg;
  esr_registry registry;
  rd_kafka_t *rk;
  esr_checkpointer *checkpointer;
  char cp_dir[4096];
  esr_crash_record last_crash; /* how the previous process died, if a fatal signal was recorded */
  esr_schema_set *schemas;
  int crash_record_open;
  applier *appliers;
  int n_appliers;
  int **owner; /* owner[topic][partition]: applier index or -1; main thread only */
  size_t *owner_cap;
  int lock_fd;
  int group;        /* group mode */
  int commit_kafka; /* store offsets in Kafka (a group.id is set) */
  _Atomic uint32_t next_gen;
  _Atomic int fatal;
  pthread_mutex_t fatal_mu;
  esr_error fatal_err;
  int64_t consumed_at_last_stats, last_stats;
};

static void set_fatal(esr_worker *w, const esr_error *err) {
  pthread_mutex_lock(&w->fatal_mu);
  if (!atomic_load(&w->fatal)) w->fatal_err = *err;
  atomic_store(&w->fatal, 1);
  pthread_mutex_unlock(&w->fatal_mu);
}

/* ---- applier side: everything below runs on the applier's thread, except where said ---- */

static slot *find_slot(applier *a, size_t t, int32_t partition) {
  topic_slots *ts = &a->topics[t];
  if (partition < 0 || (size_t)partition >= ts->cap) return NULL;
  return ts->by_partition[partition];
}

static int topic_index(const esr_worker *w, const char *name) {
  for (size_t t = 0; t < w->cfg->n_topics; t++)
    if (strcmp(w->cfg->topics[t], name) == 0) return (int)t;
  return -1;
}

static slot *slot_of_message(applier *a, const rd_kafka_message_t *m) {
  size_t n = a->w->cfg->n_topics;
  for (size_t t = 0; t < n; t++)
    if (a->topics[t].rkt == m->rkt) return find_slot(a, t, m->partition);
  int t = topic_index(a->w, rd_kafka_topic_name(m->rkt));
  if (t < 0) return NULL;
  a->topics[t].rkt = m->rkt;
  return find_slot(a, (size_t)t, m->partition);
}

static const char *tname(const applier *a, const slot *s) { return a->w->cfg->topics[s->topic]; }

static uint64_t sink_of(const slot *s) {
  return ((uint64_t)s->topic << 48) | ((uint64_t)(uint32_t)s->partition << 16) | (s->gen & 0xffff);
}

static void on_delivery(void *opaque, uint64_t sink, int64_t seq, int ok, const char *error) {
  applier *a = opaque;
  size_t t = (size_t)(sink >> 48);
  int32_t partition = (int32_t)((sink >> 16) & 0xffffffff);
  if (t >= a->w->cfg->n_topics) return;
  slot *s = find_slot(a, t, partition);
  if (!s || (s->gen & 0xffff) != (sink & 0xffff)) return; /* the partition moved on; its next owner resends */
  if (!ok)
    esr_log(ESR_LOG_WARN, "outbox", "%s[%d]: outbox row %" PRId64 " not delivered: %s; it will be sent again",
            tname(a, s), (int)partition, seq, error);
  esr_partition_delivered(s->p, seq, ok);
}

static rd_kafka_topic_partition_list_t *one_partition(const applier *a, const slot *s, int64_t offset) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, tname(a, s), s->partition)->offset = offset;
  return l;
}

/* Stops consuming a partition: for good (retry_in < 0) or until a retry that rewinds to the stored position. */
static void pause_slot(applier *a, slot *s, int64_t retry_in) {
  rd_kafka_topic_partition_list_t *l = one_partition(a, s, RD_KAFKA_OFFSET_INVALID);
  rd_kafka_pause_partitions(a->w->rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  s->paused = 1;
  s->retry_at = retry_in < 0 ? 0 : esr_now_ms() + retry_in;
}

/* After a lost batch: resume and seek back to the last committed position. The seek's version barrier makes
 * librdkafka drop messages fetched before it. */
static void resume_slot(applier *a, slot *s) {
  int64_t next = esr_partition_next_offset(s->p);
  rd_kafka_topic_partition_list_t *l = one_partition(a, s, next);
  rd_kafka_resume_partitions(a->w->rk, l);
  rd_kafka_error_t *e = rd_kafka_seek_partitions(a->w->rk, l, 5000);
  if (!e && l->elems[0].err) e = rd_kafka_error_new(l->elems[0].err, "%s", rd_kafka_err2str(l->elems[0].err));
  rd_kafka_topic_partition_list_destroy(l);
  if (e) {
    esr_log(ESR_LOG_WARN, "worker", "%s[%d]: seek to %" PRId64 " failed: %s; retrying", tname(a, s),
            (int)s->partition, next, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    pause_slot(a, s, RETRY_BACKOFF_MS);
    return;
  }
  esr_log(ESR_LOG_INFO, "worker", "%s[%d]: resuming at offset %" PRId64, tname(a, s), (int)s->partition, next);
  s->paused = 0;
  s->retry_at = 0;
}

static void rebuild_slot(applier *a, slot *s, const char *why);

static void lost_batch(applier *a, slot *s, const esr_error *err) {
  if (err->code == ESR_E_CORRUPT) { /* the database itself is damaged: retrying cannot help, the ladder can */
    rebuild_slot(a, s, err->msg);
    return;
  }
  esr_log(ESR_LOG_ERROR, "worker", "%s[%d]: batch rolled back (%s: %s); rewinding to offset %" PRId64 " in %d ms",
          tname(a, s), (int)s->partition, esr_code_name(err->code), err->msg, esr_partition_next_offset(s->p),
          RETRY_BACKOFF_MS);
  pause_slot(a, s, RETRY_BACKOFF_MS);
}

static void commit_slot(applier *a, slot *s) {
  if (!esr_partition_batch_events(s->p)) return;
  esr_error err;
  if (esr_partition_commit(s->p, &err) != ESR_E_OK) {
    lost_batch(a, s, &err);
    return;
  }
  if (a->w->commit_kafka) {
    rd_kafka_topic_partition_list_t *l = one_partition(a, s, esr_partition_next_offset(s->p));
    if (a->w->cfg->offsets_commit_sync)
      rd_kafka_commit(a->w->rk, l, 0);
    else
      rd_kafka_offsets_store(a->w->rk, l); /* committed in the background, coalesced; fails harmlessly mid-revoke */
    rd_kafka_topic_partition_list_destroy(l);
  }
  if (esr_partition_publish(s->p, &err) != ESR_E_OK)
    esr_log(ESR_LOG_WARN, "outbox", "%s[%d]: publishing: %s", tname(a, s), (int)s->partition, err.msg);
  int64_t next = esr_partition_next_offset(s->p);
  if (s->replay_end < 0) { /* not asked at assignment: librdkafka's cached high watermark, once fetching began */
    int64_t lo = -1, hi = -1;
    if (rd_kafka_get_watermark_offsets(a->w->rk, tname(a, s), s->partition, &lo, &hi) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        hi >= 0)
      s->replay_end = hi > s->replay_from ? hi : 0;
  }
  if (s->replay_end > 0 && next >= s->replay_end) {
    int64_t ms = esr_now_ms() - s->replay_started;
    esr_log(ESR_LOG_INFO, "worker", "%s[%d]: caught up with the log seen at assignment: replayed %" PRId64
            " events in %" PRId64 " ms", tname(a, s), (int)s->partition, next - s->replay_from, ms);
    s->replay_end = 0;
  }
  const esr_config *cfg = a->w->cfg;
  if (!s->verify && cfg->checkpoint_interval_events > 0 && next - s->cp_offset >= cfg->checkpoint_interval_events) {
    esr_checkpointer_request(a->w->checkpointer, tname(a, s), s->partition);
    s->cp_offset = next;
    s->cp_at = esr_now_ms();
  }
}

/* A changed partition whose last checkpoint is older than checkpoint.interval.ms gets one (called from tick). */
static void checkpoint_if_old(applier *a, slot *s, int64_t now) {
  const esr_config *cfg = a->w->cfg;
  int64_t next = esr_partition_committed(s->p)->next_offset;
  if (!s->verify && cfg->checkpoint_interval_ms > 0 && next > s->cp_offset &&
      now - s->cp_at >= cfg->checkpoint_interval_ms) {
    esr_checkpointer_request(a->w->checkpointer, tname(a, s), s->partition);
    s->cp_offset = next;
    s->cp_at = now;
  }
}

static void stop_slot(applier *a, slot *s, const char *why) {
  esr_log(ESR_LOG_ERROR, "worker", "%s[%d]: partition stopped: %s", tname(a, s), (int)s->partition, why);
  pause_slot(a, s, -1);
}

/* Opens the partition; returns the offset to start at, or -1 when it cannot be served. */
static int64_t open_slot(applier *a, size_t t, int32_t partition) {
  topic_slots *ts = &a->topics[t];
  if ((size_t)partition >= ts->cap) {
    size_t cap = (size_t)partition + 16;
    slot **g = realloc(ts->by_partition, cap * sizeof *g);
    if (!g) return -1;
    memset(g + ts->cap, 0, (cap - ts->cap) * sizeof *g);
    ts->by_partition = g;
    ts->cap = cap;
  }
  if (ts->by_partition[partition]) return esr_partition_next_offset(ts->by_partition[partition]->p);
  slot *s = calloc(1, sizeof *s);
  if (!s) return -1;
  s->topic = t;
  s->partition = partition;
  s->gen = atomic_fetch_add(&a->w->next_gen, 1) + 1;
  const char *topic = a->w->cfg->topics[t];
  esr_error err;
  int64_t t0 = esr_now_ms();
  esr_recovery_result rr;
  if (esr_recover(&a->recovery, topic, partition, &rr, &err) != ESR_E_OK) {
    esr_log(ESR_LOG_ERROR, "worker", "%s[%d]: partition stopped: %s", topic, (int)partition, err.msg);
    free(s);
    return -1;
  }
  esr_code orc = esr_partition_open(&a->env, topic, partition, sink_of(s), &s->p, &err);
  esr_recovery_result_release(&rr); /* after the store's open, which found the WAL index built */
  if (orc != ESR_E_OK) {
    esr_log(ESR_LOG_ERROR, "worker", "%s[%d]: cannot open the partition, not consuming it: %s", topic, (int)partition,
            err.msg);
    free(s);
    return -1;
  }
  ts->by_partition[partition] = s;
  const esr_position *pos = esr_partition_committed(s->p);
  int64_t now = esr_now_ms();
  s->cp_offset = pos->next_offset;
  s->cp_at = now;
  s->replay_from = pos->next_offset;
  s->replay_started = now;
  s->replay_end = rr.log_end < 0 ? -1 : rr.log_end > pos->next_offset ? rr.log_end : 0; /* -1: learn it later */
  char behind[64] = "";
  if (rr.log_end >= 0) snprintf(behind, sizeof behind, "; %" PRId64 " events to replay", rr.log_end - pos->next_offset);
  if (rr.step == ESR_RECOVERY_LIVE && a->w->cfg->recovery_quick_check &&
      (s->verify = esr_checkpointer_verify(a->w->checkpointer, topic, partition)))
    esr_partition_hold(s->p, 1); /* nothing from this database leaves the process before its check passes */
  esr_log(ESR_LOG_INFO, "worker",
          "%s[%d]: assigned; resuming at offset %" PRId64 " (%" PRId64 " applied, %" PRId64
          " dead-lettered so far; apply thread %d; opened in %" PRId64 " ms); recovery: %s in %" PRId64 " ms%s%s%s",
          topic, (int)partition, pos->next_offset, pos->applied, pos->dead, a->index, now - t0,
          esr_recovery_step_name(rr.step), rr.elapsed_ms, behind, rr.detail[0] ? "; " : "", rr.detail);
  if (esr_partition_publish(s->p, &err) != ESR_E_OK)
    esr_log(ESR_LOG_WARN, "outbox", "%s[%d]: publishing: %s", topic, (int)partition, err.msg);
  return pos->next_offset;
}

/* Commits, waits a bounded time for the partition's outbox deliveries, deletes what was acknowledged, closes. */
static void close_slot(applier *a, slot *s) {
  esr_error err;
  commit_slot(a, s);
  esr_partition_rollback(s->p); /* a batch that could not commit is redone by the next owner */
  int64_t next = esr_partition_committed(s->p)->next_offset;
  if (a->w->cfg->checkpoint_on_release && !s->verify && next > s->cp_offset && next > 0) {
    /* The next owner climbs the recovery ladder: leave it the newest state, so it replays (almost) nothing. */
    int64_t at = -1;
    if (esr_checkpointer_now(a->w->checkpointer, tname(a, s), s->partition, RELEASE_CHECKPOINT_MS, &at, &err) !=
        ESR_E_OK)
      esr_log(ESR_LOG_WARN, "checkpoint", "%s[%d]: no checkpoint at release: %s", tname(a, s), (int)s->partition,
              err.msg);
  }
  int64_t deadline = esr_now_ms() + REVOKE_FLUSH_MS;
  while (esr_partition_in_flight(s->p) > 0 && esr_now_ms() < deadline) esr_publisher_poll(a->pub, 50);
  if (esr_partition_tick(s->p, &err) != ESR_E_OK)
    esr_log(ESR_LOG_WARN, "outbox", "%s[%d]: %s", tname(a, s), (int)s->partition, err.msg);
  esr_log(ESR_LOG_INFO, "worker", "%s[%d]: released at offset %" PRId64, tname(a, s), (int)s->partition,
          esr_partition_committed(s->p)->next_offset);
  a->topics[s->topic].by_partition[s->partition] = NULL;
  esr_verify_release(s->verify);
  esr_partition_close(s->p);
  free(s);
}

/* The live database failed its background integrity check: nothing derived from it left the process (its outbox was
 * held), so drop what was applied since the restart, move the database aside, climb the ladder again and seek to
 * where the rebuilt partition starts. */
static void rebuild_slot(applier *a, slot *s, const char *why) {
  size_t t = s->topic;
  int32_t partition = s->partition;
  const char *topic = tname(a, s);
  a->topics[t].by_partition[partition] = NULL;
  esr_verify_release(s->verify);
  esr_partition_close(s->p); /* rolls back the open batch */
  free(s);
  char aside[4300];
  esr_recovery_quarantine_live(a->w->cfg->state_dir, topic, partition, aside, sizeof aside);
  esr_log(ESR_LOG_ERROR, "recovery", "%s[%d]: the live database failed its integrity check (%s): moved to %s; "
          "rebuilding the partition from the recovery ladder", topic, (int)partition, why, aside);
  int64_t off = open_slot(a, t, partition);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, topic, partition)->offset = off >= 0 ? off : RD_KAFKA_OFFSET_INVALID;
  if (off < 0) {
    rd_kafka_pause_partitions(a->w->rk, l); /* refused: open_slot said why */
  } else {
    rd_kafka_resume_partitions(a->w->rk, l); /* it may have been paused by the batch the corruption broke */
    rd_kafka_error_t *e = rd_kafka_seek_partitions(a->w->rk, l, 5000);
    if (e) {
      esr_log(ESR_LOG_ERROR, "recovery", "%s[%d]: seek to %" PRId64 " failed: %s", topic, (int)partition, off,
              rd_kafka_error_string(e));
      rd_kafka_error_destroy(e);
      slot *n = find_slot(a, t, partition);
      if (n) pause_slot(a, n, RETRY_BACKOFF_MS); /* the retry seeks again */
    }
  }
  rd_kafka_topic_partition_list_destroy(l);
}

/* Takes the verdict of a background integrity check, if it came. */
static void check_verdict(applier *a, slot *s) {
  const char *msg;
  int state = esr_verify_state(s->verify, &msg);
  if (state == ESR_VERIFY_PENDING) return;
  if (state == ESR_VERIFY_CORRUPT) {
    char why[400];
    snprintf(why, sizeof why, "%s", msg);
    rebuild_slot(a, s, why);
    return;
  }
  esr_verify_release(s->verify);
  s->verify = NULL;
  esr_partition_hold(s->p, 0);
  esr_error err;
  if (esr_partition_publish(s->p, &err) != ESR_E_OK)
    esr_log(ESR_LOG_WARN, "outbox", "%s[%d]: publishing: %s", tname(a, s), (int)s->partition, err.msg);
}

/* The stored offset is not in the log any more: never skip, stop the partition and say what is missing. */
static void gap(applier *a, slot *s) {
  int64_t lo = -1, hi = -1;
  rd_kafka_query_watermark_offsets(a->w->rk, tname(a, s), s->partition, &lo, &hi, 5000);
  int64_t need = esr_partition_next_offset(s->p);
  char why[512];
  snprintf(why, sizeof why,
           "the log no longer holds offset %" PRId64 " (needed to resume; the log now starts at %" PRId64
           " and ends at %" PRId64 "): %" PRId64 " events were deleted by retention before they were applied. "
           "Refusing to skip them: restore a checkpoint at offset >= %" PRId64 " into %s, or re-produce the events",
           need, lo, hi, lo > need ? lo - need : 0, lo, a->w->cfg->state_dir);
  stop_slot(a, s, why);
}

static void on_message(applier *a, rd_kafka_message_t *m) {
  if (m->err) {
    slot *s = m->rkt ? slot_of_message(a, m) : NULL;
    if (s && !s->paused &&
        (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET || m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)) {
      gap(a, s);
      return;
    }
    if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
      char buf[512];
      rd_kafka_fatal_error(a->w->rk, buf, sizeof buf);
      esr_error e;
      esr_error_set(&e, ESR_E_KAFKA, m->err, "fatal Kafka error: %s", buf);
      set_fatal(a->w, &e);
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
    if (esr_partition_batch_events(s->p) >= a->w->cfg->batch_max_events || esr_partition_careful(s->p))
      commit_slot(a, s);
    return;
  }
  if (rc == ESR_E_PLUGIN) {
    commit_slot(a, s); /* keep the events before the one the handler refused */
    stop_slot(a, s, err.msg);
    return;
  }
  lost_batch(a, s, &err);
}

#define FOR_EACH_SLOT(a, s)                                                                                            \
  for (size_t t_ = 0; t_ < (a)->w->cfg->n_topics; t_++)                                                                \
    for (size_t p_ = 0; p_ < (a)->topics[t_].cap; p_++)                                                                \
      if (((s) = (a)->topics[t_].by_partition[p_]))

/* Commits batches that are due, retries paused partitions, runs outbox housekeeping. Batching adapts to the load:
 * when the thread's queue is empty (idle: it keeps up with the log) every open batch is committed at once, so that a
 * quiet partition's events are durable within milliseconds; while a backlog waits, a batch may stay open up to 10 x
 * batch.max.ms so that it fills (one transaction per partition per batch.max.events: with many partitions per thread,
 * the plain age limit would commit batches of a few dozen events during a catch-up). */
static void tick(applier *a, int64_t now, int idle) {
  int open = 0;
  slot *s;
  int64_t max_age = a->w->cfg->batch_max_ms;
  if (!idle && rd_kafka_queue_length(a->queue) >= (size_t)a->w->cfg->batch_max_events) max_age *= 10;
  FOR_EACH_SLOT(a, s) {
    if (s->verify) {
      check_verdict(a, s);
      if (!(s = a->topics[t_].by_partition[p_])) continue; /* rebuilt or refused */
    }
    if (s->paused) {
      if (s->retry_at && now >= s->retry_at) resume_slot(a, s);
      continue;
    }
    if (esr_partition_batch_events(s->p) > 0) {
      if (idle || now - esr_partition_batch_started(s->p) >= max_age)
        commit_slot(a, s);
      else
        open++;
    }
    esr_error err;
    if (esr_partition_tick(s->p, &err) != ESR_E_OK) lost_batch(a, s, &err);
    checkpoint_if_old(a, s, now);
  }
  a->open_batches = open;
}

/* Before shutdown: commit everything, publish the outbox (bounded), and stop applying. */
static void drain(applier *a) {
  slot *s;
  FOR_EACH_SLOT(a, s) if (!s->paused) commit_slot(a, s);
  int64_t deadline = esr_now_ms() + SHUTDOWN_FLUSH_MS;
  for (;;) {
    int in_flight = 0;
    FOR_EACH_SLOT(a, s) in_flight += esr_partition_in_flight(s->p);
    if (!in_flight || esr_now_ms() >= deadline) break;
    esr_publisher_poll(a->pub, 50);
  }
  FOR_EACH_SLOT(a, s) {
    esr_error err;
    if (esr_partition_tick(s->p, &err) != ESR_E_OK)
      esr_log(ESR_LOG_WARN, "outbox", "%s[%d]: %s", tname(a, s), (int)s->partition, err.msg);
  }
  a->draining = 1;
}

static void serve_ctl(applier *a, ctl *c) {
  slot *s;
  switch (c->kind) {
  case CTL_OPEN: c->offset = open_slot(a, c->topic, c->partition); break;
  case CTL_CLOSE:
    if ((s = find_slot(a, c->topic, c->partition))) close_slot(a, s);
    break;
  case CTL_REWIND:
    if ((s = find_slot(a, c->topic, c->partition)) && !s->paused) {
      esr_partition_rollback(s->p);
      pause_slot(a, s, 0);
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

static void *applier_main(void *arg) {
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
           (m = rd_kafka_consume_queue(a->queue, n ? 0 : a->open_batches ? IDLE_MS : 100))) {
      if (!a->draining) on_message(a, m);
      rd_kafka_message_destroy(m);
      n++;
    }
    esr_publisher_poll(a->pub, 0);
    int64_t now = esr_now_ms();
    if (!a->draining && (now - last_tick >= TICK_MS || !n)) {
      tick(a, now, !n); /* no message for IDLE_MS: the thread keeps up, commit what is open */
      last_tick = now;
    }
  }
  esr_crash_thread_end();
  esr_json_arena_release();
  return NULL;
}

/* ---- main thread side ---- */

static void submit(applier *a, ctl *c) {
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

static void wait_done(applier *a, ctl *c) {
  pthread_mutex_lock(&a->mu);
  while (!c->done) pthread_cond_wait(&a->cv, &a->mu);
  pthread_mutex_unlock(&a->mu);
}

/* Sends one request of `kind` to every applier and waits for all. */
static void broadcast(esr_worker *w, ctl_kind kind) {
  ctl *cs = calloc((size_t)w->n_appliers, sizeof *cs);
  if (!cs) return;
  for (int i = 0; i < w->n_appliers; i++) {
    if (!w->appliers[i].started) continue;
    cs[i].kind = kind;
    submit(&w->appliers[i], &cs[i]);
  }
  for (int i = 0; i < w->n_appliers; i++)
    if (w->appliers[i].started) wait_done(&w->appliers[i], &cs[i]);
  free(cs);
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

/* Opens the listed partitions on their appliers (in parallel), forwards each one's queue to its owner and returns the
 * list to assign, each at its stored next offset. Partitions that cannot be opened are left out (and logged). */
static rd_kafka_topic_partition_list_t *open_partitions(esr_worker *w, const rd_kafka_topic_partition_list_t *parts) {
  rd_kafka_topic_partition_list_t *ok = rd_kafka_topic_partition_list_new(parts->cnt ? parts->cnt : 1);
  ctl *cs = calloc((size_t)parts->cnt + 1, sizeof *cs);
  applier **who = calloc((size_t)parts->cnt + 1, sizeof *who);
  if (!cs || !who) goto out;
  for (int i = 0; i < parts->cnt; i++) {
    int t = topic_index(w, parts->elems[i].topic);
    int *owner = t < 0 ? NULL : owner_ref(w, (size_t)t, parts->elems[i].partition);
    if (!owner) continue;
    applier *a = *owner >= 0 ? &w->appliers[*owner] : least_loaded(w);
    if (*owner < 0) {
      a->owned++; /* counted now, so that the next partition of this list goes to the next least loaded thread */
      *owner = a->index;
    }
    cs[i] = (ctl){.kind = CTL_OPEN, .topic = (size_t)t, .partition = parts->elems[i].partition};
    who[i] = a;
    submit(a, &cs[i]);
  }
  for (int i = 0; i < parts->cnt; i++) {
    applier *a = who[i];
    if (!a) continue;
    wait_done(a, &cs[i]);
    if (cs[i].offset < 0) { /* not opened: not owned */
      a->owned--;
      w->owner[cs[i].topic][cs[i].partition] = -1;
      continue;
    }
    rd_kafka_queue_t *pq = rd_kafka_queue_get_partition(w->rk, parts->elems[i].topic, parts->elems[i].partition);
    if (pq) {
      rd_kafka_queue_forward(pq, a->queue);
      rd_kafka_queue_destroy(pq);
    }
    rd_kafka_topic_partition_list_add(ok, parts->elems[i].topic, parts->elems[i].partition)->offset = cs[i].offset;
  }
out:
  free(cs);
  free(who);
  return ok;
}

/* Asks each partition's owner to commit and close it, and waits. */
static void close_partitions(esr_worker *w, const rd_kafka_topic_partition_list_t *parts) {
  ctl *cs = calloc((size_t)parts->cnt + 1, sizeof *cs);
  applier **who = calloc((size_t)parts->cnt + 1, sizeof *who);
  if (!cs || !who) goto out;
  for (int i = 0; i < parts->cnt; i++) {
    int t = topic_index(w, parts->elems[i].topic);
    if (t < 0 || (size_t)parts->elems[i].partition >= w->owner_cap[t]) continue;
    int *owner = &w->owner[t][parts->elems[i].partition];
    if (*owner < 0) continue;
    who[i] = &w->appliers[*owner];
    who[i]->owned--;
    *owner = -1;
    cs[i] = (ctl){.kind = CTL_CLOSE, .topic = (size_t)t, .partition = parts->elems[i].partition};
    submit(who[i], &cs[i]);
  }
  for (int i = 0; i < parts->cnt; i++)
    if (who[i]) wait_done(who[i], &cs[i]);
out:
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

static void close_all(esr_worker *w) {
  rd_kafka_topic_partition_list_t *l = owned_partitions(w);
  close_partitions(w, l);
  rd_kafka_topic_partition_list_destroy(l);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                         void *opaque) {
  esr_worker *w = opaque;
  int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
  rd_kafka_error_t *e = NULL;
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
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
      close_all(w);
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
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  esr_worker *w = opaque;
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char buf[512];
    rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof buf);
    esr_error e;
    esr_error_set(&e, ESR_E_KAFKA, orig, "fatal Kafka error: %s", buf);
    set_fatal(w, &e);
    return;
  }
  esr_log(ESR_LOG_WARN, "kafka", "%s: %s", rd_kafka_err2name(err), reason);
}

/* A message on the main queue means a partition's queue was not forwarded: never drop it silently (the applier
 * would take the next one for a legitimate gap), rewind its owner to the stored position instead. */
static void stray_message(esr_worker *w, rd_kafka_message_t *m) {
  if (m->err) {
    esr_log(ESR_LOG_WARN, "kafka", "consumer: %s", rd_kafka_message_errstr(m));
    return;
  }
  int t = topic_index(w, rd_kafka_topic_name(m->rkt));
  int owner = t >= 0 && (size_t)m->partition < w->owner_cap[t] ? w->owner[t][m->partition] : -1;
  esr_log(ESR_LOG_ERROR, "worker", "%s[%d]@%" PRId64 " arrived on the main queue; rewinding the partition",
          rd_kafka_topic_name(m->rkt), (int)m->partition, m->offset);
  if (owner < 0) return;
  ctl c = {.kind = CTL_REWIND, .topic = (size_t)t, .partition = m->partition};
  submit(&w->appliers[owner], &c);
  wait_done(&w->appliers[owner], &c);
}

static esr_code lock_state_dir(esr_worker *w, esr_error *err) {
  const char *dir = w->cfg->state_dir;
  if (mkdir(dir, 0755) != 0 && errno != EEXIST)
    return esr_error_set(err, ESR_E_IO, errno, "state.dir %s: cannot create: %s", dir, strerror(errno));
  char path[4096];
  snprintf(path, sizeof path, "%s/.esr.lock", dir);
  w->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (w->lock_fd < 0)
    return esr_error_set(err, ESR_E_IO, errno, "state.dir %s: cannot open %s: %s", dir, path, strerror(errno));
  if (flock(w->lock_fd, LOCK_EX | LOCK_NB) != 0)
    return esr_error_set(err, ESR_E_IO, errno,
                         "state.dir %s is in use by another esr worker (lock %s held): give every worker its own "
                         "state.dir",
                         dir, path);
  return ESR_E_OK;
}

static int log_bounds(void *arg, const char *topic, int32_t partition, int64_t *start, int64_t *end) {
  esr_worker *w = arg;
  return rd_kafka_query_watermark_offsets(w->rk, topic, partition, start, end, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR
             ? 0
             : -1;
}

static esr_code applier_init(esr_worker *w, applier *a, int index, esr_error *err) {
  a->w = w;
  a->index = index;
  pthread_mutex_init(&a->mu, NULL);
  pthread_cond_init(&a->cv, NULL);
  if (!(a->topics = calloc(w->cfg->n_topics, sizeof *a->topics)))
    return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  if (!(a->pub = esr_publisher_new(w->cfg, on_delivery, a, err))) return err->code;
  esr_publisher_warm(a->pub, w->cfg->dlq_topic);
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
                                   .bounds = log_bounds,
                                   .bounds_arg = w};
  a->env = (esr_partition_env){.registry = &w->registry,
                               .publisher = a->pub,
                               .state_dir = w->cfg->state_dir,
                               .dlq_topic = w->cfg->dlq_topic,
                               .store = {.cache_mb = w->cfg->sqlite_cache_mb},
                               .max_crash_retries = w->cfg->max_crash_retries,
                               .batch_max = w->cfg->batch_max_events,
                               .last_crash = &w->last_crash,
                               .schemas = w->schemas};
  return ESR_E_OK;
}

static void applier_fini(esr_worker *w, applier *a) {
  if (a->topics) {
    for (size_t t = 0; t < w->cfg->n_topics; t++) {
      for (size_t p = 0; p < a->topics[t].cap; p++) {
        if (a->topics[t].by_partition[p]) {
          esr_partition_close(a->topics[t].by_partition[p]->p);
          free(a->topics[t].by_partition[p]);
        }
      }
      free(a->topics[t].by_partition);
    }
    free(a->topics);
  }
  if (a->queue) rd_kafka_queue_destroy(a->queue);
  esr_publisher_free(a->pub);
  esr_cpstore_close(a->store);
  pthread_mutex_destroy(&a->mu);
  pthread_cond_destroy(&a->cv);
}

esr_code esr_worker_new(const esr_config *cfg, esr_worker **out, esr_error *err) {
  *out = NULL;
  esr_worker *w = calloc(1, sizeof *w);
  if (!w) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  w->cfg = cfg;
  w->lock_fd = -1;
  w->group = cfg->assignment == ESR_ASSIGN_GROUP;
  w->commit_kafka = esr_config_kafka_get(cfg, "group.id") != NULL;
  pthread_mutex_init(&w->fatal_mu, NULL);
  esr_code rc;
  rd_kafka_conf_t *conf = NULL;
  w->n_appliers = cfg->apply_threads > 0 ? cfg->apply_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (w->n_appliers < 1) w->n_appliers = 1;
  w->appliers = calloc((size_t)w->n_appliers, sizeof *w->appliers);
  w->owner = calloc(cfg->n_topics, sizeof *w->owner);
  w->owner_cap = calloc(cfg->n_topics, sizeof *w->owner_cap);
  if (!w->appliers || !w->owner || !w->owner_cap) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto fail;
  }
  /* Kafka settings first: a bad kafka.* key is a configuration error and must be reported before anything runs. */
  rd_kafka_conf_t *producer_conf = esr_kafka_conf_new(cfg, ESR_KAFKA_PRODUCER, err);
  if (!producer_conf) {
    rc = err->code;
    goto fail;
  }
  rd_kafka_conf_destroy(producer_conf); /* only validated here; every applier builds its own */
  if (!(conf = esr_kafka_conf_new(cfg, ESR_KAFKA_CONSUMER, err))) {
    rc = err->code;
    goto fail;
  }
  if (cfg->schemas_dir && !(w->schemas = esr_schema_set_load(cfg->schemas_dir, err))) {
    rc = err->code;
    esr_error_prefix(err, "config: schemas.dir = %s", cfg->schemas_dir);
    goto fail;
  }
  if ((rc = esr_registry_load(&w->registry, cfg->handlers, cfg->n_handlers, esr_host_api_table(), err)) != ESR_E_OK)
    goto fail;
  if ((rc = lock_state_dir(w, err)) != ESR_E_OK) goto fail;
  if ((rc = esr_crash_record_open(cfg->state_dir, &w->last_crash, err)) != ESR_E_OK) goto fail;
  esr_json_arena_install(); /* before the apply threads: cJSON of an event comes from its thread's arena */
  w->crash_record_open = 1;
  for (int i = 0; i < w->last_crash.n; i++) {
    const esr_crash_entry *e = &w->last_crash.v[i];
    esr_log(ESR_LOG_WARN, "worker", "the previous worker process died with signal %d (%s) while processing %s[%d]@%" PRId64,
            e->signo, strsignal(e->signo), e->topic, (int)e->partition, e->offset);
  }
  if (cfg->checkpoint_dir)
    snprintf(w->cp_dir, sizeof w->cp_dir, "%s", cfg->checkpoint_dir);
  else
    snprintf(w->cp_dir, sizeof w->cp_dir, "%s/checkpoints", cfg->state_dir);
  esr_checkpointer_opts cpo = {.state_dir = cfg->state_dir,
                               .cp_dir = w->cp_dir,
                               .store_url = cfg->checkpoint_store,
                               .store_opts = {.endpoint = cfg->checkpoint_s3_endpoint,
                                              .region = cfg->checkpoint_s3_region},
                               .keep = cfg->checkpoint_keep,
                               .lister_threads = w->n_appliers};
  if ((rc = esr_checkpointer_new(&cpo, &w->checkpointer, err)) != ESR_E_OK) goto fail;
  char errstr[512];
  if (!w->commit_kafka) {
    /* librdkafka 2.0.2 needs a group handle for rd_kafka_assign even when no group is joined: a static worker
     * without kafka.group.id gets a private one and commits nothing. */
    rd_kafka_conf_set(conf, "group.id", "esr-static-unjoined", errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr);
  }
  rd_kafka_conf_set_opaque(conf, w);
  rd_kafka_conf_set_error_cb(conf, error_cb);
  if (w->group) rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
  w->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (!w->rk) {
    rc = esr_error_set(err, ESR_E_CONFIG, 0, "cannot create the Kafka consumer: %s", errstr);
    goto fail;
  }
  conf = NULL;
  rd_kafka_poll_set_consumer(w->rk); /* error and log callbacks are served by rd_kafka_consumer_poll */
  for (int i = 0; i < w->n_appliers; i++) {
    applier *a = &w->appliers[i];
    if ((rc = applier_init(w, a, i, err)) != ESR_E_OK) goto fail;
    a->queue = rd_kafka_queue_new(w->rk);
    if (pthread_create(&a->thread, NULL, applier_main, a) != 0) {
      rc = esr_error_set(err, ESR_E_NOMEM, errno, "cannot start apply thread %d", i);
      goto fail;
    }
    a->started = 1;
  }
  *out = w;
  return ESR_E_OK;
fail:
  if (conf) rd_kafka_conf_destroy(conf);
  esr_worker_free(w);
  return rc;
}

void esr_worker_free(esr_worker *w) {
  if (!w) return;
  if (w->appliers) {
    broadcast(w, CTL_EXIT);
    for (int i = 0; i < w->n_appliers; i++)
      if (w->appliers[i].started) pthread_join(w->appliers[i].thread, NULL);
    for (int i = 0; i < w->n_appliers; i++)
      if (w->appliers[i].w) applier_fini(w, &w->appliers[i]);
    free(w->appliers);
  }
  esr_checkpointer_free(w->checkpointer);
  if (w->rk) rd_kafka_destroy(w->rk);
  if (w->crash_record_open) esr_crash_record_close();
  if (w->owner) {
    for (size_t t = 0; t < w->cfg->n_topics; t++) free(w->owner[t]);
    free(w->owner);
  }
  free(w->owner_cap);
  esr_registry_clear(&w->registry);
  esr_schema_set_free(w->schemas);
  if (w->lock_fd >= 0) close(w->lock_fd);
  pthread_mutex_destroy(&w->fatal_mu);
  free(w);
}

/* Static assignment: the configured partitions of every topic, each at its stored offset. */
static esr_code assign_static(esr_worker *w, esr_error *err) {
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

static esr_code subscribe(esr_worker *w, esr_error *err) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)w->cfg->n_topics);
  for (size_t t = 0; t < w->cfg->n_topics; t++)
    rd_kafka_topic_partition_list_add(l, w->cfg->topics[t], RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t e = rd_kafka_subscribe(w->rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) return esr_error_set(err, ESR_E_KAFKA, e, "subscribe: %s", rd_kafka_err2str(e));
  return ESR_E_OK;
}

static void shutdown_worker(esr_worker *w) {
  esr_log(ESR_LOG_INFO, "worker", "stopping: committing open batches and publishing the outbox");
  broadcast(w, CTL_DRAIN);
  if (w->group) {
    rd_kafka_resp_err_t e = rd_kafka_consumer_close(w->rk); /* revokes: each partition closed by its owner */
    if (e) esr_log(ESR_LOG_WARN, "worker", "closing the consumer: %s", rd_kafka_err2str(e));
  }
  close_all(w);
  if (!w->group) rd_kafka_consumer_close(w->rk);
}

static void log_stats(esr_worker *w, int64_t now) {
  if (now - w->last_stats < STATS_MS) return;
  int64_t total = 0;
  for (int i = 0; i < w->n_appliers; i++) total += atomic_load_explicit(&w->appliers[i].consumed, memory_order_relaxed);
  int64_t n = total - w->consumed_at_last_stats;
  if (n > 0)
    esr_log(ESR_LOG_INFO, "worker", "consumed %" PRId64 " events in the last %.1f s (%.0f/s)", n,
            (double)(now - w->last_stats) / 1000.0, (double)n * 1000.0 / (double)(now - w->last_stats));
  w->consumed_at_last_stats = total;
  w->last_stats = now;
}

esr_code esr_worker_run(esr_worker *w, volatile sig_atomic_t *stop, esr_error *err) {
  const esr_config *cfg = w->cfg;
  esr_log(ESR_LOG_INFO, "worker",
          "esr %s starting: %zu topic(s), %zu handler(s), %s assignment, %d apply thread(s), state.dir %s",
          ESR_VERSION, cfg->n_topics, w->registry.n, w->group ? "group" : "static", w->n_appliers, cfg->state_dir);
  esr_code rc = w->group ? subscribe(w, err) : assign_static(w, err);
  if (rc != ESR_E_OK) return rc;
  w->last_stats = esr_now_ms();
  while (!*stop && !atomic_load(&w->fatal)) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rk, 100);
    if (m) {
      stray_message(w, m);
      rd_kafka_message_destroy(m);
    }
    log_stats(w, esr_now_ms());
  }
  shutdown_worker(w);
  if (atomic_load(&w->fatal)) {
    *err = w->fatal_err;
    return err->code;
  }
  esr_log(ESR_LOG_INFO, "worker", "stopped cleanly");
  return ESR_E_OK;
}
