/* worker.c — the consumer loop: assignment (group or static), batch boundaries, rewinds after a lost batch, gaps,
 * delivery reports routed back to their partition, and a clean shutdown. One thread. */
#include "esr/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "esr/clock.h"
#include "esr/host.h"
#include "esr/kafka.h"
#include "esr/log.h"
#include "esr/partition.h"

#define RETRY_BACKOFF_MS 1000
#define TICK_MS 20
#define STATS_MS 10000
#define REVOKE_FLUSH_MS 5000
#define SHUTDOWN_FLUSH_MS 10000

typedef struct slot {
  esr_partition *p;
  int32_t partition;
  size_t topic;
  uint32_t gen;
  int paused;       /* stopped for good (gap, fatal handler) or waiting for retry_at */
  int64_t retry_at; /* 0: stopped for good */
} slot;

typedef struct topic_slots {
  rd_kafka_topic_t *rkt; /* as seen on messages, to find the topic without strcmp */
  slot **by_partition;
  size_t cap;
} topic_slots;

struct esr_worker {
  const esr_config *cfg;
  esr_registry registry;
  esr_publisher *pub;
  esr_partition_env env;
  rd_kafka_t *rk;
  topic_slots *topics;
  int lock_fd;
  int group;         /* group mode */
  int commit_kafka;  /* store offsets in Kafka (a group.id is set) */
  uint32_t next_gen;
  int open_batches;  /* partitions with an open batch (an upper bound; recomputed at each tick) */
  int fatal;
  esr_error fatal_err;
  /* statistics for the periodic line */
  int64_t consumed, consumed_at_last_stats, last_stats;
};

static slot *find_slot(esr_worker *w, size_t t, int32_t partition) {
  topic_slots *ts = &w->topics[t];
  if (partition < 0 || (size_t)partition >= ts->cap) return NULL;
  return ts->by_partition[partition];
}

static int topic_index(esr_worker *w, const char *name) {
  for (size_t t = 0; t < w->cfg->n_topics; t++)
    if (strcmp(w->cfg->topics[t], name) == 0) return (int)t;
  return -1;
}

static slot *slot_of_message(esr_worker *w, const rd_kafka_message_t *m) {
  for (size_t t = 0; t < w->cfg->n_topics; t++)
    if (w->topics[t].rkt == m->rkt) return find_slot(w, t, m->partition);
  int t = topic_index(w, rd_kafka_topic_name(m->rkt));
  if (t < 0) return NULL;
  w->topics[t].rkt = m->rkt;
  return find_slot(w, (size_t)t, m->partition);
}

static uint64_t sink_of(const slot *s) {
  return ((uint64_t)s->topic << 48) | ((uint64_t)(uint32_t)s->partition << 16) | (s->gen & 0xffff);
}

static void on_delivery(void *opaque, uint64_t sink, int64_t seq, int ok, const char *error) {
  esr_worker *w = opaque;
  size_t t = (size_t)(sink >> 48);
  int32_t partition = (int32_t)((sink >> 16) & 0xffffffff);
  if (t >= w->cfg->n_topics) return;
  slot *s = find_slot(w, t, partition);
  if (!s || (s->gen & 0xffff) != (sink & 0xffff)) return; /* the partition moved on; its next owner resends */
  if (!ok)
    esr_log(ESR_LOG_WARN, "outbox", "%s[%d]: outbox row %" PRId64 " not delivered: %s; it will be sent again",
            w->cfg->topics[t], (int)partition, seq, error);
  esr_partition_delivered(s->p, seq, ok);
}

static void part_list_add(rd_kafka_topic_partition_list_t *l, const slot *s, const esr_worker *w, int64_t offset) {
  rd_kafka_topic_partition_list_add(l, w->cfg->topics[s->topic], s->partition)->offset = offset;
}

/* Stops consuming a partition: for good (retry_in < 0) or until a retry that rewinds to the stored position. */
static void pause_slot(esr_worker *w, slot *s, int64_t retry_in) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  part_list_add(l, s, w, RD_KAFKA_OFFSET_INVALID);
  rd_kafka_pause_partitions(w->rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  s->paused = 1;
  s->retry_at = retry_in < 0 ? 0 : esr_now_ms() + retry_in;
}

/* After a lost batch: resume and seek back to the last committed position. The seek's version barrier makes
 * librdkafka drop messages fetched before it. */
