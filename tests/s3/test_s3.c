/* test_s3.c — esr/cpstore.h's s3:// backend against a local S3-compatible server (@20minutes/s3rver, which checks
 * Signature V4) started on loopback for this test: upload, list (with pagination), fetch + verify + restore, prune,
 * a data object without manifest, a corrupted remote object, a corrupted local file at upload, key prefixes that
 * need encoding, and the errors of a wrong secret and a missing bucket; the check at start (a missing bucket, a wrong
 * secret, and `esr run` exiting 2 for the former), a damaged checkpoint set aside in the bucket (CopyObject, DELETE)
 * and the recovery ladder doing so. The server runs on a port the kernel picks;
 * it is stopped in the group teardown, and dies with this process otherwise (its standard input is our pipe, and
 * PR_SET_PDEATHSIG). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

#include "cpstore.h"
#include "recovery.h"
#include "esrt_proc.h"
#include "unit_util.h"
#include "unit_checkpoint.h"

#define TOPIC "ledger"
#define PART 3
#define BUCKET "esr-cp"
#define KEY_ID "S3RVER"
#define SECRET "S3RVER"

static struct server {
  char *dir;
  pid_t pid;
  int stdin_fd;
  int port;
  char endpoint[64];
} srv = {.pid = -1, .stdin_fd = -1};

/* ---- the server ------------------------------------------------------------------------------------------------- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Keeps up to 64 KiB of a response body (NUL-terminated) in the buffer given. */
typedef struct body_buf {
  char data[65536];
  size_t len;
} body_buf;

static size_t keep_body(char *p, size_t s, size_t n, void *arg) {
  body_buf *b = arg;
  size_t take = s * n;
  if (take > sizeof b->data - 1 - b->len) take = sizeof b->data - 1 - b->len;
  memcpy(b->data + b->len, p, take);
  b->len += take;
  b->data[b->len] = '\0';
  return s * n;
}

static body_buf last_body;

/* A raw request to the server (signed like the store's own): the test's hands on the bucket. Returns the status; the
 * body of the answer is in last_body. */
static long raw(const char *method, const char *path, const char *body, const char *secret) {
  CURL *h = curl_easy_init();
  assert_non_null(h);
  char url[512], hdr[128], hex[65];
  uint8_t sha[32];
  unsigned int len = 32;
  EVP_Digest(body ? body : "", body ? strlen(body) : 0, sha, &len, EVP_sha256(), NULL);
  esr_digest_hex(sha, hex);
  snprintf(url, sizeof url, "%s%s", srv.endpoint, path);
  snprintf(hdr, sizeof hdr, "x-amz-content-sha256: %s", hex);
  struct curl_slist *hdrs = curl_slist_append(NULL, hdr);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:s3");
  curl_easy_setopt(h, CURLOPT_USERNAME, KEY_ID);
  curl_easy_setopt(h, CURLOPT_PASSWORD, secret ? secret : SECRET);
  last_body.len = 0;
  last_body.data[0] = '\0';
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, keep_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &last_body);
  if (body) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
  }
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
  long status = 0;
  if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);
  return status;
}

/* Reads "port=N" from the server within `timeout` seconds. */
static int read_port(int fd, double timeout) {
  char buf[256];
  size_t n = 0;
  double end = now_s() + timeout;
  while (now_s() < end && n < sizeof buf - 1) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 100) <= 0) continue;
    ssize_t got = read(fd, buf + n, sizeof buf - 1 - n);
    if (got <= 0) return -1; /* it exited */
    n += (size_t)got;
    buf[n] = '\0';
    char *line = strstr(buf, "port=");
    if (line && strchr(line, '\n')) return atoi(line + 5);
  }
  return -1;
}

