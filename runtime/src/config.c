/* config.c — parsing and validation of the worker configuration, driven by one table of keys. */
#include "config.h"

#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef esr_code (*setter_fn)(esr_config *cfg, const char *key, const char *value, const char *origin,
                              esr_error *err);

typedef struct key_spec {
  const char *name;
  setter_fn set;
  int required;
  const char *def; /* the default: esr_config_new sets it through `set`; "<...>" only describes a derived default */
  const char *example;
  const char *help;
} key_spec;

static const key_spec *find_key(const char *key);

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

/* A key's value as a message may quote it: never the value of a key that may hold a secret. */
static const char *shown_value(const char *key, const char *value, char *buf, size_t cap) {
  if (esr_config_key_is_secret(key)) return "(value not shown: the key may hold a secret)";
  snprintf(buf, cap, "'%s'", value);
  return buf;
}

static esr_code bad(esr_error *err, const char *key, const char *origin, const char *value, const char *what,
                    const char *example) {
  char buf[300];
  return esr_error_set(err, ESR_E_CONFIG, 0, "config: %s = %s (%s): %s; for example: %s = %s", key,
                       shown_value(key, value, buf, sizeof buf), origin, what, key, example);
}

static void free_list(char **list, size_t n) {
  for (size_t i = 0; i < n; i++) free(list[i]);
  free(list);
}

/* Splits a comma list, trimming blanks; empty items are refused. */
static esr_code parse_list(const char *value, char ***out, size_t *n_out) {
  char **list = NULL;
  size_t n = 0;
  const char *p = value;
  while (1) {
    while (*p == ' ' || *p == '\t') p++;
    const char *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    const char *e = end;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t')) e--;
    if (e == p) goto fail;
    char **grown = realloc(list, (n + 1) * sizeof *list);
    if (!grown) goto fail;
    list = grown;
    list[n] = malloc((size_t)(e - p) + 1);
    if (!list[n]) goto fail;
    memcpy(list[n], p, (size_t)(e - p));
    list[n][e - p] = '\0';
    n++;
    if (!*end) break;
    p = end + 1;
  }
  *out = list;
  *n_out = n;
  return ESR_E_OK;
fail:
  free_list(list, n);
  return ESR_E_CONFIG;
}

static int parse_int(const char *s, long lo, long hi, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return -1;
  *out = (int)v;
  return 0;
}

static esr_code set_topics(esr_config *cfg, const char *key, const char *value, const char *origin, esr_error *err) {
  char **list;
  size_t n;
  if (parse_list(value, &list, &n) != ESR_E_OK)
    return bad(err, key, origin, value, "expected a comma-separated list of topic names", "ledger,orders");
  for (size_t i = 0; i < n; i++) {
    for (const char *c = list[i]; *c; c++) {
      if (!isalnum((unsigned char)*c) && *c != '.' && *c != '_' && *c != '-') {
        free_list(list, n);
        return bad(err, key, origin, value, "topic names use only [a-zA-Z0-9._-]", "ledger");
      }
    }
  }
  free_list(cfg->topics, cfg->n_topics);
  cfg->topics = list;
  cfg->n_topics = n;
  return ESR_E_OK;
}

static esr_code set_handlers(esr_config *cfg, const char *key, const char *value, const char *origin,
                             esr_error *err) {
  char **list;
  size_t n;
  if (parse_list(value, &list, &n) != ESR_E_OK)
    return bad(err, key, origin, value, "expected a comma-separated list of plugin paths", "/usr/lib/esr/ledger.so");
  free_list(cfg->handlers, cfg->n_handlers);
  cfg->handlers = list;
  cfg->n_handlers = n;
  return ESR_E_OK;
}

static esr_code set_string(char **slot, const char *key, const char *value, const char *origin, const char *example,
                           esr_error *err) {
  if (!*value) return bad(err, key, origin, value, "must not be empty", example);
  char *copy = xstrdup(value);
  if (!copy) return esr_error_set(err, ESR_E_NOMEM, 0, "config: out of memory");
  free(*slot);
  *slot = copy;
  return ESR_E_OK;
}

static esr_code set_state_dir(esr_config *cfg, const char *key, const char *value, const char *origin,
                              esr_error *err) {
  return set_string(&cfg->state_dir, key, value, origin, "/var/lib/esr", err);
}

static esr_code set_dlq_topic(esr_config *cfg, const char *key, const char *value, const char *origin,
                              esr_error *err) {
  return set_string(&cfg->dlq_topic, key, value, origin, "ledger.dlq", err);
}

static esr_code set_batch_events(esr_config *cfg, const char *key, const char *value, const char *origin,
                                 esr_error *err) {
  if (parse_int(value, 1, 1000000, &cfg->batch_max_events))
    return bad(err, key, origin, value, "expected an integer in 1..1000000", "1000");
  return ESR_E_OK;
}

static esr_code set_batch_ms(esr_config *cfg, const char *key, const char *value, const char *origin,
                             esr_error *err) {
  if (parse_int(value, 1, 60000, &cfg->batch_max_ms))
    return bad(err, key, origin, value, "expected milliseconds in 1..60000", "100");
  return ESR_E_OK;
}

