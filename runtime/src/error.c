/* error.c — the esr_error buffer: set, prefix, name. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

esr_code esr_error_set(esr_error *err, esr_code code, int lib_code, const char *fmt, ...) {
  if (!err) return code;
  err->code = code;
  err->lib_code = lib_code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  return code;
}

esr_code esr_error_prefix(esr_error *err, const char *fmt, ...) {
  if (!err) return ESR_E_OK;
  char prefix[256], old[sizeof err->msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, err->msg, sizeof old);
  snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
  return err->code;
}

void esr_error_clear(esr_error *err) {
  if (!err) return;
  err->code = ESR_E_OK;
  err->lib_code = 0;
  err->msg[0] = '\0';
}

const char *esr_code_name(esr_code code) {
  switch (code) {
  case ESR_E_OK: return "ok";
  case ESR_E_CONFIG: return "config";
  case ESR_E_PLUGIN: return "plugin";
  case ESR_E_IO: return "io";
  case ESR_E_SQLITE: return "sqlite";
  case ESR_E_KAFKA: return "kafka";
  case ESR_E_NOMEM: return "nomem";
  case ESR_E_BADINPUT: return "bad-input";
  case ESR_E_GAP: return "gap";
  case ESR_E_CORRUPT: return "corrupt";
  case ESR_E_STATE: return "state";
  case ESR_E_REDO: return "redo";
  }
  return "unknown";
}

int esr_code_exit_status(esr_code code) {
  switch (code) {
  case ESR_E_OK: return 0;
  case ESR_E_CONFIG: return 2;
  case ESR_E_PLUGIN: return 3;
  default: return 1;
  }
}