static int start_server(void **state) {
  (void)state;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (!(srv.dir = tu_mkdtemp())) return -1;
  char script[4096], modules[4096];
  snprintf(script, sizeof script, "%s/s3server.js", ESR_S3_SERVER_DIR);
  snprintf(modules, sizeof modules, "%s/node_modules/@20minutes/s3rver", ESR_S3_SERVER_DIR);
  if (!tu_file_exists(modules)) {
    fprintf(stderr, "the S3 server is not installed in %s: the s3_npm_ci test installs it (ctest runs it first)\n",
            ESR_S3_SERVER_DIR);
    return -1;
  }
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) return -1;
  pid_t parent = getpid();
  srv.pid = fork();
  if (srv.pid < 0) return -1;
  if (srv.pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    dup2(in[0], 0);
    dup2(out[1], 3);
    /* s3rver makes continuation tokens with DES, which OpenSSL 3 keeps in its legacy provider. */
    execl(ESR_NODE, "node", "--openssl-legacy-provider", script, srv.dir, (char *)NULL);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  srv.stdin_fd = in[1];
  srv.port = read_port(out[0], 60);
  close(out[0]);
  if (srv.port <= 0) {
    fprintf(stderr, "the S3 server did not start (see its messages above)\n");
    return -1;
  }
  snprintf(srv.endpoint, sizeof srv.endpoint, "http://127.0.0.1:%d", srv.port);
  /* Listening is not serving yet: wait until it answers a request, then make the bucket. */
  double end = now_s() + 30;
  while (raw("GET", "/", NULL, NULL) == 0) {
    if (now_s() > end) return -1;
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
  }
  long status = raw("PUT", "/" BUCKET, NULL, NULL);
  if (status != 200) {
    fprintf(stderr, "creating the bucket: HTTP %ld\n", status);
    return -1;
  }
  return 0;
}

static int stop_server(void **state) {
  (void)state;
  if (srv.pid > 0) {
    kill(srv.pid, SIGTERM);
    waitpid(srv.pid, NULL, 0);
    srv.pid = -1;
  }
  if (srv.stdin_fd >= 0) close(srv.stdin_fd);
  tu_rmrf(srv.dir);
  free(srv.dir);
  curl_global_cleanup();
  return 0;
}

/* ---- per test --------------------------------------------------------------------------------------------------- */

typedef struct fixture {
  char *dir;
  char state[4096], cps[4096], db[4096], node2_cps[4096], node2_state[4096];
  char url[256];
  cpt_part p;
  esr_cpstore *store;
} fixture;

static int test_no;

static esr_cpstore *open_store(const char *url, const char *secret, int page_size) {
  esr_cpstore_opts opts = {.endpoint = srv.endpoint,
                           .access_key_id = KEY_ID,
                           .secret_access_key = secret,
                           .region = "us-east-1",
                           .list_page_size = page_size,
                           .max_attempts = 2,
                           .backoff_ms = 10};
  esr_cpstore *s = NULL;
  esr_error err = {0};
  if (esr_cpstore_open(url, &opts, &s, &err) != ESR_E_OK) fail_msg("open %s: %s", url, err.msg);
  return s;
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f || !(f->dir = tu_mkdtemp())) return -1;
  snprintf(f->state, sizeof f->state, "%s/state", f->dir);
  snprintf(f->cps, sizeof f->cps, "%s/checkpoints", f->dir);
  snprintf(f->node2_cps, sizeof f->node2_cps, "%s/node2-checkpoints", f->dir);
  snprintf(f->node2_state, sizeof f->node2_state, "%s/node2-state", f->dir);
  mkdir(f->state, 0755);
  esr_store_path(f->db, sizeof f->db, f->state, TOPIC, PART);
  cpt_open(&f->p, f->state, TOPIC, PART);
  snprintf(f->url, sizeof f->url, "s3://" BUCKET "/t%d/checkpoints", ++test_no); /* a prefix per test */
  f->store = open_store(f->url, SECRET, 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  esr_cpstore_close(f->store);
  cpt_close(&f->p);
  tu_rmrf(f->dir);
  free(f->dir);
  free(f);
  return 0;
}

static esr_manifest *checkpoint_and_upload(fixture *f, esr_cpstore *s, int n) {
  cpt_commit(&f->p, n);
  esr_manifest *m = NULL;
  esr_error err = {0};
  if (esr_checkpoint_write(f->db, f->cps, TOPIC, PART, NULL, &m, &err) != ESR_E_OK) fail_msg("write: %s", err.msg);
  if (esr_cpstore_upload(s, f->cps, m, &err) != ESR_E_OK) fail_msg("upload: %s", err.msg);
  return m;
}

