/* outputs.c — marks of acknowledged outputs, the read-back of output partitions, the key set and its window. */
#include "outputs.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "strset.h"

#define NO_LIMIT INT64_MAX

typedef struct mark {
  char *topic;
  int32_t partition;
  int64_t saved; /* the offset in the database; -1: no row yet */
  int64_t acked; /* the highest acknowledged offset known (>= saved) */
  int64_t staged; /* acknowledged in the open transaction (-1: none) */
  int64_t read_end; /* the end a read-back of this epoch read it to (0: none): a mark once the epoch is over */
} mark;

typedef struct names {
  char **v;
  size_t n, cap;
} names;

struct esr_outputs {
  char *src_topic;
  int32_t src_partition;
  int enabled;
  size_t max_bytes;
  mark *marks;
  size_t n_marks, cap_marks;
  int dirty;    /* some acked > saved */
  int in_txn;   /* acknowledgements wait for the transaction's commit */
  int failed;   /* a delivery failed since the last read-back: the marks hold */
  int due;      /* a read-back must run before anything is published */
  names known;  /* topics read since the partition opened */
  names wanted; /* topics a row asked for, read by the next pass */
  esr_strset *set; /* "<offset>/<index>" of this partition's outputs found, for source offsets in [lo, hi) */
  int64_t lo, hi;
  int64_t maxsrc;    /* the highest source offset in the set; -1: none */
  int64_t need_from; /* a row at or past this source offset needs another pass (the window was cut) */
  esr_outputs_stats st;
  esr_outputs_stats epoch; /* since the read-back epoch began: what the settle line reports */
};

static int names_has(const names *l, const char *s) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->v[i], s) == 0) return 1;
  return 0;
}

static int names_add(names *l, const char *s) {
  if (names_has(l, s)) return 0;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4;
    char **g = realloc(l->v, cap * sizeof *g);
    if (!g) return -1;
    l->v = g;
    l->cap = cap;
  }
  if (!(l->v[l->n] = strdup(s))) return -1;
  l->n++;
  return 0;
}

static void names_clear(names *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i]);
  l->n = 0;
}

static void names_free(names *l) {
  names_clear(l);
  free(l->v);
}

static mark *mark_find(const esr_outputs *o, const char *topic, int32_t partition) {
  for (size_t i = 0; i < o->n_marks; i++)
    if (o->marks[i].partition == partition && strcmp(o->marks[i].topic, topic) == 0) return &o->marks[i];
  return NULL;
}

static mark *mark_add(esr_outputs *o, const char *topic, int32_t partition) {
  if (o->n_marks == o->cap_marks) {
    size_t cap = o->cap_marks ? o->cap_marks * 2 : 4;
    mark *g = realloc(o->marks, cap * sizeof *g);
    if (!g) return NULL;
    o->marks = g;
    o->cap_marks = cap;
  }
  mark *m = &o->marks[o->n_marks];
  if (!(m->topic = strdup(topic))) return NULL;
  m->partition = partition;
  m->saved = m->acked = m->staged = -1;
  m->read_end = 0;
  o->n_marks++;
  return m;
}

static void log_epoch(esr_outputs *o, const char *when);

static int holding(const esr_outputs *o) { return o->failed || o->due || o->set || o->need_from != NO_LIMIT; }

