/* esr/json_arena.h — a per-thread bump allocator for cJSON while one event is processed.
 *
 * cJSON allocates every node and string with malloc; parsing an event then freeing it was about a tenth of the worker's
 * CPU. esr_json_arena_install routes cJSON's allocations (process-wide, cJSON_InitHooks; plugins share libcjson) to
 * this module: between esr_json_arena_begin and esr_json_arena_end on a thread, they come from that thread's arena
 * (reset at end, nothing freed one by one); outside such a window, and for pointers that do not belong to the arena,
 * malloc and free are used as before. Contract that follows (stated in esr/handler.h): cJSON values of an event,
 * including what a handler adds to it in upcast, do not outlive the callback.
 */
#ifndef ESR_JSON_ARENA_H
#define ESR_JSON_ARENA_H

/* Once per process, before any thread processes events. */
void esr_json_arena_install(void);
void esr_json_arena_begin(void);
void esr_json_arena_end(void);
/* Frees the calling thread's arena memory (at thread exit). */
void esr_json_arena_release(void);

#endif
