/* cmd_handler.c — `esr handler new` (scaffold.h) and `esr handler test` (handler_test.h): writing handlers. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "handler_test.h"
#include "log.h"
#include "scaffold.h"

static void usage(FILE *out) {
  fprintf(out,
          "usage: esr handler new NAME [--dir DIR]\n"
          "       esr handler test --handler FILE [--handler FILE]... [--schemas DIR] --events FILE.jsonl\n"
          "                        [--expect FILE] [--option STEM.KEY=VALUE]... [--topic NAME]\n"
          "\n"
          "new: writes a handler project into DIR (default ./NAME; it must be empty or absent): NAME.c, a CMakeLists.txt\n"
          "that builds it against an installed esr (find_package(esr)) and runs its test under ctest, schemas/, sample\n"
          "events (tests/events.jsonl) and what they must give (tests/expected.txt). It builds and passes as written.\n"
          "\n"
          "test: applies the events through the worker's own path (envelope, routing, upcast, schema, apply in a\n"
          "savepoint, rejections, dead letters, emits) into temporary databases, with no Kafka; twice, and the two\n"
          "state digests must be equal (a handler that reads the clock fails). FILE is a plugin (.so) or a SQL handler\n"
          "(.yaml). Events file: one JSON object per line:\n"
          "  {\"key\": \"ada\" | null, \"partition\": 0, \"offset\": 7, \"timestamp\": \"...\", \"value\": {...} | \"raw\": \"text\"}\n"
          "only value or raw is required; value is used byte for byte, raw is text that need not be JSON. Expectations\n"
          "file: sections separated by blank lines:\n"
          "  query: SELECT name, n FROM greetings ORDER BY name      then the rows, cells separated by '|' (NULL)\n"
          "  dead letters:                                           then OFFSET REASON lines (P/OFFSET REASON)\n"
          "  emits:                                                  then TOPIC|KEY|VALUE lines\n"
          "A mismatch is printed as a diff (- expected, + actual).\n"
          "\n"
          "exit codes: 0 passed, 1 an expectation not met or the two applications differ, 2 usage error or a bad\n"
          "events or expectations file, 3 a handler that cannot be loaded or stops the partition (ESR_FATAL)\n");
}

static int cmd_new(int argc, char **argv) {
  static const struct option opts[] = {{"dir", required_argument, NULL, 'd'}, {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *dir = NULL;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
    if (c == 'd') dir = optarg;
    else if (c == 'h') {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "esr handler new: see esr handler --help\n");
      return 2;
    }
  }
  if (optind != argc - 1) {
    fprintf(stderr, "esr handler new: expected one NAME (see esr handler --help)\n");
    return 2;
  }
  const char *name = argv[optind];
  esr_error err = {0};
  if (esr_scaffold_handler(name, dir ? dir : name, &err) != ESR_E_OK) {
    fprintf(stderr, "esr handler new: %s\n", err.msg);
    return esr_code_exit_status(err.code);
  }
  printf("wrote a handler project in %s: build it with\n  cmake -S %s -B %s/build -DCMAKE_PREFIX_PATH=<esr prefix> && "
         "cmake --build %s/build && ctest --test-dir %s/build\n",
         dir ? dir : name, dir ? dir : name, dir ? dir : name, dir ? dir : name, dir ? dir : name);
  return 0;
}

static int cmd_test(int argc, char **argv) {
  static const struct option opts[] = {{"handler", required_argument, NULL, 'H'}, {"schemas", required_argument, NULL, 's'},
                                       {"events", required_argument, NULL, 'e'},  {"expect", required_argument, NULL, 'x'},
                                       {"option", required_argument, NULL, 'o'},  {"topic", required_argument, NULL, 't'},
                                       {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
  char *handlers[16];
  esr_kv options[64];
  esr_handler_test_opts o = {.handlers = handlers, .options = options, .out = stdout};
  int c, rc = 2;
  optind = 1;
  while ((c = getopt_long(argc, argv, "H:s:e:x:o:t:h", opts, NULL)) != -1) {
    switch (c) {
    case 'H':
      if (o.n_handlers == 16) goto usage_error;
      handlers[o.n_handlers++] = optarg;
      break;
    case 's': o.schemas_dir = optarg; break;
    case 'e': o.events_path = optarg; break;
    case 'x': o.expect_path = optarg; break;
    case 't': o.topic = optarg; break;
    case 'o': {
      char *eq = strchr(optarg, '=');
      if (!eq || eq == optarg || o.n_options == 64) {
        fprintf(stderr, "esr handler test: --option expects STEM.KEY=VALUE, e.g. --option ledger.v1.currency=USD\n");
        return 2;
      }
      *eq = '\0';
      options[o.n_options++] = (esr_kv){optarg, eq + 1};
      break;
    }
    case 'h': usage(stdout); return 0;
    default: goto usage_error;
    }
  }
  if (optind != argc || !o.n_handlers || !o.events_path) {
    fprintf(stderr, "esr handler test: --handler and --events are required (see esr handler --help)\n");
    return 2;
  }
  esr_log_setup(ESR_LOG_WARN, ESR_LOG_TEXT); /* the report is the output; the per-event log lines are not */
  esr_handler_test_result res;
  esr_error err = {0};
  esr_code code = esr_handler_test_run(&o, &res, &err);
  if (code != ESR_E_OK) {
    fprintf(stderr, "esr handler test: %s\n", err.msg);
    return esr_code_exit_status(code);
  }
  rc = res.failures ? 1 : 0;
  printf("%s: %zu events, %zu applied, %zu dead-lettered, %zu emitted; the same state twice%s\n",
         rc ? "FAILED" : "passed", res.events, res.applied, res.dead, res.emitted,
         rc ? "" : (o.expect_path ? "; every expectation met" : ""));
  return rc;
usage_error:
  fprintf(stderr, "esr handler test: see esr handler --help\n");
  return 2;
}

int esr_cmd_handler(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "new") == 0) return cmd_new(argc - 1, argv + 1);
  if (strcmp(argv[1], "test") == 0) return cmd_test(argc - 1, argv + 1);
  fprintf(stderr, "esr handler: unknown subcommand '%s' (new, test)\n", argv[1]);
  return 2;
}
