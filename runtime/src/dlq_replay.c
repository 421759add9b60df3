/* dlq_replay.c — read a dead-letter topic to its current end, de-duplicate, filter, re-send to the source. */
#include "esr/dlq_replay.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "esr/clock.h"
#include "esr/kafka.h"

#define IDLE_TIMEOUT_MS 30000

/* A set of esr-source strings (open addressing). */
typedef struct seen_set {
  char **v;
  size_t cap, n;
} seen_set;

static uint64_t fnv(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

/* 1 when `s` was added, 0 when it was there already, -1 when out of memory. */
static int seen_add(seen_set *set, const char *s) {
  if ((set->n + 1) * 2 > set->cap) {
    size_t cap = set->cap ? set->cap * 2 : 1024;
    char **v = calloc(cap, sizeof *v);
    if (!v) return -1;
    for (size_t i = 0; i < set->cap; i++) {
      if (!set->v[i]) continue;
      size_t j = fnv(set->v[i]) & (cap - 1);
      while (v[j]) j = (j + 1) & (cap - 1);
      v[j] = set->v[i];
    }
    free(set->v);
    set->v = v;
    set->cap = cap;
  }
  size_t j = fnv(s) & (set->cap - 1);
  for (; set->v[j]; j = (j + 1) & (set->cap - 1))
    if (strcmp(set->v[j], s) == 0) return 0;
  if (!(set->v[j] = strdup(s))) return -1;
  set->n++;
  return 1;
}

static void seen_free(seen_set *set) {
  for (size_t i = 0; i < set->cap; i++) free(set->v[i]);
  free(set->v);
}

/* A header's value as a NUL-terminated copy in buf, or NULL when absent. */
static const char *header(rd_kafka_headers_t *h, const char *name, char *buf, size_t cap) {
  const void *v;
  size_t len;
  if (!h || rd_kafka_header_get_last(h, name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR || !v || len >= cap) return NULL;
  memcpy(buf, v, len);
  buf[len] = '\0';
  return buf;
}

typedef struct delivery {
  int64_t ok, failed;
  char first_error[256];
} delivery;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  delivery *d = opaque;
  if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    d->ok++;
  } else {
    if (!d->failed) snprintf(d->first_error, sizeof d->first_error, "%s", rd_kafka_err2str(m->err));
    d->failed++;
  }
}

static int wanted(const esr_dlq_replay_opts *o, const char *reason, int32_t part, int64_t off) {
  if (o->reasons && o->reasons[0]) {
    int match = 0;
    for (const char *const *r = o->reasons; *r; r++)
      if (reason && strcmp(reason, *r) == 0) match = 1;
    if (!match) return 0;
  }
  if (o->source_partition >= 0 && part != o->source_partition) return 0;
  if (o->from_offset >= 0 && off < o->from_offset) return 0;
  if (o->to_offset >= 0 && off > o->to_offset) return 0;
  return 1;
}

