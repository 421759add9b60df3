/* valuefmt.c — SQLite values and byte strings as SQL literals, JSON, HTML and terminal text (valuefmt.h). */
#include "valuefmt.h"

#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

esr_cell esr_cell_of_value(const sqlite3_value *cv) {
  sqlite3_value *v = (sqlite3_value *)cv; /* SQLite's accessors take a non-const pointer; reading changes nothing */
  esr_cell c = {.type = v ? sqlite3_value_type(v) : SQLITE_NULL};
  switch (c.type) {
  case SQLITE_INTEGER: c.i = sqlite3_value_int64(v); break;
  case SQLITE_FLOAT: c.r = sqlite3_value_double(v); break;
  case SQLITE_TEXT:
    c.p = sqlite3_value_text(v);
    c.n = (size_t)sqlite3_value_bytes(v);
    break;
  case SQLITE_BLOB:
    c.p = sqlite3_value_blob(v);
    c.n = (size_t)sqlite3_value_bytes(v);
    break;
  }
  return c;
}

esr_cell esr_cell_of_column(sqlite3_stmt *st, int col) {
  esr_cell c = {.type = sqlite3_column_type(st, col)};
  switch (c.type) {
  case SQLITE_INTEGER: c.i = sqlite3_column_int64(st, col); break;
  case SQLITE_FLOAT: c.r = sqlite3_column_double(st, col); break;
  case SQLITE_TEXT:
    c.p = sqlite3_column_text(st, col);
    c.n = (size_t)sqlite3_column_bytes(st, col);
    break;
  case SQLITE_BLOB:
    c.p = sqlite3_column_blob(st, col);
    c.n = (size_t)sqlite3_column_bytes(st, col);
    break;
  }
  return c;
}

size_t esr_utf8_len(const unsigned char *p, size_t n) {
  unsigned c = p[0], min;
  size_t len;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf)
    len = 2, min = 0x80;
  else if (c >= 0xe0 && c <= 0xef)
    len = 3, min = 0x800;
  else if (c >= 0xf0 && c <= 0xf4)
    len = 4, min = 0x10000;
  else
    return 0;
  if (len > n) return 0;
  unsigned cp = c & (0x7fu >> len);
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

size_t esr_utf8_width(const unsigned char *p, size_t n) {
  size_t w = 0;
  for (size_t i = 0; i < n; w++) {
    size_t l = esr_utf8_len(p + i, n - i);
    i += l ? l : 1;
  }
  return w;
}

/* The shortest of %.15g, %.16g, %.17g that reads back as the same double: 0.1 stays "0.1", nothing is lost. */
static void fmt_real(double r, char *buf, size_t cap) {
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, cap, "%.*g", prec, r);
    if (strtod(buf, NULL) == r) return;
  }
}

typedef struct sbuf {
  char *p;
  size_t n, cap;
  int cut;
} sbuf;