static esr_code set_cache_mb(esr_config *cfg, const char *key, const char *value, const char *origin,
                             esr_error *err) {
  if (parse_int(value, 1, 65536, &cfg->sqlite_cache_mb))
    return bad(err, key, origin, value, "expected megabytes in 1..65536", "16");
  return ESR_E_OK;
}

static esr_code set_threads(esr_config *cfg, const char *key, const char *value, const char *origin,
                            esr_error *err) {
  if (strcmp(value, "auto") == 0) {
    cfg->apply_threads = 0;
    return ESR_E_OK;
  }
  if (parse_int(value, 1, 256, &cfg->apply_threads))
    return bad(err, key, origin, value, "expected auto or a number of threads in 1..256", "auto");
  return ESR_E_OK;
}

static esr_code set_bool(int *slot, const char *key, const char *value, const char *origin, esr_error *err);

static esr_code set_commit_sync(esr_config *cfg, const char *key, const char *value, const char *origin,
                                esr_error *err) {
  return set_bool(&cfg->offsets_commit_sync, key, value, origin, err);
}

static esr_code set_bool(int *slot, const char *key, const char *value, const char *origin, esr_error *err) {
  if (strcmp(value, "true") == 0)
    *slot = 1;
  else if (strcmp(value, "false") == 0)
    *slot = 0;
  else
    return bad(err, key, origin, value, "expected true or false", "true");
  return ESR_E_OK;
}

static esr_code set_cp_dir(esr_config *cfg, const char *key, const char *value, const char *origin, esr_error *err) {
  return set_string(&cfg->checkpoint_dir, key, value, origin, "/var/lib/esr/checkpoints", err);
}

static esr_code set_cp_events(esr_config *cfg, const char *key, const char *value, const char *origin,
                              esr_error *err) {
  if (parse_int(value, 0, 2000000000, &cfg->checkpoint_interval_events))
    return bad(err, key, origin, value, "expected a number of events (0: no checkpoints by count)", "1000000");
  return ESR_E_OK;
}

static esr_code set_cp_ms(esr_config *cfg, const char *key, const char *value, const char *origin, esr_error *err) {
  if (parse_int(value, 0, 2000000000, &cfg->checkpoint_interval_ms))
    return bad(err, key, origin, value, "expected milliseconds (0: no checkpoints by time)", "600000");
  return ESR_E_OK;
}

static esr_code set_cp_keep(esr_config *cfg, const char *key, const char *value, const char *origin,
                            esr_error *err) {
  if (parse_int(value, 1, 1000, &cfg->checkpoint_keep))
    return bad(err, key, origin, value, "expected a number of checkpoints in 1..1000", "3");
  return ESR_E_OK;
}

static esr_code set_cp_release(esr_config *cfg, const char *key, const char *value, const char *origin,
                               esr_error *err) {
  return set_bool(&cfg->checkpoint_on_release, key, value, origin, err);
}

static esr_code set_cp_store(esr_config *cfg, const char *key, const char *value, const char *origin,
                             esr_error *err) {
  if (strncmp(value, "file:///", 8) != 0 && strncmp(value, "s3://", 5) != 0)
    return bad(err, key, origin, value, "expected file:///path (a shared volume) or s3://bucket[/prefix]",
               "s3://esr-checkpoints/ledger");
  return set_string(&cfg->checkpoint_store, key, value, origin, "s3://esr-checkpoints/ledger", err);
}

static esr_code set_cp_endpoint(esr_config *cfg, const char *key, const char *value, const char *origin,
                                esr_error *err) {
  if (strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0)
    return bad(err, key, origin, value, "expected http(s)://host[:port]", "https://minio.internal:9000");
  return set_string(&cfg->checkpoint_s3_endpoint, key, value, origin, "https://minio.internal:9000", err);
}

static esr_code set_cp_region(esr_config *cfg, const char *key, const char *value, const char *origin,
                              esr_error *err) {
  return set_string(&cfg->checkpoint_s3_region, key, value, origin, "eu-west-1", err);
}

static esr_code set_recovery_check(esr_config *cfg, const char *key, const char *value, const char *origin,
                                   esr_error *err) {
  if (strcmp(value, "quick") == 0)
    cfg->recovery_quick_check = 1;
  else if (strcmp(value, "none") == 0)
    cfg->recovery_quick_check = 0;
  else
    return bad(err, key, origin, value, "expected quick (PRAGMA quick_check of the live database) or none", "quick");
  return ESR_E_OK;
}

static esr_code set_store_wait(esr_config *cfg, const char *key, const char *value, const char *origin,
                             esr_error *err) {
  if (parse_int(value, 0, 600000, &cfg->recovery_store_wait_ms))
    return bad(err, key, origin, value, "expected milliseconds in 0..600000", "500");
  return ESR_E_OK;
}

