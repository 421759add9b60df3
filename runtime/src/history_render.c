/* history_render.c — a timeline (history.h) as text for people, as JSON lines for tools, and as one self-contained
 * HTML page for an auditor offline. Renderers only read the timeline; every byte that came from the log or the state
 * is escaped for its output (control characters in text, invalid UTF-8 and quotes in JSON, markup in HTML). */
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "history.h"
#include "valuefmt.h"

/* ------------------------------------------------------------------------------------------------ shared */

static const char *op_name(int op) {
  switch (op) {
  case SQLITE_INSERT: return "INSERT";
  case SQLITE_UPDATE: return "UPDATE";
  case SQLITE_DELETE: return "DELETE";
  }
  return "?";
}

static const char *outcome_name(esr_history_outcome o) {
  switch (o) {
  case ESR_HISTORY_APPLIED: return "applied";
  case ESR_HISTORY_DEAD: return "dead-lettered";
  case ESR_HISTORY_STOPPED: return "stopped";
  }
  return "?";
}

/* "2026-11-25T10:00:00.123Z", or "-" without a timestamp. */
static const char *fmt_ts(int64_t ms, char *buf, size_t cap) {
  if (ms < 0) return "-";
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  if (!gmtime_r(&s, &tm)) return "-";
  char day[32];
  strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf, cap, "%s.%03dZ", day, (int)(ms % 1000));
  return buf;
}

/* A value as an SQL literal into buf. */
static const char *lit(const sqlite3_value *v, char *buf, size_t cap) {
  esr_cell c = esr_cell_of_value(v);
  return esr_cell_sql(&c, buf, cap);
}

static void put_text(FILE *out, const char *s, size_t n) { esr_write_text(out, s, n); }

static void put_cstr(FILE *out, const char *s) { put_text(out, s, strlen(s)); }

static size_t count_outcome(const esr_history *h, esr_history_outcome o) {
  size_t n = 0;
  for (size_t i = 0; i < h->n_events; i++) n += h->events[i].outcome == o;
  return n;
}

/* "0-7" or "3" or "0, 2, 5" (searched partitions are ascending). */
static void put_partitions(FILE *out, const esr_history *h) {
  if (h->n_searched > 1 && h->searched[h->n_searched - 1] - h->searched[0] == (int32_t)h->n_searched - 1)
    fprintf(out, "%d-%d", (int)h->searched[0], (int)h->searched[h->n_searched - 1]);
  else
    for (size_t i = 0; i < h->n_searched; i++) fprintf(out, "%s%d", i ? ", " : "", (int)h->searched[i]);
}

/* The primary key of a change: "id='a1'" or "a=1, b='x'". */
static void put_pk(FILE *out, const esr_history_change *c, int html);

/* ------------------------------------------------------------------------------------------------ text */

static void text_change(FILE *out, const esr_history_change *c) {
  char v1[512], v2[512];
  fputs("    ", out);
  put_cstr(out, c->table);
  fprintf(out, " %s ", op_name(c->op));
  put_pk(out, c, 0);
  fputs(":", out);
  int first = 1;
  for (int i = 0; i < c->n_cols; i++) {
    if (c->pk[i]) continue; /* named before the colon */
    const sqlite3_value *b = c->before[i], *a = c->after[i];
    if (c->op == SQLITE_UPDATE && !a) continue; /* unchanged */
    fputs(first ? " " : ", ", out);
    first = 0;
    put_cstr(out, c->cols[i]);
    if (c->op == SQLITE_INSERT)
      fprintf(out, " = %s", lit(a, v2, sizeof v2));
    else if (c->op == SQLITE_DELETE)
      fprintf(out, " was %s", lit(b, v1, sizeof v1));
    else
      fprintf(out, " %s -> %s", lit(b, v1, sizeof v1), lit(a, v2, sizeof v2));
  }
  fputs("\n", out);
}

