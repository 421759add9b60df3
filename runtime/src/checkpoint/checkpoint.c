/* checkpoint.c — local checkpoints: a VACUUM INTO copy from a connection of its own, its manifest, verification,
 * pruning, quarantine and restore. Durability order everywhere: data fsynced and renamed before the manifest that
 * vouches for it; the manifest removed before the data it vouched for. */
#include "checkpoint.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cp_internal.h"
#include "digest.h"
#include "esr/json.h"
#include "statedigest.h"
#include "store.h"

#define PATH_CAP 4096
#define COPY_CHUNK (1 << 20)
#define MANIFEST_MAX (1 << 20)
#define STALE_TMP_SECONDS 3600
#define TMP_PREFIX ".tmp-"
#define RESTORE_INFIX ".restore-" /* "<live>.restore-XXXXXX": a restore's copy before its rename */

/* ---- small helpers ---------------------------------------------------------------------------------------------- */

esr_code esr__cp_io_error(esr_error *err, const char *what, const char *path) {
  int e = errno;
  return esr_error_set(err, ESR_E_IO, e, "%s %s: %s", what, path, strerror(e));
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int hex_decode(const char *s, uint8_t *out, size_t n) {
  if (!s || strlen(s) != 2 * n) return -1;
  for (size_t i = 0; i < n; i++) {
    int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return -1;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}

/* "2026-11-25T10:00:00Z" (rfc3339 = 1) or "20261125T100000Z" (for file names). */
static void utc_now(char *buf, size_t cap, int rfc3339) {
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(buf, cap, rfc3339 ? "%Y-%m-%dT%H:%M:%SZ" : "%Y%m%dT%H%M%SZ", &tm);
}

/* Kafka's legal topic characters; anything else could leave the checkpoint directory. */
static int topic_ok(const char *t) {
  if (!t || !*t || strlen(t) > 249 || strcmp(t, ".") == 0 || strcmp(t, "..") == 0) return 0;
  for (const char *p = t; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' ||
          *p == '-'))
      return 0;
  return 1;
}

static esr_code check_names(const char *topic, int32_t partition, esr_error *err) {
  if (!topic_ok(topic)) return esr_error_set(err, ESR_E_CONFIG, 0, "bad topic name \"%s\"", topic ? topic : "");
  if (partition < 0) return esr_error_set(err, ESR_E_CONFIG, 0, "bad partition %d", (int)partition);
  return ESR_E_OK;
}

static esr_code part_dir(char *buf, size_t cap, const char *cp_dir, const char *topic, int32_t partition,
                         esr_error *err) {
  esr_code rc = check_names(topic, partition, err);
  if (rc != ESR_E_OK) return rc;
  if ((size_t)snprintf(buf, cap, "%s/%s-%d", cp_dir, topic, (int)partition) >= cap)
    return esr_error_set(err, ESR_E_CONFIG, 0, "checkpoint path too long: %s", cp_dir);
  return ESR_E_OK;
}

int esr_checkpoint_path(char *buf, size_t cap, const char *cp_dir, const char *topic, int32_t partition,
                        int64_t next_offset, const char *ext) {
  int n = snprintf(buf, cap, "%s/%s-%d/%020" PRId64 "%s", cp_dir, topic, (int)partition, next_offset, ext);
  return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static esr_code cp_path(char *buf, const char *cp_dir, const esr_manifest *m, const char *ext, esr_error *err) {
  esr_code rc = check_names(m->topic, m->partition, err);
  if (rc != ESR_E_OK) return rc;
  if (esr_checkpoint_path(buf, PATH_CAP, cp_dir, m->topic, m->partition, m->next_offset, ext) != 0)
    return esr_error_set(err, ESR_E_CONFIG, 0, "checkpoint path too long: %s", cp_dir);
  return ESR_E_OK;
}

/* mkdir -p. */
static esr_code make_dirs(const char *path, esr_error *err) {
  char buf[PATH_CAP];
  if ((size_t)snprintf(buf, sizeof buf, "%s", path) >= sizeof buf)
    return esr_error_set(err, ESR_E_CONFIG, 0, "path too long: %s", path);
  for (char *p = buf + 1;; p++) {
    if (*p != '/' && *p != '\0') continue;
    char c = *p;
    *p = '\0';
    if (mkdir(buf, 0750) != 0 && errno != EEXIST) return esr__cp_io_error(err, "cannot create directory", buf);
    *p = c;
    if (!c) break;
  }
  return ESR_E_OK;
}

static esr_code fsync_dir(const char *dir, esr_error *err) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return esr__cp_io_error(err, "cannot open directory", dir);
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  errno = e;
  return rc == 0 ? ESR_E_OK : esr__cp_io_error(err, "cannot fsync directory", dir);
}

/* The directory part of `path` into buf. */
static void dir_of(const char *path, char *buf, size_t cap) {
  snprintf(buf, cap, "%s", path);
  char *slash = strrchr(buf, '/');
  if (!slash)
    snprintf(buf, cap, ".");
  else if (slash == buf)
    buf[1] = '\0';
  else
    *slash = '\0';
}

static esr_code unlink_if_present(const char *path, esr_error *err) {
  if (unlink(path) != 0 && errno != ENOENT) return esr__cp_io_error(err, "cannot remove", path);
  return ESR_E_OK;
}

/* The advisory lock of a partition's checkpoint directory (flock: per open file, so threads exclude each other too). */
static esr_code lock_dir(const char *dir, int *fd_out, esr_error *err) {
  char path[PATH_CAP];
  snprintf(path, sizeof path, "%s/.lock", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return esr__cp_io_error(err, "cannot open lock file", path);
  while (flock(fd, LOCK_EX) != 0) {
    if (errno == EINTR) continue;
    esr_code rc = esr__cp_io_error(err, "cannot lock", path);
    close(fd);
    return rc;
  }
  *fd_out = fd;
  return ESR_E_OK;
}

static void unlock_dir(int fd) {
  if (fd >= 0) close(fd); /* releases the flock */
}

esr_code esr_checkpoint_tmpfile(const char *cp_dir, const char *topic, int32_t partition, char *buf, size_t cap,
                                esr_error *err) {
  char dir[PATH_CAP];
  esr_code rc = part_dir(dir, sizeof dir, cp_dir, topic, partition, err);
  if (rc != ESR_E_OK) return rc;
  if ((rc = make_dirs(dir, err)) != ESR_E_OK) return rc;
  if ((size_t)snprintf(buf, cap, "%s/" TMP_PREFIX "XXXXXX", dir) >= cap)
    return esr_error_set(err, ESR_E_CONFIG, 0, "checkpoint path too long: %s", dir);
  int fd = mkstemp(buf);
  if (fd < 0) return esr__cp_io_error(err, "cannot create temporary file in", dir);
  close(fd);
  return ESR_E_OK;
}

esr_code esr__cp_stream(const char *src, int out_fd, const char *out_path, uint8_t sha[32], int64_t *size,
                        esr_error *err) {
  esr_code rc = ESR_E_OK;
  int in = open(src, O_RDONLY | O_CLOEXEC);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  unsigned char *buf = malloc(COPY_CHUNK);
  int64_t total = 0;
  if (in < 0) {
    rc = esr__cp_io_error(err, "cannot open", src);
    goto done;
  }
  if (!ctx || !buf) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto done;
  }
  EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
  for (;;) {
    ssize_t n = read(in, buf, COPY_CHUNK);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      rc = esr__cp_io_error(err, "cannot read", src);
      goto done;
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx, buf, (size_t)n);
    total += n;
    for (ssize_t off = 0; out_fd >= 0 && off < n;) {
      ssize_t w = write(out_fd, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        rc = esr__cp_io_error(err, "cannot write", out_path);
        goto done;
      }
      off += w;
    }
  }
  unsigned int len = 32;
  uint8_t digest[32];
  EVP_DigestFinal_ex(ctx, digest, &len);
  if (sha) memcpy(sha, digest, 32);
  if (size) *size = total;
done:
  if (in >= 0) close(in);
  EVP_MD_CTX_free(ctx);
  free(buf);
  return rc;
}