static esr_code set_store_wait_cold(esr_config *cfg, const char *key, const char *value, const char *origin,
                                  esr_error *err) {
  if (parse_int(value, 0, 3600000, &cfg->recovery_store_wait_cold_ms))
    return bad(err, key, origin, value, "expected milliseconds in 0..3600000", "30000");
  return ESR_E_OK;
}

static esr_code set_crash_retries(esr_config *cfg, const char *key, const char *value, const char *origin,
                                  esr_error *err) {
  if (parse_int(value, 0, 100, &cfg->max_crash_retries))
    return bad(err, key, origin, value, "expected a number of restarts in 0..100", "3");
  return ESR_E_OK;
}

static esr_code set_schemas_dir(esr_config *cfg, const char *key, const char *value, const char *origin,
                                esr_error *err) {
  return set_string(&cfg->schemas_dir, key, value, origin, "/etc/esr/schemas", err);
}

static esr_code set_http_listen(esr_config *cfg, const char *key, const char *value, const char *origin,
                                esr_error *err) {
  char host[256];
  int port;
  if (!*value) { /* empty: no HTTP server */
    free(cfg->http_listen);
    cfg->http_listen = NULL;
    return ESR_E_OK;
  }
  if (esr_http_parse_listen(value, host, sizeof host, &port) != 0)
    return bad(err, key, origin, value, "expected host:port, [v6addr]:port or :port (port 0..65535), or empty for none",
               "0.0.0.0:9464");
  return set_string(&cfg->http_listen, key, value, origin, "0.0.0.0:9464", err);
}

static esr_code set_health_stall(esr_config *cfg, const char *key, const char *value, const char *origin,
                                 esr_error *err) {
  if (parse_int(value, 1000, 86400000, &cfg->health_stall_ms))
    return bad(err, key, origin, value, "expected milliseconds in 1000..86400000", "300000");
  return ESR_E_OK;
}

static esr_code set_aside_keep(esr_config *cfg, const char *key, const char *value, const char *origin,
                               esr_error *err) {
  if (parse_int(value, 0, 100000, &cfg->state_aside_keep))
    return bad(err, key, origin, value, "expected a number of files in 0..100000", "3");
  return ESR_E_OK;
}

static esr_code set_drop_after(esr_config *cfg, const char *key, const char *value, const char *origin,
                               esr_error *err) {
  if (parse_int(value, 0, 2000000000, &cfg->state_drop_after_ms))
    return bad(err, key, origin, value, "expected milliseconds (0: never drop)", "600000");
  return ESR_E_OK;
}

static esr_code set_outputs_readback(esr_config *cfg, const char *key, const char *value, const char *origin,
                                     esr_error *err) {
  return set_bool(&cfg->outputs_readback, key, value, origin, err);
}

static esr_code set_outputs_max_mb(esr_config *cfg, const char *key, const char *value, const char *origin,
                                   esr_error *err) {
  if (parse_int(value, 1, 65536, &cfg->outputs_readback_max_mb))
    return bad(err, key, origin, value, "expected megabytes in 1..65536", "16");
  return ESR_E_OK;
}

static esr_code set_outputs_txn(esr_config *cfg, const char *key, const char *value, const char *origin,
                                esr_error *err) {
  return set_bool(&cfg->outputs_transactional, key, value, origin, err);
}

