/* cmd_history.c — `esr history --key K`: one entity's timeline (history.h) as text, JSON lines or an HTML page. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "cmd.h"
#include "config.h"
#include "history.h"
#include "log.h"

extern char **environ;

static void usage(FILE *out) {
  fprintf(out,
          "usage: esr history (--config FILE | --bootstrap SERVERS --handlers SO[,SO] [--schemas DIR]) [--topic T]\n"
          "                   --key K [--partition P | --partitioner NAME] [--html FILE] [--json] [--tmp DIR]\n"
          "                   [-X kafka.PROPERTY=VALUE]...\n"
          "\n"
          "The timeline of one entity: every event of Kafka key K (offset, Kafka timestamp, type, version, applied or\n"
          "dead-lettered with its reason and message) and the exact row changes it made, before and after values.\n"
          "The changes are recorded with SQLite's session extension while the key's partition is replayed, from\n"
          "offset 0 to the key's last event, through the same handlers and schemas as the worker's, into a temporary\n"
          "database that is removed afterwards: no worker database is opened, nothing is published. A key that no\n"
          "event carries gives an empty timeline.\n"
          "\n"
          "  --config FILE        a worker configuration: its kafka.* settings, handlers, handler options, schemas.dir\n"
          "  --bootstrap SERVERS  Kafka bootstrap servers (instead of --config); then --handlers is required\n"
          "  --handlers SO[,SO]   handler plugins (overrides the configuration's)\n"
          "  --schemas DIR        JSON Schemas of the events' data (overrides schemas.dir)\n"
          "  --topic T            the topic (default: the configuration's, when it names one)\n"
          "  --key K              the entity's Kafka key\n"
          "  --partition P        the key's partition, when known\n"
          "  --partitioner NAME   the producer's librdkafka partitioner (consistent, consistent_random, murmur2,\n"
          "                       murmur2_random, fnv1a, fnv1a_random): read only the partition it gives the key.\n"
          "                       Default: every partition is read for the key (keys only), whatever the producer did\n"
          "  --html FILE          also write the timeline as one self-contained HTML page (no external assets)\n"
          "  --json               JSON lines (one object per event) on stdout instead of text\n"
          "  --tmp DIR            where the temporary state goes (default: $TMPDIR or /tmp)\n"
          "  -X kafka.P=V         a librdkafka property (e.g. -X kafka.security.protocol=SSL)\n"
          "\n"
          "Progress goes to stderr on a terminal. Exit codes: 0 done (an empty timeline too), 2 usage or\n"
          "configuration, 3 handler plugin problem (or the handler stopped the partition: the timeline ends there),\n"
          "4 could not read the log or write the temporary state (Kafka, I/O, the log no longer starts at 0).\n");
}

static void progress(void *arg, const esr_history_progress *p) {
  (void)arg;
  double secs = (double)(esr_now_ms() - p->started_ms) / 1000.0;
  double rate = secs > 0 ? (double)p->done / secs : 0;
  fprintf(stderr, "\r%s partition %d: %" PRId64, p->phase == ESR_HISTORY_SEARCH ? "searching" : "replaying",
          (int)p->partition, p->done);
  if (p->total >= 0) fprintf(stderr, "/%" PRId64, p->total);
  fputs(" messages", stderr);
  if (rate > 0) {
    fprintf(stderr, ", %.0f/s", rate);
    if (!p->last && p->total > p->done) fprintf(stderr, ", ETA %.0f s", (double)(p->total - p->done) / rate);
  }
  fputs(p->last ? "\033[K\n" : "\033[K", stderr);
}

int esr_cmd_history(int argc, char **argv) {
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                       {"bootstrap", required_argument, NULL, 'b'},
                                       {"handlers", required_argument, NULL, 'H'},
                                       {"schemas", required_argument, NULL, 's'},
                                       {"topic", required_argument, NULL, 't'},
                                       {"key", required_argument, NULL, 'k'},
                                       {"partition", required_argument, NULL, 'p'},
                                       {"partitioner", required_argument, NULL, 'P'},
                                       {"html", required_argument, NULL, 'o'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"tmp", required_argument, NULL, 'T'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *config = NULL, *bootstrap = NULL, *handlers = NULL, *schemas = NULL, *html = NULL;
  char **props = calloc((size_t)argc + 1, sizeof *props);
  int n_props = 0, c, status = 2, json = 0;
  esr_history_opts o = {.partition = -1};
  esr_config *cfg = NULL;
  esr_history *h = NULL;
  FILE *page = NULL;
  esr_error err = {0};
  if (!props) return 4;
  optind = 1;
  while ((c = getopt_long(argc, argv, "c:b:H:s:t:k:p:P:o:jT:hX:", opts, NULL)) != -1) {
    switch (c) {
    case 'c': config = optarg; break;
    case 'b': bootstrap = optarg; break;
    case 'H': handlers = optarg; break;
    case 's': schemas = optarg; break;
    case 't': o.topic = optarg; break;
    case 'k':
      o.key = optarg;
      o.key_len = strlen(optarg);
      break;
    case 'p': {
      char *end;
      long v = strtol(optarg, &end, 10);
      if (!*optarg || *end || v < 0 || v > INT32_MAX) {
        fprintf(stderr, "esr history: --partition takes a partition number, not '%s'\n", optarg);
        goto out;
      }
      o.partition = (int32_t)v;
      break;
    }
    case 'P': o.partitioner = optarg; break;
    case 'o': html = optarg; break;
    case 'j': json = 1; break;
    case 'T': o.tmp_dir = optarg; break;
    case 'X': props[n_props++] = optarg; break;
    case 'h': usage(stdout); status = 0; goto out;
    default: usage(stderr); goto out;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "esr history: unexpected argument '%s' (see --help)\n", argv[optind]);
    goto out;
  }
  if (!config == !bootstrap) {
    fprintf(stderr, "esr history: give one of --config FILE or --bootstrap SERVERS (see --help)\n");
    goto out;
  }
  if (!o.key) {
    fprintf(stderr, "esr history: --key K is required (see --help)\n");
    goto out;
  }
  if (o.partition >= 0 && o.partitioner) {
    fprintf(stderr, "esr history: give --partition or --partitioner, not both\n");
    goto out;
  }
  if (bootstrap && !handlers) {
    fprintf(stderr, "esr history: --handlers SO[,SO] is required with --bootstrap\n");
    goto out;
  }
  if (config) {
    if (esr_config_load(config, environ, &cfg, &err) != ESR_E_OK) {
      fprintf(stderr, "esr: %s\n", err.msg);
      status = esr_cmd_audit_exit(err.code);
      goto out;
    }
  } else if (!(cfg = esr_config_new()) ||
             esr_config_set(cfg, "kafka.bootstrap.servers", bootstrap, "--bootstrap", &err) != ESR_E_OK) {
    fprintf(stderr, "esr: %s\n", cfg ? err.msg : "out of memory");
    goto out;
  }
  if ((handlers && esr_config_set(cfg, "handlers", handlers, "--handlers", &err) != ESR_E_OK) ||
      (schemas && esr_config_set(cfg, "schemas.dir", schemas, "--schemas", &err) != ESR_E_OK)) {
    fprintf(stderr, "esr: %s\n", err.msg);
    goto out;
  }
  for (int i = 0; i < n_props; i++) {
    char *eq = strchr(props[i], '=');
    if (!eq || strncmp(props[i], "kafka.", 6) != 0) {
      fprintf(stderr, "esr history: -X takes kafka.PROPERTY=VALUE, not '%s'\n", props[i]);
      goto out;
    }
    *eq = '\0';
    if (esr_config_set(cfg, props[i], eq + 1, "-X", &err) != ESR_E_OK) {
      fprintf(stderr, "esr: %s\n", err.msg);
      goto out;
    }
  }
  if (!o.topic) {
    if (cfg->n_topics != 1) {
      fprintf(stderr, "esr history: --topic T is required%s\n",
              cfg->n_topics > 1 ? " (the configuration names several topics)" : "");
      goto out;
    }
    o.topic = cfg->topics[0];
  }
  if (html && !(page = fopen(html, "w"))) { /* before the work: a path that cannot be written fails at once */
    fprintf(stderr, "esr history: cannot write %s: %s\n", html, strerror(errno));
    status = 4;
    goto out;
  }
  esr_log_setup(ESR_LOG_WARN, ESR_LOG_TEXT); /* the replay's dead letters are the timeline's business, not the log's */
  if (isatty(STDERR_FILENO)) o.progress = progress;

  esr_code rc = esr_history_build(cfg, &o, &h, &err);
  if (rc != ESR_E_OK) {
    esr_config_redact(cfg, err.msg, sizeof err.msg);
    fprintf(stderr, "esr history: %s\n", err.msg);
    status = esr_cmd_audit_exit(rc);
    goto out;
  }
  if ((json ? esr_history_write_json(h, stdout) : esr_history_write_text(h, stdout)) != 0) {
    fprintf(stderr, "esr history: writing the timeline failed\n");
    status = 4;
    goto out;
  }
  if (page) {
    int bad = esr_history_write_html(h, page) != 0;
    if (fclose(page) != 0) bad = 1;
    page = NULL;
    if (bad) {
      fprintf(stderr, "esr history: cannot write %s: %s\n", html, strerror(errno));
      status = 4;
      goto out;
    }
  }
  status = h->stopped ? 3 : 0;
out:
  if (page) { /* the timeline was not made: no page rather than an empty one */
    fclose(page);
    remove(html);
  }
  esr_history_free(h);
  esr_config_free(cfg);
  free(props);
  return status;
}
