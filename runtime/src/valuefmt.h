/* esr/valuefmt.h — SQLite values and byte strings written out for people and tools: an SQL literal, JSON, HTML, a
 * terminal. Shared by the audit outputs (history_render.c, query.c).
 *
 * A value is read once into an esr_cell (type and bytes, borrowed from the value or statement it came from, valid
 * until that value or statement changes), then written by the formatter of the output. Every formatter escapes what
 * its output needs, whatever the bytes: control characters for a terminal, quotes and invalid UTF-8 for JSON (JSON
 * text must be UTF-8: an invalid byte becomes U+FFFD), markup for HTML. Integers stay exact (never through a double).
 */
#ifndef ESR_VALUEFMT_H
#define ESR_VALUEFMT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct sqlite3_value sqlite3_value;
typedef struct sqlite3_stmt sqlite3_stmt;

typedef struct esr_cell {
  int type; /* SQLITE_NULL, SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT, SQLITE_BLOB */
  int64_t i;
  double r;
  const unsigned char *p; /* TEXT, BLOB */
  size_t n;
} esr_cell;

/* NULL v: an SQL NULL. */
esr_cell esr_cell_of_value(const sqlite3_value *v);
esr_cell esr_cell_of_column(sqlite3_stmt *st, int col);

/* The length of the valid UTF-8 sequence at p (n bytes available), or 0 when none starts there. */
size_t esr_utf8_len(const unsigned char *p, size_t n);
/* Code points of the valid UTF-8 in p, each invalid byte counting as one: a display width for aligning columns. */
size_t esr_utf8_width(const unsigned char *p, size_t n);

/* An SQL literal: NULL, 42, 1.5, 'text' (quotes doubled, control characters as \xNN), X'0A1B'. Cut with "..." when
 * it does not fit in cap bytes; returns buf. */
const char *esr_cell_sql(const esr_cell *c, char *buf, size_t cap);
/* A cell's plain text: NULL as "NULL", text as it is (control characters as \xNN), blob as X'..'; for aligned text. */
const char *esr_cell_plain(const esr_cell *c, char *buf, size_t cap);

/* Bytes for a terminal: valid UTF-8 as it is, control characters and invalid bytes as \xNN. */
void esr_write_text(FILE *out, const void *s, size_t n);
/* A JSON string (quotes included). */
void esr_write_json_string(FILE *out, const void *s, size_t n);
/* A JSON value: null, an exact integer, a number (null when not finite), a string, or {"hex":"..."} for a blob. */
void esr_write_json_cell(FILE *out, const esr_cell *c);
/* Text escaped for HTML content and attribute values. */
void esr_write_html(FILE *out, const void *s, size_t n);

#endif
