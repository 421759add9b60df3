/* dlq_replay.c — read the dead-letter topic to its current end to learn where re-sends would go, read those partitions
 * back for earlier re-sends, then read the dead-letter topic again (to the same end) and re-send what is left. */
#include "dlq_replay.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "readback.h"
#include "strset.h"

/* A dead letter's esr headers. */
typedef struct dead_letter {
  char source[300], topic[256], reason[64];
  int32_t partition;
  int64_t offset;
  int has_reason;
} dead_letter;

/* A header's value as a NUL-terminated copy in buf; NULL when absent, too long or holding a NUL. */
static const char *header(rd_kafka_headers_t *h, const char *name, char *buf, size_t cap) {
  const void *v;
  size_t len;
  if (!h || rd_kafka_header_get_last(h, name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR || !v || len >= cap ||
      memchr(v, '\0', len))
    return NULL;
  memcpy(buf, v, len);
  buf[len] = '\0';
  return buf;
}

static int parse_count(const char *s, int64_t max, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < 0 || v > max) return 0;
  *out = v;
  return 1;
}

/* 1 when m carries esr's dead-letter headers (filled into d), 0 otherwise. */
static int parse(const rd_kafka_message_t *m, dead_letter *d) {
  rd_kafka_headers_t *h = NULL;
  char part[32], off[32];
  int64_t p;
  rd_kafka_message_headers(m, &h);
  if (!header(h, "esr-source", d->source, sizeof d->source) || !header(h, "esr-topic", d->topic, sizeof d->topic) ||
      !d->topic[0] || !header(h, "esr-partition", part, sizeof part) || !header(h, "esr-offset", off, sizeof off) ||
      !parse_count(part, INT32_MAX, &p) || !parse_count(off, INT64_MAX - 1, &d->offset))
    return 0;
  d->partition = (int32_t)p;
  d->has_reason = header(h, "esr-reason", d->reason, sizeof d->reason) != NULL;
  return 1;
}

/* The filters that depend only on the source coordinates (the same for every duplicate of a source event). */
static int coords_wanted(const esr_dlq_replay_opts *o, const dead_letter *d) {
  if (o->source_partition >= 0 && d->partition != o->source_partition) return 0;
  if (o->from_offset >= 0 && d->offset < o->from_offset) return 0;
  if (o->to_offset >= 0 && d->offset > o->to_offset) return 0;
  return 1;
}

static int wanted(const esr_dlq_replay_opts *o, const dead_letter *d) {
  if (o->reasons && o->reasons[0]) {
    int match = 0;
    for (const char *const *r = o->reasons; *r; r++)
      if (d->has_reason && strcmp(d->reason, *r) == 0) match = 1;
    if (!match) return 0;
  }
  return coords_wanted(o, d);
}

/* ---- the partitions re-sends go to, and from where to look for earlier ones ---- */

typedef struct target_topic {
  char *name;
  int32_t n;          /* partitions tracked */
  int64_t *need;      /* per partition: the lowest offset an earlier re-send can be at; INT64_MAX: none */
  int64_t *log_start; /* per partition, as read back (0 when the partition does not exist: nothing deleted there) */
} target_topic;

typedef struct targets {
  target_topic *v;
  size_t n, cap;
} targets;

static void targets_free(targets *ts) {
  for (size_t i = 0; i < ts->n; i++) {
    free(ts->v[i].name);
    free(ts->v[i].need);
    free(ts->v[i].log_start);
  }
  free(ts->v);
}

static target_topic *target_find(targets *ts, const char *name) {
  for (size_t i = 0; i < ts->n; i++)
    if (strcmp(ts->v[i].name, name) == 0) return &ts->v[i];
  return NULL;
}

static esr_code target_grow(target_topic *t, int32_t n, esr_error *err) {
  if (n <= t->n) return ESR_E_OK;
  int64_t *need = realloc(t->need, (size_t)n * sizeof *need);
  if (need) t->need = need;
  int64_t *lo = realloc(t->log_start, (size_t)n * sizeof *lo);
  if (lo) t->log_start = lo;
  if (!need || !lo) return esr_error_set(err, ESR_E_NOMEM, ENOMEM, "out of memory");
  for (int32_t p = t->n; p < n; p++) {
    t->need[p] = INT64_MAX;
    t->log_start[p] = 0;
  }
  t->n = n;
  return ESR_E_OK;
}

