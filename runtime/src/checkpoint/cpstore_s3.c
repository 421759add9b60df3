/* cpstore_s3.c — the s3:// checkpoint store: S3's REST API (PUT, GET, DELETE object; ListObjectsV2) through libcurl,
 * signed with AWS Signature Version 4 by libcurl (CURLOPT_AWS_SIGV4). Two things libcurl 7.88 leaves to us: the
 * x-amz-content-sha256 header S3 requires (we send the real SHA-256 of every body: the manifest's for a data object,
 * so S3 itself refuses bytes that differ), and the canonical query string (libcurl signs the query as written, so we
 * write it sorted and RFC 3986-encoded). Bodies stream from and to files; only listings, manifests and error documents
 * are held in memory, each capped. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cp_internal.h"
#include "digest.h"

#define PATH_CAP 4096
#define MEM_CAP (4 << 20) /* listings pages, manifests, error documents */
/* esr_cpstore_check makes one attempt per request, bounded: a worker starting while the store is unreachable waits
 * at most this long before it goes on with a warning. */
#define CHECK_CONNECT_MS 2000
#define CHECK_REQUEST_MS 5000
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef struct s3 {
  CURL *h;
  char *bucket, *prefix; /* prefix: no slash at either end, may be "" */
  char *base;            /* "<endpoint>/<bucket>" (path-style) or "https://<bucket>.s3.<region>.amazonaws.com" */
  int path_style;
  char *key_id, *secret, *token;
  char sigv4[128];
  long connect_timeout_ms, request_timeout_ms, stall_timeout_s, backoff_ms;
  int max_attempts, page_size;
  int (*cancel)(void *arg);
  void *cancel_arg;
} s3;

static int cancelled(const s3 *s) { return s->cancel && s->cancel(s->cancel_arg); }

/* ---- buffers, encoding, XML ------------------------------------------------------------------------------------- */

typedef struct membuf {
  char *data;
  size_t len, cap;
  int overflow;
} membuf;

static int mem_append(membuf *b, const void *p, size_t n) {
  if (b->len + n + 1 > MEM_CAP) {
    b->overflow = 1;
    return -1;
  }
  if (b->len + n + 1 > b->cap) {
    size_t ncap = b->cap ? b->cap : 4096;
    while (ncap < b->len + n + 1) ncap *= 2;
    char *grown = realloc(b->data, ncap);
    if (!grown) return -1;
    b->data = grown;
    b->cap = ncap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

static void mem_reset(membuf *b) {
  b->len = 0;
  b->overflow = 0;
  if (b->data) b->data[0] = '\0';
}

/* RFC 3986 percent-encoding as SigV4 wants it (upper-case hex); '/' kept when keep_slash. */
static int uri_encode(membuf *out, const char *s, int keep_slash) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
        *p == '.' || *p == '~' || (keep_slash && *p == '/')) {
      if (mem_append(out, p, 1) != 0) return -1;
    } else {
      char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
      if (mem_append(out, e, 3) != 0) return -1;
    }
  }
  return 0;
}

/* Decodes the five XML entities and numeric references (ASCII range) in place. */
static void xml_unescape(char *s) {
  static const struct {
    const char *ent;
    char c;
  } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
  char *w = s;
  for (char *r = s; *r;) {
    if (*r == '&') {
      int done = 0;
      for (size_t i = 0; i < sizeof ents / sizeof ents[0] && !done; i++) {
        size_t n = strlen(ents[i].ent);
        if (strncmp(r, ents[i].ent, n) == 0) {
          *w++ = ents[i].c;
          r += n;
          done = 1;
        }
      }
      if (!done && r[1] == '#') {
        char *end = NULL;
        long v = r[2] == 'x' ? strtol(r + 3, &end, 16) : strtol(r + 2, &end, 10);
        if (end && *end == ';' && v > 0 && v < 128) {
          *w++ = (char)v;
          r = end + 1;
          done = 1;
        }
      }
      if (done) continue;
    }
    *w++ = *r++;
  }
  *w = '\0';
}

/* The text of the first <tag>...</tag> at or after *pos (advanced past it), unescaped; NULL when absent. Malloc'd. */
static char *xml_next(const char **pos, const char *tag) {
  char open[64], close[64];
  snprintf(open, sizeof open, "<%s>", tag);
  snprintf(close, sizeof close, "</%s>", tag);
  const char *a = strstr(*pos, open);
  if (!a) return NULL;
  a += strlen(open);
  const char *b = strstr(a, close);
  if (!b) return NULL;
  *pos = b + strlen(close);
  char *v = strndup(a, (size_t)(b - a));
  if (v) xml_unescape(v);
  return v;
}