int esr_history_write_text(const esr_history *h, FILE *out) {
  char ts[64];
  fputs("history of key \"", out);
  put_text(out, h->key, h->key_len);
  fputs("\" in topic ", out);
  put_cstr(out, h->topic);
  if (h->n_events == 0)
    fputs(": no events", out);
  else
    fprintf(out, ": %zu event(s), %zu applied, %zu dead-lettered%s", h->n_events,
            count_outcome(h, ESR_HISTORY_APPLIED), count_outcome(h, ESR_HISTORY_DEAD),
            count_outcome(h, ESR_HISTORY_STOPPED) ? ", 1 stopped the partition" : "");
  fputs(" (partitions searched: ", out);
  put_partitions(out, h);
  fprintf(out, "; %" PRId64 " event(s) replayed)\n", h->replayed);
  for (size_t i = 0; i < h->n_events; i++) {
    const esr_history_event *e = &h->events[i];
    fputs("\n", out);
    put_cstr(out, h->topic);
    fprintf(out, "[%d]@%" PRId64 "  %s  ", (int)e->partition, e->offset, fmt_ts(e->timestamp, ts, sizeof ts));
    if (e->type) {
      put_cstr(out, e->type);
      fprintf(out, " v%d", e->version);
    } else {
      fputs("(not an envelope)", out);
    }
    fprintf(out, "  %s", outcome_name(e->outcome));
    if (e->reason) {
      fputs(" (", out);
      put_cstr(out, e->reason);
      fputs(")", out);
    }
    if (e->error) {
      fputs(": ", out);
      put_cstr(out, e->error);
    }
    fputs("\n", out);
    if (e->id || e->time) {
      fputs("    event", out);
      if (e->id) {
        fputs(" id ", out);
        put_cstr(out, e->id);
      }
      if (e->time) {
        fputs(" time ", out);
        put_cstr(out, e->time);
      }
      fputs("\n", out);
    }
    for (size_t j = 0; j < e->n_changes; j++) text_change(out, &e->changes[j]);
    if (e->n_changes == 0) fputs("    no row changed\n", out);
    for (size_t j = 0; j < e->n_emits; j++) {
      fputs("    emitted to ", out);
      put_cstr(out, e->emits[j].topic);
      if (e->emits[j].key) {
        fputs(" key \"", out);
        put_text(out, e->emits[j].key, e->emits[j].key_len);
        fputs("\"", out);
      }
      fputs("\n", out);
    }
  }
  if (h->stopped) {
    fputs("\nthe handler stopped the partition; the timeline ends there: ", out);
    put_cstr(out, h->stopped);
    fputs("\n", out);
  }
  for (size_t i = 0; i < h->n_untracked; i++) {
    fputs("\nnote: table ", out);
    put_cstr(out, h->untracked[i]);
    fputs(" has no primary key: SQLite's session extension does not record its changes\n", out);
  }
  for (size_t i = 0; i < h->n_notes; i++) {
    fputs("\nnote: ", out);
    put_cstr(out, h->notes[i]);
    fputs("\n", out);
  }
  fflush(out);
  return ferror(out) ? -1 : 0;
}

/* ------------------------------------------------------------------------------------------------ JSON */

static void json_str(FILE *out, const char *s, size_t n) { esr_write_json_string(out, s, n); }

static void json_cstr(FILE *out, const char *s) {
  if (s)
    json_str(out, s, strlen(s));
  else
    fputs("null", out);
}

static void json_value(FILE *out, const sqlite3_value *v) {
  esr_cell c = esr_cell_of_value(v);
  esr_write_json_cell(out, &c);
}

/* {"col": value, ...} of the columns that `want` selects (0 pk, 1 before, 2 after). */
static void json_cols(FILE *out, const esr_history_change *c, int want) {
  fputc('{', out);
  int first = 1;
  for (int i = 0; i < c->n_cols; i++) {
    const sqlite3_value *v;
    if (want == 0) {
      if (!c->pk[i]) continue;
      v = c->before[i] ? c->before[i] : c->after[i];
    } else {
      if (c->pk[i] && c->op == SQLITE_UPDATE) continue; /* the key: in "pk" */
      v = want == 1 ? c->before[i] : c->after[i];
      if (!v) continue;
    }
    if (!first) fputc(',', out);
    first = 0;
    json_cstr(out, c->cols[i]);
    fputc(':', out);
    json_value(out, v);
  }
  fputc('}', out);
}

