/* replay_manifest.h — replay.json, the record of a replay, its Ed25519 signature, and `esr replay verify`.
 *
 * replay.json (format 1) records what a replay was made of and what it made: the esr version; each handler's name,
 * version, path and the SHA-256 of its plugin file; the handler option keys (never their values); the schema set's
 * hash; the topic and the target; for each partition its file (name, size, SHA-256), the offset range (where applying
 * began — 0 or a checkpoint, with the checkpoint's SHA-256 — and the next offset at the end), the log's bounds as
 * seen, the log digest and the counters at the end, the state digest, this replay's counts (events, applied,
 * dead-lettered by reason) and its time; the run's wall times. It is written last, after every database was closed,
 * to a temporary name then renamed. With a signing key (an Ed25519 private key in PEM), replay.json.sig holds an
 * Ed25519 signature over the exact bytes of replay.json (OpenSSL libcrypto), with the SHA-256 of the public key.
 *
 * Verification recomputes what the files say against what the manifest says: with a public key the signature first
 * (a changed manifest fails there); then for each partition the file's size and SHA-256, its position (esr_offsets)
 * and its state digest (a changed row fails there); with a Kafka configuration, the log digest too, recomputed from
 * the log's events [0, next offset) (not checked when retention has deleted the log's start). Each finding goes to a
 * callback; the result counts failures. Codes: ESR_E_CONFIG for a key that is not an Ed25519 key of the right kind
 * or a directory without replay.json; ESR_E_IO / ESR_E_KAFKA when something could not be read (nothing was decided).
 */
#ifndef ESR_REPLAY_MANIFEST_H
#define ESR_REPLAY_MANIFEST_H

#include "config.h"
#include "error.h"
#include "replay_run.h"

#define ESR_REPLAY_MANIFEST_FORMAT 1

/* Writes <out_dir>/replay.json for the run, and replay.json.sig when sign_key (a PEM file) is given. */
esr_code esr_replay_manifest_write(const esr_replayer *rp, const esr_replay_report *rep, const char *out_dir,
                                   const char *sign_key, esr_error *err);

/* Checks that a PEM file holds an Ed25519 private key (so that a bad --sign-key stops a replay before it runs). */
esr_code esr_replay_key_check(const char *sign_key, esr_error *err);

typedef enum esr_check_kind { ESR_CHECK_OK = 0, ESR_CHECK_FAILED, ESR_CHECK_NOTE } esr_check_kind;

/* One finding of a verification; `what` is valid during the call. */
typedef void (*esr_check_fn)(void *arg, esr_check_kind kind, const char *what);

/* Verifies the replay in dir (see the file comment). pub_key: a PEM public key, or NULL (the signature is then not
 * checked, and the callback says so). kafka: a configuration with kafka.* settings to recompute log digests, or NULL.
 * *failures gets the number of failed checks. */
esr_code esr_replay_manifest_verify(const char *dir, const char *pub_key, const esr_config *kafka, esr_check_fn fn,
                                    void *arg, int *failures, esr_error *err);

#endif
