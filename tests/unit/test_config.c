/* test_config.c — esr/config.h (key = value files, defaults, every key's validation, environment overrides, static
 * assignment, consistency checks) and esr/kafka.h (managed and unknown librdkafka properties). No network: building a
 * librdkafka conf does not connect. No message quotes a value that may be a secret (issue 10, item 6). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>

#include "config.h"
#include "kafka.h"
#include "log.h"
#include "unit_util.h"

typedef struct fixture {
  char *dir;
  char path[4200];
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f || !(f->dir = tu_mkdtemp())) return -1;
  snprintf(f->path, sizeof f->path, "%s/worker.conf", f->dir);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  tu_rmrf(f->dir);
  free(f->dir);
  free(f);
  return 0;
}

static char *const NO_ENV[] = {NULL};

#define BASE_TOPICS "topics = ledger\n"
#define BASE_STATE "state.dir = /var/lib/esr\n"
#define BASE_HANDLERS "handlers = /usr/lib/esr/ledger.so\n"
#define BASE_DLQ "dlq.topic = ledger.dlq\n"
#define BASE_BOOT "kafka.bootstrap.servers = 127.0.0.1:9092\n"
#define BASE_GROUP "kafka.group.id = esr-ledger\n"
#define BASE BASE_TOPICS BASE_STATE BASE_HANDLERS BASE_DLQ BASE_BOOT BASE_GROUP

/* Writes `text` to the fixture's file and loads it (file, env, validation). */
static esr_code load_text(fixture *f, const char *text, char *const *envp, esr_config **cfg, esr_error *err) {
  assert_int_equal(tu_write_text(f->path, text), 0);
  return esr_config_load(f->path, envp, cfg, err);
}

static void parses_lines_comments_blanks_and_whitespace(void **state) {
  fixture *f = *state;
  const char *text = "# esr worker configuration\n"
                     "\n"
                     "   \t\n"
                     "topics =  ledger , orders  # two topics\n"
                     "\tstate.dir=/var/lib/esr\r\n"
                     "handlers = /a/ledger.so,/b/orders.so\n"
                     "  dlq.topic   =   ledger.dlq  \n"
                     "   # an indented comment = not a key\n"
                     "batch.max.events = 50\n"
                     "batch.max.ms=250\n"
                     "kafka.bootstrap.servers = h1:9092,h2:9092\n"
                     "kafka.group.id = esr-ledger\n"
                     "log.level = debug\n"
                     "log.format = text\n"
                     "sqlite.cache.mb = 16"; /* no newline at the end */
  esr_config *cfg = NULL;
  esr_error err = {0};
  assert_int_equal(load_text(f, text, NO_ENV, &cfg, &err), ESR_E_OK);
  assert_non_null(cfg);
  assert_int_equal(cfg->n_topics, 2);
  assert_string_equal(cfg->topics[0], "ledger");
  assert_string_equal(cfg->topics[1], "orders");
  assert_string_equal(cfg->state_dir, "/var/lib/esr");
  assert_int_equal(cfg->n_handlers, 2);
  assert_string_equal(cfg->handlers[0], "/a/ledger.so");
  assert_string_equal(cfg->handlers[1], "/b/orders.so");
  assert_string_equal(cfg->dlq_topic, "ledger.dlq");
  assert_int_equal(cfg->batch_max_events, 50);
  assert_int_equal(cfg->batch_max_ms, 250);
  assert_int_equal(cfg->log_level, ESR_LOG_DEBUG);
  assert_int_equal(cfg->log_format, ESR_LOG_TEXT);
  assert_int_equal(cfg->sqlite_cache_mb, 16);
  assert_string_equal(esr_config_kafka_get(cfg, "bootstrap.servers"), "h1:9092,h2:9092");
  assert_string_equal(esr_config_kafka_get(cfg, "group.id"), "esr-ledger");
  assert_null(esr_config_kafka_get(cfg, "kafka.group.id"));
  assert_null(esr_config_kafka_get(cfg, "client.id"));
  esr_config_free(cfg);
}

static void defaults(void **state) {
  esr_config *cfg = esr_config_new();
  assert_non_null(cfg);
  assert_null(cfg->topics);
  assert_null(cfg->state_dir);
  assert_null(cfg->handlers);
  assert_null(cfg->dlq_topic);
  assert_int_equal(cfg->batch_max_events, 1000);
  assert_int_equal(cfg->batch_max_ms, 100);
  assert_int_equal(cfg->assignment, ESR_ASSIGN_GROUP);
  assert_null(cfg->partitions);
  assert_int_equal(cfg->instance_count, 0);
  assert_int_equal(cfg->log_level, ESR_LOG_INFO);
  assert_int_equal(cfg->log_format, ESR_LOG_AUTO);
  assert_int_equal(cfg->sqlite_cache_mb, 8);
  assert_int_equal(cfg->n_kafka, 0);
  assert_int_equal(cfg->outputs_readback, 1);
  assert_int_equal(cfg->outputs_readback_max_mb, 16);
  assert_int_equal(cfg->outputs_transactional, 0);
  esr_config_free(cfg);
  esr_config_free(NULL);

  /* a file with only the required keys keeps every default */
  fixture *f = *state;
  esr_error err = {0};
  assert_int_equal(load_text(f, BASE, NO_ENV, &cfg, &err), ESR_E_OK);
  assert_int_equal(cfg->batch_max_events, 1000);
  assert_int_equal(cfg->batch_max_ms, 100);
  assert_int_equal(cfg->assignment, ESR_ASSIGN_GROUP);
  assert_int_equal(cfg->sqlite_cache_mb, 8);
  esr_config_free(cfg);
}