int esr_history_write_json(const esr_history *h, FILE *out) {
  char ts[64];
  for (size_t i = 0; i < h->n_events; i++) {
    const esr_history_event *e = &h->events[i];
    fputs("{\"topic\":", out);
    json_cstr(out, h->topic);
    fputs(",\"key\":", out);
    json_str(out, h->key, h->key_len);
    fprintf(out, ",\"partition\":%d,\"offset\":%" PRId64 ",\"timestamp\":", (int)e->partition, e->offset);
    if (e->timestamp >= 0)
      json_cstr(out, fmt_ts(e->timestamp, ts, sizeof ts));
    else
      fputs("null", out);
    fputs(",\"type\":", out);
    json_cstr(out, e->type);
    if (e->type)
      fprintf(out, ",\"version\":%d", e->version);
    else
      fputs(",\"version\":null", out);
    fputs(",\"id\":", out);
    json_cstr(out, e->id);
    fputs(",\"time\":", out);
    json_cstr(out, e->time);
    fputs(",\"outcome\":", out);
    json_cstr(out, outcome_name(e->outcome));
    fputs(",\"reason\":", out);
    json_cstr(out, e->reason);
    fputs(",\"error\":", out);
    json_cstr(out, e->error);
    fputs(",\"changes\":[", out);
    for (size_t j = 0; j < e->n_changes; j++) {
      const esr_history_change *c = &e->changes[j];
      fputs(j ? ",{\"table\":" : "{\"table\":", out);
      json_cstr(out, c->table);
      fputs(",\"op\":", out);
      json_cstr(out, op_name(c->op));
      fputs(",\"pk\":", out);
      json_cols(out, c, 0);
      fputs(",\"before\":", out);
      json_cols(out, c, 1);
      fputs(",\"after\":", out);
      json_cols(out, c, 2);
      fputc('}', out);
    }
    fputs("],\"emits\":[", out);
    for (size_t j = 0; j < e->n_emits; j++) {
      const esr_history_emit *m = &e->emits[j];
      fputs(j ? ",{\"topic\":" : "{\"topic\":", out);
      json_cstr(out, m->topic);
      fputs(",\"key\":", out);
      if (m->key)
        json_str(out, m->key, m->key_len);
      else
        fputs("null", out);
      fputs(",\"value\":", out);
      if (m->value)
        json_str(out, m->value, m->value_len);
      else
        fputs("null", out);
      fputc('}', out);
    }
    fputs("]}\n", out);
  }
  fflush(out);
  return ferror(out) ? -1 : 0;
}

/* ------------------------------------------------------------------------------------------------ HTML */

static void html_text(FILE *out, const char *s, size_t n) { esr_write_html(out, s, n); }

static void html_cstr(FILE *out, const char *s) { html_text(out, s, strlen(s)); }

static void html_value(FILE *out, const sqlite3_value *v) {
  char buf[4096];
  html_cstr(out, lit(v, buf, sizeof buf));
}

static void put_pk(FILE *out, const esr_history_change *c, int html) {
  char buf[1024];
  int first = 1;
  for (int i = 0; i < c->n_cols; i++) {
    if (!c->pk[i]) continue;
    const sqlite3_value *v = c->before[i] ? c->before[i] : c->after[i];
    fputs(first ? "" : ", ", out);
    first = 0;
    if (html) {
      html_cstr(out, c->cols[i]);
      fputs(" = ", out);
      html_value(out, v);
    } else {
      put_cstr(out, c->cols[i]);
      fprintf(out, "=%s", lit(v, buf, sizeof buf));
    }
  }
  if (first) fputs("(no key)", out);
}

