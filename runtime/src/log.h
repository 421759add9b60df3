/* esr/log.h — the process's log: one line per record on stderr.
 *
 * Format `json` (one JSON object per line: ts, level, component, msg; the default when stderr is not a terminal) or
 * `text` (for people at a terminal). Thread-safe: a record is written with one write(2). Library modules do not log
 * errors they return; the caller that handles an error logs it once. Levels below the configured one are dropped.
 */
#ifndef ESR_LOG_H
#define ESR_LOG_H

#include <stdarg.h>

#include "esr/handler.h" /* ESR_LOG_DEBUG..ESR_LOG_ERROR */

typedef enum esr_log_format { ESR_LOG_AUTO = 0, ESR_LOG_JSON, ESR_LOG_TEXT } esr_log_format;

void esr_log_setup(int min_level, esr_log_format format);
int esr_log_enabled(int level);
void esr_log(int level, const char *component, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void esr_logv(int level, const char *component, const char *fmt, va_list ap);
/* Parses "debug|info|warn|error"; returns -1 when unknown. */
int esr_log_level_parse(const char *s);

#endif
