/* esrt_faultvfs.c — fault injection into SQLite for tests, as a shared object preloaded into an esr process
 * (LD_PRELOAD), in the spirit of SQLite's own test_vfs.c: the production binary carries no test code.
 *
 * It interposes sqlite3_open_v2: at the first open it registers a VFS shim over the default VFS and makes it the
 * default, so every database esr opens afterwards (partition stores, recovery checks, checkpoint copies) goes through
 * it. The shim passes every call through, except that write, sync and truncate calls on files whose path contains a
 * rule's substring fail with the rule's error while the rule is active. Rules live in a control file named by
 * ESRT_FAULTS, reread whenever it changes, so a test switches a fault on and off while the process runs:
 *
 *     <op> <error> <path-substring> [count]
 *
 * op: write | sync | truncate | any; error: ioerr (SQLITE_IOERR_WRITE/_FSYNC/_TRUNCATE as fits the op), full
 * (SQLITE_FULL), nomem (SQLITE_IOERR_NOMEM), corrupt (SQLITE_CORRUPT); count: how many calls fail (default: all while
 * the rule is in the file). Every injected fault appends "<op> <error> <path>" to the file named by ESRT_FAULTS_LOG,
 * so that a test can assert its premise: the fault really struck.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { OP_WRITE = 1, OP_SYNC = 2, OP_TRUNCATE = 4, OP_ANY = 7 };

typedef struct rule {
  int ops;
  char error[16];
  char match[256];
  long remaining; /* -1: unlimited */
} rule;

static struct {
  pthread_mutex_t mu;
  const char *path, *log;
  struct timespec mtime;
  off_t size;
  rule v[16];
  int n;
} ctl = {.mu = PTHREAD_MUTEX_INITIALIZER};

static sqlite3_vfs *base;

typedef struct shim_file {
  sqlite3_file base;
  sqlite3_file *real; /* follows this struct in the same allocation */
  char path[512];
} shim_file;

static void reload_locked(void) {
  struct stat st;
  if (!ctl.path || stat(ctl.path, &st) != 0) {
    ctl.n = 0;
    return;
  }
  if (st.st_mtim.tv_sec == ctl.mtime.tv_sec && st.st_mtim.tv_nsec == ctl.mtime.tv_nsec && st.st_size == ctl.size)
    return;
  ctl.mtime = st.st_mtim;
  ctl.size = st.st_size;
  ctl.n = 0;
  FILE *f = fopen(ctl.path, "r");
  if (!f) return;
  char line[512];
  while (ctl.n < 16 && fgets(line, sizeof line, f)) {
    char op[16];
    rule r = {.remaining = -1};
    long count = -1;
    int k = sscanf(line, "%15s %15s %255s %ld", op, r.error, r.match, &count);
    if (k < 3 || op[0] == '#') continue;
    r.ops = !strcmp(op, "write") ? OP_WRITE : !strcmp(op, "sync") ? OP_SYNC : !strcmp(op, "truncate") ? OP_TRUNCATE
                                                                                                       : OP_ANY;
    if (k == 4) r.remaining = count;
    ctl.v[ctl.n++] = r;
  }
  fclose(f);
}

/* The error a call must fail with, or SQLITE_OK. */
static int fault(int op, const char *path) {
  if (!ctl.path) return SQLITE_OK;
  pthread_mutex_lock(&ctl.mu);
  reload_locked();
  int rc = SQLITE_OK;
  for (int i = 0; i < ctl.n && rc == SQLITE_OK; i++) {
    rule *r = &ctl.v[i];
    if (!(r->ops & op) || r->remaining == 0 || !strstr(path, r->match)) continue;
    if (r->remaining > 0) r->remaining--;
    if (!strcmp(r->error, "full"))
      rc = SQLITE_FULL;
    else if (!strcmp(r->error, "nomem"))
      rc = SQLITE_IOERR_NOMEM;
    else if (!strcmp(r->error, "corrupt"))
      rc = SQLITE_CORRUPT;
    else
      rc = op == OP_WRITE ? SQLITE_IOERR_WRITE : op == OP_SYNC ? SQLITE_IOERR_FSYNC : SQLITE_IOERR_TRUNCATE;
    if (ctl.log) {
      int fd = open(ctl.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd >= 0) {
        char line[700];
        int len = snprintf(line, sizeof line, "%s %s %s\n",
                           op == OP_WRITE ? "write" : op == OP_SYNC ? "sync" : "truncate", r->error, path);
        if (len > 0) (void)!write(fd, line, (size_t)len);
        close(fd);
      }
    }
  }
  pthread_mutex_unlock(&ctl.mu);
  return rc;
}

#define REAL(f) (((shim_file *)(f))->real)
#define PATH(f) (((shim_file *)(f))->path)

