/* esrt_json.c — strict recursive-descent JSON parser and exact integer reading for the oracle. */
#include "esrt_json.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 512

typedef struct parser {
  const char *s;
  size_t len, pos;
  int depth;
} parser;

static void skip_ws(parser *p) {
  while (p->pos < p->len) {
    char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

static int parse_value(parser *p, esrt_jval *out);

typedef struct buf {
  char *v;
  size_t n, cap;
} buf;

static int buf_put(buf *b, const void *data, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 32;
    while (cap < b->n + n + 1) cap *= 2;
    char *g = realloc(b->v, cap);
    if (!g) return -1;
    b->v = g;
    b->cap = cap;
  }
  memcpy(b->v + b->n, data, n);
  b->n += n;
  b->v[b->n] = '\0';
  return 0;
}

static int hex4(parser *p, unsigned *out) {
  if (p->pos + 4 > p->len) return -1;
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p->s[p->pos++];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return -1;
  }
  *out = v;
  return 0;
}

static int put_utf8(buf *b, unsigned cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) {
    u[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    u[0] = (char)(0xC0 | (cp >> 6));
    u[1] = (char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | (cp >> 12));
    u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    u[0] = (char)(0xF0 | (cp >> 18));
    u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  return buf_put(b, u, n);
}

/* A string starting at the opening quote; the decoded bytes go to *out (malloc'd). */
static int parse_string(parser *p, char **out, size_t *out_len) {
  if (p->pos >= p->len || p->s[p->pos] != '"') return -1;
  p->pos++;
  buf b = {0};
  if (buf_put(&b, "", 0) != 0) return -1;
  while (p->pos < p->len) {
    unsigned char c = (unsigned char)p->s[p->pos++];
    if (c == '"') {
      *out = b.v;
      *out_len = b.n;
      return 0;
    }
    if (c < 0x20) break; /* control characters must be escaped */
    if (c != '\\') {
      if (buf_put(&b, &c, 1) != 0) break;
      continue;
    }
    if (p->pos >= p->len) break;
    char e = p->s[p->pos++];
    char lit;
    switch (e) {
    case '"': lit = '"'; break;
    case '\\': lit = '\\'; break;
    case '/': lit = '/'; break;
    case 'b': lit = '\b'; break;
    case 'f': lit = '\f'; break;
    case 'n': lit = '\n'; break;
    case 'r': lit = '\r'; break;
    case 't': lit = '\t'; break;
    case 'u': {
      unsigned cp;
      if (hex4(p, &cp) != 0) goto fail;
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        unsigned lo;
        if (p->pos + 2 > p->len || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') goto fail;
        p->pos += 2;
        if (hex4(p, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF) goto fail;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        goto fail;
      }
      if (put_utf8(&b, cp) != 0) goto fail;
      continue;
    }
    default: goto fail;
    }
    if (buf_put(&b, &lit, 1) != 0) break;
  }
fail:
  free(b.v);
  return -1;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int parse_number(parser *p, esrt_jval *out) {
  size_t start = p->pos;
  if (p->pos < p->len && p->s[p->pos] == '-') p->pos++;
  if (p->pos >= p->len) return -1;
  if (p->s[p->pos] == '0') {
    p->pos++;
  } else if (is_digit(p->s[p->pos])) {
    while (p->pos < p->len && is_digit(p->s[p->pos])) p->pos++;
  } else {
    return -1;
  }
  if (p->pos < p->len && p->s[p->pos] == '.') {
    p->pos++;
    if (p->pos >= p->len || !is_digit(p->s[p->pos])) return -1;
    while (p->pos < p->len && is_digit(p->s[p->pos])) p->pos++;
  }
  if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
    p->pos++;
    if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
    if (p->pos >= p->len || !is_digit(p->s[p->pos])) return -1;
    while (p->pos < p->len && is_digit(p->s[p->pos])) p->pos++;
  }
  out->type = ESRT_J_NUMBER;
  out->len = p->pos - start;
  out->text = malloc(out->len + 1);
  if (!out->text) return -1;
  memcpy(out->text, p->s + start, out->len);
  out->text[out->len] = '\0';
  return 0;
}

static int literal(parser *p, const char *word) {
  size_t n = strlen(word);
  if (p->pos + n > p->len || memcmp(p->s + p->pos, word, n) != 0) return -1;
  p->pos += n;
  return 0;
}

static void free_contents(esrt_jval *v) {
  free(v->text);
  for (size_t i = 0; i < v->n; i++) {
    free_contents(&v->items[i]);
    if (v->keys) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  free(v->key_lens);
  memset(v, 0, sizeof *v);
}

static int grow(esrt_jval *v, size_t *cap, int object) {
  if (v->n < *cap) return 0;
  size_t c = *cap ? *cap * 2 : 4;
  esrt_jval *items = realloc(v->items, c * sizeof *items);
  if (!items) return -1;
  v->items = items;
  if (object) {
    char **keys = realloc(v->keys, c * sizeof *keys);
    if (!keys) return -1;
    v->keys = keys;
    size_t *lens = realloc(v->key_lens, c * sizeof *lens);
    if (!lens) return -1;
    v->key_lens = lens;
  }
  *cap = c;
  return 0;
}

static int parse_container(parser *p, esrt_jval *out, int object) {
  char close = object ? '}' : ']';
  out->type = object ? ESRT_J_OBJECT : ESRT_J_ARRAY;
  p->pos++; /* the opening bracket */
  if (++p->depth > MAX_DEPTH) return -1;
  size_t cap = 0;
  skip_ws(p);
  if (p->pos < p->len && p->s[p->pos] == close) {
    p->pos++;
    p->depth--;
    return 0;
  }
  for (;;) {
    if (grow(out, &cap, object) != 0) return -1;
    esrt_jval *item = &out->items[out->n];
    memset(item, 0, sizeof *item);
    if (object) {
      skip_ws(p);
      char *key;
      size_t key_len;
      if (parse_string(p, &key, &key_len) != 0) return -1;
      out->keys[out->n] = key;
      out->key_lens[out->n] = key_len;
      skip_ws(p);
      if (p->pos >= p->len || p->s[p->pos] != ':') {
        out->n++; /* so that the key is freed */
        return -1;
      }
      p->pos++;
    }
    out->n++;
    if (parse_value(p, item) != 0) return -1;
    skip_ws(p);
    if (p->pos >= p->len) return -1;
    char c = p->s[p->pos++];
    if (c == close) break;
    if (c != ',') return -1;
  }
  p->depth--;
  return 0;
}

static int parse_value(parser *p, esrt_jval *out) {
  skip_ws(p);
  if (p->pos >= p->len) return -1;
  char c = p->s[p->pos];
  switch (c) {
  case '{': return parse_container(p, out, 1);
  case '[': return parse_container(p, out, 0);
  case '"':
    out->type = ESRT_J_STRING;
    return parse_string(p, &out->text, &out->len);
  case 't': out->type = ESRT_J_TRUE; return literal(p, "true");
  case 'f': out->type = ESRT_J_FALSE; return literal(p, "false");
  case 'n': out->type = ESRT_J_NULL; return literal(p, "null");
  default: return parse_number(p, out);
  }
}

esrt_jval *esrt_json_parse(const char *text, size_t len) {
  if (!text) return NULL;
  parser p = {text, len, 0, 0};
  esrt_jval *v = calloc(1, sizeof *v);
  if (!v) return NULL;
  if (parse_value(&p, v) != 0) goto fail;
  skip_ws(&p);
  if (p.pos != p.len) goto fail;
  return v;
fail:
  esrt_json_free(v);
  return NULL;
}

void esrt_json_free(esrt_jval *v) {
  if (!v) return;
  free_contents(v);
  free(v);
}

const esrt_jval *esrt_json_get(const esrt_jval *obj, const char *name) {
  if (!obj || obj->type != ESRT_J_OBJECT) return NULL;
  size_t n = strlen(name);
  for (size_t i = 0; i < obj->n; i++)
    if (obj->key_lens[i] == n && memcmp(obj->keys[i], name, n) == 0) return &obj->items[i];
  return NULL;
}

int esrt_json_int_in(const esrt_jval *v, int64_t lo, int64_t hi, int64_t *out) {
  if (!v || v->type != ESRT_J_NUMBER) return 0;
  const char *s = v->text;
  int neg = 0;
  if (*s == '-') {
    neg = 1;
    s++;
  }
  /* digits of the mantissa (integer and fraction parts together) and the decimal exponent applied to them */
  char digits[128];
  size_t nd = 0;
  long exp10 = 0;
  int too_long = 0;
  for (; is_digit(*s); s++) {
    if (nd < sizeof digits) digits[nd++] = *s;
    else { too_long = 1; exp10++; }
  }
  if (*s == '.') {
    for (s++; is_digit(*s); s++) {
      if (nd < sizeof digits) {
        digits[nd++] = *s;
        exp10--;
      } else if (*s != '0') {
        return 0; /* a non-zero digit this far right: not an integer we could hold anyway */
      }
    }
  }
  (void)too_long;
  if (*s == 'e' || *s == 'E') {
    s++;
    int eneg = 0;
    if (*s == '+' || *s == '-') eneg = *s++ == '-';
    long e = 0;
    for (; is_digit(*s); s++)
      if (e < 100000) e = e * 10 + (*s - '0');
    exp10 += eneg ? -e : e;
  }
  /* strip leading zeros */
  size_t first = 0;
  while (first < nd && digits[first] == '0') first++;
  const char *d = digits + first;
  size_t n = nd - first;
  /* strip trailing zeros into the exponent */
  while (n > 0 && d[n - 1] == '0') {
    n--;
    exp10++;
  }
  uint64_t mag = 0;
  if (n > 0) {
    if (exp10 < 0) return 0;              /* a fraction remains */
    if ((long)n + exp10 > 19) return 0;   /* beyond 10^19: out of any int64 range */
    for (size_t i = 0; i < n; i++) mag = mag * 10 + (uint64_t)(d[i] - '0');
    for (long i = 0; i < exp10; i++) {
      if (mag > UINT64_MAX / 10) return 0;
      mag *= 10;
    }
  }
  if (mag > (uint64_t)INT64_MAX) return 0;
  int64_t val = neg ? -(int64_t)mag : (int64_t)mag;
  if (val < lo || val > hi) return 0;
  *out = val;
  return 1;
}