esr_code esr_outputs_open(esr_store *s, const esr_outputs_opts *opts, esr_outputs **out, esr_error *err) {
  *out = NULL;
  esr_outputs *o = calloc(1, sizeof *o);
  if (!o || !(o->src_topic = strdup(esr_store_topic(s)))) {
    free(o);
    return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  }
  o->src_partition = esr_store_partition(s);
  o->enabled = opts && opts->readback;
  o->max_bytes = opts && opts->max_bytes ? opts->max_bytes : ESR_OUTPUTS_MAX_BYTES;
  o->need_from = NO_LIMIT;
  o->maxsrc = -1;
  o->due = o->enabled;
  esr_code rc = ESR_E_OK;
  if (o->enabled) {
    sqlite3_stmt *st = esr_store_host_stmt(s, "SELECT topic, partition, acked FROM esr_outputs", err);
    if (!st) {
      rc = err ? err->code : ESR_E_SQLITE;
      goto fail;
    }
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
      const char *topic = (const char *)sqlite3_column_text(st, 0);
      mark *m = topic ? mark_add(o, topic, sqlite3_column_int(st, 1)) : NULL;
      if (!m) {
        sqlite3_reset(st);
        rc = esr_error_set(err, topic ? ESR_E_NOMEM : ESR_E_CORRUPT, 0, "%s", topic ? "out of memory"
                                                                                    : "esr_outputs: a row without topic");
        goto fail;
      }
      m->saved = m->acked = sqlite3_column_int64(st, 2);
    }
    sqlite3_reset(st);
    if (step != SQLITE_DONE) {
      rc = esr_store_error(s, err, "reading esr_outputs");
      goto fail;
    }
  }
  *out = o;
  return ESR_E_OK;
fail:
  esr_outputs_free(o);
  return rc;
}

void esr_outputs_free(esr_outputs *o) {
  if (!o) return;
  if (o->enabled && (o->epoch.readbacks || o->epoch.dropped))
    log_epoch(o, " (until the partition closed)"); /* its epoch did not end: say what it did so far */
  for (size_t i = 0; i < o->n_marks; i++) free(o->marks[i].topic);
  free(o->marks);
  names_free(&o->known);
  names_free(&o->wanted);
  esr_strset_free(o->set);
  free(o->src_topic);
  free(o);
}

void esr_outputs_acked(esr_outputs *o, const char *topic, int32_t partition, int64_t offset) {
  if (!o->enabled || !topic || partition < 0 || offset < 0) return;
  mark *m = mark_find(o, topic, partition);
  if (!m && !(m = mark_add(o, topic, partition))) {
    o->failed = 1; /* not recorded: hold the marks and read back before the next resend, rather than forget */
    return;
  }
  if (o->in_txn) {
    if (offset > m->staged) m->staged = offset;
  } else if (offset > m->acked) {
    m->acked = offset;
    o->dirty = 1;
  }
}

void esr_outputs_txn(esr_outputs *o, esr_outputs_txn_phase phase) {
  o->in_txn = phase == ESR_OUTPUTS_TXN_BEGIN;
  if (phase == ESR_OUTPUTS_TXN_BEGIN) return;
  for (size_t i = 0; i < o->n_marks; i++) {
    mark *m = &o->marks[i];
    if (phase == ESR_OUTPUTS_TXN_COMMIT && m->staged > m->acked) {
      m->acked = m->staged;
      o->dirty = 1;
    }
    m->staged = -1;
  }
}

void esr_outputs_failed(esr_outputs *o) { o->failed = 1; }

void esr_outputs_resend(esr_outputs *o) {
  if (o->enabled) o->due = 1;
}

esr_code esr_outputs_save(esr_outputs *o, esr_store *s, esr_error *err) {
  if (!o->enabled || !o->dirty || holding(o)) return ESR_E_OK;
  sqlite3_stmt *st = esr_store_host_stmt(s,
                                         "INSERT INTO esr_outputs(topic, partition, acked) VALUES (?1, ?2, ?3) "
                                         "ON CONFLICT(topic, partition) DO UPDATE SET acked = excluded.acked",
                                         err);
  if (!st) return err ? err->code : ESR_E_SQLITE;
  for (size_t i = 0; i < o->n_marks; i++) {
    mark *m = &o->marks[i];
    if (m->acked <= m->saved) continue;
    sqlite3_bind_text(st, 1, m->topic, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, m->partition);
    sqlite3_bind_int64(st, 3, m->acked);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return esr_store_error(s, err, "recording the outputs' marks");
  }
  /* A rollback of this transaction leaves the database's marks lower than `saved`: a later read-back after a restart
   * then starts earlier, which is safe; in this process `saved` is a lower bound as good as the database's. */
  for (size_t i = 0; i < o->n_marks; i++) o->marks[i].saved = o->marks[i].acked;
  o->dirty = 0;
  return ESR_E_OK;
}