static esr_manifest_list *list_ok(esr_cpstore *s) {
  esr_manifest_list *l = NULL;
  esr_error err = {0};
  if (esr_cpstore_list(s, TOPIC, PART, &l, &err) != ESR_E_OK) fail_msg("list: %s", err.msg);
  for (size_t i = 1; i < l->n; i++) assert_true(l->v[i - 1]->next_offset > l->v[i]->next_offset);
  return l;
}

/* The object path ("/bucket/key") of checkpoint `off` of the fixture's prefix. */
static const char *object(fixture *f, int64_t off, const char *ext) {
  static char buf[512];
  snprintf(buf, sizeof buf, "/" BUCKET "/t%d/checkpoints/" TOPIC "-%d/%020lld%s", test_no, PART, (long long)off, ext);
  return buf;
}

static void upload_list_fetch_restore(void **state) {
  fixture *f = *state;
  for (int i = 0; i < 3; i++) esr_manifest_free(checkpoint_and_upload(f, f->store, 300)); /* 300, 600, 900 */
  esr_manifest_list *l = list_ok(f->store);
  assert_int_equal(l->n, 3);
  assert_int_equal(l->v[0]->next_offset, 900);
  assert_int_equal(l->v[2]->next_offset, 300);
  assert_string_equal(l->v[0]->esr_version, ESR_VERSION);
  esr_error err = {0};
  if (esr_cpstore_fetch(f->store, l->v[0], f->node2_cps, &err) != ESR_E_OK) fail_msg("fetch: %s", err.msg);
  assert_int_equal(esr_checkpoint_verify(f->node2_cps, l->v[0], &err), ESR_E_OK);
  assert_int_equal(esr_checkpoint_restore(f->node2_cps, l->v[0], f->node2_state, 0, NULL, 0, &err), ESR_E_OK);
  char live[4300];
  esr_store_path(live, sizeof live, f->node2_state, TOPIC, PART);
  cpt_assert_consistent(live, 900);
  cpt_part p2;
  cpt_open(&p2, f->node2_state, TOPIC, PART);
  assert_memory_equal(p2.pos.log_digest, f->p.pos.log_digest, 32);
  cpt_close(&p2);
  esr_manifest_list_free(l);
}

static void list_follows_pages(void **state) {
  fixture *f = *state;
  esr_cpstore *paged = open_store(f->url, SECRET, 2); /* 2 keys per page: 14 objects take 7 pages */
  for (int i = 0; i < 7; i++) esr_manifest_free(checkpoint_and_upload(f, paged, 5)); /* 5 .. 35 */
  /* Neighbours that must not be listed: partition 30 shares the "ledger-3" prefix, and a foreign object. */
  char foreign[512];
  snprintf(foreign, sizeof foreign, "/" BUCKET "/t%d/checkpoints/" TOPIC "-30/%020d.json", test_no, 99);
  assert_int_equal(raw("PUT", foreign, "{}", NULL), 200);
  snprintf(foreign, sizeof foreign, "/" BUCKET "/t%d/checkpoints/" TOPIC "-3/notes.txt", test_no);
  assert_int_equal(raw("PUT", foreign, "hello", NULL), 200);
  esr_manifest_list *l = list_ok(paged);
  assert_int_equal(l->n, 7);
  assert_int_equal(l->v[0]->next_offset, 35);
  assert_int_equal(l->v[6]->next_offset, 5);
  esr_manifest_list_free(l);
  /* Pruning pages the same way. */
  esr_error err = {0};
  assert_int_equal(esr_cpstore_prune(paged, TOPIC, PART, 3, &err), ESR_E_OK);
  l = list_ok(f->store);
  assert_int_equal(l->n, 3);
  assert_int_equal(l->v[2]->next_offset, 25);
  esr_manifest_list_free(l);
  assert_int_equal(raw("GET", object(f, 20, ".db"), NULL, NULL), 404);
  assert_int_equal(raw("GET", object(f, 20, ".json"), NULL, NULL), 404);
  assert_int_equal(raw("GET", object(f, 25, ".db"), NULL, NULL), 200);
  assert_int_equal(raw("GET", foreign, NULL, NULL), 200); /* not a checkpoint's: left alone */
  esr_cpstore_close(paged);
}