static char *xml_first(const char *doc, const char *tag) {
  const char *pos = doc;
  return doc ? xml_next(&pos, tag) : NULL;
}

/* ---- requests ---------------------------------------------------------------------------------------------------- */

typedef struct upload_src {
  int fd;          /* a file body, or */
  const char *mem; /* a body in memory */
  int64_t size, sent;
  EVP_MD_CTX *sha; /* file bodies: hashed on the way and compared with `expect` before the last byte */
  const uint8_t *expect;
  int mismatch, read_error;
} upload_src;

typedef struct response {
  CURL *h;
  int fd; /* a 2xx body goes here when >= 0; anything else to mem */
  membuf mem;
  int write_error;
} response;

static size_t on_read(char *buf, size_t size, size_t nitems, void *arg) {
  upload_src *u = arg;
  size_t want = size * nitems;
  if ((int64_t)want > u->size - u->sent) want = (size_t)(u->size - u->sent);
  if (want == 0) return 0;
  if (u->mem) {
    memcpy(buf, u->mem + u->sent, want);
    u->sent += (int64_t)want;
    return want;
  }
  ssize_t n;
  do n = read(u->fd, buf, want);
  while (n < 0 && errno == EINTR);
  if (n <= 0) { /* an error, or the file shrank under us */
    u->read_error = n < 0 ? errno : EIO;
    return CURL_READFUNC_ABORT;
  }
  EVP_DigestUpdate(u->sha, buf, (size_t)n);
  u->sent += n;
  if (u->sent == u->size && u->expect) {
    uint8_t got[32];
    unsigned int len = 32;
    EVP_DigestFinal_ex(u->sha, got, &len);
    /* Withholding the last bytes leaves the object unwritten: S3 never stores a body shorter than Content-Length. */
    if (memcmp(got, u->expect, 32) != 0) {
      u->mismatch = 1;
      return CURL_READFUNC_ABORT;
    }
  }
  return (size_t)n;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *arg) {
  response *r = arg;
  size_t n = size * nmemb;
  long status = 0;
  curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &status);
  if (r->fd >= 0 && status >= 200 && status < 300) {
    for (size_t off = 0; off < n;) {
      ssize_t w = write(r->fd, data + off, n - off);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        r->write_error = errno;
        return 0;
      }
      off += (size_t)w;
    }
    return n;
  }
  if (mem_append(&r->mem, data, n) != 0) return r->mem.overflow && status >= 300 ? n : 0; /* error text: truncated */
  return n;
}

static int transient_curl(CURLcode c) {
  switch (c) {
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_CONNECT:
  case CURLE_OPERATION_TIMEDOUT:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM: return 1;
  default: return 0;
  }
}

static int transient_http(long status, const char *code) {
  if (status >= 500 || status == 429 || status == 408) return 1;
  return code &&
         (strcmp(code, "RequestTimeout") == 0 || strcmp(code, "SlowDown") == 0 || strcmp(code, "InternalError") == 0);
}

