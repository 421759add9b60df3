/* readback.c — read partitions from an offset to the end they had when the read began (manual assignment of all of
 * them at once, partition EOF events to know where each end is even when the last offsets are invisible to
 * read_committed). */
#include "readback.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "kafka.h"

struct esr_readback {
  rd_kafka_t *rk;
  const _Atomic int *interrupt;
};

void esr_readback_set_interrupt(esr_readback *rb, const _Atomic int *flag) { rb->interrupt = flag; }

static int interrupted(const esr_readback *rb) {
  return rb->interrupt && atomic_load_explicit(rb->interrupt, memory_order_relaxed);
}

/* Failures that a client outlives (librdkafka retries them): a read waits them out, up to its timeout. */
static int transient(rd_kafka_resp_err_t e) {
  switch (e) {
  case RD_KAFKA_RESP_ERR__TRANSPORT:
  case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
  case RD_KAFKA_RESP_ERR__RESOLVE:
  case RD_KAFKA_RESP_ERR__TIMED_OUT:
  case RD_KAFKA_RESP_ERR__WAIT_COORD:
  case RD_KAFKA_RESP_ERR__NODE_UPDATE:
  case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
  case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
  case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
  case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
  case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
  case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
  case RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR:
  case RD_KAFKA_RESP_ERR_FETCH_SESSION_ID_NOT_FOUND:
  case RD_KAFKA_RESP_ERR_INVALID_FETCH_SESSION_EPOCH:
  case RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE:
  case RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH:
  case RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH: return 1;
  default: return 0;
  }
}

static int unknown(rd_kafka_resp_err_t e) {
  return e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
         e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
}

int esr_readback_unknown(const esr_error *err) {
  return err && err->code == ESR_E_KAFKA && err->lib_code == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
}

esr_code esr_readback_new(const esr_config *cfg, esr_readback **out, esr_error *err) {
  *out = NULL;
  char errstr[512];
  rd_kafka_conf_t *conf;
  esr_code rc = esr_kafka_conf_new(cfg, ESR_KAFKA_CONSUMER, &conf, err);
  if (rc != ESR_E_OK) return rc;
  /* librdkafka's assign API needs a group id; the reader never joins it and never commits. The partition EOF events
   * tell where the end is when the last offsets are transaction markers or aborted messages, which read_committed
   * never delivers. */
  static const char *const settings[][2] = {
      {"group.id", "esr-readback"}, {"enable.auto.commit", "false"}, {"enable.partition.eof", "true"}};
  for (size_t i = 0; i < sizeof settings / sizeof *settings; i++) {
    if (rd_kafka_conf_set(conf, settings[i][0], settings[i][1], errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return esr_error_set(err, ESR_E_CONFIG, 0, "read-back consumer: %s: %s", settings[i][0], errstr);
    }
  }
  esr_readback *rb = calloc(1, sizeof *rb);
  if (!rb) {
    rd_kafka_conf_destroy(conf);
    return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  }
  if (!(rb->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr))) {
    rd_kafka_conf_destroy(conf);
    free(rb);
    return esr_error_set(err, ESR_E_CONFIG, 0, "cannot create a Kafka consumer: %s", errstr);
  }
  *out = rb;
  return ESR_E_OK;
}

void esr_readback_free(esr_readback *rb) {
  if (!rb) return;
  rd_kafka_consumer_close(rb->rk);
  rd_kafka_destroy(rb->rk);
  free(rb);
}

esr_code esr_readback_partition_count(esr_readback *rb, const char *topic, int timeout_ms, int *count,
                                      esr_error *err) {
  return esr_kafka_partition_count(rb->rk, topic, timeout_ms > 0 ? timeout_ms : ESR_READBACK_TIMEOUT_MS, count, err);
}

static void pause_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ListOffsets for n partitions in one request: RD_KAFKA_OFFSET_BEGINNING (-2) asks for each log start, RD_KAFKA_OFFSET_END
 * (-1) for each end (under read_committed, the last stable offset). rd_kafka_offsets_for_times, not
 * rd_kafka_query_watermark_offsets: in librdkafka 2.0.2 the latter waits for its request without looking at its
 * timeout, and with the broker down it never returned (measured: over 12 minutes with a 3 s timeout). On an error,
 * *bad is the index of the partition it concerns (-1: the whole request). */