static void sb_put(sbuf *b, const void *s, size_t n) {
  if (b->cut) return;
  if (b->n + n + 4 > b->cap) { /* keep room for "..." and the NUL */
    size_t room = b->cap - 4 - b->n;
    if (room > n) room = n;
    /* Never cut inside a UTF-8 sequence. */
    while (room > 0 && (((const unsigned char *)s)[room] & 0xc0) == 0x80) room--;
    memcpy(b->p + b->n, s, room);
    b->n += room;
    memcpy(b->p + b->n, "...", 4);
    b->n += 3;
    b->cut = 1;
    return;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

/* Text with control characters as \xNN (and quotes doubled when quote is set). */
static void sb_text(sbuf *b, const unsigned char *s, size_t n, int quote) {
  char tmp[8];
  for (size_t i = 0; i < n && !b->cut;) {
    if (quote && s[i] == '\'') {
      sb_put(b, "''", 2);
      i++;
    } else if (s[i] < 0x20 || s[i] == 0x7f) {
      snprintf(tmp, sizeof tmp, "\\x%02x", s[i]);
      sb_put(b, tmp, 4);
      i++;
    } else {
      size_t l = esr_utf8_len(s + i, n - i);
      if (l == 0) {
        snprintf(tmp, sizeof tmp, "\\x%02x", s[i]);
        sb_put(b, tmp, 4);
        l = 1;
      } else {
        sb_put(b, s + i, l);
      }
      i += l;
    }
  }
}

static const char *cell_fmt(const esr_cell *c, char *buf, size_t cap, int sql) {
  if (cap < 8) {
    if (cap) buf[0] = '\0';
    return buf;
  }
  sbuf b = {buf, 0, cap, 0};
  buf[0] = '\0';
  char tmp[64];
  switch (c->type) {
  case SQLITE_INTEGER:
    snprintf(tmp, sizeof tmp, "%lld", (long long)c->i);
    sb_put(&b, tmp, strlen(tmp));
    break;
  case SQLITE_FLOAT:
    fmt_real(c->r, tmp, sizeof tmp);
    sb_put(&b, tmp, strlen(tmp));
    break;
  case SQLITE_TEXT:
    if (sql) sb_put(&b, "'", 1);
    sb_text(&b, c->p, c->n, sql);
    if (sql) sb_put(&b, "'", 1);
    break;
  case SQLITE_BLOB:
    sb_put(&b, "X'", 2);
    for (size_t i = 0; i < c->n && !b.cut; i++) {
      snprintf(tmp, sizeof tmp, "%02X", c->p[i]);
      sb_put(&b, tmp, 2);
    }
    sb_put(&b, "'", 1);
    break;
  default: sb_put(&b, "NULL", 4);
  }
  return buf;
}

const char *esr_cell_sql(const esr_cell *c, char *buf, size_t cap) { return cell_fmt(c, buf, cap, 1); }
const char *esr_cell_plain(const esr_cell *c, char *buf, size_t cap) { return cell_fmt(c, buf, cap, 0); }

void esr_write_text(FILE *out, const void *s, size_t n) {
  const unsigned char *p = s;
  for (size_t i = 0; i < n;) {
    size_t l = p[i] >= 0x20 && p[i] != 0x7f ? esr_utf8_len(p + i, n - i) : 0;
    if (l == 0) {
      fprintf(out, "\\x%02x", p[i]);
      i++;
    } else {
      fwrite(p + i, 1, l, out);
      i += l;
    }
  }
}

void esr_write_json_string(FILE *out, const void *s, size_t n) {
  const unsigned char *p = s;
  fputc('"', out);
  for (size_t i = 0; i < n;) {
    unsigned c = p[i];
    if (c == '"' || c == '\\') {
      fputc('\\', out);
      fputc((int)c, out);
      i++;
    } else if (c < 0x20) {
      switch (c) {
      case '\n': fputs("\\n", out); break;
      case '\r': fputs("\\r", out); break;
      case '\t': fputs("\\t", out); break;
      default: fprintf(out, "\\u%04x", c);
      }
      i++;
    } else {
      size_t l = esr_utf8_len(p + i, n - i);
      if (l == 0) {
        fputs("\\ufffd", out);
        l = 1;
      } else {
        fwrite(p + i, 1, l, out);
      }
      i += l;
    }
  }
  fputc('"', out);
}

void esr_write_json_cell(FILE *out, const esr_cell *c) {
  switch (c->type) {
  case SQLITE_INTEGER: fprintf(out, "%lld", (long long)c->i); break;
  case SQLITE_FLOAT:
    if (isfinite(c->r)) {
      char tmp[64];
      fmt_real(c->r, tmp, sizeof tmp);
      fputs(tmp, out);
    } else
      fputs("null", out);
    break;
  case SQLITE_TEXT: esr_write_json_string(out, c->p, c->n); break;
  case SQLITE_BLOB:
    fputs("{\"hex\":\"", out);
    for (size_t i = 0; i < c->n; i++) fprintf(out, "%02x", c->p[i]);
    fputs("\"}", out);
    break;
  default: fputs("null", out);
  }
}

void esr_write_html(FILE *out, const void *s, size_t n) {
  const unsigned char *p = s;
  for (size_t i = 0; i < n;) {
    unsigned c = p[i];
    size_t l = 1;
    switch (c) {
    case '&': fputs("&amp;", out); break;
    case '<': fputs("&lt;", out); break;
    case '>': fputs("&gt;", out); break;
    case '"': fputs("&quot;", out); break;
    case '\'': fputs("&#39;", out); break;
    default:
      if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
        fprintf(out, "\\x%02x", c);
      } else if ((l = esr_utf8_len(p + i, n - i)) == 0) {
        fputs("&#xfffd;", out);
        l = 1;
      } else {
        fwrite(p + i, 1, l, out);
      }
    }
    i += l;
  }
}
