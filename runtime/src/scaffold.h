/* scaffold.h — `esr handler new NAME [--dir DIR]`: writes a handler project of its own into DIR (default ./NAME): the
 * handler's C source, a CMakeLists.txt that builds it against an installed esr (find_package(esr)) and registers its
 * test with ctest, a JSON Schema of its event, sample events as JSON lines and the expectations they must meet
 * (`esr handler test`), and a README. As generated, it builds and its test passes. */
#ifndef ESR_SCAFFOLD_H
#define ESR_SCAFFOLD_H

#include "error.h"

/* 1 when `name` is a valid handler name: 1..64 characters of [a-z0-9_], starting with a letter. */
int esr_scaffold_valid_name(const char *name);
/* ESR_E_CONFIG for an invalid name or a directory that exists and is not empty; ESR_E_IO when a file cannot be
 * written. */
esr_code esr_scaffold_handler(const char *name, const char *dir, esr_error *err);

#endif
