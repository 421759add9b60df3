/* http.h — the worker's HTTP endpoint: /healthz, /readyz and /metrics, on libmicrohttpd's thread of its own.
 *
 * The server binds the address itself before anything else runs, so that a port in use is a configuration error at
 * start (ESR_E_CONFIG naming http.listen and the fix), then serves GET and HEAD on one internal polling thread of
 * libmicrohttpd. Each route is a callback that builds its whole answer from what the caller's code reads (atomics,
 * esr/metrics.h): it runs on the HTTP thread and must never wait for an apply thread. Anything but the three paths is
 * 404; other methods 405. Connections idle for 10 s are closed; at most 64 at once.
 */
#ifndef ESR_HTTP_H
#define ESR_HTTP_H

#include <stddef.h>

#include "error.h"

typedef struct esr_http esr_http;

/* A route's answer: its HTTP status; *body is malloc'd (the server frees it) and *len its length, or NULL on failure
 * (answered 500). */
typedef int (*esr_http_fn)(void *arg, char **body, size_t *len);

typedef struct esr_http_routes {
  esr_http_fn healthz, readyz, metrics;
  void *arg;
} esr_http_routes;

/* listen: "host:port", "[v6addr]:port" or ":port" (every IPv4 address); port 0 picks a free one (esr_http_port).
 * The address is checked by esr_http_parse_listen; an address that cannot be bound is ESR_E_CONFIG. */
esr_code esr_http_start(const char *listen, const esr_http_routes *routes, esr_http **out, esr_error *err);
/* The port it listens on. */
int esr_http_port(const esr_http *h);
/* Stops the thread, closes the socket. NULL is a no-op. */
void esr_http_stop(esr_http *h);

/* Splits "host:port" into host (cap bytes; "" for every address) and port. 0, or -1 when malformed. */
int esr_http_parse_listen(const char *listen, char *host, size_t cap, int *port);

#endif
