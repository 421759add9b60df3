/* esrt_proc.c — child processes for black-box tests: fork+exec into their own process group, logs to files, bounded
 * waits, and a registry of live children that is emptied (SIGKILL + waitpid) on teardown and at exit. */
#include "esrt_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 256

/* pids of children not yet reaped (not pointers to esrt_proc: those may live in a frame a failed assertion left) */
static pid_t g_children[MAX_CHILDREN];
static int g_atexit;
static int g_seq;

int64_t esrt_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void esrt_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static void track(pid_t pid) {
  for (int i = 0; i < MAX_CHILDREN; i++)
    if (!g_children[i]) {
      g_children[i] = pid;
      return;
    }
  fprintf(stderr, "esrt: more than %d live children; not tracked: pid %d\n", MAX_CHILDREN, (int)pid);
}

static void untrack(pid_t pid) {
  for (int i = 0; i < MAX_CHILDREN; i++)
    if (g_children[i] == pid) g_children[i] = 0;
}

int esrt_spawn(esrt_proc *p, const char *dir, const char *name, char *const argv[], int stdin_pipe) {
  memset(p, 0, sizeof *p);
  p->stdin_fd = -1;
  snprintf(p->name, sizeof p->name, "%s", name);
  int seq = ++g_seq;
  snprintf(p->out_path, sizeof p->out_path, "%s/%03d-%s.out", dir, seq, name);
  snprintf(p->err_path, sizeof p->err_path, "%s/%03d-%s.err", dir, seq, name);
  if (!g_atexit) {
    atexit(esrt_reap_all);
    g_atexit = 1;
  }
  int out = open(p->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = open(p->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int in[2] = {-1, -1};
  if (stdin_pipe) {
    if (pipe2(in, O_CLOEXEC) != 0) in[0] = in[1] = -1;
  } else {
    in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  if (out < 0 || err < 0 || in[0] < 0) {
    fprintf(stderr, "esrt: cannot set up files for %s in %s: %s\n", name, dir, strerror(errno));
    goto fail;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "esrt: fork: %s\n", strerror(errno));
    goto fail;
  }
  if (pid == 0) {
    /* Only async-signal-safe calls here: the parent may have threads (librdkafka's). */
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    dup2(in[0], STDIN_FILENO);
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    execv(argv[0], argv);
    static const char msg[] = "esrt: exec failed\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    _exit(127);
  }
  setpgid(pid, pid); /* also from this side, so that signalling the group right away works */
  p->pid = pid;
  track(pid);
  close(out);
  close(err);
  close(in[0]);
  p->stdin_fd = in[1];
  return 0;
fail:
  if (out >= 0) close(out);
  if (err >= 0) close(err);
  if (in[0] >= 0) close(in[0]);
  if (in[1] >= 0) close(in[1]);
  return -1;
}

static void reaped(esrt_proc *p, int status) {
  p->reaped = 1;
  p->status = status;
  if (p->stdin_fd >= 0) close(p->stdin_fd);
  p->stdin_fd = -1;
  untrack(p->pid);
}

int esrt_signal(esrt_proc *p, int sig) {
  if (p->pid <= 0 || p->reaped) return -1;
  if (kill(-p->pid, sig) != 0) return kill(p->pid, sig);
  return 0;
}

static int try_reap(esrt_proc *p) {
  if (p->pid <= 0) return 1;
  if (p->reaped) return 1;
  int status;
  pid_t r = waitpid(p->pid, &status, WNOHANG);
  if (r == p->pid) {
    reaped(p, status);
    return 1;
  }
  if (r < 0 && errno == ECHILD) {
    reaped(p, 0);
    return 1;
  }
  return 0;
}

int esrt_wait(esrt_proc *p, int timeout_ms) {
  int64_t deadline = esrt_now_ms() + timeout_ms;
  while (!try_reap(p)) {
    if (esrt_now_ms() >= deadline) return -1;
    esrt_sleep_ms(2);
  }
  return 0;
}

int esrt_alive(esrt_proc *p) { return p->pid > 0 && !try_reap(p); }

int esrt_exit_code(const esrt_proc *p) {
  if (!p->reaped) return -1;
  if (WIFEXITED(p->status)) return WEXITSTATUS(p->status);
  if (WIFSIGNALED(p->status)) return 128 + WTERMSIG(p->status);
  return -1;
}

int esrt_stop(esrt_proc *p, int grace_ms) {
  if (p->pid <= 0) return -1;
  if (!p->reaped) {
    esrt_signal(p, SIGTERM);
    if (esrt_wait(p, grace_ms) != 0) {
      fprintf(stderr, "esrt: %s (pid %d) did not stop within %d ms of SIGTERM: killing it\n", p->name, (int)p->pid,
              grace_ms);
      esrt_signal(p, SIGKILL);
      esrt_wait(p, 10000);
    }
  }
  return esrt_exit_code(p);
}

int esrt_kill9(esrt_proc *p) {
  if (p->pid <= 0) return -1;
  if (!p->reaped) {
    esrt_signal(p, SIGKILL);
    if (esrt_wait(p, 10000) != 0) fprintf(stderr, "esrt: %s (pid %d) survived SIGKILL?\n", p->name, (int)p->pid);
  }
  return esrt_exit_code(p);
}

void esrt_reap_all(void) {
  for (int i = 0; i < MAX_CHILDREN; i++) {
    pid_t pid = g_children[i];
    if (!pid) continue;
    if (kill(-pid, SIGKILL) != 0) kill(pid, SIGKILL);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    g_children[i] = 0;
  }
}

char *esrt_mkdtemp(const char *label) {
  const char *base = getenv("TMPDIR");
  if (!base || !*base) base = "/tmp";
  char buf[1024];
  snprintf(buf, sizeof buf, "%s/esr-%s-XXXXXX", base, label);
  if (!mkdtemp(buf)) {
    fprintf(stderr, "esrt: mkdtemp %s: %s\n", buf, strerror(errno));
    return NULL;
  }
  return strdup(buf);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

int esrt_rmtree(const char *path) { return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

char *esrt_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    size_t r = fread(buf + n, 1, cap - n - 1, f);
    n += r;
    if (n + 1 < cap) break;
    cap *= 2;
    char *g = realloc(buf, cap);
    if (!g) {
      free(buf);
      buf = NULL;
    } else {
      buf = g;
    }
  }
  fclose(f);
  if (buf) buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

int esrt_file_contains(const char *path, const char *needle) {
  char *s = esrt_read_file(path, NULL);
  int found = s && strstr(s, needle) != NULL;
  free(s);
  return found;
}

int esrt_write_file(const char *path, const char *fmt, ...) {
  char tmp[1100];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) return -1;
  va_list ap;
  va_start(ap, fmt);
  int w = vfprintf(f, fmt, ap);
  va_end(ap);
  if (fclose(f) != 0 || w < 0) return -1;
  return rename(tmp, path);
}

void esrt_print_tail(FILE *out, const char *path, int lines, const char *prefix) {
  size_t len;
  char *s = esrt_read_file(path, &len);
  if (!s) return;
  const char *start = s + len;
  int seen = 0;
  while (start > s) {
    if (start[-1] == '\n' && start != s + len && ++seen > lines) break;
    start--;
  }
  for (const char *line = start; *line;) {
    const char *nl = strchr(line, '\n');
    int n = nl ? (int)(nl - line) : (int)strlen(line);
    fprintf(out, "%s%.*s\n", prefix, n, line);
    line += n + (nl ? 1 : 0);
  }
  free(s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void esrt_dump_logs(FILE *out, const char *dir, int lines) {
  DIR *d = opendir(dir);
  if (!d) return;
  char *names[512];
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < 512) {
    size_t len = strlen(e->d_name);
    if (len > 4 && (strcmp(e->d_name + len - 4, ".err") == 0 || strcmp(e->d_name + len - 4, ".out") == 0))
      names[n++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, cmp_str);
  for (int i = 0; i < n; i++) {
    char path[2048], prefix[80];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    struct stat st;
    if (stat(path, &st) == 0 && st.st_size > 0) {
      fprintf(out, "---- %s (last %d lines)\n", path, lines);
      snprintf(prefix, sizeof prefix, "%.60s| ", names[i]);
      esrt_print_tail(out, path, lines, prefix);
    }
    free(names[i]);
  }
}