esr_code esr_file_sha256(const char *path, uint8_t sha256[32], int64_t *size, esr_error *err) {
  return esr__cp_stream(path, -1, NULL, sha256, size, err);
}

/* Makes a file we wrote durable (and readable by others). */
static esr_code sync_file(const char *path, esr_error *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return esr__cp_io_error(err, "cannot open", path);
  esr_code rc = fchmod(fd, 0640) != 0 || fsync(fd) != 0 ? esr__cp_io_error(err, "cannot fsync", path) : ESR_E_OK;
  close(fd);
  return rc;
}

static esr_code read_small_file(const char *path, char **out, size_t *len, esr_error *err) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return esr__cp_io_error(err, "cannot open", path);
  esr_code rc = ESR_E_OK;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  if (!buf) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto fail;
  }
  for (;;) {
    if (n + 1 >= cap) {
      if (cap >= MANIFEST_MAX) {
        rc = esr_error_set(err, ESR_E_CORRUPT, 0, "%s: larger than %d bytes", path, MANIFEST_MAX);
        goto fail;
      }
      char *grown = realloc(buf, cap * 2);
      if (!grown) {
        rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
        goto fail;
      }
      buf = grown;
      cap *= 2;
    }
    ssize_t got = read(fd, buf + n, cap - n - 1);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      rc = esr__cp_io_error(err, "cannot read", path);
      goto fail;
    }
    if (got == 0) break;
    n += (size_t)got;
  }
  buf[n] = '\0';
  close(fd);
  *out = buf;
  *len = n;
  return ESR_E_OK;
fail:
  close(fd);
  free(buf);
  return rc;
}

/* tmp in the same directory, fsync, rename, fsync the directory. */
static esr_code write_file_atomic(const char *path, const char *data, size_t len, esr_error *err) {
  char dir[PATH_CAP], tmp[PATH_CAP];
  dir_of(path, dir, sizeof dir);
  snprintf(tmp, sizeof tmp, "%s/" TMP_PREFIX "XXXXXX", dir);
  int fd = mkstemp(tmp);
  if (fd < 0) return esr__cp_io_error(err, "cannot create temporary file in", dir);
  esr_code rc = ESR_E_OK;
  size_t done = 0;
  while (done < len) {
    ssize_t n = write(fd, data + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      rc = esr__cp_io_error(err, "cannot write", tmp);
      goto fail;
    }
    done += (size_t)n;
  }
  if (fchmod(fd, 0640) != 0 || fsync(fd) != 0) {
    rc = esr__cp_io_error(err, "cannot fsync", tmp);
    goto fail;
  }
  if (close(fd) != 0) {
    fd = -1;
    rc = esr__cp_io_error(err, "cannot close", tmp);
    goto fail;
  }
  fd = -1;
  if (rename(tmp, path) != 0) {
    rc = esr__cp_io_error(err, "cannot rename to", path);
    goto fail;
  }
  return fsync_dir(dir, err);
fail:
  if (fd >= 0) close(fd);
  unlink(tmp);
  return rc;
}

/* ---- manifests -------------------------------------------------------------------------------------------------- */

static void handlers_free(esr_cp_handler *h, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(h[i].name);
    free(h[i].version);
  }
  free(h);
}

void esr_manifest_free(esr_manifest *m) {
  if (!m) return;
  free(m->topic);
  free(m->esr_version);
  free(m->created_at);
  handlers_free(m->handlers, m->n_handlers);
  free(m);
}

void esr_manifest_list_free(esr_manifest_list *l) {
  if (!l) return;
  for (size_t i = 0; i < l->n; i++) esr_manifest_free(l->v[i]);
  free(l->v);
  free(l);
}

