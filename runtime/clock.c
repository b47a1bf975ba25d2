/* clock.c - the vDSO's clock_gettime; see clock.h. */
#include "runtime/clock.h"

#include <elf.h>
#include <link.h>
#include <string.h>
#include <sys/auxv.h>

int (*ss__vdso_clock_gettime)(clockid_t, struct timespec *);

void ss__clock_resolve(void) {
  static int looked;
  if (looked) return;
  looked = 1;
  const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)getauxval(AT_SYSINFO_EHDR);
  if (eh == NULL || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0) return;
  const char *base = (const char *)eh;
  const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(base + eh->e_phoff);
  const ElfW(Dyn) *dyn = NULL;
  intptr_t bias = 0;
  int have_load = 0;
  for (int i = 0; i < eh->e_phnum; i++) {
    if (ph[i].p_type == PT_LOAD && !have_load) {
      bias = (intptr_t)base + (intptr_t)ph[i].p_offset - (intptr_t)ph[i].p_vaddr;
      have_load = 1;
    } else if (ph[i].p_type == PT_DYNAMIC) {
      dyn = (const ElfW(Dyn) *)(base + ph[i].p_offset);
    }
  }
  if (!have_load || dyn == NULL) return;
  const ElfW(Sym) *syms = NULL;
  const char *strs = NULL;
  const ElfW(Word) *hash = NULL;
  for (; dyn->d_tag != DT_NULL; dyn++) {
    if (dyn->d_tag == DT_SYMTAB) syms = (const ElfW(Sym) *)(bias + (intptr_t)dyn->d_un.d_ptr);
    else if (dyn->d_tag == DT_STRTAB) strs = (const char *)(bias + (intptr_t)dyn->d_un.d_ptr);
    else if (dyn->d_tag == DT_HASH) hash = (const ElfW(Word) *)(bias + (intptr_t)dyn->d_un.d_ptr);
  }
  if (syms == NULL || strs == NULL || hash == NULL) return;
  for (ElfW(Word) i = 0; i < hash[1]; i++) { /* hash[1]: nchain, the number of symbols */
    if (ELF64_ST_TYPE(syms[i].st_info) != STT_FUNC || syms[i].st_shndx == SHN_UNDEF ||
        strcmp(strs + syms[i].st_name, "__vdso_clock_gettime") != 0)
      continue;
    ss__vdso_clock_gettime =
        (int (*)(clockid_t, struct timespec *))(bias + (intptr_t)syms[i].st_value);
    return;
  }
}