static void backoff(const s3 *s, int attempt) {
  long ms = s->backoff_ms;
  for (int i = 1; i < attempt && ms < 5000; i++) ms *= 2;
  if (ms > 5000) ms = 5000;
  ms += (long)(((unsigned)rand() % 1000) * (unsigned long)ms / 2000); /* up to +50%: retries of many workers spread */
  for (long left = ms; left > 0 && !cancelled(s); left -= 50) { /* in slices: a cancel is seen within 50 ms */
    long slice = left < 50 ? left : 50;
    struct timespec ts = {0, slice * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
  (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
  return cancelled(arg);
}

/* `key` "" is the bucket itself (listing). The URL goes to url (for messages too: it never holds credentials). */
static esr_code make_url(const s3 *s, const char *key, const char *query, membuf *url, esr_error *err) {
  mem_reset(url);
  int bad = mem_append(url, s->base, strlen(s->base));
  if (*key || !s->path_style) bad |= mem_append(url, "/", 1);
  bad |= uri_encode(url, key, 1);
  if (query && *query) bad |= mem_append(url, "?", 1) | mem_append(url, query, strlen(query));
  return bad ? esr_error_set(err, ESR_E_NOMEM, 0, "out of memory") : ESR_E_OK;
}

typedef struct request {
  const char *method; /* GET, PUT, DELETE */
  const char *key;
  const char *query;        /* canonical: sorted, encoded */
  upload_src *body;         /* PUT */
  const char *payload_hash; /* hex SHA-256 of the body */
  int out_fd;               /* GET into a file, else into resp->mem */
  const char *header;       /* one more header ("x-amz-copy-source: ..."), signed with the others; optional */
} request;

/* Fills err from a failed response: "<METHOD> <url>: HTTP <status> <Code>: <Message>". */
static esr_code http_error(const request *q, const char *url, long status, const membuf *body, esr_error *err) {
  char *code = xml_first(body->data, "Code"), *msg = xml_first(body->data, "Message");
  esr_code c = ESR_E_IO;
  if (status == 401 || status == 403 || (code && strcmp(code, "NoSuchBucket") == 0)) c = ESR_E_CONFIG;
  esr_error_set(err, c, (int)status, "%s %s: HTTP %ld%s%s%s%s", q->method, url, status, code ? " " : "",
                code ? code : "", msg ? ": " : "", msg ? msg : "");
  free(code);
  free(msg);
  return c;
}

/* One request with retries. On success resp holds the 2xx body (unless it went to out_fd) and *status the code. */
static esr_code perform(s3 *s, const request *q, response *resp, long *status_out, esr_error *err) {
  membuf url = {0};
  struct curl_slist *hdrs = NULL;
  char line[512];
  esr_code rc = make_url(s, q->key, q->query, &url, err);
  if (rc != ESR_E_OK) goto done;
  snprintf(line, sizeof line, "x-amz-content-sha256: %s", q->payload_hash ? q->payload_hash : EMPTY_SHA256);
  struct curl_slist *h2 = curl_slist_append(hdrs, line);
  if (h2) hdrs = h2;
  if (h2 && s->token) {
    char *tok = NULL;
    if (asprintf(&tok, "x-amz-security-token: %s", s->token) < 0) tok = NULL;
    h2 = tok ? curl_slist_append(hdrs, tok) : NULL;
    free(tok);
    if (h2) hdrs = h2;
  }
  if (h2 && q->header) {
    h2 = curl_slist_append(hdrs, q->header);
    if (h2) hdrs = h2;
  }
  if (!h2) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto done;
  }
  for (int attempt = 1;; attempt++) {
    if (cancelled(s)) {
      rc = esr_error_set(err, ESR_E_STATE, 0, "%s %s: cancelled", q->method, url.data);
      goto done;
    }
    CURL *h = s->h;
    curl_easy_reset(h);
    mem_reset(&resp->mem);
    resp->write_error = 0;
    if (resp->fd >= 0 && (ftruncate(resp->fd, 0) != 0 || lseek(resp->fd, 0, SEEK_SET) != 0)) {
      rc = esr_error_set(err, ESR_E_IO, errno, "cannot rewind the download file: %s", strerror(errno));
      goto done;
    }
    if (q->body) {
      upload_src *u = q->body;
      u->sent = 0;
      u->mismatch = u->read_error = 0;
      if (!u->mem) {
        if (lseek(u->fd, 0, SEEK_SET) != 0) {
          rc = esr_error_set(err, ESR_E_IO, errno, "cannot rewind the upload file: %s", strerror(errno));
          goto done;
        }
        EVP_DigestInit_ex(u->sha, EVP_sha256(), NULL);
      }
      curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
      curl_easy_setopt(h, CURLOPT_READDATA, u);
      curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)u->size);
    } else if (strcmp(q->method, "GET") != 0) {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
    }
    curl_easy_setopt(h, CURLOPT_URL, url.data);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, s->sigv4);
    curl_easy_setopt(h, CURLOPT_USERNAME, s->key_id);
    curl_easy_setopt(h, CURLOPT_PASSWORD, s->secret);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "esr/" ESR_VERSION);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, s->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, s->request_timeout_ms);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, s->stall_timeout_s);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (s->cancel) {
      curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
      curl_easy_setopt(h, CURLOPT_XFERINFODATA, s);
      curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    }
    resp->h = h;
    CURLcode cc = curl_easy_perform(h);
    if (cc == CURLE_ABORTED_BY_CALLBACK && cancelled(s)) {
      rc = esr_error_set(err, ESR_E_STATE, 0, "%s %s: cancelled", q->method, url.data);
      goto done;
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (q->body && q->body->mismatch) {
      rc = esr_error_set(err, ESR_E_CORRUPT, 0, "%s %s: the local file differs from its manifest's SHA-256", q->method,
                         url.data);
      goto done;
    }
    if (q->body && q->body->read_error) {
      rc = esr_error_set(err, ESR_E_IO, q->body->read_error, "%s %s: reading the local file: %s", q->method, url.data,
                         strerror(q->body->read_error));
      goto done;
    }
    if (resp->write_error) {
      rc = esr_error_set(err, ESR_E_IO, resp->write_error, "%s %s: writing the download: %s", q->method, url.data,
                         strerror(resp->write_error));
      goto done;
    }
    if (cc == CURLE_OK && status >= 200 && status < 300) {
      *status_out = status;
      rc = ESR_E_OK;
      goto done;
    }
    int again;
    if (cc != CURLE_OK && !(cc == CURLE_WRITE_ERROR && status >= 300)) {
      again = transient_curl(cc);
      rc = esr_error_set(err, ESR_E_IO, (int)cc, "%s %s: %s", q->method, url.data,
                         resp->mem.overflow ? "response too large" : curl_easy_strerror(cc));
    } else {
      char *code = xml_first(resp->mem.data, "Code");
      again = transient_http(status, code);
      free(code);
      rc = http_error(q, url.data, status, &resp->mem, err);
      *status_out = status;
    }
    if (!again || attempt >= s->max_attempts) {
      if (attempt > 1) esr_error_prefix(err, "after %d attempts", attempt);
      goto done;
    }
    backoff(s, attempt);
  }