static void data_without_manifest_is_invisible(void **state) {
  fixture *f = *state;
  esr_manifest *a = checkpoint_and_upload(f, f->store, 10);
  esr_manifest *b = checkpoint_and_upload(f, f->store, 10);
  assert_int_equal(raw("DELETE", object(f, 20, ".json"), NULL, NULL), 204); /* the upload died before its manifest */
  esr_manifest_list *l = list_ok(f->store);
  assert_int_equal(l->n, 1);
  assert_int_equal(l->v[0]->next_offset, 10);
  esr_manifest_list_free(l);
  /* Prune leaves data newer than the oldest kept alone (it may be an upload under way), and deletes it below. */
  esr_error err = {0};
  assert_int_equal(esr_cpstore_prune(f->store, TOPIC, PART, 1, &err), ESR_E_OK);
  assert_int_equal(raw("GET", object(f, 20, ".db"), NULL, NULL), 200);
  esr_manifest *c = checkpoint_and_upload(f, f->store, 10);
  assert_int_equal(esr_cpstore_prune(f->store, TOPIC, PART, 1, &err), ESR_E_OK);
  assert_int_equal(raw("GET", object(f, 20, ".db"), NULL, NULL), 404);
  assert_int_equal(raw("GET", object(f, 10, ".json"), NULL, NULL), 404);
  l = list_ok(f->store);
  assert_int_equal(l->n, 1);
  assert_int_equal(l->v[0]->next_offset, 30);
  esr_manifest_list_free(l);
  esr_manifest_free(a);
  esr_manifest_free(b);
  esr_manifest_free(c);
}

static void corrupted_remote_refused_at_fetch(void **state) {
  fixture *f = *state;
  esr_manifest *m = checkpoint_and_upload(f, f->store, 50);
  assert_int_equal(raw("PUT", object(f, 50, ".db"), "SQLite format 3 but not really", NULL), 200);
  esr_error err = {0};
  assert_int_equal(esr_cpstore_fetch(f->store, m, f->node2_cps, &err), ESR_E_CORRUPT);
  assert_contains(err.msg, "truncated");
  assert_contains(err.msg, f->url);
  esr_manifest_list *local = NULL;
  assert_int_equal(esr_checkpoint_list(f->node2_cps, TOPIC, PART, &local, &err), ESR_E_OK);
  assert_int_equal(local->n, 0);
  esr_manifest_list_free(local);
  /* A manifest whose data object is gone: refused as corrupt too, with S3's own words. */
  assert_int_equal(raw("DELETE", object(f, 50, ".db"), NULL, NULL), 204);
  assert_int_equal(esr_cpstore_fetch(f->store, m, f->node2_cps, &err), ESR_E_CORRUPT);
  assert_contains(err.msg, "HTTP 404 NoSuchKey");
  assert_contains(err.msg, "/" BUCKET "/t");
  esr_manifest_free(m);
}

static void corrupted_local_refused_at_upload(void **state) {
  fixture *f = *state;
  cpt_commit(&f->p, 2000);
  esr_manifest *m = NULL;
  esr_error err = {0};
  assert_int_equal(esr_checkpoint_write(f->db, f->cps, TOPIC, PART, NULL, &m, &err), ESR_E_OK);
  char path[4200];
  cpt_flip_byte(cpt_path(path, sizeof path, f->cps, TOPIC, PART, 2000, ".db"), m->size - 10);
  /* Checked on the way: the last bytes are withheld and the manifest is never sent, so nothing is listed. (S3 stores
   * no object shorter than its Content-Length, nor one whose x-amz-content-sha256 differs; s3rver sometimes keeps the
   * partial body, which is then a data object without manifest.) */
  assert_int_equal(esr_cpstore_upload(f->store, f->cps, m, &err), ESR_E_CORRUPT);
  assert_contains(err.msg, "differs from its manifest");
  assert_int_equal(raw("GET", object(f, 2000, ".json"), NULL, NULL), 404);
  esr_manifest_list *l = list_ok(f->store);
  assert_int_equal(l->n, 0);
  esr_manifest_list_free(l);
  esr_manifest_free(m);
}