static const char STYLE[] =
    "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f6f7f9;color:#1d2330}"
    "header{background:#1d2330;color:#fff;padding:20px 32px}header h1{margin:0 0 6px;font-size:22px}"
    "header code{background:#39414f;padding:1px 6px;border-radius:4px}.summary{margin:0;color:#c9cfda}"
    "main{padding:16px 32px;max-width:1100px}"
    ".event{background:#fff;border:1px solid #dde1e7;border-left:6px solid #2e8b57;border-radius:6px;margin:0 0 14px;"
    "padding:12px 16px}.event.dead{border-left-color:#c0392b}.event.stopped{border-left-color:#8e44ad}"
    ".event h2{font-size:16px;margin:0 0 4px;display:flex;gap:12px;flex-wrap:wrap;align-items:baseline}"
    ".pos{font-family:ui-monospace,monospace;color:#555}.ts{color:#555;font-weight:normal;font-size:13px}"
    ".badge{font-size:12px;padding:1px 8px;border-radius:10px;background:#e3f3ea;color:#1e6b43}"
    ".dead .badge{background:#fbe4e1;color:#962d22}.stopped .badge{background:#efe3f5;color:#6c3483}"
    ".meta{margin:2px 0;color:#555;font-size:13px}.why{margin:6px 0;color:#962d22}"
    "table.change{border-collapse:collapse;margin:8px 0;font-size:13px;min-width:420px}"
    "table.change caption{text-align:left;font-weight:600;padding:2px 0 4px}"
    "table.change th,table.change td{border:1px solid #dde1e7;padding:3px 8px;text-align:left;"
    "font-family:ui-monospace,monospace}table.change thead th{background:#f0f2f5;font-family:inherit}"
    "tr.key th{color:#555}tr.changed td.after{background:#e3f3ea}tr.changed td.before{background:#fbe4e1}"
    "tr.changed td.absent{background:none;color:#999}"
    ".none{color:#777;font-style:italic;margin:4px 0}.emit{font-size:13px;color:#555}"
    ".empty{padding:24px;background:#fff;border:1px dashed #c4cad4;border-radius:6px}"
    "footer{padding:8px 32px 24px;color:#666;font-size:13px}";

static void html_change(FILE *out, const esr_history_change *c) {
  fputs("<table class=\"change\" data-table=\"", out);
  html_cstr(out, c->table);
  fprintf(out, "\" data-op=\"%s\"><caption>", op_name(c->op));
  html_cstr(out, c->table);
  fprintf(out, " · %s · ", op_name(c->op));
  put_pk(out, c, 1);
  fputs("</caption><thead><tr><th>column</th><th>before</th><th>after</th></tr></thead><tbody>", out);
  for (int i = 0; i < c->n_cols; i++) {
    const sqlite3_value *b = c->before[i], *a = c->after[i];
    if (c->op == SQLITE_UPDATE && !c->pk[i] && !a) continue; /* unchanged */
    int changed = !c->pk[i] || c->op != SQLITE_UPDATE;
    fprintf(out, "<tr class=\"%s\" data-column=\"", changed ? "changed" : "key");
    html_cstr(out, c->cols[i]);
    fputs("\"><th>", out);
    html_cstr(out, c->cols[i]);
    fputs("</th>", out);
    if (c->op == SQLITE_INSERT) {
      fputs("<td class=\"before absent\">—", out);
    } else {
      fputs("<td class=\"before\">", out);
      html_value(out, b);
    }
    fputs("</td>", out);
    if (c->op == SQLITE_DELETE) {
      fputs("<td class=\"after absent\">—", out);
    } else {
      fputs("<td class=\"after\">", out);
      html_value(out, c->op == SQLITE_UPDATE && c->pk[i] && !a ? b : a); /* an unchanged key: its value */
    }
    fputs("</td></tr>", out);
  }
  fputs("</tbody></table>\n", out);
}

