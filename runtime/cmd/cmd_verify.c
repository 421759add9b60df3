/* cmd_verify.c — `esr verify A B` (two state directories) and `esr verify --live --config FILE` (a worker's state
 * against a replay of the log to exactly its offsets). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "cmd.h"

static void usage(FILE *out) {
  fprintf(out,
          "usage: esr verify A B [--max-rows N]\n"
          "       esr verify --live --config FILE [--from-checkpoints] [--max-rows N] [--work DIR] [--keep]\n"
          "                  [--threads N]\n"
          "\n"
          "esr verify A B compares two state directories (a worker's state.dir, a replay, a copy) partition by\n"
          "partition: each <topic>-<partition>.db by its state digest (a SHA-256 of every handler table, its columns\n"
          "and its rows in key order, whatever the page layout). Where they differ it prints, for each table, the first\n"
          "differing rows: the row's key, the column, the value in A and in B.\n"
          "\n"
          "esr verify --live proves a worker's state: for each partition database of its state.dir it takes a\n"
          "consistent snapshot (read-only, beside the running worker), reads its next offset and state digest, replays\n"
          "the log to exactly that offset from offset 0, and prints both digests side by side. Where they differ it\n"
          "prints the rows, then replays those partitions again: two replays that differ name a non-deterministic\n"
          "handler.\n"
          "\n"
          "  --max-rows N         differing rows shown per table (default 10)\n"
          "  --from-checkpoints   replay from the worker's own checkpoints where possible (faster; proves less: the\n"
          "                       checkpoints are trusted, and the report says so)\n"
          "  --work DIR           where snapshots and replays go (default: a temporary directory, removed unless\n"
          "                       something differs)\n"
          "  --keep               keep the work directory\n"
          "  --threads N          partitions replayed at once (default: one per CPU)\n"
          "\n"
          "Exit codes: 0 equal, 1 a difference, 2 usage or configuration, 3 handler plugin problem, 4 could not\n"
          "check (Kafka or I/O failure, a gap in the log).\n");
}

static void print_line(void *arg, esr_audit_kind kind, const char *line) {
  (void)arg;
  if (kind == ESR_AUDIT_NOTE)
    printf("note: %s\n", line);
  else
    printf("%s\n", line);
  fflush(stdout);
}

int esr_cmd_verify(int argc, char **argv) {
  static const struct option opts[] = {{"live", no_argument, NULL, 'l'},
                                       {"config", required_argument, NULL, 'c'},
                                       {"from-checkpoints", no_argument, NULL, 'f'},
                                       {"max-rows", required_argument, NULL, 'm'},
                                       {"work", required_argument, NULL, 'w'},
                                       {"keep", no_argument, NULL, 'k'},
                                       {"threads", required_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int live = 0, from_cp = 0, max_rows = 10, keep = 0, threads = 0, c, status = 2;
  const char *config = NULL, *work = NULL;
  esr_config *cfg = NULL;
  esr_error err = {0};
  optind = 1;
  while ((c = getopt_long(argc, argv, "lc:fm:w:kj:h", opts, NULL)) != -1) {
    switch (c) {
    case 'l': live = 1; break;
    case 'c': config = optarg; break;
    case 'f': from_cp = 1; break;
    case 'm':
      max_rows = atoi(optarg);
      if (max_rows < 0) {
        fprintf(stderr, "esr verify: --max-rows takes a number >= 0, not '%s'\n", optarg);
        return 2;
      }
      break;
    case 'w': work = optarg; break;
    case 'k': keep = 1; break;
    case 'j':
      threads = atoi(optarg);
      if (threads < 1 || threads > 1024) {
        fprintf(stderr, "esr verify: --threads takes a number in 1..1024, not '%s'\n", optarg);
        return 2;
      }
      break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  int differences = 0;
  esr_code rc;
  if (!live) {
    if (config || from_cp || work || keep) {
      fprintf(stderr, "esr verify: --config, --from-checkpoints, --work and --keep go with --live\n");
      return 2;
    }
    if (argc - optind != 2) {
      fprintf(stderr, "esr verify: give two state directories A B, or --live --config FILE (see --help)\n");
      return 2;
    }
    rc = esr_audit_compare(argv[optind], argv[optind + 1], max_rows, print_line, NULL, &differences, &err);
  } else {
    if (optind < argc) {
      fprintf(stderr, "esr verify --live: unexpected argument '%s'\n", argv[optind]);
      return 2;
    }
    esr_cmd_source src = {.config = config};
    if (!config) {
      fprintf(stderr, "esr verify --live: --config FILE (the worker's configuration) is required\n");
      return 2;
    }
    if ((status = esr_cmd_source_config("verify", &src, &cfg)) != 0) return status;
    esr_cmd_progress_state ps;
    esr_cmd_progress_init(&ps, "verify");
    esr_audit_live_opts o = {.cfg = cfg,
                             .from_checkpoints = from_cp,
                             .max_rows = max_rows,
                             .work_dir = work,
                             .keep = keep,
                             .threads = threads,
                             .fn = print_line,
                             .replay_note = esr_cmd_note,
                             .replay_progress = esr_cmd_progress,
                             .replay_arg = &ps};
    rc = esr_audit_live(&o, &differences, &err);
  }
  if (rc != ESR_E_OK) {
    if (cfg) esr_config_redact(cfg, err.msg, sizeof err.msg);
    fprintf(stderr, "esr verify: %s\n", err.msg);
    status = esr_cmd_audit_exit(rc);
  } else {
    if (differences)
      printf("%d partition(s) DIFFERENT\n", differences);
    else
      printf("equal\n");
    status = differences ? 1 : 0;
  }
  esr_config_free(cfg);
  return status;
}
