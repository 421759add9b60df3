/* cmd_run.c — `esr run --config FILE`: configuration, signals, the worker. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "config.h"
#include "log.h"
#include "worker.h"

extern char **environ;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: esr run --config FILE\n"
          "       esr run --keys-markdown   (the table of keys below, as the README's Markdown table)\n"
          "\n"
          "Runs a worker: consumes the configured topics, applies each event through the handler plugins to one\n"
          "SQLite database per partition (<state.dir>/<topic>-<partition>.db) and stores the next offset in the same\n"
          "transaction, so that after a crash it resumes exactly where its state ends. SIGTERM or SIGINT: finish the\n"
          "batch, commit, close the consumer, exit 0.\n"
          "\n"
          "The config file holds 'key = value' lines ('#' starts a comment). Every key can be overridden by an\n"
          "environment variable: state.dir <-> ESR_STATE_DIR, kafka.group.id <-> ESR_KAFKA_GROUP_ID.\n"
          "\n"
          "keys:\n");
  esr_config_print_keys(out);
  fprintf(out, "\nexit codes: 0 stopped cleanly, 1 runtime failure, 2 configuration error, 3 handler plugin problem\n");
}

int esr_cmd_run(int argc, char **argv) {
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                       {"help", no_argument, NULL, 'h'},
                                       {"keys-markdown", no_argument, NULL, 'k'},
                                       {NULL, 0, NULL, 0}};
  const char *path = NULL;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
    switch (c) {
    case 'c': path = optarg; break;
    case 'h': usage(stdout); return 0;
    case 'k': esr_config_print_keys_markdown(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "esr run: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (!path) {
    fprintf(stderr, "esr run: --config FILE is required (see esr run --help)\n");
    return 2;
  }
  esr_error err = {0};
  esr_config *cfg = NULL;
  if (esr_config_load(path, environ, &cfg, &err) != ESR_E_OK) {
    fprintf(stderr, "esr: %s\n", err.msg);
    return esr_code_exit_status(err.code);
  }
  esr_log_setup(cfg->log_level, cfg->log_format);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  esr_worker *w = NULL;
  esr_code rc = esr_worker_new(cfg, &w, &err);
  if (rc != ESR_E_OK) {
    esr_config_redact(cfg, err.msg, sizeof err.msg); /* librdkafka's words may quote a secret (rd_kafka_new) */
    fprintf(stderr, "esr: %s\n", err.msg);
    esr_config_free(cfg);
    return esr_code_exit_status(rc);
  }
  rc = esr_worker_run(w, &g_stop, &err);
  if (rc != ESR_E_OK) {
    esr_config_redact(cfg, err.msg, sizeof err.msg);
    esr_log(ESR_LOG_ERROR, "worker", "%s", err.msg);
  }
  esr_worker_free(w);
  esr_config_free(cfg);
  return esr_code_exit_status(rc);
}
