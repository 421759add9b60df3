/* test_cli.c — the `esr` command as a child process (ESR_BIN): exit codes 0/2/3 and one-line messages on stderr for
 * configuration and plugin problems, help texts, unknown commands. Every case fails before any connection to Kafka,
 * so no broker is needed. Secrets are never echoed; a checkpoint store that cannot work is refused at start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>

#include "unit_util.h"

typedef struct fixture {
  char *dir;
  char conf[4200];
  char state[4200];
} fixture;

typedef struct result {
  int status; /* exit code; 128 + signal when killed */
  char *out, *err;
} result;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f || !(f->dir = tu_mkdtemp())) return -1;
  snprintf(f->conf, sizeof f->conf, "%s/worker.conf", f->dir);
  snprintf(f->state, sizeof f->state, "%s/state", f->dir);
  if (mkdir(f->state, 0700) != 0) return -1;
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

static void result_free(result *r) {
  free(r->out);
  free(r->err);
}

/* Runs ESR_BIN with `args` (NULL-terminated, without argv[0]) in a small environment plus `extra_env`. A child that
 * does not finish within 30 s is killed: these cases must fail fast, before connecting anywhere. */
static result run_esr(fixture *f, const char *const *args, const char *const *extra_env) {
  char *argv[32];
  int argc = 0;
  argv[argc++] = (char *)ESR_BIN;
  for (; args && *args && argc < 31; args++) argv[argc++] = (char *)*args;
  argv[argc] = NULL;

  char *envp[32];
  int envc = 0;
  envp[envc++] = "PATH=/usr/bin:/bin";
  static const char *const pass[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", NULL};
  char passed[3][1024];
  for (int i = 0; pass[i]; i++) {
    const char *v = getenv(pass[i]);
    if (v) {
      snprintf(passed[i], sizeof passed[i], "%s=%s", pass[i], v);
      envp[envc++] = passed[i];
    }
  }
  for (; extra_env && *extra_env && envc < 31; extra_env++) envp[envc++] = (char *)*extra_env;
  envp[envc] = NULL;

  char out_path[4300], err_path[4300];
  snprintf(out_path, sizeof out_path, "%s/stdout", f->dir);
  snprintf(err_path, sizeof err_path, "%s/stderr", f->dir);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid;
  int rc = posix_spawn(&pid, ESR_BIN, &fa, NULL, argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) fail_msg("cannot run %s: %s", ESR_BIN, strerror(rc));

  int wstatus = 0;
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    pid_t w = waitpid(pid, &wstatus, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) fail_msg("waitpid: %s", strerror(errno));
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - start.tv_sec > 30) {
      kill(pid, SIGKILL);
      waitpid(pid, &wstatus, 0);
      fail_msg("esr did not exit within 30 s (it should fail before connecting to Kafka)");
    }
    struct timespec nap = {0, 5 * 1000 * 1000};
    nanosleep(&nap, NULL);
  }
  result r;
  r.status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
  r.out = tu_read_file(out_path, NULL);
  r.err = tu_read_file(err_path, NULL);
  if (!r.out) r.out = strdup("");
  if (!r.err) r.err = strdup("");
  return r;
}

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++)
    if (*s == '\n') n++;
  return n;
}

/* exit code `status` and exactly one line on stderr that contains each of the NULL-terminated `mentions` */
static void expect_failure(const result *r, int status, const char *const *mentions) {
  if (r->status != status) fail_msg("exit %d, want %d; stderr: %s", r->status, status, r->err);
  if (count_lines(r->err) != 1 || r->err[strlen(r->err) - 1] != '\n')
    fail_msg("want exactly one line on stderr, got:\n%s", r->err);
  for (; mentions && *mentions; mentions++) assert_contains(r->err, *mentions);
}

static void write_conf(fixture *f, const char *text) { assert_int_equal(tu_write_text(f->conf, text), 0); }

/* A configuration that passes validation, with `handlers` and extra lines. */
static void write_full_conf(fixture *f, const char *handlers, const char *extra) {
  char text[8192];
  snprintf(text, sizeof text,
           "topics = ledger\n"
           "state.dir = %s\n"
           "handlers = %s\n"
           "dlq.topic = ledger.dlq\n"
           "kafka.bootstrap.servers = 127.0.0.1:1\n"
           "kafka.group.id = unit-cli\n"
           "log.format = json\n"
           "%s",
           f->state, handlers, extra ? extra : "");
  write_conf(f, text);
}

