/* replay_manifest.c — replay.json and replay.json.sig: writing, signing (Ed25519), verifying (replay_manifest.h). */
#include "replay_manifest.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "digest.h"
#include "esr/json.h"
#include "readback.h"
#include "statedigest.h"

#define MANIFEST "replay.json"
#define SIGNATURE "replay.json.sig"
#define MAX_FILE (16 << 20)

static void hex(const uint8_t *b, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static int unhex(const char *s, uint8_t *out, size_t n) {
  if (!s || strlen(s) != 2 * n) return -1;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1) return -1;
    out[i] = (uint8_t)v;
  }
  return 0;
}

static void iso(int64_t ms, char *buf, size_t cap) { esr_replay_format_time(ms, buf, cap); }

static cJSON *add_hex(cJSON *o, const char *name, const uint8_t *b) {
  char h[65];
  hex(b, 32, h);
  return cJSON_AddStringToObject(o, name, h);
}

static const char *target_name(esr_replay_target t) {
  switch (t) {
  case ESR_REPLAY_TO_OFFSET: return "offset";
  case ESR_REPLAY_TO_TIME: return "time";
  case ESR_REPLAY_TO_EACH: return "offsets";
  default: return "end";
  }
}

static char *manifest_text(const esr_replayer *rp, const esr_replay_report *rep) {
  const esr_config *cfg = esr_replayer_config(rp);
  cJSON *root = cJSON_CreateObject();
  char when[40];
  cJSON_AddNumberToObject(root, "format", ESR_REPLAY_MANIFEST_FORMAT);
  cJSON_AddStringToObject(root, "esr_version", ESR_VERSION);
  cJSON_AddStringToObject(root, "topic", rep->topic);
  cJSON *target = cJSON_AddObjectToObject(root, "target");
  cJSON_AddStringToObject(target, "kind", target_name(rep->target));
  if (rep->target == ESR_REPLAY_TO_OFFSET) cJSON_AddNumberToObject(target, "offset", (double)rep->to);
  if (rep->target == ESR_REPLAY_TO_TIME) {
    iso(rep->to, when, sizeof when);
    cJSON_AddStringToObject(target, "time", when);
    cJSON_AddNumberToObject(target, "time_ms", (double)rep->to);
  }
  size_t nh;
  const esr_replay_handler_info *h = esr_replayer_handlers(rp, &nh);
  cJSON *handlers = cJSON_AddArrayToObject(root, "handlers");
  for (size_t i = 0; i < nh; i++) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddItemToArray(handlers, e);
    cJSON_AddStringToObject(e, "name", h[i].name);
    cJSON_AddStringToObject(e, "version", h[i].version);
    cJSON_AddStringToObject(e, "path", h[i].path);
    add_hex(e, "sha256", h[i].sha256);
  }
  cJSON *opts = cJSON_AddArrayToObject(root, "handler_option_keys"); /* never the values: they may be secrets */
  for (size_t i = 0; i < cfg->n_handler_opts; i++) cJSON_AddItemToArray(opts, cJSON_CreateString(cfg->handler_opts[i].key));
  uint8_t sh[32];
  if (esr_replayer_schemas_hash(rp, sh)) {
    cJSON *s = cJSON_AddObjectToObject(root, "schemas");
    cJSON_AddStringToObject(s, "dir", cfg->schemas_dir);
    add_hex(s, "sha256", sh);
  } else {
    cJSON_AddNullToObject(root, "schemas");
  }
  cJSON *parts = cJSON_AddArrayToObject(root, "partitions");
  for (size_t i = 0; i < rep->n; i++) {
    const esr_replay_part *p = &rep->parts[i];
    cJSON *e = cJSON_CreateObject();
    cJSON_AddItemToArray(parts, e);
    cJSON_AddNumberToObject(e, "partition", p->partition);
    cJSON_AddStringToObject(e, "file", p->file);
    cJSON_AddNumberToObject(e, "size", (double)p->size);
    add_hex(e, "sha256", p->sha256);
    cJSON_AddNumberToObject(e, "from", (double)p->from);
    if (p->from_checkpoint) {
      cJSON *c = cJSON_AddObjectToObject(e, "checkpoint");
      cJSON_AddNumberToObject(c, "offset", (double)p->from);
      add_hex(c, "sha256", p->checkpoint_sha256);
      cJSON_AddStringToObject(c, "source", p->checkpoint);
      if (p->has_checkpoint_state) add_hex(c, "state_digest", p->checkpoint_state);
    } else {
      cJSON_AddNullToObject(e, "checkpoint");
    }
    cJSON_AddNumberToObject(e, "target", (double)p->target);
    if (p->time_source)
      cJSON_AddStringToObject(e, "target_found_by", p->time_source == ESR_TIME_BROKER ? "offsets-for-times"
                                                                                      : "message timestamps");
    cJSON_AddNumberToObject(e, "next_offset", (double)p->pos.next_offset);
    cJSON_AddNumberToObject(e, "log_start", (double)p->log_start);
    cJSON_AddNumberToObject(e, "log_end", (double)p->log_end);
    add_hex(e, "log_digest", p->pos.log_digest);
    add_hex(e, "state_digest", p->state_digest);
    cJSON_AddNumberToObject(e, "applied_total", (double)p->pos.applied);
    cJSON_AddNumberToObject(e, "dead_total", (double)p->pos.dead);
    cJSON *r = cJSON_AddObjectToObject(e, "replayed");
    cJSON_AddNumberToObject(r, "events", (double)p->events);
    cJSON_AddNumberToObject(r, "applied", (double)p->applied);
    cJSON_AddNumberToObject(r, "dead", (double)p->dead);
    cJSON *by = cJSON_AddObjectToObject(r, "dead_by_reason");
    for (int k = 0; k < p->n_reasons; k++) cJSON_AddNumberToObject(by, p->reasons[k].reason, (double)p->reasons[k].count);
    cJSON_AddNumberToObject(r, "seconds", p->seconds);
  }
  cJSON *wall = cJSON_AddObjectToObject(root, "wall");
  iso(rep->started_ms, when, sizeof when);
  cJSON_AddStringToObject(wall, "started_at", when);
  iso(rep->finished_ms, when, sizeof when);
  cJSON_AddStringToObject(wall, "finished_at", when);
  cJSON_AddNumberToObject(wall, "seconds", rep->seconds);
  cJSON_AddNumberToObject(wall, "threads", rep->threads);
  char *printed = cJSON_Print(root);
  cJSON_Delete(root);
  if (!printed) return NULL;
  size_t n = strlen(printed);
  char *text = malloc(n + 2);
  if (text) {
    memcpy(text, printed, n);
    memcpy(text + n, "\n", 2);
  }
  cJSON_free(printed);
  return text;
}

