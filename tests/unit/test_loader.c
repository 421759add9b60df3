/* test_loader.c — esr/loader.h (a good plugin loads; each broken plugin is refused with a message naming the file and
 * the reason, without running a plugin of another ABI) and esr/registry.h (routing by exact and prefix claims, unknown
 * types and versions, duplicate claims and names refused). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "host.h"
#include "loader.h"
#include "registry.h"
#include "unit_util.h"

#define PLUGIN(name) ESR_TEST_PLUGIN_DIR "/" name ".so"
#define LEDGER ESR_BUILD_DIR "/handlers/ledger.so"
#define INIT_MARK "ESR_TEST_PLUGIN_INIT_CALLED"

/* Loads `path`, expects ESR_E_PLUGIN with a message naming the file and containing `reason`. */
static void expect_refused(const char *path, const char *reason) {
  esr_error err = {0};
  esr_plugin *p = esr_plugin_load(path, esr_host_api_table(), NULL, &err);
  if (p) {
    esr_plugin_free(p);
    fail_msg("%s was loaded", path);
  }
  assert_int_equal(err.code, ESR_E_PLUGIN);
  assert_contains(err.msg, path);
  assert_contains(err.msg, reason);
  assert_null(strchr(err.msg, '\n'));
}

static void good_plugin_loads(void **state) {
  esr_error err = {0};
  esr_plugin *p = esr_plugin_load(PLUGIN("good"), esr_host_api_table(), NULL, &err);
  if (!p) fail_msg("%s", err.msg);
  assert_string_equal(p->path, PLUGIN("good"));
  assert_non_null(p->dl);
  const esr_handler *h = &p->handler;
  assert_string_equal(h->name, "good");
  assert_string_equal(h->version, "1.2.3");
  assert_int_equal(h->schema_version, 1);
  assert_int_equal(h->struct_size, sizeof(esr_handler));
  assert_int_equal(ESR_HANDLER_ABI_MAJOR_OF(h->abi_version), ESR_HANDLER_ABI_MAJOR);
  assert_string_equal(h->types[0].type, "test.*");
  assert_int_equal(h->types[0].min_version, 1);
  assert_int_equal(h->types[0].max_version, 1);
  assert_string_equal(h->types[1].type, "testup.event");
  assert_int_equal(h->types[1].max_version, 2);
  assert_null(h->types[2].type);
  assert_non_null(h->apply);
  assert_non_null(h->migrate);
  assert_non_null(h->upcast);
  assert_non_null(h->user);
  esr_plugin_free(p);
  esr_plugin_free(NULL);
}

static void ledger_plugin_loads(void **state) {
  esr_error err = {0};
  esr_plugin *p = esr_plugin_load(LEDGER, esr_host_api_table(), NULL, &err);
  if (!p) fail_msg("%s", err.msg);
  assert_string_equal(p->handler.name, "ledger");
  esr_plugin_free(p);
}

static void same_plugin_twice(void **state) {
  esr_error err = {0};
  esr_plugin *a = esr_plugin_load(PLUGIN("good"), esr_host_api_table(), NULL, &err);
  esr_plugin *b = esr_plugin_load(PLUGIN("good"), esr_host_api_table(), NULL, &err);
  assert_non_null(a);
  assert_non_null(b);
  assert_ptr_not_equal(a, b);
  esr_plugin_free(a);
  assert_string_equal(b->handler.name, "good"); /* still loaded: dlopen counts references */
  esr_plugin_free(b);
}

static void noentry_refused(void **state) {
  expect_refused(PLUGIN("noentry"), "no entry point esr_handler_init");
}

static void badabi_refused_naming_versions_without_running_it(void **state) {
  unsetenv(INIT_MARK);
  expect_refused(PLUGIN("badabi"), "ABI");
  esr_error err = {0};
  assert_null(esr_plugin_load(PLUGIN("badabi"), esr_host_api_table(), NULL, &err));
  assert_contains(err.msg, "2.3"); /* the plugin's version */
  assert_contains(err.msg, "1.");  /* the host's */
  if (getenv(INIT_MARK)) fail_msg("the loader called esr_handler_init of a plugin built for ABI 2");
}

