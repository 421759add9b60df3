/* http.c — the worker's HTTP endpoint on libmicrohttpd (see http.h). */
#include "http.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct esr_http {
  struct MHD_Daemon *d;
  int fd;
  int port;
  esr_http_routes routes;
};

int esr_http_parse_listen(const char *listen, char *host, size_t cap, int *port) {
  const char *colon;
  if (listen[0] == '[') {
    const char *close = strchr(listen, ']');
    if (!close || close[1] != ':' || (size_t)(close - listen - 1) >= cap) return -1;
    memcpy(host, listen + 1, (size_t)(close - listen - 1));
    host[close - listen - 1] = '\0';
    colon = close + 1;
  } else {
    colon = strrchr(listen, ':');
    if (!colon || (size_t)(colon - listen) >= cap || memchr(listen, ':', (size_t)(colon - listen))) return -1;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
  }
  char *end;
  errno = 0;
  long p = strtol(colon + 1, &end, 10);
  if (errno || end == colon + 1 || *end || p < 0 || p > 65535) return -1;
  *port = (int)p;
  return 0;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
  (void)version, (void)upload_data, (void)con_cls;
  esr_http *h = cls;
  if (*upload_size) return MHD_NO; /* no route takes a body */
  int status;
  char *body = NULL;
  size_t len = 0;
  const char *type = "text/plain; charset=utf-8";
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    status = MHD_HTTP_METHOD_NOT_ALLOWED;
    body = strdup("only GET and HEAD\n");
  } else if (strcmp(url, "/healthz") == 0) {
    status = h->routes.healthz(h->routes.arg, &body, &len);
  } else if (strcmp(url, "/readyz") == 0) {
    status = h->routes.readyz(h->routes.arg, &body, &len);
  } else if (strcmp(url, "/metrics") == 0) {
    status = h->routes.metrics(h->routes.arg, &body, &len);
    type = "text/plain; version=0.0.4; charset=utf-8";
  } else {
    status = MHD_HTTP_NOT_FOUND;
    body = strdup("not found: /healthz, /readyz, /metrics\n");
  }
  if (!body) {
    status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    type = "text/plain; charset=utf-8";
    body = strdup("out of memory\n");
    if (!body) return MHD_NO;
  }
  if (!len) len = strlen(body);
  struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, r);
  MHD_destroy_response(r);
  return ret;
}

esr_code esr_http_start(const char *listen_at, const esr_http_routes *routes, esr_http **out, esr_error *err) {
  *out = NULL;
  char host[256];
  int port;
  if (esr_http_parse_listen(listen_at, host, sizeof host, &port) != 0)
    return esr_error_set(err, ESR_E_CONFIG, 0, "config: http.listen = '%s': expected host:port, e.g. 0.0.0.0:9464",
                         listen_at);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  struct addrinfo *ai = NULL;
  char ps[16];
  snprintf(ps, sizeof ps, "%d", port);
  int gai = getaddrinfo(host[0] ? host : "0.0.0.0", ps, &hints, &ai);
  if (gai != 0)
    return esr_error_set(err, ESR_E_CONFIG, gai, "config: http.listen = '%s': cannot resolve '%s': %s", listen_at,
                         host, gai_strerror(gai));
  esr_http *h = calloc(1, sizeof *h);
  esr_code rc = ESR_E_OK;
  if (!h) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto fail;
  }
  h->routes = *routes;
  h->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
  if (h->fd < 0) {
    rc = esr_error_set(err, ESR_E_IO, errno, "http.listen = '%s': socket: %s", listen_at, strerror(errno));
    goto fail;
  }
  int one = 1;
  setsockopt(h->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* a restart need not wait for TIME_WAIT */
  if (bind(h->fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(h->fd, 64) != 0) {
    int e = errno;
    rc = esr_error_set(err, ESR_E_CONFIG, e, "config: http.listen = '%s': cannot listen there: %s%s", listen_at,
                       strerror(e),
                       e == EADDRINUSE ? " (another process uses the port): choose another port or stop that process"
                       : e == EACCES   ? ": ports below 1024 need privileges; choose a port above 1023"
                                       : ": choose an address of this host, e.g. 0.0.0.0:9464");
    goto fail;
  }
  struct sockaddr_storage sa;
  socklen_t sl = sizeof sa;
  getsockname(h->fd, (struct sockaddr *)&sa, &sl);
  h->port = sa.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&sa)->sin6_port)
                                     : ntohs(((struct sockaddr_in *)&sa)->sin_port);
  h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL, answer, h,
                          MHD_OPTION_LISTEN_SOCKET, h->fd, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                          MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_END);
  if (!h->d) {
    rc = esr_error_set(err, ESR_E_IO, 0, "http.listen = '%s': the HTTP server could not start", listen_at);
    goto fail;
  }
  freeaddrinfo(ai);
  *out = h;
  return ESR_E_OK;
fail:
  freeaddrinfo(ai);
  if (h && h->fd >= 0) close(h->fd);
  free(h);
  return rc;
}

int esr_http_port(const esr_http *h) { return h ? h->port : -1; }

void esr_http_stop(esr_http *h) {
  if (!h) return;
  MHD_stop_daemon(h->d);
  close(h->fd); /* a socket given with MHD_OPTION_LISTEN_SOCKET stays ours */
  free(h);
}
