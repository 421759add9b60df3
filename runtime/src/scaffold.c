/* scaffold.c — `esr handler new NAME`: a handler project that builds against an installed esr and passes its own test
 * as generated (scaffold.h). The files are templates below, with @NAME@ replaced by the handler's name. */
#include "scaffold.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <dirent.h>

static const char CMAKE[] =
    "# @NAME@ — an esr event handler. Build and test against an installed esr:\n"
    "#   cmake -S . -B build -DCMAKE_PREFIX_PATH=<esr's install prefix> && cmake --build build && ctest --test-dir build\n"
    "cmake_minimum_required(VERSION 3.18)\n"
    "project(@NAME@ C)\n"
    "find_package(esr 0.1 REQUIRED)          # esr::handler, esr_add_handler(), ESR_EXECUTABLE\n"
    "esr_add_handler(@NAME@ SOURCES @NAME@.c)  # builds @NAME@.so\n"
    "\n"
    "enable_testing()\n"
    "# The events of tests/events.jsonl through the worker's own path, no Kafka; tests/expected.txt says what must come "
    "out.\n"
    "add_test(NAME @NAME@_events\n"
    "         COMMAND ${ESR_EXECUTABLE} handler test --handler $<TARGET_FILE:@NAME@>\n"
    "                 --schemas ${CMAKE_CURRENT_SOURCE_DIR}/schemas\n"
    "                 --events ${CMAKE_CURRENT_SOURCE_DIR}/tests/events.jsonl\n"
    "                 --expect ${CMAKE_CURRENT_SOURCE_DIR}/tests/expected.txt)\n";

static const char SOURCE[] =
    "/* @NAME@.c — an esr event handler: totals of counted items.\n"
    " *\n"
    " * Event @NAME@.counted v1, data {item, count}, the Kafka key the item: adds count to the item's total. A total\n"
    " * may not exceed LIMIT: such an event is rejected (dead-lettered with reason \"rejected\", state unchanged).\n"
    " * Start from here: rename the event, change the table in migrate() and the rules in apply(). See esr/handler.h\n"
    " * for the contract (determinism, transactions, options, versions).\n"
    " */\n"
    "#include <esr/handler.h>\n"
    "#include <esr/json.h>\n"
    "#include <sqlite3.h>\n"
    "#include <string.h>\n"
    "\n"
    "ESR_HANDLER_DECLARE_ABI;\n"
    "\n"
    "#define LIMIT 100\n"
    "\n"
    "static const esr_host_api *host;\n"
    "\n"
    "static int migrate(esr_ctx *ctx, int from_version) {\n"
    "  if (from_version >= 1) return ESR_OK;\n"
    "  int rc = sqlite3_exec(host->db(ctx),\n"
    "                        \"CREATE TABLE @NAME@_totals(item TEXT PRIMARY KEY, total INTEGER NOT NULL) WITHOUT ROWID\",\n"
    "                        NULL, NULL, NULL);\n"
    "  if (rc != SQLITE_OK) {\n"
    "    host->error(ctx, \"creating @NAME@_totals: %s\", sqlite3_errstr(rc));\n"
    "    return ESR_FATAL;\n"
    "  }\n"
    "  return ESR_OK;\n"
    "}\n"
    "\n"
    "static int apply(esr_ctx *ctx, const esr_event *ev) {\n"
    "  const char *item = esr_json_string(ev->data, \"item\");\n"
    "  int64_t count;\n"
    "  if (!item || !*item || !esr_json_int53(cJSON_GetObjectItemCaseSensitive(ev->data, \"count\"), 1, LIMIT, "
    "&count)) {\n"
    "    host->error(ctx, \"item must be a non-empty string and count an integer in 1..%d\", LIMIT);\n"
    "    return ESR_INVALID;\n"
    "  }\n"
    "  if (!ev->key || ev->key_len != strlen(item) || memcmp(ev->key, item, ev->key_len) != 0) {\n"
    "    host->error(ctx, \"the Kafka key must be the item\");\n"
    "    return ESR_INVALID;\n"
    "  }\n"
    "  sqlite3_stmt *st = host->stmt(ctx, \"INSERT INTO @NAME@_totals(item, total) VALUES (?1, ?2) \"\n"
    "                                     \"ON CONFLICT(item) DO UPDATE SET total = total + excluded.total \"\n"
    "                                     \"WHERE total + excluded.total <= ?3\");\n"
    "  if (!st) return ESR_FATAL;\n"
    "  sqlite3_bind_text(st, 1, item, -1, SQLITE_STATIC);\n"
    "  sqlite3_bind_int64(st, 2, count);\n"
    "  sqlite3_bind_int(st, 3, LIMIT);\n"
    "  if (sqlite3_step(st) != SQLITE_DONE) {\n"
    "    host->error(ctx, \"counting %s: %s\", item, sqlite3_errmsg(host->db(ctx)));\n"
    "    return ESR_FATAL;\n"
    "  }\n"
    "  if (sqlite3_changes(host->db(ctx)) == 0) {\n"
    "    host->error(ctx, \"the total of %s would exceed %d\", item, LIMIT);\n"
    "    return ESR_REJECT;\n"
    "  }\n"
    "  return ESR_OK;\n"
    "}\n"
    "\n"
    "static const esr_event_type TYPES[] = {{\"@NAME@.counted\", 1, 1}, {NULL, 0, 0}};\n"
    "\n"
    "int esr_handler_init(const esr_host_api *h, esr_handler *out) {\n"
    "  static const char *const known[] = {NULL}; /* options: handler.@NAME@.<key> in the worker's configuration */\n"
    "  const char *unknown = esr_handler_unknown_option(out, known);\n"
    "  if (unknown) {\n"
    "    esr_handler_init_error(out, \"unknown option '%s'\", unknown);\n"
    "    return 1;\n"
    "  }\n"
    "  host = h;\n"
    "  out->abi_version = ESR_HANDLER_ABI;\n"
    "  out->name = \"@NAME@\";\n"
    "  out->version = \"0.1.0\";\n"
    "  out->schema_version = 1;\n"
    "  out->types = TYPES;\n"
    "  out->migrate = migrate;\n"
    "  out->apply = apply;\n"
    "  return 0;\n"
    "}\n";