static rd_kafka_resp_err_t list_offsets(esr_readback *rb, const esr_readback_range *rs, size_t n, int64_t which,
                                        int timeout_ms, int64_t *out, size_t *bad) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
  for (size_t i = 0; i < n; i++) rd_kafka_topic_partition_list_add(l, rs[i].topic, rs[i].partition)->offset = which;
  rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(rb->rk, l, timeout_ms);
  *bad = (size_t)-1;
  for (size_t i = 0; !e && i < n; i++) {
    /* the answer keeps the request's order; look each partition up anyway */
    const rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(l, rs[i].topic, rs[i].partition);
    e = !tp ? RD_KAFKA_RESP_ERR__FAIL : tp->err ? tp->err : tp->offset < 0 ? RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE : 0;
    if (e) *bad = i;
    else out[i] = tp->offset;
  }
  rd_kafka_topic_partition_list_destroy(l);
  return e;
}

/* The log start and end of each partition, transient failures retried until the deadline. */
static esr_code watermarks(esr_readback *rb, const esr_readback_range *rs, size_t n, int64_t deadline, int64_t *lo,
                           int64_t *hi, esr_error *err) {
  for (;;) {
    size_t bad;
    int64_t left = deadline - esr_now_ms();
    rd_kafka_resp_err_t e = list_offsets(rb, rs, n, RD_KAFKA_OFFSET_BEGINNING, left > 0 ? (int)left : 1, lo, &bad);
    if (!e) {
      left = deadline - esr_now_ms();
      e = list_offsets(rb, rs, n, RD_KAFKA_OFFSET_END, left > 0 ? (int)left : 1, hi, &bad);
    }
    if (!e) return ESR_E_OK;
    const esr_readback_range *r = &rs[bad == (size_t)-1 ? 0 : bad];
    if (unknown(e))
      return esr_error_set(err, ESR_E_KAFKA, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, "%s[%" PRId32 "]: %s",
                           r->topic, r->partition, rd_kafka_err2str(e));
    if (!transient(e) || esr_now_ms() >= deadline)
      return esr_error_set(err, ESR_E_KAFKA, transient(e) ? RD_KAFKA_RESP_ERR__TIMED_OUT : e,
                           "%s[%" PRId32 "]: cannot read the log start and end: %s", r->topic, r->partition,
                           rd_kafka_err2str(e));
    pause_ms(100);
  }
}

esr_code esr_readback_bounds(esr_readback *rb, const char *topic, int32_t partition, int timeout_ms, int64_t *start,
                             int64_t *end, esr_error *err) {
  esr_readback_range r = {.topic = topic, .partition = partition};
  return watermarks(rb, &r, 1, esr_now_ms() + (timeout_ms > 0 ? timeout_ms : ESR_READBACK_TIMEOUT_MS), start, end, err);
}

esr_code esr_readback_offset_for_time(esr_readback *rb, const char *topic, int32_t partition, int64_t ts_ms,
                                      int timeout_ms, int64_t *offset, esr_error *err) {
  int64_t deadline = esr_now_ms() + (timeout_ms > 0 ? timeout_ms : ESR_READBACK_TIMEOUT_MS);
  for (;;) {
    int64_t left = deadline - esr_now_ms();
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = ts_ms;
    rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(rb->rk, l, left > 0 ? (int)left : 1);
    if (!e) e = l->elems[0].err;
    *offset = l->elems[0].offset < 0 ? -1 : l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    if (!e) return ESR_E_OK;
    if (unknown(e))
      return esr_error_set(err, ESR_E_KAFKA, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, "%s[%" PRId32 "]: %s", topic,
                           partition, rd_kafka_err2str(e));
    if (!transient(e) || esr_now_ms() >= deadline)
      return esr_error_set(err, ESR_E_KAFKA, transient(e) ? RD_KAFKA_RESP_ERR__TIMED_OUT : e,
                           "%s[%" PRId32 "]: cannot look up the offset for a time: %s", topic, partition,
                           rd_kafka_err2str(e));
    pause_ms(100);
  }
}

typedef struct cursor {
  const esr_readback_range *r;
  esr_readback_result *res;
  int64_t pos; /* the next offset to read */
  int open;
} cursor;