done:
  curl_slist_free_all(hdrs);
  free(url.data);
  return rc;
}

/* ---- keys ---------------------------------------------------------------------------------------------------- */

/* "<prefix>/<topic>-<partition>/" (prefix part omitted when empty). */
static int part_prefix(const s3 *s, const char *topic, int32_t partition, char *buf, size_t cap) {
  int n = snprintf(buf, cap, "%s%s%s-%d/", s->prefix, *s->prefix ? "/" : "", topic, (int)partition);
  return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int object_key(const s3 *s, const char *topic, int32_t partition, int64_t offset, const char *ext, char *buf,
                      size_t cap) {
  char p[PATH_CAP];
  if (part_prefix(s, topic, partition, p, sizeof p) != 0) return -1;
  int n = snprintf(buf, cap, "%s%020" PRId64 "%s", p, offset, ext);
  return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Lists every key under the partition's prefix (ListObjectsV2, following continuation tokens). */
static esr_code list_names(s3 *s, const char *topic, int32_t partition, esr__cp_names *names, esr_error *err) {
  char prefix[PATH_CAP], page[32];
  if (part_prefix(s, topic, partition, prefix, sizeof prefix) != 0)
    return esr_error_set(err, ESR_E_CONFIG, 0, "key prefix too long");
  snprintf(page, sizeof page, "%d", s->page_size);
  response resp = {.fd = -1};
  membuf query = {0};
  char *token = NULL;
  esr_code rc = ESR_E_OK;
  for (;;) {
    /* Canonical order: continuation-token, list-type, max-keys, prefix. */
    mem_reset(&query);
    int bad = 0;
    if (token)
      bad |= mem_append(&query, "continuation-token=", 19) | uri_encode(&query, token, 0) | mem_append(&query, "&", 1);
    bad |= mem_append(&query, "list-type=2&max-keys=", 21) | mem_append(&query, page, strlen(page)) |
           mem_append(&query, "&prefix=", 8) | uri_encode(&query, prefix, 0);
    if (bad) {
      rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
      break;
    }
    request q = {.method = "GET", .key = "", .query = query.data, .out_fd = -1};
    long status = 0;
    if ((rc = perform(s, &q, &resp, &status, err)) != ESR_E_OK) break;
    const char *pos = resp.mem.data ? resp.mem.data : "";
    if (!strstr(pos, "<ListBucketResult")) {
      rc = esr_error_set(err, ESR_E_IO, (int)status, "listing %s: the answer is not a ListBucketResult", prefix);
      break;
    }
    char *key;
    while (rc == ESR_E_OK && (key = xml_next(&pos, "Key"))) {
      if (strncmp(key, prefix, strlen(prefix)) == 0 && !strchr(key + strlen(prefix), '/'))
        rc = esr__cp_names_add(names, key, err);
      free(key);
    }
    if (rc != ESR_E_OK) break;
    char *truncated = xml_first(resp.mem.data, "IsTruncated");
    int more = truncated && strcmp(truncated, "true") == 0;
    free(truncated);
    if (!more) break;
    char *next = xml_first(resp.mem.data, "NextContinuationToken");
    if (!next || !*next || (token && strcmp(next, token) == 0)) {
      free(next);
      rc = esr_error_set(err, ESR_E_IO, 0, "listing %s: truncated without a new continuation token", prefix);
      break;
    }
    free(token);
    token = next;
  }
  free(token);
  free(query.data);
  free(resp.mem.data);
  if (rc == ESR_E_OK) esr__cp_names_sort(names);
  return rc;
}

static esr_code delete_object(s3 *s, const char *topic, int32_t partition, int64_t offset, const char *ext,
                              esr_error *err) {
  char key[PATH_CAP];
  if (object_key(s, topic, partition, offset, ext, key, sizeof key) != 0)
    return esr_error_set(err, ESR_E_CONFIG, 0, "key too long");
  response resp = {.fd = -1};
  request q = {.method = "DELETE", .key = key, .out_fd = -1};
  long status = 0;
  esr_code rc = perform(s, &q, &resp, &status, err);
  if (rc != ESR_E_OK && status == 404) rc = ESR_E_OK; /* gone already */
  free(resp.mem.data);
  return rc;
}

/* ---- operations -------------------------------------------------------------------------------------------------- */

static esr_code s3_upload(void *impl, const char *cp_dir, const esr_manifest *m, esr_error *err) {
  s3 *s = impl;
  char path[PATH_CAP], key[PATH_CAP], sha[65];
  response resp = {.fd = -1};
  upload_src data = {.fd = -1};
  char *json = NULL;
  esr_code rc = ESR_E_OK;
  long status = 0;
  if (esr_checkpoint_path(path, sizeof path, cp_dir, m->topic, m->partition, m->next_offset, ".db") != 0 ||
      object_key(s, m->topic, m->partition, m->next_offset, ".db", key, sizeof key) != 0)
    return esr_error_set(err, ESR_E_CONFIG, 0, "path or key too long");
  struct stat st;
  if ((data.fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(data.fd, &st) != 0) {
    rc = esr_error_set(err, ESR_E_IO, errno, "cannot open %s: %s", path, strerror(errno));
    goto done;
  }
  if (st.st_size != m->size) {
    rc = esr_error_set(err, ESR_E_CORRUPT, 0, "%s: %lld bytes, the manifest says %" PRId64, path, (long long)st.st_size,
                       m->size);
    goto done;
  }
  if (!(data.sha = EVP_MD_CTX_new())) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto done;
  }
  data.size = m->size;
  data.expect = m->sha256;
  esr_digest_hex(m->sha256, sha);
  request put_data = {.method = "PUT", .key = key, .body = &data, .payload_hash = sha, .out_fd = -1};
  if ((rc = perform(s, &put_data, &resp, &status, err)) != ESR_E_OK) goto done;

  /* The manifest last: from now on the checkpoint is listed. */
  if (!(json = esr_manifest_json(m, err))) {
    rc = ESR_E_NOMEM;
    goto done;
  }
  uint8_t digest[32];
  unsigned int dlen = 32;
  EVP_Digest(json, strlen(json), digest, &dlen, EVP_sha256(), NULL);
  esr_digest_hex(digest, sha);
  object_key(s, m->topic, m->partition, m->next_offset, ".json", key, sizeof key);
  upload_src text = {.fd = -1, .mem = json, .size = (int64_t)strlen(json)};
  request put_manifest = {.method = "PUT", .key = key, .body = &text, .payload_hash = sha, .out_fd = -1};
  rc = perform(s, &put_manifest, &resp, &status, err);
done:
  if (data.fd >= 0) close(data.fd);
  EVP_MD_CTX_free(data.sha);
  free(json);
  free(resp.mem.data);
  return rc;
}

static esr_code s3_list(void *impl, const char *topic, int32_t partition, esr_manifest_list **out, esr_error *err) {
  s3 *s = impl;
  esr__cp_names names = {0};
  response resp = {.fd = -1};
  size_t cap = 0;
  esr_manifest_list *l = calloc(1, sizeof *l);
  if (!l) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  esr_code rc = list_names(s, topic, partition, &names, err);
  for (size_t i = 0; rc == ESR_E_OK && i < names.n; i++) {
    if (!names.v[i].has_manifest) continue;
    char key[PATH_CAP];
    object_key(s, topic, partition, names.v[i].offset, ".json", key, sizeof key);
    request q = {.method = "GET", .key = key, .out_fd = -1};
    long status = 0;
    esr_error why = {0};
    esr_manifest *m = NULL;
    esr_code grc = perform(s, &q, &resp, &status, &why);
    if (grc == ESR_E_OK) grc = esr_manifest_parse(resp.mem.data ? resp.mem.data : "", resp.mem.len, &m, &why);
    if (grc == ESR_E_OK &&
        (strcmp(m->topic, topic) != 0 || m->partition != partition || m->next_offset != names.v[i].offset))
      grc = ESR_E_CORRUPT;
    if (grc == ESR_E_OK) {
      if ((rc = esr__manifest_list_push(l, m, &cap, err)) != ESR_E_OK) esr_manifest_free(m);
      continue;
    }
    esr_manifest_free(m);
    /* Pruned meanwhile (404) or broken (not listed, as a broken local one); the store failing is an error. */
    if (grc == ESR_E_CORRUPT || (grc != ESR_E_OK && status == 404)) continue;
    if (err) *err = why;
    rc = grc;
  }
  esr__cp_names_clear(&names);
  free(resp.mem.data);
  if (rc != ESR_E_OK) {
    esr_manifest_list_free(l);
    return rc;
  }
  *out = l;
  return ESR_E_OK;
}

static esr_code s3_fetch(void *impl, const esr_manifest *m, const char *cp_dir, esr_error *err) {
  s3 *s = impl;
  char key[PATH_CAP], tmp[PATH_CAP] = "";
  response resp = {.fd = -1};
  long status = 0;
  if (object_key(s, m->topic, m->partition, m->next_offset, ".db", key, sizeof key) != 0)
    return esr_error_set(err, ESR_E_CONFIG, 0, "key too long");
  esr_code rc = esr_checkpoint_tmpfile(cp_dir, m->topic, m->partition, tmp, sizeof tmp, err);
  if (rc != ESR_E_OK) return rc;
  if ((resp.fd = open(tmp, O_RDWR | O_CLOEXEC)) < 0) {
    rc = esr_error_set(err, ESR_E_IO, errno, "cannot open %s: %s", tmp, strerror(errno));
    goto done;
  }
  request q = {.method = "GET", .key = key, .out_fd = resp.fd};
  rc = perform(s, &q, &resp, &status, err);
  if (rc != ESR_E_OK && status == 404) {
    if (err) err->code = ESR_E_CORRUPT; /* the manifest vouches for data that is not there */
    rc = ESR_E_CORRUPT;
  }
  if (close(resp.fd) != 0 && rc == ESR_E_OK)
    rc = esr_error_set(err, ESR_E_IO, errno, "cannot write %s: %s", tmp, strerror(errno));
  resp.fd = -1;
  if (rc == ESR_E_OK) rc = esr_checkpoint_install(cp_dir, m, tmp, err);
done:
  if (resp.fd >= 0) close(resp.fd);
  if (rc != ESR_E_OK) unlink(tmp);
  free(resp.mem.data);
  return rc;
}

static esr_code s3_prune(void *impl, const char *topic, int32_t partition, int keep, esr_error *err) {
  s3 *s = impl;
  esr__cp_names names = {0};
  esr_code rc = list_names(s, topic, partition, &names, err);
  int kept = 0;
  for (size_t i = 0; rc == ESR_E_OK && i < names.n; i++) {
    struct esr__cp_name *e = &names.v[i];
    if (kept < keep) {
      kept += e->has_manifest; /* data without a manifest above the oldest kept may be an upload under way */
      continue;
    }
    if (e->has_manifest) rc = delete_object(s, topic, partition, e->offset, ".json", err);
    if (rc == ESR_E_OK && e->has_data) rc = delete_object(s, topic, partition, e->offset, ".db", err);
  }
  esr__cp_names_clear(&names);
  return rc;
}

/* Appends the fix to a failed check's message. */
static esr_code with_fix(esr_error *err, esr_code rc, const char *fix) {
  if (err) {
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    esr_error_set(err, rc, err->lib_code, "%s: %s", msg, fix);
  }
  return rc;
}

static esr_code check_requests(s3 *s, esr_error *err) {
  response resp = {.fd = -1};
  membuf query = {0}, probe = {0};
  long status = 0;
  char host[128] = "host", pid[32];
  esr_code rc = ESR_E_OK;
  gethostname(host, sizeof host - 1);
  snprintf(pid, sizeof pid, "-%ld", (long)getpid());
  /* May it list? (A bucket that does not exist says so here.) */
  if (mem_append(&query, "list-type=2&max-keys=1&prefix=", 30) || uri_encode(&query, s->prefix, 0) ||
      (*s->prefix && mem_append(&query, "%2F", 3)) ||
      /* ... and write and delete under the prefix? */
      (*s->prefix && (mem_append(&probe, s->prefix, strlen(s->prefix)) || mem_append(&probe, "/", 1))) ||
      mem_append(&probe, ".esr-check/", 11) || mem_append(&probe, host, strlen(host)) ||
      mem_append(&probe, pid, strlen(pid))) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto done;
  }
  request list = {.method = "GET", .key = "", .query = query.data, .out_fd = -1};
  if ((rc = perform(s, &list, &resp, &status, err)) != ESR_E_OK) goto done;
  if (!resp.mem.data || !strstr(resp.mem.data, "<ListBucketResult")) {
    rc = esr_error_set(err, ESR_E_CONFIG, (int)status,
                       "GET %s: the answer is not an S3 listing (is checkpoint.s3.endpoint an S3 server?)", s->base);
    goto done;
  }
  upload_src empty = {.fd = -1, .mem = "", .size = 0};
  request put = {.method = "PUT", .key = probe.data, .body = &empty, .payload_hash = EMPTY_SHA256, .out_fd = -1};
  if ((rc = perform(s, &put, &resp, &status, err)) != ESR_E_OK) goto done;
  request del = {.method = "DELETE", .key = probe.data, .out_fd = -1};
  rc = perform(s, &del, &resp, &status, err);
done:
  /* For a check, any refusal that retrying cannot change is the configuration's (a wrong region or endpoint too). */
  if (rc == ESR_E_IO && status >= 400 && status < 500 && status != 408 && status != 429) {
    rc = ESR_E_CONFIG;
    if (err) err->code = rc;
  }
  free(query.data);
  free(probe.data);
  free(resp.mem.data);
  return rc;
}

static esr_code s3_check(void *impl, esr_error *err) {
  s3 *s = impl;
  /* One attempt each, bounded: the caller only wants to know, and warns when the store cannot be reached now. */
  int attempts = s->max_attempts;
  long connect = s->connect_timeout_ms, whole = s->request_timeout_ms;
  s->max_attempts = 1;
  if (s->connect_timeout_ms > CHECK_CONNECT_MS) s->connect_timeout_ms = CHECK_CONNECT_MS;
  s->request_timeout_ms = CHECK_REQUEST_MS;
  esr_error e = {0};
  esr_code rc = check_requests(s, &e);
  s->max_attempts = attempts;
  s->connect_timeout_ms = connect;
  s->request_timeout_ms = whole;
  if (rc == ESR_E_OK) return rc;
  if (err) *err = e;
  if (rc != ESR_E_CONFIG) return rc;
  if (e.lib_code == 404 || strstr(e.msg, "NoSuchBucket"))
    return with_fix(err, rc, "create the bucket, or fix checkpoint.store (and checkpoint.s3.endpoint)");
  if (e.lib_code == 401 || e.lib_code == 403)
    return with_fix(err, rc,
                    "check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and that "
                    "they may list, put and delete objects under the prefix, or fix checkpoint.store");
  return with_fix(err, rc, "fix checkpoint.store, checkpoint.s3.endpoint or checkpoint.s3.region");
}

/* Server-side copy of src_key to dst_key (CopyObject). *status gets the HTTP status. */
static esr_code copy_object(s3 *s, const char *src_key, const char *dst_key, long *status, esr_error *err) {
  membuf hdr = {0};
  response resp = {.fd = -1};
  esr_code rc = ESR_E_OK;
  if (mem_append(&hdr, "x-amz-copy-source: /", 20) || mem_append(&hdr, s->bucket, strlen(s->bucket)) ||
      mem_append(&hdr, "/", 1) || uri_encode(&hdr, src_key, 1)) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto done;
  }
  upload_src empty = {.fd = -1, .mem = "", .size = 0};
  request q = {.method = "PUT", .key = dst_key, .body = &empty, .payload_hash = EMPTY_SHA256, .out_fd = -1,
               .header = hdr.data};
  rc = perform(s, &q, &resp, status, err);
  /* S3 may answer 200 and report a failure in the body. */
  if (rc == ESR_E_OK && !(resp.mem.data && strstr(resp.mem.data, "CopyObjectResult"))) {
    char *code = xml_first(resp.mem.data, "Code");
    rc = esr_error_set(err, ESR_E_IO, (int)*status, "copy of %s to %s failed: %s", src_key, dst_key,
                       code ? code : "no CopyObjectResult");
    free(code);
  }
done:
  free(hdr.data);
  free(resp.mem.data);
  return rc;
}

