/* ledger_poison.c — the ledger with one emit per applied event (ledger_echo.c), plus a defect on purpose: an event
 * whose data has "poison": "segv" dereferences NULL, "abort" calls abort(), "fpe" divides by zero, "loop" recurses until
 * the stack overflows. For the poison-event tests: everything else behaves exactly as the ledger, so the ledger oracle
 * applies. */
#include <stdlib.h>
#include <string.h>

#define ESRT_ECHO_INIT ledger_echo_init
#include "ledger_echo.c"

static int (*real_apply)(esr_ctx *, const esr_event *);

static int __attribute__((noinline)) overflow(volatile int depth) {
  volatile char pad[4096];
  pad[0] = (char)depth;
  return overflow(depth + 1) + pad[0];
}

static int poison_apply(esr_ctx *ctx, const esr_event *ev) {
  const char *poison = esr_json_string(ev->data, "poison");
  if (poison && strcmp(poison, "segv") == 0) {
    volatile int *null = NULL;
    *null = 1;
  } else if (poison && strcmp(poison, "abort") == 0) {
    abort();
  } else if (poison && strcmp(poison, "fpe") == 0) {
    volatile int num = 7, zero = 0; /* not 1 / x, which compilers turn into a comparison */
    return num / zero;
  } else if (poison && strcmp(poison, "loop") == 0) {
    return overflow(0);
  }
  return real_apply(ctx, ev);
}

ESR_HANDLER_EXPORT int esr_handler_init(const esr_host_api *h, esr_handler *out) {
  int rc = ledger_echo_init(h, out);
  real_apply = out->apply;
  out->apply = poison_apply;
  return rc;
}