static const char SCHEMA[] =
    "{\n"
    "  \"$schema\": \"http://json-schema.org/draft-07/schema#\",\n"
    "  \"title\": \"@NAME@.counted v1\",\n"
    "  \"type\": \"object\",\n"
    "  \"properties\": {\n"
    "    \"item\": {\"type\": \"string\", \"minLength\": 1, \"description\": \"the item (the Kafka key)\"},\n"
    "    \"count\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 1000}\n"
    "  },\n"
    "  \"required\": [\"item\", \"count\"],\n"
    "  \"additionalProperties\": false\n"
    "}\n";

static const char EVENTS[] =
    "# One message per line: its key, the value as JSON (or \"raw\" text for input that is not JSON), optionally\n"
    "# partition, offset and timestamp. See `esr handler test --help`.\n"
    "{\"key\": \"apple\", \"value\": {\"type\": \"@NAME@.counted\", \"time\": \"2026-01-01T10:00:00Z\", \"data\": "
    "{\"item\": \"apple\", \"count\": 3}}}\n"
    "{\"key\": \"apple\", \"value\": {\"type\": \"@NAME@.counted\", \"time\": \"2026-01-01T10:01:00Z\", \"data\": "
    "{\"item\": \"apple\", \"count\": 4}}}\n"
    "{\"key\": \"pear\", \"value\": {\"type\": \"@NAME@.counted\", \"time\": \"2026-01-01T10:02:00Z\", \"data\": "
    "{\"item\": \"pear\", \"count\": 1}}}\n"
    "{\"key\": \"pear\", \"value\": {\"type\": \"@NAME@.counted\", \"time\": \"2026-01-01T10:03:00Z\", \"data\": "
    "{\"item\": \"pear\", \"count\": 0}}}\n"
    "{\"key\": \"pear\", \"value\": {\"type\": \"@NAME@.counted\", \"time\": \"2026-01-01T10:04:00Z\", \"data\": "
    "{\"item\": \"pear\", \"count\": 100}}}\n"
    "{\"key\": \"pear\", \"raw\": \"{not json\"}\n";

static const char EXPECTED[] =
    "# What tests/events.jsonl must give. Sections are separated by blank lines; see `esr handler test --help`.\n"
    "query: SELECT item, total FROM @NAME@_totals ORDER BY item\n"
    "apple|7\n"
    "pear|1\n"
    "\n"
    "dead letters:\n"
    "3 schema\n"
    "4 rejected\n"
    "5 bad-json\n";