static esr_code write_atomic(const char *path, const char *data, size_t len, esr_error *err) {
  char tmp[4400];
  snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) return esr_error_set(err, ESR_E_IO, errno, "cannot create %s: %s", tmp, strerror(errno));
  size_t done = 0;
  while (done < len) {
    ssize_t w = write(fd, data + done, len - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) break;
    done += (size_t)w;
  }
  int ok = done == len && fchmod(fd, 0644) == 0 && fsync(fd) == 0;
  int e = errno;
  if (close(fd) != 0) ok = 0;
  if (!ok || rename(tmp, path) != 0) {
    e = ok ? errno : e;
    unlink(tmp);
    return esr_error_set(err, ESR_E_IO, e, "cannot write %s: %s", path, strerror(e));
  }
  return ESR_E_OK;
}

static esr_code read_all(const char *path, char **out, size_t *len, esr_error *err) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return esr_error_set(err, ESR_E_IO, errno, "cannot open %s: %s", path, strerror(errno));
  char *buf = malloc(MAX_FILE + 1);
  size_t n = buf ? fread(buf, 1, MAX_FILE + 1, f) : 0;
  int bad = ferror(f);
  fclose(f);
  if (!buf) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  if (bad || n > MAX_FILE) {
    free(buf);
    return esr_error_set(err, bad ? ESR_E_IO : ESR_E_CORRUPT, 0, "%s: %s", path,
                         bad ? "cannot read it" : "larger than 16 MiB");
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return ESR_E_OK;
}

/* ---- keys and signatures ---------------------------------------------------------------------------------------- */

static esr_code load_key(const char *path, int private_key, EVP_PKEY **out, esr_error *err) {
  *out = NULL;
  FILE *f = fopen(path, "r");
  if (!f) return esr_error_set(err, ESR_E_CONFIG, errno, "%s %s: %s", private_key ? "--sign-key" : "--pub", path,
                               strerror(errno));
  EVP_PKEY *k = private_key ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : PEM_read_PUBKEY(f, NULL, NULL, NULL);
  fclose(f);
  if (!k || EVP_PKEY_get_base_id(k) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(k);
    return esr_error_set(err, ESR_E_CONFIG, 0,
                         "%s %s: not an Ed25519 %s key in PEM (make one with: openssl genpkey -algorithm ed25519 "
                         "-out key.pem; openssl pkey -in key.pem -pubout -out pub.pem)",
                         private_key ? "--sign-key" : "--pub", path, private_key ? "private" : "public");
  }
  *out = k;
  return ESR_E_OK;
}