static void resume_slot(esr_worker *w, slot *s) {
  int64_t next = esr_partition_next_offset(s->p);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  part_list_add(l, s, w, next);
  rd_kafka_resume_partitions(w->rk, l);
  rd_kafka_error_t *e = rd_kafka_seek_partitions(w->rk, l, 5000);
  if (!e && l->elems[0].err) e = rd_kafka_error_new(l->elems[0].err, "%s", rd_kafka_err2str(l->elems[0].err));
  rd_kafka_topic_partition_list_destroy(l);
  if (e) {
    esr_log(ESR_LOG_WARN, "worker", "%s[%d]: seek to %" PRId64 " failed: %s; retrying", w->cfg->topics[s->topic],
            (int)s->partition, next, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    pause_slot(w, s, RETRY_BACKOFF_MS);
    return;
  }
  esr_log(ESR_LOG_INFO, "worker", "%s[%d]: resuming at offset %" PRId64, w->cfg->topics[s->topic], (int)s->partition,
          next);
  s->paused = 0;
  s->retry_at = 0;
}

static void lost_batch(esr_worker *w, slot *s, const esr_error *err) {
  esr_log(ESR_LOG_ERROR, "worker", "%s[%d]: batch rolled back (%s: %s); rewinding to offset %" PRId64 " in %d ms",
          w->cfg->topics[s->topic], (int)s->partition, esr_code_name(err->code), err->msg,
          esr_partition_next_offset(s->p), RETRY_BACKOFF_MS);
  pause_slot(w, s, RETRY_BACKOFF_MS);
}

static void commit_slot(esr_worker *w, slot *s) {
  if (!esr_partition_batch_events(s->p)) return;
  esr_error err;
  if (esr_partition_commit(s->p, &err) != ESR_E_OK) {
    lost_batch(w, s, &err);
    return;
  }
  if (w->commit_kafka) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    part_list_add(l, s, w, esr_partition_next_offset(s->p));
    rd_kafka_offsets_store(w->rk, l); /* fails harmlessly while a revocation is under way */
    rd_kafka_topic_partition_list_destroy(l);
  }
  if (esr_partition_publish(s->p, &err) != ESR_E_OK)
    esr_log(ESR_LOG_WARN, "outbox", "%s[%d]: publishing: %s", w->cfg->topics[s->topic], (int)s->partition, err.msg);
}

static void stop_slot(esr_worker *w, slot *s, const char *why) {
  esr_log(ESR_LOG_ERROR, "worker", "%s[%d]: partition stopped: %s", w->cfg->topics[s->topic], (int)s->partition, why);
  pause_slot(w, s, -1);
}

/* Opens the partition and returns the offset to start at, or -1 when it cannot be served. */
static int64_t open_slot(esr_worker *w, size_t t, int32_t partition) {
  topic_slots *ts = &w->topics[t];
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
  s->gen = ++w->next_gen;
  esr_error err;
  int64_t t0 = esr_now_ms();
  if (esr_partition_open(&w->env, w->cfg->topics[t], partition, sink_of(s), &s->p, &err) != ESR_E_OK) {
    esr_log(ESR_LOG_ERROR, "worker", "%s[%d]: cannot open the partition, not consuming it: %s", w->cfg->topics[t],
            (int)partition, err.msg);
    free(s);
    return -1;
  }
  ts->by_partition[partition] = s;
  const esr_position *pos = esr_partition_committed(s->p);
  esr_log(ESR_LOG_INFO, "worker",
          "%s[%d]: assigned; resuming at offset %" PRId64 " (%" PRId64 " applied, %" PRId64
          " dead-lettered so far; opened in %" PRId64 " ms)",
          w->cfg->topics[t], (int)partition, pos->next_offset, pos->applied, pos->dead, esr_now_ms() - t0);
  if (esr_partition_publish(s->p, &err) != ESR_E_OK)
    esr_log(ESR_LOG_WARN, "outbox", "%s[%d]: publishing: %s", w->cfg->topics[t], (int)partition, err.msg);
  return pos->next_offset;
}