static const char README[] =
    "# @NAME@\n"
    "\n"
    "An esr event handler, made by `esr handler new @NAME@`.\n"
    "\n"
    "```sh\n"
    "cmake -S . -B build -DCMAKE_PREFIX_PATH=/usr/local   # where esr is installed\n"
    "cmake --build build && ctest --test-dir build --output-on-failure\n"
    "```\n"
    "\n"
    "- `@NAME@.c` — the handler; `schemas/` — JSON Schemas of its events' data (`<type>.v<version>.json`).\n"
    "- `tests/events.jsonl` — sample messages; `tests/expected.txt` — the state and dead letters they must give.\n"
    "  `esr handler test` applies them through the worker's own path (twice: a handler that is not deterministic\n"
    "  fails) with no Kafka, and prints a diff when something differs.\n"
    "- Deploy: copy `build/@NAME@.so` and `schemas/` to the workers, and add them to the worker's configuration:\n"
    "  `handlers = /usr/lib/esr/@NAME@.so`, `schemas.dir = /etc/esr/schemas`.\n";

/* Writes `tmpl` with every @NAME@ replaced by `name` into dir/rel. */
static esr_code write_template(const char *dir, const char *rel, const char *tmpl, const char *name, esr_error *err) {
  char path[4300];
  snprintf(path, sizeof path, "%s/%s", dir, rel);
  FILE *f = fopen(path, "w");
  if (!f) return esr_error_set(err, ESR_E_IO, errno, "cannot create %s: %s", path, strerror(errno));
  for (const char *s = tmpl; *s;) {
    const char *at = strstr(s, "@NAME@");
    size_t n = at ? (size_t)(at - s) : strlen(s);
    fwrite(s, 1, n, f);
    if (!at) break;
    fputs(name, f);
    s = at + 6;
  }
  if (fclose(f) != 0) return esr_error_set(err, ESR_E_IO, errno, "cannot write %s: %s", path, strerror(errno));
  return ESR_E_OK;
}

int esr_scaffold_valid_name(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > 64 || !(name[0] >= 'a' && name[0] <= 'z')) return 0;
  for (const char *c = name; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')) return 0;
  return 1;
}

static int empty_or_absent(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT;
  struct dirent *e;
  int empty = 1;
  while (empty && (e = readdir(d)))
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) empty = 0;
  closedir(d);
  return empty;
}

esr_code esr_scaffold_handler(const char *name, const char *dir, esr_error *err) {
  if (!esr_scaffold_valid_name(name))
    return esr_error_set(err, ESR_E_CONFIG, 0,
                         "'%s' is not a handler name: 1..64 characters of [a-z0-9_], starting with a letter", name);
  if (!empty_or_absent(dir))
    return esr_error_set(err, ESR_E_CONFIG, 0, "%s exists and is not empty: choose another --dir", dir);
  char sub[4200];
  snprintf(sub, sizeof sub, "%s", dir); /* and its parents */
  for (char *p = sub + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(sub, 0755) != 0 && errno != EEXIST)
      return esr_error_set(err, ESR_E_IO, errno, "cannot create %s: %s", sub, strerror(errno));
    *p = '/';
  }
  if (mkdir(dir, 0755) != 0 && errno != EEXIST)
    return esr_error_set(err, ESR_E_IO, errno, "cannot create %s: %s", dir, strerror(errno));
  static const char *const dirs[] = {"schemas", "tests"};
  for (int i = 0; i < 2; i++) {
    snprintf(sub, sizeof sub, "%s/%s", dir, dirs[i]);
    if (mkdir(sub, 0755) != 0) return esr_error_set(err, ESR_E_IO, errno, "cannot create %s: %s", sub, strerror(errno));
  }
  char src[128], schema[160];
  snprintf(src, sizeof src, "%s.c", name);
  snprintf(schema, sizeof schema, "schemas/%s.counted.v1.json", name);
  const struct {
    const char *rel, *tmpl;
  } files[] = {{"CMakeLists.txt", CMAKE}, {src, SOURCE},      {schema, SCHEMA},
               {"tests/events.jsonl", EVENTS}, {"tests/expected.txt", EXPECTED}, {"README.md", README}};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    esr_code rc = write_template(dir, files[i].rel, files[i].tmpl, name, err);
    if (rc != ESR_E_OK) return rc;
  }
  return ESR_E_OK;
}
