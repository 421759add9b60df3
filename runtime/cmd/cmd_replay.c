/* cmd_replay.c — `esr replay`: a topic's log replayed into fresh partition databases; `esr replay verify`. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "digest.h"
#include "replay_manifest.h"
#include "replay_run.h"

static void usage(FILE *out) {
  fprintf(out,
          "usage: esr replay (--config FILE | --bootstrap SERVERS --handlers SO[,SO] [--schemas DIR]) [--topic T]\n"
          "                  [--partition P]... [--to OFFSET | --to TIME] --out DIR [--force] [--sign-key PEM]\n"
          "                  [--no-checkpoints] [--threads N] [-X kafka.PROPERTY=VALUE]...\n"
          "       esr replay verify DIR [--pub PEM] [--bootstrap SERVERS | --config FILE]\n"
          "\n"
          "Builds fresh partition databases DIR/<topic>-<partition>.db (the layout and tables of a worker's state.dir)\n"
          "from the log, through the worker's own apply path with the same handlers, handler options, schemas and\n"
          "upcasts. Isolated: it never writes a worker's databases, never publishes and joins no consumer group; dead\n"
          "letters stay in each database's esr_outbox table, with the worker's reasons. Partitions replay in parallel.\n"
          "At the end DIR/replay.json records versions, plugin hashes, offsets, log and state digests and counts.\n"
          "\n"
          "  --config FILE        a worker configuration: kafka.*, handlers, handler.* options, schemas.dir, dlq.topic,\n"
          "                       and its checkpoints (checkpoint.dir, checkpoint.store) to start from\n"
          "  --bootstrap SERVERS  Kafka bootstrap servers (instead of --config), with --handlers and --schemas\n"
          "  --topic T            the topic (default: the configuration's only topic)\n"
          "  --partition P        only these partitions (repeatable; 0,2,5-7); default every partition\n"
          "  --to OFFSET          the state after every event with offset < OFFSET of each partition; an OFFSET beyond a\n"
          "                       partition's end is refused, naming the end\n"
          "  --to TIME            the state after the longest prefix of each partition whose Kafka timestamps are at or\n"
          "                       before TIME (RFC 3339: 2026-06-30T23:59:59Z, 2026-06-30T23:59:59.5+02:00)\n"
          "                       (default: each partition's end as the replay begins)\n"
          "  --out DIR            the output directory: empty or absent\n"
          "  --force              use a DIR that is not empty (the files a replay writes there are replaced)\n"
          "  --sign-key PEM       sign replay.json with this Ed25519 private key (DIR/replay.json.sig)\n"
          "  --no-checkpoints     always from offset 0 (by default, with --config, each partition starts from the\n"
          "                       newest checkpoint at or before its target that verifies, and says so)\n"
          "  --threads N          partitions replayed at once (default: one per CPU)\n"
          "  --verbose            log as the worker does (each dead letter; default: warnings and errors only)\n"
          "  -X kafka.P=V         a librdkafka property\n"
          "\n"
          "esr replay verify DIR checks a replay: with --pub the signature of replay.json; for each partition the\n"
          "file's SHA-256, its position and its state digest recomputed from the file; with --bootstrap or --config,\n"
          "the log digests recomputed from the log.\n"
          "\n"
          "Progress on a terminal (stderr): events, rate and ETA per partition; otherwise one summary line.\n"
          "Exit codes: 0 done (verify: every check passed), 1 (verify) a check failed, 2 usage or configuration,\n"
          "3 handler plugin problem, 4 could not replay or check (Kafka or I/O failure, a gap in the log).\n");
}

static void print_check(void *arg, esr_check_kind kind, const char *what) {
  (void)arg;
  printf("%s %s\n", kind == ESR_CHECK_OK ? "ok    " : kind == ESR_CHECK_FAILED ? "FAILED" : "note  ", what);
}

static int verify(int argc, char **argv) {
  static const struct option opts[] = {{"pub", required_argument, NULL, 'p'},
                                       {"bootstrap", required_argument, NULL, 'b'},
                                       {"config", required_argument, NULL, 'c'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *pub = NULL;
  esr_cmd_source src = {0};
  char **props = calloc((size_t)argc + 1, sizeof *props);
  int c, status = 2;
  esr_config *cfg = NULL;
  optind = 1;
  while ((c = getopt_long(argc, argv, "p:b:c:hX:", opts, NULL)) != -1) {
    switch (c) {
    case 'p': pub = optarg; break;
    case 'b': src.bootstrap = optarg; break;
    case 'c': src.config = optarg; break;
    case 'X': props[src.n_props++] = optarg; break;
    case 'h': usage(stdout); status = 0; goto out;
    default: usage(stderr); goto out;
    }
  }
  if (optind != argc - 1) {
    fprintf(stderr, "esr replay verify: give one directory (see --help)\n");
    goto out;
  }
  const char *dir = argv[optind];
  src.props = props;
  if ((src.config || src.bootstrap) && (status = esr_cmd_source_config("replay verify", &src, &cfg)) != 0) goto out;
  int failures = 0;
  esr_error err = {0};
  esr_code rc = esr_replay_manifest_verify(dir, pub, cfg, print_check, NULL, &failures, &err);
  if (rc != ESR_E_OK) {
    fprintf(stderr, "esr replay verify: %s\n", err.msg);
    status = esr_cmd_audit_exit(rc);
    goto out;
  }
  if (failures)
    printf("%s: %d check(s) FAILED\n", dir, failures);
  else
    printf("%s: every check passed\n", dir);
  status = failures ? 1 : 0;
out:
  esr_config_free(cfg);
  free(props);
  return status;
}

static int parse_offset(const char *s, int64_t *out) {
  if (!*s) return -1;
  char *end;
  long long v = strtoll(s, &end, 10);
  if (*end || v < 0) return -1;
  *out = v;
  return 0;
}

static void print_part(const esr_replay_report *r, const esr_replay_part *p) {
  char state[65];
  esr_digest_hex(p->state_digest, state);
  char from[64];
  if (p->from_checkpoint)
    snprintf(from, sizeof from, "from the checkpoint at %" PRId64, p->from);
  else
    snprintf(from, sizeof from, "from offset %" PRId64, p->from);
  printf("%s[%d]: offsets [%" PRId64 ", %" PRId64 ") %s: %" PRId64 " events, %" PRId64 " applied, %" PRId64
         " dead-lettered; state %s\n",
         r->topic, (int)p->partition, p->from, p->pos.next_offset, from, p->events, p->applied, p->dead, state);
}

int esr_cmd_replay(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "verify") == 0) return verify(argc - 1, argv + 1);
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                       {"bootstrap", required_argument, NULL, 'b'},
                                       {"handlers", required_argument, NULL, 'H'},
                                       {"schemas", required_argument, NULL, 's'},
                                       {"topic", required_argument, NULL, 't'},
                                       {"partition", required_argument, NULL, 'p'},
                                       {"to", required_argument, NULL, 'T'},
                                       {"out", required_argument, NULL, 'o'},
                                       {"force", no_argument, NULL, 'f'},
                                       {"sign-key", required_argument, NULL, 'k'},
                                       {"no-checkpoints", no_argument, NULL, 'n'},
                                       {"threads", required_argument, NULL, 'j'},
                                       {"verbose", no_argument, NULL, 'v'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  esr_cmd_source src = {.need_handlers = 1};
  char **props = calloc((size_t)argc + 1, sizeof *props);
  char parts_text[4096] = "";
  const char *topic = NULL, *to = NULL, *out_dir = NULL, *sign_key = NULL;
  int force = 0, no_cp = 0, threads = 0, c, status = 2;
  esr_config *cfg = NULL, *scratch = NULL;
  esr_replayer *rp = NULL;
  esr_replay_report rep = {0};
  esr_error err = {0};
  optind = 1;
  while ((c = getopt_long(argc, argv, "c:b:H:s:t:p:T:o:fk:nj:vhX:", opts, NULL)) != -1) {
    switch (c) {
    case 'c': src.config = optarg; break;
    case 'b': src.bootstrap = optarg; break;
    case 'H': src.handlers = optarg; break;
    case 's': src.schemas = optarg; break;
    case 't': topic = optarg; break;
    case 'p': {
      size_t len = strlen(parts_text);
      snprintf(parts_text + len, sizeof parts_text - len, "%s%s", len ? "," : "", optarg);
      break;
    }
    case 'T': to = optarg; break;
    case 'o': out_dir = optarg; break;
    case 'f': force = 1; break;
    case 'k': sign_key = optarg; break;
    case 'n': no_cp = 1; break;
    case 'v': src.verbose = 1; break;
    case 'j':
      threads = atoi(optarg);
      if (threads < 1 || threads > 1024) {
        fprintf(stderr, "esr replay: --threads takes a number in 1..1024, not '%s'\n", optarg);
        goto out;
      }
      break;
    case 'X': props[src.n_props++] = optarg; break;
    case 'h': usage(stdout); status = 0; goto out;
    default: usage(stderr); goto out;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "esr replay: unexpected argument '%s'\n", argv[optind]);
    goto out;
  }
  if (!out_dir) {
    fprintf(stderr, "esr replay: --out DIR is required (see --help)\n");
    goto out;
  }
  src.props = props;
  if ((status = esr_cmd_source_config("replay", &src, &cfg)) != 0) goto out;
  status = 2;
  if (!topic) {
    if (cfg->n_topics != 1) {
      fprintf(stderr, "esr replay: --topic T is required%s\n", cfg->n_topics ? " (the configuration has several)" : "");
      goto out;
    }
    topic = cfg->topics[0];
  }
  esr_replay_opts o = {.topic = topic,
                       .out_dir = out_dir,
                       .force = force,
                       .checkpoints = src.config && !no_cp,
                       .threads = threads,
                       .note = esr_cmd_note,
                       .progress = esr_cmd_progress};
  if (parts_text[0]) {
    if (!(scratch = esr_config_new()) || esr_config_set(scratch, "partitions", parts_text, "--partition", &err) != ESR_E_OK) {
      fprintf(stderr, "esr replay: --partition takes partition numbers (0,2,5-7), not '%s'\n", parts_text);
      goto out;
    }
    o.n_partitions = scratch->n_partitions;
  }
  int32_t *plist = NULL;
  if (scratch) {
    plist = calloc(scratch->n_partitions + 1, sizeof *plist);
    for (size_t i = 0; plist && i < scratch->n_partitions; i++) plist[i] = scratch->partitions[i];
    o.partitions = plist;
  }
  if (to) {
    int64_t v;
    if (parse_offset(to, &v) == 0) {
      o.target = ESR_REPLAY_TO_OFFSET;
      o.to = v;
    } else if (esr_replay_parse_time(to, &v) == 0) {
      o.target = ESR_REPLAY_TO_TIME;
      o.to = v;
    } else {
      fprintf(stderr, "esr replay: --to '%s' is neither an offset (a number >= 0) nor a time with a zone "
                      "(2026-06-30T23:59:59Z)\n", to);
      free(plist);
      goto out;
    }
  }
  if (sign_key && esr_replay_key_check(sign_key, &err) != ESR_E_OK) {
    fprintf(stderr, "esr replay: %s\n", err.msg);
    free(plist);
    goto out;
  }
  esr_cmd_progress_state ps;
  esr_cmd_progress_init(&ps, "replay");
  o.cb_arg = &ps;
  esr_code rc = esr_replayer_new(cfg, &rp, &err);
  if (rc == ESR_E_OK) rc = esr_replayer_run(rp, &o, &rep, &err);
  if (rc == ESR_E_OK) rc = esr_replay_manifest_write(rp, &rep, out_dir, sign_key, &err);
  free(plist);
  if (rc != ESR_E_OK) {
    esr_config_redact(cfg, err.msg, sizeof err.msg);
    fprintf(stderr, "esr replay: %s\n", err.msg);
    status = esr_cmd_audit_exit(rc);
    goto out;
  }
  int64_t events = 0, applied = 0, dead = 0;
  int from_cp = 0;
  for (size_t i = 0; i < rep.n; i++) {
    print_part(&rep, &rep.parts[i]);
    events += rep.parts[i].events;
    applied += rep.parts[i].applied;
    dead += rep.parts[i].dead;
    from_cp += rep.parts[i].from_checkpoint;
  }
  fprintf(stderr,
          "esr replay: %zu partition(s) of %s, %" PRId64 " events in %.2f s (%.0f events/s; %d thread(s)): %" PRId64
          " applied, %" PRId64 " dead-lettered; %d partition(s) from a checkpoint; %s/replay.json%s\n",
          rep.n, rep.topic, events, rep.seconds, rep.seconds > 0 ? (double)events / rep.seconds : 0.0, rep.threads,
          applied, dead, from_cp, out_dir, sign_key ? " (signed)" : "");
  status = 0;
out:
  esr_replay_report_clear(&rep);
  esr_replayer_free(rp);
  esr_config_free(scratch);
  esr_config_free(cfg);
  free(props);
  return status;
}
