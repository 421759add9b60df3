/* crashguard.c — in-flight markers, the fatal-signal crash record, and the careful pass that isolates a poison event. */
#include "crashguard.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MARKER_LEN 192
#define ALT_STACK_SIZE 65536

struct esr_guard {
  int fd;
  int max_retries, batch_max;
  char record[300]; /* "<topic>\t<partition>\t": the signal handler adds offset and signal */
  size_t record_len;
  /* the marker (saved at every batch begin and commit) */
  int64_t first;         /* first offset of the batch in flight, -1: none */
  int64_t zone;          /* first offset of the batch in flight at the last death without a signal, -1: none */
  int deaths;            /* deaths without a signal in [zone, zone + batch_max) */
  int64_t careful_until; /* careful pass until this offset (exclusive), 0: not careful */
  int64_t candidate;     /* careful pass: the event in flight, -1: none */
  int64_t suspect;       /* the event deaths were charged to, -1: none */
  int sig_hits;          /* deaths with a signal recorded on the suspect */
  int kill_hits;         /* deaths without a signal while the suspect was in flight in the careful pass */
  int signo;             /* the last recorded signal, for the message */
};

static int g_crash_fd = -1;
static _Thread_local struct {
  esr_guard *g;
  int64_t offset;
} t_cur;
static _Thread_local void *t_altstack;
static const int FATAL[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

/* ---- the signal handler: async-signal-safe calls only ---- */

static size_t put_i64(char *buf, size_t n, int64_t v) {
  char tmp[24];
  size_t k = 0;
  uint64_t u = v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
  do {
    tmp[k++] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) buf[n++] = '-';
  while (k) buf[n++] = tmp[--k];
  return n;
}

static void on_fatal(int sig, siginfo_t *si, void *uc) {
  (void)si;
  (void)uc;
  esr_guard *g = t_cur.g;
  if (g && g_crash_fd >= 0) {
    char buf[400];
    size_t n = 0;
    memcpy(buf, g->record, g->record_len);
    n = g->record_len;
    n = put_i64(buf, n, t_cur.offset);
    buf[n++] = '\t';
    n = put_i64(buf, n, sig);
    buf[n++] = '\n';
    ssize_t w = write(g_crash_fd, buf, n); /* O_APPEND: one line per crashing thread, whole */
    (void)w;
  }
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigaction(sig, &dfl, NULL);
  raise(sig); /* dies with the original signal (a fault re-executes the instruction and dies too) */
}

/* ---- the process-wide crash record ---- */

esr_code esr_crash_record_open(const char *state_dir, esr_crash_record *last, esr_error *err) {
  memset(last, 0, sizeof *last);
  char path[4096];
  snprintf(path, sizeof path, "%s/.esr-crash", state_dir);
  int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) return esr_error_set(err, ESR_E_IO, errno, "%s: %s", path, strerror(errno));
  char buf[8192];
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  buf[n > 0 ? n : 0] = '\0';
  for (char *line = buf, *nl; n > 0 && (nl = strchr(line, '\n')) && last->n < 16; line = nl + 1) {
    *nl = '\0';
    char *tab = strchr(line, '\t');
    long long partition, offset;
    int signo;
    if (!tab || (size_t)(tab - line) >= sizeof last->v[0].topic ||
        sscanf(tab + 1, "%lld\t%lld\t%d", &partition, &offset, &signo) != 3)
      continue;
    esr_crash_entry *e = &last->v[last->n++];
    memcpy(e->topic, line, (size_t)(tab - line));
    e->topic[tab - line] = '\0';
    e->partition = (int32_t)partition;
    e->offset = offset;
    e->signo = signo;
  }
  if (ftruncate(fd, 0) != 0) {
    close(fd);
    return esr_error_set(err, ESR_E_IO, errno, "%s: %s", path, strerror(errno));
  }
  g_crash_fd = fd;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fatal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < sizeof FATAL / sizeof *FATAL; i++) sigaction(FATAL[i], &sa, NULL);
  return ESR_E_OK;
}

