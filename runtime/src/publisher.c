/* publisher.c — the outbox's producer: headers, delivery tickets, idempotent acks=all delivery. */
#include "publisher.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"

struct esr_publisher {
  rd_kafka_t *rk;
  rd_kafka_topic_t *warm[4];
  int n_warm;
  esr_delivery_fn fn;
  void *opaque;
  int txn;    /* transactional */
  int fenced; /* a fatal transactional error: nothing more can be sent */
};

typedef struct ticket {
  uint64_t sink;
  int64_t seq;
} ticket;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  esr_publisher *p = opaque;
  ticket *t = m->_private;
  if (!t) return;
  esr_delivery d = {.sink = t->sink,
                    .seq = t->seq,
                    .ok = m->err == RD_KAFKA_RESP_ERR_NO_ERROR,
                    .error = rd_kafka_err2str(m->err),
                    .topic = m->rkt ? rd_kafka_topic_name(m->rkt) : NULL,
                    .partition = m->partition,
                    .offset = m->offset};
  p->fn(p->opaque, &d);
  free(t);
}

static esr_code publisher_new(const esr_config *cfg, const char *txn_id, esr_delivery_fn fn, void *opaque,
                              esr_publisher **out, esr_error *err) {
  *out = NULL;
  esr_publisher *p = calloc(1, sizeof *p);
  if (!p) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  p->fn = fn;
  p->opaque = opaque;
  rd_kafka_conf_t *conf;
  esr_code rc = esr_kafka_conf_new(cfg, ESR_KAFKA_PRODUCER, &conf, err);
  if (rc != ESR_E_OK) goto fail;
  rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  rd_kafka_conf_set_opaque(conf, p);
  char errstr[512];
  if (txn_id && rd_kafka_conf_set(conf, "transactional.id", txn_id, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    rc = esr_error_set(err, ESR_E_CONFIG, 0, "transactional.id %s: %s", txn_id, errstr);
    goto fail;
  }
  p->txn = txn_id != NULL;
  p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!p->rk) {
    rd_kafka_conf_destroy(conf);
    rc = esr_error_set(err, ESR_E_CONFIG, 0, "cannot create the dead-letter producer: %s", errstr);
    goto fail;
  }
  *out = p;
  return ESR_E_OK;
fail:
  free(p);
  return rc;
}

esr_code esr_publisher_new(const esr_config *cfg, esr_delivery_fn fn, void *opaque, esr_publisher **out,
                           esr_error *err) {
  return publisher_new(cfg, NULL, fn, opaque, out, err);
}

