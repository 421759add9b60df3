/* schema_int.h — the compiled form of a JSON Schema, shared by schema_compile.c (which builds it), schema_validate.c
 * (which reads it) and schema_set.c. Not a public header: nothing outside runtime/src includes it.
 *
 * A compiled schema is an array of nodes, one per subschema of the document (node 0 is the root); a subschema refers to
 * another by its index, so $ref cycles (a recursive tree schema) are plain back-references and nothing is copied. After
 * esr_schema_compile returns, nothing in it is ever written again: that is what makes sharing across threads safe.
 */
#ifndef ESR_SCHEMA_INT_H
#define ESR_SCHEMA_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "schema.h"

#define SX_NONE (-1) /* no subschema */

enum sx_kind { SX_OBJECT = 0, SX_TRUE, SX_FALSE };

/* type bits; an integral number has both SX_T_NUMBER and SX_T_INTEGER */
enum {
  SX_T_NULL = 1 << 0,
  SX_T_BOOLEAN = 1 << 1,
  SX_T_OBJECT = 1 << 2,
  SX_T_ARRAY = 1 << 3,
  SX_T_NUMBER = 1 << 4,
  SX_T_STRING = 1 << 5,
  SX_T_INTEGER = 1 << 6,
};

/* presence flags */
enum {
  SX_F_MINIMUM = 1u << 0,
  SX_F_MAXIMUM = 1u << 1,
  SX_F_XMINIMUM = 1u << 2,
  SX_F_XMAXIMUM = 1u << 3,
  SX_F_MULTIPLE = 1u << 4,
  SX_F_NUMERIC = SX_F_MINIMUM | SX_F_MAXIMUM | SX_F_XMINIMUM | SX_F_XMAXIMUM | SX_F_MULTIPLE,
  SX_F_STRING = 1u << 5, /* minLength, maxLength or pattern */
  SX_F_ARRAY = 1u << 6,  /* any array keyword */
  SX_F_OBJECT = 1u << 7, /* any object keyword */
  SX_F_UNIQUE = 1u << 8, /* uniqueItems: true */
  SX_F_TUPLE = 1u << 9,  /* items is an array of schemas */
  SX_F_CONST = 1u << 10,
  SX_F_ENUM = 1u << 11,
  SX_F_LOGIC = 1u << 12, /* allOf, anyOf, oneOf, not or if */
};

typedef struct sx_list {
  int32_t *v;
  uint32_t n;
} sx_list;

typedef struct sx_regex {
  pcre2_code *code;
  char *source; /* for messages */
} sx_regex;

typedef struct sx_prop {
  char *name;
  int32_t schema;
} sx_prop;

typedef struct sx_pattern_prop {
  sx_regex re;
  int32_t schema;
} sx_pattern_prop;

typedef struct sx_dep {
  char *name;
  int32_t schema; /* schema form, or SX_NONE for the array form */
  char **names;
  uint32_t n_names;
} sx_dep;

typedef struct sx_node {
  uint8_t kind;
  uint8_t types; /* 0: no type keyword */
  uint32_t flags;
  int32_t ref; /* $ref target, SX_NONE when this node is not a reference (siblings are then ignored) */
  double minimum, maximum, xminimum, xmaximum, multiple_of;
  size_t min_length, max_length; /* 0 and SIZE_MAX when absent */
  sx_regex pattern;              /* code NULL when absent */
  int32_t items;                 /* schema form */
  sx_list tuple;                 /* array form (SX_F_TUPLE) */
  int32_t additional_items, contains;
  size_t min_items, max_items, min_props, max_props;
  sx_prop *props; /* sorted by name (strcmp) */
  uint32_t n_props;
  sx_pattern_prop *pattern_props;
  uint32_t n_pattern_props;
  int32_t additional_props, property_names;
  char **required;
  uint32_t n_required;
  sx_dep *deps;
  uint32_t n_deps;
  sx_list all_of, any_of, one_of;
  int32_t not_, if_, then_, else_;
  cJSON *constant;              /* const, owned copy */
  cJSON *enumeration;           /* enum array, owned copy */
  char *enum_rule, *const_rule; /* failure texts, computed at compile time */
} sx_node;

struct esr_schema {
  char *origin;
  sx_node *nodes;
  uint32_t n_nodes;
};

/* Deep equality of JSON values as JSON Schema defines it (numbers by value, objects regardless of member order).
 * Adds the number of comparisons made to *work (for the validation's work budget). */
int esr__schema_json_equal(const cJSON *a, const cJSON *b, long *work);
/* Shortest text that reads back as `d` ("0.0001", not "0.00010000000000000000479"). */
void esr__schema_format_number(double d, char *buf, size_t cap);

#endif
