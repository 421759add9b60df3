/* esr/schema.h — JSON Schema draft-07 validation of event data: compile a schema once, validate many instances.
 *
 * A schema is compiled from a cJSON document (or a file) into an immutable structure: every subschema, $ref and regular
 * expression is resolved and compiled up front, so that validation never parses, never compiles and, on the success
 * path, never allocates (except uniqueItems on arrays of more than 16 items). A compiled schema is read-only: one
 * instance may be shared by any number of threads validating concurrently; only compile and free need exclusive use.
 * The compiled schema keeps no pointer into the document it came from (the caller still owns and frees it).
 *
 * Supported: the whole draft-07 validation vocabulary (type, enum, const, multipleOf, maximum, exclusiveMaximum,
 * minimum, exclusiveMinimum, maxLength, minLength, pattern, items, additionalItems, maxItems, minItems, uniqueItems,
 * contains, maxProperties, minProperties, required, properties, patternProperties, additionalProperties, dependencies,
 * propertyNames, if/then/else, allOf, anyOf, oneOf, not), boolean schemas, definitions, $ref within the document (JSON
 * pointers with ~0 ~1 and %-escapes, "#", and $id base URIs and "#name" anchors honoured per RFC 3986), and the
 * annotations ($schema draft-07, $comment, title, description, default, examples, readOnly, writeOnly,
 * contentMediaType, contentEncoding), which are accepted and ignored. As draft-07 says, the siblings of $ref are
 * ignored. Lengths count Unicode code points of the UTF-8 text. `pattern` and `patternProperties` are PCRE2 regular
 * expressions (UTF mode, close to ECMA-262: unanchored search, `$` only at the very end, \uXXXX escapes, `[^]`).
 *
 * Refused at compile time (ESR_E_CONFIG; the message names the origin, the keyword and its JSON pointer in the schema):
 * `format` (esr does not check formats, and silently ignoring one would let bad data through), a $ref that resolves
 * outside the document (remote), an unknown keyword (a typo such as "minimun"), a $schema other than draft-07, a
 * malformed keyword value, an invalid regular expression, and a $ref cycle that never descends into the instance (it
 * would loop forever, e.g. {"allOf":[{"$ref":"#"}]}). A member that is not a keyword is accepted only where a $ref
 * points into it (a container of definitions under another name).
 *
 * Validation reports the first failure found, in a fixed order (the keywords of a schema in the order type, enum,
 * const, then those of the instance's type, then allOf, anyOf, oneOf, not, if/then/else; members and items in document
 * order), as one line "<prefix><pointer>: <rule>", e.g. "/data/amount: must be >= 1" or ': must have property "owner"'
 * (the root pointer is empty). Numbers compare by value (1 == 1.0; "integer" means no fractional part). A number that
 * esr_envelope_parse marked NaN (an integral literal a double cannot hold exactly, such as 9007199254740993) fails
 * every numeric keyword and "integer". Bounded work: evaluation nesting deeper than ESR_SCHEMA_MAX_DEPTH, more than
 * ESR_SCHEMA_MAX_STEPS units of work, a regular expression match exceeding ESR_SCHEMA_REGEX_MATCH_LIMIT, or regex work
 * beyond ESR_SCHEMA_REGEX_BUDGET fails the instance (fail closed) instead of exhausting the stack or the CPU; these
 * limits are far above what event data needs. Messages are one line: control characters print as '?'.
 */
#ifndef ESR_SCHEMA_H
#define ESR_SCHEMA_H

#include <stddef.h>

#include "error.h"

typedef struct cJSON cJSON;

#define ESR_SCHEMA_MAX_DEPTH 512              /* nested evaluations: instance depth plus in-place applicators */
#define ESR_SCHEMA_MAX_STEPS 2000000L         /* work per validation: subschemas, values compared, members visited */
#define ESR_SCHEMA_REGEX_FIRST_LIMIT 1000U    /* PCRE2 match limit of a first attempt... */
#define ESR_SCHEMA_REGEX_MATCH_LIMIT 1000000U /* ...and of the retry when the first attempt exceeded it */
#define ESR_SCHEMA_REGEX_BUDGET 200000000UL   /* sum of the match limits granted in one validation */
#define ESR_SCHEMA_MAX_NESTING 256            /* nesting of subschemas inside a schema document */

typedef struct esr_schema esr_schema;

/* Compiles `doc` (borrowed; not kept). `origin` (copied; e.g. the file name) prefixes every compile-time message and is
 * returned by esr_schema_origin. Returns NULL and fills `err` (ESR_E_CONFIG, or ESR_E_NOMEM) on failure. */
esr_schema *esr_schema_compile(const cJSON *doc, const char *origin, esr_error *err);
/* Parses `len` bytes of JSON text (one document, whitespace around it allowed) and compiles it. */
esr_schema *esr_schema_compile_text(const char *text, size_t len, const char *origin, esr_error *err);
/* Reads and compiles the file at `path` (the origin is the path) into *out. On failure *out is NULL and the code is
 * ESR_E_CONFIG (or ESR_E_NOMEM), the message in `err`. */
esr_code esr_schema_load(const char *path, esr_schema **out, esr_error *err);
/* NULL is a no-op. */
void esr_schema_free(esr_schema *schema);
const char *esr_schema_origin(const esr_schema *schema);

/* Validates `instance` (borrowed; a tree from cJSON_Parse or esr_envelope_parse, whose nesting cJSON limits to 1000,
 * as const, enum and uniqueItems compare values recursively). Returns ESR_E_OK when valid; ESR_E_BADINPUT when not,
 * with err->msg set to "<prefix><pointer>: <rule>" (`prefix` may be NULL; the worker passes "/data" when validating an
 * envelope's data); ESR_E_NOMEM when memory ran out. `err` may be NULL; it is left untouched when the instance is
 * valid. Thread-safe on a shared schema. */
esr_code esr_schema_validate(const esr_schema *schema, const cJSON *instance, const char *prefix, esr_error *err);

/* A schema set: every `<type>.v<version>.json` of a directory (type non-empty, version a decimal integer >= 1 without
 * leading zeros, e.g. account.deposited.v1.json), all compiled at load. Other `*.json` names are refused (a misnamed
 * schema must not silently go unused); files not ending in .json and hidden files are ignored. Files load in name
 * order and the first bad one refuses the whole set (ESR_E_CONFIG naming the file). An empty directory is an empty set.
 * A loaded set is read-only and thread-safe like a schema. */
typedef struct esr_schema_set esr_schema_set;

/* Loads the set of `dir` into *out (NULL on failure, with the code returned and the message in `err`). */
esr_code esr_schema_set_load(const char *dir, esr_schema_set **out, esr_error *err);
/* NULL is a no-op. */
void esr_schema_set_free(esr_schema_set *set);
/* The schema of (type, version), borrowed from the set; NULL when there is none. A hash lookup. */
const esr_schema *esr_schema_set_find(const esr_schema_set *set, const char *type, int version);
/* The highest version with a schema for `type`, 0 when it has none (tells "unknown version" from "no schema"). */
int esr_schema_set_latest(const esr_schema_set *set, const char *type);
size_t esr_schema_set_count(const esr_schema_set *set);
/* The i-th schema in (type, version) order, i < count; `type` and `version` are optional outputs (borrowed). */
const esr_schema *esr_schema_set_at(const esr_schema_set *set, size_t i, const char **type, int *version);

#endif
