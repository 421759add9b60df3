/* esrt_kafka.c — mock cluster process control, an offset-reporting producer, watermarks, and topic read-back. */
#include "esrt_kafka.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *dup_bytes(const void *p, size_t n) {
  char *s = malloc(n + 1);
  if (!s) abort();
  if (n) memcpy(s, p, n);
  s[n] = '\0';
  return s;
}

void esrt_records_free(esrt_records *r) {
  for (size_t i = 0; i < r->n; i++) {
    esrt_record *rec = &r->v[i];
    free(rec->key);
    free(rec->value);
    for (size_t h = 0; h < rec->n_headers; h++) {
      free(rec->headers[h].name);
      free(rec->headers[h].value);
    }
    free(rec->headers);
  }
  free(r->v);
  memset(r, 0, sizeof *r);
}

const char *esrt_record_header(const esrt_record *r, const char *name) {
  for (size_t i = 0; i < r->n_headers; i++)
    if (strcmp(r->headers[i].name, name) == 0) return r->headers[i].value;
  return NULL;
}

/* ---- mock cluster ---- */

int esrt_mock_start(esrt_mock *m, const char *esr_bin, const char *dir, int brokers, const char *const *topics,
                    int timeout_ms) {
  memset(m, 0, sizeof *m);
  char file[1024], nb[16];
  snprintf(file, sizeof file, "%s/bootstrap", dir);
  snprintf(nb, sizeof nb, "%d", brokers);
  unlink(file);
  char *argv[64];
  int n = 0;
  argv[n++] = (char *)esr_bin;
  argv[n++] = "mock-cluster";
  argv[n++] = "--brokers";
  argv[n++] = nb;
  argv[n++] = "--bootstrap-file";
  argv[n++] = file;
  for (int i = 0; topics && topics[i] && n < 60; i++) {
    argv[n++] = "--topic";
    argv[n++] = (char *)topics[i];
  }
  argv[n] = NULL;
  if (esrt_spawn(&m->proc, dir, "mock-cluster", argv, 1) != 0) return -1;
  int64_t deadline = esrt_now_ms() + timeout_ms;
  for (;;) {
    size_t len;
    char *s = esrt_read_file(file, &len);
    if (s) {
      while (len && (s[len - 1] == '\n' || s[len - 1] == '\r')) s[--len] = '\0';
      snprintf(m->bootstrap, sizeof m->bootstrap, "%s", s);
      free(s);
      if (m->bootstrap[0]) return 0;
    }
    if (!esrt_alive(&m->proc)) {
      fprintf(stderr, "esrt: the mock cluster exited with code %d before writing %s:\n", esrt_exit_code(&m->proc),
              file);
      esrt_print_tail(stderr, m->proc.err_path, 20, "  mock| ");
      return -1;
    }
    if (esrt_now_ms() >= deadline) {
      fprintf(stderr, "esrt: the mock cluster did not write %s within %d ms\n", file, timeout_ms);
      esrt_kill9(&m->proc);
      return -1;
    }
    esrt_sleep_ms(5);
  }
}

/* The answer lines ("ok" / "error: ...") the mock printed so far, and the newest one (copied into last). */
static int answers(const char *path, char *last, size_t cap) {
  char *s = esrt_read_file(path, NULL);
  int n = 0;
  if (last && cap) last[0] = '\0';
  for (const char *line = s; line && *line;) {
    const char *nl = strchr(line, '\n');
    if (!nl) break; /* a line still being written */
    if (strncmp(line, "ok", 2) == 0 || strncmp(line, "error", 5) == 0) {
      n++;
      if (last) snprintf(last, cap, "%.*s", (int)(nl - line), line);
    }
    line = nl + 1;
  }
  free(s);
  return n;
}