static esr_code set_assignment(esr_config *cfg, const char *key, const char *value, const char *origin,
                               esr_error *err) {
  if (strcmp(value, "group") == 0)
    cfg->assignment = ESR_ASSIGN_GROUP;
  else if (strcmp(value, "static") == 0)
    cfg->assignment = ESR_ASSIGN_STATIC;
  else
    return bad(err, key, origin, value, "expected 'group' or 'static'", "group");
  return ESR_E_OK;
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static esr_code set_partitions(esr_config *cfg, const char *key, const char *value, const char *origin,
                               esr_error *err) {
  char **items;
  size_t n_items;
  int *parts = NULL;
  size_t n = 0;
  if (parse_list(value, &items, &n_items) != ESR_E_OK) goto bad_value;
  for (size_t i = 0; i < n_items; i++) {
    int lo, hi;
    char *dash = strchr(items[i], '-');
    if (dash) {
      *dash = '\0';
      if (parse_int(items[i], 0, 1000000, &lo) || parse_int(dash + 1, 0, 1000000, &hi) || hi < lo) goto bad_items;
    } else {
      if (parse_int(items[i], 0, 1000000, &lo)) goto bad_items;
      hi = lo;
    }
    if (n + (size_t)(hi - lo) + 1 > 100000) goto bad_items;
    int *grown = realloc(parts, (n + (size_t)(hi - lo) + 1) * sizeof *parts);
    if (!grown) goto bad_items;
    parts = grown;
    for (int p = lo; p <= hi; p++) parts[n++] = p;
  }
  free_list(items, n_items);
  qsort(parts, n, sizeof *parts, cmp_int);
  size_t u = 0;
  for (size_t i = 0; i < n; i++)
    if (u == 0 || parts[u - 1] != parts[i]) parts[u++] = parts[i];
  free(cfg->partitions);
  cfg->partitions = parts;
  cfg->n_partitions = u;
  return ESR_E_OK;
bad_items:
  free_list(items, n_items);
bad_value:
  free(parts);
  return bad(err, key, origin, value, "expected partition numbers and ranges", "0,2,5-7");
}

static esr_code set_instance(esr_config *cfg, const char *key, const char *value, const char *origin,
                             esr_error *err) {
  char buf[64];
  snprintf(buf, sizeof buf, "%s", value);
  char *slash = strchr(buf, '/');
  int i, n;
  if (!slash) goto fail;
  *slash = '\0';
  if (parse_int(buf, 0, 100000, &i) || parse_int(slash + 1, 1, 100000, &n) || i >= n) goto fail;
  cfg->instance_index = i;
  cfg->instance_count = n;
  return ESR_E_OK;
fail:
  return bad(err, key, origin, value, "expected INDEX/COUNT with 0 <= INDEX < COUNT (pod ordinal / replicas)",
             "2/4");
}

static esr_code set_log_level(esr_config *cfg, const char *key, const char *value, const char *origin,
                              esr_error *err) {
  int level = esr_log_level_parse(value);
  if (level < 0) return bad(err, key, origin, value, "expected debug, info, warn or error", "info");
  cfg->log_level = level;
  return ESR_E_OK;
}

static esr_code set_log_format(esr_config *cfg, const char *key, const char *value, const char *origin,
                               esr_error *err) {
  if (strcmp(value, "json") == 0)
    cfg->log_format = ESR_LOG_JSON;
  else if (strcmp(value, "text") == 0)
    cfg->log_format = ESR_LOG_TEXT;
  else if (strcmp(value, "auto") == 0)
    cfg->log_format = ESR_LOG_AUTO;
  else
    return bad(err, key, origin, value, "expected json, text or auto", "json");
  return ESR_E_OK;
}

static const key_spec KEYS[] = {
    {"topics", set_topics, 1, NULL, "ledger", "source topics, comma-separated"},
    {"state.dir", set_state_dir, 1, NULL, "/var/lib/esr", "directory of the partition databases (<topic>-<p>.db)"},
    {"handlers", set_handlers, 1, NULL, "/usr/lib/esr/ledger.so", "handler plugins (.so paths), comma-separated"},
    {"dlq.topic", set_dlq_topic, 1, NULL, "ledger.dlq", "dead-letter topic for events that cannot be applied"},
    {"batch.max.events", set_batch_events, 0, "1000", "1000", "events per partition per SQLite transaction"},
    {"batch.max.ms", set_batch_ms, 0, "100", "100",
     "longest time a partition's batch stays open while the worker keeps up (up to 10x while it catches up a backlog; "
     "an idle worker commits at once)"},
    {"assignment", set_assignment, 0, "group", "static",
     "group (Kafka consumer group, needs kafka.group.id) or static (partitions/instance, no group protocol)"},
    {"partitions", set_partitions, 0, NULL, "0,2,5-7", "static assignment: the partitions this worker owns"},
    {"instance", set_instance, 0, NULL, "2/4",
     "static assignment: INDEX/COUNT, owns every partition p with p % COUNT == INDEX"},
    {"apply.threads", set_threads, 0, "auto", "4",
     "threads applying partitions in parallel (each partition owned by one thread); auto: one per CPU"},
    {"offsets.commit.sync", set_commit_sync, 0, "false", "false",
     "true: commit the Kafka group offset synchronously after every SQLite commit (costly; the resume position is "
     "SQLite's either way)"},
    {"checkpoint.dir", set_cp_dir, 0, "<state.dir>/checkpoints", "/var/lib/esr/checkpoints",
     "local checkpoints: <dir>/<topic>-<partition>/<next_offset>.db and .json"},
    {"checkpoint.interval.events", set_cp_events, 0, "1000000", "1000000",
     "checkpoint a partition after this many events (0: not by count)"},
    {"checkpoint.interval.ms", set_cp_ms, 0, "600000", "600000",
     "checkpoint a changed partition after this long (0: not by time)"},
    {"checkpoint.keep", set_cp_keep, 0, "3", "3", "checkpoints kept per partition, locally and in the store"},
    {"checkpoint.on.release", set_cp_release, 0, "true", "true",
     "checkpoint a changed partition before releasing it (revocation, shutdown), so its next owner replays little"},
    {"checkpoint.store", set_cp_store, 0, NULL, "s3://esr-checkpoints/ledger",
     "remote checkpoint store: file:///path (shared volume) or s3://bucket[/prefix]; credentials from AWS_* variables"},
    {"checkpoint.s3.endpoint", set_cp_endpoint, 0, NULL, "https://minio.internal:9000",
     "S3-compatible server (path-style); default $AWS_ENDPOINT_URL_S3, else AWS"},
    {"checkpoint.s3.region", set_cp_region, 0, NULL, "eu-west-1", "S3 region; default $AWS_REGION, else us-east-1"},
    {"recovery.check", set_recovery_check, 0, "quick", "quick",
     "quick: PRAGMA quick_check of a live database before resuming from it (a corrupt one is moved aside); none"},
    {"recovery.store.wait.ms", set_store_wait, 0, "500", "500",
     "how long a partition with a valid local state (live database or local checkpoint) waits for the remote "
     "store's listing before it resumes without it (not at all while the store is known to be down)"},
    {"recovery.store.wait.cold.ms", set_store_wait_cold, 0, "30000", "30000",
     "how long a partition without local state waits for the remote store's listing (from the start of its "
     "recovery, and of the store's outage) before it goes on without it"},
    {"schemas.dir", set_schemas_dir, 0, NULL, "/etc/esr/schemas",
     "JSON Schemas (draft-07) of the events' data, <type>.v<version>.json; data that fails goes to the dead-letter "
     "topic with reason schema"},
    {"max.crash.retries", set_crash_retries, 0, "3", "3",
     "restarts of a batch during which the process died before it is re-applied one event per transaction and the "
     "event that kills the process is dead-lettered (reason crash)"},
    {"http.listen", set_http_listen, 0, NULL, "0.0.0.0:9464",
     "address of the HTTP endpoint (/healthz, /readyz, /metrics); empty: none"},
    {"health.stall.ms", set_health_stall, 0, "300000", "300000",
     "/healthz fails when an apply thread's loop has not come round for this long"},
    {"state.aside.keep", set_aside_keep, 0, "3", "3",
     "moved-aside databases (*.corrupt-*, *.old-*) kept in state.dir; older ones are removed"},
    {"state.drop.after.ms", set_drop_after, 0, "600000", "600000",
     "with checkpoint.store: drop the database of a partition released this long ago once the store holds it (0: never)"},
    {"outputs.readback", set_outputs_readback, 0, "true", "true",
     "before a partition publishes after it opened (or after a failed delivery), read its output partitions back from "
     "where it last saw its outputs acknowledged and drop dead letters and emits already there (publish once); "
     "false: publish at least once"},
    {"outputs.readback.max.mb", set_outputs_max_mb, 0, "16", "16",
     "memory of one partition's read-back (keys of its outputs found); a larger read-back runs in windows"},
    {"outputs.transactional", set_outputs_txn, 0, "false", "true",
     "publish dead letters and emits in Kafka transactions, one producer per partition with transactional.id "
     "esr-<kafka.group.id>-<topic>-<partition>, so that a real broker fences a previous owner (needs kafka.group.id; "
     "librdkafka's mock cluster only imitates transactions)"},
    {"sqlite.cache.mb", set_cache_mb, 0, "8", "16", "SQLite page cache per partition database, in MiB"},
    {"log.level", set_log_level, 0, "info", "debug", "debug, info, warn or error"},
    {"log.format", set_log_format, 0, "auto", "json", "json, text, or auto (text on a terminal, json otherwise)"},
};
#define N_KEYS (sizeof KEYS / sizeof KEYS[0])

/* A default that is a value (not "<state.dir>/checkpoints", which describes one derived later). */
static int settable_default(const key_spec *k) { return k->def && k->def[0] != '<'; }

esr_config *esr_config_new(void) {
  esr_config *cfg = calloc(1, sizeof *cfg);
  if (!cfg) return NULL;
  /* Every default comes from the table, through the key's own setter: one place, parsed as a user's value is. */
  for (size_t i = 0; i < N_KEYS; i++) {
    if (!settable_default(&KEYS[i])) continue;
    if (KEYS[i].set(cfg, KEYS[i].name, KEYS[i].def, "default", NULL) != ESR_E_OK) {
      esr_config_free(cfg); /* out of memory, or a default its own setter refuses (a bug the unit tests catch) */
      return NULL;
    }
  }
  return cfg;
}

void esr_config_free(esr_config *cfg) {
  if (!cfg) return;
  free_list(cfg->topics, cfg->n_topics);
  free_list(cfg->handlers, cfg->n_handlers);
  free(cfg->state_dir);
  free(cfg->dlq_topic);
  free(cfg->partitions);
  free(cfg->checkpoint_dir);
  free(cfg->schemas_dir);
  free(cfg->http_listen);
  free(cfg->checkpoint_store);
  free(cfg->checkpoint_s3_endpoint);
  free(cfg->checkpoint_s3_region);
  for (size_t i = 0; i < cfg->n_kafka; i++) {
    free(cfg->kafka[i].key);
    free(cfg->kafka[i].value);
  }
  free(cfg->kafka);
  for (size_t i = 0; i < cfg->n_handler_opts; i++) {
    free(cfg->handler_opts[i].key);
    free(cfg->handler_opts[i].value);
  }
  free(cfg->handler_opts);
  free(cfg);
}

int esr_config_key_is_secret(const char *key) {
  if (!key) return 1;
  if (strncmp(key, "handler.", 8) == 0) return 1;
  if (strncmp(key, "kafka.", 6) == 0) {
    /* librdkafka's secrets: sasl.password, ssl.key.password, ssl.keystore.password, ssl.key.pem,
     * sasl.oauthbearer.client.secret, sasl.oauthbearer.config (it may carry a client secret or extensions). */
    static const char *const words[] = {"password", "secret", "key", "token", "credential", "oauthbearer.config",
                                        NULL};
    for (int i = 0; words[i]; i++)
      if (strcasestr(key + 6, words[i])) return 1;
    return 0;
  }
  return find_key(key) == NULL; /* esr's own keys hold no secrets; a key esr does not know might */
}

#define MASK "***"
void esr_config_mask(char *text, size_t cap, const char *secret) {
  if (!text || !secret || cap < sizeof MASK) return;
  size_t n = strlen(secret), m = strlen(MASK);
  if (!n) return;
  for (char *p = strstr(text, secret); p; p = strstr(p + m, secret)) {
    size_t at = (size_t)(p - text), tail = strlen(p + n);
    if (at + m + 1 > cap) { /* not even the mask fits: end the text here */
      *p = '\0';
      return;
    }
    if (at + m + tail + 1 > cap) tail = cap - 1 - at - m;
    memmove(p + m, p + n, tail);
    p[m + tail] = '\0';
    memcpy(p, MASK, m);
  }
}

void esr_config_redact(const esr_config *cfg, char *text, size_t cap) {
  if (!cfg || !text || cap < sizeof MASK) return;
  char key[300];
  for (size_t i = 0; i < cfg->n_kafka; i++) {
    snprintf(key, sizeof key, "kafka.%s", cfg->kafka[i].key);
    if (esr_config_key_is_secret(key)) esr_config_mask(text, cap, cfg->kafka[i].value);
  }
}

static const key_spec *find_key(const char *key) {
  for (size_t i = 0; i < N_KEYS; i++)
    if (strcmp(KEYS[i].name, key) == 0) return &KEYS[i];
  return NULL;
}

/* Levenshtein distance, for "did you mean". */
size_t esr_config_key_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return 99;
  size_t row[65];
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t prev = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t cur = row[j];
      size_t best = prev + (a[i - 1] != b[j - 1]);
      if (row[j] + 1 < best) best = row[j] + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      prev = cur;
    }
  }
  return row[lb];
}

