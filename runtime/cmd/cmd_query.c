/* cmd_query.c — `esr query DIR 'SQL'`: read-only SQL over every partition database of a directory (query.h). */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "cmd.h"
#include "query.h"

static void usage(FILE *out) {
  fprintf(out,
          "usage: esr query [--format text|csv|json] DIR 'SQL'\n"
          "\n"
          "Read-only SQL over every partition database of DIR at once: a worker's state.dir, a replay's output\n"
          "(<topic>-<partition>.db files) or a checkpoint directory (the newest complete checkpoint of each\n"
          "<topic>-<partition>/). Each table is one union across the partitions, with a 'partition' column first and a\n"
          "hidden 'topic' column (named esr_partition / esr_topic when the table has its own column of that name);\n"
          "esr's own tables too (esr_offsets: next_offset, log_digest, counters). Each partition is read in one read\n"
          "transaction, so a query sees each partition at one instant; safe beside a running worker (read-only, WAL).\n"
          "Statements that would write (INSERT, UPDATE, DELETE, CREATE, DROP, ...), ATTACH and pragmas other than\n"
          "the schema-reading ones are refused before anything runs.\n"
          "\n"
          "  --format text   aligned columns with a header and a row count (the default)\n"
          "  --format csv    RFC 4180: a header line, CRLF line ends, NULL as an empty field\n"
          "  --format json   JSON lines: one object per row; exact integers; a blob as {\"hex\":\"...\"}\n"
          "\n"
          "examples:\n"
          "  esr query /var/lib/esr 'SELECT partition, next_offset FROM esr_offsets'\n"
          "  esr query --format csv /var/lib/esr \"SELECT * FROM accounts WHERE id = 'a1'\"\n"
          "\n"
          "Exit codes: 0 done, 2 usage, an SQL error or a refused statement, 4 a partition database could not be\n"
          "read.\n");
}

int esr_cmd_query(int argc, char **argv) {
  static const struct option opts[] = {{"format", required_argument, NULL, 'f'}, {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  esr_query_format fmt = ESR_QUERY_TEXT;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "f:h", opts, NULL)) != -1) {
    switch (c) {
    case 'f':
      if (strcmp(optarg, "text") == 0)
        fmt = ESR_QUERY_TEXT;
      else if (strcmp(optarg, "csv") == 0)
        fmt = ESR_QUERY_CSV;
      else if (strcmp(optarg, "json") == 0)
        fmt = ESR_QUERY_JSON;
      else {
        fprintf(stderr, "esr query: --format is text, csv or json, not '%s'\n", optarg);
        return 2;
      }
      break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (argc - optind != 2) {
    fprintf(stderr, "esr query: give a directory and one SQL text: esr query DIR 'SQL' (see --help)\n");
    return 2;
  }
  /* Three descriptors per partition (database, WAL, shared memory): take what the hard limit allows. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  esr_error err = {0};
  esr_query *q = NULL;
  esr_code rc = esr_query_open(argv[optind], &q, &err);
  if (rc == ESR_E_OK) rc = esr_query_run(q, argv[optind + 1], fmt, stdout, NULL, &err);
  esr_query_close(q);
  if (rc != ESR_E_OK) {
    fprintf(stderr, "esr query: %s\n", err.msg);
    return esr_cmd_audit_exit(rc);
  }
  return 0;
}
