/* test_cpstore.c — esr/cpstore.h with the file:// backend (a shared directory): upload, list newest first, fetch into
 * another node's checkpoint directory and restore from it, prune; a data object without manifest is invisible; a
 * corrupted remote object is refused at fetch and a corrupted local one at upload. Also what needs no server: URL and
 * option errors, and the S3 backend's retries, signing and messages against a closed port and a scripted HTTP server
 * on loopback; the checks at start (a missing, misplaced or read-only directory, a bucket that does not exist or
 * refuses access, an unreachable endpoint) and setting a damaged checkpoint aside in the store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "cpstore.h"
#include "unit_util.h"
#include "unit_checkpoint.h"

#define TOPIC "ledger"
#define PART 3

typedef struct fixture {
  char *dir;
  char state[4096], cps[4096], remote[4096], url[4200], db[4096];
  char node2_cps[4096], node2_state[4096];
  cpt_part p;
  esr_cpstore *store;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f || !(f->dir = tu_mkdtemp())) return -1;
  snprintf(f->state, sizeof f->state, "%s/state", f->dir);
  snprintf(f->cps, sizeof f->cps, "%s/checkpoints", f->dir);
  snprintf(f->remote, sizeof f->remote, "%s/shared", f->dir);
  snprintf(f->url, sizeof f->url, "file://%s", f->remote);
  snprintf(f->node2_cps, sizeof f->node2_cps, "%s/node2-checkpoints", f->dir);
  snprintf(f->node2_state, sizeof f->node2_state, "%s/node2-state", f->dir);
  mkdir(f->state, 0755);
  mkdir(f->remote, 0755);
  esr_store_path(f->db, sizeof f->db, f->state, TOPIC, PART);
  cpt_open(&f->p, f->state, TOPIC, PART);
  esr_error err = {0};
  if (esr_cpstore_open(f->url, NULL, &f->store, &err) != ESR_E_OK) fail_msg("open: %s", err.msg);
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

/* Commits `n` more events, checkpoints locally and uploads. */
static esr_manifest *checkpoint_and_upload(fixture *f, int n) {
  cpt_commit(&f->p, n);
  esr_manifest *m = NULL;
  esr_error err = {0};
  if (esr_checkpoint_write(f->db, f->cps, TOPIC, PART, NULL, &m, &err) != ESR_E_OK) fail_msg("write: %s", err.msg);
  if (esr_cpstore_upload(f->store, f->cps, m, &err) != ESR_E_OK) fail_msg("upload: %s", err.msg);
  return m;
}

static esr_manifest_list *remote_list(fixture *f) {
  esr_manifest_list *l = NULL;
  esr_error err = {0};
  if (esr_cpstore_list(f->store, TOPIC, PART, &l, &err) != ESR_E_OK) fail_msg("list: %s", err.msg);
  return l;
}

/* Entries of `dir` (without . and ..), or whose name starts with `prefix`. */
static int count_prefixed(const char *dir, const char *prefix) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)))
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strncmp(de->d_name, prefix, strlen(prefix)) == 0) n++;
  closedir(d);
  return n;
}

static int count_entries(const char *dir) { return count_prefixed(dir, ""); }