/* Commits, waits a bounded time for the partition's outbox deliveries, deletes what was acknowledged, closes. */
static void close_slot(esr_worker *w, slot *s) {
  esr_error err;
  commit_slot(w, s);
  esr_partition_rollback(s->p); /* a batch that could not commit is redone by the next owner */
  int64_t deadline = esr_now_ms() + REVOKE_FLUSH_MS;
  while (esr_partition_in_flight(s->p) > 0 && esr_now_ms() < deadline) esr_publisher_poll(w->pub, 50);
  if (esr_partition_tick(s->p, &err) != ESR_E_OK)
    esr_log(ESR_LOG_WARN, "outbox", "%s[%d]: %s", w->cfg->topics[s->topic], (int)s->partition, err.msg);
  esr_log(ESR_LOG_INFO, "worker", "%s[%d]: released at offset %" PRId64, w->cfg->topics[s->topic], (int)s->partition,
          esr_partition_committed(s->p)->next_offset);
  w->topics[s->topic].by_partition[s->partition] = NULL;
  esr_partition_close(s->p);
  free(s);
}

/* Builds the list of partitions to assign, each at its stored next offset; partitions that cannot be opened are left
 * out (and logged). */
static rd_kafka_topic_partition_list_t *open_partitions(esr_worker *w, const rd_kafka_topic_partition_list_t *parts) {
  rd_kafka_topic_partition_list_t *ok = rd_kafka_topic_partition_list_new(parts->cnt);
  for (int i = 0; i < parts->cnt; i++) {
    int t = topic_index(w, parts->elems[i].topic);
    if (t < 0) continue;
    int64_t off = open_slot(w, (size_t)t, parts->elems[i].partition);
    if (off >= 0) rd_kafka_topic_partition_list_add(ok, parts->elems[i].topic, parts->elems[i].partition)->offset = off;
  }
  return ok;
}

static void close_partitions(esr_worker *w, const rd_kafka_topic_partition_list_t *parts) {
  for (int i = 0; i < parts->cnt; i++) {
    int t = topic_index(w, parts->elems[i].topic);
    if (t < 0) continue;
    slot *s = find_slot(w, (size_t)t, parts->elems[i].partition);
    if (s) close_slot(w, s);
  }
}

static void close_all(esr_worker *w) {
  for (size_t t = 0; t < w->cfg->n_topics; t++)
    for (size_t p = 0; p < w->topics[t].cap; p++)
      if (w->topics[t].by_partition[p]) close_slot(w, w->topics[t].by_partition[p]);
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
    esr_error_set(&w->fatal_err, ESR_E_KAFKA, orig, "fatal Kafka error: %s", buf);
    w->fatal = 1;
    return;
  }
  esr_log(ESR_LOG_WARN, "kafka", "%s: %s", rd_kafka_err2name(err), reason);
}

/* The stored offset is not in the log any more: never skip, stop the partition and say what is missing. */
static void gap(esr_worker *w, slot *s) {
  int64_t lo = -1, hi = -1;
  rd_kafka_query_watermark_offsets(w->rk, w->cfg->topics[s->topic], s->partition, &lo, &hi, 5000);
  int64_t need = esr_partition_next_offset(s->p);
  char why[512];
  snprintf(why, sizeof why,
           "the log no longer holds offset %" PRId64 " (needed to resume; the log now starts at %" PRId64
           " and ends at %" PRId64 "): %" PRId64 " events were deleted by retention before they were applied. "
           "Refusing to skip them: restore a checkpoint at offset >= %" PRId64 " into %s, or re-produce the events",
           need, lo, hi, lo > need ? lo - need : 0, lo, w->cfg->state_dir);
  stop_slot(w, s, why);
}

static void on_message(esr_worker *w, rd_kafka_message_t *m) {
  if (m->err) {
    slot *s = m->rkt ? slot_of_message(w, m) : NULL;
    if (s && !s->paused &&
        (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET || m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)) {
      gap(w, s);
      return;
    }
    if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
      char buf[512];
      rd_kafka_fatal_error(w->rk, buf, sizeof buf);
      esr_error_set(&w->fatal_err, ESR_E_KAFKA, m->err, "fatal Kafka error: %s", buf);
      w->fatal = 1;
      return;
    }
    esr_log(ESR_LOG_WARN, "kafka", "consumer: %s%s%s", rd_kafka_message_errstr(m), m->rkt ? " on " : "",
            m->rkt ? rd_kafka_topic_name(m->rkt) : "");
    return;
  }
  slot *s = slot_of_message(w, m);
  if (!s || s->paused) return; /* not ours any more, or stopped: it will be fetched again from the stored position */
  esr_message em = {m->offset, m->key, m->key_len, m->payload, m->len};
  esr_error err;
  int was_open = esr_partition_batch_events(s->p) > 0;
  esr_code rc = esr_partition_apply(s->p, &em, &err);
  w->consumed++;
  if (rc == ESR_E_OK) {
    if (!was_open && esr_partition_batch_events(s->p) > 0) w->open_batches++;
    if (esr_partition_batch_events(s->p) >= w->cfg->batch_max_events) commit_slot(w, s);
    return;
  }
  if (rc == ESR_E_PLUGIN) {
    commit_slot(w, s); /* keep the events before the one the handler refused */
    stop_slot(w, s, err.msg);
    return;
  }
  lost_batch(w, s, &err);
}