esr_code esr__manifest_list_push(esr_manifest_list *l, esr_manifest *m, size_t *cap, esr_error *err) {
  if (l->n == *cap) {
    size_t ncap = *cap ? *cap * 2 : 8;
    esr_manifest **grown = realloc(l->v, ncap * sizeof *grown);
    if (!grown) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    l->v = grown;
    *cap = ncap;
  }
  l->v[l->n++] = m;
  return ESR_E_OK;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

char *esr_manifest_json(const esr_manifest *m, esr_error *err) {
  char digest[65], sha[65], state[65];
  esr_digest_hex(m->log_digest, digest);
  esr_digest_hex(m->sha256, sha);
  esr_digest_hex(m->state_digest, state);
  char *text = NULL;
  cJSON *root = cJSON_CreateObject(), *handlers = NULL;
  if (!root) goto fail;
  if (!cJSON_AddNumberToObject(root, "format", ESR_CHECKPOINT_FORMAT) ||
      !cJSON_AddStringToObject(root, "topic", m->topic ? m->topic : "") ||
      !cJSON_AddNumberToObject(root, "partition", m->partition) ||
      !cJSON_AddNumberToObject(root, "next_offset", (double)m->next_offset) ||
      !cJSON_AddStringToObject(root, "log_digest", digest) ||
      !cJSON_AddNumberToObject(root, "applied", (double)m->applied) ||
      !cJSON_AddNumberToObject(root, "dead", (double)m->dead) ||
      !cJSON_AddNumberToObject(root, "size", (double)m->size) || !cJSON_AddStringToObject(root, "sha256", sha) ||
      (m->has_state_digest && !cJSON_AddStringToObject(root, "state_digest", state)) ||
      !cJSON_AddStringToObject(root, "esr_version", m->esr_version ? m->esr_version : "") ||
      !cJSON_AddStringToObject(root, "created_at", m->created_at ? m->created_at : "") ||
      !(handlers = cJSON_AddArrayToObject(root, "handlers")))
    goto fail;
  for (size_t i = 0; i < m->n_handlers; i++) {
    cJSON *h = cJSON_CreateObject();
    if (!h) goto fail;
    cJSON_AddItemToArray(handlers, h);
    if (!cJSON_AddStringToObject(h, "name", m->handlers[i].name) ||
        !(m->handlers[i].version ? cJSON_AddStringToObject(h, "version", m->handlers[i].version)
                                 : cJSON_AddNullToObject(h, "version")) ||
        !cJSON_AddNumberToObject(h, "schema_version", m->handlers[i].schema_version))
      goto fail;
  }
  char *printed = cJSON_Print(root);
  if (!printed) goto fail;
  size_t n = strlen(printed);
  text = malloc(n + 2);
  if (text) {
    memcpy(text, printed, n);
    text[n] = '\n';
    text[n + 1] = '\0';
  }
  cJSON_free(printed);
  if (!text) goto fail;
  cJSON_Delete(root);
  return text;
fail:
  cJSON_Delete(root);
  esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  return NULL;
}

static int get_int(const cJSON *root, const char *name, int64_t lo, int64_t hi, int64_t *out) {
  return esr_json_int53(cJSON_GetObjectItemCaseSensitive(root, name), lo, hi, out);
}

esr_code esr_manifest_parse(const char *json, size_t len, esr_manifest **out, esr_error *err) {
  *out = NULL;
  const char *bad = NULL;
  esr_code rc = ESR_E_OK;
  esr_manifest *m = calloc(1, sizeof *m);
  cJSON *root = cJSON_ParseWithLength(json, len);
  if (!m) {
    cJSON_Delete(root);
    return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  }
  int64_t v;
  if (!root || !cJSON_IsObject(root)) {
    bad = "not a JSON object";
    goto fail;
  }
  if (!get_int(root, "format", 0, INT32_MAX, &v)) {
    bad = "no format";
    goto fail;
  }
  if (v != ESR_CHECKPOINT_FORMAT) {
    rc = esr_error_set(err, ESR_E_CORRUPT, 0, "manifest format %" PRId64 ", this esr reads %d", v,
                       ESR_CHECKPOINT_FORMAT);
    goto fail;
  }
  m->format = (int)v;
  const char *topic = esr_json_string(root, "topic");
  if (!topic_ok(topic)) {
    bad = "bad topic";
    goto fail;
  }
  if (!get_int(root, "partition", 0, INT32_MAX, &v)) {
    bad = "bad partition";
    goto fail;
  }
  m->partition = (int32_t)v;
  if (!get_int(root, "next_offset", 0, ESR_INT53_MAX, &m->next_offset)) {
    bad = "bad next_offset";
    goto fail;
  }
  if (hex_decode(esr_json_string(root, "log_digest"), m->log_digest, 32) != 0) {
    bad = "bad log_digest";
    goto fail;
  }
  if (!get_int(root, "applied", 0, ESR_INT53_MAX, &m->applied) || !get_int(root, "dead", 0, ESR_INT53_MAX, &m->dead)) {
    bad = "bad counters";
    goto fail;
  }
  if (!get_int(root, "size", 0, ESR_INT53_MAX, &m->size)) {
    bad = "bad size";
    goto fail;
  }
  if (hex_decode(esr_json_string(root, "sha256"), m->sha256, 32) != 0) {
    bad = "bad sha256";
    goto fail;
  }
  /* Written since esr recorded state digests; older manifests have none and still load. */
  const cJSON *state = cJSON_GetObjectItemCaseSensitive(root, "state_digest");
  if (state) {
    if (hex_decode(cJSON_IsString(state) ? state->valuestring : NULL, m->state_digest, 32) != 0) {
      bad = "bad state_digest";
      goto fail;
    }
    m->has_state_digest = 1;
  }
  const char *version = esr_json_string(root, "esr_version"), *created = esr_json_string(root, "created_at");
  if (!version || !created) {
    bad = "no esr_version or created_at";
    goto fail;
  }
  const cJSON *handlers = cJSON_GetObjectItemCaseSensitive(root, "handlers");
  if (!cJSON_IsArray(handlers)) {
    bad = "no handlers array";
    goto fail;
  }
  size_t n = (size_t)cJSON_GetArraySize(handlers);
  if (!(m->topic = strdup(topic)) || !(m->esr_version = strdup(version)) || !(m->created_at = strdup(created)) ||
      (n && !(m->handlers = calloc(n, sizeof *m->handlers))))
    goto nomem;
  const cJSON *h;
  cJSON_ArrayForEach(h, handlers) {
    const char *name = esr_json_string(h, "name");
    const cJSON *hv = cJSON_GetObjectItemCaseSensitive(h, "version");
    if (!name || !get_int(h, "schema_version", INT32_MIN, INT32_MAX, &v) ||
        (hv && !cJSON_IsNull(hv) && !cJSON_IsString(hv))) {
      bad = "bad handler entry";
      goto fail;
    }
    esr_cp_handler *e = &m->handlers[m->n_handlers++];
    e->schema_version = (int)v;
    if (!(e->name = strdup(name)) || (cJSON_IsString(hv) && !(e->version = strdup(hv->valuestring)))) goto nomem;
  }
  cJSON_Delete(root);
  *out = m;
  return ESR_E_OK;
nomem:
  rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
fail:
  if (bad) rc = esr_error_set(err, ESR_E_CORRUPT, 0, "manifest does not parse: %s", bad);
  cJSON_Delete(root);
  esr_manifest_free(m);
  return rc;
}

static esr_code read_manifest(const char *path, esr_manifest **out, esr_error *err) {
  char *text = NULL;
  size_t len = 0;
  esr_code rc = read_small_file(path, &text, &len, err);
  if (rc == ESR_E_OK) rc = esr_manifest_parse(text, len, out, err);
  free(text);
  if (rc != ESR_E_OK) esr_error_prefix(err, "%s", path);
  return rc;
}

/* ---- the database inside a copy --------------------------------------------------------------------------------- */

static esr_code sqlite_fail(sqlite3 *db, esr_error *err, const char *what, const char *path) {
  int code = db ? sqlite3_extended_errcode(db) : SQLITE_CANTOPEN;
  const char *msg = db ? sqlite3_errmsg(db) : "cannot open";
  esr_code c = code == SQLITE_NOTADB || (code & 0xff) == SQLITE_CORRUPT ? ESR_E_CORRUPT : ESR_E_SQLITE;
  return esr_error_set(err, c, code, "%s %s: %s", what, path, msg);
}

/* Reads the one esr_offsets row (and, with_handlers, the esr_handlers rows) of the open copy at `path` into m. */
static esr_code read_copy(sqlite3 *db, const char *path, esr_manifest *m, int with_handlers, esr_error *err) {
  sqlite3_stmt *st = NULL;
  esr_code rc = ESR_E_OK;
  int rows = 0, step;
  if (sqlite3_prepare_v2(db,
                         "SELECT topic, partition, next_offset, log_digest, applied_count, dead_count FROM esr_offsets",
                         -1, &st, NULL) != SQLITE_OK)
    return sqlite_fail(db, err, "reading esr_offsets of", path);
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    if (++rows > 1) break;
    const char *topic = (const char *)sqlite3_column_text(st, 0);
    if (!topic || !(m->topic = strdup(topic))) {
      rc = esr_error_set(err, topic ? ESR_E_NOMEM : ESR_E_CORRUPT, 0, "%s: esr_offsets has no topic", path);
      goto done;
    }
    m->partition = sqlite3_column_int(st, 1);
    m->next_offset = sqlite3_column_int64(st, 2);
    if (sqlite3_column_bytes(st, 3) != 32) {
      rc = esr_error_set(err, ESR_E_CORRUPT, 0, "%s: esr_offsets.log_digest is not 32 bytes", path);
      goto done;
    }
    memcpy(m->log_digest, sqlite3_column_blob(st, 3), 32);
    m->applied = sqlite3_column_int64(st, 4);
    m->dead = sqlite3_column_int64(st, 5);
  }
  if (step != SQLITE_ROW && step != SQLITE_DONE) {
    rc = sqlite_fail(db, err, "reading esr_offsets of", path);
    goto done;
  }
  if (rows > 1) {
    rc = esr_error_set(err, ESR_E_CORRUPT, 0, "%s: esr_offsets holds more than one position", path);
    goto done;
  }
  if (rows == 0) {
    rc = esr_error_set(err, ESR_E_STATE, 0, "%s: no position yet (the database never committed a batch)", path);
    goto done;
  }
  sqlite3_finalize(st);
  st = NULL;
  if (!with_handlers) goto done;
  if (sqlite3_prepare_v2(db, "SELECT name, plugin_version, schema_version FROM esr_handlers ORDER BY name", -1, &st,
                         NULL) != SQLITE_OK) {
    rc = sqlite_fail(db, err, "reading esr_handlers of", path);
    goto done;
  }
  size_t cap = 0;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    if (m->n_handlers == cap) {
      size_t ncap = cap ? cap * 2 : 4;
      esr_cp_handler *grown = realloc(m->handlers, ncap * sizeof *grown);
      if (!grown) {
        rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
        goto done;
      }
      m->handlers = grown;
      cap = ncap;
    }
    esr_cp_handler *h = &m->handlers[m->n_handlers++];
    memset(h, 0, sizeof *h);
    h->name = dup_or_null((const char *)sqlite3_column_text(st, 0));
    h->version = dup_or_null((const char *)sqlite3_column_text(st, 1));
    h->schema_version = sqlite3_column_int(st, 2);
    if (!h->name || (sqlite3_column_type(st, 1) != SQLITE_NULL && !h->version)) {
      rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
      goto done;
    }
  }
  if (step != SQLITE_DONE) rc = sqlite_fail(db, err, "reading esr_handlers of", path);