esr_code esr_publisher_new_txn(const esr_config *cfg, const char *txn_id, int timeout_ms, esr_delivery_fn fn,
                               void *opaque, esr_publisher **out, esr_error *err) {
  esr_publisher *p;
  esr_code rc = publisher_new(cfg, txn_id, fn, opaque, &p, err);
  *out = NULL;
  if (rc != ESR_E_OK) return rc;
  rd_kafka_error_t *e = rd_kafka_init_transactions(p->rk, timeout_ms);
  if (e) {
    rc = esr_error_set(err, ESR_E_KAFKA, rd_kafka_error_code(e), "transactional.id %s: initialising transactions: %s",
                       txn_id, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    esr_publisher_free(p);
    return rc;
  }
  *out = p;
  return ESR_E_OK;
}

esr_code esr_publisher_txn_begin(esr_publisher *p, esr_error *err) {
  if (p->fenced) return esr_error_set(err, ESR_E_KAFKA, RD_KAFKA_RESP_ERR__FENCED, "the transactional producer was fenced");
  rd_kafka_error_t *e = rd_kafka_begin_transaction(p->rk);
  if (!e) return ESR_E_OK;
  if (rd_kafka_error_is_fatal(e)) p->fenced = 1;
  esr_code rc = esr_error_set(err, ESR_E_KAFKA, rd_kafka_error_code(e), "beginning a transaction: %s",
                              rd_kafka_error_string(e));
  rd_kafka_error_destroy(e);
  return rc;
}

esr_code esr_publisher_txn_commit(esr_publisher *p, int timeout_ms, esr_error *err) {
  rd_kafka_error_t *e = rd_kafka_commit_transaction(p->rk, timeout_ms);
  rd_kafka_poll(p->rk, 0);
  if (!e) return ESR_E_OK;
  esr_code rc = esr_error_set(err, ESR_E_KAFKA, rd_kafka_error_code(e), "committing a transaction: %s",
                              rd_kafka_error_string(e));
  int fatal = rd_kafka_error_is_fatal(e);
  rd_kafka_error_destroy(e);
  if (fatal) {
    p->fenced = 1; /* e.g. fenced by a newer producer of the same transactional.id: the partition moved */
    return rc;
  }
  rd_kafka_error_t *a = rd_kafka_abort_transaction(p->rk, -1);
  rd_kafka_poll(p->rk, 0);
  if (a) {
    if (rd_kafka_error_is_fatal(a)) p->fenced = 1;
    rd_kafka_error_destroy(a);
  }
  return rc;
}

int esr_publisher_fenced(const esr_publisher *p) { return p->fenced; }

void esr_publisher_free(esr_publisher *p) {
  if (!p) return;
  /* Undelivered messages are purged: their rows stay in the outbox and are sent again by the next owner. */
  for (int i = 0; i < p->n_warm; i++) rd_kafka_topic_destroy(p->warm[i]);
  if (p->txn && !p->fenced) { /* an open transaction is aborted: nothing of it becomes visible */
    rd_kafka_error_t *e = rd_kafka_abort_transaction(p->rk, 1000);
    if (e) rd_kafka_error_destroy(e);
  }
  rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_poll(p->rk, 0);
  rd_kafka_flush(p->rk, 100);
  rd_kafka_destroy(p->rk);
  free(p);
}

esr_code esr_publisher_send(esr_publisher *p, uint64_t sink, const char *src_topic, int32_t src_partition,
                            const esr_outbox_row *row, esr_error *err) {
  ticket *t = malloc(sizeof *t);
  if (!t) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  t->sink = sink;
  t->seq = row->seq;
  char part[16], off[24], source[300];
  snprintf(part, sizeof part, "%" PRId32, src_partition);
  snprintf(off, sizeof off, "%" PRId64, row->src_offset);
  snprintf(source, sizeof source, "%s/%s/%s/%d", src_topic, part, off, row->src_index);
  rd_kafka_headers_t *h = rd_kafka_headers_new(6);
  rd_kafka_header_add(h, "esr-topic", -1, src_topic, -1);
  rd_kafka_header_add(h, "esr-partition", -1, part, -1);
  rd_kafka_header_add(h, "esr-offset", -1, off, -1);
  rd_kafka_header_add(h, "esr-source", -1, source, -1);
  if (row->reason) rd_kafka_header_add(h, "esr-reason", -1, row->reason, -1);
  if (row->error) rd_kafka_header_add(h, "esr-error", -1, row->error, -1);
  rd_kafka_resp_err_t e = rd_kafka_producev(
      p->rk, RD_KAFKA_V_TOPIC(row->topic), RD_KAFKA_V_KEY(row->key, row->key ? row->key_len : 0),
      RD_KAFKA_V_VALUE((void *)row->value, row->value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(t), RD_KAFKA_V_END);
  if (e) {
    rd_kafka_headers_destroy(h);
    free(t);
    return esr_error_set(err, ESR_E_KAFKA, e, "producing to %s: %s", row->topic, rd_kafka_err2str(e));
  }
  return ESR_E_OK;
}

void esr_publisher_warm(esr_publisher *p, const char *topic) {
  if (p->n_warm == (int)(sizeof p->warm / sizeof *p->warm)) return;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(p->rk, topic, NULL);
  if (!rkt) return;
  p->warm[p->n_warm++] = rkt;
  const struct rd_kafka_metadata *md = NULL;
  /* Asynchronous would do as well; a short synchronous lookup keeps the first dead letter's latency low. */
  if (rd_kafka_metadata(p->rk, 0, rkt, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR) rd_kafka_metadata_destroy(md);
}

int esr_publisher_queue_full(const esr_error *err) {
  return err && err->code == ESR_E_KAFKA && err->lib_code == RD_KAFKA_RESP_ERR__QUEUE_FULL;
}

void esr_publisher_poll(esr_publisher *p, int timeout_ms) { rd_kafka_poll(p->rk, timeout_ms); }

int esr_publisher_flush(esr_publisher *p, int timeout_ms) {
  rd_kafka_flush(p->rk, timeout_ms);
  return rd_kafka_outq_len(p->rk);
}

int esr_publisher_in_flight(esr_publisher *p) { return rd_kafka_outq_len(p->rk); }