/* Assigns every open range at its position (replacing the assignment). */
static esr_code assign_open(esr_readback *rb, const cursor *cs, size_t n, esr_error *err) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
  if (!l) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  for (size_t i = 0; i < n; i++)
    if (cs[i].open) rd_kafka_topic_partition_list_add(l, cs[i].r->topic, cs[i].r->partition)->offset = cs[i].pos;
  rd_kafka_resp_err_t e = rd_kafka_assign(rb->rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) return esr_error_set(err, ESR_E_KAFKA, e, "%s: assign: %s", cs[0].r->topic, rd_kafka_err2str(e));
  return ESR_E_OK;
}

/* The open range a message or event of partition topic/partition belongs to, or NULL. */
static cursor *cursor_of(cursor *cs, size_t n, const rd_kafka_message_t *m) {
  if (!m->rkt) return NULL;
  const char *topic = rd_kafka_topic_name(m->rkt);
  for (size_t i = 0; i < n; i++)
    if (cs[i].r->partition == m->partition && strcmp(cs[i].r->topic, topic) == 0) return &cs[i];
  return NULL;
}

esr_code esr_readback_scan_many(esr_readback *rb, const esr_readback_range *rs, size_t n, esr_readback_fn fn,
                                void *arg, esr_readback_result *results, esr_error *err) {
  esr_code rc = ESR_E_OK;
  cursor *cs = calloc(n ? n : 1, sizeof *cs);
  int64_t *lo = calloc(n ? n : 1, sizeof *lo), *hi = calloc(n ? n : 1, sizeof *hi);
  esr_readback_result *local = results ? NULL : calloc(n ? n : 1, sizeof *local);
  if (!cs || !lo || !hi || (!results && !local)) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto done;
  }
  if (!results) results = local;
  memset(results, 0, n * sizeof *results);
  int timeout = 0;
  for (size_t i = 0; i < n; i++)
    if (rs[i].timeout_ms > timeout) timeout = rs[i].timeout_ms;
  if (timeout <= 0) timeout = ESR_READBACK_TIMEOUT_MS;
  int64_t deadline = esr_now_ms() + timeout;
  rd_kafka_resp_err_t last = RD_KAFKA_RESP_ERR_NO_ERROR;
  if (!n || (rc = watermarks(rb, rs, n, deadline, lo, hi, err)) != ESR_E_OK) goto done;
  size_t open = 0;
  for (size_t i = 0; i < n; i++) {
    esr_readback_result *res = &results[i];
    int64_t start = rs[i].start > 0 ? rs[i].start : 0;
    res->log_start = lo[i];
    res->end = rs[i].end >= 0 && rs[i].end < hi[i] ? rs[i].end : hi[i];
    res->from = start > lo[i] ? start : lo[i];
    res->truncated = start < lo[i];
    cs[i] = (cursor){.r = &rs[i], .res = res, .pos = res->from, .open = res->from < res->end};
    open += cs[i].open;
  }
  if (!open) goto done;
  if ((rc = assign_open(rb, cs, n, err)) != ESR_E_OK) goto out;

  while (open > 0) {
    int64_t now = esr_now_ms();
    if (interrupted(rb)) {
      rc = esr_error_set(err, ESR_E_STATE, 0, "read-back interrupted");
      goto out;
    }
    if (now >= deadline) {
      cursor *c = NULL;
      for (size_t i = 0; i < n && !c; i++)
        if (cs[i].open) c = &cs[i];
      rc = esr_error_set(err, ESR_E_KAFKA, RD_KAFKA_RESP_ERR__TIMED_OUT,
                         "%s[%" PRId32 "]: nothing read for %d ms at offset %" PRId64 " of [%" PRId64 ", %" PRId64
                         ")%s%s",
                         c->r->topic, c->r->partition, timeout, c->pos, c->res->from, c->res->end, last ? ": " : "",
                         last ? rd_kafka_err2str(last) : "");
      goto out;
    }
    int wait = rb->interrupt ? 20 : 100;
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rb->rk, deadline - now < wait ? (int)(deadline - now) : wait);
    if (!m) continue;
    cursor *c = cursor_of(cs, n, m);
    if (m->err) {
      rd_kafka_resp_err_t e = m->err;
      int64_t at = m->offset;
      rd_kafka_message_destroy(m);
      if (e == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (c && c->open && at >= c->res->end) {
          c->open = 0;
          open--;
        }
        continue;
      }
      if (c && c->open && (e == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET || e == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)) {
        /* Retention deleted the offsets ahead of the read while it ran: go on from the new log start. */
        int64_t l, h;
        if ((rc = watermarks(rb, c->r, 1, deadline, &l, &h, err)) != ESR_E_OK) goto out;
        c->res->log_start = l;
        if (l <= c->pos) {
          rc = esr_error_set(err, ESR_E_KAFKA, e, "%s[%" PRId32 "]: offset %" PRId64 " out of range [%" PRId64
                                                  ", %" PRId64 ")",
                             c->r->topic, c->r->partition, c->pos, l, h);
          goto out;
        }
        c->res->truncated = 1;
        c->pos = l;
        if (c->pos >= c->res->end) {
          c->open = 0;
          open--;
          if (!open) break;
        }
        if ((rc = assign_open(rb, cs, n, err)) != ESR_E_OK) goto out;
        deadline = esr_now_ms() + timeout;
        continue;
      }
      if (c && unknown(e)) {
        rc = esr_error_set(err, ESR_E_KAFKA, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, "%s[%" PRId32 "]: %s",
                           c->r->topic, c->r->partition, rd_kafka_err2str(e));
        goto out;
      }
      if (c && !transient(e)) {
        rc = esr_error_set(err, ESR_E_KAFKA, e, "%s[%" PRId32 "]: reading at %" PRId64 ": %s", c->r->topic,
                           c->r->partition, c->pos, rd_kafka_err2str(e));
        goto out;
      }
      last = e; /* a broker or the group coordinator unreachable: librdkafka retries; the deadline bounds the wait */
      continue;
    }
    if (!c || !c->open || m->offset < c->pos) { /* done, or left over from an earlier assignment */
      rd_kafka_message_destroy(m);
      continue;
    }
    if (m->offset >= c->res->end) {
      rd_kafka_message_destroy(m);
      c->open = 0;
      open--;
      continue;
    }
    c->pos = m->offset + 1;
    c->res->read++;
    deadline = esr_now_ms() + timeout;
    rc = fn ? fn(arg, m, err) : ESR_E_OK;
    rd_kafka_message_destroy(m);
    if (rc != ESR_E_OK) goto out;
    if (c->pos >= c->res->end) {
      c->open = 0;
      open--;
    }
  }
  rc = ESR_E_OK;
