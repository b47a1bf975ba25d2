/* args.c - redaction of command-line arguments for process.command_args (see sanitize.h).
 *
 * What counts as a credential: the value of a `--password`-like flag (as `--flag=value` or
 * as the next argument), `key=value` pairs whose key names a secret (password=, token=,
 * X-Amz-Signature=, sig= ...: conninfo strings and query strings alike), URL userinfo,
 * `user:password` after curl's -u/--user, and Authorization/Cookie header arguments. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "runtime/sanitize.h"

static const char *const secret_flags[] = {
    "password", "passwd", "pass", "pwd", "secret", "token", "api-key", "apikey", "api_key",
    "access-token", "access_token", "auth-token", "client-secret", "client_secret",
    "private-key", "private_key", "auth", NULL};

/* Key substrings (case-insensitive) that make a key=value value secret. */
static const char *const secret_key_parts[] = {"password", "passwd", "secret", "token",
                                               "apikey", "api_key", "api-key", "credential",
                                               "signature", NULL};
/* Whole keys (case-insensitive) that are secret. */
static const char *const secret_keys[] = {"pwd", "pass", "sig", "awsaccesskeyid", "auth", NULL};

static const char *const secret_headers[] = {"authorization:", "proxy-authorization:",
                                             "cookie:", "set-cookie:", "x-api-key:", NULL};

static int in_list(const char *s, size_t n, const char *const *list) {
  for (int i = 0; list[i]; i++)
    if (strlen(list[i]) == n && strncasecmp(s, list[i], n) == 0) return 1;
  return 0;
}

static int has_part(const char *s, size_t n, const char *const *list) {
  for (int i = 0; list[i]; i++) {
    size_t m = strlen(list[i]);
    for (size_t k = 0; k + m <= n; k++)
      if (strncasecmp(s + k, list[i], m) == 0) return 1;
  }
  return 0;
}

typedef struct out {
  char *p;
  size_t n, cap;
} out;

static void put(out *o, const char *s, size_t n) {
  if (n > o->cap - o->n) n = o->cap - o->n;
  memcpy(o->p + o->n, s, n);
  o->n += n;
}

static int key_char(char c) {
  return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.';
}

static int value_end(char c) {
  return c == '\0' || c == '&' || c == ';' || c == ' ' || c == ',' || c == '\'' || c == '"';
}

/* Copies arg, replacing secret key=value values and URL userinfo with REDACTED. */
static void redact_inline(const char *a, out *o) {
  size_t i = 0, n = strlen(a);
  while (i < n) {
    const char *scheme = strstr(a + i, "://");
    if (scheme == a + i) { /* scheme://[userinfo@]host */
      put(o, "://", 3);
      i += 3;
      size_t j = i;
      while (j < n && a[j] != '/' && a[j] != '@' && a[j] != '?' && a[j] != '#' && a[j] != ' ')
        j++;
      if (j < n && a[j] == '@') {
        put(o, "REDACTED:REDACTED@", 18);
        i = j + 1;
      }
      continue;
    }
    if (a[i] == '=' && i > 0) {
      size_t k = i;
      while (k > 0 && key_char(a[k - 1])) k--;
      const char *key = a + k;
      size_t kl = i - k;
      if (kl && (in_list(key, kl, secret_keys) || has_part(key, kl, secret_key_parts))) {
        put(o, "=REDACTED", 9);
        i++;
        while (i < n && !value_end(a[i])) i++;
        continue;
      }
    }
    put(o, a + i, 1);
    i++;
  }
}

size_t ss__arg_redact(const char *arg, int *secret_next, char *dst, size_t cap) {
  out o = {dst, 0, cap};
  int was_secret = *secret_next;
  *secret_next = 0;
  if (was_secret == 1) {
    put(&o, "REDACTED", 8);
    return o.n;
  }
  if (was_secret == 2) { /* after -u/--user: user:password */
    const char *colon = strchr(arg, ':');
    if (colon) {
      put(&o, arg, (size_t)(colon - arg) + 1);
      put(&o, "REDACTED", 8);
      return o.n;
    }
  }
  for (int i = 0; secret_headers[i]; i++) {
    size_t m = strlen(secret_headers[i]);
    if (strncasecmp(arg, secret_headers[i], m) == 0) {
      put(&o, arg, m);
      put(&o, " REDACTED", 9);
      return o.n;
    }
  }
  if (arg[0] == '-') {
    const char *name = arg + strspn(arg, "-");
    const char *eq = strchr(name, '=');
    size_t nl = eq ? (size_t)(eq - name) : strlen(name);
    if (in_list(name, nl, secret_flags)) {
      if (eq == NULL) {
        *secret_next = 1;
        put(&o, arg, strlen(arg));
      } else {
        put(&o, arg, (size_t)(eq - arg) + 1);
        put(&o, "REDACTED", 8);
      }
      return o.n;
    }
    if (strcmp(arg, "-u") == 0 || strcmp(arg, "--user") == 0 || strcmp(arg, "--proxy-user") == 0)
      *secret_next = 2;
  }
  redact_inline(arg, &o);
  return o.n;
}
