/* esrt_s3.c — the local S3 server as a child process (through esrt_spawn, so it is reaped with every other child)
 * and signed requests to it with libcurl (CURLOPT_AWS_SIGV4). */
#include "esrt_s3.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int esrt_s3_installed(const char *server_dir) {
  char path[2048];
  snprintf(path, sizeof path, "%s/node_modules/@20minutes/s3rver", server_dir);
  return access(path, F_OK) == 0;
}

static size_t discard(char *p, size_t s, size_t n, void *arg) {
  (void)p;
  (void)arg;
  return s * n;
}

/* A signed request with an empty body; returns the HTTP status, 0 when no answer came. */
static long request(const esrt_s3 *s, const char *method, const char *path) {
  CURL *h = curl_easy_init();
  if (!h) return 0;
  char url[512], hdr[128], hex[65];
  uint8_t sha[32];
  unsigned int len = 32;
  EVP_Digest("", 0, sha, &len, EVP_sha256(), NULL);
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", sha[i]);
  snprintf(url, sizeof url, "%s%s", s->endpoint, path);
  snprintf(hdr, sizeof hdr, "x-amz-content-sha256: %s", hex);
  struct curl_slist *hdrs = curl_slist_append(NULL, hdr);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_AWS_SIGV4, "aws:amz:" ESRT_S3_REGION ":s3");
  curl_easy_setopt(h, CURLOPT_USERNAME, ESRT_S3_KEY_ID);
  curl_easy_setopt(h, CURLOPT_PASSWORD, ESRT_S3_SECRET);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
  long status = 0;
  if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);
  return status;
}

int esrt_s3_start(esrt_s3 *s, const char *node, const char *server_dir, const char *dir, int timeout_ms) {
  memset(s, 0, sizeof *s);
  if (!esrt_s3_installed(server_dir)) {
    fprintf(stderr, "esrt: the S3 server is not installed in %s (the ctest fixture s3_npm_ci installs it)\n",
            server_dir);
    return -1;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  char script[2048], data[2048], port_file[2048];
  snprintf(script, sizeof script, "%s/s3server.js", server_dir);
  snprintf(data, sizeof data, "%s/s3-data", dir);
  snprintf(port_file, sizeof port_file, "%s/s3-port", dir);
  /* s3server.js writes "port=N" to descriptor 3; it stops when its standard input (our pipe) closes. s3rver makes
   * continuation tokens with DES, which OpenSSL 3 keeps in its legacy provider. */
  char *argv[] = {"/bin/sh", "-c", "exec \"$0\" --openssl-legacy-provider \"$1\" \"$2\" 3>\"$3\"", (char *)node,
                  script, data, port_file, NULL};
  if (esrt_spawn(&s->proc, dir, "s3server", argv, 1) != 0) return -1;
  int64_t deadline = esrt_now_ms() + timeout_ms;
  while (s->port <= 0) {
    char *text = esrt_read_file(port_file, NULL);
    if (text) {
      const char *p = strstr(text, "port=");
      if (p && strchr(p, '\n')) s->port = atoi(p + 5);
      free(text);
    }
    if (s->port > 0) break;
    if (!esrt_alive(&s->proc) || esrt_now_ms() >= deadline) {
      fprintf(stderr, "esrt: the S3 server did not start (see %s)\n", s->proc.err_path);
      return -1;
    }
    esrt_sleep_ms(20);
  }
  snprintf(s->endpoint, sizeof s->endpoint, "http://127.0.0.1:%d", s->port);
  while (request(s, "GET", "/") == 0) { /* listening is not serving yet */
    if (esrt_now_ms() >= deadline) {
      fprintf(stderr, "esrt: the S3 server at %s does not answer\n", s->endpoint);
      return -1;
    }
    esrt_sleep_ms(20);
  }
  return 0;
}

int esrt_s3_make_bucket(esrt_s3 *s, const char *bucket) {
  char path[256];
  snprintf(path, sizeof path, "/%s", bucket);
  long status = request(s, "PUT", path);
  if (status != 200) {
    fprintf(stderr, "esrt: creating bucket %s at %s: HTTP %ld\n", bucket, s->endpoint, status);
    return -1;
  }
  return 0;
}

int esrt_s3_stop(esrt_s3 *s) {
  if (s->proc.stdin_fd >= 0) {
    close(s->proc.stdin_fd);
    s->proc.stdin_fd = -1;
  }
  return esrt_stop(&s->proc, 10000);
}