void esr_crash_record_close(void) {
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (size_t i = 0; i < sizeof FATAL / sizeof *FATAL; i++) sigaction(FATAL[i], &dfl, NULL);
  if (g_crash_fd >= 0) close(g_crash_fd);
  g_crash_fd = -1;
}

void esr_crash_thread_begin(void) {
  if (t_altstack) return;
  stack_t ss = {.ss_sp = malloc(ALT_STACK_SIZE), .ss_size = ALT_STACK_SIZE, .ss_flags = 0};
  if (ss.ss_sp && sigaltstack(&ss, NULL) == 0)
    t_altstack = ss.ss_sp;
  else
    free(ss.ss_sp);
}

void esr_crash_thread_end(void) {
  if (!t_altstack) return;
  stack_t ss = {.ss_flags = SS_DISABLE};
  sigaltstack(&ss, NULL);
  free(t_altstack);
  t_altstack = NULL;
}

/* ---- the partition's marker ---- */

static void save(esr_guard *g) {
  char buf[MARKER_LEN + 1];
  int n = snprintf(buf, sizeof buf, "%" PRId64 " %" PRId64 " %d %" PRId64 " %" PRId64 " %" PRId64 " %d %d %d", g->first,
                   g->zone, g->deaths, g->careful_until, g->candidate, g->suspect, g->sig_hits, g->kill_hits, g->signo);
  if (n < 0 || n >= MARKER_LEN) return;
  memset(buf + n, ' ', (size_t)(MARKER_LEN - n)); /* a fixed-size record: one pwrite replaces the previous whole */
  buf[MARKER_LEN - 1] = '\n';
  ssize_t w = pwrite(g->fd, buf, MARKER_LEN, 0);
  (void)w; /* a lost marker only weakens poison detection; it never changes what is applied */
}

static void suspect(esr_guard *g, int64_t offset) {
  if (g->suspect != offset) {
    g->suspect = offset;
    g->sig_hits = g->kill_hits = 0;
  }
}

esr_code esr_guard_open(const char *state_dir, const char *topic, int32_t partition, int max_retries, int batch_max,
                        const esr_crash_record *last, esr_guard **out, esr_error *err) {
  *out = NULL;
  esr_guard *g = calloc(1, sizeof *g);
  if (!g) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  g->max_retries = max_retries;
  g->batch_max = batch_max > 0 ? batch_max : 1;
  g->first = g->zone = g->candidate = g->suspect = -1;
  int len = snprintf(g->record, sizeof g->record, "%s\t%d\t", topic, (int)partition);
  g->record_len = len > 0 && (size_t)len < sizeof g->record ? (size_t)len : 0;
  char path[4096];
  snprintf(path, sizeof path, "%s/%s-%d.inflight", state_dir, topic, (int)partition);
  g->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (g->fd < 0) {
    esr_error_set(err, ESR_E_IO, errno, "%s: %s", path, strerror(errno));
    free(g);
    return ESR_E_IO;
  }
  char buf[MARKER_LEN + 1];
  if (pread(g->fd, buf, MARKER_LEN, 0) == MARKER_LEN) {
    buf[MARKER_LEN] = '\0';
    long long first, zone, until, cand, susp;
    int deaths, sig_hits, kill_hits, signo;
    if (sscanf(buf, "%lld %lld %d %lld %lld %lld %d %d %d", &first, &zone, &deaths, &until, &cand, &susp, &sig_hits,
               &kill_hits, &signo) == 9) {
      g->first = first;
      g->zone = zone;
      g->deaths = deaths;
      g->careful_until = until;
      g->candidate = cand;
      g->suspect = susp;
      g->sig_hits = sig_hits;
      g->kill_hits = kill_hits;
      g->signo = signo;
    }
  }
  if (g->first >= 0) { /* the previous process died while this partition had a batch in flight */
    const esr_crash_entry *mine = NULL;
    for (int i = 0; last && i < last->n; i++)
      if (last->v[i].partition == partition && strcmp(last->v[i].topic, topic) == 0) mine = &last->v[i];
    int elsewhere = last && last->n > 0 && !mine;
    if (mine) { /* a signal while processing that very event: it is charged exactly */
      suspect(g, mine->offset);
      g->sig_hits++;
      g->signo = mine->signo;
    } else if (!elsewhere && g->careful_until > 0 && g->candidate >= 0) {
      suspect(g, g->candidate); /* killed without a signal while one event was in flight */
      g->kill_hits++;
    } else if (!elsewhere) { /* killed without a signal somewhere in the batch */
      if (g->zone >= 0 && g->first >= g->zone && g->first < g->zone + g->batch_max) {
        g->deaths++;
      } else {
        g->zone = g->first;
        g->deaths = 1;
      }
      if (g->deaths > g->max_retries) g->careful_until = g->zone + g->batch_max;
    }
    save(g);
  }
  *out = g;
  return ESR_E_OK;
}

