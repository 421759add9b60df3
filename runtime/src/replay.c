/* replay.c — the replay engine (replay.h): a partition's range of the log through the worker's apply path. */
#include "replay.h"

#include <ctype.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store.h"

#define PROGRESS_EVERY 256

typedef struct applier_ctx {
  esr_partition *p;
  const esr_replay_range *r;
  esr_replay_outcome *out;
  int batch;
  int time_stop; /* the callback stopped the read at a later event */
} applier_ctx;

/* The verdict of the event just consumed, for the after hook: the outbox row it added, when it was dead-lettered. */
static esr_code verdict(esr_partition *p, int applied, esr_replay_event *ev, char *reason, size_t rcap, char *error,
                        size_t ecap, esr_error *err) {
  ev->applied = applied;
  ev->reason = ev->error = NULL;
  if (applied) return ESR_E_OK;
  esr_store *s = esr_partition_store(p);
  sqlite3_stmt *st =
      esr_store_host_stmt(s, "SELECT reason, error FROM esr_outbox WHERE reason IS NOT NULL ORDER BY seq DESC LIMIT 1", err);
  if (!st) return err ? err->code : ESR_E_SQLITE;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    snprintf(reason, rcap, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(error, ecap, "%s", sqlite3_column_text(st, 1) ? (const char *)sqlite3_column_text(st, 1) : "");
    ev->reason = reason;
    ev->error = error;
  }
  sqlite3_reset(st);
  if (rc != SQLITE_ROW) return esr_store_error(s, err, "reading the dead letter just written");
  return ESR_E_OK;
}

static esr_code on_message(void *arg, const rd_kafka_message_t *m, esr_error *err) {
  applier_ctx *c = arg;
  const esr_replay_range *r = c->r;
  esr_partition *p = c->p;
  if (r->cancel && atomic_load_explicit(r->cancel, memory_order_relaxed))
    return esr_error_set(err, ESR_E_STATE, 0, "cancelled");
  rd_kafka_timestamp_type_t tstype;
  int64_t ts = rd_kafka_message_timestamp(m, &tstype);
  if (r->stop_after_ms >= 0 && ts > r->stop_after_ms) {
    c->time_stop = 1;
    c->out->stopped_at = m->offset;
    return ESR_E_STATE; /* stops the read; told apart by time_stop */
  }
  const esr_replay_hooks *h = r->hooks;
  esr_replay_event ev = {.topic = esr_partition_topic(p),
                         .partition = esr_partition_id(p),
                         .offset = m->offset,
                         .timestamp_ms = ts,
                         .key = m->key,
                         .key_len = m->key_len,
                         .value = m->payload,
                         .value_len = m->len};
  esr_code rc;
  if (h && h->before && (rc = h->before(h->arg, p, &ev, err)) != ESR_E_OK) return rc;
  int64_t dead_before = esr_partition_working(p)->dead;
  esr_message em = {m->offset, m->key, m->key_len, m->payload, m->len};
  if ((rc = esr_partition_apply(p, &em, err)) != ESR_E_OK) {
    if (rc == ESR_E_PLUGIN) {
      esr_error cerr; /* keep what came before the refused event; the handler's message is the error */
      if (esr_partition_commit(p, &cerr) != ESR_E_OK && err) *err = cerr;
    }
    return rc;
  }
  int dead = esr_partition_working(p)->dead > dead_before;
  c->out->events++;
  if (dead)
    c->out->dead++;
  else
    c->out->applied++;
  if (h && h->after) {
    char reason[64], error[600];
    if ((rc = verdict(p, !dead, &ev, reason, sizeof reason, error, sizeof error, err)) != ESR_E_OK) return rc;
    if ((rc = h->after(h->arg, p, &ev, err)) != ESR_E_OK) return rc;
  }
  if (esr_partition_batch_events(p) >= c->batch || esr_partition_commit_due(p)) {
    if ((rc = esr_partition_commit(p, err)) != ESR_E_OK) return rc;
  }
  if (r->progress && c->out->events % PROGRESS_EVERY == 0)
    atomic_store_explicit(r->progress, c->out->events, memory_order_relaxed);
  return ESR_E_OK;
}