static esr_code s3_quarantine(void *impl, const char *topic, int32_t partition, int64_t next_offset,
                              esr_error *err) {
  s3 *s = impl;
  char key[PATH_CAP], aside[PATH_CAP + 64], stamp[32];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  static const char *const exts[] = {".json", ".db"}; /* manifest first: it stops being listed at once */
  esr_code rc = ESR_E_OK;
  for (int i = 0; i < 2 && rc == ESR_E_OK; i++) {
    if (object_key(s, topic, partition, next_offset, exts[i], key, sizeof key) != 0)
      return esr_error_set(err, ESR_E_CONFIG, 0, "key too long");
    snprintf(aside, sizeof aside, "%s.bad-%s", key, stamp);
    long status = 0;
    rc = copy_object(s, key, aside, &status, err);
    if (rc != ESR_E_OK && status == 404) { /* gone already (pruned meanwhile): nothing to set aside */
      rc = ESR_E_OK;
      continue;
    }
    if (rc == ESR_E_OK) rc = delete_object(s, topic, partition, next_offset, exts[i], err);
  }
  return rc;
}

static void s3_close(void *impl) {
  s3 *s = impl;
  if (!s) return;
  curl_easy_cleanup(s->h);
  free(s->bucket);
  free(s->prefix);
  free(s->base);
  free(s->key_id);
  if (s->secret) memset(s->secret, 0, strlen(s->secret));
  free(s->secret);
  free(s->token);
  free(s);
}