/* Sets `name` in a list of pass-through key/value pairs (librdkafka properties, handler options). */
static esr_code set_kv(esr_kv **list, size_t *n, const char *name, const char *value, esr_error *err) {
  for (size_t i = 0; i < *n; i++) {
    if (strcmp((*list)[i].key, name) == 0) {
      char *v = xstrdup(value);
      if (!v) return esr_error_set(err, ESR_E_NOMEM, 0, "config: out of memory");
      free((*list)[i].value);
      (*list)[i].value = v;
      return ESR_E_OK;
    }
  }
  esr_kv *grown = realloc(*list, (*n + 1) * sizeof *grown);
  if (!grown) return esr_error_set(err, ESR_E_NOMEM, 0, "config: out of memory");
  *list = grown;
  char *k = xstrdup(name), *v = xstrdup(value);
  if (!k || !v) {
    free(k);
    free(v);
    return esr_error_set(err, ESR_E_NOMEM, 0, "config: out of memory");
  }
  (*list)[*n].key = k;
  (*list)[*n].value = v;
  (*n)++;
  return ESR_E_OK;
}

static esr_code set_kafka(esr_config *cfg, const char *name, const char *value, esr_error *err) {
  return set_kv(&cfg->kafka, &cfg->n_kafka, name, value, err);
}