int esrt_mock_control(esrt_mock *m, const char *line, int timeout_ms) {
  if (m->proc.stdin_fd < 0) return -1;
  int before = answers(m->proc.out_path, NULL, 0);
  char buf[600];
  int n = snprintf(buf, sizeof buf, "%s\n", line);
  if (write(m->proc.stdin_fd, buf, (size_t)n) != n) {
    fprintf(stderr, "esrt: writing '%s' to the mock cluster: %s\n", line, strerror(errno));
    return -1;
  }
  int64_t deadline = esrt_now_ms() + timeout_ms;
  char last[512];
  while (answers(m->proc.out_path, last, sizeof last) <= before) {
    if (esrt_now_ms() >= deadline) {
      fprintf(stderr, "esrt: no answer from the mock cluster to '%s' within %d ms\n", line, timeout_ms);
      return -1;
    }
    esrt_sleep_ms(5);
  }
  if (strncmp(last, "ok", 2) != 0) {
    fprintf(stderr, "esrt: the mock cluster refused '%s': %s\n", line, last);
    return -1;
  }
  return 0;
}

int esrt_mock_stop(esrt_mock *m) { return esrt_stop(&m->proc, 10000); }

/* ---- producer ---- */

struct esrt_producer {
  rd_kafka_t *rk;
  int64_t delivered, failed;
  char first_error[512];
};

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  esrt_producer *p = opaque;
  int64_t *slot = m->_private;
  if (m->err) {
    p->failed++;
    if (!p->first_error[0])
      snprintf(p->first_error, sizeof p->first_error, "%s [%d]: %s", rd_kafka_topic_name(m->rkt), (int)m->partition,
               rd_kafka_err2str(m->err));
    if (slot) *slot = -1;
  } else {
    p->delivered++;
    if (slot) *slot = m->offset;
  }
}

static rd_kafka_conf_t *base_conf(const char *bootstrap) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char errstr[512];
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof errstr) != RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
    fprintf(stderr, "esrt: kafka conf: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  return conf;
}

esrt_producer *esrt_producer_new(const char *bootstrap) { return esrt_producer_new_with(bootstrap, NULL); }

esrt_producer *esrt_producer_new_with(const char *bootstrap, const char *const *extra) {
  esrt_producer *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  rd_kafka_conf_t *conf = base_conf(bootstrap);
  if (!conf) {
    free(p);
    return NULL;
  }
  char errstr[512];
  static const char *const kv[][2] = {{"enable.idempotence", "true"},
                                      {"acks", "all"},
                                      {"linger.ms", "5"},
                                      {"queue.buffering.max.messages", "200000"},
                                      {"message.timeout.ms", "60000"}};
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
    if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
      fprintf(stderr, "esrt: producer conf %s: %s\n", kv[i][0], errstr);
      rd_kafka_conf_destroy(conf);
      free(p);
      return NULL;
    }
  }
  for (size_t i = 0; extra && extra[i] && extra[i + 1]; i += 2) {
    if (rd_kafka_conf_set(conf, extra[i], extra[i + 1], errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
      fprintf(stderr, "esrt: producer conf %s: %s\n", extra[i], errstr);
      rd_kafka_conf_destroy(conf);
      free(p);
      return NULL;
    }
  }
  rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  rd_kafka_conf_set_opaque(conf, p);
  p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!p->rk) {
    fprintf(stderr, "esrt: producer: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    free(p);
    return NULL;
  }
  return p;
}

void esrt_producer_free(esrt_producer *p) {
  if (!p) return;
  rd_kafka_flush(p->rk, 10000);
  rd_kafka_destroy(p->rk);
  free(p);
}

rd_kafka_t *esrt_producer_handle(esrt_producer *p) { return p->rk; }
int64_t esrt_producer_delivered(const esrt_producer *p) { return p->delivered; }
int64_t esrt_producer_failed(const esrt_producer *p) { return p->failed; }

int esrt_produce(esrt_producer *p, const char *topic, int32_t partition, const void *key, size_t key_len,
                 const void *value, size_t value_len, int64_t *offset_out) {
  if (offset_out) *offset_out = -1;
  for (;;) {
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_KEY(key, key ? key_len : 0),
        RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE(offset_out), RD_KAFKA_V_END);
    if (!e) {
      rd_kafka_poll(p->rk, 0);
      return 0;
    }
    if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      fprintf(stderr, "esrt: produce to %s [%d]: %s\n", topic, (int)partition, rd_kafka_err2str(e));
      return -1;
    }
    rd_kafka_poll(p->rk, 10);
  }
}

void esrt_producer_poll(esrt_producer *p, int timeout_ms) { rd_kafka_poll(p->rk, timeout_ms); }