static void prefix_needing_encoding(void **state) {
  fixture *f = *state;
  /* Space, '+' and '=' must be percent-encoded in the path and in the signed query alike. ('&' too, but s3rver
   * escapes it twice in listings, which S3 does not.) */
  esr_cpstore *odd = open_store("s3://" BUCKET "/odd prefix+x=y/", SECRET, 1);
  esr_manifest *m = checkpoint_and_upload(f, odd, 7);
  esr_manifest_list *l = list_ok(odd);
  assert_int_equal(l->n, 1);
  esr_error err = {0};
  if (esr_cpstore_fetch(odd, l->v[0], f->node2_cps, &err) != ESR_E_OK) fail_msg("fetch: %s", err.msg);
  assert_int_equal(esr_cpstore_prune(odd, TOPIC, PART, 1, &err), ESR_E_OK);
  esr_manifest_list_free(l);
  esr_manifest_free(m);
  esr_cpstore_close(odd);
}

static void wrong_secret_and_missing_bucket(void **state) {
  fixture *f = *state;
  /* The server checks signatures: a wrong secret is refused, and that is the configuration's to fix. */
  esr_cpstore *bad = open_store(f->url, "not-the-secret", 0);
  esr_manifest_list *l = NULL;
  esr_error err = {0};
  assert_int_equal(esr_cpstore_list(bad, TOPIC, PART, &l, &err), ESR_E_CONFIG);
  assert_int_equal(err.lib_code, 403);
  assert_contains(err.msg, "HTTP 403 SignatureDoesNotMatch");
  assert_not_contains(err.msg, "not-the-secret");
  assert_not_contains(err.msg, "after"); /* not retried */
  cpt_commit(&f->p, 5);
  esr_manifest *m = NULL;
  assert_int_equal(esr_checkpoint_write(f->db, f->cps, TOPIC, PART, NULL, &m, &err), ESR_E_OK);
  assert_int_equal(esr_cpstore_upload(bad, f->cps, m, &err), ESR_E_CONFIG);
  esr_cpstore_close(bad);
  l = list_ok(f->store);
  assert_int_equal(l->n, 0); /* nothing got in */
  esr_manifest_list_free(l);
  esr_cpstore *nobucket = open_store("s3://no-such-bucket/x", SECRET, 0);
  assert_int_equal(esr_cpstore_upload(nobucket, f->cps, m, &err), ESR_E_CONFIG);
  assert_contains(err.msg, "NoSuchBucket");
  esr_cpstore_close(nobucket);
  /* A session token travels as a signed header. */
  esr_cpstore_opts opts = {.endpoint = srv.endpoint,
                           .access_key_id = KEY_ID,
                           .secret_access_key = SECRET,
                           .session_token = "token-of-a-role"};
  esr_cpstore *tok = NULL;
  assert_int_equal(esr_cpstore_open(f->url, &opts, &tok, &err), ESR_E_OK);
  assert_int_equal(esr_cpstore_upload(tok, f->cps, m, &err), ESR_E_OK);
  esr_cpstore_close(tok);
  esr_manifest_free(m);
}

/* ---- issue 10, item 5: checked at start, damaged checkpoints set aside in the store ----------------------------- */

/* The keys under the fixture's partition prefix (a listing by raw request): how many contain `needle`. */
static int keys_containing(fixture *f, const char *needle) {
  char path[512];
  snprintf(path, sizeof path, "/" BUCKET "?list-type=2&prefix=t%d%%2Fcheckpoints%%2F" TOPIC "-%d%%2F", test_no, PART);
  assert_int_equal(raw("GET", path, NULL, NULL), 200);
  int n = 0;
  for (const char *p = last_body.data; (p = strstr(p, "<Key>")); p += 5) {
    const char *end = strstr(p, "</Key>");
    if (end && memmem(p, (size_t)(end - p), needle, strlen(needle))) n++;
  }
  return n;
}

