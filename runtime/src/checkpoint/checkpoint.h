/* esr/checkpoint.h — local checkpoints of partition databases: write, list, verify, prune, quarantine, restore.
 *
 * A checkpoint is a consistent, compacted copy of one partition database (`VACUUM INTO` from a read-only connection of
 * its own, so the partition's writer keeps committing meanwhile) plus a JSON manifest. Both are named by the copy's
 * next_offset: `<cp_dir>/<topic>-<partition>/<next_offset, 20 digits>.db` and `.json`. The position in the manifest
 * is read from the copy itself, so it is exactly the state in the file. The data file is fsynced and renamed into
 * place before the manifest is written (tmp, fsync, rename, fsync of the directory): a checkpoint is complete only
 * once its manifest exists, and an incomplete one (a crash between the two) is never listed. Verification recomputes
 * size and SHA-256 and checks the copy's esr_offsets against the manifest. A copy is a self-contained rollback-journal
 * database (no -wal to go with it). Every function takes paths, opens what it needs and closes it before returning:
 * all of them may run on any thread, and never touch a connection of the partition's store. Functions that change a
 * partition's checkpoint directory (write, install, prune, quarantine) serialize on an advisory lock file in it
 * (`.lock`), across threads and processes; listing and verifying take no lock and tolerate files that vanish.
 */
#ifndef ESR_CHECKPOINT_H
#define ESR_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define ESR_CHECKPOINT_FORMAT 1 /* the manifest's "format"; a manifest of another format does not parse */

/* A handler's entry in the copy's esr_handlers table. */
typedef struct esr_cp_handler {
  char *name;
  char *version; /* the plugin's version string as recorded at migration; NULL when none was recorded */
  int schema_version;
} esr_cp_handler;

/* What a manifest says. Owned by whoever received it; free with esr_manifest_free. */
typedef struct esr_manifest {
  int format;
  char *topic;
  int32_t partition;
  int64_t next_offset;
  uint8_t log_digest[32];
  int64_t applied; /* esr_offsets counters at the checkpoint */
  int64_t dead;
  int64_t size;       /* bytes of the data file */
  uint8_t sha256[32]; /* of the data file */
  int has_state_digest;     /* 0 in manifests written before esr recorded it (they still load) */
  uint8_t state_digest[32]; /* the copy's state digest (statedigest.h) */
  char *esr_version;  /* ESR_VERSION of the writer */
  char *created_at;   /* UTC, RFC 3339 */
  esr_cp_handler *handlers;
  size_t n_handlers;
} esr_manifest;

/* Manifests, newest (highest next_offset) first. */
typedef struct esr_manifest_list {
  esr_manifest **v;
  size_t n;
} esr_manifest_list;

void esr_manifest_free(esr_manifest *m);
void esr_manifest_list_free(esr_manifest_list *l);
/* Parses a manifest; ESR_E_CORRUPT (with the reason) when it is not JSON, lacks or mistypes a field, or has another
 * format. */
esr_code esr_manifest_parse(const char *json, size_t len, esr_manifest **out, esr_error *err);
/* The manifest as JSON text (NUL-terminated, ending in a newline); the caller frees it with free(). */
char *esr_manifest_json(const esr_manifest *m, esr_error *err);

/* "<cp_dir>/<topic>-<partition>/<next_offset as 20 digits><ext>" into buf; ext is ".db" or ".json". Returns 0, or -1
 * when it does not fit. */
int esr_checkpoint_path(char *buf, size_t cap, const char *cp_dir, const char *topic, int32_t partition,
                        int64_t next_offset, const char *ext);
/* The other way: for a file name (no directory) "<20 digits>.db" returns 1, "<20 digits>.json" 2, and sets *offset;
 * anything else (temporary, quarantined, foreign files) returns 0. */
int esr_checkpoint_parse_name(const char *name, int64_t *offset);

typedef struct esr_checkpoint_opts {
  /* Optional. Called on the calling thread every few thousand SQLite steps while the copy is made; returning nonzero
   * cancels the write (ESR_E_STATE, nothing is left behind). A way to stop a long copy at shutdown. */
  int (*progress)(void *arg);
  void *progress_arg;
} esr_checkpoint_opts;

/* Takes a checkpoint (with the copy's state digest in its manifest) of the partition database at `db_path` (a WAL database, normally open by its writer) into
 * `cp_dir` (created when missing). The copy must hold the position of topic/partition (ESR_E_CORRUPT otherwise) and
 * have one at all: a database that never committed a batch is ESR_E_STATE. When a complete checkpoint at the same
 * next_offset exists already with the size its manifest gives, it is kept and its manifest returned (nothing changed
 * since). On success *out is the manifest (the caller frees it). opts may be NULL. */
esr_code esr_checkpoint_write(const char *db_path, const char *cp_dir, const char *topic, int32_t partition,
                              const esr_checkpoint_opts *opts, esr_manifest **out, esr_error *err);

/* The complete checkpoints of a partition (manifest present, parses, and agrees with its file name), newest first.
 * Data files are not read: see esr_checkpoint_verify. A missing directory is an empty list. */