static void upload_list_fetch_restore(void **state) {
  fixture *f = *state;
  for (int i = 0; i < 3; i++) esr_manifest_free(checkpoint_and_upload(f, 40)); /* 40, 80, 120 */
  esr_manifest_list *l = remote_list(f);
  assert_int_equal(l->n, 3);
  assert_int_equal(l->v[0]->next_offset, 120);
  assert_int_equal(l->v[1]->next_offset, 80);
  assert_int_equal(l->v[2]->next_offset, 40);

  /* Another node: fetch the newest into its own checkpoint directory, verify, restore, resume. */
  esr_error err = {0};
  if (esr_cpstore_fetch(f->store, l->v[0], f->node2_cps, &err) != ESR_E_OK) fail_msg("fetch: %s", err.msg);
  assert_int_equal(esr_checkpoint_verify(f->node2_cps, l->v[0], &err), ESR_E_OK);
  esr_manifest *local = NULL;
  assert_int_equal(esr_checkpoint_newest_valid(f->node2_cps, TOPIC, PART, NULL, NULL, &local, &err), ESR_E_OK);
  assert_non_null(local);
  assert_int_equal(local->next_offset, 120);
  assert_memory_equal(local->sha256, l->v[0]->sha256, 32);
  assert_int_equal(esr_checkpoint_restore(f->node2_cps, local, f->node2_state, 0, NULL, 0, &err), ESR_E_OK);
  char live[4300];
  esr_store_path(live, sizeof live, f->node2_state, TOPIC, PART);
  cpt_assert_consistent(live, 120);
  cpt_part p2;
  cpt_open(&p2, f->node2_state, TOPIC, PART);
  assert_int_equal(p2.pos.next_offset, 120);
  assert_memory_equal(p2.pos.log_digest, f->p.pos.log_digest, 32);
  cpt_close(&p2);
  esr_manifest_free(local);
  esr_manifest_list_free(l);
}

static void prune_keeps_newest(void **state) {
  fixture *f = *state;
  for (int i = 0; i < 4; i++) esr_manifest_free(checkpoint_and_upload(f, 10)); /* 10 .. 40 */
  esr_error err = {0};
  assert_int_equal(esr_cpstore_prune(f->store, TOPIC, PART, 2, &err), ESR_E_OK);
  esr_manifest_list *l = remote_list(f);
  assert_int_equal(l->n, 2);
  assert_int_equal(l->v[0]->next_offset, 40);
  assert_int_equal(l->v[1]->next_offset, 30);
  esr_manifest_list_free(l);
  char p[4200];
  assert_false(tu_file_exists(cpt_path(p, sizeof p, f->remote, TOPIC, PART, 20, ".db")));
  assert_false(tu_file_exists(cpt_path(p, sizeof p, f->remote, TOPIC, PART, 10, ".json")));
  assert_true(tu_file_exists(cpt_path(p, sizeof p, f->remote, TOPIC, PART, 30, ".db")));
  /* The local checkpoints are another matter: untouched. */
  assert_true(tu_file_exists(cpt_path(p, sizeof p, f->cps, TOPIC, PART, 10, ".db")));
  assert_int_equal(esr_cpstore_prune(f->store, TOPIC, PART, 0, &err), ESR_E_CONFIG);
}

static void data_without_manifest_is_invisible(void **state) {
  fixture *f = *state;
  esr_manifest *m = checkpoint_and_upload(f, 10);
  esr_manifest *half = checkpoint_and_upload(f, 10);
  /* As an upload that died after the data, before the manifest. */
  char p[4200];
  assert_int_equal(unlink(cpt_path(p, sizeof p, f->remote, TOPIC, PART, 20, ".json")), 0);
  esr_manifest_list *l = remote_list(f);
  assert_int_equal(l->n, 1);
  assert_int_equal(l->v[0]->next_offset, 10);
  esr_manifest_list_free(l);
  /* Uploading it again completes it. */
  esr_error err = {0};
  assert_int_equal(esr_cpstore_upload(f->store, f->cps, half, &err), ESR_E_OK);
  l = remote_list(f);
  assert_int_equal(l->n, 2);
  esr_manifest_list_free(l);
  esr_manifest_free(m);
  esr_manifest_free(half);
}

static int dir_has(const char *dir, const char *part) {
  DIR *d = opendir(dir);
  struct dirent *de;
  int found = 0;
  while (d && (de = readdir(d))) found |= strstr(de->d_name, part) != NULL;
  if (d) closedir(d);
  return found;
}