esr_code esr_replay_key_check(const char *sign_key, esr_error *err) {
  EVP_PKEY *k = NULL;
  esr_code rc = load_key(sign_key, 1, &k, err);
  EVP_PKEY_free(k);
  return rc;
}

/* SHA-256 of the key's public part (DER SubjectPublicKeyInfo): which key signed. */
static int key_id(EVP_PKEY *k, uint8_t out[32]) {
  unsigned char *der = NULL;
  int n = i2d_PUBKEY(k, &der);
  if (n <= 0) return -1;
  unsigned int len = 32;
  int ok = EVP_Digest(der, (size_t)n, out, &len, EVP_sha256(), NULL);
  OPENSSL_free(der);
  return ok ? 0 : -1;
}

static esr_code sign(const char *key_path, const char *text, size_t len, const char *sig_path, esr_error *err) {
  EVP_PKEY *k = NULL;
  esr_code rc = load_key(key_path, 1, &k, err);
  if (rc != ESR_E_OK) return rc;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  uint8_t sig[64], id[32];
  size_t sig_len = sizeof sig;
  if (!ctx || EVP_DigestSignInit(ctx, NULL, NULL, NULL, k) != 1 ||
      EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *)text, len) != 1 || sig_len != 64 ||
      key_id(k, id) != 0) {
    rc = esr_error_set(err, ESR_E_IO, 0, "cannot sign %s with %s (libcrypto)", MANIFEST, key_path);
    goto done;
  }
  char sig_hex[129], id_hex[65], body[512];
  hex(sig, 64, sig_hex);
  hex(id, 32, id_hex);
  int n = snprintf(body, sizeof body,
                   "{\n  \"algorithm\": \"ed25519\",\n  \"signs\": \"%s\",\n  \"public_key_sha256\": \"%s\",\n"
                   "  \"signature\": \"%s\"\n}\n",
                   MANIFEST, id_hex, sig_hex);
  rc = write_atomic(sig_path, body, (size_t)n, err);
done:
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(k);
  return rc;
}

esr_code esr_replay_manifest_write(const esr_replayer *rp, const esr_replay_report *rep, const char *out_dir,
                                   const char *sign_key, esr_error *err) {
  char *text = manifest_text(rp, rep);
  if (!text) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  char path[4400], sig[4400];
  snprintf(path, sizeof path, "%s/%s", out_dir, MANIFEST);
  snprintf(sig, sizeof sig, "%s/%s", out_dir, SIGNATURE);
  unlink(sig); /* a signature never outlives the manifest it signed */
  esr_code rc = write_atomic(path, text, strlen(text), err);
  if (rc == ESR_E_OK && sign_key) rc = sign(sign_key, text, strlen(text), sig, err);
  free(text);
  return rc;
}

/* ---- verification ----------------------------------------------------------------------------------------------- */

typedef struct checker {
  esr_check_fn fn;
  void *arg;
  int failures;
} checker;

