/* cmd_query.c — `esr query DIR 'SQL'` (stub). */
#include "cmd.h"
int esr_cmd_query(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return 2;
}