static void corrupted_remote_refused_at_fetch(void **state) {
  fixture *f = *state;
  esr_manifest *old = checkpoint_and_upload(f, 10);
  esr_manifest *m = checkpoint_and_upload(f, 10);
  char p[4200];
  cpt_flip_byte(cpt_path(p, sizeof p, f->remote, TOPIC, PART, 20, ".db"), 2000);
  esr_error err = {0};
  assert_int_equal(esr_cpstore_fetch(f->store, m, f->node2_cps, &err), ESR_E_CORRUPT);
  assert_contains(err.msg, "SHA-256");
  assert_contains(err.msg, f->url);
  /* Nothing of it is installed on the fetching node, no temporary file either; the older one still comes. */
  char dir[4300];
  snprintf(dir, sizeof dir, "%s/ledger-3", f->node2_cps);
  assert_false(dir_has(dir, "00000000000000000020"));
  assert_false(dir_has(dir, ".tmp-"));
  assert_int_equal(esr_cpstore_fetch(f->store, old, f->node2_cps, &err), ESR_E_OK);
  /* A truncated remote object and a missing one are refused the same way. */
  cpt_truncate(p, 1000);
  assert_int_equal(esr_cpstore_fetch(f->store, m, f->node2_cps, &err), ESR_E_CORRUPT);
  assert_contains(err.msg, "truncated");
  assert_int_equal(unlink(p), 0);
  assert_int_equal(esr_cpstore_fetch(f->store, m, f->node2_cps, &err), ESR_E_CORRUPT);
  esr_manifest_free(old);
  esr_manifest_free(m);
}

static void corrupted_local_refused_at_upload(void **state) {
  fixture *f = *state;
  cpt_commit(&f->p, 10);
  esr_manifest *m = NULL;
  esr_error err = {0};
  assert_int_equal(esr_checkpoint_write(f->db, f->cps, TOPIC, PART, NULL, &m, &err), ESR_E_OK);
  char p[4200];
  cpt_flip_byte(cpt_path(p, sizeof p, f->cps, TOPIC, PART, 10, ".db"), 3000);
  assert_int_equal(esr_cpstore_upload(f->store, f->cps, m, &err), ESR_E_CORRUPT);
  esr_manifest_list *l = remote_list(f);
  assert_int_equal(l->n, 0);
  esr_manifest_list_free(l);
  esr_manifest_free(m);
}

static void missing_root_is_an_error(void **state) {
  fixture *f = *state;
  char url[4300];
  snprintf(url, sizeof url, "file://%s/not-mounted", f->dir);
  esr_cpstore *s = NULL;
  esr_error err = {0};
  assert_int_equal(esr_cpstore_open(url, NULL, &s, &err), ESR_E_OK);
  esr_manifest_list *l = NULL;
  /* An absent directory (a volume not mounted) must not pass for an empty store. */
  assert_int_equal(esr_cpstore_list(s, TOPIC, PART, &l, &err), ESR_E_IO);
  assert_null(l);
  assert_contains(err.msg, "not-mounted");
  esr_cpstore_close(s);
  esr_cpstore_close(NULL);
}

static void open_refuses_bad_urls(void **state) {
  (void)state;
  static const char *const bad[] = {"",      "http://x/y",   "file://relative/path", "file:///",
                                    "s3://", "s3:///prefix", "s3://Bad_Bucket/x"};
  setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "secret-never-shown", 1);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    esr_cpstore *s = NULL;
    esr_error err = {0};
    assert_int_equal(esr_cpstore_open(bad[i], NULL, &s, &err), ESR_E_CONFIG);
    assert_null(s);
    assert_true(err.msg[0] != '\0');
  }
  esr_cpstore *s = NULL;
  esr_error err = {0};
  esr_cpstore_opts opts = {.endpoint = "http://user:pw@127.0.0.1:9"};
  assert_int_equal(esr_cpstore_open("s3://bucket/p", &opts, &s, &err), ESR_E_CONFIG);
  assert_not_contains(err.msg, "pw@");
  /* No credentials anywhere: said at open, with the variables to set. */
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  assert_int_equal(esr_cpstore_open("s3://bucket/p", NULL, &s, &err), ESR_E_CONFIG);
  assert_contains(err.msg, "AWS_ACCESS_KEY_ID");
}

/* A loopback port nobody listens on. */
static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

