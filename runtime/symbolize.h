/* symbolize.h - return addresses to module, offset and nearest symbol, in this process.
 *
 * For the exporter thread (first stage of symbolization; file:line from DWARF is
 * spanshimd's second stage, matched by build id). Modules come from dl_iterate_phdr;
 * symbols from the dynamic symbol table (dladdr) and, where the file has one, .symtab
 * (static functions too), read from disk once per module; C++ names are demangled when
 * the process has __cxa_demangle (libstdc++ loaded). Allocates; not thread-safe: one
 * caller at a time (the loader lock, ss__loader_lock, which a fork waits for: a fork child
 * keeps the cache). */
#ifndef SS_SYMBOLIZE_H
#define SS_SYMBOLIZE_H

#include <stddef.h>
#include <stdint.h>

typedef struct ss__frame {
  const char *module;    /* path of the object, or "?" */
  const char *build_id;  /* hex GNU build id, or "" */
  uint64_t offset;       /* addr - module load base */
  const char *func;      /* nearest symbol, or NULL */
  uint64_t func_off;     /* addr - symbol start */
  int in_shim;           /* the address is inside libspanshim itself */
} ss__frame;

/* Describes addr (a return address: the lookup uses addr - 1, inside the call). The
 * strings stay valid until ss__symbolize_reset. Returns 0, or -1 if no module holds it. */
int ss__symbolize(uint64_t addr, ss__frame *f);
/* Forgets every cached module (after fork the map is the same; after dlclose it is not). */
void ss__symbolize_reset(void);
/* For a fork's prepare handler (loader lock held, before glibc takes malloc's lock): the
 * module table, read now if it is empty, and the shim's own base. A fork child that names
 * its caller then finds them in memory the parent wrote, which it reads without a page
 * fault, instead of walking the loader's list and every module's headers itself (_dl_addr
 * and dl_iterate_phdr code, each object's first page, the table's page: 3 faults per
 * child). Once per process (again after a miss, as in ss__symbolize); allocates the
 * modules' paths (strdup: before the fork takes malloc's lock). */
void ss__symbolize_atfork_prepare(void);

#endif