typedef struct bad_case {
  const char *key, *value;
} bad_case;

static const bad_case BAD_VALUES[] = {
    {"topics", ""},
    {"topics", "a,,b"},
    {"topics", "ledger,"},
    {"topics", "bad topic"},
    {"topics", "a/b"},
    {"state.dir", ""},
    {"handlers", ""},
    {"handlers", "a.so,"},
    {"dlq.topic", ""},
    {"batch.max.events", "0"},
    {"batch.max.events", "-1"},
    {"batch.max.events", "1000001"},
    {"batch.max.events", "12abc"},
    {"batch.max.events", "abc"},
    {"batch.max.events", "1.5"},
    {"batch.max.events", "99999999999999999999"},
    {"batch.max.ms", "0"},
    {"batch.max.ms", "60001"},
    {"batch.max.ms", "fast"},
    {"assignment", "grouped"},
    {"assignment", "Static"},
    {"assignment", ""},
    {"partitions", ""},
    {"partitions", "x"},
    {"partitions", "3-1"},
    {"partitions", "-1"},
    {"partitions", "1,,2"},
    {"partitions", "1-"},
    {"partitions", "0-200000"},
    {"instance", ""},
    {"instance", "2"},
    {"instance", "4/4"},
    {"instance", "5/4"},
    {"instance", "-1/4"},
    {"instance", "a/4"},
    {"instance", "1/0"},
    {"instance", "1/x"},
    {"sqlite.cache.mb", "0"},
    {"sqlite.cache.mb", "65537"},
    {"sqlite.cache.mb", "big"},
    {"outputs.readback", "yes"},
    {"outputs.readback.max.mb", "0"},
    {"outputs.transactional", "1"},
    {"log.level", "loud"},
    {"log.level", ""},
    {"log.format", "xml"},
    {"log.format", ""},
};

static void every_bad_value_names_key_and_line(void **state) {
  fixture *f = *state;
  char origin[4300];
  snprintf(origin, sizeof origin, "%s:3", f->path);
  for (size_t i = 0; i < sizeof BAD_VALUES / sizeof *BAD_VALUES; i++) {
    const bad_case *c = &BAD_VALUES[i];
    char text[512];
    snprintf(text, sizeof text, "# line 1\n\n%s = %s\n", c->key, c->value);
    assert_int_equal(tu_write_text(f->path, text), 0);
    esr_config *cfg = esr_config_new();
    esr_error err = {0};
    esr_code rc = esr_config_load_file(cfg, f->path, &err);
    if (rc != ESR_E_CONFIG) fail_msg("%s = '%s' was accepted (rc %d)", c->key, c->value, rc);
    assert_int_equal(err.code, ESR_E_CONFIG);
    assert_contains(err.msg, c->key);
    assert_contains(err.msg, origin);
    assert_null(strchr(err.msg, '\n')); /* one line */
    esr_config_free(cfg);
  }
}

static void bad_value_keeps_previous_value(void **state) {
  esr_config *cfg = esr_config_new();
  esr_error err = {0};
  assert_int_equal(esr_config_set(cfg, "batch.max.events", "42", "test", &err), ESR_E_OK);
  assert_int_equal(esr_config_set(cfg, "batch.max.events", "0", "test", &err), ESR_E_CONFIG);
  assert_int_equal(cfg->batch_max_events, 42);
  assert_int_equal(esr_config_set(cfg, "topics", "a,b", "test", &err), ESR_E_OK);
  assert_int_equal(esr_config_set(cfg, "topics", "a,,b", "test", &err), ESR_E_CONFIG);
  assert_int_equal(cfg->n_topics, 2);
  esr_config_free(cfg);
}

static void value_limits_accepted(void **state) {
  esr_config *cfg = esr_config_new();
  esr_error err = {0};
  assert_int_equal(esr_config_set(cfg, "batch.max.events", "1", "t", &err), ESR_E_OK);
  assert_int_equal(esr_config_set(cfg, "batch.max.events", "1000000", "t", &err), ESR_E_OK);
  assert_int_equal(cfg->batch_max_events, 1000000);
  assert_int_equal(esr_config_set(cfg, "batch.max.ms", "60000", "t", &err), ESR_E_OK);
  assert_int_equal(esr_config_set(cfg, "sqlite.cache.mb", "65536", "t", &err), ESR_E_OK);
  assert_int_equal(esr_config_set(cfg, "log.level", "warn", "t", &err), ESR_E_OK);
  assert_int_equal(cfg->log_level, ESR_LOG_WARN);
  assert_int_equal(esr_config_set(cfg, "log.format", "json", "t", &err), ESR_E_OK);
  assert_int_equal(cfg->log_format, ESR_LOG_JSON);
  assert_int_equal(esr_config_set(cfg, "assignment", "static", "t", &err), ESR_E_OK);
  assert_int_equal(cfg->assignment, ESR_ASSIGN_STATIC);
  assert_int_equal(esr_config_set(cfg, "topics", "a.b_c-D9", "t", &err), ESR_E_OK);
  esr_config_free(cfg);
}