static void unknown_key_exit_2_one_line(void **state) {
  fixture *f = *state;
  write_conf(f, "# worker\ntopic = ledger\n");
  const char *args[] = {"run", "--config", f->conf, NULL};
  result r = run_esr(f, args, NULL);
  const char *mentions[] = {"'topic'", "did you mean 'topics'", ":2", NULL};
  expect_failure(&r, 2, mentions);
  result_free(&r);
}

static void missing_required_key_exit_2(void **state) {
  fixture *f = *state;
  write_conf(f, "topics = ledger\nstate.dir = /tmp\nhandlers = /x.so\nkafka.bootstrap.servers = h:1\n"
                "kafka.group.id = g\n");
  const char *args[] = {"run", "--config", f->conf, NULL};
  result r = run_esr(f, args, NULL);
  const char *mentions[] = {"dlq.topic", "ESR_DLQ_TOPIC", NULL};
  expect_failure(&r, 2, mentions);
  result_free(&r);
}

static void bad_value_exit_2(void **state) {
  fixture *f = *state;
  write_full_conf(f, "/x.so", "batch.max.events = lots\n");
  const char *args[] = {"run", "--config", f->conf, NULL};
  result r = run_esr(f, args, NULL);
  const char *mentions[] = {"batch.max.events", "lots", NULL};
  expect_failure(&r, 2, mentions);
  result_free(&r);
}

static void bad_env_value_exit_2(void **state) {
  fixture *f = *state;
  write_full_conf(f, "/x.so", NULL);
  const char *args[] = {"run", "--config", f->conf, NULL};
  const char *env[] = {"ESR_BATCH_MAX_MS=0", NULL};
  result r = run_esr(f, args, env);
  const char *mentions[] = {"batch.max.ms", "ESR_BATCH_MAX_MS", NULL};
  expect_failure(&r, 2, mentions);
  result_free(&r);
}

static void nonexistent_config_exit_2(void **state) {
  fixture *f = *state;
  char path[4300];
  snprintf(path, sizeof path, "%s/nope.conf", f->dir);
  const char *args[] = {"run", "--config", path, NULL};
  result r = run_esr(f, args, NULL);
  const char *mentions[] = {path, NULL};
  expect_failure(&r, 2, mentions);
  result_free(&r);
}

static void managed_kafka_key_exit_2(void **state) {
  fixture *f = *state;
  write_full_conf(f, ESR_TEST_PLUGIN_DIR "/good.so", "kafka.auto.offset.reset = earliest\n");
  const char *args[] = {"run", "--config", f->conf, NULL};
  result r = run_esr(f, args, NULL);
  const char *mentions[] = {"kafka.auto.offset.reset", NULL};
  expect_failure(&r, 2, mentions);
  result_free(&r);
}

static void missing_plugin_exit_3_one_line(void **state) {
  fixture *f = *state;
  char plugin[4300];
  snprintf(plugin, sizeof plugin, "%s/does-not-exist.so", f->dir);
  write_full_conf(f, plugin, NULL);
  const char *args[] = {"run", "--config", f->conf, NULL};
  result r = run_esr(f, args, NULL);
  const char *mentions[] = {plugin, "cannot load", NULL};
  expect_failure(&r, 3, mentions);
  result_free(&r);
}

static void badabi_plugin_exit_3_one_line(void **state) {
  fixture *f = *state;
  write_full_conf(f, ESR_BUILD_DIR "/handlers/ledger.so," ESR_TEST_PLUGIN_DIR "/badabi.so", NULL);
  const char *args[] = {"run", "--config", f->conf, NULL};
  result r = run_esr(f, args, NULL);
  const char *mentions[] = {"badabi.so", "ABI", NULL};
  expect_failure(&r, 3, mentions);
  result_free(&r);
}

static void noentry_plugin_exit_3(void **state) {
  fixture *f = *state;
  write_full_conf(f, ESR_TEST_PLUGIN_DIR "/noentry.so", NULL);
  const char *args[] = {"run", "--config", f->conf, NULL};
  result r = run_esr(f, args, NULL);
  const char *mentions[] = {"noentry.so", "no entry point esr_handler_init", NULL};
  expect_failure(&r, 3, mentions);
  result_free(&r);
}

static void duplicate_plugin_claims_exit_3(void **state) {
  fixture *f = *state;
  write_full_conf(f, ESR_TEST_PLUGIN_DIR "/good.so," ESR_TEST_PLUGIN_DIR "/good.so", NULL);
  const char *args[] = {"run", "--config", f->conf, NULL};
  result r = run_esr(f, args, NULL);
  const char *mentions[] = {"good.so", "test.*", NULL};
  expect_failure(&r, 3, mentions);
  result_free(&r);
}