static void noabi_refused_without_running_it(void **state) {
  unsetenv(INIT_MARK);
  expect_refused(PLUGIN("noabi"), "esr_handler_abi");
  if (getenv(INIT_MARK)) fail_msg("the loader called esr_handler_init of a plugin that declares no ABI");
}

static void initfail_refused_with_its_reason(void **state) {
  expect_refused(PLUGIN("initfail"), "esr_handler_init refused: refused on purpose: its reference data is missing");
}

static void newer_minor_refused_naming_versions_without_running_it(void **state) {
  unsetenv(INIT_MARK);
  esr_error err = {0};
  expect_refused(PLUGIN("newminor"), "built for handler ABI 1.9, newer than this esr's 1.1");
  if (getenv(INIT_MARK)) fail_msg("the loader called esr_handler_init of a plugin of a newer minor version");
  (void)err;
}

static void abi10_plugin_still_loads_and_is_read_as_1_0(void **state) {
  esr_error err = {0};
  esr_plugin *p = esr_plugin_load(PLUGIN("abi10"), esr_host_api_table(), NULL, &err);
  if (!p) fail_msg("%s", err.msg);
  assert_string_equal(p->handler.name, "abi10");
  assert_int_equal(ESR_HANDLER_ABI_MINOR_OF(p->handler.abi_version), 0);
  /* The host reads it as far as a 1.0 plugin knows the struct: none of the 1.1 members. */
  assert_false(ESR_HANDLER_HAS(&p->handler, options));
  assert_false(ESR_HANDLER_HAS(&p->handler, init_error));
  assert_true(ESR_HANDLER_HAS(&p->handler, fini));
  esr_plugin_free(p);
}

static void own_sqlite_refused_naming_the_library(void **state) {
  unsetenv(INIT_MARK);
  expect_refused(PLUGIN("ownsqlite"), "its SQLite (libsqlite3) is not the host's");
  esr_error err = {0};
  assert_null(esr_plugin_load(PLUGIN("ownsqlite"), esr_host_api_table(), NULL, &err));
  assert_contains(err.msg, "resolves to the plugin itself");
  assert_contains(err.msg, "libsqlite3.so"); /* the host's */
  if (getenv(INIT_MARK)) fail_msg("the loader called esr_handler_init of a plugin with its own SQLite");
}

static void other_cjson_refused_naming_the_library(void **state) {
  expect_refused(PLUGIN("othercjson"), "its cJSON (libcjson) is not the host's");
  esr_error err = {0};
  assert_null(esr_plugin_load(PLUGIN("othercjson"), esr_host_api_table(), NULL, &err));
  assert_contains(err.msg, "libesrt_othercjson.so");
  assert_contains(err.msg, "libcjson.so.1");
}

static void options_reach_init_and_unknown_ones_are_refused(void **state) {
  esr_error err = {0};
  esr_handler_option opts[] = {{"version", "9.8.7"}, {NULL, NULL}};
  esr_plugin *p = esr_plugin_load(PLUGIN("good"), esr_host_api_table(), opts, &err);
  if (!p) fail_msg("%s", err.msg);
  assert_string_equal(p->handler.version, "9.8.7");
  assert_null(p->handler.options); /* valid during init only: the host keeps no pointer to them */
  esr_plugin_free(p);
  esr_handler_option bad[] = {{"version", "1"}, {"verison", "2"}, {NULL, NULL}};
  assert_null(esr_plugin_load(PLUGIN("good"), esr_host_api_table(), bad, &err));
  assert_int_equal(err.code, ESR_E_PLUGIN);
  assert_contains(err.msg, "unknown option 'verison'");
  /* The ledger knows v1.currency and nothing else. */
  esr_handler_option cur[] = {{"v1.currency", "USD"}, {NULL, NULL}};
  p = esr_plugin_load(LEDGER, esr_host_api_table(), cur, &err);
  if (!p) fail_msg("%s", err.msg);
  esr_plugin_free(p);
  esr_handler_option badcur[] = {{"v1.currency", "usd"}, {NULL, NULL}};
  assert_null(esr_plugin_load(LEDGER, esr_host_api_table(), badcur, &err));
  assert_contains(err.msg, "v1.currency");
  esr_handler_option unknown[] = {{"currency", "USD"}, {NULL, NULL}};
  assert_null(esr_plugin_load(LEDGER, esr_host_api_table(), unknown, &err));
  assert_contains(err.msg, "unknown option 'currency'");
}

