/* esrt_http.c — test support for the worker's HTTP endpoint (see esrt_http.h). */
#include "esrt_http.h"

#include <curl/curl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "esrt_proc.h"

typedef struct buf {
  char *p;
  size_t n;
} buf;

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg) {
  buf *b = arg;
  size_t k = size * nmemb;
  char *g = realloc(b->p, b->n + k + 1);
  if (!g) return 0;
  memcpy(g + b->n, data, k);
  b->p = g;
  b->n += k;
  b->p[b->n] = '\0';
  return k;
}

int esrt_http_get(const char *url, int timeout_ms, long *status, char **body) {
  CURL *c = curl_easy_init();
  if (!c) return -1;
  buf b = {calloc(1, 1), 0};
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
  curl_easy_cleanup(c);
  if (rc != CURLE_OK) {
    free(b.p);
    return -1;
  }
  if (body)
    *body = b.p;
  else
    free(b.p);
  return 0;
}

int esrt_http_worker_port(const char *err_log, int timeout_ms) {
  int64_t deadline = esrt_now_ms() + timeout_ms;
  for (;;) {
    char *log = esrt_read_file(err_log, NULL);
    const char *at = log ? strstr(log, "listening on ") : NULL;
    const char *p = at ? strstr(at, "(port ") : NULL;
    int port = p ? atoi(p + 6) : -1;
    free(log);
    if (port > 0) return port;
    if (esrt_now_ms() >= deadline) return -1;
    esrt_sleep_ms(20);
  }
}

int esrt_prom_value(const char *text, const char *series, double *value) {
  size_t n = strlen(series);
  for (const char *line = text; line && *line;) {
    if (strncmp(line, series, n) == 0 && line[n] == ' ') {
      *value = strtod(line + n + 1, NULL);
      return 0;
    }
    line = strchr(line, '\n');
    if (line) line++;
  }
  return -1;
}

double esrt_prom_sum(const char *text, const char *name, const char *filter) {
  size_t n = strlen(name);
  double sum = 0;
  for (const char *line = text; line && *line;) {
    const char *eol = strchr(line, '\n');
    if (strncmp(line, name, n) == 0 && (line[n] == ' ' || line[n] == '{')) {
      const char *sp = line[n] == '{' ? strstr(line, "} ") : line + n;
      if (sp && (!eol || sp < eol)) {
        sp += line[n] == '{' ? 2 : 1;
        size_t head = (size_t)(sp - line);
        char tmp[1024];
        snprintf(tmp, sizeof tmp, "%.*s", (int)(head < sizeof tmp ? head : sizeof tmp - 1), line);
        if (!filter || strstr(tmp, filter)) sum += strtod(sp, NULL);
      }
    }
    line = eol ? eol + 1 : NULL;
  }
  return sum;
}

int esrt_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  int port = -1;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &l) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}