out:
  rd_kafka_assign(rb->rk, NULL);
  /* librdkafka drops what was fetched for an old assignment; drain anyway so the next read starts clean. */
  for (rd_kafka_message_t *m; (m = rd_kafka_consumer_poll(rb->rk, 0));) rd_kafka_message_destroy(m);
done:
  free(cs);
  free(lo);
  free(hi);
  free(local);
  return rc;
}

esr_code esr_readback_scan(esr_readback *rb, const esr_readback_range *r, esr_readback_fn fn, void *arg,
                           esr_readback_result *res, esr_error *err) {
  esr_readback_result local;
  return esr_readback_scan_many(rb, r, 1, fn, arg, res ? res : &local, err);
}

typedef struct collector {
  const char *header, *prefix;
  size_t prefix_len;
  esr_strset *into;
  esr_readback_result *res;
} collector;

static esr_code collect_one(void *arg, const rd_kafka_message_t *m, esr_error *err) {
  collector *c = arg;
  rd_kafka_headers_t *h = NULL;
  if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR || !h) return ESR_E_OK;
  const void *v;
  size_t len;
  for (size_t i = 0; rd_kafka_header_get(h, i, c->header, &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
    if (!v || len < c->prefix_len || memcmp(v, c->prefix, c->prefix_len) != 0) continue;
    c->res->collected++;
    esr_code rc = esr_strset_add(c->into, v, len, NULL, err);
    if (rc != ESR_E_OK) {
      esr_error_prefix(err, "%s[%" PRId32 "] at offset %" PRId64, rd_kafka_topic_name(m->rkt), m->partition,
                       m->offset);
      return rc;
    }
  }
  return ESR_E_OK;
}

esr_code esr_readback_collect(esr_readback *rb, const esr_readback_range *r, const char *header, const char *prefix,
                              esr_strset *into, esr_readback_result *res, esr_error *err) {
  esr_readback_result local;
  if (!res) res = &local;
  collector c = {header, prefix ? prefix : "", prefix ? strlen(prefix) : 0, into, res};
  return esr_readback_scan(rb, r, collect_one, &c, res, err);
}