static void registry_hands_each_plugin_its_options(void **state) {
  esr_registry r = {0};
  esr_error err = {0};
  char *paths[] = {PLUGIN("good"), LEDGER};
  esr_kv opts[] = {{"good.version", "4.5.6"}, {"ledger.v1.currency", "CHF"}};
  if (esr_registry_load(&r, paths, 2, esr_host_api_table(), opts, 2, &err) != ESR_E_OK) fail_msg("%s", err.msg);
  assert_string_equal(r.plugins[0]->handler.version, "4.5.6");
  esr_registry_clear(&r);
  esr_kv stray[] = {{"goood.version", "1"}};
  assert_int_equal(esr_registry_load(&r, paths, 2, esr_host_api_table(), stray, 1, &err), ESR_E_CONFIG);
  assert_contains(err.msg, "handler.goood.version");
  esr_registry_clear(&r);
  char stem[64];
  esr_plugin_stem("/usr/lib/esr/ledger.so", stem, sizeof stem);
  assert_string_equal(stem, "ledger");
  esr_plugin_stem("orders.sql.yaml", stem, sizeof stem);
  assert_string_equal(stem, "orders.sql");
}

static void noapply_refused(void **state) { expect_refused(PLUGIN("noapply"), "no apply callback"); }

static void nonexistent_path_refused(void **state) {
  expect_refused(ESR_TEST_PLUGIN_DIR "/does-not-exist.so", "cannot load");
}

static void not_a_shared_object_refused(void **state) {
  char *dir = tu_mkdtemp();
  assert_non_null(dir);
  char path[4200];
  snprintf(path, sizeof path, "%s/text.so", dir);
  assert_int_equal(tu_write_text(path, "this is not an ELF file\n"), 0);
  expect_refused(path, "cannot load");
  tu_rmrf(dir);
  free(dir);
}

/* --- registry --- */

/* A plugin made in memory (no shared object): enough for routing. Freed by the registry like a loaded one. */
static esr_plugin *fake(const char *path, const char *name, const esr_event_type *types) {
  esr_plugin *p = calloc(1, sizeof *p);
  assert_non_null(p);
  p->path = strdup(path);
  p->handler.struct_size = sizeof p->handler;
  p->handler.abi_version = ESR_HANDLER_ABI;
  p->handler.name = name;
  p->handler.version = "0";
  p->handler.schema_version = 1;
  p->handler.types = types;
  return p;
}

static void add_ok(esr_registry *r, esr_plugin *p) {
  esr_error err = {0};
  if (esr_registry_add(r, p, &err) != ESR_E_OK) fail_msg("%s", err.msg);
}

static const char *route_name(const esr_registry *r, const char *type, int version, esr_route_result want) {
  esr_route route;
  esr_route_result got = esr_registry_route(r, type, version, &route);
  if (got != want) fail_msg("route %s v%d: result %d, want %d", type, version, got, want);
  if (got == ESR_ROUTE_UNKNOWN_TYPE) {
    assert_null(route.plugin);
    return NULL;
  }
  assert_non_null(route.plugin);
  assert_non_null(route.claim);
  return route.plugin->handler.name;
}

static const esr_event_type X_PREFIX[] = {{"x.*", 1, 1}, {NULL, 0, 0}};
static const esr_event_type X_EXACT[] = {{"x.special", 1, 1}, {NULL, 0, 0}};
static const esr_event_type XY_PREFIX[] = {{"x.y.*", 1, 1}, {NULL, 0, 0}};