/* Issue 10, item 6: a configuration error names the key and never echoes a value that may be a secret. */
#define SECRET "Hunter2-S3cr3t-Value"

static void expect_secret_hidden(const result *r, const char *const *mentions) {
  expect_failure(r, 2, mentions);
  assert_not_contains(r->err, SECRET);
  assert_not_contains(r->out, SECRET);
}

static void misspelled_secret_key_not_echoed(void **state) {
  fixture *f = *state;
  write_full_conf(f, ESR_TEST_PLUGIN_DIR "/good.so", "kafka.sasl.passwrd = " SECRET "\n");
  const char *args[] = {"run", "--config", f->conf, NULL};
  result r = run_esr(f, args, NULL);
  const char *mentions[] = {"kafka.sasl.passwrd", "did you mean kafka.sasl.password", NULL};
  expect_secret_hidden(&r, mentions);
  result_free(&r);
  /* the same from the environment */
  write_full_conf(f, ESR_TEST_PLUGIN_DIR "/good.so", NULL);
  const char *env[] = {"ESR_KAFKA_SASL_PASSWRD=" SECRET, NULL};
  r = run_esr(f, args, env);
  expect_secret_hidden(&r, mentions);
  result_free(&r);
  /* a secret key whose value librdkafka refuses, quoting it */
  write_full_conf(f, ESR_TEST_PLUGIN_DIR "/good.so", "kafka.sasl.oauthbearer.client.secret = " SECRET "\n");
  r = run_esr(f, args, NULL);
  const char *mentions2[] = {"kafka.sasl.oauthbearer.client.secret", NULL};
  expect_secret_hidden(&r, mentions2);
  result_free(&r);
}

static void secret_in_malformed_line_not_echoed(void **state) {
  fixture *f = *state;
  write_full_conf(f, "/x.so", "kafka.sasl.password " SECRET "\n"); /* the '=' forgotten */
  const char *args[] = {"run", "--config", f->conf, NULL};
  result r = run_esr(f, args, NULL);
  const char *mentions[] = {":8", "key = value", NULL};
  expect_secret_hidden(&r, mentions);
  result_free(&r);
}

/* librdkafka's client refuses a setting and quotes it (rd_kafka_new: "Failed to open ssl.keystore.location: <path>"):
 * the value of a key that may hold a secret is masked in that message too. */
static void secret_in_librdkafka_client_error_not_echoed(void **state) {
  fixture *f = *state;
  char extra[1024];
  snprintf(extra, sizeof extra,
           "assignment = static\npartitions = 0\nkafka.group.id = unit-cli\nkafka.security.protocol = SSL\n"
           "kafka.ssl.keystore.location = %s/" SECRET ".p12\nkafka.ssl.keystore.password = " SECRET "\n",
           f->dir);
  char text[8192];
  snprintf(text, sizeof text,
           "topics = ledger\nstate.dir = %s\nhandlers = " ESR_TEST_PLUGIN_DIR "/good.so\ndlq.topic = ledger.dlq\n"
           "kafka.bootstrap.servers = 127.0.0.1:1\nlog.format = json\n%s",
           f->state, extra);
  write_conf(f, text);
  const char *args[] = {"run", "--config", f->conf, NULL};
  result r = run_esr(f, args, NULL);
  /* librdkafka logs its own line about the file before the error line: not one line here */
  if (r.status != 2) fail_msg("exit %d, want 2; stderr: %s", r.status, r.err);
  assert_contains(r.err, "esr: cannot create the Kafka consumer: Failed to open ssl.keystore.location");
  assert_not_contains(r.err, SECRET);
  result_free(&r);
}

/* Issue 10, item 5: a checkpoint store that cannot work stops the worker at start (before, it was accepted and every
 * upload logged a warning). */
static void checkpoint_store_missing_directory_exit_2(void **state) {
  fixture *f = *state;
  char extra[4400];
  snprintf(extra, sizeof extra, "checkpoint.store = file://%s/not-mounted\n", f->dir);
  write_full_conf(f, ESR_TEST_PLUGIN_DIR "/good.so", extra);
  const char *args[] = {"run", "--config", f->conf, NULL};
  result r = run_esr(f, args, NULL);
  const char *mentions[] = {"checkpoint.store", "not-mounted", "create it", NULL};
  expect_failure(&r, 2, mentions);
  result_free(&r);
}

static const char *const KEYS[] = {"topics",      "state.dir",       "handlers",  "dlq.topic",  "batch.max.events",
                                   "batch.max.ms", "assignment",     "partitions", "instance", "sqlite.cache.mb",
                                   "log.level",   "log.format",      "kafka.*",   NULL};

