/* esr/config.h — the worker's configuration: `key = value` lines, overridden by ESR_* environment variables.
 *
 * A '#' starts a comment at the start of a line or after a blank ("a#b" is a value, "a #b" is "a").
 * Every esr key is declared once in a table (name, kind, default, help) that drives parsing, validation, environment
 * overrides (`state.dir` <-> ESR_STATE_DIR) and `esr run --help`. Keys starting with `kafka.` are kept verbatim (without
 * the prefix) for librdkafka, which validates them when the clients are built; keys `handler.<stem>.<key>` are
 * options of the handler plugin whose file is <stem>.so, handed to its init (esr/handler.h), which validates them; ESR_KAFKA_FETCH_MAX_BYTES sets
 * kafka.fetch.max.bytes. An unknown key, a bad value or a missing required key is an ESR_E_CONFIG error whose message is
 * one line naming the key and how to fix it. Messages never quote the value of a key that may hold a secret
 * (esr_config_key_is_secret), nor a line that is not `key = value`. The config owns all its strings; esr_config_free
 * releases them.
 */
#ifndef ESR_CONFIG_H
#define ESR_CONFIG_H

#include <stdio.h>

#include "error.h"
#include "log.h"

typedef enum esr_assignment { ESR_ASSIGN_GROUP = 0, ESR_ASSIGN_STATIC } esr_assignment;

typedef struct esr_kv {
  char *key;
  char *value;
} esr_kv;

typedef struct esr_config {
  char **topics;
  size_t n_topics;
  char *state_dir;
  char **handlers;
  size_t n_handlers;
  char *dlq_topic;
  int batch_max_events;
  int batch_max_ms;
  esr_assignment assignment;
  int *partitions; /* static assignment: explicit partitions (sorted, unique), or NULL */
  size_t n_partitions;
  int instance_index; /* static assignment by ordinal: partitions p with p % instance_count == instance_index */
  int instance_count; /* 0 when not set */
  int log_level;
  esr_log_format log_format;
  int sqlite_cache_mb;
  int apply_threads; /* 0: one per online CPU */
  int offsets_commit_sync; /* commit Kafka group offsets synchronously after every SQLite commit (slow; for tools) */
  char *checkpoint_dir;    /* NULL: <state.dir>/checkpoints */
  int checkpoint_interval_events; /* 0: no checkpoint by event count */
  int checkpoint_interval_ms;     /* 0: no checkpoint by time */
  int checkpoint_keep;
  int checkpoint_on_release; /* checkpoint a changed partition before it is released (revocation, shutdown) */
  char *checkpoint_store;    /* file:///path or s3://bucket/prefix, or NULL */
  char *checkpoint_s3_endpoint;
  char *checkpoint_s3_region;
  int recovery_quick_check;
  int recovery_store_wait_ms;      /* a partition with a valid local state waits this long for the remote store */
  int recovery_store_wait_cold_ms; /* ... one without local state this long */
  int max_crash_retries;
  char *http_listen;      /* host:port of /healthz, /readyz, /metrics, or NULL (no HTTP server) */
  int health_stall_ms;    /* /healthz fails once an apply thread's loop has not come round for this long */
  int state_aside_keep;   /* moved-aside databases (*.corrupt-*, *.old-*) kept in state.dir; older ones are removed */
  int state_drop_after_ms; /* with checkpoint.store: drop a released partition's database this long after (0: never) */
  char *schemas_dir; /* JSON Schemas <type>.v<version>.json of the events' data, or NULL */
  int outputs_readback;        /* publish once: read the outputs back before publishing (esr/outputs.h) */
  int outputs_readback_max_mb; /* the read-back's key set, per partition */
  int outputs_transactional;   /* publish in Kafka transactions, a transactional.id per partition */
  esr_kv *kafka; /* librdkafka properties, key without "kafka." */
  size_t n_kafka;
  esr_kv *handler_opts; /* handler options, key "<stem>.<key>" without "handler." (esr/registry.h) */
  size_t n_handler_opts;
} esr_config;

/* A config holding the defaults. NULL only when out of memory. */
esr_config *esr_config_new(void);
void esr_config_free(esr_config *cfg);

/* Sets one key from text, validating it. `origin` (e.g. "worker.conf:12" or "ESR_TOPICS") goes into messages. */
esr_code esr_config_set(esr_config *cfg, const char *key, const char *value, const char *origin, esr_error *err);
/* Reads `key = value` lines; `#` starts a comment; blank lines are skipped. */
esr_code esr_config_load_file(esr_config *cfg, const char *path, esr_error *err);
/* Applies ESR_* variables from `envp` (a NULL-terminated "NAME=value" array, e.g. environ). */
esr_code esr_config_apply_env(esr_config *cfg, char *const *envp, esr_error *err);
/* Checks required keys and keys that depend on each other. */
esr_code esr_config_validate(const esr_config *cfg, esr_error *err);
/* File, then environment, then validation: the whole start-up sequence. */
esr_code esr_config_load(const char *path, char *const *envp, esr_config **out, esr_error *err);

/* The librdkafka value for `key` (without "kafka."), or NULL. */
const char *esr_config_kafka_get(const esr_config *cfg, const char *key);
/* Whether partition `p` belongs to this worker under static assignment. */
int esr_config_static_owns(const esr_config *cfg, int p);
/* Whether the value of `key` (the full name: "kafka.sasl.password") may be a secret, so that no message may quote it:
 * a kafka.* key whose name holds "password", "secret", "key", "token" or "credential" (or sasl.oauthbearer.config),
 * any handler.* option, and any key esr does not know (a misspelled secret key). */
int esr_config_key_is_secret(const char *key);
/* Replaces in `text` (NUL-terminated, cap bytes) every occurrence of the value of a key of cfg that may hold a secret
 * with "***": for messages that quote other libraries' errors (librdkafka's). */
void esr_config_redact(const esr_config *cfg, char *text, size_t cap);
/* Replaces in `text` (NUL-terminated, cap bytes) every occurrence of `secret` with "***" (what no longer fits is cut). */
void esr_config_mask(char *text, size_t cap, const char *secret);
/* Levenshtein distance between two names (99 when either is over 64 characters), for "did you mean". */
size_t esr_config_key_distance(const char *a, const char *b);
/* Writes the table of keys (name, default, help) for --help. */
void esr_config_print_keys(FILE *out);
/* The same as a Markdown table (key | default | meaning): the README's table is this output. */
void esr_config_print_keys_markdown(FILE *out);

#endif
