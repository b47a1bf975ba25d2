/* arena.h - a bump allocator whose memory is given back all at once.
 *
 * For data that lives exactly as long as one unit of work (a decoded request, the strings
 * an enrichment adds to it): allocation is a pointer bump inside a block, there is no
 * per-object free, and ss__arena_reset makes every earlier allocation invalid at once.
 * After a reset the arena keeps a single block as large as the busiest unit so far
 * (capped by `keep_max`), so steady work mallocs nothing. An optional budget bounds
 * what one unit may take (hostile input must not expand without limit).
 *
 * Not thread-safe: one owner. Depends on nothing but libc, so it can move to runtime/
 * when the shim's own encoder arena wants it. */
#ifndef SS_ARENA_H
#define SS_ARENA_H

#include <stddef.h>

typedef struct ss__arena_block ss__arena_block;

typedef struct ss__arena {
  ss__arena_block *head;  /* private */
  size_t total;           /* read-only: bytes handed out since the last reset */
  size_t budget;          /* read-only: 0 means unlimited */
  size_t block_min;       /* set before first use: smallest block malloc'd (0: 64 KiB) */
  size_t keep_max;        /* set before first use: largest block kept over a reset (0: 64 MiB) */
  size_t high;            /* private: the largest `total` seen */
  int over;               /* read-only: an allocation failed since the last reset */
} ss__arena;

#define SS_ARENA_INIT {NULL, 0, 0, 0, 0, 0, 0}

/* Returns n bytes aligned for any type, valid until the next reset or release; NULL
 * (and `over` set) when the budget would be exceeded or malloc fails. */
void *ss__arena_alloc(ss__arena *a, size_t n);
/* A copy of s[0..n) with a NUL after it, or NULL. */
char *ss__arena_strndup(ss__arena *a, const char *s, size_t n);
/* Invalidates everything allocated, keeps one block sized for the busiest unit so far,
 * and sets the budget for the next unit (0: unlimited). */
void ss__arena_reset(ss__arena *a, size_t budget);
/* Frees all memory; the arena is empty and usable again. */
void ss__arena_release(ss__arena *a);

#endif
