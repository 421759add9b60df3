/* cpstore.c — the remote checkpoint store's front: picks the backend from the URL and puts the URL before every
 * error. The backends are cpstore_file.c (file://) and cpstore_s3.c (s3://). */
#include "cpstore.h"

#include <stdlib.h>
#include <string.h>

#include "cp_internal.h"

struct esr_cpstore {
  const esr__cpstore_ops *ops;
  void *impl;
  char *url;
};

esr_code esr_cpstore_open(const char *url, const esr_cpstore_opts *opts, esr_cpstore **out, esr_error *err) {
  *out = NULL;
  esr_code rc = ESR_E_OK;
  char *bucket = NULL;
  esr_cpstore *s = calloc(1, sizeof *s);
  if (!s || !(s->url = strdup(url ? url : ""))) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto fail;
  }
  if (strncmp(s->url, "file://", 7) == 0) {
    const char *path = s->url + 7;
    if (path[0] != '/' || path[1] == '\0') {
      rc = esr_error_set(err, ESR_E_CONFIG, 0, "a file:// URL names an absolute directory: file:///var/lib/esr-cp");
      goto fail;
    }
    rc = esr__cpstore_file_open(path, &s->ops, &s->impl, err);
  } else if (strncmp(s->url, "s3://", 5) == 0) {
    const char *b = s->url + 5, *slash = strchr(b, '/');
    size_t blen = slash ? (size_t)(slash - b) : strlen(b);
    if (blen == 0) {
      rc = esr_error_set(err, ESR_E_CONFIG, 0, "an s3:// URL names a bucket: s3://bucket/prefix");
      goto fail;
    }
    if (!(bucket = strndup(b, blen))) {
      rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
      goto fail;
    }
    char prefix[1024];
    const char *p = slash ? slash : "";
    while (*p == '/') p++;
    if (strlen(p) >= sizeof prefix) {
      rc = esr_error_set(err, ESR_E_CONFIG, 0, "the key prefix is too long");
      goto fail;
    }
    strcpy(prefix, p);
    for (size_t n = strlen(prefix); n > 0 && prefix[n - 1] == '/'; n--) prefix[n - 1] = '\0';
    rc = esr__cpstore_s3_open(bucket, prefix, opts, &s->ops, &s->impl, err);
  } else {
    rc = esr_error_set(err, ESR_E_CONFIG, 0, "unknown checkpoint store URL: file:///path or s3://bucket/prefix");
  }
  if (rc != ESR_E_OK) goto fail;
  free(bucket);
  *out = s;
  return ESR_E_OK;
fail:
  esr_error_prefix(err, "checkpoint store %s", url ? url : "(null)");
  free(bucket);
  esr_cpstore_close(s);
  return rc;
}

void esr_cpstore_close(esr_cpstore *s) {
  if (!s) return;
  if (s->ops) s->ops->close(s->impl);
  free(s->url);
  free(s);
}

const char *esr_cpstore_url(const esr_cpstore *s) { return s->url; }

esr_code esr_cpstore_upload(esr_cpstore *s, const char *cp_dir, const esr_manifest *m, esr_error *err) {
  esr_code rc = s->ops->upload(s->impl, cp_dir, m, err);
  if (rc != ESR_E_OK)
    esr_error_prefix(err, "upload of %s-%d at %lld to %s", m->topic, (int)m->partition, (long long)m->next_offset,
                     s->url);
  return rc;
}

esr_code esr_cpstore_list(esr_cpstore *s, const char *topic, int32_t partition, esr_manifest_list **out,
                          esr_error *err) {
  *out = NULL;
  esr_code rc = s->ops->list(s->impl, topic, partition, out, err);
  if (rc != ESR_E_OK) esr_error_prefix(err, "listing %s-%d in %s", topic, (int)partition, s->url);
  return rc;
}

esr_code esr_cpstore_fetch(esr_cpstore *s, const esr_manifest *m, const char *cp_dir, esr_error *err) {
  esr_code rc = s->ops->fetch(s->impl, m, cp_dir, err);
  if (rc != ESR_E_OK)
    esr_error_prefix(err, "fetch of %s-%d at %lld from %s", m->topic, (int)m->partition, (long long)m->next_offset,
                     s->url);
  return rc;
}

esr_code esr_cpstore_prune(esr_cpstore *s, const char *topic, int32_t partition, int keep, esr_error *err) {
  if (keep < 1) return esr_error_set(err, ESR_E_CONFIG, 0, "prune of %s: keep must be at least 1", s->url);
  esr_code rc = s->ops->prune(s->impl, topic, partition, keep, err);
  if (rc != ESR_E_OK) esr_error_prefix(err, "prune of %s-%d in %s", topic, (int)partition, s->url);
  return rc;
}

esr_code esr_cpstore_check(esr_cpstore *s, esr_error *err) {
  esr_code rc = s->ops->check(s->impl, err);
  if (rc != ESR_E_OK) esr_error_prefix(err, "checkpoint store %s", s->url);
  return rc;
}

esr_code esr_cpstore_quarantine(esr_cpstore *s, const char *topic, int32_t partition, int64_t next_offset,
                                esr_error *err) {
  esr_code rc = s->ops->quarantine(s->impl, topic, partition, next_offset, err);
  if (rc != ESR_E_OK)
    esr_error_prefix(err, "setting aside %s-%d at %lld in %s", topic, (int)partition, (long long)next_offset, s->url);
  return rc;
}
