/* cmd.h — the subcommands of the `esr` executable. Each returns the process exit code: 0 ok, 1 runtime failure, 2
 * usage or configuration, 3 handler or ABI problem. The audit commands (replay, verify, digest, history, query) have
 * their own: 0 done / equal, 1 a difference or a failed verification, 2 usage or configuration, 3 handler plugin
 * problem, 4 could not check (Kafka or I/O failure). */
#ifndef ESR_CMD_H
#define ESR_CMD_H

#include "config.h"
#include "error.h"
#include "replay_run.h"

int esr_cmd_run(int argc, char **argv);
int esr_cmd_mock_cluster(int argc, char **argv);
int esr_cmd_schema(int argc, char **argv);
int esr_cmd_dlq(int argc, char **argv);
int esr_cmd_handler(int argc, char **argv);
int esr_cmd_history(int argc, char **argv);
int esr_cmd_query(int argc, char **argv);

int esr_cmd_replay(int argc, char **argv);
int esr_cmd_verify(int argc, char **argv);
int esr_cmd_digest(int argc, char **argv);

/* cmd_audit.c: what the audit commands share. */
/* The exit code of an audit command for a failure of this class: 0, 2 usage or configuration, 3 plugin, 4 could not
 * check (Kafka, I/O, SQLite, a log that no longer holds what is needed). */
int esr_cmd_audit_exit(esr_code rc);

/* Where the log and the handlers come from: --config FILE, or --bootstrap with --handlers (and --schemas). */
typedef struct esr_cmd_source {
  const char *config, *bootstrap, *handlers, *schemas;
  char **props; /* -X kafka.PROPERTY=VALUE */
  int n_props;
  int need_handlers; /* --bootstrap without --handlers is a usage error */
  int verbose;       /* log at the configuration's level (default: warnings and errors only) */
} esr_cmd_source;

/* Builds the configuration; 0, or the exit code after printing one line. */
int esr_cmd_source_config(const char *cmd, const esr_cmd_source *src, esr_config **out);

typedef struct esr_cmd_progress_state {
  const char *cmd;
  int tty;   /* stderr is a terminal: progress is drawn there */
  int drawn; /* lines of the block drawn last */
} esr_cmd_progress_state;

void esr_cmd_progress_init(esr_cmd_progress_state *ps, const char *cmd);
/* replay_run.h callbacks: arg is an esr_cmd_progress_state. */
void esr_cmd_progress(void *arg, const esr_replay_report *r, int final);
void esr_cmd_note(void *arg, const char *line);

#endif