int esrt_producer_flush(esrt_producer *p, int timeout_ms) {
  rd_kafka_resp_err_t e = rd_kafka_flush(p->rk, timeout_ms);
  if (e) {
    fprintf(stderr, "esrt: producer flush: %s (%d messages still queued after %d ms)\n", rd_kafka_err2str(e),
            rd_kafka_outq_len(p->rk), timeout_ms);
    return -1;
  }
  if (p->failed) {
    fprintf(stderr, "esrt: %" PRId64 " messages were not delivered; first: %s\n", p->failed, p->first_error);
    return -1;
  }
  return 0;
}

/* ---- metadata ---- */

rd_kafka_t *esrt_kafka_client_new(const char *bootstrap) {
  rd_kafka_conf_t *conf = base_conf(bootstrap);
  if (!conf) return NULL;
  char errstr[512];
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!rk) {
    fprintf(stderr, "esrt: client: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
  }
  return rk;
}

int esrt_watermarks(rd_kafka_t *rk, const char *topic, int32_t partition, int64_t *lo, int64_t *hi) {
  rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, partition, lo, hi, 10000);
  if (e) {
    fprintf(stderr, "esrt: watermarks of %s [%d]: %s\n", topic, (int)partition, rd_kafka_err2str(e));
    return -1;
  }
  return 0;
}

int esrt_partition_count(rd_kafka_t *rk, const char *topic) {
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  const struct rd_kafka_metadata *md = NULL;
  int count = -1;
  for (int attempt = 0; attempt < 50 && count < 0; attempt++) {
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    if (!e && md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt > 0)
      count = md->topics[0].partition_cnt;
    else if (attempt == 49)
      fprintf(stderr, "esrt: metadata of %s: %s\n", topic,
              e ? rd_kafka_err2str(e) : rd_kafka_err2str(md->topics[0].err));
    if (md) rd_kafka_metadata_destroy(md);
    md = NULL;
    if (count < 0) esrt_sleep_ms(100);
  }
  rd_kafka_topic_destroy(rkt);
  return count;
}

int esrt_topic_whole(rd_kafka_t *rk, const char *topic) {
  int n = esrt_partition_count(rk, topic);
  if (n <= 0) return 0;
  for (int p = 0; p < n; p++) {
    int64_t lo, hi;
    if (esrt_watermarks(rk, topic, p, &lo, &hi) != 0) return 0;
    if (lo != 0) {
      fprintf(stderr, "esrt: %s[%d] starts at offset %" PRId64 ": retention dropped its first messages\n", topic, p, lo);
      return 0;
    }
  }
  return 1;
}

/* ---- read-back ---- */

static int cmp_record(const void *a, const void *b) {
  const esrt_record *x = a, *y = b;
  if (x->partition != y->partition) return x->partition < y->partition ? -1 : 1;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static void add_record(esrt_records *out, const rd_kafka_message_t *m) {
  if (out->n == out->cap) {
    out->cap = out->cap ? out->cap * 2 : 1024;
    out->v = realloc(out->v, out->cap * sizeof *out->v);
    if (!out->v) abort();
  }
  esrt_record *r = &out->v[out->n++];
  memset(r, 0, sizeof *r);
  r->partition = m->partition;
  r->offset = m->offset;
  rd_kafka_timestamp_type_t tt;
  r->timestamp = rd_kafka_message_timestamp(m, &tt);
  if (m->key) {
    r->key = dup_bytes(m->key, m->key_len);
    r->key_len = m->key_len;
  }
  if (m->payload) {
    r->value = dup_bytes(m->payload, m->len);
    r->value_len = m->len;
  }
  rd_kafka_headers_t *hdrs = NULL;
  if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
    size_t n = rd_kafka_header_cnt(hdrs);
    r->headers = calloc(n ? n : 1, sizeof *r->headers);
    if (!r->headers) abort();
    for (size_t i = 0; i < n; i++) {
      const char *name;
      const void *val;
      size_t size;
      if (rd_kafka_header_get_all(hdrs, i, &name, &val, &size)) break;
      r->headers[i].name = dup_bytes(name, strlen(name));
      r->headers[i].value = val ? dup_bytes(val, size) : NULL;
      r->headers[i].value_len = size;
      r->n_headers++;
    }
  }
}

