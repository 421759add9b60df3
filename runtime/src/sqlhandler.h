/* sqlhandler.h — handlers written in SQL: a built-in plugin that loads a handler from a YAML file instead of a shared
 * object (`handlers = /etc/esr/ledger.yaml`: a path ending in .yaml or .yml).
 *
 * The file declares the handler's name and version, its tables as numbered migrations, optional options with their
 * defaults, and for each event type the versions it accepts, upcasts of older versions (new values of data fields as
 * SQL expressions), checks (`invalid:` or `reject:` with a message, `unless:` an SQL condition that must hold) and the
 * SQL statements to run. Statements and conditions name event values as parameters: :key, :time, :id, :type,
 * :version, :offset, :partition, :topic, :data.<field>[.<field>...] and :option.<key>. Values bind as SQLite types:
 * strings TEXT, integral numbers within int64 INTEGER, other numbers REAL, null or an absent field NULL, and booleans,
 * objects and arrays a BLOB holding their JSON text (so that typeof() tells them apart from strings). Messages take
 * the same names in braces: "account {data.account} is already open". A handler's checks run as one SELECT and its
 * statements through the host's statement cache: the same path as a C plugin (savepoint, rejections, emits none).
 * The file is checked whole at load: a bad file is refused naming its line.
 */
#ifndef ESR_SQLHANDLER_H
#define ESR_SQLHANDLER_H

#include "loader.h"

/* 1 when `path` names a SQL handler file rather than a plugin (.yaml, .yml). */
int esr_sqlhandler_is_file(const char *path);
/* Loads the file into a plugin (no shared object: p->dl is NULL) served by the built-in SQL handler. `options`
 * (NULL-terminated, may be NULL) are checked against the file's declared options. ESR_E_PLUGIN naming the file and line
 * on any problem. */
esr_plugin *esr_sqlhandler_load(const char *path, const esr_host_api *host, const esr_handler_option *options,
                                esr_error *err);

#endif
