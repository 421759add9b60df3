/* esrt_json.h — a small strict JSON parser (RFC 8259) for the ledger oracle, written independently of cJSON so that
 * the oracle does not share the runtime's parser. Numbers keep their source text, so that integers are judged exactly
 * (never through a double): 9007199254740994 is 2^53+2, not "about 2^53". Strings are decoded to UTF-8.
 */
#ifndef ESRT_JSON_H
#define ESRT_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef enum esrt_jtype { ESRT_J_NULL, ESRT_J_FALSE, ESRT_J_TRUE, ESRT_J_NUMBER, ESRT_J_STRING, ESRT_J_ARRAY, ESRT_J_OBJECT } esrt_jtype;

typedef struct esrt_jval esrt_jval;
struct esrt_jval {
  esrt_jtype type;
  char *text; /* STRING: decoded bytes (NUL-terminated); NUMBER: the number's source text */
  size_t len;
  esrt_jval *items; /* ARRAY elements / OBJECT member values */
  char **keys;      /* OBJECT member names (decoded, NUL-terminated) */
  size_t *key_lens;
  size_t n;
};

/* Parses exactly one JSON value surrounded by optional whitespace. NULL when the text is not JSON. */
esrt_jval *esrt_json_parse(const char *text, size_t len);
void esrt_json_free(esrt_jval *v);
/* The first member called `name` of an object (NULL when absent or not an object). */
const esrt_jval *esrt_json_get(const esrt_jval *obj, const char *name);
/* 1 when `v` is a number whose exact value is an integer within [lo, hi] (then *out is set), else 0. "1.0" and "1e2"
 * are integers; "1.5" is not. */
int esrt_json_int_in(const esrt_jval *v, int64_t lo, int64_t hi, int64_t *out);

#endif