static void check_at_start(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  assert_int_equal(esr_cpstore_check(f->store, &err), ESR_E_OK);
  /* its probe object was written and deleted again */
  char probe[512], host[128] = "host";
  gethostname(host, sizeof host - 1);
  snprintf(probe, sizeof probe, "/" BUCKET "/t%d/checkpoints/.esr-check/%s-%ld", test_no, host, (long)getpid());
  assert_int_equal(raw("GET", probe, NULL, NULL), 404);
  /* a bucket that does not exist, and a wrong secret: the configuration's to fix, said at start */
  esr_cpstore *nobucket = open_store("s3://no-such-bucket/x", SECRET, 0);
  assert_int_equal(esr_cpstore_check(nobucket, &err), ESR_E_CONFIG);
  assert_contains(err.msg, "NoSuchBucket");
  assert_contains(err.msg, "create the bucket");
  esr_cpstore_close(nobucket);
  esr_cpstore *bad = open_store(f->url, "not-the-secret", 0);
  assert_int_equal(esr_cpstore_check(bad, &err), ESR_E_CONFIG);
  assert_contains(err.msg, "HTTP 403");
  assert_contains(err.msg, "check the credentials");
  assert_not_contains(err.msg, "not-the-secret");
  esr_cpstore_close(bad);
}

static void quarantine_sets_aside_in_the_bucket(void **state) {
  fixture *f = *state;
  esr_manifest *a = checkpoint_and_upload(f, f->store, 40), *b = checkpoint_and_upload(f, f->store, 40);
  esr_error err = {0};
  assert_int_equal(esr_cpstore_quarantine(f->store, TOPIC, PART, 80, &err), ESR_E_OK);
  esr_manifest_list *l = list_ok(f->store);
  assert_int_equal(l->n, 1);
  assert_int_equal(l->v[0]->next_offset, 40);
  esr_manifest_list_free(l);
  assert_int_equal(raw("GET", object(f, 80, ".json"), NULL, NULL), 404);
  assert_int_equal(raw("GET", object(f, 80, ".db"), NULL, NULL), 404);
  assert_int_equal(keys_containing(f, "00000000000000000080.json.bad-"), 1);
  assert_int_equal(keys_containing(f, "00000000000000000080.db.bad-"), 1);
  /* gone already: nothing to do; pruning leaves what was set aside */
  assert_int_equal(esr_cpstore_quarantine(f->store, TOPIC, PART, 80, &err), ESR_E_OK);
  assert_int_equal(esr_cpstore_prune(f->store, TOPIC, PART, 1, &err), ESR_E_OK);
  assert_int_equal(keys_containing(f, ".bad-"), 2);
  esr_manifest_free(a);
  esr_manifest_free(b);
}

/* The ladder of a node with nothing local: the damaged newest remote checkpoint is skipped and set aside in the
 * bucket, the older one restored; the checkpoint the node writes later at the same offset is listed and fetched. */
