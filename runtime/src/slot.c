/* slot.c — one partition's life on the apply thread that owns it: recovery and open, commit (with the Kafka offset
 * stored and checkpoints asked for), pause and retry with backoff after a lost batch, rebuild of a damaged database
 * through the recovery ladder (only from the tick, never under a caller still using the slot), a log that no longer
 * holds the stored offset or ends before it, and release (commit, checkpoint, outbox flush, close). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "log.h"
#include "outbox.h"
#include "worker_int.h"

slot *esr__slot_find(applier *a, size_t t, int32_t partition) {
  topic_slots *ts = &a->topics[t];
  if (partition < 0 || (size_t)partition >= ts->cap) return NULL;
  return ts->by_partition[partition];
}

const char *esr__slot_topic(const applier *a, const slot *s) { return a->w->cfg->topics[s->topic]; }

uint64_t esr__slot_sink(const slot *s) {
  return ((uint64_t)s->topic << 48) | ((uint64_t)(uint32_t)s->partition << 16) | (s->gen & 0xffff);
}

static rd_kafka_topic_partition_list_t *one_partition(const applier *a, const slot *s, int64_t offset) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, esr__slot_topic(a, s), s->partition)->offset = offset;
  return l;
}

/* Stops consuming a partition: for good (retry_in < 0) or until a retry that rewinds to the stored position. */
void esr__slot_pause(applier *a, slot *s, int64_t retry_in) {
  rd_kafka_topic_partition_list_t *l = one_partition(a, s, RD_KAFKA_OFFSET_INVALID);
  rd_kafka_pause_partitions(a->w->rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  s->paused = 1;
  s->retry_at = retry_in < 0 ? 0 : esr_now_ms() + retry_in;
  esr_metrics_state(s->m, retry_in < 0 ? ESR_PSTATE_STOPPED : ESR_PSTATE_PAUSED);
}

/* After a lost batch: resume and seek back to the last committed position. The seek's version barrier makes
 * librdkafka drop messages fetched before it. */
void esr__slot_resume(applier *a, slot *s) {
  int64_t next = esr_partition_next_offset(s->p);
  rd_kafka_topic_partition_list_t *l = one_partition(a, s, next);
  rd_kafka_resume_partitions(a->w->rk, l);
  rd_kafka_error_t *e = rd_kafka_seek_partitions(a->w->rk, l, 5000);
  if (!e && l->elems[0].err) e = rd_kafka_error_new(l->elems[0].err, "%s", rd_kafka_err2str(l->elems[0].err));
  rd_kafka_topic_partition_list_destroy(l);
  if (e) {
    esr_log(ESR_LOG_WARN, "worker", "%s[%d]: seek to %" PRId64 " failed: %s; retrying", esr__slot_topic(a, s),
            (int)s->partition, next, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    esr__slot_pause(a, s, RETRY_BACKOFF_MS);
    return;
  }
  esr_log(ESR_LOG_INFO, "worker", "%s[%d]: resuming at offset %" PRId64, esr__slot_topic(a, s), (int)s->partition, next);
  s->paused = 0;
  s->retry_at = 0;
  esr_metrics_state(s->m, ESR_PSTATE_RUNNING);
}

/* A batch was rolled back by a store error. The slot stays valid for the caller: a damaged database is only marked
 * here and rebuilt by the next tick (rebuild_slot frees the slot); any other error pauses the partition and retries
 * from the stored position, with a growing delay while the error persists (a full disk). */
void esr__slot_lost_batch(applier *a, slot *s, const esr_error *err) {
  esr_metrics_rolled_back(err->code, err->lib_code);
  esr__slot_pause(a, s, -1);
  if (err->code == ESR_E_CORRUPT) { /* the database itself is damaged: retrying cannot help, the ladder can */
    esr_log(ESR_LOG_ERROR, "worker", "%s[%d]: the database is damaged (%s); rebuilding it from the recovery ladder",
            esr__slot_topic(a, s), (int)s->partition, err->msg);
    if (!s->corrupt) snprintf(s->corrupt_why, sizeof s->corrupt_why, "%s", err->msg);
    s->corrupt = 1;
    return;
  }
  int64_t delay = s->backoff_ms > 0 ? s->backoff_ms : RETRY_BACKOFF_MS;
  s->backoff_ms = delay * 2 > RETRY_BACKOFF_MAX_MS ? RETRY_BACKOFF_MAX_MS : delay * 2;
  esr_log(ESR_LOG_ERROR, "worker", "%s[%d]: batch rolled back (%s: %s); rewinding to offset %" PRId64 " in %" PRId64
          " ms", esr__slot_topic(a, s), (int)s->partition, esr_code_name(err->code), err->msg, esr_partition_next_offset(s->p),
          delay);
  esr__slot_pause(a, s, delay);
}

void esr__slot_commit(applier *a, slot *s) {
  if (!esr_partition_batch_events(s->p)) return;
  esr_error err;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (esr_partition_commit(s->p, &err) != ESR_E_OK) {
    esr__slot_lost_batch(a, s, &err);
    return;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  esr_metrics_commit_seconds((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
  s->backoff_ms = 0;
  if (a->w->commit_kafka) {
    rd_kafka_topic_partition_list_t *l = one_partition(a, s, esr_partition_next_offset(s->p));
    if (a->w->cfg->offsets_commit_sync)
      rd_kafka_commit(a->w->rk, l, 0);
    else
      rd_kafka_offsets_store(a->w->rk, l); /* committed in the background, coalesced; fails harmlessly mid-revoke */
    rd_kafka_topic_partition_list_destroy(l);
  }
  esr__gate_want(a, s, 1);
  int64_t next = esr_partition_next_offset(s->p);
  if (s->replay_end < 0) { /* not asked at assignment: librdkafka's cached high watermark, once fetching began */
    int64_t lo = -1, hi = -1;
    if (rd_kafka_get_watermark_offsets(a->w->rk, esr__slot_topic(a, s), s->partition, &lo, &hi) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        hi >= 0)
      s->replay_end = hi > s->replay_from ? hi : 0;
  }
  if (s->replay_end > 0 && next >= s->replay_end) {
    int64_t ms = esr_now_ms() - s->replay_started;
    esr_log(ESR_LOG_INFO, "worker", "%s[%d]: caught up with the log seen at assignment: replayed %" PRId64
            " events in %" PRId64 " ms", esr__slot_topic(a, s), (int)s->partition, next - s->replay_from, ms);
    s->replay_end = 0;
  }
  const esr_config *cfg = a->w->cfg;
  if (!s->verify && cfg->checkpoint_interval_events > 0 && next - s->cp_offset >= cfg->checkpoint_interval_events) {
    esr_checkpointer_request(a->w->checkpointer, esr__slot_topic(a, s), s->partition);
    s->cp_offset = next;
    s->cp_at = esr_now_ms();
  }
}

/* A changed partition whose last checkpoint is older than checkpoint.interval.ms gets one (called from tick). */
void esr__slot_checkpoint_if_old(applier *a, slot *s, int64_t now) {
  const esr_config *cfg = a->w->cfg;
  int64_t next = esr_partition_committed(s->p)->next_offset;
  if (!s->verify && cfg->checkpoint_interval_ms > 0 && next > s->cp_offset &&
      now - s->cp_at >= cfg->checkpoint_interval_ms) {
    esr_checkpointer_request(a->w->checkpointer, esr__slot_topic(a, s), s->partition);
    s->cp_offset = next;
    s->cp_at = now;
  }
}

/* Counts the partition's outbox rows for the metrics, every 2 s (called from tick). */
void esr__slot_sample(applier *a, slot *s, int64_t now) {
  if (!s->m || now - s->sampled_at < 2000) return;
  s->sampled_at = now;
  int64_t rows;
  esr_error err;
  if (esr_outbox_count(esr_partition_store(s->p), &rows, &err) == ESR_E_OK) esr_metrics_outbox(s->m, rows);
}

void esr__slot_stop(applier *a, slot *s, const char *why) {
  esr_log(ESR_LOG_ERROR, "worker", "%s[%d]: partition stopped: %s", esr__slot_topic(a, s), (int)s->partition, why);
  esr__slot_pause(a, s, -1);
}

/* Opens the partition; returns the offset to start at, or -1 when it cannot be served. */
int64_t esr__slot_open(applier *a, size_t t, int32_t partition) {
  topic_slots *ts = &a->topics[t];
  if ((size_t)partition >= ts->cap) {
    size_t cap = (size_t)partition + 16;
    slot **g = realloc(ts->by_partition, cap * sizeof *g);
    if (!g) goto nomem;
    memset(g + ts->cap, 0, (cap - ts->cap) * sizeof *g);
    ts->by_partition = g;
    ts->cap = cap;
  }
  if (ts->by_partition[partition]) return esr_partition_next_offset(ts->by_partition[partition]->p);
  slot *s = calloc(1, sizeof *s);
  if (!s) goto nomem;
  s->topic = t;
  s->partition = partition;
  s->gen = atomic_fetch_add(&a->w->next_gen, 1) + 1;
  const char *topic = a->w->cfg->topics[t];
  esr_error err;
  int64_t t0 = esr_now_ms();
  esr_pmetrics *m = s->m = esr_metrics_partition(topic, partition);
  esr_metrics_state(m, ESR_PSTATE_RECOVERING);
  esr_recovery_result rr;
  if (esr_recover(&a->recovery, topic, partition, &rr, &err) != ESR_E_OK) {
    esr_log(ESR_LOG_ERROR, "worker", "%s[%d]: partition stopped: %s", topic, (int)partition, err.msg);
    esr_metrics_recovery(0, (double)(esr_now_ms() - t0) / 1000.0);
    esr_metrics_state(m, ESR_PSTATE_REFUSED);
    free(s);
    return -1;
  }
  esr_metrics_recovery(rr.step, (double)rr.elapsed_ms / 1000.0);
  esr_code orc = esr_partition_open(&a->env, topic, partition, esr__slot_sink(s), &s->p, &err);
  esr_recovery_result_release(&rr); /* after the store's open, which found the WAL index built */
  if (orc != ESR_E_OK) {
    esr_log(ESR_LOG_ERROR, "worker", "%s[%d]: cannot open the partition, not consuming it: %s", topic, (int)partition,
            err.msg);
    esr_metrics_state(m, ESR_PSTATE_REFUSED);
    free(s);
    return -1;
  }
  if (esr__gate_slot_open(a, s, &err) != ESR_E_OK) {
    esr_log(ESR_LOG_ERROR, "worker", "%s[%d]: cannot open the partition's transactional producer, not consuming it: %s",
            topic, (int)partition, err.msg);
    esr_partition_close(s->p);
    free(s);
    return -1;
  }
  ts->by_partition[partition] = s;
  const esr_position *pos = esr_partition_committed(s->p);
  int64_t now = esr_now_ms();
  esr_partition_set_metrics(s->p, m);
  if (m) { /* the state it opened with is the baseline of its checkpoints, as cp_offset below */
    esr_metrics_set(&m->cp_offset, pos->next_offset);
    esr_metrics_set(&m->uncovered_ms, 0);
    esr_metrics_set(&m->next_offset, pos->next_offset);
    esr_metrics_state(m, ESR_PSTATE_RUNNING);
    esr__slot_sample(a, s, now);
  }
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
  esr__gate_want(a, s, 0); /* rows a previous run left: published by the next round, after the read-back */
  return pos->next_offset;
nomem:
  esr_log(ESR_LOG_ERROR, "worker", "%s[%d]: out of memory: not consuming the partition", a->w->cfg->topics[t],
          (int)partition);
  return -1;
}

/* Commits, publishes the outbox (gate.c; waits a bounded time for the deliveries and deletes what was acknowledged),
 * checkpoints and closes: the next owner finds a clean outbox and marks that spare it reading back. */
void esr__slot_close(applier *a, slot *s) {
  esr_error err;
  esr__slot_commit(a, s);
  esr_partition_rollback(s->p); /* a batch that could not commit is redone by the next owner */
  esr__gate_flush(a, s, 1, esr_now_ms() + REVOKE_FLUSH_MS);
  int64_t next = esr_partition_committed(s->p)->next_offset;
  /* Whether a checkpoint holds this state is judged from the files, not from the last request: a request can be
   * coalesced into a job that copied an older state, or still be queued when the worker stops. */
  char done[4600];
  struct stat st;
  snprintf(done, sizeof done, "%s/%s-%d/%020" PRId64 ".json", a->w->cp_dir, esr__slot_topic(a, s), (int)s->partition,
           next);
  if (a->w->cfg->checkpoint_on_release && !s->verify && !s->corrupt && next > 0 && stat(done, &st) != 0) {
    /* The next owner climbs the recovery ladder: leave it the newest state, so it replays (almost) nothing. */
    int64_t at = -1;
    if (esr_checkpointer_now(a->w->checkpointer, esr__slot_topic(a, s), s->partition, RELEASE_CHECKPOINT_MS, &at, &err) !=
        ESR_E_OK)
      esr_log(ESR_LOG_WARN, "checkpoint", "%s[%d]: no checkpoint at release: %s", esr__slot_topic(a, s), (int)s->partition,
              err.msg);
  }
  esr_log(ESR_LOG_INFO, "worker", "%s[%d]: released at offset %" PRId64, esr__slot_topic(a, s), (int)s->partition,
          esr_partition_committed(s->p)->next_offset);
  int corrupt = s->corrupt;
  size_t t = s->topic;
  int32_t partition = s->partition;
  esr_metrics_state(s->m, ESR_PSTATE_UNOWNED);
  a->topics[t].by_partition[partition] = NULL;
  esr_verify_release(s->verify);
  esr__gate_slot_close(a, s);
  esr_partition_close(s->p);
  free(s);
  if (corrupt) { /* the next owner must not resume from it: it climbs the ladder from a checkpoint or the log */
    char aside[4300];
    esr_recovery_quarantine_live(a->w->cfg->state_dir, a->w->cfg->topics[t], partition, aside, sizeof aside);
    esr_log(ESR_LOG_ERROR, "recovery", "%s[%d]: released with a damaged database: moved to %s",
            a->w->cfg->topics[t], (int)partition, aside);
  }
}

/* The live database is damaged (a failed background integrity check, or SQLite reported corruption): nothing derived
 * from what it applied since the restart left the process unchecked, so drop the open batch, move the database aside,
 * climb the ladder again and seek to where the rebuilt partition starts. Frees `s`: the caller must not use it after. */
void esr__slot_rebuild(applier *a, slot *s, const char *reason) {
  char why[400];
  snprintf(why, sizeof why, "%s", reason); /* reason may live in the slot */
  size_t t = s->topic;
  int32_t partition = s->partition;
  const char *topic = esr__slot_topic(a, s);
  esr_metrics_state(s->m, ESR_PSTATE_RECOVERING);
  a->topics[t].by_partition[partition] = NULL;
  esr_verify_release(s->verify);
  esr__gate_slot_close(a, s);
  esr_partition_close(s->p); /* rolls back the open batch */
  free(s);
  char aside[4300];
  esr_recovery_quarantine_live(a->w->cfg->state_dir, topic, partition, aside, sizeof aside);
  esr_log(ESR_LOG_ERROR, "recovery", "%s[%d]: the live database is damaged (%s): moved to %s; "
          "rebuilding the partition from the recovery ladder", topic, (int)partition, why, aside);
  int64_t off = esr__slot_open(a, t, partition);
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
      slot *n = esr__slot_find(a, t, partition);
      if (n) esr__slot_pause(a, n, RETRY_BACKOFF_MS); /* the retry seeks again */
    }
  }
  rd_kafka_topic_partition_list_destroy(l);
}

/* Takes the verdict of a background integrity check, if it came. */
void esr__slot_check_verdict(applier *a, slot *s) {
  const char *msg;
  int state = esr_verify_state(s->verify, &msg);
  if (state == ESR_VERIFY_PENDING) return;
  if (state == ESR_VERIFY_CORRUPT) {
    char why[400];
    snprintf(why, sizeof why, "failed its integrity check: %s", msg);
    esr__slot_rebuild(a, s, why);
    return;
  }
  esr_verify_release(s->verify);
  s->verify = NULL;
  esr_partition_hold(s->p, 0);
  esr__gate_want(a, s, 1);
}

/* The stored offset is not in the log: never skip, stop the partition and say what is missing. Either retention
 * deleted events before they were applied (the log starts after the state), or the state is ahead of the log (the
 * topic was deleted and recreated, or the state belongs to another cluster): the advice differs. */
void esr__slot_gap(applier *a, slot *s) {
  int64_t lo = -1, hi = -1;
  rd_kafka_query_watermark_offsets(a->w->rk, esr__slot_topic(a, s), s->partition, &lo, &hi, 5000);
  int64_t need = esr_partition_next_offset(s->p);
  char why[700];
  if (hi >= 0 && need > hi)
    snprintf(why, sizeof why,
             "the state is ahead of the log: the state is at offset %" PRId64 " but the log ends at %" PRId64
             " (it starts at %" PRId64 "). The topic was deleted and recreated, or this state belongs to another "
             "cluster: point the worker at the cluster this state came from, or move %s/%s-%d.db aside to rebuild "
             "the partition from this log",
             need, hi, lo, a->w->cfg->state_dir, esr__slot_topic(a, s), (int)s->partition);
  else
    snprintf(why, sizeof why,
             "the log no longer holds offset %" PRId64 " (needed to resume; the log now starts at %" PRId64
             " and ends at %" PRId64 "): %" PRId64 " events were deleted by retention before they were applied. "
             "Refusing to skip them: restore a checkpoint at offset >= %" PRId64 " into %s, or re-produce the events",
             need, lo, hi, lo > need ? lo - need : 0, lo, a->w->cfg->state_dir);
  esr__slot_stop(a, s, why);
  esr_metrics_state(s->m, ESR_PSTATE_REFUSED);
}
