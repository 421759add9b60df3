/* esrt_s3.h — test support: the local S3-compatible server of tests/s3 (@20minutes/s3rver run by s3server.js, which
 * checks AWS Signature V4 with the credentials S3RVER / S3RVER) as a child process of the test, and bucket creation.
 * The server is installed into the build tree by the ctest fixture `s3_npm_ci` (FIXTURES_REQUIRED s3server). */
#ifndef ESRT_S3_H
#define ESRT_S3_H

#include "esrt_proc.h"

#define ESRT_S3_KEY_ID "S3RVER"
#define ESRT_S3_SECRET "S3RVER"
#define ESRT_S3_REGION "us-east-1"

typedef struct esrt_s3 {
  esrt_proc proc;
  int port;
  char endpoint[64]; /* http://127.0.0.1:PORT */
} esrt_s3;

/* Whether the server is installed in server_dir (node_modules present). */
int esrt_s3_installed(const char *server_dir);
/* Starts `node s3server.js <dir>/s3-data` (logs in dir) and waits up to timeout_ms until it answers requests. 0, or
 * -1 with a message on stderr. */
int esrt_s3_start(esrt_s3 *s, const char *node, const char *server_dir, const char *dir, int timeout_ms);
/* Creates a bucket (HTTP 200). 0, or -1 with a message. */
int esrt_s3_make_bucket(esrt_s3 *s, const char *bucket);
/* SIGTERM and wait. Returns the exit code. */
int esrt_s3_stop(esrt_s3 *s);

#endif