static int key_text(char *buf, size_t cap, int64_t src_offset, int src_index) {
  return snprintf(buf, cap, "%" PRId64 "/%d", src_offset, src_index);
}

esr_output_verdict esr_outputs_check(esr_outputs *o, const char *topic, int64_t src_offset, int src_index) {
  if (!o->enabled) return ESR_OUTPUT_SEND;
  if (o->due) return ESR_OUTPUT_READBACK;
  if (!names_has(&o->known, topic)) {
    if (names_add(&o->wanted, topic) != 0) return ESR_OUTPUT_SEND; /* out of memory: at least once */
    o->due = 1;
    return ESR_OUTPUT_READBACK;
  }
  if (src_offset >= o->need_from || (o->set && src_offset < o->lo)) { /* outside the window read */
    o->due = 1;
    return ESR_OUTPUT_READBACK;
  }
  if (o->set) {
    char key[48];
    int n = key_text(key, sizeof key, src_offset, src_index);
    if (esr_strset_has(o->set, key, (size_t)n)) {
      o->st.dropped++;
      o->epoch.dropped++;
      return ESR_OUTPUT_DROP;
    }
  }
  return ESR_OUTPUT_SEND;
}

void esr_outputs_want(esr_outputs *o, const char *topic) {
  if (o->enabled && !names_has(&o->known, topic)) names_add(&o->wanted, topic);
}

int esr_outputs_due(const esr_outputs *o) { return o->enabled && o->due; }

/* The line that says what a read-back epoch read and dropped, once per epoch. */
static void log_epoch(esr_outputs *o, const char *when) {
  const esr_outputs_stats *e = &o->epoch;
  /* A read-back that found nothing to read is only worth a debug line (a restart has one per partition). */
  esr_log(e->truncated ? ESR_LOG_WARN : e->read || e->dropped ? ESR_LOG_INFO : ESR_LOG_DEBUG, "outputs",
          "%s[%d]: outputs read back%s: %" PRId64 " messages read in %" PRId64 " pass(es), %" PRId64 " ms, %" PRId64
          " keys of this partition's outputs collected; %" PRId64 " outbox rows dropped as already published%s",
          o->src_topic, (int)o->src_partition, when, e->read, e->readbacks, e->ms, e->found, e->dropped,
          e->truncated ? "; some offsets after a mark were already deleted by retention: what they held could not be "
                         "checked (published again, at least once)"
                       : "");
  memset(&o->epoch, 0, sizeof o->epoch);
}

void esr_outputs_settled(esr_outputs *o, int64_t next_offset) {
  if (!o->enabled || o->due) return;
  if (o->set && next_offset > o->maxsrc) { /* no row to come can match a key of the set */
    esr_strset_free(o->set);
    o->set = NULL;
  }
  if (o->set || o->need_from != NO_LIMIT || !o->epoch.readbacks) return;
  /* Every output of this partition the epoch's read-backs read past is accounted for, and what it publishes from now
   * on lands after them: the marks move to the ends read, so that the next read-back starts there (a partition that
   * never published to a topic reads it from its start once, not at every open). */
  for (size_t i = 0; i < o->n_marks; i++) {
    mark *m = &o->marks[i];
    if (m->read_end > 0 && m->read_end - 1 > m->acked) m->acked = m->read_end - 1;
    m->read_end = 0;
  }
  log_epoch(o, "");
  o->dirty = 1; /* the marks move again */
}

void esr_outputs_stats_get(const esr_outputs *o, esr_outputs_stats *st) { *st = o->st; }

/* ---- the read-back pass ---- */

typedef struct member {
  esr_outputs *o;
  int64_t lo, hi, maxsrc;
  esr_strset *set;
  int64_t found, truncated;
  int wants;      /* reads the current output topic */
  int64_t *start; /* its start in each partition of the current output topic */
  int gave_up;
} member;

typedef struct pass {
  member *m;
  size_t n;
  const char *topic; /* the output topic being read */
  int32_t count;     /* its partitions */
} pass;

static int64_t parse_i64(const char *s, size_t len, size_t *used) {
  int64_t v = 0;
  size_t i = 0;
  while (i < len && s[i] >= '0' && s[i] <= '9' && i < 19) v = v * 10 + (s[i++] - '0');
  *used = i;
  return i ? v : -1;
}