done:
  sqlite3_finalize(st);
  return rc;
}

static esr_code open_copy(const char *path, int flags, sqlite3 **out, esr_error *err) {
  *out = NULL;
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
    esr_code rc = sqlite_fail(db, err, "cannot open", path);
    sqlite3_close(db);
    return rc;
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, 5000);
  *out = db;
  return ESR_E_OK;
}

/* The copy's esr_offsets row equals the manifest. */
static esr_code check_position(const char *path, const esr_manifest *m, esr_error *err) {
  sqlite3 *db = NULL;
  esr_manifest got;
  memset(&got, 0, sizeof got);
  esr_code rc = open_copy(path, SQLITE_OPEN_READONLY, &db, err);
  if (rc == ESR_E_OK) rc = read_copy(db, path, &got, 0, err);
  if (rc == ESR_E_STATE) rc = esr_error_set(err, ESR_E_CORRUPT, 0, "%s: esr_offsets is empty", path);
  if (rc == ESR_E_OK && (strcmp(got.topic, m->topic) != 0 || got.partition != m->partition ||
                         got.next_offset != m->next_offset || memcmp(got.log_digest, m->log_digest, 32) != 0))
    rc = esr_error_set(err, ESR_E_CORRUPT, 0,
                       "%s: its esr_offsets (%s-%d at %" PRId64 ") differs from the manifest (%s-%d at %" PRId64 ")",
                       path, got.topic, (int)got.partition, got.next_offset, m->topic, (int)m->partition,
                       m->next_offset);
  free(got.topic);
  sqlite3_close(db);
  return rc;
}