/* Commits batches that are old enough, retries paused partitions, runs outbox housekeeping. */
static void tick(esr_worker *w, int64_t now) {
  int open = 0;
  for (size_t t = 0; t < w->cfg->n_topics; t++) {
    for (size_t p = 0; p < w->topics[t].cap; p++) {
      slot *s = w->topics[t].by_partition[p];
      if (!s) continue;
      if (s->paused) {
        if (s->retry_at && now >= s->retry_at) resume_slot(w, s);
        continue;
      }
      if (esr_partition_batch_events(s->p) > 0) {
        if (now - esr_partition_batch_started(s->p) >= w->cfg->batch_max_ms)
          commit_slot(w, s);
        else
          open++;
      }
      esr_error err;
      if (esr_partition_tick(s->p, &err) != ESR_E_OK) lost_batch(w, s, &err);
    }
  }
  w->open_batches = open;
  if (now - w->last_stats >= STATS_MS) {
    int64_t n = w->consumed - w->consumed_at_last_stats;
    if (n > 0)
      esr_log(ESR_LOG_INFO, "worker", "consumed %" PRId64 " events in the last %.1f s (%.0f/s)", n,
              (double)(now - w->last_stats) / 1000.0, (double)n * 1000.0 / (double)(now - w->last_stats));
    w->consumed_at_last_stats = w->consumed;
    w->last_stats = now;
  }
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

esr_code esr_worker_new(const esr_config *cfg, esr_worker **out, esr_error *err) {
  *out = NULL;
  esr_worker *w = calloc(1, sizeof *w);
  if (!w) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  w->cfg = cfg;
  w->lock_fd = -1;
  w->group = cfg->assignment == ESR_ASSIGN_GROUP;
  w->commit_kafka = esr_config_kafka_get(cfg, "group.id") != NULL;
  esr_code rc;
  rd_kafka_conf_t *conf = NULL;
  if (!(w->topics = calloc(cfg->n_topics, sizeof *w->topics))) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto fail;
  }
  /* Kafka settings first: a bad kafka.* key is a configuration error and must be reported before anything runs. */
  rd_kafka_conf_t *producer_conf = esr_kafka_conf_new(cfg, ESR_KAFKA_PRODUCER, err);
  if (!producer_conf) {
    rc = err->code;
    goto fail;
  }
  rd_kafka_conf_destroy(producer_conf); /* only validated here; the publisher builds its own */
  if (!(conf = esr_kafka_conf_new(cfg, ESR_KAFKA_CONSUMER, err))) {
    rc = err->code;
    goto fail;
  }
  if ((rc = esr_registry_load(&w->registry, cfg->handlers, cfg->n_handlers, esr_host_api_table(), err)) != ESR_E_OK)
    goto fail;
  if ((rc = lock_state_dir(w, err)) != ESR_E_OK) goto fail;
  if (!(w->pub = esr_publisher_new(cfg, on_delivery, w, err))) {
    rc = err->code;
    goto fail;
  }
  esr_publisher_warm(w->pub, cfg->dlq_topic);
  w->env = (esr_partition_env){.registry = &w->registry,
                               .publisher = w->pub,
                               .state_dir = cfg->state_dir,
                               .dlq_topic = cfg->dlq_topic,
                               .store = {.cache_mb = cfg->sqlite_cache_mb}};
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
  *out = w;
  return ESR_E_OK;
fail:
  if (conf) rd_kafka_conf_destroy(conf);
  esr_worker_free(w);
  return rc;
}

