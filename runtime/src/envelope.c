/* envelope.c — JSON envelope parsing; strict, because whatever is accepted here is replayed forever. */
#include "envelope.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "esr/json.h"

static esr_envelope_result fail(esr_envelope *env, esr_envelope_result r, char *msg, size_t cap, const char *fmt,
                                ...) {
  if (msg && cap) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
  }
  esr_envelope_clear(env);
  return r;
}

esr_envelope_result esr_envelope_refresh(esr_envelope *env, char *msg, size_t cap) {
  cJSON *root = env->root;
  if (!cJSON_IsObject(root))
    return fail(env, ESR_ENVELOPE_BAD_ENVELOPE, msg, cap, "the value is JSON but not an object");
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
  if (!type) return fail(env, ESR_ENVELOPE_BAD_ENVELOPE, msg, cap, "missing \"type\"");
  if (!cJSON_IsString(type) || !type->valuestring[0] || strlen(type->valuestring) > 255)
    return fail(env, ESR_ENVELOPE_BAD_ENVELOPE, msg, cap, "\"type\" must be a non-empty string of at most 255 bytes");
  const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
  int64_t v = 1;
  if (version && !esr_json_int53(version, 1, 2147483647, &v))
    return fail(env, ESR_ENVELOPE_BAD_ENVELOPE, msg, cap, "\"version\" must be an integer >= 1");
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
  if (id && !cJSON_IsString(id)) return fail(env, ESR_ENVELOPE_BAD_ENVELOPE, msg, cap, "\"id\" must be a string");
  const cJSON *time = cJSON_GetObjectItemCaseSensitive(root, "time");
  if (time && !cJSON_IsString(time))
    return fail(env, ESR_ENVELOPE_BAD_ENVELOPE, msg, cap, "\"time\" must be a string");
  cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
  if (!data) return fail(env, ESR_ENVELOPE_BAD_ENVELOPE, msg, cap, "missing \"data\"");
  if (!cJSON_IsObject(data)) return fail(env, ESR_ENVELOPE_BAD_ENVELOPE, msg, cap, "\"data\" must be an object");
  env->type = type->valuestring;
  env->version = (int)v;
  env->id = id ? id->valuestring : NULL;
  env->time = time ? time->valuestring : NULL;
  env->data = data;
  return ESR_ENVELOPE_OK;
}

/* Whether the number literal text[0..len) denotes exactly the integral double d. */
static int literal_is(const char *text, size_t len, double d) {
  char digits[420];
  size_t n = 0, i = 0;
  int exp10 = 0, frac = 0;
  if (i < len && text[i] == '-') i++;
  for (; i < len && text[i] != 'e' && text[i] != 'E'; i++) {
    if (text[i] == '.') {
      frac = 1;
      continue;
    }
    if (n + 1 >= sizeof digits) return 0;
    if (n > 0 || text[i] != '0') digits[n++] = text[i]; /* no leading zeros */
    if (frac) exp10--;                                  /* every fraction digit scales by 1/10 */
  }
  if (i < len) { /* exponent: copied out, the value is not NUL-terminated */
    char ebuf[16];
    size_t elen = len - i - 1;
    if (elen == 0 || elen >= sizeof ebuf) return 0;
    memcpy(ebuf, text + i + 1, elen);
    ebuf[elen] = '\0';
    long e = strtol(ebuf, NULL, 10);
    if (e > 400 || e < -400) return 0;
    exp10 += (int)e;
  }
  /* digits * 10^exp10 must be an integer: trailing digits dropped by a negative exponent must be zeros */
  while (exp10 < 0 && n > 0) {
    if (digits[n - 1] != '0') return 0;
    n--;
    exp10++;
  }
  if (n == 0) return d == 0.0;
  while (exp10 > 0) {
    if (n + 1 >= sizeof digits) return 0;
    digits[n++] = '0';
    exp10--;
  }
  digits[n] = '\0';
  char exact[420];
  snprintf(exact, sizeof exact, "%.0f", fabs(d)); /* glibc prints a double's exact decimal value */
  return strcmp(exact, digits) == 0;
}