/* handler.<stem>.<key>: kept as "<stem>.<key>" for the registry, which hands each plugin those of its stem. The value
 * is the handler's business (it may be a secret): never echoed. */
static esr_code set_handler_option(esr_config *cfg, const char *name, const char *origin, const char *value,
                                   esr_error *err) {
  const char *dot = strchr(name, '.');
  int ok = dot && dot > name && dot[1];
  for (const char *c = name; ok && *c; c++)
    ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || strchr("._-", *c);
  if (!ok)
    return esr_error_set(err, ESR_E_CONFIG, 0,
                         "config: handler.%s (%s): a handler option is handler.<stem>.<key>, <stem> the plugin file's "
                         "name without .so and <key> of [a-z0-9.], e.g. handler.ledger.v1.currency",
                         name, origin);
  return set_kv(&cfg->handler_opts, &cfg->n_handler_opts, name, value, err);
}

esr_code esr_config_set(esr_config *cfg, const char *key, const char *value, const char *origin, esr_error *err) {
  if (strncmp(key, "kafka.", 6) == 0) {
    if (!key[6]) return esr_error_set(err, ESR_E_CONFIG, 0, "config: 'kafka.' needs a librdkafka property (%s)", origin);
    return set_kafka(cfg, key + 6, value, err);
  }
  if (strncmp(key, "handler.", 8) == 0) return set_handler_option(cfg, key + 8, origin, value, err);
  const key_spec *spec = find_key(key);
  if (spec) return spec->set(cfg, key, value, origin, err);
  const char *best = NULL;
  size_t best_d = 4;
  for (size_t i = 0; i < N_KEYS; i++) {
    size_t d = esr_config_key_distance(key, KEYS[i].name);
    if (d < best_d) {
      best_d = d;
      best = KEYS[i].name;
    }
  }
  if (best)
    return esr_error_set(err, ESR_E_CONFIG, 0, "config: unknown key '%s' (%s): did you mean '%s'?", key, origin, best);
  return esr_error_set(err, ESR_E_CONFIG, 0,
                       "config: unknown key '%s' (%s): see 'esr run --help' for the keys; librdkafka properties "
                       "take the prefix 'kafka.'",
                       key, origin);
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  char *e = s + strlen(s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) e--;
  *e = '\0';
  return s;
}