static void say(checker *c, esr_check_kind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(checker *c, esr_check_kind kind, const char *fmt, ...) {
  char line[1200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (kind == ESR_CHECK_FAILED) c->failures++;
  if (c->fn) c->fn(c->arg, kind, line);
}

static esr_code check_signature(checker *c, const char *dir, const char *pub, const char *text, size_t len,
                                esr_error *err) {
  EVP_PKEY *k = NULL;
  esr_code rc = load_key(pub, 0, &k, err);
  if (rc != ESR_E_OK) return rc;
  char path[4400], *sig_text = NULL;
  size_t sig_len = 0;
  snprintf(path, sizeof path, "%s/%s", dir, SIGNATURE);
  esr_error e;
  cJSON *j = NULL;
  uint8_t sig[64], id[32], want_id[32];
  if (read_all(path, &sig_text, &sig_len, &e) != ESR_E_OK) {
    say(c, ESR_CHECK_FAILED, "signature: %s", e.msg);
    goto done;
  }
  j = cJSON_ParseWithLength(sig_text, sig_len);
  const char *alg = esr_json_string(j, "algorithm");
  if (!alg || strcmp(alg, "ed25519") != 0 || unhex(esr_json_string(j, "signature"), sig, 64) != 0) {
    say(c, ESR_CHECK_FAILED, "signature: %s is not an Ed25519 signature file", path);
    goto done;
  }
  if (unhex(esr_json_string(j, "public_key_sha256"), want_id, 32) == 0 && key_id(k, id) == 0 &&
      memcmp(id, want_id, 32) != 0)
    say(c, ESR_CHECK_NOTE, "signature: made with another key than %s (its SHA-256 differs)", pub);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k) == 1 &&
           EVP_DigestVerify(ctx, sig, sizeof sig, (const unsigned char *)text, len) == 1;
  EVP_MD_CTX_free(ctx);
  if (ok)
    say(c, ESR_CHECK_OK, "signature: %s is signed by the key of %s (Ed25519)", MANIFEST, pub);
  else
    say(c, ESR_CHECK_FAILED, "signature: does not match %s (the manifest or the signature was changed, or another "
                             "key signed it)",
        MANIFEST);
done:
  cJSON_Delete(j);
  free(sig_text);
  EVP_PKEY_free(k);
  return ESR_E_OK;
}

typedef struct chain {
  esr_hasher *h;
  uint8_t digest[32];
} chain;

static esr_code on_event(void *arg, const rd_kafka_message_t *m, esr_error *err) {
  chain *ch = arg;
  (void)err;
  esr_digest_chain(ch->h, ch->digest, m->offset, m->key, m->key_len, m->payload, m->len);
  return ESR_E_OK;
}

/* The log digest of [0, next) recomputed from the log. */
static esr_code check_log(checker *c, esr_readback *rb, const char *topic, int32_t partition, int64_t next,
                          const uint8_t want[32], esr_error *err) {
  int64_t lo, hi;
  esr_code rc = esr_readback_bounds(rb, topic, partition, 0, &lo, &hi, err);
  if (rc != ESR_E_OK) return rc;
  if (next > 0 && lo > 0) {
    say(c, ESR_CHECK_NOTE, "%s[%d]: log digest not checked: the log starts at %" PRId64 " (retention), the chain at 0",
        topic, (int)partition, lo);
    return ESR_E_OK;
  }
  if (next > hi) {
    say(c, ESR_CHECK_FAILED, "%s[%d]: the replay is at offset %" PRId64 ", beyond the log's end %" PRId64, topic,
        (int)partition, next, hi);
    return ESR_E_OK;
  }
  chain ch = {NULL, {0}};
  if ((rc = esr_hasher_new(&ch.h, err)) != ESR_E_OK) return rc;
  esr_readback_range r = {.topic = topic, .partition = partition, .start = 0, .end = next};
  esr_readback_result res;
  rc = next > 0 ? esr_readback_scan(rb, &r, on_event, &ch, &res, err) : ESR_E_OK;
  esr_hasher_free(ch.h);
  if (rc != ESR_E_OK) return rc;
  if (memcmp(ch.digest, want, 32) == 0)
    say(c, ESR_CHECK_OK, "%s[%d]: log digest of offsets [0, %" PRId64 ") recomputed from the log: equal", topic,
        (int)partition, next);
  else
    say(c, ESR_CHECK_FAILED, "%s[%d]: log digest of offsets [0, %" PRId64 ") recomputed from the log differs from the "
                             "manifest's: these are not the events the replay says it applied",
        topic, (int)partition, next);
  return ESR_E_OK;
}

static int hex_field(const cJSON *o, const char *name, uint8_t out[32]) {
  return unhex(esr_json_string(o, name), out, 32) == 0;
}

static esr_code check_partition(checker *c, const char *dir, const char *topic, const cJSON *e, esr_readback *rb,
                                esr_error *err) {
  const char *file = esr_json_string(e, "file");
  int64_t part, next, size;
  uint8_t sha[32], log[32], state[32];
  if (!file || strchr(file, '/') || !esr_json_int53(cJSON_GetObjectItemCaseSensitive(e, "partition"), 0, INT32_MAX, &part) ||
      !esr_json_int53(cJSON_GetObjectItemCaseSensitive(e, "next_offset"), 0, ESR_INT53_MAX, &next) ||
      !esr_json_int53(cJSON_GetObjectItemCaseSensitive(e, "size"), 0, ESR_INT53_MAX, &size) ||
      !hex_field(e, "sha256", sha) || !hex_field(e, "log_digest", log) || !hex_field(e, "state_digest", state)) {
    say(c, ESR_CHECK_FAILED, "%s: a partition entry is malformed", MANIFEST);
    return ESR_E_OK;
  }
  char path[4400];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  uint8_t got[32];
  int64_t got_size = 0;
  esr_error e2;
  if (esr_file_sha256(path, got, &got_size, &e2) != ESR_E_OK) {
    say(c, ESR_CHECK_FAILED, "%s: %s", file, e2.msg);
    return ESR_E_OK;
  }
  char h1[65], h2[65];
  if (got_size != size || memcmp(got, sha, 32) != 0) {
    hex(got, 32, h1);
    hex(sha, 32, h2);
    say(c, ESR_CHECK_FAILED, "%s: SHA-256 %s (%" PRId64 " bytes), the manifest says %s (%" PRId64 " bytes): the file "
                             "was changed",
        file, h1, got_size, h2, size);
  } else {
    say(c, ESR_CHECK_OK, "%s: SHA-256 and size as in the manifest", file);
  }
  esr_state_summary sum;
  esr_code rc = esr_state_summarize_file(path, &sum, &e2);
  if (rc != ESR_E_OK) {
    say(c, ESR_CHECK_FAILED, "%s: %s", file, e2.msg);
    return ESR_E_OK;
  }
  if (!sum.has_position || sum.next_offset != next || memcmp(sum.log_digest, log, 32) != 0 ||
      strcmp(sum.topic, topic) != 0 || sum.partition != part)
    say(c, ESR_CHECK_FAILED, "%s: its position (esr_offsets: %s[%d] at %" PRId64 ") differs from the manifest's (%s[%d] "
                             "at %" PRId64 ")",
        file, sum.topic, (int)sum.partition, sum.next_offset, topic, (int)part, next);
  hex(sum.state_digest, 32, h1);
  hex(state, 32, h2);
  if (memcmp(sum.state_digest, state, 32) != 0)
    say(c, ESR_CHECK_FAILED, "%s: state digest recomputed %s, the manifest says %s: the state was changed", file, h1,
        h2);
  else
    say(c, ESR_CHECK_OK, "%s: state digest recomputed from the file: %s, as in the manifest", file, h1);
  if (rb) return check_log(c, rb, topic, (int32_t)part, next, log, err);
  return ESR_E_OK;
}

esr_code esr_replay_manifest_verify(const char *dir, const char *pub_key, const esr_config *kafka, esr_check_fn fn,
                                    void *arg, int *failures, esr_error *err) {
  checker c = {fn, arg, 0};
  *failures = 0;
  char path[4400], *text = NULL;
  size_t len = 0;
  snprintf(path, sizeof path, "%s/%s", dir, MANIFEST);
  if (access(path, F_OK) != 0)
    return esr_error_set(err, ESR_E_CONFIG, errno, "%s: no %s here: not the output of esr replay", dir, MANIFEST);
  esr_code rc = read_all(path, &text, &len, err);
  if (rc != ESR_E_OK) return rc;
  EVP_PKEY *probe = NULL;
  if (pub_key && (rc = load_key(pub_key, 0, &probe, err)) != ESR_E_OK) {
    free(text);
    return rc;
  }
  EVP_PKEY_free(probe);
  esr_readback *rb = NULL;
  cJSON *root = NULL;
  if (pub_key) {
    if ((rc = check_signature(&c, dir, pub_key, text, len, err)) != ESR_E_OK) goto done;
  } else {
    snprintf(path, sizeof path, "%s/%s", dir, SIGNATURE);
    say(&c, ESR_CHECK_NOTE, "signature: not checked (%s; give --pub KEY to check it)",
        access(path, F_OK) == 0 ? "no --pub" : "the replay was not signed");
  }
  root = cJSON_ParseWithLength(text, len);
  int64_t format;
  const char *topic = esr_json_string(root, "topic");
  const cJSON *parts = cJSON_GetObjectItemCaseSensitive(root, "partitions");
  if (!root || !esr_json_int53(cJSON_GetObjectItemCaseSensitive(root, "format"), 0, 1000, &format) ||
      format != ESR_REPLAY_MANIFEST_FORMAT || !topic || !cJSON_IsArray(parts)) {
    say(&c, ESR_CHECK_FAILED, "%s: not a replay manifest of format %d", MANIFEST, ESR_REPLAY_MANIFEST_FORMAT);
    goto done;
  }
  if (kafka && (rc = esr_readback_new(kafka, &rb, err)) != ESR_E_OK) goto done;
  const cJSON *e;
  cJSON_ArrayForEach(e, parts) {
    if ((rc = check_partition(&c, dir, topic, e, rb, err)) != ESR_E_OK) goto done;
  }
done:
  esr_readback_free(rb);
  cJSON_Delete(root);
  free(text);
  *failures = c.failures;
  return rc;
}
