/* cmd.h — the subcommands of the `esr` executable. Each returns the process exit code:
 * 0 ok, 1 runtime failure, 2 usage or configuration, 3 handler or ABI problem. The audit commands (history, query)
 * use 1 for a difference and 4 when they could not check (Kafka, I/O). */
#ifndef ESR_CMD_H
#define ESR_CMD_H

#include "error.h"

int esr_cmd_run(int argc, char **argv);
int esr_cmd_mock_cluster(int argc, char **argv);
int esr_cmd_schema(int argc, char **argv);
int esr_cmd_dlq(int argc, char **argv);
int esr_cmd_handler(int argc, char **argv);
int esr_cmd_history(int argc, char **argv);
int esr_cmd_query(int argc, char **argv);

/* The exit code of an audit command for a failure of this class: 2 usage or configuration, 3 plugin, 4 could not
 * check (Kafka, I/O, SQLite, a log that no longer holds what is needed). */
static inline int esr_cmd_audit_status(esr_code code) {
  switch (code) {
  case ESR_E_OK: return 0;
  case ESR_E_CONFIG: return 2;
  case ESR_E_PLUGIN: return 3;
  default: return 4;
  }
}

#endif