/* The strict pass. cJSON parses the structure (brackets, literals, escapes, surrogate pairs) but is lax where RFC 8259
 * is not: it skips every byte <= 0x20 and a UTF-8 byte order mark as whitespace, keeps raw control characters and
 * invalid UTF-8 inside strings, ends a string at \u0000 (so "a\u0000b" arrives as "a"), and reads numbers with strtod
 * (01, -01, 1., 1.e3). One walk over the raw bytes refuses all of that, and on the same walk pairs each number literal
 * with the tree's number nodes (below), so the bytes are read once. */
typedef struct scan {
  const unsigned char *base, *p, *end;
  const unsigned char *bad_at; /* the first fault, or NULL */
  char why[128];
} scan;

/* Bytes that stand for themselves inside a string: 0x20..0x7f but '"' and '\\'. */
static const unsigned char PLAIN[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x00 */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x80 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xa0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xc0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xe0 */
};

/* The first byte from p on that is not PLAIN, or end. Eight bytes at a time where it can: in a word's mask, a byte below
 * 0x20 borrows in x - 0x20, a '"' or '\\' is 0 after its xor and borrows in - 1, a byte from 0x80 up has its high bit
 * already; a borrow can flag bytes above a special one but never below it, so the lowest flag is the first special
 * byte (in a little-endian load). */
static const unsigned char *plain_run(const unsigned char *p, const unsigned char *end) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  const uint64_t ones = 0x0101010101010101u, high = ones * 0x80;
  while (end - p >= 8) {
    uint64_t x;
    memcpy(&x, p, 8);
    uint64_t borrow = (x - ones * 0x20) | ((x ^ ones * '"') - ones) | ((x ^ ones * '\\') - ones);
    uint64_t flags = ((borrow & ~x) | x) & high;
    if (flags) return p + (__builtin_ctzll(flags) >> 3);
    p += 8;
  }
#endif
  while (p < end && PLAIN[*p]) p++;
  return p;
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* Records the first fault (at byte `at`) and ends the walk; returns NULL for the caller's convenience. */
static const unsigned char *scan_bad(scan *sc, const unsigned char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static const unsigned char *scan_bad(scan *sc, const unsigned char *at, const char *fmt, ...) {
  if (!sc->bad_at) {
    sc->bad_at = at;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sc->why, sizeof sc->why, fmt, ap);
    va_end(ap);
  }
  sc->p = sc->end;
  return NULL;
}