esr_code esr_dlq_replay(const esr_config *cfg, const esr_dlq_replay_opts *o, esr_dlq_replay_stats *st,
                        esr_error *err) {
  memset(st, 0, sizeof *st);
  rd_kafka_t *consumer = NULL, *producer = NULL;
  rd_kafka_topic_partition_list_t *assign = NULL;
  int64_t *ends = NULL;
  seen_set seen = {0};
  delivery d = {0};
  esr_code rc = ESR_E_OK;
  char errstr[512];

  rd_kafka_conf_t *cc = esr_kafka_conf_new(cfg, ESR_KAFKA_CONSUMER, err);
  if (!cc) return err->code;
  rd_kafka_conf_set(cc, "group.id", "esr-dlq-replay", errstr, sizeof errstr); /* never joined, never committed */
  rd_kafka_conf_set(cc, "enable.auto.commit", "false", errstr, sizeof errstr);
  if (!(consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cc, errstr, sizeof errstr))) {
    rd_kafka_conf_destroy(cc);
    return esr_error_set(err, ESR_E_CONFIG, 0, "cannot create a Kafka consumer: %s", errstr);
  }
  if (!o->dry_run) {
    rd_kafka_conf_t *pc = esr_kafka_conf_new(cfg, ESR_KAFKA_PRODUCER, err);
    if (!pc) {
      rc = err->code;
      goto out;
    }
    rd_kafka_conf_set_dr_msg_cb(pc, dr_cb);
    rd_kafka_conf_set_opaque(pc, &d);
    if (!(producer = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof errstr))) {
      rd_kafka_conf_destroy(pc);
      rc = esr_error_set(err, ESR_E_CONFIG, 0, "cannot create a Kafka producer: %s", errstr);
      goto out;
    }
  }

  /* Where the dead-letter topic starts and ends now. */
  int parts;
  rd_kafka_resp_err_t e;
  if ((rc = esr_kafka_partition_count(consumer, o->dlq_topic, 10000, &parts, err)) != ESR_E_OK) goto out;
  ends = calloc((size_t)parts, sizeof *ends);
  assign = rd_kafka_topic_partition_list_new(parts);
  int open = 0;
  for (int p = 0; p < parts; p++) {
    int64_t lo, hi;
    e = rd_kafka_query_watermark_offsets(consumer, o->dlq_topic, p, &lo, &hi, 10000);
    if (e) {
      rc = esr_error_set(err, ESR_E_KAFKA, e, "dead-letter topic %s[%d]: %s", o->dlq_topic, p, rd_kafka_err2str(e));
      goto out;
    }
    ends[p] = hi;
    if (hi > lo) {
      rd_kafka_topic_partition_list_add(assign, o->dlq_topic, p)->offset = lo;
      open++;
    }
  }
  if (open && (e = rd_kafka_assign(consumer, assign)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    rc = esr_error_set(err, ESR_E_KAFKA, e, "assign: %s", rd_kafka_err2str(e));
    goto out;
  }

  int64_t last_seen = esr_now_ms();
  while (open > 0) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 200);
    if (producer) rd_kafka_poll(producer, 0);
    if (!m) {
      if (esr_now_ms() - last_seen > IDLE_TIMEOUT_MS) {
        rc = esr_error_set(err, ESR_E_KAFKA, 0, "nothing read from %s for %d s before its end", o->dlq_topic,
                           IDLE_TIMEOUT_MS / 1000);
        goto out;
      }
      continue;
    }
    last_seen = esr_now_ms();
    if (m->err) {
      rc = esr_error_set(err, ESR_E_KAFKA, m->err, "reading %s: %s", o->dlq_topic, rd_kafka_message_errstr(m));
      rd_kafka_message_destroy(m);
      goto out;
    }
    int32_t dp = m->partition;
    int64_t doff = m->offset;
    if (dp >= 0 && dp < parts && doff + 1 >= ends[dp]) open--;
    if (dp >= 0 && dp < parts && doff >= ends[dp]) { /* written after the replay began */
      rd_kafka_message_destroy(m);
      continue;
    }
    st->read++;
    rd_kafka_headers_t *h = NULL;
    rd_kafka_message_headers(m, &h);
    char source[300], topic[256], part[32], off[32], reason[64];
    const char *src = header(h, "esr-source", source, sizeof source);
    const char *t = header(h, "esr-topic", topic, sizeof topic);
    const char *ps = header(h, "esr-partition", part, sizeof part);
    const char *os = header(h, "esr-offset", off, sizeof off);
    const char *why = header(h, "esr-reason", reason, sizeof reason);
    if (!src || !t || !ps || !os) {
      st->foreign++;
      rd_kafka_message_destroy(m);
      continue;
    }
    int fresh = seen_add(&seen, src);
    if (fresh < 0) {
      rd_kafka_message_destroy(m);
      rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
      goto out;
    }
    int32_t sp = (int32_t)strtol(ps, NULL, 10);
    int64_t so = strtoll(os, NULL, 10);
    if (!fresh) {
      st->duplicates++;
    } else if (!wanted(o, why, sp, so)) {
      st->filtered++;
    } else {
      const char *to = o->target_topic ? o->target_topic : t;
      if (o->list)
        fprintf(o->list, "%s %s[%d]@%" PRId64 " (%s) -> %s\n", o->dry_run ? "would re-send" : "re-send", t, (int)sp,
                so, why ? why : "?", to);
      if (producer) {
        char from[400];
        snprintf(from, sizeof from, "%s/%d/%" PRId64, o->dlq_topic, (int)dp, doff);
        rd_kafka_headers_t *nh = rd_kafka_headers_new(2);
        rd_kafka_header_add(nh, "esr-replayed-from", -1, from, -1);
        if (why) rd_kafka_header_add(nh, "esr-replayed-reason", -1, why, -1);
        for (;;) {
          e = rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(to),
                                RD_KAFKA_V_PARTITION(o->by_key ? RD_KAFKA_PARTITION_UA : sp),
                                RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(m->payload, m->len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(nh), RD_KAFKA_V_END);
          if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
          rd_kafka_poll(producer, 100);
        }
        if (e) {
          rd_kafka_headers_destroy(nh);
          rd_kafka_message_destroy(m);
          rc = esr_error_set(err, ESR_E_KAFKA, e, "producing to %s: %s", to, rd_kafka_err2str(e));
          goto out;
        }
      } else {
        st->resent++;
      }
    }
    rd_kafka_message_destroy(m);
  }
  if (producer) {
    rd_kafka_flush(producer, 60000);
    st->resent = d.ok;
    if (d.failed || rd_kafka_outq_len(producer) > 0)
      rc = esr_error_set(err, ESR_E_KAFKA, 0, "%" PRId64 " re-sent events were not acknowledged (%s)",
                         d.failed + rd_kafka_outq_len(producer), d.failed ? d.first_error : "timeout");
  }
out:
  if (assign) rd_kafka_topic_partition_list_destroy(assign);
  free(ends);
  seen_free(&seen);
  if (consumer) {
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
  }
  if (producer) rd_kafka_destroy(producer);
  return rc;
}