static void exact_claim_beats_prefix(void **state) {
  /* in both orders of registration */
  for (int order = 0; order < 2; order++) {
    esr_registry r = {0};
    if (order == 0) {
      add_ok(&r, fake("/p/prefix.so", "prefix", X_PREFIX));
      add_ok(&r, fake("/p/exact.so", "exact", X_EXACT));
    } else {
      add_ok(&r, fake("/p/exact.so", "exact", X_EXACT));
      add_ok(&r, fake("/p/prefix.so", "prefix", X_PREFIX));
    }
    assert_string_equal(route_name(&r, "x.special", 1, ESR_ROUTE_OK), "exact");
    assert_string_equal(route_name(&r, "x.other", 1, ESR_ROUTE_OK), "prefix");
    assert_string_equal(route_name(&r, "x.special.more", 1, ESR_ROUTE_OK), "prefix");
    route_name(&r, "x", 1, ESR_ROUTE_UNKNOWN_TYPE);    /* "x.*" needs the dot */
    route_name(&r, "xx.a", 1, ESR_ROUTE_UNKNOWN_TYPE);
    route_name(&r, "X.other", 1, ESR_ROUTE_UNKNOWN_TYPE); /* case-sensitive */
    esr_registry_clear(&r);
    assert_int_equal(r.n, 0);
    assert_null(r.plugins);
  }
}

static void longer_prefix_beats_shorter(void **state) {
  for (int order = 0; order < 2; order++) {
    esr_registry r = {0};
    if (order == 0) {
      add_ok(&r, fake("/p/x.so", "x", X_PREFIX));
      add_ok(&r, fake("/p/xy.so", "xy", XY_PREFIX));
    } else {
      add_ok(&r, fake("/p/xy.so", "xy", XY_PREFIX));
      add_ok(&r, fake("/p/x.so", "x", X_PREFIX));
    }
    assert_string_equal(route_name(&r, "x.y.z", 1, ESR_ROUTE_OK), "xy");
    assert_string_equal(route_name(&r, "x.y.z.w", 1, ESR_ROUTE_OK), "xy");
    assert_string_equal(route_name(&r, "x.z", 1, ESR_ROUTE_OK), "x");
    assert_string_equal(route_name(&r, "x.y", 1, ESR_ROUTE_OK), "x");
    esr_registry_clear(&r);
  }
}

static void unknown_type_and_version(void **state) {
  static const esr_event_type types[] = {{"order.placed", 2, 3}, {NULL, 0, 0}};
  esr_registry r = {0};
  add_ok(&r, fake("/p/orders.so", "orders", types));
  route_name(&r, "order.shipped", 2, ESR_ROUTE_UNKNOWN_TYPE);
  route_name(&r, "", 1, ESR_ROUTE_UNKNOWN_TYPE);
  assert_string_equal(route_name(&r, "order.placed", 1, ESR_ROUTE_UNKNOWN_VERSION), "orders");
  assert_string_equal(route_name(&r, "order.placed", 4, ESR_ROUTE_UNKNOWN_VERSION), "orders");
  assert_string_equal(route_name(&r, "order.placed", 2, ESR_ROUTE_OK), "orders");
  esr_route route;
  assert_int_equal(esr_registry_route(&r, "order.placed", 3, &route), ESR_ROUTE_OK);
  assert_ptr_equal(route.claim, &types[0]);
  esr_registry_clear(&r);
  /* an empty registry knows nothing */
  route_name(&r, "order.placed", 2, ESR_ROUTE_UNKNOWN_TYPE);
  esr_registry_clear(&r);
}

static void duplicate_claim_refused_naming_both(void **state) {
  static const esr_event_type a_types[] = {{"dup.*", 1, 1}, {NULL, 0, 0}};
  static const esr_event_type b_types[] = {{"other.event", 1, 1}, {"dup.*", 1, 2}, {NULL, 0, 0}};
  esr_registry r = {0};
  add_ok(&r, fake("/p/first.so", "first", a_types));
  esr_error err = {0};
  assert_int_equal(esr_registry_add(&r, fake("/p/second.so", "second", b_types), &err), ESR_E_PLUGIN);
  assert_contains(err.msg, "/p/first.so");
  assert_contains(err.msg, "/p/second.so");
  assert_contains(err.msg, "first");
  assert_contains(err.msg, "second");
  assert_contains(err.msg, "dup.*");
  assert_int_equal(r.n, 1); /* the refused plugin was freed, not added */
  assert_string_equal(route_name(&r, "dup.x", 1, ESR_ROUTE_OK), "first");
  route_name(&r, "other.event", 1, ESR_ROUTE_UNKNOWN_TYPE);
  esr_registry_clear(&r);
}