static const esr__cpstore_ops S3_OPS = {s3_upload, s3_list, s3_fetch, s3_prune, s3_check, s3_quarantine, s3_close};

/* ---- opening ----------------------------------------------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void init_curl(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static const char *pick(const char *opt, const char *env1, const char *env2) {
  if (opt && *opt) return opt;
  const char *v = env1 ? getenv(env1) : NULL;
  if (v && *v) return v;
  v = env2 ? getenv(env2) : NULL;
  return v && *v ? v : NULL;
}

static char *dup_str(const char *s, int *oom) {
  if (!s) return NULL;
  char *d = strdup(s);
  if (!d) *oom = 1;
  return d;
}

esr_code esr__cpstore_s3_open(const char *bucket, const char *prefix, const esr_cpstore_opts *opts,
                              const esr__cpstore_ops **ops, void **impl, esr_error *err) {
  esr_cpstore_opts o = {0};
  if (opts) o = *opts;
  esr_code rc = ESR_E_OK;
  int oom = 0;
  s3 *s = calloc(1, sizeof *s);
  if (!s) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  pthread_once(&curl_once, init_curl);
  if (curl_init_rc != CURLE_OK) {
    rc = esr_error_set(err, ESR_E_IO, (int)curl_init_rc, "libcurl: %s", curl_easy_strerror(curl_init_rc));
    goto fail;
  }
  const char *key_id = pick(o.access_key_id, "AWS_ACCESS_KEY_ID", NULL);
  const char *secret = pick(o.secret_access_key, "AWS_SECRET_ACCESS_KEY", NULL);
  const char *region = pick(o.region, "AWS_REGION", "AWS_DEFAULT_REGION");
  const char *endpoint = pick(o.endpoint, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL");
  if (!key_id || !secret) {
    rc = esr_error_set(err, ESR_E_CONFIG, 0,
                       "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or pass them as options)");
    goto fail;
  }
  if (!region) region = "us-east-1";
  if (strlen(region) > 64 || strpbrk(region, ":/ ")) {
    rc = esr_error_set(err, ESR_E_CONFIG, 0, "bad region \"%s\"", region);
    goto fail;
  }
  for (const char *p = bucket; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.')) {
      rc = esr_error_set(err, ESR_E_CONFIG, 0, "bad bucket name \"%s\": lower-case letters, digits, '-' and '.'",
                         bucket);
      goto fail;
    }
  if (endpoint) {
    if (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8) != 0) {
      rc = esr_error_set(err, ESR_E_CONFIG, 0, "the S3 endpoint must be http(s)://host[:port], not \"%s\"", endpoint);
      goto fail;
    }
    if (strchr(endpoint, '@')) { /* and so never shown in a message */
      rc = esr_error_set(err, ESR_E_CONFIG, 0, "credentials do not belong in the S3 endpoint URL");
      goto fail;
    }
    size_t n = strlen(endpoint);
    while (n > 0 && endpoint[n - 1] == '/') n--;
    if (asprintf(&s->base, "%.*s/%s", (int)n, endpoint, bucket) < 0) s->base = NULL, oom = 1;
    s->path_style = 1;
  } else if (asprintf(&s->base, "https://%s.s3.%s.amazonaws.com", bucket, region) < 0) {
    s->base = NULL, oom = 1;
  }
  s->bucket = dup_str(bucket, &oom);
  s->prefix = dup_str(prefix, &oom);
  s->key_id = dup_str(key_id, &oom);
  s->secret = dup_str(secret, &oom);
  s->token = dup_str(pick(o.session_token, "AWS_SESSION_TOKEN", NULL), &oom);
  if (oom || !(s->h = curl_easy_init())) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto fail;
  }
  snprintf(s->sigv4, sizeof s->sigv4, "aws:amz:%s:s3", region);
  s->connect_timeout_ms = o.connect_timeout_ms > 0 ? o.connect_timeout_ms : 10000;
  s->request_timeout_ms = o.request_timeout_ms > 0 ? o.request_timeout_ms : 0;
  s->stall_timeout_s = o.stall_timeout_s > 0 ? o.stall_timeout_s : 30;
  s->max_attempts = o.max_attempts > 0 ? o.max_attempts : 4;
  s->backoff_ms = o.backoff_ms > 0 ? o.backoff_ms : 200;
  s->page_size = o.list_page_size > 0 && o.list_page_size <= 1000 ? o.list_page_size : 1000;
  s->cancel = o.cancel;
  s->cancel_arg = o.cancel_arg;
  *ops = &S3_OPS;
  *impl = s;
  return ESR_E_OK;
fail:
  s3_close(s);
  return rc;
}