esr_code esr_config_load_file(esr_config *cfg, const char *path, esr_error *err) {
  FILE *f = fopen(path, "r");
  if (!f)
    return esr_error_set(err, ESR_E_CONFIG, errno, "config: cannot open %s: %s; pass an existing file to --config",
                         path, strerror(errno));
  char line[8192];
  int lineno = 0;
  esr_code rc = ESR_E_OK;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    char origin[300];
    snprintf(origin, sizeof origin, "%s:%d", path, lineno);
    if (!strchr(line, '\n') && !feof(f)) {
      rc = esr_error_set(err, ESR_E_CONFIG, 0, "config: line too long (%s): keep lines under 8 KiB", origin);
      break;
    }
    /* '#' starts a comment at the start of a line or after a blank, so values like passwords may contain '#'. */
    for (char *h = line; (h = strchr(h, '#')); h++) {
      if (h == line || h[-1] == ' ' || h[-1] == '\t') {
        *h = '\0';
        break;
      }
    }
    char *s = trim(line);
    if (!*s) continue;
    char *eq = strchr(s, '=');
    if (!eq) { /* not quoted: a line that lost its '=' may hold a secret */
      rc = esr_error_set(err, ESR_E_CONFIG, 0,
                         "config: line %s is not 'key = value' (its text is not shown: it may hold a secret); write "
                         "it as key = value, or start it with '#'",
                         origin);
      break;
    }
    *eq = '\0';
    char *key = trim(s), *value = trim(eq + 1);
    if (!*key) {
      rc = esr_error_set(err, ESR_E_CONFIG, 0, "config: missing key before '=' (%s)", origin);
      break;
    }
    rc = esr_config_set(cfg, key, value, origin, err);
    if (rc != ESR_E_OK) break;
  }
  fclose(f);
  return rc;
}

/* ESR_STATE_DIR -> state.dir, ESR_KAFKA_GROUP_ID -> kafka.group.id (esr and librdkafka keys use no '_'). */
static void env_to_key(const char *name, size_t len, char *out, size_t cap) {
  size_t j = 0;
  for (size_t i = 4; i < len && j + 1 < cap; i++) out[j++] = name[i] == '_' ? '.' : (char)tolower((unsigned char)name[i]);
  out[j] = '\0';
}

esr_code esr_config_apply_env(esr_config *cfg, char *const *envp, esr_error *err) {
  if (!envp) return ESR_E_OK;
  for (char *const *e = envp; *e; e++) {
    if (strncmp(*e, "ESR_", 4) != 0) continue;
    const char *eq = strchr(*e, '=');
    if (!eq) continue;
    char key[256];
    env_to_key(*e, (size_t)(eq - *e), key, sizeof key);
    /* Only keys esr knows: other ESR_ variables (for tools and tests) are not configuration. */
    if (strncmp(key, "kafka.", 6) != 0 && strncmp(key, "handler.", 8) != 0 && !find_key(key)) continue;
    char origin[300];
    snprintf(origin, sizeof origin, "environment %.*s", (int)(eq - *e), *e);
    esr_code rc = esr_config_set(cfg, key, eq + 1, origin, err);
    if (rc != ESR_E_OK) return rc;
  }
  return ESR_E_OK;
}

static esr_code missing(esr_error *err, const key_spec *spec) {
  char env[128] = "ESR_";
  size_t j = 4;
  for (const char *c = spec->name; *c && j + 1 < sizeof env; c++) env[j++] = *c == '.' ? '_' : (char)toupper(*c);
  env[j] = '\0';
  return esr_error_set(err, ESR_E_CONFIG, 0, "config: %s is required (%s): add '%s = %s' to the file or set %s",
                       spec->name, spec->help, spec->name, spec->example, env);
}