esr_code esr_checkpoint_list(const char *cp_dir, const char *topic, int32_t partition, esr_manifest_list **out,
                             esr_error *err);

/* Checks that checkpoint `m` in cp_dir is intact: the data file's size and SHA-256 equal the manifest's, and the copy
 * opens and its esr_offsets row (topic, partition, next_offset, log_digest) equals the manifest. ESR_E_CORRUPT says
 * what differs; ESR_E_IO when the file cannot be read. */
esr_code esr_checkpoint_verify(const char *cp_dir, const esr_manifest *m, esr_error *err);

/* Called for each checkpoint esr_checkpoint_newest_valid passes over: `why` says what is wrong (a manifest that does
 * not parse, a verification failure). Borrowed for the call. */
typedef void (*esr_checkpoint_reject_cb)(void *arg, const char *topic, int32_t partition, int64_t next_offset,
                                         const esr_error *why);

/* The newest checkpoint of the partition that verifies, or *out = NULL (and ESR_E_OK) when there is none. Checkpoints
 * whose manifest is present but broken, or which fail verification, are skipped and reported to `reject` (optional);
 * setting them aside is the caller's decision (esr_checkpoint_quarantine). Data files without a manifest (a crash
 * before the manifest was written) are skipped silently. An error is returned only when the directory itself cannot
 * be read. */
esr_code esr_checkpoint_newest_valid(const char *cp_dir, const char *topic, int32_t partition,
                                     esr_checkpoint_reject_cb reject, void *arg, esr_manifest **out, esr_error *err);

/* Deletes all but the newest `keep` (>= 1) complete checkpoints of the partition (manifest first, then data), data
 * files and broken manifests below the oldest checkpoint kept, and temporary files left for over an hour by a write
 * or download that died. Quarantined files are never deleted. */
esr_code esr_checkpoint_prune(const char *cp_dir, const char *topic, int32_t partition, int keep, esr_error *err);

/* Removes the temporary files that writers killed mid-way left behind: every ".tmp-*" (with the "-journal" SQLite
 * may have made beside it) in the partition directories of cp_dir, and, when state_dir is not NULL, every
 * "<topic>-<p>.db.restore-*" there (a restore's copy before its rename). Only for when no other thread or process
 * writes checkpoints or restores there: a worker at start, holding its state directory's lock. *removed (optional)
 * gets how many went. A missing cp_dir is nothing to do. */
esr_code esr_checkpoint_sweep(const char *cp_dir, const char *state_dir, int *removed, esr_error *err);

/* Sets checkpoint `next_offset` aside: its manifest, then its data file, are renamed to "<name>.bad-<UTC time>" (so it
 * is no longer listed at once, and is kept for inspection). Files that do not exist are skipped. */
esr_code esr_checkpoint_quarantine(const char *cp_dir, const char *topic, int32_t partition, int64_t next_offset,
                                   esr_error *err);

#define ESR_RESTORE_KEEP_OLD 1 /* move the current live database aside instead of replacing it */

/* Makes checkpoint `m` of cp_dir the live database `<state_dir>/<topic>-<partition>.db` (esr_store_path). No
 * connection may be open on the live database. The data file is copied next to the live one while its SHA-256 is
 * computed; a copy that differs from the manifest, or whose esr_offsets does not match it, is refused (ESR_E_CORRUPT)
 * and the live database left alone. Then the copy is fsynced, a -journal, -wal and -shm of the old live database are
 * removed (they would otherwise be replayed into the new file), it is renamed over the live path and the directory
 * fsynced. With ESR_RESTORE_KEEP_OLD an existing live database is first renamed to "<live>.old-<UTC time>" (with its
 * -wal, which holds part of its state), never deleted; that path goes to moved_to (optional, "" when there was none).
 * A crash at any point leaves either the old live database (rolled back to its last WAL checkpoint at worst, state
 * and offset together), no live database, or the restored one. */
esr_code esr_checkpoint_restore(const char *cp_dir, const esr_manifest *m, const char *state_dir, int flags,
                                char *moved_to, size_t moved_cap, esr_error *err);

/* For remote stores. Creates the partition's checkpoint directory and an empty temporary file in it, whose path goes
 * to buf: download a checkpoint there, then esr_checkpoint_install it. */
esr_code esr_checkpoint_tmpfile(const char *cp_dir, const char *topic, int32_t partition, char *buf, size_t cap,
                                esr_error *err);
/* Verifies the file at tmp_path against `m` (size, SHA-256, esr_offsets: ESR_E_CORRUPT when it differs) and makes it
 * checkpoint `m` of cp_dir: fsync, rename to the data file's name, manifest written after it. tmp_path must be on the
 * file system of cp_dir (esr_checkpoint_tmpfile); it is consumed on success and left to the caller on failure. */
esr_code esr_checkpoint_install(const char *cp_dir, const esr_manifest *m, const char *tmp_path, esr_error *err);

/* SHA-256 and size of a file, streamed. */
esr_code esr_file_sha256(const char *path, uint8_t sha256[32], int64_t *size, esr_error *err);

#endif