int esr_history_write_html(const esr_history *h, FILE *out) {
  char ts[64];
  fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        "<title>History of ",
        out);
  html_text(out, h->key, h->key_len);
  fputs(" — ", out);
  html_cstr(out, h->topic);
  fprintf(out, "</title><style>%s</style></head><body>\n<header><h1>History of <code>", STYLE);
  html_text(out, h->key, h->key_len);
  fputs("</code></h1><p class=\"summary\">topic ", out);
  html_cstr(out, h->topic);
  fputs(" · partitions searched: ", out);
  put_partitions(out, h);
  fprintf(out, " · <span id=\"count\">%zu</span> event(s): %zu applied, %zu dead-lettered · %" PRId64
               " event(s) replayed</p></header>\n<main>\n",
          h->n_events, count_outcome(h, ESR_HISTORY_APPLIED), count_outcome(h, ESR_HISTORY_DEAD), h->replayed);
  if (h->n_events == 0) fputs("<p class=\"empty\">No event carries this key.</p>\n", out);
  for (size_t i = 0; i < h->n_events; i++) {
    const esr_history_event *e = &h->events[i];
    const char *cls = e->outcome == ESR_HISTORY_APPLIED ? "applied" : e->outcome == ESR_HISTORY_DEAD ? "dead" : "stopped";
    fprintf(out,
            "<section class=\"event %s\" id=\"e-%d-%" PRId64 "\" data-partition=\"%d\" data-offset=\"%" PRId64
            "\" data-outcome=\"%s\"><h2><span class=\"pos\">",
            cls, (int)e->partition, e->offset, (int)e->partition, e->offset, cls);
    html_cstr(out, h->topic);
    fprintf(out, "[%d]@%" PRId64 "</span><span class=\"type\">", (int)e->partition, e->offset);
    if (e->type) {
      html_cstr(out, e->type);
      fprintf(out, " v%d", e->version);
    } else {
      fputs("(not an envelope)", out);
    }
    fprintf(out, "</span><span class=\"badge\">%s</span><span class=\"ts\">%s</span></h2>\n", outcome_name(e->outcome),
            fmt_ts(e->timestamp, ts, sizeof ts));
    if (e->id || e->time) {
      fputs("<p class=\"meta\">", out);
      if (e->id) {
        fputs("event id ", out);
        html_cstr(out, e->id);
      }
      if (e->id && e->time) fputs(" · ", out);
      if (e->time) {
        fputs("event time ", out);
        html_cstr(out, e->time);
      }
      fputs("</p>\n", out);
    }
    if (e->reason || e->error) {
      fputs("<p class=\"why\">", out);
      if (e->reason) {
        html_cstr(out, e->reason);
        fputs(": ", out);
      }
      if (e->error) html_cstr(out, e->error);
      fputs("</p>\n", out);
    }
    for (size_t j = 0; j < e->n_changes; j++) html_change(out, &e->changes[j]);
    if (e->n_changes == 0) fputs("<p class=\"none\">No row changed.</p>\n", out);
    for (size_t j = 0; j < e->n_emits; j++) {
      fputs("<p class=\"emit\">emitted to ", out);
      html_cstr(out, e->emits[j].topic);
      if (e->emits[j].key) {
        fputs(" key ", out);
        html_text(out, e->emits[j].key, e->emits[j].key_len);
      }
      fputs("</p>\n", out);
    }
    fputs("</section>\n", out);
  }
  fputs("</main>\n<footer>", out);
  if (h->stopped) {
    fputs("<p>The handler stopped the partition; the timeline ends there: ", out);
    html_cstr(out, h->stopped);
    fputs("</p>", out);
  }
  for (size_t i = 0; i < h->n_untracked; i++) {
    fputs("<p>Table ", out);
    html_cstr(out, h->untracked[i]);
    fputs(" has no primary key: SQLite's session extension does not record its changes.</p>", out);
  }
  for (size_t i = 0; i < h->n_notes; i++) {
    fputs("<p>", out);
    html_cstr(out, h->notes[i]);
    fputs("</p>", out);
  }
  fprintf(out, "<p>Made by esr %s from a replay of the log through the handlers (SQLite session extension).</p>"
               "</footer>\n</body></html>\n",
          ESR_VERSION);
  fflush(out);
  return ferror(out) ? -1 : 0;
}
