/* kafka.c — librdkafka configuration: esr's defaults, the user's kafka.* keys, the keys esr keeps for itself. */
#include "kafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"

typedef struct kafka_default {
  const char *key, *value;
  int managed; /* 1: carries a guarantee; the user may not override it */
} kafka_default;

static const kafka_default CONSUMER_DEFAULTS[] = {
    /* The resume position lives in SQLite; Kafka's group offsets are only for lag visibility, stored after each
     * SQLite commit and committed in the background, coalesced. */
    {"enable.auto.offset.store", "false", 1},
    {"enable.auto.commit", "true", 0},
    {"auto.commit.interval.ms", "1000", 0},
    /* A start offset the log no longer holds is an error, never a silent jump. */
    {"auto.offset.reset", "error", 1},
    {"enable.partition.eof", "false", 1},
    /* 2.0.2 pauses fetching for a fixed second when more than this is queued (KAFKA-NOTES: ~137k/s cap otherwise). */
    {"queued.min.messages", "1000000", 0},
    /* ... but bound the memory the prefetch may take (the count alone would prefetch a whole backlog). It applies to
     * each apply thread's queue, and a queued message keeps its fetch buffer: 16 MiB instead of 32 took the benchmark's
     * peak RSS with 48 partitions from 231 to 181 MB at the same rate; 8 MiB lowers it further but hits 2.0.2's fixed
     * one-second fetch pause (about -25 % events/s). */
    {"queued.max.messages.kbytes", "16384", 0},
    /* A partition assigned while a long-poll fetch is in flight on its broker joins the next fetch: this bounds that
     * wait (a restart's first event). The cost is idle fetches: about 40 per second per broker connection. */
    {"fetch.wait.max.ms", "25", 0},
    {"partition.assignment.strategy", "cooperative-sticky", 0},
    {"session.timeout.ms", "10000", 0},
    {"isolation.level", "read_committed", 0},
};

static const kafka_default PRODUCER_DEFAULTS[] = {
    /* What esr writes (dead letters, emits) is replicated before it counts, and retries do not duplicate it. */
    {"enable.idempotence", "true", 1},
    {"acks", "all", 1},
    {"linger.ms", "5", 0},
    {"message.timeout.ms", "30000", 0},
};

/* Consumer-only properties that would make the producer warn (and the reverse); not applied to the other client. */
static int consumer_only(const char *key) {
  static const char *const keys[] = {"group.id", "group.instance.id", "session.timeout.ms", "heartbeat.interval.ms",
                                     "partition.assignment.strategy", "max.poll.interval.ms", "auto.commit.interval.ms",
                                     "enable.auto.commit", "enable.auto.offset.store", "auto.offset.reset",
                                     "queued.min.messages", "queued.max.messages.kbytes", "fetch.wait.max.ms",
                                     "fetch.min.bytes", "fetch.max.bytes", "max.partition.fetch.bytes",
                                     "fetch.message.max.bytes", "isolation.level", "enable.partition.eof",
                                     "check.crcs", "group.protocol.type", "coordinator.query.interval.ms", NULL};
  for (int i = 0; keys[i]; i++)
    if (strcmp(keys[i], key) == 0) return 1;
  return 0;
}

static int producer_only(const char *key) {
  static const char *const keys[] = {"enable.idempotence", "acks", "request.required.acks", "linger.ms",
                                     "queue.buffering.max.ms", "message.timeout.ms", "delivery.timeout.ms",
                                     "batch.num.messages", "batch.size", "compression.type", "compression.codec",
                                     "queue.buffering.max.messages", "queue.buffering.max.kbytes",
                                     "message.send.max.retries", "retries", "retry.backoff.ms", "transactional.id",
                                     "enable.gapless.guarantee", "sticky.partitioning.linger.ms", "partitioner", NULL};
  for (int i = 0; keys[i]; i++)
    if (strcmp(keys[i], key) == 0) return 1;
  return 0;
}

/* A managed default of either client with this exact name, or NULL. */
static const kafka_default *managed_key(const char *key) {
  for (size_t d = 0; d < sizeof CONSUMER_DEFAULTS / sizeof *CONSUMER_DEFAULTS; d++)
    if (CONSUMER_DEFAULTS[d].managed && strcmp(CONSUMER_DEFAULTS[d].key, key) == 0) return &CONSUMER_DEFAULTS[d];
  for (size_t d = 0; d < sizeof PRODUCER_DEFAULTS / sizeof *PRODUCER_DEFAULTS; d++)
    if (PRODUCER_DEFAULTS[d].managed && strcmp(PRODUCER_DEFAULTS[d].key, key) == 0) return &PRODUCER_DEFAULTS[d];
  return NULL;
}