static void duplicate_name_refused_naming_both(void **state) {
  static const esr_event_type a_types[] = {{"a.*", 1, 1}, {NULL, 0, 0}};
  static const esr_event_type b_types[] = {{"b.*", 1, 1}, {NULL, 0, 0}};
  esr_registry r = {0};
  add_ok(&r, fake("/p/one.so", "same", a_types));
  esr_error err = {0};
  assert_int_equal(esr_registry_add(&r, fake("/p/two.so", "same", b_types), &err), ESR_E_PLUGIN);
  assert_contains(err.msg, "/p/one.so");
  assert_contains(err.msg, "/p/two.so");
  assert_contains(err.msg, "same");
  assert_int_equal(r.n, 1);
  esr_registry_clear(&r);
}

static void registry_load_real_plugins(void **state) {
  esr_registry r = {0};
  esr_error err = {0};
  char *paths[] = {LEDGER, PLUGIN("good")};
  if (esr_registry_load(&r, paths, 2, esr_host_api_table(), NULL, 0, &err) != ESR_E_OK) fail_msg("%s", err.msg);
  assert_int_equal(r.n, 2);
  assert_string_equal(route_name(&r, "account.opened", 1, ESR_ROUTE_OK), "ledger");
  assert_string_equal(route_name(&r, "account.withdrawn", 1, ESR_ROUTE_OK), "ledger");
  route_name(&r, "account.closed", 1, ESR_ROUTE_UNKNOWN_TYPE);
  route_name(&r, "account.opened", 2, ESR_ROUTE_UNKNOWN_VERSION);
  assert_string_equal(route_name(&r, "test.anything", 1, ESR_ROUTE_OK), "good");
  assert_string_equal(route_name(&r, "testup.event", 2, ESR_ROUTE_OK), "good");
  route_name(&r, "testup.event", 3, ESR_ROUTE_UNKNOWN_VERSION);
  esr_registry_clear(&r);

  /* the same plugin twice: its claims collide */
  char *twice[] = {PLUGIN("good"), PLUGIN("good")};
  assert_int_equal(esr_registry_load(&r, twice, 2, esr_host_api_table(), NULL, 0, &err), ESR_E_PLUGIN);
  assert_contains(err.msg, "test.*");
  esr_registry_clear(&r);

  /* a broken plugin in the list stops the load with its own message */
  char *broken[] = {PLUGIN("good"), PLUGIN("noapply")};
  assert_int_equal(esr_registry_load(&r, broken, 2, esr_host_api_table(), NULL, 0, &err), ESR_E_PLUGIN);
  assert_contains(err.msg, "no apply callback");
  esr_registry_clear(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(good_plugin_loads),
      cmocka_unit_test(ledger_plugin_loads),
      cmocka_unit_test(same_plugin_twice),
      cmocka_unit_test(noentry_refused),
      cmocka_unit_test(badabi_refused_naming_versions_without_running_it),
      cmocka_unit_test(noabi_refused_without_running_it),
      cmocka_unit_test(initfail_refused_with_its_reason),
      cmocka_unit_test(newer_minor_refused_naming_versions_without_running_it),
      cmocka_unit_test(abi10_plugin_still_loads_and_is_read_as_1_0),
      cmocka_unit_test(own_sqlite_refused_naming_the_library),
      cmocka_unit_test(other_cjson_refused_naming_the_library),
      cmocka_unit_test(options_reach_init_and_unknown_ones_are_refused),
      cmocka_unit_test(registry_hands_each_plugin_its_options),
      cmocka_unit_test(noapply_refused),
      cmocka_unit_test(nonexistent_path_refused),
      cmocka_unit_test(not_a_shared_object_refused),
      cmocka_unit_test(exact_claim_beats_prefix),
      cmocka_unit_test(longer_prefix_beats_shorter),
      cmocka_unit_test(unknown_type_and_version),
      cmocka_unit_test(duplicate_claim_refused_naming_both),
      cmocka_unit_test(duplicate_name_refused_naming_both),
      cmocka_unit_test(registry_load_real_plugins),
  };
  return cmocka_run_group_tests_name("loader", tests, NULL, NULL);
}