/* The target topic called name, added (with every partition from offset 0 when by_key) if new. */
static esr_code target_get(targets *ts, esr_readback *rb, const char *name, int by_key, target_topic **out,
                           esr_error *err) {
  if ((*out = target_find(ts, name))) return ESR_E_OK;
  if (ts->n == ts->cap) {
    size_t cap = ts->cap ? ts->cap * 2 : 4;
    target_topic *v = realloc(ts->v, cap * sizeof *v);
    if (!v) return esr_error_set(err, ESR_E_NOMEM, ENOMEM, "out of memory");
    ts->v = v;
    ts->cap = cap;
  }
  target_topic *t = &ts->v[ts->n];
  memset(t, 0, sizeof *t);
  if (!(t->name = strdup(name))) return esr_error_set(err, ESR_E_NOMEM, ENOMEM, "out of memory");
  ts->n++;
  if (by_key) {
    int parts = 0;
    esr_code rc = esr_readback_partition_count(rb, name, 0, &parts, err);
    if (rc != ESR_E_OK && !esr_readback_unknown(err)) return rc;
    if (rc == ESR_E_OK && (rc = target_grow(t, parts, err)) != ESR_E_OK) return rc;
    for (int32_t p = 0; p < t->n; p++) t->need[p] = 0;
  }
  *out = t;
  return ESR_E_OK;
}

/* ---- one pass over the dead-letter topic ---- */

typedef struct delivery {
  int64_t ok, failed;
  char first_error[256];
} delivery;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  delivery *d = opaque;
  if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    d->ok++;
  } else {
    if (!d->failed) snprintf(d->first_error, sizeof d->first_error, "%s", rd_kafka_err2str(m->err));
    d->failed++;
  }
}

typedef struct replay {
  const esr_dlq_replay_opts *o;
  esr_dlq_replay_stats *st;
  esr_readback *rb;
  rd_kafka_t *producer;
  targets targets;
  esr_strset *members; /* pass 1: "<esr-source>\0<dlq partition>/<dlq offset>" of each dead letter within the filters */
  esr_strset *done;    /* esr-replayed-from values found in the target partitions */
  esr_strset *resent;  /* esr-source of the source events re-sent by an earlier run */
  esr_strset *seen;    /* pass 2: esr-source values met */
} replay;

/* Pass 1: each dead letter within the coordinate filters (whatever its reason: an earlier run may have used another
 * --reason) is recorded, and its target partition must be read back from where its re-send could be. */
static esr_code learn(void *arg, const rd_kafka_message_t *m, esr_error *err) {
  replay *r = arg;
  dead_letter d;
  if (!parse(m, &d) || !coords_wanted(r->o, &d)) return ESR_E_OK;
  char member[sizeof d.source + 48];
  int n = snprintf(member, sizeof member, "%s%c%" PRId32 "/%" PRId64, d.source, '\0', m->partition, m->offset);
  esr_code rc = esr_strset_add(r->members, member, (size_t)n, NULL, err);
  if (rc != ESR_E_OK) {
    esr_error_prefix(err, "dead letters within the filters");
    return rc;
  }
  const char *to = r->o->target_topic ? r->o->target_topic : d.topic;
  target_topic *t;
  if ((rc = target_get(&r->targets, r->rb, to, r->o->by_key, &t, err)) != ESR_E_OK) return rc;
  if (r->o->by_key) return ESR_E_OK; /* every partition from its start, set up by target_get */
  if ((rc = target_grow(t, d.partition + 1, err)) != ESR_E_OK) return rc;
  int64_t need = r->o->target_topic ? 0 : d.offset + 1; /* a re-send follows its source event in the same partition */
  if (need < t->need[d.partition]) t->need[d.partition] = need;
  return ESR_E_OK;
}

typedef struct marking {
  replay *r;
  esr_code rc;
  esr_error *err;
} marking;

static int mark_resent(void *arg, const char *s, size_t len) {
  marking *mk = arg;
  const char *loc = s + strlen(s) + 1; /* members are "<esr-source>\0<partition>/<offset>" */
  if (loc > s + len) return 0;
  char from[512];
  int n = snprintf(from, sizeof from, "%s/%s", mk->r->o->dlq_topic, loc);
  if (n < 0 || (size_t)n >= sizeof from || !esr_strset_has(mk->r->done, from, (size_t)n)) return 0;
  mk->rc = esr_strset_add(mk->r->resent, s, strlen(s), NULL, mk->err);
  return mk->rc != ESR_E_OK;
}

