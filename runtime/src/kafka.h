/* esr/kafka.h — librdkafka client configuration as esr needs it.
 *
 * esr_kafka_conf_new builds an rd_kafka_conf_t for a consumer or a producer: esr's defaults first (the settings that
 * KAFKA-NOTES found to matter: queued.min.messages, auto.offset.reset=error, acks=all with idempotence, ...), then
 * every `kafka.*` key of the configuration. Keys esr manages itself (they carry the exactly-once and no-skip
 * guarantees) cannot be overridden: trying is ESR_E_CONFIG naming the key. A property librdkafka rejects is ESR_E_CONFIG
 * with librdkafka's message. librdkafka's log lines go to esr's log (component "kafka"). The caller owns the conf until
 * it hands it to rd_kafka_new.
 */
#ifndef ESR_KAFKA_H
#define ESR_KAFKA_H

#include <librdkafka/rdkafka.h>

#include "config.h"

typedef enum esr_kafka_role { ESR_KAFKA_CONSUMER, ESR_KAFKA_PRODUCER } esr_kafka_role;

esr_code esr_kafka_conf_new(const esr_config *cfg, esr_kafka_role role, rd_kafka_conf_t **out, esr_error *err);
/* The number of partitions of `topic` (from a metadata request, up to timeout_ms). ESR_E_KAFKA when the topic is unknown
 * or has none. */
esr_code esr_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, int *count, esr_error *err);
/* The client id esr uses when none is configured: "esr-<hostname>". */
void esr_kafka_default_client_id(char *buf, size_t cap);

#endif