/* librdkafka's properties that hold secrets and that it may quote in a log line (an sasl.oauthbearer.config it cannot
 * parse is logged from where the parse failed). */
static const char *const SECRET_PROPERTIES[] = {"sasl.password", "sasl.oauthbearer.config",
                                                "sasl.oauthbearer.client.secret", "ssl.key.password",
                                                "ssl.keystore.password", NULL};

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  int esr_level = level <= LOG_ERR ? ESR_LOG_ERROR : level <= LOG_WARNING ? ESR_LOG_WARN
                                                   : level <= LOG_INFO    ? ESR_LOG_INFO
                                                                          : ESR_LOG_DEBUG;
  if (!esr_log_enabled(esr_level)) return;
  char text[1024];
  snprintf(text, sizeof text, "%s", buf);
  const rd_kafka_conf_t *conf = rd_kafka_conf((rd_kafka_t *)rk);
  for (int i = 0; conf && SECRET_PROPERTIES[i]; i++) {
    char value[512];
    size_t len = sizeof value;
    if (rd_kafka_conf_get(conf, SECRET_PROPERTIES[i], value, &len) != RD_KAFKA_CONF_OK || !value[0]) continue;
    esr_config_mask(text, sizeof text, value);
    /* A parse error quotes the rest of the value from where it failed: its longest tail that appears goes too. */
    for (size_t k = 1; k + 4 <= strlen(value); k++)
      if (strstr(text, value + k)) {
        esr_config_mask(text, sizeof text, value + k);
        break;
      }
  }
  esr_log(esr_level, "kafka", "%s: %s: %s", rd_kafka_name(rk), fac, text);
}

/* The librdkafka property closest to `key` (for "did you mean"), or "" when none is close; from librdkafka's own table
 * (rd_kafka_conf_properties_show), so that it matches the library linked. */
static void closest_property(const char *key, char *out, size_t cap) {
  out[0] = '\0';
  char *table = NULL;
  size_t size = 0;
  FILE *f = open_memstream(&table, &size);
  if (!f) return;
  rd_kafka_conf_properties_show(f);
  if (fclose(f) != 0 || !table) {
    free(table);
    return;
  }
  size_t best = 4; /* at most 3 edits */
  for (char *line = table, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = '\0';
    size_t n = strspn(line, "abcdefghijklmnopqrstuvwxyz0123456789._");
    if (n == 0 || n >= 128 || line[n] != ' ' || !strchr(line + n, '|')) continue; /* not a row of the table */
    line[n] = '\0';
    size_t d = esr_config_key_distance(key, line);
    if (d < best) {
      best = d;
      snprintf(out, cap, "%s", line);
    }
  }
  free(table);
}

/* The configuration error for a kafka.* key librdkafka refused: the key, never a value that may be a secret (a
 * property librdkafka does not know may be a misspelled secret), and librdkafka's words without any secret value. */
static void refused(const esr_config *cfg, const char *key, const char *value, rd_kafka_conf_res_t res, char *errstr,
                    size_t cap, esr_error *err) {
  for (size_t n = strlen(errstr); n > 0 && (errstr[n - 1] == '\n' || errstr[n - 1] == ' '); n--) errstr[n - 1] = '\0';
  esr_config_redact(cfg, errstr, cap);
  char full[300];
  snprintf(full, sizeof full, "kafka.%s", key);
  if (res == RD_KAFKA_CONF_UNKNOWN) {
    char near[128];
    closest_property(key, near, sizeof near);
    if (near[0])
      esr_error_set(err, ESR_E_CONFIG, 0,
                    "config: %s: librdkafka %s has no such property (the value is not shown: it may be a secret); "
                    "did you mean kafka.%s?",
                    full, rd_kafka_version_str(), near);
    else
      esr_error_set(err, ESR_E_CONFIG, 0,
                    "config: %s: librdkafka %s has no such property (the value is not shown: it may be a secret); "
                    "see librdkafka's CONFIGURATION.md for the property names",
                    full, rd_kafka_version_str());
  } else if (esr_config_key_is_secret(full)) {
    esr_config_mask(errstr, cap, value);
    esr_error_set(err, ESR_E_CONFIG, 0, "config: %s: librdkafka refuses its value (not shown: it may be a secret): %s",
                  full, errstr);
  } else {
    esr_error_set(err, ESR_E_CONFIG, 0, "config: %s = '%s': %s", full, value, errstr);
  }
}