void esr_guard_release(esr_guard *g) {
  if (!g || g->first < 0) return;
  g->first = -1;
  save(g);
}

void esr_guard_close(esr_guard *g) {
  if (!g) return;
  if (t_cur.g == g) t_cur.g = NULL;
  close(g->fd);
  free(g);
}

int esr_guard_begin(esr_guard *g, int64_t first) {
  if (g->careful_until > 0 && first >= g->careful_until) g->careful_until = 0;
  g->first = first;
  save(g);
  return g->careful_until > 0;
}

int esr_guard_careful(const esr_guard *g) { return g->careful_until > 0; }

int64_t esr_guard_suspect(const esr_guard *g, int *sig_hits, int *kill_hits) {
  *sig_hits = g->sig_hits;
  *kill_hits = g->kill_hits;
  return g->suspect;
}

int esr_guard_poison(esr_guard *g, int64_t offset, char *why, size_t cap) {
  if (offset == g->suspect && g->sig_hits > g->max_retries) {
    snprintf(why, cap, "the worker process died %d times with signal %d (%s) while processing this event: it was "
             "isolated and skipped", g->sig_hits, g->signo, strsignal(g->signo));
  } else if (offset == g->suspect && g->kill_hits >= 2) {
    snprintf(why, cap, "the worker process died %d times while processing this event (killed without a recorded "
             "signal, e.g. by the OOM killer), the last %d of them in a careful pass of one event per transaction: "
             "it was isolated and skipped", g->deaths + g->kill_hits, g->kill_hits);
  } else {
    if (g->careful_until > 0 && offset != g->candidate) {
      g->candidate = offset; /* the event in flight, charged if the process dies without a signal */
      save(g);
    }
    return 0;
  }
  /* The charges stay until a commit passes the event: if its dead letter's batch is lost (another crash), the event is
   * still known as poison when it comes again. */
  return 1;
}

void esr_guard_enter(esr_guard *g, int64_t offset) {
  t_cur.offset = offset;
  t_cur.g = g;
}

void esr_guard_leave(void) { t_cur.g = NULL; }

void esr_guard_committed(esr_guard *g, int64_t next_offset) {
  if (g->careful_until > 0 && next_offset < g->careful_until) {
    g->first = next_offset; /* the careful pass goes on: the next event is the next batch */
  } else {
    g->first = -1;
    g->careful_until = 0;
  }
  g->candidate = -1;
  if (g->suspect >= 0 && g->suspect < next_offset) { /* it committed: not poison */
    g->suspect = -1;
    g->sig_hits = g->kill_hits = 0;
  }
  if (g->zone >= 0 && next_offset >= g->zone + g->batch_max) { /* past the zone without dying */
    g->zone = -1;
    g->deaths = 0;
  }
  save(g);
}