void esr_worker_free(esr_worker *w) {
  if (!w) return;
  if (w->rk) rd_kafka_destroy(w->rk);
  if (w->topics) {
    for (size_t t = 0; t < w->cfg->n_topics; t++) {
      for (size_t p = 0; p < w->topics[t].cap; p++) {
        if (w->topics[t].by_partition[p]) {
          esr_partition_close(w->topics[t].by_partition[p]->p);
          free(w->topics[t].by_partition[p]);
        }
      }
      free(w->topics[t].by_partition);
    }
    free(w->topics);
  }
  esr_publisher_free(w->pub);
  esr_registry_clear(&w->registry);
  if (w->lock_fd >= 0) close(w->lock_fd);
  free(w);
}

/* Static assignment: the configured partitions of every topic, each at its stored offset. */
static esr_code assign_static(esr_worker *w, esr_error *err) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
  esr_code rc = ESR_E_OK;
  for (size_t t = 0; t < w->cfg->n_topics; t++) {
    const char *name = w->cfg->topics[t];
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(w->rk, name, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(w->rk, 0, rkt, &md, 10000);
    int count = -1;
    if (!e && md->topic_cnt == 1) {
      e = md->topics[0].err;
      count = md->topics[0].partition_cnt;
    }
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    if (e || count <= 0) {
      rc = esr_error_set(err, ESR_E_KAFKA, e, "topic %s: cannot read its partitions: %s", name,
                         e ? rd_kafka_err2str(e) : "no partitions");
      goto out;
    }
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
      int64_t off = open_slot(w, t, p);
      if (off >= 0) rd_kafka_topic_partition_list_add(l, name, p)->offset = off;
    }
    if (!owned)
      esr_log(ESR_LOG_WARN, "worker", "topic %s: instance %d/%d owns none of its %d partitions", name,
              w->cfg->instance_index, w->cfg->instance_count, count);
  }
  rd_kafka_resp_err_t e = rd_kafka_assign(w->rk, l);
  if (e) rc = esr_error_set(err, ESR_E_KAFKA, e, "assign: %s", rd_kafka_err2str(e));
out:
  rd_kafka_topic_partition_list_destroy(l);
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
  for (size_t t = 0; t < w->cfg->n_topics; t++)
    for (size_t p = 0; p < w->topics[t].cap; p++)
      if (w->topics[t].by_partition[p] && !w->topics[t].by_partition[p]->paused)
        commit_slot(w, w->topics[t].by_partition[p]);
  if (w->group) {
    rd_kafka_resp_err_t e = rd_kafka_consumer_close(w->rk); /* revokes: close_slot for every partition */
    if (e) esr_log(ESR_LOG_WARN, "worker", "closing the consumer: %s", rd_kafka_err2str(e));
  }
  close_all(w);
  if (!w->group) rd_kafka_consumer_close(w->rk);
  int left = esr_publisher_flush(w->pub, 1000);
  if (left) esr_log(ESR_LOG_WARN, "outbox", "%d outbox messages unacknowledged at exit; they will be sent again", left);
}

esr_code esr_worker_run(esr_worker *w, volatile sig_atomic_t *stop, esr_error *err) {
  const esr_config *cfg = w->cfg;
  esr_log(ESR_LOG_INFO, "worker", "esr %s starting: %zu topic(s), %zu handler(s), %s assignment, state.dir %s",
          ESR_VERSION, cfg->n_topics, w->registry.n, w->group ? "group" : "static", cfg->state_dir);
  esr_code rc = w->group ? subscribe(w, err) : assign_static(w, err);
  if (rc != ESR_E_OK) return rc;
  int64_t last_tick = esr_now_ms();
  w->last_stats = last_tick;
  while (!*stop && !w->fatal) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rk, w->open_batches ? TICK_MS / 2 : 100);
    if (m) {
      on_message(w, m);
      rd_kafka_message_destroy(m);
    }
    esr_publisher_poll(w->pub, 0);
    int64_t now = esr_now_ms();
    if (now - last_tick >= TICK_MS || !m) {
      tick(w, now);
      last_tick = now;
    }
  }
  shutdown_worker(w);
  if (w->fatal) {
    *err = w->fatal_err;
    return err->code;
  }
  esr_log(ESR_LOG_INFO, "worker", "stopped cleanly");
  return ESR_E_OK;
}