/* Size, SHA-256 and position of the file at `path` against m. */
static esr_code verify_file(const char *path, const esr_manifest *m, esr_error *err) {
  uint8_t sha[32];
  int64_t size = 0;
  esr_code rc = esr_file_sha256(path, sha, &size, err);
  if (rc != ESR_E_OK) return rc;
  if (size != m->size)
    return esr_error_set(err, ESR_E_CORRUPT, 0, "%s: %" PRId64 " bytes, the manifest says %" PRId64 " (truncated?)",
                         path, size, m->size);
  if (memcmp(sha, m->sha256, 32) != 0) {
    char got[65], want[65];
    esr_digest_hex(sha, got);
    esr_digest_hex(m->sha256, want);
    return esr_error_set(err, ESR_E_CORRUPT, 0, "%s: SHA-256 %s, the manifest says %s", path, got, want);
  }
  return check_position(path, m, err);
}

esr_code esr_checkpoint_verify(const char *cp_dir, const esr_manifest *m, esr_error *err) {
  char path[PATH_CAP];
  esr_code rc = cp_path(path, cp_dir, m, ".db", err);
  if (rc != ESR_E_OK) return rc;
  rc = verify_file(path, m, err);
  if (rc == ESR_E_IO && err && err->lib_code == ENOENT) err->code = rc = ESR_E_CORRUPT; /* data gone: unusable */
  return rc;
}

/* ---- writing ---------------------------------------------------------------------------------------------------- */

static int progress_cb(void *arg) {
  const esr_checkpoint_opts *o = arg;
  return o->progress(o->progress_arg);
}

static esr_code vacuum_into(const char *db_path, const char *tmp, const esr_checkpoint_opts *opts, esr_error *err) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  /* A connection of our own, read-only: VACUUM INTO reads one snapshot (a read transaction in WAL mode), so the
   * writer keeps committing while the copy is made. */
  esr_code rc = open_copy(db_path, SQLITE_OPEN_READONLY, &db, err);
  if (rc != ESR_E_OK) goto done;
  if (opts && opts->progress) sqlite3_progress_handler(db, 1000, progress_cb, (void *)opts);
  if (sqlite3_prepare_v2(db, "VACUUM INTO ?1", -1, &st, NULL) != SQLITE_OK) {
    rc = sqlite_fail(db, err, "VACUUM INTO of", db_path);
    goto done;
  }
  sqlite3_bind_text(st, 1, tmp, -1, SQLITE_STATIC);
  int step = sqlite3_step(st);
  if (step == SQLITE_INTERRUPT)
    rc = esr_error_set(err, ESR_E_STATE, step, "checkpoint of %s cancelled", db_path);
  else if (step != SQLITE_DONE)
    rc = sqlite_fail(db, err, "VACUUM INTO of", db_path);
done:
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rc;
}

/* Reads the copy's position, handlers and state digest, and makes it a self-contained rollback-journal database. */
static esr_code describe_copy(const char *tmp, esr_manifest *m, esr_error *err) {
  sqlite3 *db = NULL;
  esr_code rc = open_copy(tmp, SQLITE_OPEN_READWRITE, &db, err);
  if (rc == ESR_E_OK && sqlite3_exec(db, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK)
    rc = sqlite_fail(db, err, "journal_mode of", tmp);
  if (rc == ESR_E_OK) rc = read_copy(db, tmp, m, 1, err);
  if (rc == ESR_E_OK && (rc = esr_state_digest(db, m->state_digest, err)) == ESR_E_OK) m->has_state_digest = 1;
  sqlite3_close(db);
  return rc;
}

/* An existing complete checkpoint at m's offset that can stay (its manifest parses, its file has the right size). */
static esr_manifest *existing_checkpoint(const char *cp_dir, const esr_manifest *m) {
  char json[PATH_CAP], data[PATH_CAP];
  esr_manifest *old = NULL;
  struct stat st;
  if (cp_path(json, cp_dir, m, ".json", NULL) != ESR_E_OK || cp_path(data, cp_dir, m, ".db", NULL) != ESR_E_OK)
    return NULL;
  if (access(json, F_OK) != 0 || read_manifest(json, &old, NULL) != ESR_E_OK) return NULL;
  if (strcmp(old->topic, m->topic) != 0 || old->partition != m->partition || old->next_offset != m->next_offset ||
      memcmp(old->log_digest, m->log_digest, 32) != 0 || stat(data, &st) != 0 || st.st_size != old->size) {
    esr_manifest_free(old);
    return NULL;
  }
  return old;
}

/* Under the partition lock: data renamed into place (after removing a stale manifest for its name), then manifest. */
static esr_code publish(const char *cp_dir, const esr_manifest *m, const char *tmp, esr_error *err) {
  char dir[PATH_CAP], data[PATH_CAP], json[PATH_CAP];
  esr_code rc;
  char *text = NULL;
  if ((rc = part_dir(dir, sizeof dir, cp_dir, m->topic, m->partition, err)) != ESR_E_OK ||
      (rc = cp_path(data, cp_dir, m, ".db", err)) != ESR_E_OK ||
      (rc = cp_path(json, cp_dir, m, ".json", err)) != ESR_E_OK)
    return rc;
  if (!(text = esr_manifest_json(m, err))) return ESR_E_NOMEM;
  if ((rc = unlink_if_present(json, err)) != ESR_E_OK) goto done;
  if (rename(tmp, data) != 0) {
    rc = esr__cp_io_error(err, "cannot rename to", data);
    goto done;
  }
  /* The data file's name must be durable before a manifest can vouch for it. */
  if ((rc = fsync_dir(dir, err)) != ESR_E_OK) goto done;
  rc = write_file_atomic(json, text, strlen(text), err);
done:
  free(text);
  return rc;
}

esr_code esr_checkpoint_write(const char *db_path, const char *cp_dir, const char *topic, int32_t partition,
                              const esr_checkpoint_opts *opts, esr_manifest **out, esr_error *err) {
  *out = NULL;
  char tmp[PATH_CAP] = "", dir[PATH_CAP];
  int lock = -1;
  esr_manifest *m = calloc(1, sizeof *m);
  if (!m) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  esr_code rc = part_dir(dir, sizeof dir, cp_dir, topic, partition, err);
  if (rc != ESR_E_OK) goto fail;
  if ((rc = esr_checkpoint_tmpfile(cp_dir, topic, partition, tmp, sizeof tmp, err)) != ESR_E_OK) goto fail;
  if ((rc = vacuum_into(db_path, tmp, opts, err)) != ESR_E_OK) goto fail;
  if ((rc = describe_copy(tmp, m, err)) != ESR_E_OK) goto fail;
  if (strcmp(m->topic, topic) != 0 || m->partition != partition) {
    rc = esr_error_set(err, ESR_E_CORRUPT, 0, "%s holds the position of %s-%d, not of %s-%d", db_path, m->topic,
                       (int)m->partition, topic, (int)partition);
    goto fail;
  }
  if ((rc = esr_file_sha256(tmp, m->sha256, &m->size, err)) != ESR_E_OK || (rc = sync_file(tmp, err)) != ESR_E_OK)
    goto fail;
  m->format = ESR_CHECKPOINT_FORMAT;
  char now[32];
  utc_now(now, sizeof now, 1);
  if (!(m->esr_version = strdup(ESR_VERSION)) || !(m->created_at = strdup(now))) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto fail;
  }
  if ((rc = lock_dir(dir, &lock, err)) != ESR_E_OK) goto fail;
  esr_manifest *old = existing_checkpoint(cp_dir, m);
  if (old) {
    unlink(tmp);
    esr_manifest_free(m);
    m = old;
  } else if ((rc = publish(cp_dir, m, tmp, err)) != ESR_E_OK) {
    goto fail;
  }
  unlock_dir(lock);
  *out = m;
  return ESR_E_OK;
fail:
  unlock_dir(lock);
  if (*tmp) unlink(tmp);
  esr_manifest_free(m);
  esr_error_prefix(err, "checkpoint of %s-%d", topic ? topic : "?", (int)partition);
  return rc;
}