static int x_close(sqlite3_file *f) {
  int rc = REAL(f)->pMethods ? REAL(f)->pMethods->xClose(REAL(f)) : SQLITE_OK;
  return rc;
}
static int x_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o) { return REAL(f)->pMethods->xRead(REAL(f), b, n, o); }
static int x_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o) {
  int rc = fault(OP_WRITE, PATH(f));
  return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xWrite(REAL(f), b, n, o);
}
static int x_truncate(sqlite3_file *f, sqlite3_int64 size) {
  int rc = fault(OP_TRUNCATE, PATH(f));
  return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int x_sync(sqlite3_file *f, int flags) {
  int rc = fault(OP_SYNC, PATH(f));
  return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int x_size(sqlite3_file *f, sqlite3_int64 *s) { return REAL(f)->pMethods->xFileSize(REAL(f), s); }
static int x_lock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xLock(REAL(f), l); }
static int x_unlock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xUnlock(REAL(f), l); }
static int x_check(sqlite3_file *f, int *r) { return REAL(f)->pMethods->xCheckReservedLock(REAL(f), r); }
static int x_fctl(sqlite3_file *f, int op, void *a) { return REAL(f)->pMethods->xFileControl(REAL(f), op, a); }
static int x_sector(sqlite3_file *f) { return REAL(f)->pMethods->xSectorSize(REAL(f)); }
static int x_dev(sqlite3_file *f) { return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f)); }
static int x_shmmap(sqlite3_file *f, int pg, int sz, int ext, void volatile **pp) {
  return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, ext, pp);
}
static int x_shmlock(sqlite3_file *f, int o, int n, int fl) { return REAL(f)->pMethods->xShmLock(REAL(f), o, n, fl); }
static void x_shmbarrier(sqlite3_file *f) { REAL(f)->pMethods->xShmBarrier(REAL(f)); }
static int x_shmunmap(sqlite3_file *f, int d) { return REAL(f)->pMethods->xShmUnmap(REAL(f), d); }
static int x_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **pp) {
  return REAL(f)->pMethods->xFetch(REAL(f), o, n, pp);
}
static int x_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p) { return REAL(f)->pMethods->xUnfetch(REAL(f), o, p); }

static const sqlite3_io_methods METHODS = {3,        x_close,     x_read,     x_write,  x_truncate, x_sync,
                                           x_size,   x_lock,      x_unlock,   x_check,  x_fctl,     x_sector,
                                           x_dev,    x_shmmap,    x_shmlock,  x_shmbarrier, x_shmunmap, x_fetch,
                                           x_unfetch};

static int v_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags, int *out_flags) {
  (void)vfs;
  shim_file *sf = (shim_file *)f;
  sf->real = (sqlite3_file *)(sf + 1);
  snprintf(sf->path, sizeof sf->path, "%s", name ? name : "");
  int rc = base->xOpen(base, name, sf->real, flags, out_flags);
  f->pMethods = rc == SQLITE_OK && sf->real->pMethods ? &METHODS : NULL;
  if (rc != SQLITE_OK && sf->real->pMethods) sf->real->pMethods->xClose(sf->real);
  return rc;
}
static int v_delete(sqlite3_vfs *v, const char *n, int s) { (void)v; return base->xDelete(base, n, s); }
static int v_access(sqlite3_vfs *v, const char *n, int f, int *r) { (void)v; return base->xAccess(base, n, f, r); }
static int v_full(sqlite3_vfs *v, const char *n, int c, char *o) { (void)v; return base->xFullPathname(base, n, c, o); }
static void *v_dlopen(sqlite3_vfs *v, const char *n) { (void)v; return base->xDlOpen(base, n); }
static void v_dlerror(sqlite3_vfs *v, int n, char *m) { (void)v; base->xDlError(base, n, m); }
static void (*v_dlsym(sqlite3_vfs *v, void *h, const char *s))(void) { (void)v; return base->xDlSym(base, h, s); }
static void v_dlclose(sqlite3_vfs *v, void *h) { (void)v; base->xDlClose(base, h); }
static int v_random(sqlite3_vfs *v, int n, char *o) { (void)v; return base->xRandomness(base, n, o); }
static int v_sleep(sqlite3_vfs *v, int us) { (void)v; return base->xSleep(base, us); }
static int v_time(sqlite3_vfs *v, double *t) { (void)v; return base->xCurrentTime(base, t); }
static int v_lasterr(sqlite3_vfs *v, int n, char *m) { (void)v; return base->xGetLastError(base, n, m); }
static int v_time64(sqlite3_vfs *v, sqlite3_int64 *t) { (void)v; return base->xCurrentTimeInt64(base, t); }

static sqlite3_vfs shim = {.iVersion = 2,
                           .mxPathname = 512,
                           .zName = "esrt-fault",
                           .xOpen = v_open,
                           .xDelete = v_delete,
                           .xAccess = v_access,
                           .xFullPathname = v_full,
                           .xDlOpen = v_dlopen,
                           .xDlError = v_dlerror,
                           .xDlSym = v_dlsym,
                           .xDlClose = v_dlclose,
                           .xRandomness = v_random,
                           .xSleep = v_sleep,
                           .xCurrentTime = v_time,
                           .xGetLastError = v_lasterr,
                           .xCurrentTimeInt64 = v_time64};

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void install(void) {
  ctl.path = getenv("ESRT_FAULTS");
  ctl.log = getenv("ESRT_FAULTS_LOG");
  base = sqlite3_vfs_find(NULL);
  if (!base) return;
  shim.szOsFile = (int)sizeof(shim_file) + base->szOsFile;
  shim.mxPathname = base->mxPathname;
  sqlite3_vfs_register(&shim, 1);
}

__attribute__((visibility("default"))) int sqlite3_open_v2(const char *filename, sqlite3 **db, int flags,
                                                           const char *vfs) {
  static int (*real)(const char *, sqlite3 **, int, const char *);
  if (!real) *(void **)&real = dlsym(RTLD_NEXT, "sqlite3_open_v2");
  pthread_once(&once, install); /* after the program's own sqlite3_config calls, which must precede initialization */
  return real(filename, db, flags, vfs);
}
