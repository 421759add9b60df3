/* mock_cluster.c — hosting librdkafka's mock cluster: a handle to own it, topics, broker up/down. */
#include "mock_cluster.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdlib.h>

struct esr_mock {
  rd_kafka_t *rk; /* a producer handle that owns the cluster's threads */
  rd_kafka_mock_cluster_t *mc;
  int brokers;
};

esr_code esr_mock_new(int brokers, esr_mock **out, esr_error *err) {
  *out = NULL;
  esr_mock *m = calloc(1, sizeof *m);
  if (!m) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  char errstr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
  m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!m->rk) {
    rd_kafka_conf_destroy(conf);
    free(m);
    return esr_error_set(err, ESR_E_KAFKA, 0, "mock cluster: %s", errstr);
  }
  m->mc = rd_kafka_mock_cluster_new(m->rk, brokers);
  if (!m->mc) {
    esr_mock_free(m);
    return esr_error_set(err, ESR_E_KAFKA, 0, "mock cluster: cannot create %d brokers", brokers);
  }
  m->brokers = brokers;
  *out = m;
  return ESR_E_OK;
}

void esr_mock_free(esr_mock *m) {
  if (!m) return;
  if (m->mc) rd_kafka_mock_cluster_destroy(m->mc);
  if (m->rk) rd_kafka_destroy(m->rk);
  free(m);
}

const char *esr_mock_bootstraps(const esr_mock *m) { return rd_kafka_mock_cluster_bootstraps(m->mc); }
int esr_mock_brokers(const esr_mock *m) { return m->brokers; }

esr_code esr_mock_create_topic(esr_mock *m, const char *name, int partitions, esr_error *err) {
  int rf = m->brokers < 3 ? m->brokers : 3;
  rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(m->mc, name, partitions, rf);
  if (e) return esr_error_set(err, ESR_E_KAFKA, e, "topic %s: %s", name, rd_kafka_err2str(e));
  return ESR_E_OK;
}

esr_code esr_mock_broker_set(esr_mock *m, int broker_id, int up, esr_error *err) {
  rd_kafka_resp_err_t e = up ? rd_kafka_mock_broker_set_up(m->mc, broker_id)
                             : rd_kafka_mock_broker_set_down(m->mc, broker_id);
  if (e) return esr_error_set(err, ESR_E_KAFKA, e, "broker %d: %s", broker_id, rd_kafka_err2str(e));
  return ESR_E_OK;
}