esr_code esr_checkpoint_install(const char *cp_dir, const esr_manifest *m, const char *tmp_path, esr_error *err) {
  char dir[PATH_CAP];
  int lock = -1;
  esr_code rc = part_dir(dir, sizeof dir, cp_dir, m->topic, m->partition, err);
  if (rc == ESR_E_OK) rc = verify_file(tmp_path, m, err);
  if (rc == ESR_E_OK) rc = sync_file(tmp_path, err);
  if (rc == ESR_E_OK) rc = lock_dir(dir, &lock, err);
  if (rc == ESR_E_OK) rc = publish(cp_dir, m, tmp_path, err);
  unlock_dir(lock);
  return rc;
}

/* ---- listing, choosing, pruning --------------------------------------------------------------------------------- */

int esr_checkpoint_parse_name(const char *name, int64_t *offset) {
  int64_t v = 0;
  for (int i = 0; i < 20; i++) {
    if (name[i] < '0' || name[i] > '9') return 0;
    if (v > (INT64_MAX - 9) / 10) return 0;
    v = v * 10 + (name[i] - '0');
  }
  *offset = v;
  if (strcmp(name + 20, ".db") == 0) return 1;
  if (strcmp(name + 20, ".json") == 0) return 2;
  return 0;
}

esr_code esr__cp_names_add(esr__cp_names *names, const char *name, esr_error *err) {
  const char *slash = strrchr(name, '/');
  int64_t off;
  int kind = esr_checkpoint_parse_name(slash ? slash + 1 : name, &off);
  if (!kind) return ESR_E_OK;
  struct esr__cp_name *e = NULL;
  for (size_t i = names->n; i > 0 && !e; i--) /* a listing is sorted by name: the match is near the end */
    if (names->v[i - 1].offset == off) e = &names->v[i - 1];
  if (!e) {
    if (names->n == names->cap) {
      size_t ncap = names->cap ? names->cap * 2 : 16;
      struct esr__cp_name *grown = realloc(names->v, ncap * sizeof *grown);
      if (!grown) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
      names->v = grown;
      names->cap = ncap;
    }
    e = &names->v[names->n++];
    memset(e, 0, sizeof *e);
    e->offset = off;
  }
  if (kind == 1)
    e->has_data = 1;
  else
    e->has_manifest = 1;
  return ESR_E_OK;
}

static int name_desc(const void *a, const void *b) {
  int64_t x = ((const struct esr__cp_name *)a)->offset, y = ((const struct esr__cp_name *)b)->offset;
  return x < y ? 1 : x > y ? -1 : 0;
}

void esr__cp_names_sort(esr__cp_names *names) {
  if (names->n > 1) qsort(names->v, names->n, sizeof *names->v, name_desc);
}

void esr__cp_names_clear(esr__cp_names *names) {
  free(names->v);
  memset(names, 0, sizeof *names);
}

/* The checkpoint files of a partition directory, newest first. A missing directory is empty. */
static esr_code scan_dir(const char *dir, esr__cp_names *s, esr_error *err) {
  memset(s, 0, sizeof *s);
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT ? ESR_E_OK : esr__cp_io_error(err, "cannot read directory", dir);
  struct dirent *de;
  esr_code rc = ESR_E_OK;
  while (rc == ESR_E_OK && (de = readdir(d))) rc = esr__cp_names_add(s, de->d_name, err);
  closedir(d);
  if (rc != ESR_E_OK)
    esr__cp_names_clear(s);
  else
    esr__cp_names_sort(s);
  return rc;
}