/* The source offset of a set member "<offset>/<index>". */
static int64_t member_src(const char *s, size_t len) {
  size_t used;
  return parse_i64(s, len, &used);
}

typedef struct srcs {
  int64_t *v;
  size_t n;
} srcs;

static int collect_src(void *arg, const char *s, size_t len) {
  srcs *a = arg;
  a->v[a->n++] = member_src(s, len);
  return 0;
}

typedef struct keep_below {
  esr_strset *into;
  int64_t cut, maxsrc;
  esr_code rc;
} keep_below;

static int copy_below(void *arg, const char *s, size_t len) {
  keep_below *k = arg;
  int64_t src = member_src(s, len);
  if (src >= k->cut) return 0;
  if ((k->rc = esr_strset_add(k->into, s, len, NULL, NULL)) != ESR_E_OK) return 1;
  if (src > k->maxsrc) k->maxsrc = src;
  return 0;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* The set is full: keep the keys below the median source offset and lower hi to it. 0, or -1 when no smaller window
 * can hold the keys of a single source offset. */
static int shrink(member *m) {
  size_t n = esr_strset_count(m->set);
  srcs a = {malloc((n ? n : 1) * sizeof *a.v), 0};
  if (!a.v) return -1;
  esr_strset_each(m->set, collect_src, &a);
  qsort(a.v, a.n, sizeof *a.v, cmp_i64);
  int64_t cut = a.n ? a.v[a.n / 2] : m->lo;
  if (a.n && cut <= a.v[0]) cut = a.v[0] + 1; /* at least the lowest source offset stays */
  int whole = a.n && a.v[a.n - 1] < cut;      /* every key has one source offset: no smaller window helps */
  free(a.v);
  if (whole || cut <= m->lo) return -1;
  keep_below k = {NULL, cut, -1, ESR_E_OK};
  if (esr_strset_new(m->o->max_bytes, &k.into, NULL) != ESR_E_OK) return -1;
  esr_strset_each(m->set, copy_below, &k);
  if (k.rc != ESR_E_OK) {
    esr_strset_free(k.into);
    return -1;
  }
  esr_strset_free(m->set);
  m->set = k.into;
  m->hi = cut;
  m->maxsrc = k.maxsrc;
  return 0;
}

static esr_code collect(void *arg, const rd_kafka_message_t *msg, esr_error *err) {
  (void)err;
  pass *ps = arg;
  rd_kafka_headers_t *h = NULL;
  const void *v;
  size_t len;
  if (rd_kafka_message_headers(msg, &h) != RD_KAFKA_RESP_ERR_NO_ERROR || !h ||
      rd_kafka_header_get_last(h, "esr-source", &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR || !v)
    return ESR_E_OK;
  const char *s = v, *slash = memchr(s, '/', len);
  if (!slash) return ESR_E_OK;
  size_t topic_len = (size_t)(slash - s), used;
  const char *rest = slash + 1;
  size_t rest_len = len - topic_len - 1;
  int64_t part = parse_i64(rest, rest_len, &used);
  if (part < 0 || used >= rest_len || rest[used] != '/') return ESR_E_OK;
  const char *key = rest + used + 1; /* "<offset>/<index>" */
  size_t key_len = rest_len - used - 1;
  int64_t src = parse_i64(key, key_len, &used);
  if (src < 0 || used >= key_len || key[used] != '/') return ESR_E_OK;
  for (size_t i = 0; i < ps->n; i++) {
    member *m = &ps->m[i];
    esr_outputs *o = m->o;
    if (o->src_partition != part || !m->wants || m->gave_up || strlen(o->src_topic) != topic_len ||
        memcmp(o->src_topic, s, topic_len) != 0)
      continue;
    if (msg->partition < 0 || msg->partition >= ps->count || msg->offset < m->start[msg->partition] || src < m->lo ||
        src >= m->hi)
      return ESR_E_OK;
    for (;;) {
      int added = 0;
      esr_error e;
      esr_code rc = esr_strset_add(m->set, key, key_len, &added, &e);
      if (rc == ESR_E_OK) {
        if (added) {
          m->found++;
          if (src > m->maxsrc) m->maxsrc = src;
        }
        return ESR_E_OK;
      }
      if (shrink(m) != 0) {
        esr_log(ESR_LOG_ERROR, "outputs",
                "%s[%d]: the read-back cannot hold the keys of one source offset within its bound of %zu bytes: "
                "this partition's outputs are published without the check (at least once); raise "
                "outputs.readback.max.mb",
                o->src_topic, (int)o->src_partition, o->max_bytes);
        m->gave_up = 1;
        return ESR_E_OK;
      }
      if (src >= m->hi) return ESR_E_OK;
    }
  }
  return ESR_E_OK;
}

/* Where member m starts reading topic/partition: its mark there, else the partition's start. */
static int64_t start_of(const esr_outputs *o, const char *topic, int32_t partition) {
  const mark *k = mark_find(o, topic, partition);
  return k && k->saved >= 0 ? k->saved : 0;
}

/* Every topic a pass reads for o: those with marks, those read before, those asked for. */
static int wants_topic(const esr_outputs *o, const char *topic) {
  if (names_has(&o->known, topic) || names_has(&o->wanted, topic)) return 1;
  for (size_t i = 0; i < o->n_marks; i++)
    if (strcmp(o->marks[i].topic, topic) == 0) return 1;
  return 0;
}

esr_code esr_outputs_readback(esr_readback *rb, esr_outputs *const *all, const int64_t *all_lo, size_t n_all,
                              int timeout_ms, esr_error *err) {
  int64_t t0 = esr_now_ms();
  esr_code rc = ESR_E_OK;
  names topics = {0};
  esr_readback_range *ranges = NULL;
  esr_readback_result *results = NULL;
  int64_t read = 0;
  /* A topic one partition asks for is read for every partition here that does not know it yet: they share a
   * dead-letter topic and usually their emits' topics, so one read serves them all. */
  for (size_t i = 0; i < n_all; i++) {
    if (!all[i]->enabled || !all[i]->due) continue;
    for (size_t k = 0; k < all[i]->wanted.n; k++)
      for (size_t j = 0; j < n_all; j++) {
        esr_outputs *o = all[j];
        if (o->enabled && !names_has(&o->known, all[i]->wanted.v[k]) && names_add(&o->wanted, all[i]->wanted.v[k]) == 0)
          o->due = 1;
      }
  }
  size_t n = 0;
  for (size_t i = 0; i < n_all; i++) n += all[i]->enabled && all[i]->due;
  if (!n) return ESR_E_OK;
  member *ms = calloc(n, sizeof *ms);
  if (!ms) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  for (size_t j = 0, i = 0; j < n_all; j++) {
    if (!all[j]->enabled || !all[j]->due) continue;
    esr_outputs *o = all[j];
    ms[i] = (member){.o = o, .lo = all_lo[j] > 0 ? all_lo[j] : 0, .hi = NO_LIMIT, .maxsrc = -1};
    if ((rc = esr_strset_new(o->max_bytes, &ms[i].set, err)) != ESR_E_OK) goto out;
    int bad = 0;
    for (size_t k = 0; k < o->known.n && !bad; k++) bad = names_add(&topics, o->known.v[k]);
    for (size_t k = 0; k < o->wanted.n && !bad; k++) bad = names_add(&topics, o->wanted.v[k]);
    for (size_t k = 0; k < o->n_marks && !bad; k++) bad = names_add(&topics, o->marks[k].topic);
    if (bad) {
      rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
      goto out;
    }
    i++;
  }
  pass ps = {ms, n, NULL, 0};
  for (size_t t = 0; t < topics.n; t++) {
    const char *topic = topics.v[t];
    int count = 0;
    if ((rc = esr_readback_partition_count(rb, topic, timeout_ms, &count, err)) != ESR_E_OK) {
      if (!esr_readback_unknown(err)) goto out;
      rc = ESR_E_OK; /* no such topic: nothing of ours can be there */
      continue;
    }
    /* every partition of the topic in one read, each from the lowest start of the partitions that want it */
    free(ranges);
    free(results);
    ranges = calloc((size_t)count, sizeof *ranges);
    results = calloc((size_t)count, sizeof *results);
    if (!ranges || !results) {
      rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
      goto out;
    }
    for (size_t i = 0; i < n; i++) {
      free(ms[i].start);
      if (!(ms[i].start = malloc((size_t)count * sizeof *ms[i].start))) {
        rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
        goto out;
      }
      ms[i].wants = wants_topic(ms[i].o, topic);
      for (int32_t q = 0; q < count; q++) ms[i].start[q] = ms[i].wants ? start_of(ms[i].o, topic, q) : NO_LIMIT;
    }
    size_t nr = 0;
    for (int32_t q = 0; q < count; q++) {
      int64_t start = NO_LIMIT;
      for (size_t i = 0; i < n; i++)
        if (ms[i].start[q] < start) start = ms[i].start[q];
      if (start != NO_LIMIT)
        ranges[nr++] = (esr_readback_range){.topic = topic, .partition = q, .start = start, .end = -1,
                                            .timeout_ms = timeout_ms};
    }
    ps.topic = topic;
    ps.count = count;
    rc = esr_readback_scan_many(rb, ranges, nr, collect, &ps, results, err);
    if (rc != ESR_E_OK) {
      if (!esr_readback_unknown(err)) goto out;
      rc = ESR_E_OK; /* the topic went away meanwhile */
      continue;
    }
    for (size_t r = 0; r < nr; r++) {
      for (size_t i = 0; i < n; i++) {
        if (!ms[i].wants || ms[i].gave_up) continue;
        mark *k = mark_find(ms[i].o, topic, ranges[r].partition);
        if (!k) k = mark_add(ms[i].o, topic, ranges[r].partition);
        if (k && results[r].end > k->read_end) k->read_end = results[r].end;
      }
      read += results[r].read;
      if (!results[r].truncated) continue;
      for (size_t i = 0; i < n; i++) {
        int64_t st = ms[i].start[ranges[r].partition];
        if (ms[i].wants && st > 0 && st != NO_LIMIT && st < results[r].log_start) ms[i].truncated++;
      }
    }
  }
  int64_t ms_taken = esr_now_ms() - t0;
  for (size_t i = 0; i < n; i++) {
    member *m = &ms[i];
    esr_outputs *o = m->o;
    for (size_t t = 0; t < topics.n; t++)
      if (wants_topic(o, topics.v[t])) names_add(&o->known, topics.v[t]); /* a failure only reads it again */
    names_clear(&o->wanted);
    esr_strset_free(o->set);
    o->set = NULL;
    if (m->gave_up) {
      esr_strset_free(m->set);
      o->enabled = 0;
      o->need_from = NO_LIMIT;
    } else if (esr_strset_count(m->set)) {
      o->set = m->set;
    } else {
      esr_strset_free(m->set);
    }
    m->set = NULL;
    o->lo = m->lo;
    o->hi = m->hi;
    o->maxsrc = m->maxsrc;
    o->need_from = m->gave_up ? NO_LIMIT : m->hi;
    o->due = 0;
    o->failed = 0;
    esr_outputs_stats d = {.readbacks = 1, .read = read, .found = m->found, .truncated = m->truncated,
                           .ms = ms_taken};
    esr_outputs_stats *targets[2] = {&o->st, &o->epoch};
    for (int k = 0; k < 2; k++) {
      targets[k]->readbacks += d.readbacks;
      targets[k]->read += d.read;
      targets[k]->found += d.found;
      targets[k]->truncated += d.truncated;
      targets[k]->ms += d.ms;
    }
  }
  esr_log(ESR_LOG_DEBUG, "outputs", "read-back for %zu partition(s): %zu topic(s), %" PRId64 " messages in %" PRId64
          " ms", n, topics.n, read, ms_taken);
out:
  for (size_t i = 0; i < n; i++) {
    esr_strset_free(ms[i].set);
    free(ms[i].start);
  }
  free(ranges);
  free(results);
  free(ms);
  names_free(&topics);
  return rc;
}
