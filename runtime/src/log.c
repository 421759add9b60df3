/* log.c — JSON or text log lines on stderr, one write(2) per record so that threads and processes do not interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static int g_min_level = ESR_LOG_INFO;
static esr_log_format g_format = ESR_LOG_AUTO;

static const char *level_name(int level) {
  switch (level) {
  case ESR_LOG_DEBUG: return "debug";
  case ESR_LOG_INFO: return "info";
  case ESR_LOG_WARN: return "warn";
  default: return "error";
  }
}

void esr_log_setup(int min_level, esr_log_format format) {
  g_min_level = min_level;
  g_format = format;
}

int esr_log_enabled(int level) { return level >= g_min_level; }

int esr_log_level_parse(const char *s) {
  static const char *names[] = {"debug", "info", "warn", "error"};
  for (int i = 0; i < 4; i++)
    if (strcasecmp(s, names[i]) == 0) return i;
  return -1;
}

/* Appends `s` JSON-escaped; returns the new length (bounded by cap - 1). */
static size_t json_escape(char *buf, size_t len, size_t cap, const char *s) {
  for (; *s && len + 7 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      buf[len++] = '\\';
      buf[len++] = (char)c;
    } else if (c == '\n') {
      buf[len++] = '\\';
      buf[len++] = 'n';
    } else if (c < 0x20) {
      len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", c);
    } else {
      buf[len++] = (char)c;
    }
  }
  buf[len] = '\0';
  return len;
}

void esr_logv(int level, const char *component, const char *fmt, va_list ap) {
  if (level < g_min_level) return;
  char msg[2048];
  vsnprintf(msg, sizeof msg, fmt, ap);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[40];
  size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(when + n, sizeof when - n, ".%03ldZ", ts.tv_nsec / 1000000);

  esr_log_format format = g_format;
  if (format == ESR_LOG_AUTO) format = isatty(STDERR_FILENO) ? ESR_LOG_TEXT : ESR_LOG_JSON;
  char line[4096];
  size_t len;
  if (format == ESR_LOG_TEXT) {
    for (char *c = msg; *c; c++) /* one record, one line: a message with newlines (a quick_check report) stays one */
      if ((unsigned char)*c < 0x20) *c = ' ';
    len = (size_t)snprintf(line, sizeof line - 1, "%s %-5s %s: %s", when, level_name(level), component, msg);
    if (len > sizeof line - 2) len = sizeof line - 2;
  } else {
    len = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"", when,
                           level_name(level));
    len = json_escape(line, len, sizeof line - 16, component);
    len += (size_t)snprintf(line + len, sizeof line - len, "\",\"msg\":\"");
    len = json_escape(line, len, sizeof line - 4, msg);
    line[len++] = '"';
    line[len++] = '}';
  }
  line[len++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
}

void esr_log(int level, const char *component, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  esr_logv(level, component, fmt, ap);
  va_end(ap);
}
