/* esr/error.h — error codes and the caller's error buffer.
 *
 * Every fallible esr function returns an esr_code (0 is success) and fills a caller-supplied `esr_error` with the class
 * of the failure, the underlying library's own code (SQLite extended code, rd_kafka_resp_err_t, errno) and a message.
 * Callers decide from `code`, never from the text; each caller may prefix context ("partition ledger-3: ..."). Library
 * functions never print: the one who handles the error logs it once. Passing NULL as the error is allowed.
 */
#ifndef ESR_ERROR_H
#define ESR_ERROR_H

#include <stddef.h>

typedef enum esr_code {
  ESR_E_OK = 0,
  ESR_E_CONFIG,   /* bad configuration or usage: fix the input (exit 2) */
  ESR_E_PLUGIN,   /* a handler plugin cannot be loaded or broke its contract (exit 3) */
  ESR_E_IO,       /* file system, network: often retriable */
  ESR_E_SQLITE,   /* the database: lib_code holds SQLite's extended code */
  ESR_E_KAFKA,    /* librdkafka: lib_code holds rd_kafka_resp_err_t */
  ESR_E_NOMEM,
  ESR_E_BADINPUT, /* an event that cannot be used: it goes to the dead-letter topic */
  ESR_E_GAP,      /* the log no longer holds the events needed to resume */
  ESR_E_CORRUPT,  /* a database or file failed its integrity check */
  ESR_E_STATE,    /* an operation in the wrong state (a programming or sequencing error) */
  ESR_E_REDO,     /* the open batch was rolled back on purpose: apply it again from the committed position */
} esr_code;

typedef struct esr_error {
  esr_code code;
  int lib_code;
  char msg[512];
} esr_error;

/* Sets the error and returns `code`, so that `return esr_error_set(err, ...)` reads naturally. */
esr_code esr_error_set(esr_error *err, esr_code code, int lib_code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Puts "context: " before the current message. Returns err->code (ESR_E_OK when err is NULL). */
esr_code esr_error_prefix(esr_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void esr_error_clear(esr_error *err);
/* A short name of the code ("sqlite", "kafka", ...). */
const char *esr_code_name(esr_code code);
/* The command-line exit code for a failure of this class: 2 config, 3 plugin, 1 otherwise. */
int esr_code_exit_status(esr_code code);

#endif