esr_code esr_replay_apply(esr_readback *rb, esr_partition *p, const esr_replay_range *r, esr_replay_outcome *out,
                          esr_error *err) {
  esr_replay_outcome local;
  if (!out) out = &local;
  memset(out, 0, sizeof *out);
  out->log_start = out->log_end = out->stopped_at = -1;
  const char *topic = esr_partition_topic(p);
  int32_t part = esr_partition_id(p);
  int64_t from = esr_partition_next_offset(p);
  applier_ctx c = {p, r, out, r->batch_events > 0 ? r->batch_events : ESR_REPLAY_BATCH, 0};
  esr_readback_range range = {.topic = topic, .partition = part, .start = from, .end = r->to};
  esr_readback_result res = {0};
  esr_code rc = ESR_E_OK;
  if (r->to >= 0 && from >= r->to) goto commit; /* nothing to apply */
  /* The log must hold the partition's next offset: checked before anything is applied. */
  if ((rc = esr_readback_bounds(rb, topic, part, 0, &res.log_start, &res.end, err)) != ESR_E_OK) return rc;
  int gap = res.log_start > from;
  if (!gap) {
    rc = esr_readback_scan(rb, &range, on_message, &c, &res, err);
    /* Retention deleted offsets ahead of the read while it ran (what followed was read, but must not count). */
    gap = res.truncated;
  }
  out->log_start = res.log_start;
  out->log_end = res.end;
  if (c.time_stop) {
    out->stopped_by_time = 1;
    rc = ESR_E_OK;
  }
  if (gap) {
    esr_partition_rollback(p);
    return esr_error_set(err, ESR_E_GAP, 0,
                         "%s[%d]: the log no longer holds offset %" PRId64 " (needed to replay; it now starts at %" PRId64
                         "): refusing to skip the events retention deleted",
                         topic, (int)part, from, res.log_start);
  }
  if (rc != ESR_E_OK) {
    if (rc != ESR_E_PLUGIN) esr_partition_rollback(p);
    return esr_error_prefix(err, "%s[%d]", topic, (int)part);
  }
commit:
  if ((rc = esr_partition_commit(p, err)) != ESR_E_OK) return rc;
  if (r->progress) atomic_store_explicit(r->progress, out->events, memory_order_relaxed);
  return ESR_E_OK;
}

/* ---- time targets --------------------------------------------------------------------------------------------- */

typedef struct time_scan {
  int64_t at_ms;
  int64_t first_later; /* -1 while none */
} time_scan;

static esr_code on_timestamp(void *arg, const rd_kafka_message_t *m, esr_error *err) {
  time_scan *t = arg;
  rd_kafka_timestamp_type_t tstype;
  if (rd_kafka_message_timestamp(m, &tstype) <= t->at_ms) return ESR_E_OK;
  t->first_later = m->offset;
  return esr_error_set(err, ESR_E_STATE, 0, "found"); /* stops the read; told apart by first_later */
}

esr_code esr_replay_time_end(esr_readback *rb, const char *topic, int32_t partition, int64_t at_ms, int64_t *end,
                             esr_time_source *source, esr_error *err) {
  int64_t lo, hi, off = -1;
  esr_code rc = esr_readback_bounds(rb, topic, partition, 0, &lo, &hi, err);
  if (rc != ESR_E_OK) return rc;
  /* The first offset whose timestamp is >= at_ms + 1 ms: the first one later than the instant. */
  if ((rc = esr_readback_offset_for_time(rb, topic, partition, at_ms + 1, 0, &off, err)) != ESR_E_OK) return rc;
  if (off >= 0) {
    *end = off;
    *source = ESR_TIME_BROKER;
    return ESR_E_OK;
  }
  /* -1: no later message, or a broker that does not answer (the mock): read the timestamps to know. */
  time_scan t = {at_ms, -1};
  esr_readback_range r = {.topic = topic, .partition = partition, .start = lo, .end = hi};
  esr_readback_result res;
  rc = esr_readback_scan(rb, &r, on_timestamp, &t, &res, err);
  if (t.first_later >= 0) rc = ESR_E_OK;
  if (rc != ESR_E_OK) return rc;
  *end = t.first_later >= 0 ? t.first_later : res.end;
  *source = ESR_TIME_SCAN;
  return ESR_E_OK;
}

static int digits(const char **p, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++, (*p)++) {
    if (!isdigit((unsigned char)**p)) return -1;
    v = v * 10 + (**p - '0');
  }
  *out = v;
  return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int esr_replay_parse_time(const char *text, int64_t *ms) {
  const char *p = text;
  int y, mo, d, h, mi, s;
  if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' || digits(&p, 2, &d)) return -1;
  if (*p != 'T' && *p != 't' && *p != ' ') return -1;
  p++;
  if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &s)) return -1;
  static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || s > 60) return -1;
  if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return -1;
  int64_t frac_ms = 0;
  if (*p == '.') {
    p++;
    int n = 0;
    int64_t scale = 100;
    while (isdigit((unsigned char)*p)) {
      if (n < 3) frac_ms += (*p - '0') * scale, scale /= 10;
      n++, p++;
    }
    if (!n) return -1;
  }
  int64_t zone_s;
  if (*p == 'Z' || *p == 'z') {
    zone_s = 0;
    p++;
  } else if (*p == '+' || *p == '-') {
    int sign = *p++ == '-' ? -1 : 1, zh, zm;
    if (digits(&p, 2, &zh) || *p++ != ':' || digits(&p, 2, &zm) || zh > 23 || zm > 59) return -1;
    zone_s = sign * (zh * 3600 + zm * 60);
  } else {
    return -1; /* no zone: ambiguous, refused */
  }
  if (*p) return -1;
  if (s == 60) s = 59, frac_ms = 999; /* a leap second: the last instant of the minute */
  int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - zone_s;
  *ms = secs * 1000 + frac_ms;
  return 0;
}

void esr_replay_format_time(int64_t ms, char *buf, size_t cap) {
  time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  int frac = (int)(ms - (int64_t)secs * 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char base[32];
  strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf, cap, "%s.%03dZ", base, frac);
}