static void s3_retries_then_says_where(void **state) {
  (void)state;
  char endpoint[64];
  snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", closed_port());
  esr_cpstore_opts opts = {.endpoint = endpoint,
                           .access_key_id = "AKIDEXAMPLE",
                           .secret_access_key = "secret-never-shown",
                           .max_attempts = 3,
                           .backoff_ms = 5,
                           .connect_timeout_ms = 2000};
  esr_cpstore *s = NULL;
  esr_error err = {0};
  assert_int_equal(esr_cpstore_open("s3://bucket/some/prefix/", &opts, &s, &err), ESR_E_OK);
  assert_string_equal(esr_cpstore_url(s), "s3://bucket/some/prefix/");
  esr_manifest_list *l = NULL;
  assert_int_equal(esr_cpstore_list(s, TOPIC, PART, &l, &err), ESR_E_IO);
  assert_int_equal(err.lib_code, 7); /* CURLE_COULDNT_CONNECT */
  assert_contains(err.msg, "after 3 attempts");
  assert_contains(err.msg, endpoint);
  assert_contains(err.msg, "/bucket?list-type=2&max-keys=1000&prefix=some%2Fprefix%2Fledger-3%2F");
  assert_not_contains(err.msg, "secret-never-shown");
  esr_cpstore_close(s);
}

/* A scripted HTTP server on loopback: answers the i-th request with replies[i], one connection each, and keeps the
 * requests' head lines and headers. */
typedef struct script {
  int fd, port;
  const char *const *replies;
  int n_replies, served;
  char requests[4][2048];
} script;

static void *serve(void *arg) {
  script *sc = arg;
  for (int i = 0; i < sc->n_replies; i++) {
    int c = accept(sc->fd, NULL, NULL);
    if (c < 0) break;
    char *req = sc->requests[i < 4 ? i : 3];
    size_t n = 0;
    while (n < 2047 && !strstr(req, "\r\n\r\n")) {
      ssize_t got = read(c, req + n, 2047 - n);
      if (got <= 0) break;
      n += (size_t)got;
      req[n] = '\0';
    }
    const char *body = sc->replies[i];
    char head[256];
    const char *status = strncmp(body, "<Error>", 7)   ? "200 OK"
                         : strstr(body, "SlowDown")     ? "503 Slow Down"
                         : strstr(body, "NoSuchBucket") ? "404 Not Found"
                                                        : "403 Forbidden";
    snprintf(head, sizeof head,
             "HTTP/1.1 %s\r\nContent-Type: application/xml\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
             strlen(body));
    if (write(c, head, strlen(head)) < 0 || write(c, body, strlen(body)) < 0) break;
    close(c);
    sc->served++;
  }
  return NULL;
}

