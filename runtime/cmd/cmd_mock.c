/* cmd_mock.c — `esr mock-cluster`: librdkafka's mock cluster in its own process, so that workers can be killed while
 * the log survives. Control lines on standard input ("topic NAME PARTITIONS", "broker-down ID", "broker-up ID") drive
 * fault tests; each is answered on standard output with "ok" or "error: ...". */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "mock_cluster.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: esr mock-cluster [--brokers N] [--topic NAME:PARTITIONS]... [--bootstrap-file PATH]\n"
          "\n"
          "Hosts librdkafka's mock Kafka cluster until SIGINT or SIGTERM. Prints 'bootstrap=HOST:PORT,...' as the first\n"
          "line of standard output and writes the bare list to PATH (atomically) when given. All data is in memory.\n"
          "Limits of librdkafka 2.0.2's mock: at most 100,000 messages or 5 MiB per partition are kept (older ones\n"
          "are dropped and the log start moves); no admin API; replication factor accepted but ignored.\n"
          "\n"
          "  --brokers N               number of brokers (default 3)\n"
          "  --topic NAME:PARTITIONS   create a topic (repeatable), replication factor min(3, N)\n"
          "  --bootstrap-file PATH     also write the bootstrap list to PATH\n"
          "\n"
          "Standard input, when it is not a terminal, takes control lines: 'topic NAME PARTITIONS', 'broker-down ID',\n"
          "'broker-up ID'; each is answered with 'ok' or 'error: ...' on standard output.\n");
}

static int parse_topic(const char *arg, char *name, size_t cap, int *partitions) {
  const char *colon = strrchr(arg, ':');
  if (!colon || colon == arg || (size_t)(colon - arg) >= cap) return -1;
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end || p < 1 || p > 10000) return -1;
  memcpy(name, arg, (size_t)(colon - arg));
  name[colon - arg] = '\0';
  *partitions = (int)p;
  return 0;
}

static void control(esr_mock *m, char *line) {
  char name[256];
  int a;
  esr_error err = {0};
  esr_code rc;
  if (sscanf(line, "topic %255s %d", name, &a) == 2)
    rc = esr_mock_create_topic(m, name, a, &err);
  else if (sscanf(line, "broker-down %d", &a) == 1)
    rc = esr_mock_broker_set(m, a, 0, &err);
  else if (sscanf(line, "broker-up %d", &a) == 1)
    rc = esr_mock_broker_set(m, a, 1, &err);
  else
    rc = esr_error_set(&err, ESR_E_CONFIG, 0, "unknown control line (topic NAME N | broker-down ID | broker-up ID)");
  if (rc == ESR_E_OK)
    printf("ok\n");
  else
    printf("error: %s\n", err.msg);
  fflush(stdout);
}

int esr_cmd_mock_cluster(int argc, char **argv) {
  static const struct option opts[] = {{"brokers", required_argument, NULL, 'b'},
                                       {"topic", required_argument, NULL, 't'},
                                       {"bootstrap-file", required_argument, NULL, 'f'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int brokers = 3, c;
  const char *file = NULL;
  char **topics = calloc((size_t)argc, sizeof *topics);
  int n_topics = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "b:t:f:h", opts, NULL)) != -1) {
    switch (c) {
    case 'b':
      brokers = atoi(optarg);
      if (brokers < 1 || brokers > 32) {
        fprintf(stderr, "esr mock-cluster: --brokers takes 1..32, not '%s'\n", optarg);
        free(topics);
        return 2;
      }
      break;
    case 't': topics[n_topics++] = optarg; break;
    case 'f': file = optarg; break;
    case 'h': usage(stdout); free(topics); return 0;
    default: usage(stderr); free(topics); return 2;
    }
  }
  esr_error err = {0};
  esr_mock *m;
  if (esr_mock_new(brokers, &m, &err) != ESR_E_OK) {
    fprintf(stderr, "esr mock-cluster: %s\n", err.msg);
    free(topics);
    return 1;
  }
  for (int i = 0; i < n_topics; i++) {
    char name[256];
    int partitions;
    if (parse_topic(topics[i], name, sizeof name, &partitions) != 0) {
      fprintf(stderr, "esr mock-cluster: --topic takes NAME:PARTITIONS (e.g. ledger:4), not '%s'\n", topics[i]);
      esr_mock_free(m);
      free(topics);
      return 2;
    }
    if (esr_mock_create_topic(m, name, partitions, &err) != ESR_E_OK) {
      fprintf(stderr, "esr mock-cluster: %s\n", err.msg);
      esr_mock_free(m);
      free(topics);
      return 1;
    }
  }
  free(topics);
  const char *boot = esr_mock_bootstraps(m);
  if (file) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", file, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%s\n", boot) < 0 || fclose(f) != 0 || rename(tmp, file) != 0) {
      fprintf(stderr, "esr mock-cluster: cannot write %s: %s\n", file, strerror(errno));
      esr_mock_free(m);
      return 1;
    }
  }
  printf("bootstrap=%s\n", boot);
  fflush(stdout);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  int read_stdin = !isatty(STDIN_FILENO);
  char line[512];
  size_t len = 0;
  while (!g_stop) {
    struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
    int n = poll(&pfd, read_stdin ? 1 : 0, 200);
    if (n > 0 && (pfd.revents & (POLLIN | POLLHUP))) {
      ssize_t r = read(STDIN_FILENO, line + len, sizeof line - 1 - len);
      if (r <= 0) {
        read_stdin = 0; /* end of input: keep running until signalled */
        continue;
      }
      len += (size_t)r;
      char *nl;
      while ((nl = memchr(line, '\n', len))) {
        *nl = '\0';
        control(m, line);
        size_t used = (size_t)(nl - line) + 1;
        memmove(line, nl + 1, len - used);
        len -= used;
      }
      if (len == sizeof line - 1) len = 0;
    }
  }
  esr_mock_free(m);
  if (file) unlink(file);
  return 0;
}