esr_code esr_config_validate(const esr_config *cfg, esr_error *err) {
  if (!cfg->topics) return missing(err, find_key("topics"));
  if (!cfg->state_dir) return missing(err, find_key("state.dir"));
  if (!cfg->handlers) return missing(err, find_key("handlers"));
  if (!cfg->dlq_topic) return missing(err, find_key("dlq.topic"));
  if (!esr_config_kafka_get(cfg, "bootstrap.servers"))
    return esr_error_set(err, ESR_E_CONFIG, 0,
                         "config: kafka.bootstrap.servers is required: add 'kafka.bootstrap.servers = host:9092' or "
                         "set ESR_KAFKA_BOOTSTRAP_SERVERS");
  for (size_t i = 0; i < cfg->n_topics; i++)
    if (strcmp(cfg->topics[i], cfg->dlq_topic) == 0)
      return esr_error_set(err, ESR_E_CONFIG, 0,
                           "config: dlq.topic = '%s' is also a source topic: dead letters would be consumed again; "
                           "choose another, e.g. dlq.topic = %s.dlq",
                           cfg->dlq_topic, cfg->dlq_topic);
  if (cfg->outputs_transactional && !esr_config_kafka_get(cfg, "group.id"))
    return esr_error_set(err, ESR_E_CONFIG, 0,
                         "config: outputs.transactional = true needs kafka.group.id (the transactional.id of each "
                         "partition is esr-<group.id>-<topic>-<partition>): add 'kafka.group.id = esr-ledger'");
  if (cfg->assignment == ESR_ASSIGN_GROUP) {
    if (!esr_config_kafka_get(cfg, "group.id"))
      return esr_error_set(err, ESR_E_CONFIG, 0,
                           "config: kafka.group.id is required with assignment = group: add 'kafka.group.id = "
                           "esr-ledger', or use assignment = static with partitions or instance");
    if (cfg->partitions || cfg->instance_count)
      return esr_error_set(err, ESR_E_CONFIG, 0,
                           "config: %s is only for assignment = static: remove it, or set assignment = static",
                           cfg->partitions ? "partitions" : "instance");
  } else {
    if (!cfg->partitions && !cfg->instance_count)
      return esr_error_set(err, ESR_E_CONFIG, 0,
                           "config: assignment = static needs partitions (e.g. partitions = 0-3) or instance "
                           "(e.g. instance = 0/2)");
    if (cfg->partitions && cfg->instance_count)
      return esr_error_set(err, ESR_E_CONFIG, 0,
                           "config: partitions and instance both set: keep one of them for assignment = static");
  }
  return ESR_E_OK;
}

esr_code esr_config_load(const char *path, char *const *envp, esr_config **out, esr_error *err) {
  *out = NULL;
  esr_config *cfg = esr_config_new();
  if (!cfg) return esr_error_set(err, ESR_E_NOMEM, 0, "config: out of memory");
  esr_code rc = ESR_E_OK;
  if (path) rc = esr_config_load_file(cfg, path, err);
  if (rc == ESR_E_OK) rc = esr_config_apply_env(cfg, envp, err);
  if (rc == ESR_E_OK) rc = esr_config_validate(cfg, err);
  if (rc != ESR_E_OK) {
    esr_config_free(cfg);
    return rc;
  }
  *out = cfg;
  return ESR_E_OK;
}

const char *esr_config_kafka_get(const esr_config *cfg, const char *key) {
  for (size_t i = 0; i < cfg->n_kafka; i++)
    if (strcmp(cfg->kafka[i].key, key) == 0) return cfg->kafka[i].value;
  return NULL;
}

int esr_config_static_owns(const esr_config *cfg, int p) {
  if (cfg->instance_count) return p % cfg->instance_count == cfg->instance_index;
  return bsearch(&p, cfg->partitions, cfg->n_partitions, sizeof(int), cmp_int) != NULL;
}

/* Text in a Markdown table cell: '<' and '>' would read as HTML, '|' as a cell boundary. */
static void md_text(FILE *out, const char *s) {
  for (; *s; s++) {
    if (*s == '<')
      fputs("&lt;", out);
    else if (*s == '>')
      fputs("&gt;", out);
    else if (*s == '|')
      fputs("\\|", out);
    else
      fputc(*s, out);
  }
}

void esr_config_print_keys_markdown(FILE *out) {
  fprintf(out, "| key | default | meaning |\n| --- | --- | --- |\n");
  for (size_t i = 0; i < N_KEYS; i++) {
    const key_spec *k = &KEYS[i];
    fprintf(out, "| `%s` | ", k->name);
    if (k->required)
      fputs("(required)", out);
    else if (k->def)
      fprintf(out, "`%s`", k->def);
    fputs(" | ", out);
    md_text(out, k->help);
    fputs(" |\n", out);
  }
  fprintf(out, "| `handler.<stem>.<key>` | | an option of the handler plugin &lt;stem&gt;.so, given to its init, which "
               "refuses options it does not know; never printed |\n");
  fprintf(out, "| `kafka.*` | | any librdkafka property, passed through unchanged (secrets never printed) |\n");
}

void esr_config_print_keys(FILE *out) {
  for (size_t i = 0; i < N_KEYS; i++) {
    const key_spec *k = &KEYS[i];
    fprintf(out, "  %-18s %s%s%s%s\n", k->name, k->help, k->required ? " (required)" : "", k->def ? "; default " : "",
            k->def ? k->def : "");
  }
  fprintf(out, "  %-18s any librdkafka property, e.g. kafka.bootstrap.servers, kafka.group.id (required in group "
               "mode)\n",
          "kafka.*");
}
