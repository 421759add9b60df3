/* cmd.h — the subcommands of the `esr` executable. Each returns the process exit code:
 * 0 ok, 1 runtime failure, 2 usage or configuration, 3 handler or ABI problem. */
#ifndef ESR_CMD_H
#define ESR_CMD_H

int esr_cmd_run(int argc, char **argv);
int esr_cmd_mock_cluster(int argc, char **argv);
int esr_cmd_schema(int argc, char **argv);
int esr_cmd_dlq(int argc, char **argv);
int esr_cmd_handler(int argc, char **argv);

#endif