static void ladder_sets_damaged_remote_aside(void **state) {
  fixture *f = *state;
  esr_manifest_free(checkpoint_and_upload(f, f->store, 60));
  esr_manifest_free(checkpoint_and_upload(f, f->store, 60)); /* 60, 120 */
  assert_int_equal(raw("PUT", object(f, 120, ".db"), "SQLite format 3 but not really", NULL), 200);
  esr_recovery_env env = {.state_dir = f->node2_state, .cp_dir = f->node2_cps, .store = f->store, .quick_check = 1};
  esr_recovery_result r;
  esr_error err = {0};
  if (esr_recover(&env, TOPIC, PART, &r, &err) != ESR_E_OK) fail_msg("recover: %s", err.msg);
  esr_recovery_result_release(&r);
  assert_int_equal(r.step, ESR_RECOVERY_REMOTE);
  assert_int_equal(r.next_offset, 60);
  assert_contains(r.detail, "set aside in the store");
  assert_int_equal(keys_containing(f, "00000000000000000120.db.bad-"), 1);
  assert_int_equal(keys_containing(f, "00000000000000000120.json.bad-"), 1);
  /* node 2 goes on to 120 and uploads its own checkpoint there */
  cpt_part p2;
  cpt_open(&p2, f->node2_state, TOPIC, PART);
  assert_int_equal(p2.pos.next_offset, 60);
  cpt_commit(&p2, 60);
  char db2[4300];
  esr_store_path(db2, sizeof db2, f->node2_state, TOPIC, PART);
  esr_manifest *m = NULL;
  assert_int_equal(esr_checkpoint_write(db2, f->node2_cps, TOPIC, PART, NULL, &m, &err), ESR_E_OK);
  cpt_close(&p2);
  assert_int_equal(esr_cpstore_upload(f->store, f->node2_cps, m, &err), ESR_E_OK);
  esr_manifest_list *l = list_ok(f->store);
  assert_int_equal(l->n, 2);
  assert_int_equal(l->v[0]->next_offset, 120);
  char node3[4300];
  snprintf(node3, sizeof node3, "%s/node3", f->dir);
  if (esr_cpstore_fetch(f->store, l->v[0], node3, &err) != ESR_E_OK) fail_msg("fetch: %s", err.msg);
  assert_int_equal(keys_containing(f, "00000000000000000120.db.bad-"), 1);
  esr_manifest_list_free(l);
  esr_manifest_free(m);
}

/* `esr run` with a bucket that does not exist: exit 2 at start, one line naming checkpoint.store and the fix. */
static void worker_refuses_missing_bucket(void **state) {
  fixture *f = *state;
  char conf[4300], state_dir[4300];
  snprintf(conf, sizeof conf, "%s/worker.conf", f->dir);
  snprintf(state_dir, sizeof state_dir, "%s/worker-state", f->dir);
  assert_int_equal(esrt_write_file(conf,
                                   "topics = ledger\nstate.dir = %s\nhandlers = %s/good.so\ndlq.topic = ledger.dlq\n"
                                   "kafka.bootstrap.servers = 127.0.0.1:1\nkafka.group.id = s3-test\n"
                                   "log.format = json\ncheckpoint.store = s3://no-such-bucket/cp\n"
                                   "checkpoint.s3.endpoint = %s\n",
                                   state_dir, ESR_TEST_PLUGIN_DIR, srv.endpoint),
                   0);
  setenv("AWS_ACCESS_KEY_ID", KEY_ID, 1);
  setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
  esrt_proc w;
  char *argv[] = {ESR_BIN, "run", "--config", conf, NULL};
  assert_int_equal(esrt_spawn(&w, f->dir, "worker", argv, 0), 0);
  assert_int_equal(esrt_wait(&w, 30000), 0);
  assert_int_equal(esrt_exit_code(&w), 2);
  char *err = esrt_read_file(w.err_path, NULL);
  assert_non_null(err);
  printf("# %s", err);
  assert_contains(err, "checkpoint.store");
  assert_contains(err, "NoSuchBucket");
  assert_contains(err, "create the bucket");
  assert_int_equal(strchr(err, '\n') - err + 1, (long)strlen(err)); /* one line */
  free(err);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(upload_list_fetch_restore, setup, teardown),
      cmocka_unit_test_setup_teardown(list_follows_pages, setup, teardown),
      cmocka_unit_test_setup_teardown(data_without_manifest_is_invisible, setup, teardown),
      cmocka_unit_test_setup_teardown(corrupted_remote_refused_at_fetch, setup, teardown),
      cmocka_unit_test_setup_teardown(corrupted_local_refused_at_upload, setup, teardown),
      cmocka_unit_test_setup_teardown(prefix_needing_encoding, setup, teardown),
      cmocka_unit_test_setup_teardown(wrong_secret_and_missing_bucket, setup, teardown),
      cmocka_unit_test_setup_teardown(check_at_start, setup, teardown),
      cmocka_unit_test_setup_teardown(quarantine_sets_aside_in_the_bucket, setup, teardown),
      cmocka_unit_test_setup_teardown(ladder_sets_damaged_remote_aside, setup, teardown),
      cmocka_unit_test_setup_teardown(worker_refuses_missing_bucket, setup, teardown),
  };
  return cmocka_run_group_tests(tests, start_server, stop_server);
}
