/* esrt_proc.h — test support: child processes (spawn, signal, wait, reap), per-test temporary directories, small file
 * helpers and a monotonic clock.
 *
 * Every child runs in a process group of its own, with its standard output and error in files of the test's directory
 * (named "<seq>-<name>.out" / ".err", so restarts keep every log), and with PR_SET_PDEATHSIG so that it dies with the
 * test even when the test itself is killed. Every child still running is killed and reaped by esrt_reap_all, which
 * also runs at exit: no test leaves processes behind, whichever way it ends.
 */
#ifndef ESRT_PROC_H
#define ESRT_PROC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

int64_t esrt_now_ms(void);
void esrt_sleep_ms(int ms);

typedef struct esrt_proc {
  pid_t pid; /* 0: never started */
  char name[64];
  char out_path[1024];
  char err_path[1024];
  int stdin_fd; /* write end of the child's standard input when spawned with a pipe, else -1 */
  int reaped;   /* 1 once waitpid returned it; status is then valid */
  int status;   /* waitpid status */
} esrt_proc;

/* Starts argv[0] (a path) with argv. Logs go to `dir`. With stdin_pipe the child's standard input is a pipe whose
 * write end is p->stdin_fd; otherwise /dev/null. Returns 0, or -1 with a message on stderr. */
int esrt_spawn(esrt_proc *p, const char *dir, const char *name, char *const argv[], int stdin_pipe);
/* Sends `sig` to the child's process group (no-op once reaped). */
int esrt_signal(esrt_proc *p, int sig);
/* Waits up to timeout_ms for the child to exit. 0: it exited (reaped), -1: still running. */
int esrt_wait(esrt_proc *p, int timeout_ms);
/* Whether the child is still running (reaps it when it has exited). */
int esrt_alive(esrt_proc *p);
/* Exit code once reaped: the code of a normal exit, 128+N for a death by signal N, -1 while not reaped. */
int esrt_exit_code(const esrt_proc *p);
/* SIGTERM, up to grace_ms to exit, then SIGKILL. Returns the exit code (as esrt_exit_code). */
int esrt_stop(esrt_proc *p, int grace_ms);
/* SIGKILL and reap. Returns the exit code. */
int esrt_kill9(esrt_proc *p);
/* Kills (SIGKILL) and reaps every child still running. Safe to call any time; also runs at exit. */
void esrt_reap_all(void);

/* A new directory "$TMPDIR/esr-<label>-XXXXXX" (malloc'd path), or NULL. */
char *esrt_mkdtemp(const char *label);
/* Removes a directory tree. */
int esrt_rmtree(const char *path);
/* The whole file, NUL-terminated (malloc'd), or NULL. */
char *esrt_read_file(const char *path, size_t *len);
int esrt_file_contains(const char *path, const char *needle);
/* Writes a file atomically enough for tests (printf format). 0 or -1. */
int esrt_write_file(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the last `lines` lines of a file, each prefixed. */
void esrt_print_tail(FILE *out, const char *path, int lines, const char *prefix);
/* Prints the tail of every child's log (*.err, *.out) in `dir`, for a failing test's report. */
void esrt_dump_logs(FILE *out, const char *dir, int lines);

#endif