int esrt_consume_all(const char *bootstrap, const char *topic, esrt_records *out, int timeout_ms) {
  rd_kafka_conf_t *conf = base_conf(bootstrap);
  if (!conf) return -1;
  char errstr[512];
  rd_kafka_conf_set(conf, "group.id", "esrt-reader", errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "enable.partition.eof", "false", errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "isolation.level", "read_committed", errstr, sizeof errstr);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (!rk) {
    fprintf(stderr, "esrt: reader: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return -1;
  }
  int rc = -1;
  int parts = esrt_partition_count(rk, topic);
  int64_t *next = NULL, *hi = NULL;
  rd_kafka_topic_partition_list_t *l = NULL;
  size_t first = out->n;
  if (parts <= 0) goto done;
  next = calloc((size_t)parts, sizeof *next);
  hi = calloc((size_t)parts, sizeof *hi);
  l = rd_kafka_topic_partition_list_new(parts);
  int64_t remaining = 0;
  for (int p = 0; p < parts; p++) {
    int64_t lo;
    if (esrt_watermarks(rk, topic, p, &lo, &hi[p]) != 0) goto done;
    next[p] = lo;
    if (hi[p] > lo) {
      rd_kafka_topic_partition_list_add(l, topic, p)->offset = lo;
      remaining += hi[p] - lo;
    }
  }
  if (remaining == 0) {
    rc = 0;
    goto done;
  }
  rd_kafka_resp_err_t e = rd_kafka_assign(rk, l);
  if (e) {
    fprintf(stderr, "esrt: reader assign: %s\n", rd_kafka_err2str(e));
    goto done;
  }
  int64_t deadline = esrt_now_ms() + timeout_ms;
  int open = 0;
  for (int p = 0; p < parts; p++) open += next[p] < hi[p];
  while (open > 0) {
    if (esrt_now_ms() >= deadline) {
      fprintf(stderr, "esrt: reading %s did not reach the end within %d ms:", topic, timeout_ms);
      for (int p = 0; p < parts; p++)
        fprintf(stderr, " [%d] at %" PRId64 " of %" PRId64, p, next[p], hi[p]);
      fprintf(stderr, "\n");
      goto done;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
    if (!m) continue;
    if (m->err) {
      if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
        fprintf(stderr, "esrt: reading %s: %s\n", topic, rd_kafka_message_errstr(m));
    } else if (m->partition >= 0 && m->partition < parts && m->offset >= next[m->partition] &&
               m->offset < hi[m->partition]) {
      add_record(out, m);
      next[m->partition] = m->offset + 1;
      if (next[m->partition] >= hi[m->partition]) open--;
    }
    rd_kafka_message_destroy(m);
  }
  qsort(out->v + first, out->n - first, sizeof *out->v, cmp_record);
  rc = 0;
done:
  if (l) rd_kafka_topic_partition_list_destroy(l);
  free(next);
  free(hi);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return rc;
}

/* ---- following output topics ---- */

#define TAIL_MAX_TOPICS 8

struct esrt_tail {
  rd_kafka_t *rk;
  const char *topics[TAIL_MAX_TOPICS];
  int n_topics;
  int parts[TAIL_MAX_TOPICS];
  int64_t *next[TAIL_MAX_TOPICS]; /* next offset to read per partition */
  char **set;                     /* open addressing, strdup'd esr-source values */
  size_t cap, n, messages;
};

static uint64_t tail_hash(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

static void tail_add(esrt_tail *t, const char *s) {
  if ((t->n + 1) * 2 > t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 1024;
    char **g = calloc(cap, sizeof *g);
    if (!g) abort();
    for (size_t i = 0; i < t->cap; i++) {
      if (!t->set[i]) continue;
      size_t j = tail_hash(t->set[i]) & (cap - 1);
      while (g[j]) j = (j + 1) & (cap - 1);
      g[j] = t->set[i];
    }
    free(t->set);
    t->set = g;
    t->cap = cap;
  }
  size_t j = tail_hash(s) & (t->cap - 1);
  for (; t->set[j]; j = (j + 1) & (t->cap - 1))
    if (strcmp(t->set[j], s) == 0) return;
  t->set[j] = strdup(s);
  if (!t->set[j]) abort();
  t->n++;
}

int esrt_tail_has(const esrt_tail *t, const char *s) {
  if (!t->cap) return 0;
  for (size_t j = tail_hash(s) & (t->cap - 1); t->set[j]; j = (j + 1) & (t->cap - 1))
    if (strcmp(t->set[j], s) == 0) return 1;
  return 0;
}

size_t esrt_tail_messages(const esrt_tail *t) { return t->messages; }

esrt_tail *esrt_tail_new(const char *bootstrap, const char *const *topics) {
  esrt_tail *t = calloc(1, sizeof *t);
  rd_kafka_conf_t *conf = base_conf(bootstrap);
  if (!t || !conf) goto fail;
  char errstr[512];
  rd_kafka_conf_set(conf, "group.id", "esrt-tail", errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "isolation.level", "read_committed", errstr, sizeof errstr);
  if (!(t->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr))) {
    fprintf(stderr, "esrt: tail: %s\n", errstr);
    goto fail;
  }
  conf = NULL;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
  for (int i = 0; topics[i] && i < TAIL_MAX_TOPICS; i++) {
    t->topics[i] = topics[i];
    t->parts[i] = esrt_partition_count(t->rk, topics[i]);
    if (t->parts[i] <= 0 || !(t->next[i] = calloc((size_t)t->parts[i], sizeof *t->next[i]))) {
      rd_kafka_topic_partition_list_destroy(l);
      goto fail;
    }
    for (int p = 0; p < t->parts[i]; p++) rd_kafka_topic_partition_list_add(l, topics[i], p)->offset = 0;
    t->n_topics++;
  }
  rd_kafka_resp_err_t e = rd_kafka_assign(t->rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) {
    fprintf(stderr, "esrt: tail assign: %s\n", rd_kafka_err2str(e));
    goto fail;
  }
  return t;
fail:
  if (conf) rd_kafka_conf_destroy(conf);
  esrt_tail_free(t);
  return NULL;
}

void esrt_tail_free(esrt_tail *t) {
  if (!t) return;
  if (t->rk) {
    rd_kafka_consumer_close(t->rk);
    rd_kafka_destroy(t->rk);
  }
  for (int i = 0; i < t->n_topics; i++) free(t->next[i]);
  for (size_t i = 0; i < t->cap; i++) free(t->set[i]);
  free(t->set);
  free(t);
}

int esrt_tail_catch_up(esrt_tail *t, int timeout_ms) {
  int64_t *hi[TAIL_MAX_TOPICS] = {0};
  int rc = -1, open = 0;
  for (int i = 0; i < t->n_topics; i++) {
    if (!(hi[i] = calloc((size_t)t->parts[i], sizeof *hi[i]))) goto out;
    for (int p = 0; p < t->parts[i]; p++) {
      int64_t lo;
      if (esrt_watermarks(t->rk, t->topics[i], p, &lo, &hi[i][p]) != 0) goto out;
      if (t->next[i][p] < lo) t->next[i][p] = lo;
      open += t->next[i][p] < hi[i][p];
    }
  }
  int64_t deadline = esrt_now_ms() + timeout_ms;
  while (open > 0) {
    if (esrt_now_ms() >= deadline) {
      fprintf(stderr, "esrt: tail: the output topics not read to their ends within %d ms\n", timeout_ms);
      goto out;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(t->rk, 100);
    if (!m) continue;
    int i = 0;
    while (!m->err && i < t->n_topics && strcmp(t->topics[i], rd_kafka_topic_name(m->rkt)) != 0) i++;
    if (!m->err && i < t->n_topics && m->partition >= 0 && m->partition < t->parts[i] &&
        m->offset >= t->next[i][m->partition]) {
      int was_open = t->next[i][m->partition] < hi[i][m->partition];
      t->next[i][m->partition] = m->offset + 1;
      t->messages++;
      rd_kafka_headers_t *h = NULL;
      const void *v;
      size_t len;
      if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR && h &&
          rd_kafka_header_get_last(h, "esr-source", &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR && v && len < 512) {
        char buf[512];
        memcpy(buf, v, len);
        buf[len] = '\0';
        tail_add(t, buf);
      }
      if (was_open && t->next[i][m->partition] >= hi[i][m->partition]) open--;
    }
    rd_kafka_message_destroy(m);
  }
  rc = 0;
out:
  for (int i = 0; i < t->n_topics; i++) free(hi[i]);
  return rc;
}