/* The 16-bit value of 4 hex digits at p, or -1. */
static long hex4(const unsigned char *p, const unsigned char *end) {
  if (end - p < 4) return -1;
  long v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned char c = p[i];
    int d = is_digit(c) ? c - '0' : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/* The escape at p (a backslash); returns the byte after it. */
static const unsigned char *scan_escape(scan *sc, const unsigned char *p) {
  if (sc->end - p < 2) return scan_bad(sc, p, "a backslash at the end of the text");
  switch (p[1]) {
  case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
    return p + 2;
  case 'u':
    break;
  default:
    return scan_bad(sc, p, "invalid escape \\%c in a string (only \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)",
                    p[1] > 0x20 && p[1] < 0x7f ? p[1] : '?');
  }
  long u = hex4(p + 2, sc->end);
  if (u < 0) return scan_bad(sc, p, "\\u in a string must be followed by 4 hex digits");
  if (u == 0) return scan_bad(sc, p, "\\u0000 in a string: U+0000 is refused (it would cut the string short)");
  if (u >= 0xdc00 && u <= 0xdfff) return scan_bad(sc, p, "a low surrogate \\u%04lx without a high one before it", u);
  if (u < 0xd800 || u > 0xdbff) return p + 6;
  long lo = sc->end - p >= 8 && p[6] == '\\' && p[7] == 'u' ? hex4(p + 8, sc->end) : -1;
  if (lo < 0xdc00 || lo > 0xdfff)
    return scan_bad(sc, p, "a high surrogate \\u%04lx not followed by a low surrogate \\uDC00..\\uDFFF", u);
  return p + 12;
}

/* The UTF-8 sequence at p (a byte >= 0x80 inside a string), checked against RFC 3629's table: no overlong forms, no
 * encoded surrogates, nothing above U+10FFFF, no truncated sequence. Returns the byte after it. */
static const unsigned char *scan_utf8(scan *sc, const unsigned char *p) {
  unsigned char c = p[0], lo = 0x80, hi = 0xbf;
  ptrdiff_t n;
  if (c < 0xc0) return scan_bad(sc, p, "invalid UTF-8 in a string: continuation byte 0x%02x without a lead byte", c);
  if (c < 0xc2) return scan_bad(sc, p, "invalid UTF-8 in a string: overlong encoding (lead byte 0x%02x)", c);
  if (c >= 0xf5) return scan_bad(sc, p, "invalid UTF-8 in a string: byte 0x%02x (above U+10FFFF or never UTF-8)", c);
  if (c < 0xe0) {
    n = 2;
  } else if (c < 0xf0) {
    n = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else {
    n = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  }
  for (ptrdiff_t i = 1; i < n; i++) {
    if (sc->end - p <= i || p[i] < 0x80 || p[i] > 0xbf)
      return scan_bad(sc, p, "invalid UTF-8 in a string: truncated %d-byte sequence (lead byte 0x%02x)", (int)n, c);
  }
  if (p[1] < lo)
    return scan_bad(sc, p, "invalid UTF-8 in a string: overlong encoding (0x%02x 0x%02x)", c, p[1]);
  if (p[1] > hi)
    return scan_bad(sc, p, c == 0xed ? "invalid UTF-8 in a string: encoded surrogate (0x%02x 0x%02x)"
                                     : "invalid UTF-8 in a string: above U+10FFFF (0x%02x 0x%02x)", c, p[1]);
  return p + n;
}

/* The number literal at p (a '-' or a digit), by RFC 8259's grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
 * Returns the byte after it. */
static const unsigned char *scan_number(scan *sc, const unsigned char *p) {
  const unsigned char *q = p, *end = sc->end;
  if (*q == '-') q++;
  if (q == end || !is_digit(*q)) return scan_bad(sc, p, "a '-' not followed by a digit");
  if (*q == '0') {
    if (++q < end && is_digit(*q)) return scan_bad(sc, p, "a number with a leading zero");
  } else {
    while (q < end && is_digit(*q)) q++;
  }
  if (q < end && *q == '.') {
    if (++q == end || !is_digit(*q)) return scan_bad(sc, p, "a number with no digit after its decimal point");
    while (q < end && is_digit(*q)) q++;
  }
  if (q < end && (*q == 'e' || *q == 'E')) {
    if (++q < end && (*q == '+' || *q == '-')) q++;
    if (q == end || !is_digit(*q)) return scan_bad(sc, p, "a number with no digit in its exponent");
    while (q < end && is_digit(*q)) q++;
  }
  return q;
}

/* Checks the bytes up to the next number literal and that literal; 1 with the literal, 0 at the end or at a fault. */
static int next_literal(scan *sc, const char **start, size_t *len) {
  const unsigned char *p = sc->p, *end = sc->end;
  while (p < end) {
    unsigned char c = *p;
    if (c == '"') {
      for (p++;;) {
        p = plain_run(p, end);
        if (p == end) break; /* unterminated: cJSON has refused the text already */
        c = *p;
        if (c == '"') {
          p++;
          break;
        }
        if (c == '\\')
          p = scan_escape(sc, p);
        else if (c < 0x20)
          p = scan_bad(sc, p, "raw control character 0x%02x in a string (it must be escaped)", c);
        else
          p = scan_utf8(sc, p);
        if (!p) return 0;
      }
    } else if (c == '-' || is_digit(c)) {
      const unsigned char *q = scan_number(sc, p);
      if (!q) return 0;
      *start = (const char *)p;
      *len = (size_t)(q - p);
      sc->p = q;
      return 1;
    } else if ((c > 0x20 && c < 0x7f && c != '+' && c != '.') || c == ' ' || c == '\n' || c == '\r' || c == '\t') {
      p++; /* structural characters, the letters of true, false and null (cJSON checked those), whitespace */
    } else if (c == 0xef && p == sc->base && end - p >= 3 && p[1] == 0xbb && p[2] == 0xbf) {
      scan_bad(sc, p, "a UTF-8 byte order mark (RFC 8259: JSON text has none)");
      return 0;
    } else if (c < 0x20) {
      scan_bad(sc, p, "control byte 0x%02x outside a string (whitespace is only space, tab, CR and LF)", c);
      return 0;
    } else if (c == '+' || c == '.') {
      scan_bad(sc, p, "a number must begin with a digit or '-'");
      return 0;
    } else {
      scan_bad(sc, p, "byte 0x%02x outside a string", c);
      return 0;
    }
  }
  sc->p = p;
  return 0;
}

/* cJSON reads every number as a double, so 9007199254740993 arrives as 9007199254740992 and 1.0000000000000001 as 1:
 * an integer reader would be deceived without a trace. Walk the number literals of the raw text in document order
 * (cJSON keeps that order) beside the tree's number nodes, and turn every number whose double is integral but not
 * exactly its literal into NaN, which esr_json_int53 and any careful reader refuse. */
static void mark_inexact(cJSON *node, scan *sc) {
  for (; node; node = node->next) {
    if (cJSON_IsNumber(node)) {
      const char *lit;
      size_t len;
      if (!next_literal(sc, &lit, &len)) return;
      double d = node->valuedouble;
      /* Fast path: short integer literals (<= 15 digits) are always exact. */
      int simple = len <= 15 && !memchr(lit, '.', len) && !memchr(lit, 'e', len) && !memchr(lit, 'E', len);
      if (!simple && isfinite(d) && d == floor(d) && !literal_is(lit, len, d)) {
        node->valuedouble = NAN;
        node->valueint = 0;
      }
    }
    if (node->child) mark_inexact(node->child, sc);
  }
}

/* The walk over text[0..len): the number literals beside the tree, then the bytes after the last one. */
static void scan_text(scan *sc, cJSON *root, const void *text, size_t len) {
  sc->base = sc->p = text;
  sc->end = sc->base + len;
  sc->bad_at = NULL;
  if (root) mark_inexact(root, sc);
  const char *lit;
  size_t n;
  while (next_literal(sc, &lit, &n)) {
  }
}

esr_envelope_result esr_envelope_parse(const void *value, size_t len, esr_envelope *env, char *msg, size_t cap) {
  memset(env, 0, sizeof *env);
  if (!value || len == 0) return fail(env, ESR_ENVELOPE_BAD_JSON, msg, cap, "empty value");
  const char *text = value, *end = NULL;
  scan sc;
  env->root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (!env->root) {
    size_t at = end ? (size_t)(end - text) : 0;
    /* A fault of the strict pass where cJSON stopped, or before, says what is wrong there (a bad escape or number). */
    scan_text(&sc, NULL, text, len);
    if (sc.bad_at && (size_t)(sc.bad_at - sc.base) <= at)
      return fail(env, ESR_ENVELOPE_BAD_JSON, msg, cap, "not valid JSON at byte %zu: %s",
                  (size_t)(sc.bad_at - sc.base), sc.why);
    return fail(env, ESR_ENVELOPE_BAD_JSON, msg, cap, "not valid JSON (at byte %zu of %zu)", at, len);
  }
  scan_text(&sc, env->root, text, (size_t)(end - text));
  if (sc.bad_at)
    return fail(env, ESR_ENVELOPE_BAD_JSON, msg, cap, "not valid JSON at byte %zu: %s", (size_t)(sc.bad_at - sc.base),
                sc.why);
  for (const char *p = end; p < text + len; p++) {
    if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
      return fail(env, ESR_ENVELOPE_BAD_JSON, msg, cap, "not valid JSON: trailing data at byte %zu of %zu",
                  (size_t)(p - text), len);
  }
  return esr_envelope_refresh(env, msg, cap);
}

void esr_envelope_clear(esr_envelope *env) {
  if (!env) return;
  cJSON_Delete(env->root);
  memset(env, 0, sizeof *env);
}