static void malformed_lines(void **state) {
  fixture *f = *state;
  esr_config *cfg = NULL;
  esr_error err = {0};
  char origin[4300];
  assert_int_equal(load_text(f, BASE_TOPICS "just some words\n", NO_ENV, &cfg, &err), ESR_E_CONFIG);
  assert_null(cfg);
  snprintf(origin, sizeof origin, "%s:2", f->path);
  assert_contains(err.msg, origin);
  assert_contains(err.msg, "key = value");
  assert_int_equal(load_text(f, "= value\n", NO_ENV, &cfg, &err), ESR_E_CONFIG);
  assert_contains(err.msg, "missing key");
  assert_int_equal(load_text(f, "kafka. = x\n", NO_ENV, &cfg, &err), ESR_E_CONFIG);
  assert_contains(err.msg, "kafka.");
}

static void missing_file(void **state) {
  fixture *f = *state;
  char path[4300];
  snprintf(path, sizeof path, "%s/does-not-exist.conf", f->dir);
  esr_config *cfg = (esr_config *)1;
  esr_error err = {0};
  assert_int_equal(esr_config_load(path, NO_ENV, &cfg, &err), ESR_E_CONFIG);
  assert_null(cfg);
  assert_contains(err.msg, path);
}

static void unknown_key_suggests(void **state) {
  fixture *f = *state;
  static const struct {
    const char *typo, *meant;
  } cases[] = {{"topic", "topics"},
               {"stat.dir", "state.dir"},
               {"state_dir", "state.dir"},
               {"batch.max.event", "batch.max.events"},
               {"dlq.topics", "dlq.topic"},
               {"log.levl", "log.level"}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char text[200], want[200], origin[4300];
    snprintf(text, sizeof text, "%s = x\n", cases[i].typo);
    esr_config *cfg = NULL;
    esr_error err = {0};
    assert_int_equal(load_text(f, text, NO_ENV, &cfg, &err), ESR_E_CONFIG);
    snprintf(want, sizeof want, "'%s'", cases[i].typo);
    assert_contains(err.msg, want);
    snprintf(want, sizeof want, "did you mean '%s'", cases[i].meant);
    assert_contains(err.msg, want);
    snprintf(origin, sizeof origin, "%s:1", f->path);
    assert_contains(err.msg, origin);
  }
  /* nothing close: no suggestion, but a pointer to the list of keys */
  esr_config *cfg = NULL;
  esr_error err = {0};
  assert_int_equal(load_text(f, "completely.unrelated.thing = 1\n", NO_ENV, &cfg, &err), ESR_E_CONFIG);
  assert_contains(err.msg, "completely.unrelated.thing");
  assert_not_contains(err.msg, "did you mean");
  assert_contains(err.msg, "esr run --help");
}

