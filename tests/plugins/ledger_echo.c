/* ledger_echo.c — the real ledger handler, plus one emitted event for each event it applies: to topic "ledger.out",
 * with the event's key and the value {"offset":N} (its esr-source is "<topic>/<partition>/<offset>/1"). For the tests
 * that count duplicates among emitted events as well as among dead letters. Rejected and invalid events emit nothing
 * (their emit is rolled back with them), so the ledger oracle tells which offsets must have exactly one emit.
 * A test hook: the environment variable ESRT_ECHO_DELAY_US (read at init) makes each apply sleep that long, so that a
 * test can catch a worker in the middle of a backlog (the state does not depend on it). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define esr_handler_init ledger_real_init
#include "../../handlers/ledger/ledger.c"
#undef esr_handler_init

#ifndef ESRT_ECHO_INIT /* the poison plugin wraps this one under another name */
#define ESRT_ECHO_INIT esr_handler_init
#endif

#define ECHO_TOPIC "ledger.out"

static int (*echo_real_apply)(esr_ctx *, const esr_event *);
static long echo_delay_us;

static int echo_apply(esr_ctx *ctx, const esr_event *ev) {
  if (echo_delay_us > 0) {
    struct timespec ts = {echo_delay_us / 1000000, (echo_delay_us % 1000000) * 1000};
    nanosleep(&ts, NULL);
  }
  int rc = echo_real_apply(ctx, ev);
  if (rc != ESR_OK) return rc;
  char v[64];
  int n = snprintf(v, sizeof v, "{\"offset\":%" PRId64 "}", ev->offset);
  if (host->emit(ctx, ECHO_TOPIC, ev->key, ev->key ? ev->key_len : 0, v, (size_t)n) != 0) return ESR_FATAL;
  return ESR_OK;
}

ESR_HANDLER_EXPORT int ESRT_ECHO_INIT(const esr_host_api *h, esr_handler *out) {
  int rc = ledger_real_init(h, out);
  const char *delay = getenv("ESRT_ECHO_DELAY_US");
  echo_delay_us = delay ? strtol(delay, NULL, 10) : 0;
  echo_real_apply = out->apply;
  out->apply = echo_apply;
  return rc;
}