/* The manifest of one entry, checked against its name. */
static esr_code load_entry(const char *cp_dir, const char *topic, int32_t partition, int64_t offset, esr_manifest **out,
                           esr_error *err) {
  char path[PATH_CAP];
  *out = NULL;
  if (esr_checkpoint_path(path, sizeof path, cp_dir, topic, partition, offset, ".json") != 0)
    return esr_error_set(err, ESR_E_CONFIG, 0, "checkpoint path too long: %s", cp_dir);
  esr_manifest *m = NULL;
  esr_code rc = read_manifest(path, &m, err);
  if (rc != ESR_E_OK) return rc;
  if (strcmp(m->topic, topic) != 0 || m->partition != partition || m->next_offset != offset) {
    rc = esr_error_set(err, ESR_E_CORRUPT, 0, "%s: the manifest is of %s-%d at %" PRId64, path, m->topic,
                       (int)m->partition, m->next_offset);
    esr_manifest_free(m);
    return rc;
  }
  *out = m;
  return ESR_E_OK;
}

esr_code esr_checkpoint_list(const char *cp_dir, const char *topic, int32_t partition, esr_manifest_list **out,
                             esr_error *err) {
  *out = NULL;
  char dir[PATH_CAP];
  esr__cp_names s = {0};
  size_t cap = 0;
  esr_manifest_list *l = calloc(1, sizeof *l);
  if (!l) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  esr_code rc = part_dir(dir, sizeof dir, cp_dir, topic, partition, err);
  if (rc == ESR_E_OK) rc = scan_dir(dir, &s, err);
  for (size_t i = 0; rc == ESR_E_OK && i < s.n; i++) {
    esr_manifest *m = NULL;
    if (!s.v[i].has_manifest) continue;
    esr_code lrc = load_entry(cp_dir, topic, partition, s.v[i].offset, &m, NULL);
    if (lrc == ESR_E_NOMEM) rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    if (lrc != ESR_E_OK) continue; /* incomplete, broken or vanished: not a checkpoint */
    if ((rc = esr__manifest_list_push(l, m, &cap, err)) != ESR_E_OK) esr_manifest_free(m);
  }
  esr__cp_names_clear(&s);
  if (rc != ESR_E_OK) {
    esr_manifest_list_free(l);
    return rc;
  }
  *out = l;
  return ESR_E_OK;
}

esr_code esr_checkpoint_newest_valid(const char *cp_dir, const char *topic, int32_t partition,
                                     esr_checkpoint_reject_cb reject, void *arg, esr_manifest **out, esr_error *err) {
  *out = NULL;
  char dir[PATH_CAP];
  esr__cp_names s = {0};
  esr_code rc = part_dir(dir, sizeof dir, cp_dir, topic, partition, err);
  if (rc == ESR_E_OK) rc = scan_dir(dir, &s, err);
  for (size_t i = 0; rc == ESR_E_OK && i < s.n && !*out; i++) {
    if (!s.v[i].has_manifest) continue;
    esr_error why = {0};
    esr_manifest *m = NULL;
    esr_code vrc = load_entry(cp_dir, topic, partition, s.v[i].offset, &m, &why);
    if (vrc == ESR_E_IO && why.lib_code == ENOENT) continue; /* pruned meanwhile */
    if (vrc == ESR_E_OK) vrc = esr_checkpoint_verify(cp_dir, m, &why);
    if (vrc == ESR_E_NOMEM) rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    if (vrc == ESR_E_OK)
      *out = m;
    else {
      esr_manifest_free(m);
      if (reject && vrc != ESR_E_NOMEM) reject(arg, topic, partition, s.v[i].offset, &why);
    }
  }
  esr__cp_names_clear(&s);
  return rc;
}

/* Removes temporary files of this directory untouched for an hour (their writer died). */
static void remove_stale_tmp(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  time_t now = time(NULL);
  while ((de = readdir(d))) {
    if (strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) != 0) continue;
    char path[PATH_CAP];
    struct stat st;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= sizeof path) continue;
    if (stat(path, &st) == 0 && now - st.st_mtime > STALE_TMP_SECONDS) unlink(path);
  }
  closedir(d);
}

/* Removes every temporary file of one directory: names starting with `prefix` (".tmp-"), or holding `infix`. */
static int sweep_dir(const char *dir, const char *prefix, const char *infix) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (prefix ? strncmp(de->d_name, prefix, strlen(prefix)) != 0 : !strstr(de->d_name, infix)) continue;
    char path[PATH_CAP];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= sizeof path) continue;
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && unlink(path) == 0) n++;
  }
  closedir(d);
  return n;
}

esr_code esr_checkpoint_sweep(const char *cp_dir, const char *state_dir, int *removed, esr_error *err) {
  int n = 0;
  DIR *d = opendir(cp_dir);
  if (!d && errno != ENOENT) return esr__cp_io_error(err, "cannot read directory", cp_dir);
  struct dirent *de;
  while (d && (de = readdir(d))) {
    if (de->d_name[0] == '.') continue; /* partition directories are named <topic>-<partition> */
    char dir[PATH_CAP];
    struct stat st;
    if ((size_t)snprintf(dir, sizeof dir, "%s/%s", cp_dir, de->d_name) >= sizeof dir) continue;
    if (lstat(dir, &st) == 0 && S_ISDIR(st.st_mode)) n += sweep_dir(dir, TMP_PREFIX, NULL); /* -journal included */
  }
  if (d) closedir(d);
  if (state_dir) n += sweep_dir(state_dir, NULL, ".db" RESTORE_INFIX);
  if (removed) *removed = n;
  return ESR_E_OK;
}