static void help_exits_0_and_lists_keys(void **state) {
  fixture *f = *state;
  const char *top[] = {"--help", NULL};
  result r = run_esr(f, top, NULL);
  assert_int_equal(r.status, 0);
  assert_contains(r.out, "run");
  assert_contains(r.out, "exit codes");
  result_free(&r);

  const char *top2[] = {"help", NULL};
  r = run_esr(f, top2, NULL);
  assert_int_equal(r.status, 0);
  assert_contains(r.out, "run --config");
  result_free(&r);

  const char *const *variants[] = {(const char *[]){"run", "--help", NULL}, (const char *[]){"help", "run", NULL},
                                   (const char *[]){"run", "-h", NULL}};
  for (size_t v = 0; v < 3; v++) {
    r = run_esr(f, variants[v], NULL);
    if (r.status != 0) fail_msg("variant %zu: exit %d: %s", v, r.status, r.err);
    for (const char *const *k = KEYS; *k; k++) assert_contains(r.out, *k);
    assert_contains(r.out, "ESR_STATE_DIR");
    result_free(&r);
  }
}

static void version_exits_0(void **state) {
  fixture *f = *state;
  const char *args[] = {"version", NULL};
  result r = run_esr(f, args, NULL);
  assert_int_equal(r.status, 0);
  assert_contains(r.out, "esr ");
  result_free(&r);
}

static void unknown_command_exit_2(void **state) {
  fixture *f = *state;
  const char *args[] = {"frobnicate", NULL};
  result r = run_esr(f, args, NULL);
  assert_int_equal(r.status, 2);
  assert_contains(r.err, "unknown command 'frobnicate'");
  result_free(&r);
  r = run_esr(f, NULL, NULL); /* no command at all */
  assert_int_equal(r.status, 2);
  assert_contains(r.err, "usage");
  result_free(&r);
}

static void run_usage_errors_exit_2(void **state) {
  fixture *f = *state;
  const char *no_config[] = {"run", NULL};
  result r = run_esr(f, no_config, NULL);
  assert_int_equal(r.status, 2);
  assert_contains(r.err, "--config");
  result_free(&r);
  write_full_conf(f, "/x.so", NULL);
  const char *extra[] = {"run", "--config", f->conf, "surplus", NULL};
  r = run_esr(f, extra, NULL);
  assert_int_equal(r.status, 2);
  assert_contains(r.err, "surplus");
  result_free(&r);
  const char *bad_opt[] = {"run", "--bogus", NULL};
  r = run_esr(f, bad_opt, NULL);
  assert_int_equal(r.status, 2);
  result_free(&r);
}


/* The README's table of keys is the configuration table's own output (esr run --keys-markdown), not a copy kept by
 * hand: a key added, removed or changed without the README fails here. Regenerate the part between the markers with
 * build/esr run --keys-markdown. */
static void readme_keys_table_is_generated(void **state) {
  fixture *f = *state;
  static const char *const args[] = {"run", "--keys-markdown", NULL};
  result r = run_esr(f, args, NULL);
  assert_int_equal(r.status, 0);
  char *readme = tu_read_file(ESR_SOURCE_DIR "/README.md", NULL);
  assert_non_null(readme);
  const char *begin = strstr(readme, "<!-- keys:");
  assert_non_null(begin);
  begin = strchr(begin, '\n');
  assert_non_null(begin);
  begin++;
  const char *end = strstr(begin, "<!-- /keys -->");
  assert_non_null(end);
  size_t len = (size_t)(end - begin);
  if (strlen(r.out) != len || strncmp(r.out, begin, len) != 0)
    fail_msg("README.md's table of keys differs from `esr run --keys-markdown`: regenerate it between the markers");
  free(readme);
  result_free(&r);
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(readme_keys_table_is_generated),
      T(unknown_key_exit_2_one_line),
      T(missing_required_key_exit_2),
      T(bad_value_exit_2),
      T(bad_env_value_exit_2),
      T(nonexistent_config_exit_2),
      T(managed_kafka_key_exit_2),
      T(misspelled_secret_key_not_echoed),
      T(secret_in_malformed_line_not_echoed),
      T(secret_in_librdkafka_client_error_not_echoed),
      T(checkpoint_store_missing_directory_exit_2),
      T(missing_plugin_exit_3_one_line),
      T(badabi_plugin_exit_3_one_line),
      T(noentry_plugin_exit_3),
      T(duplicate_plugin_claims_exit_3),
      T(help_exits_0_and_lists_keys),
      T(version_exits_0),
      T(unknown_command_exit_2),
      T(run_usage_errors_exit_2),
  };
#undef T
  return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
