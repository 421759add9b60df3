/* esrt_othercjson.c — a stand-in for a cJSON library of another soname (libesrt_othercjson.so): the functions the
 * othercjson plugin links to, with cJSON's names and nothing behind them. */
#include <stddef.h>

typedef struct cJSON cJSON;

__attribute__((visibility("default"))) cJSON *cJSON_Parse(const char *value) { return NULL; }
__attribute__((visibility("default"))) void cJSON_Delete(cJSON *item) {}