esr_code esr_checkpoint_prune(const char *cp_dir, const char *topic, int32_t partition, int keep, esr_error *err) {
  char dir[PATH_CAP], path[PATH_CAP];
  esr__cp_names s = {0};
  int lock = -1;
  if (keep < 1) return esr_error_set(err, ESR_E_CONFIG, 0, "prune: keep must be at least 1, not %d", keep);
  esr_code rc = part_dir(dir, sizeof dir, cp_dir, topic, partition, err);
  if (rc != ESR_E_OK) return rc;
  struct stat st;
  if (stat(dir, &st) != 0) return errno == ENOENT ? ESR_E_OK : esr__cp_io_error(err, "cannot stat", dir);
  if ((rc = lock_dir(dir, &lock, err)) != ESR_E_OK) return rc;
  if ((rc = scan_dir(dir, &s, err)) != ESR_E_OK) goto done;
  int kept = 0;
  for (size_t i = 0; i < s.n && rc == ESR_E_OK; i++) {
    struct esr__cp_name *e = &s.v[i];
    int complete = 0;
    if (e->has_manifest) {
      esr_manifest *m = NULL;
      complete = load_entry(cp_dir, topic, partition, e->offset, &m, NULL) == ESR_E_OK;
      esr_manifest_free(m);
    }
    if (complete && kept < keep) {
      kept++;
      continue;
    }
    /* Complete ones past `keep` go, and incomplete or broken ones below the oldest kept. A broken one newer than that
     * stays for the caller to look at (esr_checkpoint_newest_valid reports it, quarantine sets it aside). */
    if (!complete && kept < keep) continue;
    if (e->has_manifest) {
      esr_checkpoint_path(path, sizeof path, cp_dir, topic, partition, e->offset, ".json");
      rc = unlink_if_present(path, err);
    }
    if (rc == ESR_E_OK && e->has_data) {
      esr_checkpoint_path(path, sizeof path, cp_dir, topic, partition, e->offset, ".db");
      rc = unlink_if_present(path, err);
    }
  }
  remove_stale_tmp(dir);
  if (rc == ESR_E_OK) rc = fsync_dir(dir, err);
done:
  esr__cp_names_clear(&s);
  unlock_dir(lock);
  return rc;
}

esr_code esr_checkpoint_quarantine(const char *cp_dir, const char *topic, int32_t partition, int64_t next_offset,
                                   esr_error *err) {
  char dir[PATH_CAP], from[PATH_CAP], to[PATH_CAP + 64], now[32];
  int lock = -1;
  esr_code rc = part_dir(dir, sizeof dir, cp_dir, topic, partition, err);
  if (rc == ESR_E_OK) rc = lock_dir(dir, &lock, err);
  utc_now(now, sizeof now, 0);
  static const char *const exts[] = {".json", ".db"}; /* manifest first: it stops being listed at once */
  for (int i = 0; i < 2 && rc == ESR_E_OK; i++) {
    if (esr_checkpoint_path(from, sizeof from, cp_dir, topic, partition, next_offset, exts[i]) != 0) {
      rc = esr_error_set(err, ESR_E_CONFIG, 0, "checkpoint path too long: %s", cp_dir);
      break;
    }
    snprintf(to, sizeof to, "%s.bad-%s", from, now);
    if (rename(from, to) != 0 && errno != ENOENT) rc = esr__cp_io_error(err, "cannot rename", from);
  }
  if (rc == ESR_E_OK) rc = fsync_dir(dir, err);
  unlock_dir(lock);
  return rc;
}

/* ---- restore ---------------------------------------------------------------------------------------------------- */

static int exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

esr_code esr_checkpoint_restore(const char *cp_dir, const esr_manifest *m, const char *state_dir, int flags,
                                char *moved_to, size_t moved_cap, esr_error *err) {
  char src[PATH_CAP], live[PATH_CAP], tmp[PATH_CAP + 32], aside[PATH_CAP + 64];
  int fd = -1;
  if (moved_to && moved_cap) moved_to[0] = '\0';
  esr_code rc = cp_path(src, cp_dir, m, ".db", err);
  if (rc != ESR_E_OK) return rc;
  if ((rc = make_dirs(state_dir, err)) != ESR_E_OK) return rc;
  esr_store_path(live, sizeof live, state_dir, m->topic, m->partition);
  snprintf(tmp, sizeof tmp, "%s" RESTORE_INFIX "XXXXXX", live);
  if ((fd = mkstemp(tmp)) < 0) {
    rc = esr__cp_io_error(err, "cannot create temporary file next to", live);
    goto fail_notmp;
  }
  uint8_t sha[32];
  int64_t size = 0;
  if ((rc = esr__cp_stream(src, fd, tmp, sha, &size, err)) != ESR_E_OK) goto fail;
  if (size != m->size) {
    rc = esr_error_set(err, ESR_E_CORRUPT, 0, "%s: %" PRId64 " bytes, the manifest says %" PRId64 " (truncated?)", src,
                       size, m->size);
    goto fail;
  }
  if (memcmp(sha, m->sha256, 32) != 0) {
    rc = esr_error_set(err, ESR_E_CORRUPT, 0, "%s: its SHA-256 differs from the manifest's", src);
    goto fail;
  }
  if (fchmod(fd, 0640) != 0 || fsync(fd) != 0) {
    rc = esr__cp_io_error(err, "cannot fsync", tmp);
    goto fail;
  }
  close(fd);
  fd = -1;
  if ((rc = check_position(tmp, m, err)) != ESR_E_OK) goto fail;
  if ((flags & ESR_RESTORE_KEEP_OLD) && exists(live)) {
    if ((rc = esr_store_move_aside(live, "old", aside, sizeof aside, err)) != ESR_E_OK) goto fail;
    if (moved_to && moved_cap) snprintf(moved_to, moved_cap, "%s", aside);
  } else {
    /* A journal or WAL left by the old file would be replayed into the new one: they go first. */
    static const char *const sfx[] = {"-journal", "-wal", "-shm"};
    char side[PATH_CAP + 16];
    for (int i = 0; i < 3 && rc == ESR_E_OK; i++) {
      snprintf(side, sizeof side, "%s%s", live, sfx[i]);
      rc = unlink_if_present(side, err);
    }
    if (rc != ESR_E_OK) goto fail;
  }
  if (rename(tmp, live) != 0) {
    rc = esr__cp_io_error(err, "cannot rename to", live);
    goto fail;
  }
  return fsync_dir(state_dir, err);
fail:
  if (fd >= 0) close(fd);
  unlink(tmp);
fail_notmp:
  esr_error_prefix(err, "restore of %s-%d at %" PRId64, m->topic, (int)m->partition, m->next_offset);
  return rc;
}
