/* cmd_digest.c — `esr digest DB...`: the state digest of partition databases, as sha256sum prints file hashes. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "digest.h"
#include "statedigest.h"

static void usage(FILE *out) {
  fprintf(out,
          "usage: esr digest DB...\n"
          "\n"
          "Prints '<state digest>  <path>' for each database, as sha256sum does for files. The state digest is a\n"
          "SHA-256 of every table not named esr_* or sqlite_*: its columns (PRAGMA table_xinfo) and its rows in\n"
          "primary-key order (a table without a declared key: rows in the order of their encoding, rowid left out),\n"
          "each value with its type. Equal states give equal digests whatever their history (VACUUM, checkpoints,\n"
          "batch sizes). A database a worker is writing is read as of one commit, without blocking it.\n"
          "\n"
          "Exit codes: 0 every digest printed, 2 usage, 4 a database could not be read.\n");
}

int esr_cmd_digest(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage(stdout);
    return 0;
  }
  int status = 0;
  for (int i = 1; i < argc; i++) {
    esr_state_summary sum;
    esr_error err = {0};
    if (esr_state_summarize_file(argv[i], &sum, &err) != ESR_E_OK) {
      fprintf(stderr, "esr digest: %s\n", err.msg);
      status = 4;
      continue;
    }
    char hex[65];
    esr_digest_hex(sum.state_digest, hex);
    printf("%s  %s\n", hex, argv[i]);
  }
  return status;
}
