/* lazy.h - libraries spanshimd needs only for some features, opened with dlopen on first
 * use rather than linked: libcurl (forwarding upstream) and libdw (file:line for stack
 * frames). Linked, they and their ~30 dependencies (TLS, Kerberos, LDAP, compression)
 * were loaded at every start, most of `spanshim run -- /bin/true`'s time; a collector
 * that never forwards nor symbolizes now loads neither.
 *
 * A file using one declares its functions in an X-macro list and gets, for each NAME, a
 * macro NAME that calls through the resolved pointer (same type as the header's
 * declaration), so call sites read as usual:
 *
 *   #define CURL_FNS(X) X(curl_easy_init) X(curl_easy_perform)
 *   SS_LAZY_TABLE(curl, CURL_FNS)
 *   #define curl_easy_init SS_LAZY(curl, curl_easy_init)
 *
 * and calls ss__lazy_load once before the first use. Not thread-safe: load from one
 * thread before others call. */
#ifndef SS_LAZY_H
#define SS_LAZY_H

#define SS_LAZY_ENUM_(n) ss_lazy_i_##n,
#define SS_LAZY_NAME_(n) #n,
#define SS_LAZY_TABLE(lib, LIST)                                       \
  enum { LIST(SS_LAZY_ENUM_) ss_lazy_n_##lib };                         \
  static void *ss_lazy_##lib[ss_lazy_n_##lib];                          \
  static const char *const ss_lazy_names_##lib[] = {LIST(SS_LAZY_NAME_) NULL};
#define SS_LAZY(lib, n) ((__typeof__(&n))ss_lazy_##lib[ss_lazy_i_##n])
#define SS_LAZY_LOAD(lib, what, sonames) \
  ss__lazy_load((what), (sonames), ss_lazy_names_##lib, ss_lazy_##lib)

/* Opens the first of `sonames` (NULL-terminated) that dlopen finds (RTLD_NOW |
 * RTLD_LOCAL) and resolves every name into fns (in order). Once loaded, later calls
 * return 0 at once. 0, or -1 after one line on stderr naming `what` and the reason
 * (nothing left half-resolved: fns[0] stays NULL). */
int ss__lazy_load(const char *what, const char *const *sonames, const char *const *names,
                  void **fns);

#endif
