/* cp_internal.h — internal to the checkpoint modules (checkpoint.c, cpstore*.c): the backends behind esr/cpstore.h
 * (cpstore.c parses the URL and dispatches, each backend implements the operations on its own handle) and the listing
 * of checkpoint names that the local directory and the S3 backend share. Not a public header. */
#ifndef ESR_CP_INTERNAL_H
#define ESR_CP_INTERNAL_H

#include "cpstore.h"

typedef struct esr__cpstore_ops {
  esr_code (*upload)(void *impl, const char *cp_dir, const esr_manifest *m, esr_error *err);
  esr_code (*list)(void *impl, const char *topic, int32_t partition, esr_manifest_list **out, esr_error *err);
  esr_code (*fetch)(void *impl, const esr_manifest *m, const char *cp_dir, esr_error *err);
  esr_code (*prune)(void *impl, const char *topic, int32_t partition, int keep, esr_error *err);
  esr_code (*check)(void *impl, esr_error *err);
  esr_code (*quarantine)(void *impl, const char *topic, int32_t partition, int64_t next_offset, esr_error *err);
  void (*close)(void *impl);
} esr__cpstore_ops;

/* file:///path: `root` is the absolute directory. */
esr_code esr__cpstore_file_open(const char *root, const esr__cpstore_ops **ops, void **impl, esr_error *err);
/* s3://bucket/prefix: `prefix` has no leading or trailing slash and may be empty. */
esr_code esr__cpstore_s3_open(const char *bucket, const char *prefix, const esr_cpstore_opts *opts,
                              const esr__cpstore_ops **ops, void **impl, esr_error *err);

/* A partition's checkpoint names, as found in a directory or an object listing. (checkpoint.c) */
typedef struct esr__cp_names {
  struct esr__cp_name {
    int64_t offset;
    int has_data, has_manifest;
  } * v;
  size_t n, cap;
} esr__cp_names;

/* Sets an ESR_E_IO error from errno: "<what> <path>: <strerror>". (checkpoint.c) */
esr_code esr__cp_io_error(esr_error *err, const char *what, const char *path);
/* Streams file src through SHA-256 into the open out_fd (-1: only hash); sha and size optional. (checkpoint.c) */
esr_code esr__cp_stream(const char *src, int out_fd, const char *out_path, uint8_t sha[32], int64_t *size,
                        esr_error *err);

/* Appends m to l (taking it on success); *cap is l's capacity. (checkpoint.c) */
esr_code esr__manifest_list_push(esr_manifest_list *l, esr_manifest *m, size_t *cap, esr_error *err);

/* Records file or object name `name` (its last path component) when it is a checkpoint's. */
esr_code esr__cp_names_add(esr__cp_names *names, const char *name, esr_error *err);
/* Sorts newest first. */
void esr__cp_names_sort(esr__cp_names *names);
void esr__cp_names_clear(esr__cp_names *names);

#endif
