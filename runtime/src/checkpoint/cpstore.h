/* esr/cpstore.h — the remote checkpoint store, where any node finds a partition's checkpoints.
 *
 * One interface, two backends chosen by URL: `file:///path` (a directory on a shared volume) and `s3://bucket/prefix`
 * (Amazon S3 or an S3-compatible server, through libcurl with AWS Signature Version 4). The layout is the local one of
 * esr/checkpoint.h: `<root>/<topic>-<partition>/<next_offset, 20 digits>.db` and `.json` (for S3, root is the key
 * prefix). An upload sends the data first and the manifest last, so a half-uploaded checkpoint is never listed, and
 * refuses a local file that does not match its manifest; pruning deletes a manifest before its data. A fetch downloads
 * into a temporary file of the local checkpoint directory, verifies size, SHA-256 and position against the manifest,
 * and only then installs it there as a local checkpoint (esr_checkpoint_install): esr_checkpoint_restore takes it from
 * there. Data is streamed between files and the network, never held whole in memory. Transient failures (HTTP 5xx and
 * 429, S3's RequestTimeout, connection errors, timeouts) are retried with exponential backoff; other failures are not.
 * Errors name the operation, the URL (never credentials), the HTTP status and S3's error code and message. Codes:
 * ESR_E_CONFIG for what the configuration must fix (bad URL, no credentials, HTTP 401/403, no such bucket),
 * ESR_E_CORRUPT for a checkpoint that is incomplete or does not match its manifest (try an older one), ESR_E_IO for
 * the network and the server (retriable later); lib_code holds the HTTP status, or curl's CURLcode (below 100) when no
 * response came. A store is used by one thread at a time (S3: it keeps one libcurl handle and its connection);
 * separate stores may be used from separate threads at once. S3 limits: an object goes in one PUT, so up to 5 GiB; a
 * bucket whose name has dots needs endpoint https://s3.<region>.amazonaws.com (path-style), as TLS certificates of
 * virtual-hosted names do not cover them.
 */
#ifndef ESR_CPSTORE_H
#define ESR_CPSTORE_H

#include <stdint.h>

#include "checkpoint.h"
#include "error.h"

typedef struct esr_cpstore esr_cpstore;

/* Options of the S3 backend (file:// ignores them). Zero means the default given. Strings are copied at open. */
typedef struct esr_cpstore_opts {
  const char *access_key_id;     /* default $AWS_ACCESS_KEY_ID; required */
  const char *secret_access_key; /* default $AWS_SECRET_ACCESS_KEY; required */
  const char *session_token;     /* default $AWS_SESSION_TOKEN; optional (sent as x-amz-security-token) */
  const char *region;            /* default $AWS_REGION, then $AWS_DEFAULT_REGION, then us-east-1 */
  /* An S3-compatible server, "http(s)://host[:port]", addressed path-style (`<endpoint>/<bucket>/<key>`). Default
   * $AWS_ENDPOINT_URL_S3, then $AWS_ENDPOINT_URL, else AWS itself, virtual-hosted
   * (`https://<bucket>.s3.<region>.amazonaws.com/<key>`). */
  const char *endpoint;
  long connect_timeout_ms; /* 10000 */
  long request_timeout_ms; /* a whole request, transfer included; 0: no limit (objects may be large) */
  long stall_timeout_s;    /* abort a transfer slower than 1 KiB/s for this long: 30 */
  int max_attempts;        /* tries per request, the first included: 4 (1: no retry) */
  long backoff_ms;         /* the first retry's delay, doubled each time up to 5 s, with jitter: 200 */
  int list_page_size;      /* keys per ListObjectsV2 page: 1000 (S3's maximum) */
  /* Optional (both backends ignore it where nothing waits): polled during transfers and between retries; nonzero
   * abandons the operation at once (ESR_E_STATE), so that a process stopping never waits for an unreachable store's
   * timeouts. Called on the thread that uses the store. */
  int (*cancel)(void *arg);
  void *cancel_arg;
} esr_cpstore_opts;

/* Opens the store at `url` (file:///absolute/path or s3://bucket[/prefix]); opts may be NULL. Nothing is contacted
 * yet. ESR_E_CONFIG for a URL or options that cannot work. */
esr_code esr_cpstore_open(const char *url, const esr_cpstore_opts *opts, esr_cpstore **out, esr_error *err);
/* NULL is a no-op. */
void esr_cpstore_close(esr_cpstore *s);
/* The URL it was opened with. Borrowed, valid until close. */
const char *esr_cpstore_url(const esr_cpstore *s);

/* Uploads local checkpoint `m` of cp_dir (esr_checkpoint_write's output): data, then manifest. The data sent is
 * checked against the manifest's SHA-256 on the way (ESR_E_CORRUPT, and no manifest is sent, when it differs). */
esr_code esr_cpstore_upload(esr_cpstore *s, const char *cp_dir, const esr_manifest *m, esr_error *err);

/* The partition's checkpoints in the store (those whose manifest exists, parses and agrees with its name), newest
 * first. The caller frees *out (esr_manifest_list_free). Data objects are not read. */
esr_code esr_cpstore_list(esr_cpstore *s, const char *topic, int32_t partition, esr_manifest_list **out,
                          esr_error *err);

/* Downloads checkpoint `m` (from esr_cpstore_list) into the local checkpoint directory cp_dir and installs it there
 * once verified. ESR_E_CORRUPT when the remote data is missing or does not match the manifest: the local directory is
 * left as it was, and the caller may try the next older checkpoint. */
esr_code esr_cpstore_fetch(esr_cpstore *s, const esr_manifest *m, const char *cp_dir, esr_error *err);

/* Checks at start that the store can be used, so that a wrong setting is not found out at the first upload: file://
 * the directory exists and a file can be created (and removed) in it; s3:// the bucket answers a listing of the
 * prefix, and a probe object can be written and deleted under it (one attempt each, short timeouts). ESR_E_CONFIG
 * with the fix for what the configuration must change (a directory missing or read-only, a bucket that does not
 * exist, access refused); ESR_E_IO when the store cannot be reached now (retried by every later operation). */
esr_code esr_cpstore_check(esr_cpstore *s, esr_error *err);

/* Sets checkpoint `next_offset` of the partition aside in the store, as esr_checkpoint_quarantine does locally: the
 * manifest, then the data, renamed (S3: copied, then deleted) to "<name>.bad-<UTC time>". It is no longer listed, a
 * later checkpoint at the same offset is not mistaken for it, and it is kept for inspection. Objects already gone
 * are skipped. */
esr_code esr_cpstore_quarantine(esr_cpstore *s, const char *topic, int32_t partition, int64_t next_offset,
                                esr_error *err);

/* Keeps the partition's newest `keep` (>= 1) checkpoints in the store: older ones are deleted, manifest first, and so
 * are data objects without a manifest below the oldest kept (uploads that died). */
esr_code esr_cpstore_prune(esr_cpstore *s, const char *topic, int32_t partition, int keep, esr_error *err);

#endif
