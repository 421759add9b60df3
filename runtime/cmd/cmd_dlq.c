/* cmd_dlq.c — `esr dlq replay`: dead-lettered events back into their source topic after a fix. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "config.h"
#include "dlq_replay.h"

extern char **environ;

static void usage(FILE *out) {
  fprintf(out,
          "usage: esr dlq replay (--config FILE | --bootstrap SERVERS) [--dlq TOPIC] [--to TOPIC] [--reason R]...\n"
          "                      [--source-partition P] [--from-offset N] [--to-offset M] [--by-key] [--dry-run]\n"
          "                      [--allow-unverified]\n"
          "                      [-X kafka.PROPERTY=VALUE]...\n"
          "\n"
          "Reads the dead-letter topic from its start to its current end and produces each dead-lettered event (once,\n"
          "whatever the duplicates) back with its original key and value: to the same partition of its source topic,\n"
          "or to --to TOPIC. Each re-sent message carries esr-replayed-from (the dead letter's topic/partition/offset)\n"
          "and esr-replayed-reason. Use it after fixing what made a handler reject events; the worker then applies them\n"
          "as new events, after everything already in the partition.\n"
          "\n"
          "Each dead letter is re-sent at most once across runs: before sending, the replay reads the partitions it\n"
          "would send to (from one past the lowest source offset concerned; from their start with --to or --by-key)\n"
          "and skips every dead letter that an earlier run re-sent there. A re-sent event that is dead-lettered again\n"
          "is a new dead letter that a later run re-sends. Runs must not overlap and must use the same --to/--by-key.\n"
          "\n"
          "  --config FILE          a worker configuration: its kafka.* settings and its dlq.topic\n"
          "  --bootstrap SERVERS    Kafka bootstrap servers (instead of --config)\n"
          "  --dlq TOPIC            the dead-letter topic (default: dlq.topic of --config)\n"
          "  --to TOPIC             produce there instead of each dead letter's source topic\n"
          "  --reason R             only dead letters with this esr-reason (repeatable): rejected, invalid, schema, ...\n"
          "  --source-partition P   only dead letters of this source partition\n"
          "  --from-offset N, --to-offset M   only source offsets in [N, M]\n"
          "  --by-key               partition by key with the producer's partitioner instead of the source partition\n"
          "  --dry-run              list what would be re-sent; send nothing\n"
          "  --allow-unverified     also re-send dead letters whose earlier re-send, if any, retention has deleted\n"
          "                         (by default they are skipped: whether they were re-sent cannot be known)\n"
          "  -X kafka.P=V           a librdkafka property (e.g. -X kafka.security.protocol=SSL)\n"
          "\n"
          "Prints one line per re-sent event and a summary. Exit codes: 0 done, 1 Kafka failure, 2 usage or "
          "configuration.\n");
}

static int replay(int argc, char **argv) {
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                       {"bootstrap", required_argument, NULL, 'b'},
                                       {"dlq", required_argument, NULL, 'd'},
                                       {"to", required_argument, NULL, 't'},
                                       {"reason", required_argument, NULL, 'r'},
                                       {"source-partition", required_argument, NULL, 'p'},
                                       {"from-offset", required_argument, NULL, 'f'},
                                       {"to-offset", required_argument, NULL, 'o'},
                                       {"by-key", no_argument, NULL, 'k'},
                                       {"dry-run", no_argument, NULL, 'n'},
                                       {"allow-unverified", no_argument, NULL, 'u'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *config = NULL, *bootstrap = NULL;
  const char **reasons = calloc((size_t)argc + 1, sizeof *reasons);
  char **props = calloc((size_t)argc + 1, sizeof *props);
  int n_reasons = 0, n_props = 0, c, status = 2;
  esr_dlq_replay_opts o = {.source_partition = -1, .from_offset = -1, .to_offset = -1, .list = stdout};
  esr_config *cfg = NULL;
  esr_error err = {0};
  optind = 1;
  while ((c = getopt_long(argc, argv, "c:b:d:t:r:p:f:o:knuhX:", opts, NULL)) != -1) {
    switch (c) {
    case 'c': config = optarg; break;
    case 'b': bootstrap = optarg; break;
    case 'd': o.dlq_topic = optarg; break;
    case 't': o.target_topic = optarg; break;
    case 'r': reasons[n_reasons++] = optarg; break;
    case 'p': o.source_partition = (int32_t)atoi(optarg); break;
    case 'f': o.from_offset = strtoll(optarg, NULL, 10); break;
    case 'o': o.to_offset = strtoll(optarg, NULL, 10); break;
    case 'k': o.by_key = 1; break;
    case 'n': o.dry_run = 1; break;
    case 'u': o.allow_unverified = 1; break;
    case 'X': props[n_props++] = optarg; break;
    case 'h': usage(stdout); status = 0; goto out;
    default: usage(stderr); goto out;
    }
  }
  if (!config == !bootstrap) {
    fprintf(stderr, "esr dlq replay: give one of --config FILE or --bootstrap SERVERS (see --help)\n");
    goto out;
  }
  if (config) {
    if (esr_config_load(config, environ, &cfg, &err) != ESR_E_OK) {
      fprintf(stderr, "esr: %s\n", err.msg);
      status = esr_code_exit_status(err.code);
      goto out;
    }
    if (!o.dlq_topic) o.dlq_topic = cfg->dlq_topic;
  } else {
    cfg = esr_config_new();
    if (!cfg || esr_config_set(cfg, "kafka.bootstrap.servers", bootstrap, "--bootstrap", &err) != ESR_E_OK) {
      fprintf(stderr, "esr: %s\n", err.msg);
      goto out;
    }
  }
  for (int i = 0; i < n_props; i++) {
    char *eq = strchr(props[i], '=');
    if (!eq || strncmp(props[i], "kafka.", 6) != 0) {
      fprintf(stderr, "esr dlq replay: -X takes kafka.PROPERTY=VALUE, not '%s'\n", props[i]);
      goto out;
    }
    *eq = '\0';
    if (esr_config_set(cfg, props[i], eq + 1, "-X", &err) != ESR_E_OK) {
      fprintf(stderr, "esr: %s\n", err.msg);
      goto out;
    }
  }
  if (!o.dlq_topic) {
    fprintf(stderr, "esr dlq replay: --dlq TOPIC is required with --bootstrap\n");
    goto out;
  }
  o.reasons = reasons;
  esr_dlq_replay_stats st;
  esr_code rc = esr_dlq_replay(cfg, &o, &st, &err);
  printf("%s %" PRId64 " event(s) from %s (%" PRId64 " dead letters read: %" PRId64 " duplicates, %" PRId64
         " filtered out, %" PRId64 " without esr headers, %" PRId64 " already re-sent, %" PRId64 " unverified)\n",
         o.dry_run ? "would re-send" : "re-sent", st.resent, o.dlq_topic, st.read, st.duplicates, st.filtered,
         st.foreign, st.already, st.unverified);
  printf("looked for earlier re-sends in %" PRId64 " partition(s): %" PRId64 " message(s) read\n",
         st.checked_partitions, st.checked_messages);
  if (st.already > 0)
    printf("%" PRId64 " dead letter(s) were re-sent by an earlier run and were not sent again\n", st.already);
  if (st.unverified > 0)
    printf("%" PRId64 " dead letter(s) were not re-sent: retention deleted part of the partitions where an earlier "
           "re-send would be, so whether they were re-sent cannot be known (--allow-unverified re-sends them)\n",
           st.unverified);
  if (rc != ESR_E_OK) {
    fprintf(stderr, "esr: %s\n", err.msg);
    if (rc == ESR_E_NOMEM && err.lib_code == E2BIG)
      fprintf(stderr, "esr: replay fewer dead letters at a time (--source-partition, --from-offset/--to-offset)\n");
    status = esr_code_exit_status(rc);
    goto out;
  }
  status = 0;
out:
  esr_config_free(cfg);
  free(reasons);
  free(props);
  return status;
}

int esr_cmd_dlq(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "replay") == 0) return replay(argc - 1, argv + 1);
  if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0)) {
    usage(stdout);
    return 0;
  }
  fprintf(stderr, "esr dlq: the subcommand is replay (esr dlq replay --help)\n");
  return 2;
}
