/* esr/mock_cluster.h — librdkafka's mock Kafka cluster, hosted by this process (`esr mock-cluster`).
 *
 * The cluster lives in memory as long as the esr_mock does; other processes reach it over loopback TCP at
 * esr_mock_bootstraps(). librdkafka 2.0.2's mock keeps at most 100,000 message sets or 5 MiB per partition (older data
 * is dropped and the log start moves), ignores the replication factor, answers no admin requests (topics are created
 * here) and returns -1 from offsets_for_times.
 */
#ifndef ESR_MOCK_CLUSTER_H
#define ESR_MOCK_CLUSTER_H

#include "error.h"

typedef struct esr_mock esr_mock;

esr_code esr_mock_new(int brokers, esr_mock **out, esr_error *err);
void esr_mock_free(esr_mock *m);
const char *esr_mock_bootstraps(const esr_mock *m);
int esr_mock_brokers(const esr_mock *m);
/* Creates a topic; the replication factor is min(3, brokers). */
esr_code esr_mock_create_topic(esr_mock *m, const char *name, int partitions, esr_error *err);
/* Takes a broker down or brings it back (fault tests). */
esr_code esr_mock_broker_set(esr_mock *m, int broker_id, int up, esr_error *err);

#endif