esr_code esr_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, int *count, esr_error *err) {
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
  *count = 0;
  if (!e && md->topic_cnt == 1) {
    e = md->topics[0].err;
    *count = md->topics[0].partition_cnt;
  }
  if (md) rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  if (e || *count <= 0)
    return esr_error_set(err, ESR_E_KAFKA, e, "topic %s: cannot read its partitions: %s", topic,
                         e ? rd_kafka_err2str(e) : "no partitions");
  return ESR_E_OK;
}

void esr_kafka_default_client_id(char *buf, size_t cap) {
  char host[128] = "unknown";
  gethostname(host, sizeof host - 1);
  snprintf(buf, cap, "esr-%s", host);
}

esr_code esr_kafka_conf_new(const esr_config *cfg, esr_kafka_role role, rd_kafka_conf_t **out, esr_error *err) {
  *out = NULL;
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char errstr[512];
  const kafka_default *defs = role == ESR_KAFKA_CONSUMER ? CONSUMER_DEFAULTS : PRODUCER_DEFAULTS;
  size_t n_defs = role == ESR_KAFKA_CONSUMER ? sizeof CONSUMER_DEFAULTS / sizeof *defs
                                             : sizeof PRODUCER_DEFAULTS / sizeof *defs;
  for (size_t i = 0; i < n_defs; i++) {
    if (rd_kafka_conf_set(conf, defs[i].key, defs[i].value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
      esr_error_set(err, ESR_E_CONFIG, 0, "librdkafka refused esr's default %s=%s: %s", defs[i].key, defs[i].value,
                    errstr);
      goto fail;
    }
  }
  char client_id[200];
  esr_kafka_default_client_id(client_id, sizeof client_id);
  rd_kafka_conf_set(conf, "client.id", client_id, errstr, sizeof errstr);
  for (size_t i = 0; i < cfg->n_kafka; i++) {
    const char *key = cfg->kafka[i].key, *value = cfg->kafka[i].value;
    if (strcmp(key, "transactional.id") == 0) {
      esr_error_set(err, ESR_E_CONFIG, 0,
                    "config: kafka.transactional.id is managed by esr (each partition needs its own, derived from "
                    "kafka.group.id): remove it, and set outputs.transactional = true for transactions");
      goto fail;
    }
    const kafka_default *managed = managed_key(key);
    if (managed && strcmp(managed->value, value) != 0) {
      esr_error_set(err, ESR_E_CONFIG, 0,
                    "config: kafka.%s is managed by esr (it must stay %s so that recovery is exact and nothing is "
                    "skipped, lost or duplicated): remove it",
                    key, managed->value);
      goto fail;
    }
    if (role == ESR_KAFKA_PRODUCER && consumer_only(key)) continue;
    if (role == ESR_KAFKA_CONSUMER && producer_only(key)) continue;
    rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, key, value, errstr, sizeof errstr);
    if (res != RD_KAFKA_CONF_OK) {
      refused(cfg, key, value, res, errstr, sizeof errstr, err);
      goto fail;
    }
    /* Read the managed settings back rather than compare names: librdkafka has aliases (request.required.acks). */
    for (size_t d = 0; d < n_defs; d++) {
      if (!defs[d].managed) continue;
      char now[64];
      size_t len = sizeof now;
      if (rd_kafka_conf_get(conf, defs[d].key, now, &len) != RD_KAFKA_CONF_OK) continue;
      int same = strcmp(now, defs[d].value) == 0 ||
                 (strcmp(defs[d].key, "acks") == 0 && (strcmp(now, "-1") == 0 || strcmp(now, "all") == 0));
      if (!same) {
        char full[300];
        snprintf(full, sizeof full, "kafka.%s", key);
        esr_error_set(err, ESR_E_CONFIG, 0,
                      "config: kafka.%s = '%s' changes %s, which esr manages (it must stay %s so that recovery is "
                      "exact and nothing is skipped, lost or duplicated): remove kafka.%s",
                      key, esr_config_key_is_secret(full) ? "***" : value, defs[d].key, defs[d].value, key);
        goto fail;
      }
    }
  }
  rd_kafka_conf_set_log_cb(conf, log_cb);
  *out = conf;
  return ESR_E_OK;
fail:
  rd_kafka_conf_destroy(conf);
  return ESR_E_CONFIG; /* every failure above is a configuration error */
}
