/* esr.c — the `esr` command: a thin front over the library, one subcommand per job. */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "cmd.h"
#include "store.h"

static void usage(FILE *out) {
  fprintf(out,
          "esr %s — event-sourcing recovery runtime: Kafka partitions applied to SQLite state, exactly once.\n"
          "\n"
          "usage: esr <command> [options]\n"
          "\n"
          "commands:\n"
          "  run --config FILE      run a worker (see 'esr run --help' for the configuration keys)\n"
          "  mock-cluster           host librdkafka's mock Kafka cluster in this process, for tests and demos\n"
          "  schema check SCHEMA    validate JSON documents against a JSON Schema (draft-07), as the worker does\n"
          "  dlq replay             put dead-lettered events back into their source topic after a fix\n"
          "  handler new|test       start a handler project; test a handler on events from a file, no Kafka\n"
          "  history --key K        one entity's timeline: its events and the row changes each made\n"
          "  query DIR 'SQL'        read-only SQL over every partition database of a state directory\n"
          "  replay                 replay a topic's log into fresh partition databases (an audit); replay verify\n"
          "  verify                 compare two states, or prove a worker's state against a replay (--live)\n"
          "  digest DB...           print the state digest of partition databases\n"
          "  help [COMMAND]         show help\n"
          "  version                print the version\n"
          "\n"
          "exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error, 3 handler plugin or ABI problem;\n"
          "audit commands (replay, verify, digest): 0 done or equal, 1 a difference or failed verification, 2 usage\n"
          "or configuration, 3 handler plugin problem, 4 could not check (Kafka or I/O failure)\n",
          ESR_VERSION);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  esr_alloc_setup();
  esr_store_init_library();
  if (strcmp(cmd, "run") == 0) return esr_cmd_run(argc - 1, argv + 1);
  if (strcmp(cmd, "mock-cluster") == 0) return esr_cmd_mock_cluster(argc - 1, argv + 1);
  if (strcmp(cmd, "schema") == 0) return esr_cmd_schema(argc - 1, argv + 1);
  if (strcmp(cmd, "dlq") == 0) return esr_cmd_dlq(argc - 1, argv + 1);
  if (strcmp(cmd, "handler") == 0) return esr_cmd_handler(argc - 1, argv + 1);
  if (strcmp(cmd, "history") == 0) return esr_cmd_history(argc - 1, argv + 1);
  if (strcmp(cmd, "query") == 0) return esr_cmd_query(argc - 1, argv + 1);
  if (strcmp(cmd, "replay") == 0) return esr_cmd_replay(argc - 1, argv + 1);
  if (strcmp(cmd, "verify") == 0) return esr_cmd_verify(argc - 1, argv + 1);
  if (strcmp(cmd, "digest") == 0) return esr_cmd_digest(argc - 1, argv + 1);
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
    printf("esr %s (malloc: %s)\n", ESR_VERSION, esr_alloc_name());
    return 0;
  }
  if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    if (argc > 2) {
      char *sub[] = {argv[2], "--help", NULL};
      if (strcmp(argv[2], "run") == 0) return esr_cmd_run(2, sub);
      if (strcmp(argv[2], "mock-cluster") == 0) return esr_cmd_mock_cluster(2, sub);
      if (strcmp(argv[2], "schema") == 0) return esr_cmd_schema(2, sub);
      if (strcmp(argv[2], "dlq") == 0) return esr_cmd_dlq(2, sub);
      if (strcmp(argv[2], "handler") == 0) return esr_cmd_handler(2, sub);
      if (strcmp(argv[2], "history") == 0) return esr_cmd_history(2, sub);
      if (strcmp(argv[2], "query") == 0) return esr_cmd_query(2, sub);
      if (strcmp(argv[2], "replay") == 0) return esr_cmd_replay(2, sub);
      if (strcmp(argv[2], "verify") == 0) return esr_cmd_verify(2, sub);
      if (strcmp(argv[2], "digest") == 0) return esr_cmd_digest(2, sub);
    }
    usage(stdout);
    return 0;
  }
  fprintf(stderr, "esr: unknown command '%s'\n", cmd);
  usage(stderr);
  return 2;
}
