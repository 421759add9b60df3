/* cpstore_file.c — the file:// checkpoint store: a directory (typically a shared volume) with the layout of a local
 * checkpoint directory, so the local functions of checkpoint.c do the work; files are copied into a temporary file
 * beside their destination and installed only after verification. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cp_internal.h"

#define PATH_CAP 4096

typedef struct file_store {
  char *root;
} file_store;

/* A store whose directory is gone (an unmounted volume) must not look like an empty one. */
static esr_code check_root(const file_store *f, esr_error *err) {
  struct stat st;
  if (stat(f->root, &st) != 0) return esr__cp_io_error(err, "cannot use", f->root);
  if (!S_ISDIR(st.st_mode)) return esr_error_set(err, ESR_E_CONFIG, 0, "%s is not a directory", f->root);
  return ESR_E_OK;
}

/* Copies src over the (existing, empty) file dst. */
static esr_code copy_file(const char *src, const char *dst, esr_error *err) {
  int out = open(dst, O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (out < 0) return esr__cp_io_error(err, "cannot open", dst);
  esr_code rc = esr__cp_stream(src, out, dst, NULL, NULL, err);
  if (close(out) != 0 && rc == ESR_E_OK) rc = esr__cp_io_error(err, "cannot write", dst);
  return rc;
}

/* Copies checkpoint m's data file from src_dir into a temporary file of dst_dir and installs it there. */
static esr_code transfer(const char *src_dir, const char *dst_dir, const esr_manifest *m, esr_error *err) {
  char src[PATH_CAP], tmp[PATH_CAP] = "";
  if (esr_checkpoint_path(src, sizeof src, src_dir, m->topic, m->partition, m->next_offset, ".db") != 0)
    return esr_error_set(err, ESR_E_CONFIG, 0, "checkpoint path too long: %s", src_dir);
  esr_code rc = esr_checkpoint_tmpfile(dst_dir, m->topic, m->partition, tmp, sizeof tmp, err);
  if (rc == ESR_E_OK) rc = copy_file(src, tmp, err);
  if (rc == ESR_E_OK) rc = esr_checkpoint_install(dst_dir, m, tmp, err);
  if (rc != ESR_E_OK && *tmp) unlink(tmp);
  return rc;
}

static esr_code file_upload(void *impl, const char *cp_dir, const esr_manifest *m, esr_error *err) {
  file_store *f = impl;
  esr_code rc = check_root(f, err);
  if (rc == ESR_E_OK) rc = transfer(cp_dir, f->root, m, err);
  return rc;
}

static esr_code file_list(void *impl, const char *topic, int32_t partition, esr_manifest_list **out, esr_error *err) {
  file_store *f = impl;
  esr_code rc = check_root(f, err);
  if (rc == ESR_E_OK) rc = esr_checkpoint_list(f->root, topic, partition, out, err);
  return rc;
}

static esr_code file_fetch(void *impl, const esr_manifest *m, const char *cp_dir, esr_error *err) {
  file_store *f = impl;
  esr_code rc = check_root(f, err);
  if (rc == ESR_E_OK) rc = transfer(f->root, cp_dir, m, err);
  if (rc == ESR_E_IO && err && err->lib_code == ENOENT) err->code = rc = ESR_E_CORRUPT; /* data gone: unusable */
  return rc;
}

static esr_code file_prune(void *impl, const char *topic, int32_t partition, int keep, esr_error *err) {
  file_store *f = impl;
  esr_code rc = check_root(f, err);
  if (rc == ESR_E_OK) rc = esr_checkpoint_prune(f->root, topic, partition, keep, err);
  return rc;
}

static esr_code file_check(void *impl, esr_error *err) {
  file_store *f = impl;
  struct stat st;
  if (stat(f->root, &st) != 0) {
    int e = errno;
    if (e == ENOENT || e == ENOTDIR || e == EACCES)
      return esr_error_set(err, ESR_E_CONFIG, e,
                           "directory %s: %s: create it (or mount the shared volume there), or fix checkpoint.store",
                           f->root, strerror(e));
    return esr_error_set(err, ESR_E_IO, e, "directory %s: %s", f->root, strerror(e));
  }
  if (!S_ISDIR(st.st_mode))
    return esr_error_set(err, ESR_E_CONFIG, ENOTDIR, "%s is not a directory: fix checkpoint.store", f->root);
  char probe[PATH_CAP];
  if ((size_t)snprintf(probe, sizeof probe, "%s/.esr-check-XXXXXX", f->root) >= sizeof probe)
    return esr_error_set(err, ESR_E_CONFIG, 0, "path too long: %s", f->root);
  int fd = mkstemp(probe);
  if (fd < 0) {
    int e = errno;
    if (e == EROFS || e == EACCES || e == EPERM)
      return esr_error_set(err, ESR_E_CONFIG, e,
                           "directory %s: cannot create a file: %s: make it writable for this worker (checkpoints are "
                           "uploaded there), or fix checkpoint.store",
                           f->root, strerror(e));
    return esr_error_set(err, ESR_E_IO, e, "directory %s: cannot create a file: %s", f->root, strerror(e));
  }
  close(fd);
  if (unlink(probe) != 0) return esr__cp_io_error(err, "cannot remove", probe);
  return ESR_E_OK;
}

static esr_code file_quarantine(void *impl, const char *topic, int32_t partition, int64_t next_offset,
                                esr_error *err) {
  file_store *f = impl;
  esr_error e = {0};
  esr_code rc = check_root(f, &e);
  if (rc == ESR_E_OK) rc = esr_checkpoint_quarantine(f->root, topic, partition, next_offset, &e);
  if (rc == ESR_E_IO && e.lib_code == ENOENT) rc = ESR_E_OK; /* the partition's directory is gone: nothing to move */
  if (rc != ESR_E_OK && err) *err = e;
  return rc;
}

static void file_close(void *impl) {
  file_store *f = impl;
  if (!f) return;
  free(f->root);
  free(f);
}

static const esr__cpstore_ops FILE_OPS = {file_upload, file_list,  file_fetch, file_prune,
                                          file_check,  file_quarantine, file_close};

esr_code esr__cpstore_file_open(const char *root, const esr__cpstore_ops **ops, void **impl, esr_error *err) {
  file_store *f = calloc(1, sizeof *f);
  if (!f || !(f->root = strdup(root))) {
    free(f);
    return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  }
  for (size_t n = strlen(f->root); n > 1 && f->root[n - 1] == '/'; n--) f->root[n - 1] = '\0';
  *ops = &FILE_OPS;
  *impl = f;
  return ESR_E_OK;
}
