/* symbolize.c - see symbolize.h. */
#include "runtime/symbolize.h"
#include "runtime/ownfd.h"
#include "runtime/stack.h"
#include "runtime/sys.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_MODULES 512
#define MAX_SYMTAB_FILE (1ull << 31)

typedef struct sym {
  uint64_t start, size; /* relative to the module's load base */
  char *name;
} sym;

typedef struct module {
  uint64_t base, lo, hi; /* load base; [lo, hi) spans its PT_LOAD segments */
  char *path;
  char build_id[41];
  int symtab_loaded;
  sym *syms;
  size_t n_syms;
} module;

static module mods[MAX_MODULES];
static size_t n_mods;
static uint64_t self_base;

static void module_free(module *m) {
  for (size_t i = 0; i < m->n_syms; i++) free(m->syms[i].name);
  free(m->syms);
  free(m->path);
  memset(m, 0, sizeof *m);
}

void ss__symbolize_reset(void) {
  for (size_t i = 0; i < n_mods; i++) module_free(&mods[i]);
  n_mods = 0;
}

static void read_build_id(struct dl_phdr_info *info, char out[41]) {
  out[0] = '\0';
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_NOTE) continue;
    const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
    const unsigned char *end = p + ph->p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
      const unsigned char *name = p + sizeof *nh;
      const unsigned char *desc = name + ((nh->n_namesz + 3) & ~3u);
      if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
        static const char hex[] = "0123456789abcdef";
        size_t n = nh->n_descsz > 20 ? 20 : nh->n_descsz;
        for (size_t k = 0; k < n; k++) {
          out[2 * k] = hex[desc[k] >> 4];
          out[2 * k + 1] = hex[desc[k] & 15];
        }
        out[2 * n] = '\0';
        return;
      }
      p = desc + ((nh->n_descsz + 3) & ~3u);
    }
  }
}

static int add_module(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  (void)arg;
  if (n_mods >= MAX_MODULES) return 1;
  uintptr_t lo, hi;
  ss__module_range(info, &lo, &hi);
  if (hi == 0) return 0;
  module *m = &mods[n_mods];
  memset(m, 0, sizeof *m);
  m->base = info->dlpi_addr;
  m->lo = lo;
  m->hi = hi;
  const char *name = info->dlpi_name;
  if (name == NULL || name[0] == '\0') name = ss__sys_exe_path(); /* the main program */
  m->path = strdup(name);
  if (m->path == NULL) return 1;
  read_build_id(info, m->build_id);
  n_mods++;
  return 0;
}

static module *find_module(uint64_t addr) {
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < n_mods; i++)
      if (addr >= mods[i].lo && addr < mods[i].hi) return &mods[i];
    if (pass == 0) { /* new objects may have been loaded since: look again */
      ss__symbolize_reset();
      dl_iterate_phdr(add_module, NULL);
    }
  }
  return NULL;
}

/* Sorts by start address, in place (heapsort): not libc's qsort, whose code is a page of
 * its own that a fork child naming its caller would fault in (and whose merge sort takes a
 * buffer as big as the table). */
static void sift_down(sym *s, size_t root, size_t n) {
  for (size_t child; (child = 2 * root + 1) < n; root = child) {
    if (child + 1 < n && s[child].start < s[child + 1].start) child++;
    if (s[root].start >= s[child].start) return;
    sym t = s[root];
    s[root] = s[child];
    s[child] = t;
  }
}

static void sort_syms(sym *s, size_t n) {
  for (size_t i = n / 2; i-- > 0;) sift_down(s, i, n);
  for (size_t end = n; end-- > 1;) {
    sym t = s[0];
    s[0] = s[end];
    s[end] = t;
    sift_down(s, 0, end);
  }
}