/* 1 when retention deleted offsets where an earlier re-send of d could be. */
static int unverifiable(replay *r, const dead_letter *d) {
  target_topic *t = target_find(&r->targets, r->o->target_topic ? r->o->target_topic : d->topic);
  if (!t) return 1;
  if (r->o->by_key) {
    for (int32_t p = 0; p < t->n; p++)
      if (t->log_start[p] > 0) return 1;
    return 0;
  }
  int64_t need = r->o->target_topic ? 0 : d->offset + 1;
  return d->partition >= t->n || t->log_start[d->partition] > need;
}

static esr_code produce_one(replay *r, const rd_kafka_message_t *m, const dead_letter *d, const char *to,
                            esr_error *err) {
  char from[400];
  snprintf(from, sizeof from, "%s/%" PRId32 "/%" PRId64, r->o->dlq_topic, m->partition, m->offset);
  rd_kafka_headers_t *nh = rd_kafka_headers_new(2);
  rd_kafka_header_add(nh, "esr-replayed-from", -1, from, -1);
  if (d->has_reason) rd_kafka_header_add(nh, "esr-replayed-reason", -1, d->reason, -1);
  rd_kafka_resp_err_t e;
  for (;;) {
    e = rd_kafka_producev(r->producer, RD_KAFKA_V_TOPIC(to),
                          RD_KAFKA_V_PARTITION(r->o->by_key ? RD_KAFKA_PARTITION_UA : d->partition),
                          RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(m->payload, m->len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(nh), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
    rd_kafka_poll(r->producer, 100);
  }
  if (e) {
    rd_kafka_headers_destroy(nh);
    return esr_error_set(err, ESR_E_KAFKA, e, "producing to %s: %s", to, rd_kafka_err2str(e));
  }
  rd_kafka_poll(r->producer, 0);
  return ESR_E_OK;
}

/* Pass 2: de-duplicate, filter, skip what was re-sent before, re-send the rest. */
static esr_code resend(void *arg, const rd_kafka_message_t *m, esr_error *err) {
  replay *r = arg;
  const esr_dlq_replay_opts *o = r->o;
  esr_dlq_replay_stats *st = r->st;
  dead_letter d;
  st->read++;
  if (!parse(m, &d)) {
    st->foreign++;
    return ESR_E_OK;
  }
  int fresh;
  esr_code rc = esr_strset_add(r->seen, d.source, strlen(d.source), &fresh, err);
  if (rc != ESR_E_OK) {
    esr_error_prefix(err, "source events of the dead letters");
    return rc;
  }
  if (!fresh) {
    st->duplicates++;
    return ESR_E_OK;
  }
  if (!wanted(o, &d)) {
    st->filtered++;
    return ESR_E_OK;
  }
  const char *to = o->target_topic ? o->target_topic : d.topic, *why = d.has_reason ? d.reason : "?";
  if (esr_strset_has(r->resent, d.source, strlen(d.source))) {
    st->already++;
    if (o->list)
      fprintf(o->list, "already re-sent %s[%" PRId32 "]@%" PRId64 " (%s)\n", d.topic, d.partition, d.offset, why);
    return ESR_E_OK;
  }
  if (!o->allow_unverified && unverifiable(r, &d)) {
    st->unverified++;
    if (o->list)
      fprintf(o->list, "not re-sent %s[%" PRId32 "]@%" PRId64 " (%s): retention deleted part of %s where an earlier "
                       "re-send would be\n",
              d.topic, d.partition, d.offset, why, to);
    return ESR_E_OK;
  }
  if (o->list)
    fprintf(o->list, "%s %s[%" PRId32 "]@%" PRId64 " (%s) -> %s\n", o->dry_run ? "would re-send" : "re-send", d.topic,
            d.partition, d.offset, why, to);
  if (!r->producer) {
    st->resent++;
    return ESR_E_OK;
  }
  return produce_one(r, m, &d, to, err);
}

esr_code esr_dlq_replay(const esr_config *cfg, const esr_dlq_replay_opts *o, esr_dlq_replay_stats *st,
                        esr_error *err) {
  esr_error local_err;
  esr_dlq_replay_stats local_st;
  if (!err) err = &local_err;
  if (!st) st = &local_st;
  memset(st, 0, sizeof *st);
  replay r = {.o = o, .st = st};
  delivery d = {0};
  int64_t *ends = NULL;
  esr_code rc = ESR_E_OK;
  char errstr[512];
  size_t bound = o->max_set_bytes ? o->max_set_bytes : ESR_DLQ_REPLAY_MAX_SET_BYTES;

  if ((rc = esr_readback_new(cfg, &r.rb, err)) != ESR_E_OK) return rc;
  if (!o->dry_run) {
    rd_kafka_conf_t *pc;
    if ((rc = esr_kafka_conf_new(cfg, ESR_KAFKA_PRODUCER, &pc, err)) != ESR_E_OK) goto out;
    rd_kafka_conf_set_dr_msg_cb(pc, dr_cb);
    rd_kafka_conf_set_opaque(pc, &d);
    if (!(r.producer = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof errstr))) {
      rd_kafka_conf_destroy(pc);
      rc = esr_error_set(err, ESR_E_CONFIG, 0, "cannot create a Kafka producer: %s", errstr);
      goto out;
    }
  }
  if ((rc = esr_strset_new(bound, &r.members, err)) != ESR_E_OK ||
      (rc = esr_strset_new(bound, &r.done, err)) != ESR_E_OK ||
      (rc = esr_strset_new(bound, &r.resent, err)) != ESR_E_OK ||
      (rc = esr_strset_new(bound, &r.seen, err)) != ESR_E_OK)
    goto out;

  /* Pass 1, to the ends the dead-letter topic has now. */
  int parts;
  if ((rc = esr_readback_partition_count(r.rb, o->dlq_topic, 0, &parts, err)) != ESR_E_OK) goto out;
  if (!(ends = calloc((size_t)parts, sizeof *ends))) {
    rc = esr_error_set(err, ESR_E_NOMEM, ENOMEM, "out of memory");
    goto out;
  }
  for (int p = 0; p < parts; p++) {
    esr_readback_range range = {.topic = o->dlq_topic, .partition = p, .start = 0, .end = -1};
    esr_readback_result res;
    if ((rc = esr_readback_scan(r.rb, &range, learn, &r, &res, err)) != ESR_E_OK) goto out;
    ends[p] = res.end;
  }

  /* Earlier re-sends, where this run would send. */
  char prefix[300];
  snprintf(prefix, sizeof prefix, "%s/", o->dlq_topic);
  for (size_t i = 0; i < r.targets.n; i++) {
    target_topic *t = &r.targets.v[i];
    for (int32_t p = 0; p < t->n; p++) {
      if (t->need[p] == INT64_MAX) continue;
      esr_readback_range range = {.topic = t->name, .partition = p, .start = t->need[p], .end = -1};
      esr_readback_result res;
      rc = esr_readback_collect(r.rb, &range, "esr-replayed-from", prefix, r.done, &res, err);
      if (rc != ESR_E_OK && !esr_readback_unknown(err)) {
        esr_error_prefix(err, "looking for earlier re-sends");
        goto out;
      }
      t->log_start[p] = rc == ESR_E_OK ? res.log_start : 0; /* a partition that does not exist holds no re-send */
      st->checked_partitions++;
      st->checked_messages += res.read;
    }
  }
  marking mk = {&r, ESR_E_OK, err};
  esr_strset_each(r.members, mark_resent, &mk);
  if ((rc = mk.rc) != ESR_E_OK) goto out;
  esr_strset_free(r.members);
  esr_strset_free(r.done);
  r.members = r.done = NULL;

  /* Pass 2, to the same ends. */
  for (int p = 0; p < parts; p++) {
    esr_readback_range range = {.topic = o->dlq_topic, .partition = p, .start = 0, .end = ends[p]};
    if ((rc = esr_readback_scan(r.rb, &range, resend, &r, NULL, err)) != ESR_E_OK) goto out;
  }
out:
  if (r.producer) {
    rd_kafka_flush(r.producer, 60000);
    st->resent = d.ok;
    if (rc == ESR_E_OK && (d.failed || rd_kafka_outq_len(r.producer) > 0))
      rc = esr_error_set(err, ESR_E_KAFKA, 0, "%" PRId64 " re-sent events were not acknowledged (%s)",
                         d.failed + rd_kafka_outq_len(r.producer), d.failed ? d.first_error : "timeout");
    rd_kafka_destroy(r.producer);
  }
  free(ends);
  targets_free(&r.targets);
  esr_strset_free(r.members);
  esr_strset_free(r.done);
  esr_strset_free(r.resent);
  esr_strset_free(r.seen);
  esr_readback_free(r.rb);
  return rc;
}