static void missing_required_names_key_and_env(void **state) {
  fixture *f = *state;
  static const struct {
    const char *text, *key, *env;
  } cases[] = {
      {BASE_STATE BASE_HANDLERS BASE_DLQ BASE_BOOT BASE_GROUP, "topics", "ESR_TOPICS"},
      {BASE_TOPICS BASE_HANDLERS BASE_DLQ BASE_BOOT BASE_GROUP, "state.dir", "ESR_STATE_DIR"},
      {BASE_TOPICS BASE_STATE BASE_DLQ BASE_BOOT BASE_GROUP, "handlers", "ESR_HANDLERS"},
      {BASE_TOPICS BASE_STATE BASE_HANDLERS BASE_BOOT BASE_GROUP, "dlq.topic", "ESR_DLQ_TOPIC"},
      {BASE_TOPICS BASE_STATE BASE_HANDLERS BASE_DLQ BASE_GROUP, "kafka.bootstrap.servers",
       "ESR_KAFKA_BOOTSTRAP_SERVERS"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    esr_config *cfg = NULL;
    esr_error err = {0};
    assert_int_equal(load_text(f, cases[i].text, NO_ENV, &cfg, &err), ESR_E_CONFIG);
    assert_null(cfg);
    assert_contains(err.msg, cases[i].key);
    assert_contains(err.msg, cases[i].env);
    assert_null(strchr(err.msg, '\n'));
  }
  /* group mode needs a group id */
  esr_config *cfg = NULL;
  esr_error err = {0};
  assert_int_equal(load_text(f, BASE_TOPICS BASE_STATE BASE_HANDLERS BASE_DLQ BASE_BOOT, NO_ENV, &cfg, &err),
                   ESR_E_CONFIG);
  assert_contains(err.msg, "kafka.group.id");
}

static void env_overrides_win_over_file(void **state) {
  fixture *f = *state;
  char *envp[] = {"ESR_STATE_DIR=/from/env",
                  "ESR_KAFKA_GROUP_ID=env-group",
                  "ESR_BATCH_MAX_EVENTS=7",
                  "ESR_KAFKA_FETCH_MAX_BYTES=1048576",
                  "ESR_LOG_LEVEL=error",
                  "ESR_TOPICS=t1,t2",
                  NULL};
  esr_config *cfg = NULL;
  esr_error err = {0};
  assert_int_equal(load_text(f, BASE "batch.max.events = 5\nstate.dir = /from/file\n", envp, &cfg, &err), ESR_E_OK);
  assert_string_equal(cfg->state_dir, "/from/env");
  assert_string_equal(esr_config_kafka_get(cfg, "group.id"), "env-group");
  assert_int_equal(cfg->batch_max_events, 7);
  assert_string_equal(esr_config_kafka_get(cfg, "fetch.max.bytes"), "1048576");
  assert_int_equal(cfg->log_level, ESR_LOG_ERROR);
  assert_int_equal(cfg->n_topics, 2);
  assert_string_equal(cfg->topics[1], "t2");
  /* the file's values stay where no variable is set */
  assert_string_equal(cfg->dlq_topic, "ledger.dlq");
  esr_config_free(cfg);
}

static void env_alone_is_enough(void **state) {
  char *envp[] = {"ESR_TOPICS=ledger", "ESR_STATE_DIR=/s", "ESR_HANDLERS=/h.so", "ESR_DLQ_TOPIC=dlq",
                  "ESR_KAFKA_BOOTSTRAP_SERVERS=b:9092", "ESR_KAFKA_GROUP_ID=g", NULL};
  esr_config *cfg = NULL;
  esr_error err = {0};
  assert_int_equal(esr_config_load(NULL, envp, &cfg, &err), ESR_E_OK);
  assert_string_equal(cfg->handlers[0], "/h.so");
  assert_string_equal(esr_config_kafka_get(cfg, "bootstrap.servers"), "b:9092");
  esr_config_free(cfg);
}

static void unrelated_env_ignored(void **state) {
  fixture *f = *state;
  char *envp[] = {"ESR_BIN=/usr/bin/esr",
                  "ESR_FOO=bar",
                  "ESR_=1",
                  "ESR_TEST_PLUGIN_DIR=/x",
                  "ESR_STATE_DIRECTORY=/nope",
                  "ESR_NOEQUALS",
                  "ESRSTATE_DIR=/nope",
                  "STATE_DIR=/nope",
                  "esr_state_dir=/nope",
                  "PATH=/usr/bin",
                  NULL};
  esr_config *cfg = NULL;
  esr_error err = {0};
  assert_int_equal(load_text(f, BASE, envp, &cfg, &err), ESR_E_OK);
  assert_string_equal(cfg->state_dir, "/var/lib/esr");
  assert_int_equal(cfg->n_kafka, 2);
  esr_config_free(cfg);
}

static void bad_env_value_names_variable(void **state) {
  fixture *f = *state;
  char *envp[] = {"ESR_BATCH_MAX_EVENTS=0", NULL};
  esr_config *cfg = NULL;
  esr_error err = {0};
  assert_int_equal(load_text(f, BASE, envp, &cfg, &err), ESR_E_CONFIG);
  assert_null(cfg);
  assert_contains(err.msg, "batch.max.events");
  assert_contains(err.msg, "ESR_BATCH_MAX_EVENTS");
}

static void kafka_keys_kept_verbatim(void **state) {
  esr_config *cfg = esr_config_new();
  esr_error err = {0};
  assert_int_equal(esr_config_set(cfg, "kafka.security.protocol", "SASL_SSL", "t", &err), ESR_E_OK);
  assert_int_equal(esr_config_set(cfg, "kafka.sasl.mechanisms", "SCRAM-SHA-512", "t", &err), ESR_E_OK);
  assert_int_equal(esr_config_set(cfg, "kafka.security.protocol", "SSL", "t", &err), ESR_E_OK); /* last wins */
  assert_int_equal(cfg->n_kafka, 2);
  assert_string_equal(esr_config_kafka_get(cfg, "security.protocol"), "SSL");
  assert_string_equal(esr_config_kafka_get(cfg, "sasl.mechanisms"), "SCRAM-SHA-512");
  esr_config_free(cfg);
}

static void static_partitions_parsed(void **state) {
  fixture *f = *state;
  esr_config *cfg = NULL;
  esr_error err = {0};
  assert_int_equal(load_text(f, BASE_TOPICS BASE_STATE BASE_HANDLERS BASE_DLQ BASE_BOOT
                               "assignment = static\npartitions = 0,2,5-7\n",
                               NO_ENV, &cfg, &err),
                   ESR_E_OK);
  assert_int_equal(cfg->assignment, ESR_ASSIGN_STATIC);
  static const int want[] = {0, 2, 5, 6, 7};
  assert_int_equal(cfg->n_partitions, 5);
  for (int i = 0; i < 5; i++) assert_int_equal(cfg->partitions[i], want[i]);
  for (int p = 0; p < 12; p++) {
    int owned = p == 0 || p == 2 || (p >= 5 && p <= 7);
    if (!!esr_config_static_owns(cfg, p) != owned) fail_msg("partition %d: owned %d", p, !owned);
  }
  esr_config_free(cfg);

  /* unsorted, duplicated, spaced */
  cfg = esr_config_new();
  assert_int_equal(esr_config_set(cfg, "partitions", "7, 2,2 , 0-1,1", "t", &err), ESR_E_OK);
  static const int want2[] = {0, 1, 2, 7};
  assert_int_equal(cfg->n_partitions, 4);
  for (int i = 0; i < 4; i++) assert_int_equal(cfg->partitions[i], want2[i]);
  esr_config_free(cfg);
}

static void static_instance_ownership(void **state) {
  fixture *f = *state;
  esr_config *cfg = NULL;
  esr_error err = {0};
  assert_int_equal(load_text(f, BASE_TOPICS BASE_STATE BASE_HANDLERS BASE_DLQ BASE_BOOT
                               "assignment = static\ninstance = 2/4\n",
                               NO_ENV, &cfg, &err),
                   ESR_E_OK);
  assert_int_equal(cfg->instance_index, 2);
  assert_int_equal(cfg->instance_count, 4);
  for (int p = 0; p < 16; p++) {
    int owned = p % 4 == 2;
    if (!!esr_config_static_owns(cfg, p) != owned) fail_msg("partition %d: owned %d", p, !owned);
  }
  esr_config_free(cfg);
  cfg = esr_config_new();
  assert_int_equal(esr_config_set(cfg, "instance", "0/1", "t", &err), ESR_E_OK);
  assert_true(esr_config_static_owns(cfg, 0));
  assert_true(esr_config_static_owns(cfg, 9));
  esr_config_free(cfg);
}

static void group_static_consistency(void **state) {
  fixture *f = *state;
  static const struct {
    const char *extra, *mention;
  } cases[] = {
      {BASE_GROUP "partitions = 0-3\n", "partitions"},                    /* group mode: partitions not allowed */
      {BASE_GROUP "instance = 0/2\n", "instance"},                        /* group mode: instance not allowed */
      {"assignment = static\n", "partitions"},                            /* static needs one of them */
      {"assignment = static\npartitions = 1\ninstance = 0/2\n", "instance"}, /* not both */
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char text[1024];
    snprintf(text, sizeof text, "%s%s", BASE_TOPICS BASE_STATE BASE_HANDLERS BASE_DLQ BASE_BOOT, cases[i].extra);
    esr_config *cfg = NULL;
    esr_error err = {0};
    if (load_text(f, text, NO_ENV, &cfg, &err) != ESR_E_CONFIG) fail_msg("accepted: %s", cases[i].extra);
    assert_contains(err.msg, cases[i].mention);
  }
  /* static mode needs no group id */
  esr_config *cfg = NULL;
  esr_error err = {0};
  assert_int_equal(load_text(f, BASE_TOPICS BASE_STATE BASE_HANDLERS BASE_DLQ BASE_BOOT
                               "assignment = static\npartitions = 3\n",
                               NO_ENV, &cfg, &err),
                   ESR_E_OK);
  esr_config_free(cfg);
}

/* Transactions name each partition's transactional.id after the group: without kafka.group.id they are refused at
 * start, whatever the assignment. */
static void outputs_transactional_needs_a_group_id(void **state) {
  fixture *f = *state;
  esr_config *cfg = NULL;
  esr_error err = {0};
  assert_int_equal(load_text(f, BASE_TOPICS BASE_STATE BASE_HANDLERS BASE_DLQ BASE_BOOT
                             "assignment = static\npartitions = 0\noutputs.transactional = true\n",
                             NO_ENV, &cfg, &err),
                   ESR_E_CONFIG);
  assert_null(cfg);
  assert_contains(err.msg, "outputs.transactional");
  assert_contains(err.msg, "kafka.group.id");
  assert_int_equal(load_text(f, BASE "outputs.transactional = true\noutputs.readback = false\n"
                                "outputs.readback.max.mb = 64\n",
                             NO_ENV, &cfg, &err),
                   ESR_E_OK);
  assert_int_equal(cfg->outputs_transactional, 1);
  assert_int_equal(cfg->outputs_readback, 0);
  assert_int_equal(cfg->outputs_readback_max_mb, 64);
  esr_config_free(cfg);
}

static void dlq_equal_to_source_topic_refused(void **state) {
  fixture *f = *state;
  esr_config *cfg = NULL;
  esr_error err = {0};
  assert_int_equal(load_text(f, "topics = ledger,orders\ndlq.topic = orders\n" BASE_STATE BASE_HANDLERS BASE_BOOT
                                BASE_GROUP,
                             NO_ENV, &cfg, &err),
                   ESR_E_CONFIG);
  assert_null(cfg);
  assert_contains(err.msg, "dlq.topic");
  assert_contains(err.msg, "orders");
}

static void print_keys_lists_every_key(void **state) {
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  assert_non_null(out);
  esr_config_print_keys(out);
  fclose(out);
  static const char *const keys[] = {"topics",       "state.dir",  "handlers",         "dlq.topic",
                                     "batch.max.events", "batch.max.ms", "assignment", "partitions",
                                     "instance",     "sqlite.cache.mb", "log.level",   "log.format",
                                     "kafka.*"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) assert_contains(buf, keys[i]);
  assert_contains(buf, "required");
  free(buf);
}

/* --- esr/kafka.h --- */

static esr_config *kafka_cfg(const char *key, const char *value) {
  esr_config *cfg = esr_config_new();
  esr_error err = {0};
  assert_int_equal(esr_config_set(cfg, "kafka.bootstrap.servers", "127.0.0.1:9", "t", &err), ESR_E_OK);
  assert_int_equal(esr_config_set(cfg, "kafka.group.id", "g", "t", &err), ESR_E_OK);
  if (key) assert_int_equal(esr_config_set(cfg, key, value, "t", &err), ESR_E_OK); /* passes config, fails later */
  return cfg;
}

static void expect_kafka_refused(const char *key, const char *value, esr_kafka_role role) {
  esr_config *cfg = kafka_cfg(key, value);
  esr_error err = {0};
  rd_kafka_conf_t *conf;
  esr_code rc = esr_kafka_conf_new(cfg, role, &conf, &err);
  if (conf) {
    rd_kafka_conf_destroy(conf);
    esr_config_free(cfg);
    fail_msg("%s = %s accepted for the %s", key, value, role == ESR_KAFKA_CONSUMER ? "consumer" : "producer");
  }
  assert_int_equal(rc, ESR_E_CONFIG);
  assert_int_equal(err.code, ESR_E_CONFIG);
  assert_contains(err.msg, key);
  esr_config_free(cfg);
}

static void kafka_managed_keys_refused(void **state) {
  static const struct {
    const char *key, *value;
  } cases[] = {{"kafka.auto.offset.reset", "earliest"},    {"kafka.auto.offset.reset", "latest"},
               {"kafka.enable.auto.offset.store", "true"}, {"kafka.enable.partition.eof", "true"},
               {"kafka.enable.idempotence", "false"},      {"kafka.acks", "1"}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    expect_kafka_refused(cases[i].key, cases[i].value, ESR_KAFKA_CONSUMER);
    expect_kafka_refused(cases[i].key, cases[i].value, ESR_KAFKA_PRODUCER);
  }
  /* one transactional.id for every producer of a worker would have them fence each other: esr names them */
  expect_kafka_refused("kafka.transactional.id", "mine", ESR_KAFKA_PRODUCER);
}

/* librdkafka's `acks` is an alias of `request.required.acks`: setting the real name must be refused just the same. */
static void kafka_managed_key_alias_refused(void **state) {
  expect_kafka_refused("kafka.request.required.acks", "1", ESR_KAFKA_PRODUCER);
}

static void kafka_managed_key_with_its_own_value_accepted(void **state) {
  esr_config *cfg = kafka_cfg("kafka.auto.offset.reset", "error");
  esr_error err = {0};
  assert_int_equal(esr_config_set(cfg, "kafka.enable.idempotence", "true", "t", &err), ESR_E_OK);
  rd_kafka_conf_t *conf;
  assert_int_equal(esr_kafka_conf_new(cfg, ESR_KAFKA_CONSUMER, &conf, &err), ESR_E_OK);
  assert_non_null(conf);
  rd_kafka_conf_destroy(conf);
  assert_int_equal(esr_kafka_conf_new(cfg, ESR_KAFKA_PRODUCER, &conf, &err), ESR_E_OK);
  assert_non_null(conf);
  rd_kafka_conf_destroy(conf);
  esr_config_free(cfg);
}

static void kafka_unknown_property_refused(void **state) {
  expect_kafka_refused("kafka.no.such.property", "1", ESR_KAFKA_CONSUMER);
  expect_kafka_refused("kafka.no.such.property", "1", ESR_KAFKA_PRODUCER);
  expect_kafka_refused("kafka.fetch.wait.max.ms", "soon", ESR_KAFKA_CONSUMER); /* a known one with a bad value */
}

static void expect_conf_value(rd_kafka_conf_t *conf, const char *key, const char *want) {
  char buf[512];
  size_t size = sizeof buf;
  if (rd_kafka_conf_get(conf, key, buf, &size) != RD_KAFKA_CONF_OK) fail_msg("%s is unknown", key);
  if (strcmp(buf, want) != 0) fail_msg("%s = '%s', want '%s'", key, buf, want);
}

static void kafka_valid_property_passes_with_defaults(void **state) {
  esr_config *cfg = kafka_cfg("kafka.fetch.wait.max.ms", "50");
  esr_error err = {0};
  assert_int_equal(esr_config_set(cfg, "kafka.linger.ms", "20", "t", &err), ESR_E_OK);
  rd_kafka_conf_t *conf;
  if (esr_kafka_conf_new(cfg, ESR_KAFKA_CONSUMER, &conf, &err) != ESR_E_OK) fail_msg("refused: %s", err.msg);
  expect_conf_value(conf, "fetch.wait.max.ms", "50");
  expect_conf_value(conf, "group.id", "g");
  expect_conf_value(conf, "bootstrap.servers", "127.0.0.1:9");
  expect_conf_value(conf, "enable.auto.offset.store", "false");
  expect_conf_value(conf, "auto.offset.reset", "error");
  rd_kafka_conf_destroy(conf);

  if (esr_kafka_conf_new(cfg, ESR_KAFKA_PRODUCER, &conf, &err) != ESR_E_OK) fail_msg("refused: %s", err.msg);
  expect_conf_value(conf, "enable.idempotence", "true");
  expect_conf_value(conf, "linger.ms", "20");
  expect_conf_value(conf, "bootstrap.servers", "127.0.0.1:9");
  rd_kafka_conf_destroy(conf);
  esr_config_free(cfg);
}

/* A '#' inside a value (a password, say) is part of it; after a blank it starts a comment. */
static void hash_inside_value_is_kept(void **state) {
  fixture *f = *state;
  esr_config *cfg = NULL;
  esr_error err = {0};
  assert_int_equal(load_text(f, BASE "kafka.sasl.password = pa#ss\nkafka.client.id = esr #trailing comment\n", NO_ENV,
                             &cfg, &err),
                   ESR_E_OK);
  assert_string_equal(esr_config_kafka_get(cfg, "sasl.password"), "pa#ss");
  assert_string_equal(esr_config_kafka_get(cfg, "client.id"), "esr");
  esr_config_free(cfg);
}

/* --- secrets (issue 10, item 6): no message quotes a value that may be a secret --- */

#define SECRET "Hunter2-S3cr3t-Value"

static void secret_keys_classified(void **state) {
  (void)state;
  static const char *const secret[] = {"kafka.sasl.password", "kafka.ssl.key.password", "kafka.ssl.keystore.password",
                                       "kafka.ssl.key.pem", "kafka.sasl.oauthbearer.client.secret",
                                       "kafka.sasl.oauthbearer.config", "kafka.SASL.PASSWORD", "handler.ledger.token",
                                       "handler.x", "sasl.password", "no.such.key", NULL};
  static const char *const plain[] = {"kafka.bootstrap.servers", "kafka.security.protocol", "kafka.group.id",
                                      "kafka.sasl.username", "topics", "state.dir", "checkpoint.store", NULL};
  for (const char *const *k = secret; *k; k++)
    if (!esr_config_key_is_secret(*k)) fail_msg("%s is not taken for a secret", *k);
  for (const char *const *k = plain; *k; k++)
    if (esr_config_key_is_secret(*k)) fail_msg("%s is taken for a secret", *k);
}

static void redact_masks_every_secret_value(void **state) {
  (void)state;
  esr_config *cfg = esr_config_new();
  esr_error err = {0};
  assert_int_equal(esr_config_set(cfg, "kafka.sasl.password", SECRET, "t", &err), ESR_E_OK);
  assert_int_equal(esr_config_set(cfg, "kafka.sasl.username", "alice", "t", &err), ESR_E_OK);
  char text[64] = "a " SECRET " b " SECRET " alice";
  esr_config_redact(cfg, text, sizeof text);
  assert_string_equal(text, "a *** b *** alice");
  /* a mask longer than the secret, in a full buffer: cut, never overflowed */
  assert_int_equal(esr_config_set(cfg, "kafka.sasl.password", "s", "t", &err), ESR_E_OK);
  char small[8] = "s-s-s-s";
  esr_config_redact(cfg, small, sizeof small);
  assert_string_equal(small, "***-***");
  esr_config_free(cfg);
}

/* Each way a secret could reach a configuration error: the message names the key and never holds the value. */
static void config_errors_never_quote_secrets(void **state) {
  fixture *f = *state;
  esr_config *cfg = NULL;
  esr_error err = {0};
  char text[1024];
  /* a line without '=' (the whole line could be quoted) */
  snprintf(text, sizeof text, BASE "kafka.sasl.password " SECRET "\n");
  assert_int_equal(load_text(f, text, NO_ENV, &cfg, &err), ESR_E_CONFIG);
  assert_not_contains(err.msg, SECRET);
  char origin[4300];
  snprintf(origin, sizeof origin, "%s:7", f->path);
  assert_contains(err.msg, origin);
  /* a malformed handler option (handler.<stem>.<key>), an unknown key, a secret under an esr key that is misspelled;
   * a well-formed handler option is the handler's to judge (its refusal names the option, never the value) */
  static const char *const lines[] = {"handler.ledger = " SECRET "\n", "sasl.password = " SECRET "\n",
                                      "state.dirr = " SECRET "\n", NULL};
  for (const char *const *l = lines; *l; l++) {
    snprintf(text, sizeof text, BASE "%s", *l);
    assert_int_equal(load_text(f, text, NO_ENV, &cfg, &err), ESR_E_CONFIG);
    assert_not_contains(err.msg, SECRET);
    char key[64];
    snprintf(key, sizeof key, "%.*s", (int)(strchr(*l, ' ') - *l), *l);
    assert_contains(err.msg, key);
  }
  /* the same through the environment: a handler option, kept for the handler's init */
  char *const env[] = {"ESR_HANDLER_LEDGER_TOKEN=" SECRET, NULL};
  assert_int_equal(load_text(f, BASE, env, &cfg, &err), ESR_E_OK);
  assert_int_equal(cfg->n_handler_opts, 1);
  assert_string_equal(cfg->handler_opts[0].key, "ledger.token");
  esr_config_free(cfg);
}

/* librdkafka's own refusals: a misspelled secret key (unknown to librdkafka) and a secret key whose value it refuses
 * (its message would quote it). */
static void kafka_refusals_never_quote_secrets(void **state) {
  (void)state;
  static const struct {
    const char *key, *mention;
  } cases[] = {{"kafka.sasl.passwrd", "did you mean kafka.sasl.password"},
               {"kafka.ssl.keystore.pasword", "did you mean kafka.ssl.keystore.password"},
               {"kafka.sasl.oauthbearer.client.secret", "not supported"},
               {"kafka.totally.unknown.property", "no such property"}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    for (int role = 0; role < 2; role++) {
      esr_config *cfg = kafka_cfg(cases[i].key, SECRET);
      esr_error err = {0};
      rd_kafka_conf_t *conf;
      esr_code rc = esr_kafka_conf_new(cfg, role ? ESR_KAFKA_PRODUCER : ESR_KAFKA_CONSUMER, &conf, &err);
      if (conf) fail_msg("%s accepted", cases[i].key);
      assert_int_equal(rc, ESR_E_CONFIG);
      assert_int_equal(err.code, ESR_E_CONFIG);
      assert_contains(err.msg, cases[i].key);
      assert_contains(err.msg, cases[i].mention);
      assert_not_contains(err.msg, SECRET);
      assert_null(strchr(err.msg, '\n'));
      esr_config_free(cfg);
    }
  }
  /* a key that holds no secret keeps its value in the message (it helps to fix it) */
  esr_config *cfg = kafka_cfg("kafka.security.protocol", "SASL_SSLL");
  esr_error err = {0};
  rd_kafka_conf_t *conf;
  assert_int_equal(esr_kafka_conf_new(cfg, ESR_KAFKA_CONSUMER, &conf, &err), ESR_E_CONFIG);
  assert_null(conf);
  assert_contains(err.msg, "SASL_SSLL");
  esr_config_free(cfg);
}

/* librdkafka logs an sasl.oauthbearer.config it cannot parse from where the parse failed: the log line esr writes for
 * it must not hold the value. */
static void kafka_log_lines_mask_secrets(void **state) {
  fixture *f = *state;
  esr_config *cfg = kafka_cfg("kafka.security.protocol", "SASL_PLAINTEXT");
  esr_error err = {0};
  assert_int_equal(esr_config_set(cfg, "kafka.sasl.mechanisms", "OAUTHBEARER", "t", &err), ESR_E_OK);
  assert_int_equal(esr_config_set(cfg, "kafka.enable.sasl.oauthbearer.unsecure.jwt", "true", "t", &err), ESR_E_OK);
  assert_int_equal(esr_config_set(cfg, "kafka.sasl.oauthbearer.config", "principal=me " SECRET "=x", "t", &err),
                   ESR_E_OK);
  rd_kafka_conf_t *conf;
  if (esr_kafka_conf_new(cfg, ESR_KAFKA_PRODUCER, &conf, &err) != ESR_E_OK) fail_msg("refused: %s", err.msg);
  char path[4300];
  snprintf(path, sizeof path, "%s/stderr", f->dir);
  fflush(stderr);
  int saved = dup(2), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(saved >= 0 && fd >= 0);
  dup2(fd, 2);
  close(fd);
  esr_log_setup(ESR_LOG_DEBUG, ESR_LOG_TEXT);
  char errstr[512];
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (rk) rd_kafka_destroy(rk);
  else rd_kafka_conf_destroy(conf);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  esr_log_setup(ESR_LOG_INFO, ESR_LOG_AUTO);
  char *log = tu_read_file(path, NULL);
  assert_non_null(log);
  assert_contains(log, "sasl.oauthbearer.config"); /* the premise: librdkafka did log about it */
  assert_not_contains(log, SECRET);
  free(log);
  esr_config_free(cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(parses_lines_comments_blanks_and_whitespace, setup, teardown),
      cmocka_unit_test_setup_teardown(hash_inside_value_is_kept, setup, teardown),
      cmocka_unit_test_setup_teardown(defaults, setup, teardown),
      cmocka_unit_test_setup_teardown(every_bad_value_names_key_and_line, setup, teardown),
      cmocka_unit_test(bad_value_keeps_previous_value),
      cmocka_unit_test(value_limits_accepted),
      cmocka_unit_test_setup_teardown(malformed_lines, setup, teardown),
      cmocka_unit_test_setup_teardown(missing_file, setup, teardown),
      cmocka_unit_test_setup_teardown(unknown_key_suggests, setup, teardown),
      cmocka_unit_test_setup_teardown(missing_required_names_key_and_env, setup, teardown),
      cmocka_unit_test_setup_teardown(env_overrides_win_over_file, setup, teardown),
      cmocka_unit_test(env_alone_is_enough),
      cmocka_unit_test_setup_teardown(unrelated_env_ignored, setup, teardown),
      cmocka_unit_test_setup_teardown(bad_env_value_names_variable, setup, teardown),
      cmocka_unit_test(kafka_keys_kept_verbatim),
      cmocka_unit_test_setup_teardown(static_partitions_parsed, setup, teardown),
      cmocka_unit_test_setup_teardown(static_instance_ownership, setup, teardown),
      cmocka_unit_test_setup_teardown(group_static_consistency, setup, teardown),
      cmocka_unit_test_setup_teardown(dlq_equal_to_source_topic_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(outputs_transactional_needs_a_group_id, setup, teardown),
      cmocka_unit_test(print_keys_lists_every_key),
      cmocka_unit_test(kafka_managed_keys_refused),
      cmocka_unit_test(kafka_managed_key_alias_refused),
      cmocka_unit_test(kafka_managed_key_with_its_own_value_accepted),
      cmocka_unit_test(kafka_unknown_property_refused),
      cmocka_unit_test(kafka_valid_property_passes_with_defaults),
      cmocka_unit_test(secret_keys_classified),
      cmocka_unit_test(redact_masks_every_secret_value),
      cmocka_unit_test_setup_teardown(config_errors_never_quote_secrets, setup, teardown),
      cmocka_unit_test(kafka_refusals_never_quote_secrets),
      cmocka_unit_test_setup_teardown(kafka_log_lines_mask_secrets, setup, teardown),
  };
  return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
