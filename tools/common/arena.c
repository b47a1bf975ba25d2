/* arena.c - the bump allocator (see arena.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tools/common/arena.h"

#define BLOCK_MIN_DEFAULT (64u << 10)
#define KEEP_MAX_DEFAULT (64u << 20)
#define ALIGN (sizeof(max_align_t))

struct ss__arena_block {
  struct ss__arena_block *next;
  size_t used, cap;
  max_align_t data[];
};

static ss__arena_block *block_new(size_t cap, ss__arena_block *next) {
  ss__arena_block *b = malloc(sizeof *b + cap);
  if (b == NULL) return NULL;
  b->next = next;
  b->used = 0;
  b->cap = cap;
  return b;
}

void *ss__arena_alloc(ss__arena *a, size_t n) {
  if (n > SIZE_MAX - ALIGN) goto fail;
  n = (n + ALIGN - 1) & ~(ALIGN - 1);
  if (a->budget && (n > a->budget || a->total > a->budget - n)) goto fail;
  ss__arena_block *b = a->head;
  if (b == NULL || b->cap - b->used < n) {
    size_t min = a->block_min ? a->block_min : BLOCK_MIN_DEFAULT;
    if ((b = block_new(n > min ? n : min, a->head)) == NULL) goto fail;
    a->head = b;
  }
  void *p = (char *)b->data + b->used;
  b->used += n;
  a->total += n;
  return p;
fail:
  a->over = 1;
  return NULL;
}

char *ss__arena_strndup(ss__arena *a, const char *s, size_t n) {
  char *p = n < SIZE_MAX ? ss__arena_alloc(a, n + 1) : NULL;
  if (p == NULL) return NULL;
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

void ss__arena_reset(ss__arena *a, size_t budget) {
  size_t keep_max = a->keep_max ? a->keep_max : KEEP_MAX_DEFAULT;
  if (a->total > a->high) a->high = a->total > keep_max ? keep_max : a->total;
  if (a->head && (a->head->next || a->head->cap < a->high)) {
    ss__arena_release(a);
    a->head = block_new(a->high, NULL);  /* NULL is fine: the next alloc retries */
  }
  if (a->head) a->head->used = 0;
  a->total = 0;
  a->over = 0;
  a->budget = budget;
}

void ss__arena_release(ss__arena *a) {
  while (a->head) {
    ss__arena_block *b = a->head;
    a->head = b->next;
    free(b);
  }
  a->total = 0;
}
