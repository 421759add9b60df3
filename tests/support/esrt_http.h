/* esrt_http.h — test support for the worker's HTTP endpoint: GET a URL, find the port a worker listens on from its
 * log, parse samples out of the Prometheus text format, and a free loopback port. */
#ifndef ESRT_HTTP_H
#define ESRT_HTTP_H

#include <stddef.h>

/* GET url (timeout_ms for the whole request). 0 with *status and *body (malloc'd, NUL-terminated; may be NULL when
 * not wanted), or -1 when no answer came. */
int esrt_http_get(const char *url, int timeout_ms, long *status, char **body);
/* The port of the worker's "listening on ... (port N)" line (component http) in its log, polled up to timeout_ms; -1 if none. */
int esrt_http_worker_port(const char *err_log, int timeout_ms);
/* The value of the first sample whose name and labels match: `series` is the text before the value, exactly as
 * written (e.g. "esr_partition_lag{topic=\"t\",partition=\"1\"}"). 0 and *value, or -1 when absent. */
int esrt_prom_value(const char *text, const char *series, double *value);
/* The sum of every sample of family `name` (no suffix) whose text before the value contains `filter` (NULL: all). */
double esrt_prom_sum(const char *text, const char *name, const char *filter);
/* A loopback TCP port that was free a moment ago, or -1. */
int esrt_free_port(void);

#endif
