/* cmd_audit.c — what the audit commands (replay, verify, digest) share: where the log and the handlers come from
 * (--config FILE, or --bootstrap/--handlers/--schemas), their exit codes, and progress on a terminal. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "log.h"

extern char **environ;

int esr_cmd_audit_exit(esr_code rc) {
  switch (rc) {
  case ESR_E_OK: return 0;
  case ESR_E_CONFIG: return 2;
  case ESR_E_PLUGIN: return 3;
  default: return 4; /* Kafka, I/O, SQLite, a gap in the log: nothing could be decided */
  }
}

int esr_cmd_source_config(const char *cmd, const esr_cmd_source *src, esr_config **out) {
  esr_error err = {0};
  esr_config *cfg = NULL;
  *out = NULL;
  if (!src->config == !src->bootstrap) {
    fprintf(stderr, "esr %s: give one of --config FILE or --bootstrap SERVERS (see --help)\n", cmd);
    return 2;
  }
  if (src->config) {
    if (src->handlers || src->schemas) {
      fprintf(stderr, "esr %s: --handlers and --schemas go with --bootstrap; with --config they come from the file\n",
              cmd);
      return 2;
    }
    if (esr_config_load(src->config, environ, &cfg, &err) != ESR_E_OK) {
      fprintf(stderr, "esr: %s\n", err.msg);
      return esr_cmd_audit_exit(err.code);
    }
  } else {
    if (src->need_handlers && !src->handlers) {
      fprintf(stderr, "esr %s: --handlers SO[,SO] is required with --bootstrap\n", cmd);
      return 2;
    }
    if (!(cfg = esr_config_new()) ||
        esr_config_set(cfg, "kafka.bootstrap.servers", src->bootstrap, "--bootstrap", &err) != ESR_E_OK ||
        (src->handlers && esr_config_set(cfg, "handlers", src->handlers, "--handlers", &err) != ESR_E_OK) ||
        (src->schemas && esr_config_set(cfg, "schemas.dir", src->schemas, "--schemas", &err) != ESR_E_OK)) {
      fprintf(stderr, "esr: %s\n", cfg ? err.msg : "out of memory");
      esr_config_free(cfg);
      return 2;
    }
  }
  for (int i = 0; i < src->n_props; i++) {
    char *eq = strchr(src->props[i], '=');
    if (!eq || strncmp(src->props[i], "kafka.", 6) != 0) {
      fprintf(stderr, "esr %s: -X takes kafka.PROPERTY=VALUE, not '%s'\n", cmd, src->props[i]);
      esr_config_free(cfg);
      return 2;
    }
    *eq = '\0';
    esr_code rc = esr_config_set(cfg, src->props[i], eq + 1, "-X", &err);
    *eq = '=';
    if (rc != ESR_E_OK) {
      fprintf(stderr, "esr: %s\n", err.msg);
      esr_config_free(cfg);
      return 2;
    }
  }
  /* The dead letters of a replay are rows of its output, not news: the log shows warnings and errors only. */
  esr_log_setup(src->verbose ? cfg->log_level : ESR_LOG_WARN, cfg->log_format);
  *out = cfg;
  return 0;
}

/* ---- progress --------------------------------------------------------------------------------------------------- */

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *grouped(int64_t v, char *buf, size_t cap) {
  char raw[32];
  snprintf(raw, sizeof raw, "%" PRId64, v);
  size_t len = strlen(raw), o = 0;
  for (size_t i = 0; i < len && o + 2 < cap; i++) {
    buf[o++] = raw[i];
    size_t left = len - i - 1;
    if (left && left % 3 == 0 && raw[i] != '-') buf[o++] = ',';
  }
  buf[o] = '\0';
  return buf;
}

static void eta(double secs, char *buf, size_t cap) {
  if (secs < 0 || secs > 360000)
    snprintf(buf, cap, "?");
  else if (secs < 60)
    snprintf(buf, cap, "%.1f s", secs);
  else
    snprintf(buf, cap, "%dm%02ds", (int)secs / 60, (int)secs % 60);
}

void esr_cmd_progress(void *arg, const esr_replay_report *r, int final) {
  esr_cmd_progress_state *ps = arg;
  if (!ps->tty) return;
  double now = mono_s();
  char a[32], b[32], c[32], e[32];
  if (ps->drawn) fprintf(stderr, "\033[%dA", ps->drawn); /* back to the block's first line */
  int lines = 0;
  int64_t total_done = 0;
  size_t finished = 0;
  for (size_t i = 0; i < r->n; i++) {
    const esr_replay_part *p = &r->parts[i];
    int state = atomic_load(&p->state);
    int64_t done = atomic_load(&p->done);
    total_done += done;
    if (state == ESR_PART_DONE || state == ESR_PART_FAILED) finished++;
    /* The state first: what a partition's thread wrote before it changed the state is then visible. */
    if (final || (state != ESR_PART_PREPARING && state != ESR_PART_APPLYING)) continue;
    double dt = now - p->started_s;
    double rate = dt > 0 ? (double)done / dt : 0;
    int64_t todo = state == ESR_PART_APPLYING && p->target >= 0 ? p->target - p->from : -1;
    if (state == ESR_PART_PREPARING)
      fprintf(stderr, "\033[K  %s[%d]  preparing (log bounds, target, checkpoint)\n", r->topic, (int)p->partition);
    else {
      eta(todo >= 0 && rate > 0 ? (double)(todo - done) / rate : -1, e, sizeof e);
      fprintf(stderr, "\033[K  %s[%d]  %s / %s events  %s/s  ETA %s\n", r->topic, (int)p->partition,
              grouped(done, a, sizeof a), todo >= 0 ? grouped(todo, b, sizeof b) : "?", grouped((int64_t)rate, c, sizeof c),
              e);
    }
    lines++;
  }
  double rate = r->seconds > 0 ? (double)total_done / r->seconds : 0;
  if (!final) {
    fprintf(stderr, "\033[K  %zu/%zu partitions done, %s events, %s/s\n", finished, r->n,
            grouped(total_done, a, sizeof a), grouped((int64_t)rate, b, sizeof b));
    lines++;
  }
  for (int i = lines; i < ps->drawn; i++) fprintf(stderr, "\033[K\n"); /* clear what the last block left below */
  if (ps->drawn > lines) fprintf(stderr, "\033[%dA", ps->drawn - lines);
  ps->drawn = final ? 0 : lines;
  fflush(stderr);
}

void esr_cmd_note(void *arg, const char *line) {
  esr_cmd_progress_state *ps = arg;
  if (ps && ps->tty && ps->drawn) { /* above the progress block, which the next refresh draws again below */
    fprintf(stderr, "\033[%dA\033[J", ps->drawn);
    ps->drawn = 0;
  }
  fprintf(stderr, "esr %s: %s\n", ps && ps->cmd ? ps->cmd : "replay", line);
}

void esr_cmd_progress_init(esr_cmd_progress_state *ps, const char *cmd) {
  memset(ps, 0, sizeof *ps);
  ps->cmd = cmd;
  ps->tty = isatty(STDERR_FILENO);
}