static esr_cpstore *scripted_store(script *sc, pthread_t *t) {
  sc->fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  assert_int_equal(bind(sc->fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(sc->fd, 4), 0);
  assert_int_equal(getsockname(sc->fd, (struct sockaddr *)&a, &len), 0);
  sc->port = ntohs(a.sin_port);
  assert_int_equal(pthread_create(t, NULL, serve, sc), 0);
  char endpoint[64];
  snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", sc->port);
  esr_cpstore_opts opts = {.endpoint = endpoint,
                           .access_key_id = "AKIDEXAMPLE",
                           .secret_access_key = "secret-never-shown",
                           .region = "eu-west-3",
                           .max_attempts = 3,
                           .backoff_ms = 5};
  esr_cpstore *s = NULL;
  esr_error err = {0};
  assert_int_equal(esr_cpstore_open("s3://bucket/cp", &opts, &s, &err), ESR_E_OK);
  return s;
}

static void s3_retries_5xx_and_signs(void **state) {
  (void)state;
  static const char *const replies[] = {
      "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
      "<?xml version=\"1.0\"?><ListBucketResult><Name>bucket</Name><IsTruncated>false</IsTruncated>"
      "<Contents><Key>cp/ledger-3/00000000000000000007.db</Key></Contents></ListBucketResult>"};
  script sc = {.replies = replies, .n_replies = 2};
  pthread_t t;
  esr_cpstore *s = scripted_store(&sc, &t);
  esr_manifest_list *l = NULL;
  esr_error err = {0};
  /* S3's SlowDown (503) is retried; the second answer lists a data object without manifest: nothing to list. */
  assert_int_equal(esr_cpstore_list(s, TOPIC, PART, &l, &err), ESR_E_OK);
  pthread_join(t, NULL);
  assert_int_equal(sc.served, 2);
  assert_int_equal(l->n, 0);
  esr_manifest_list_free(l);
  /* What S3 needs to accept it: the query in canonical order, the payload hash, a SigV4 scope of the region. */
  const char *req = sc.requests[1];
  assert_contains(req, "GET /bucket?list-type=2&max-keys=1000&prefix=cp%2Fledger-3%2F HTTP/1.1");
  assert_contains(req, "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  assert_contains(req, "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/");
  assert_contains(req, "/eu-west-3/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=");
  assert_not_contains(req, "secret-never-shown");
  esr_cpstore_close(s);
  close(sc.fd);
}

static void s3_access_denied_is_not_retried(void **state) {
  (void)state;
  static const char *const replies[] = {"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"};
  script sc = {.replies = replies, .n_replies = 1};
  pthread_t t;
  esr_cpstore *s = scripted_store(&sc, &t);
  esr_manifest_list *l = NULL;
  esr_error err = {0};
  assert_int_equal(esr_cpstore_list(s, TOPIC, PART, &l, &err), ESR_E_CONFIG);
  pthread_join(t, NULL);
  assert_int_equal(sc.served, 1);
  assert_int_equal(err.lib_code, 403);
  assert_contains(err.msg, "HTTP 403 AccessDenied: Access Denied");
  assert_not_contains(err.msg, "attempts");
  esr_cpstore_close(s);
  close(sc.fd);
}

/* ---- checks at start (issue 10, item 5) ------------------------------------------------------------------------ */

static void check_file_store(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  assert_int_equal(esr_cpstore_check(f->store, &err), ESR_E_OK);
  assert_int_equal(count_entries(f->remote), 0); /* the probe file is gone */
  /* a directory that does not exist (a volume not mounted) */
  char url[4300];
  snprintf(url, sizeof url, "file://%s/not-mounted", f->dir);
  esr_cpstore *s = NULL;
  assert_int_equal(esr_cpstore_open(url, NULL, &s, &err), ESR_E_OK);
  assert_int_equal(esr_cpstore_check(s, &err), ESR_E_CONFIG);
  assert_contains(err.msg, "not-mounted");
  assert_contains(err.msg, "create it");
  esr_cpstore_close(s);
  /* a file where the directory should be */
  snprintf(url, sizeof url, "file://%s/plain-file", f->dir);
  char path[4300];
  snprintf(path, sizeof path, "%s/plain-file", f->dir);
  assert_int_equal(tu_write_text(path, "x"), 0);
  assert_int_equal(esr_cpstore_open(url, NULL, &s, &err), ESR_E_OK);
  assert_int_equal(esr_cpstore_check(s, &err), ESR_E_CONFIG);
  assert_contains(err.msg, "not a directory");
  esr_cpstore_close(s);
}

/* A directory this worker cannot write to. As root (who writes anywhere) the check runs in a child process that has
 * given up root for nobody's user id. */
static void check_read_only_file_store(void **state) {
  fixture *f = *state;
  char ro[4300];
  snprintf(ro, sizeof ro, "%s/read-only", f->dir);
  assert_int_equal(mkdir(ro, 0755), 0);
  assert_int_equal(chmod(f->dir, 0755), 0); /* nobody may reach it */
  assert_int_equal(chmod(ro, 0555), 0);
  char url[4400];
  snprintf(url, sizeof url, "file://%s", ro);
  int pipefd[2];
  assert_int_equal(pipe(pipefd), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(pipefd[0]);
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(90);
    esr_cpstore *s = NULL;
    esr_error err = {0};
    if (esr_cpstore_open(url, NULL, &s, &err) != ESR_E_OK) _exit(91);
    esr_code rc = esr_cpstore_check(s, &err);
    if (write(pipefd[1], err.msg, strlen(err.msg)) < 0) _exit(92);
    esr_cpstore_close(s);
    _exit((int)rc);
  }
  close(pipefd[1]);
  char msg[600] = "";
  ssize_t n = read(pipefd[0], msg, sizeof msg - 1);
  if (n > 0) msg[n] = '\0';
  close(pipefd[0]);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  if (WEXITSTATUS(status) != ESR_E_CONFIG) fail_msg("check of a read-only directory: exit %d: %s", WEXITSTATUS(status), msg);
  assert_contains(msg, "cannot create a file");
  assert_contains(msg, "writable");
  chmod(ro, 0755);
}

static void check_s3_unreachable_is_not_a_config_error(void **state) {
  (void)state;
  char endpoint[64];
  snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", closed_port());
  esr_cpstore_opts opts = {.endpoint = endpoint, .access_key_id = "AKIDEXAMPLE",
                           .secret_access_key = "secret-never-shown"};
  esr_cpstore *s = NULL;
  esr_error err = {0};
  assert_int_equal(esr_cpstore_open("s3://bucket/cp", &opts, &s, &err), ESR_E_OK);
  assert_int_equal(esr_cpstore_check(s, &err), ESR_E_IO); /* the worker warns and goes on */
  assert_not_contains(err.msg, "attempts");              /* one attempt: a start is not held up by retries */
  esr_cpstore_close(s);
}

static void check_s3_refusals_are_config_errors(void **state) {
  (void)state;
  static const struct {
    const char *reply, *code, *fix;
  } cases[] = {
      {"<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>",
       "HTTP 404 NoSuchBucket", "create the bucket"},
      {"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>", "HTTP 403 AccessDenied",
       "check the credentials"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const char *const replies[] = {cases[i].reply};
    script sc = {.replies = replies, .n_replies = 1};
    pthread_t t;
    esr_cpstore *s = scripted_store(&sc, &t);
    esr_error err = {0};
    assert_int_equal(esr_cpstore_check(s, &err), ESR_E_CONFIG);
    pthread_join(t, NULL);
    assert_contains(err.msg, cases[i].code);
    assert_contains(err.msg, cases[i].fix);
    assert_not_contains(err.msg, "secret-never-shown");
    esr_cpstore_close(s);
    close(sc.fd);
  }
  /* Listing allowed, writing refused (read-only credentials): found at start too. */
  static const char *const replies[] = {
      "<?xml version=\"1.0\"?><ListBucketResult><Name>bucket</Name><IsTruncated>false</IsTruncated></ListBucketResult>",
      "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"};
  script sc = {.replies = replies, .n_replies = 2};
  pthread_t t;
  esr_cpstore *s = scripted_store(&sc, &t);
  esr_error err = {0};
  assert_int_equal(esr_cpstore_check(s, &err), ESR_E_CONFIG);
  pthread_join(t, NULL);
  assert_contains(sc.requests[0], "GET /bucket?list-type=2&max-keys=1&prefix=cp%2F HTTP/1.1");
  assert_contains(sc.requests[1], "PUT /bucket/cp/.esr-check/");
  assert_contains(err.msg, "PUT");
  assert_contains(err.msg, "may list, put and delete");
  esr_cpstore_close(s);
  close(sc.fd);
}

/* ---- setting a damaged checkpoint aside in the store ------------------------------------------------------------ */

static void quarantine_in_file_store(void **state) {
  fixture *f = *state;
  esr_manifest *a = checkpoint_and_upload(f, 10), *b = checkpoint_and_upload(f, 10);
  esr_error err = {0};
  assert_int_equal(esr_cpstore_quarantine(f->store, TOPIC, PART, 20, &err), ESR_E_OK);
  esr_manifest_list *l = remote_list(f);
  assert_int_equal(l->n, 1);
  assert_int_equal(l->v[0]->next_offset, 10);
  esr_manifest_list_free(l);
  char dir[4300];
  snprintf(dir, sizeof dir, "%s/%s-%d", f->remote, TOPIC, PART);
  assert_int_equal(count_prefixed(dir, "00000000000000000020.json.bad-"), 1);
  assert_int_equal(count_prefixed(dir, "00000000000000000020.db.bad-"), 1);
  /* gone already, or a partition never seen: nothing to do */
  assert_int_equal(esr_cpstore_quarantine(f->store, TOPIC, PART, 20, &err), ESR_E_OK);
  assert_int_equal(esr_cpstore_quarantine(f->store, TOPIC, 77, 5, &err), ESR_E_OK);
  /* pruning never deletes what was set aside */
  assert_int_equal(esr_cpstore_prune(f->store, TOPIC, PART, 1, &err), ESR_E_OK);
  assert_int_equal(count_prefixed(dir, "00000000000000000020.db.bad-"), 1);
  esr_manifest_free(a);
  esr_manifest_free(b);
}

/* S3 sets a checkpoint aside by CopyObject (the copy source signed with the other x-amz- headers, as S3 requires)
 * and DELETE, manifest first. */
static void s3_quarantine_copies_then_deletes(void **state) {
  (void)state;
  static const char *const replies[] = {"<CopyObjectResult><ETag>\"1\"</ETag></CopyObjectResult>", "",
                                        "<CopyObjectResult><ETag>\"2\"</ETag></CopyObjectResult>", ""};
  script sc = {.replies = replies, .n_replies = 4};
  pthread_t t;
  esr_cpstore *s = scripted_store(&sc, &t);
  esr_error err = {0};
  assert_int_equal(esr_cpstore_quarantine(s, TOPIC, PART, 20, &err), ESR_E_OK);
  pthread_join(t, NULL);
  assert_int_equal(sc.served, 4);
  assert_contains(sc.requests[0], "PUT /bucket/cp/ledger-3/00000000000000000020.json.bad-");
  assert_contains(sc.requests[0], "x-amz-copy-source: /bucket/cp/ledger-3/00000000000000000020.json\r\n");
  assert_contains(sc.requests[0], "SignedHeaders=host;x-amz-content-sha256;x-amz-copy-source;x-amz-date,");
  assert_contains(sc.requests[1], "DELETE /bucket/cp/ledger-3/00000000000000000020.json HTTP/1.1");
  assert_contains(sc.requests[2], "x-amz-copy-source: /bucket/cp/ledger-3/00000000000000000020.db\r\n");
  assert_contains(sc.requests[3], "DELETE /bucket/cp/ledger-3/00000000000000000020.db HTTP/1.1");
  esr_cpstore_close(s);
  close(sc.fd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(upload_list_fetch_restore, setup, teardown),
      cmocka_unit_test_setup_teardown(prune_keeps_newest, setup, teardown),
      cmocka_unit_test_setup_teardown(data_without_manifest_is_invisible, setup, teardown),
      cmocka_unit_test_setup_teardown(corrupted_remote_refused_at_fetch, setup, teardown),
      cmocka_unit_test_setup_teardown(corrupted_local_refused_at_upload, setup, teardown),
      cmocka_unit_test_setup_teardown(missing_root_is_an_error, setup, teardown),
      cmocka_unit_test(open_refuses_bad_urls),
      cmocka_unit_test(s3_retries_then_says_where),
      cmocka_unit_test(s3_retries_5xx_and_signs),
      cmocka_unit_test(s3_access_denied_is_not_retried),
      cmocka_unit_test_setup_teardown(check_file_store, setup, teardown),
      cmocka_unit_test_setup_teardown(check_read_only_file_store, setup, teardown),
      cmocka_unit_test(check_s3_unreachable_is_not_a_config_error),
      cmocka_unit_test(check_s3_refusals_are_config_errors),
      cmocka_unit_test_setup_teardown(quarantine_in_file_store, setup, teardown),
      cmocka_unit_test(s3_quarantine_copies_then_deletes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