/* Function symbols of the file's .symtab (static ones included), sorted by address. */
static void load_symtab(module *m) {
  m->symtab_loaded = 1;
  int fd = ss__own_open_brief(m->path, O_RDONLY);
  if (fd < 0) return;
  struct stat st;
  void *map = MAP_FAILED;
  if (ss__sys_fstat(fd, &st) == 0 && (uint64_t)st.st_size >= sizeof(ElfW(Ehdr)) &&
      (uint64_t)st.st_size < MAX_SYMTAB_FILE)
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  ss__own_close_brief(fd);
  if (map == MAP_FAILED) return;
  size_t fsize = (size_t)st.st_size;
  const unsigned char *f = map;
  const ElfW(Ehdr) *eh = map;
  if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
      eh->e_shoff == 0 || eh->e_shoff + (uint64_t)eh->e_shnum * sizeof(ElfW(Shdr)) > fsize)
    goto out;
  const ElfW(Shdr) *sh = (const ElfW(Shdr) *)(f + eh->e_shoff);
  /* A non-PIE executable's symbols are absolute; everything else is base-relative. */
  uint64_t bias = eh->e_type == ET_EXEC ? m->base : 0;
  for (int i = 0; i < eh->e_shnum; i++) {
    if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum) continue;
    const ElfW(Shdr) *strs = &sh[sh[i].sh_link];
    if (sh[i].sh_offset + sh[i].sh_size > fsize || strs->sh_offset + strs->sh_size > fsize)
      break;
    size_t n = sh[i].sh_size / sizeof(ElfW(Sym));
    const ElfW(Sym) *syms = (const ElfW(Sym) *)(f + sh[i].sh_offset);
    m->syms = calloc(n ? n : 1, sizeof(sym));
    if (m->syms == NULL) break;
    for (size_t k = 0; k < n; k++) {
      if (ELF64_ST_TYPE(syms[k].st_info) != STT_FUNC || syms[k].st_value == 0 ||
          syms[k].st_name >= strs->sh_size)
        continue;
      const char *name = (const char *)(f + strs->sh_offset + syms[k].st_name);
      sym *s = &m->syms[m->n_syms];
      s->start = syms[k].st_value - bias;
      s->size = syms[k].st_size;
      s->name = strndup(name, strs->sh_size - syms[k].st_name);
      if (s->name) m->n_syms++;
    }
    sort_syms(m->syms, m->n_syms);
    break;
  }
out:
  munmap(map, fsize);
}

static const sym *symtab_lookup(module *m, uint64_t off) {
  if (!m->symtab_loaded) load_symtab(m);
  size_t lo = 0, hi = m->n_syms;
  while (lo < hi) { /* last symbol starting at or before off */
    size_t mid = (lo + hi) / 2;
    if (m->syms[mid].start <= off)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0) return NULL;
  const sym *s = &m->syms[lo - 1];
  return (s->size == 0 || off < s->start + s->size) ? s : NULL;
}

typedef char *(*demangle_fn)(const char *, char *, size_t *, int *);

/* Demangles in place in the cache (once per symbol) when libstdc++ is in the process. */
static const char *demangled(char **name) {
  static demangle_fn fn;
  static int looked;
  if ((*name)[0] != '_' || (*name)[1] != 'Z') return *name;
  if (!looked) {
    fn = (demangle_fn)dlsym(RTLD_DEFAULT, "__cxa_demangle");
    looked = 1;
  }
  int status = -1;
  char *d = fn ? fn(*name, NULL, NULL, &status) : NULL;
  if (d != NULL && status == 0) {
    free(*name);
    *name = d;
  } else {
    free(d);
  }
  return *name;
}

static void find_self(void) {
  Dl_info di;
  if (self_base == 0 && dladdr((void *)&ss__symbolize, &di))
    self_base = (uint64_t)(uintptr_t)di.dli_fbase;
}

void ss__symbolize_atfork_prepare(void) {
  find_self();
  if (n_mods == 0) dl_iterate_phdr(add_module, NULL);
}

int ss__symbolize(uint64_t addr, ss__frame *f) {
  memset(f, 0, sizeof *f);
  f->module = "?";
  f->build_id = "";
  find_self();
  uint64_t pc = addr ? addr - 1 : 0;
  module *m = find_module(pc);
  if (m == NULL) return -1;
  f->module = m->path;
  f->build_id = m->build_id;
  f->offset = addr - m->base;
  f->in_shim = m->base == self_base;
  if (f->in_shim) return 0; /* the shim's frames are dropped: no need for a name */
  const sym *s = symtab_lookup(m, pc - m->base);
  if (s != NULL) {
    f->func = demangled(&((sym *)s)->name);
    f->func_off = pc - m->base - s->start + 1;
    return 0;
  }
  Dl_info di;
  if (dladdr((void *)(uintptr_t)pc, &di) && di.dli_sname != NULL) {
    f->func = di.dli_sname;
    f->func_off = addr - (uint64_t)(uintptr_t)di.dli_saddr;
  }
  return 0;
}
