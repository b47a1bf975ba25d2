/* args.c - credential redaction of command lines (process.command_args) and of free text
 * (status messages); see sanitize.h.
 *
 * No list of tools decides what is secret: a credential is found by what it looks like.
 *  - Free text (every argument, every status message): URL userinfo and credential query
 *    values (runtime/url.c's rule), the value of `name=value` and `name: value` whose name
 *    looks like a credential (ss__cred_name: password, token, secret, key, auth, cookie,
 *    session, signature, ... in any case or word order, plus names ending in `pass` or
 *    `auth` such as requirepass), quoted values (`password='a b'`) whole, a quoted key's
 *    value (`"password": "x"`, JSON), and whatever follows `Bearer `. A header value runs to the end of its line.
 *  - Options: the value of any option whose name looks like a credential (`--http-password
 *    x`, `--oauth2-bearer=x`, `--with-token x`, single-dash `-pass x`), unless the name says the value is not the
 *    secret itself (`--password-file`, `--token-stdin`, `--no-password`) or the next
 *    argument is another option; after -u/--user/--proxy-user whatever follows the first
 *    ':' (`user:secret`), attached too (`-uuser:secret`).
 *  - -p and -P: their value (attached `-pX` or next) is redacted unless it is all digits
 *    (a port: psql -p 5432, ssh -p 22); tools where -p/-P take no value (mkdir, cp, git,
 *    grep, ...) are the exception, so `mkdir -p /srv/x` stays readable.
 *  - Known families where a letter means something: redis-cli -a; SQL clients (psql,
 *    mysql, sqlite3, clickhouse-client, ...): the SQL of -c/-e/-q/--command/--execute/
 *    --query (and sqlite3's positional SQL) has its literals replaced by `?` as
 *    db.query.text is; shells (sh -c, bash -lc, su -c) and ssh's remote command: the
 *    script is split into words as the shell would and each command is redacted by these
 *    same rules, recursively (a replaced word is written back quoted). Wrappers (env, sudo,
 *    timeout, xargs, ...) and a known tool's name as a later argument (`docker exec c psql
 *    -c ...`) switch the rules to that tool.
 * Redaction may hide more than needed, never less. Pure functions over caller memory and
 * static scratch (one level per shell nesting): no allocation, no locks; not reentrant
 * (callers: the process constructor, the exporter thread, tests - never two at once for
 * ss__argv_redact; ss__text_redact is reentrant). */
#include <string.h>
#include <strings.h>

#include "runtime/outbuf.h"
#include "runtime/sanitize.h"

typedef ss__out out;
#define put ss__out_put
#define put1 ss__out_putc

#define PUTS(o, lit) put((o), (lit), sizeof(lit) - 1)

static int is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static int is_digit(char c) {
  return c >= '0' && c <= '9';
}
static int is_alnum(char c) {
  return is_alpha(c) || is_digit(c);
}
static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
static int all_digits(const char *s, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++)
    if (!is_digit(s[i])) return 0;
  return 1;
}

/* ---- names ---- */

static int ends_with(const char *s, size_t n, const char *suffix) {
  size_t m = strlen(suffix);
  return n >= m && strncasecmp(s + n - m, suffix, m) == 0;
}

/* Words that make a credential-like name's value something else: where the secret is, not
 * the secret (`--password-file`, `--token-stdin`, `--secret-name`), or a switch
 * (`--no-password`, `--ask-pass`). */
#define LISTWORD_MAX 16 /* word lists hold their words inline (see sqlstate.c's codes) */
static const char not_value_words[][LISTWORD_MAX] = {
    "file", "files", "path", "dir", "stdin", "fd", "env", "type", "mode", "name", "id",
    "prompt", "command", "cmd", "helper", "length", "len", "size", "ttl", "expiry",
    "algorithm", "store", "no", "ask", "without", "skip", "disable", "enable", "use",
    "required", "require", "redact", ""};

/* list ends with an empty word. */
static int word_in(const char *w, size_t n, const char (*list)[LISTWORD_MAX]) {
  for (int i = 0; list[i][0]; i++)
    if (strlen(list[i]) == n && strncasecmp(list[i], w, n) == 0) return 1;
  return 0;
}

/* Whether any word of name (split at non-alphanumerics) is in the not-a-value list. */
static int names_no_value(const char *name, size_t n) {
  size_t i = 0;
  while (i < n) {
    while (i < n && !is_alpha(name[i])) i++;
    size_t e = i;
    while (e < n && is_alpha(name[e])) e++;
    if (e > i && word_in(name + i, e - i, not_value_words)) return 1;
    i = e;
  }
  return 0;
}

/* A name (option, key of key=value, header) whose value is a credential. */
static int secret_name(const char *name, size_t n) {
  while (n > 0 && name[0] == '-') { /* option dashes */
    name++;
    n--;
  }
  if (n == 0 || n > 200) return 0;
  if (!ss__cred_name(name, n) && !ends_with(name, n, "pass") && !ends_with(name, n, "auth"))
    return 0;
  return !names_no_value(name, n);
}

/* The name an option or key ends with, for -u/--user style `user:password` values. */
static int user_name(const char *name, size_t n) {
  while (n > 0 && name[0] == '-') {
    name++;
    n--;
  }
  return (n == 1 && name[0] == 'u') || ends_with(name, n, "user") ||
         (n == 5 && strncasecmp(name, "login", 5) == 0);
}

/* ---- free text ---- */

static int key_char(char c) {
  return is_alnum(c) || c == '_' || c == '-' || c == '.' || c == '[' || c == ']';
}

/* Start of the name that ends at a[i] (exclusive), blanks before the separator skipped;
 * sets *kl to its length. */
static size_t key_before(const char *a, size_t i, size_t *kl) {
  size_t e = i;
  while (e > 0 && (a[e - 1] == ' ' || a[e - 1] == '\t')) e--;
  size_t k = e;
  while (k > 0 && key_char(a[k - 1])) k--;
  *kl = e - k;
  return k;
}

/* Offset past a quoted value starting at a[i] (a quote): to the matching quote, a
 * backslash escaping the next byte (conninfo's rule); the end when unterminated. */
static size_t skip_quoted(const char *a, size_t n, size_t i) {
  char q = a[i];
  for (i++; i < n; i++) {
    if (a[i] == '\\') i++;
    else if (a[i] == q) return i + 1;
  }
  return n;
}

/* Length of a URL starting at a[i] ("scheme://..." up to a blank or quote), 0 if none. */
static size_t url_at(const char *a, size_t n, size_t i) {
  if (!is_alpha(a[i]) || (i > 0 && (is_alnum(a[i - 1]) || a[i - 1] == '+' || a[i - 1] == '.')))
    return 0;
  size_t j = i + 1;
  while (j < n && j - i < 32 && (is_alnum(a[j]) || a[j] == '+' || a[j] == '-' || a[j] == '.'))
    j++;
  if (j + 3 > n || memcmp(a + j, "://", 3) != 0) return 0;
  j += 3;
  while (j < n && !is_space(a[j]) && a[j] != '"' && a[j] != '\'' && a[j] != '<' && a[j] != '>')
    j++;
  return j - i;
}

/* A quoted key ending just before the ':' at a[i] (blanks between allowed: `"k" :`):
 * its start inside the quotes and *kl its length; *kl 0 when there is none. */
static size_t json_key_before(const char *a, size_t i, size_t *kl) {
  size_t e = i;
  *kl = 0;
  while (e > 0 && (a[e - 1] == ' ' || a[e - 1] == '\t')) e--;
  if (e < 2 || (a[e - 1] != '"' && a[e - 1] != '\'')) return 0;
  size_t k = e - 1;
  while (k > 0 && a[k - 1] != a[e - 1] && key_char(a[k - 1])) k--;
  if (k == 0 || a[k - 1] != a[e - 1]) return 0;
  *kl = e - 1 - k;
  return k;
}

/* Whether the name at a[k] (kl bytes, before a ':') stands where a header or a `name:
 * value` pair starts. In prose (status messages: "invalid percent-encoded token: ...")
 * only at the start of the text or a line, after a quote, '=', '(', ',' or ';', or when it
 * looks like a header name (a capital, '-' or '_'); in arguments anywhere. */
static int header_at(const char *a, size_t k, size_t kl, int prose) {
  if (!prose || k == 0 || strchr("\n\"'=(,;", a[k - 1])) return 1;
  for (size_t i = k; i < k + kl; i++)
    if ((a[i] >= 'A' && a[i] <= 'Z') || a[i] == '-' || a[i] == '_') return 1;
  return 0;
}

static size_t redact_mode(const char *a, size_t n, out *o, int prose) {
  size_t i = 0;
  while (i < n && o->n < o->cap) { /* a full output ends the work: the rest is cut */
    char c = a[i];
    size_t u = url_at(a, n, i);
    if (u) {
      o->n += ss__url_redact(a + i, u, o->p + o->n, o->cap - o->n);
      i += u;
      continue;
    }
    size_t kl, k;
    if (c == '=' && i > 0 && !(i + 1 < n && a[i + 1] == '=') &&
        (k = key_before(a, i, &kl), kl > 0) && secret_name(a + k, kl)) {
      /* A key after '&', '?' or ';' is one of a form or query's pairs: its value ends
       * at the next separator; else at a blank. A quoted value goes whole. */
      int pair = k > 0 && (a[k - 1] == '&' || a[k - 1] == '?' || a[k - 1] == ';');
      PUTS(o, "=REDACTED");
      i++;
      while (i < n && (a[i] == ' ' || a[i] == '\t')) i++;
      if (i < n && (a[i] == '\'' || a[i] == '"')) {
        i = skip_quoted(a, n, i);
      } else {
        while (i < n && !is_space(a[i]) && !(pair && (a[i] == '&' || a[i] == ';')) &&
               !(prose && (a[i] == '"' || a[i] == '\''))) /* prose: a quote ends it */
          i++;
      }
      continue;
    }
    if (c == ':' && (k = json_key_before(a, i, &kl), kl > 0) && secret_name(a + k, kl)) {
      /* "password": "x" (JSON, YAML flow): a quoted value goes whole, else up to the
       * next ',', '}', ']' or blank. */
      put1(o, ':');
      i++;
      while (i < n && (a[i] == ' ' || a[i] == '\t')) put1(o, a[i++]);
      if (i < n && (a[i] == '"' || a[i] == '\'')) {
        put1(o, a[i]);
        PUTS(o, "REDACTED");
        put1(o, a[i]);
        i = skip_quoted(a, n, i);
      } else {
        PUTS(o, "REDACTED");
        while (i < n && !is_space(a[i]) && a[i] != ',' && a[i] != '}' && a[i] != ']') i++;
      }
      continue;
    }
    if (c == ':' && i > 0 && !(i + 2 < n && a[i + 1] == '/' && a[i + 2] == '/') &&
        (k = key_before(a, i, &kl), kl > 0) && secret_name(a + k, kl) &&
        header_at(a, k, kl, prose)) {
      put1(o, ':');
      i++;
      if (i < n && a[i] == ' ') put1(o, ' ');
      PUTS(o, "REDACTED");
      while (i < n && a[i] != '\n') i++; /* a header's value runs to the end of its line */
      continue;
    }
    if ((c == 'b' || c == 'B') && i + 7 < n && strncasecmp(a + i, "bearer", 6) == 0 &&
        (i == 0 || !is_alnum(a[i - 1])) && (a[i + 6] == ' ' || a[i + 6] == '\t')) {
      put(o, a + i, 7);
      PUTS(o, "REDACTED");
      i += 7;
      while (i < n && (a[i] == ' ' || a[i] == '\t')) i++;
      while (i < n && !is_space(a[i]) && a[i] != '"' && a[i] != '\'') i++;
      continue;
    }
    put1(o, c);
    i++;
  }
  return o->n;
}

static size_t redact_text(const char *a, size_t n, out *o) {
  return redact_mode(a, n, o, 0);
}

size_t ss__text_redact(const char *in, size_t n, char *outbuf, size_t cap) {
  out o = {outbuf, 0, cap};
  return redact_mode(in, n, &o, 1);
}

/* ---- tools ---- */

enum tool {
  T_OTHER,
  T_SHELL,    /* -c SCRIPT */
  T_SQL,      /* -c/-e/-q/-Q/--command/--execute/--query SQL */
  T_SQL_POS,  /* the same, and positional SQL after the database; single-dash long options */
  T_SECRET_OPT, /* one letter's value is a password: redis-cli -a, ldapsearch -w, openssl -k */
  T_SSH,      /* HOST COMMAND... */
  T_WRAPPER,  /* the next word that is not an option or assignment is the program */
  T_PFLAG,    /* -p and -P take no value */
};
/* flags: F_* bits; for T_SECRET_OPT also the option letter (low byte). */
enum {
  F_DQ_STRING = 1 << 8, /* the SQL dialect's "..." are strings (MySQL, SQLite) */
  F_PFLAG = 1 << 9,     /* -p and -P take no value (as T_PFLAG) */
};

/* Names inline, not pointers (see runtime/sqlstate.c's codes). */
static const struct {
  char name[24];
  unsigned char tool;
  unsigned short flags;
} tools[] = {
    {"sh", T_SHELL, 0}, {"bash", T_SHELL, 0}, {"dash", T_SHELL, 0}, {"zsh", T_SHELL, 0},
    {"ksh", T_SHELL, 0}, {"mksh", T_SHELL, 0}, {"ash", T_SHELL, 0}, {"fish", T_SHELL, 0},
    {"su", T_SHELL, 0}, {"runuser", T_SHELL, 0},
    {"psql", T_SQL, 0}, {"pgcli", T_SQL, 0}, {"ysqlsh", T_SQL, 0}, {"vsql", T_SQL, 0},
    {"mysql", T_SQL, F_DQ_STRING}, {"mariadb", T_SQL, F_DQ_STRING},
    {"mysqlsh", T_SQL, F_DQ_STRING}, {"mycli", T_SQL, F_DQ_STRING},
    {"clickhouse-client", T_SQL, 0}, {"clickhouse", T_SQL, 0}, {"clickhouse-local", T_SQL, 0},
    {"sqlcmd", T_SQL, F_DQ_STRING}, {"cqlsh", T_SQL, 0}, {"usql", T_SQL, F_DQ_STRING},
    {"trino", T_SQL, 0}, {"presto", T_SQL, 0}, {"snowsql", T_SQL, F_DQ_STRING},
    {"isql", T_SQL, F_DQ_STRING}, {"cockroach", T_SQL, 0},
    {"sqlite3", T_SQL_POS, F_DQ_STRING}, {"sqlite", T_SQL_POS, F_DQ_STRING},
    {"duckdb", T_SQL_POS, 0},
    {"redis-cli", T_SECRET_OPT, 'a'}, {"valkey-cli", T_SECRET_OPT, 'a'},
    {"keydb-cli", T_SECRET_OPT, 'a'}, {"ldapsearch", T_SECRET_OPT, 'w'},
    {"ldapmodify", T_SECRET_OPT, 'w'}, {"ldapadd", T_SECRET_OPT, 'w'},
    {"ldapdelete", T_SECRET_OPT, 'w'}, {"ldapwhoami", T_SECRET_OPT, 'w'},
    {"ldappasswd", T_SECRET_OPT, 'w'}, {"ldapcompare", T_SECRET_OPT, 'w'},
    {"ldapmodrdn", T_SECRET_OPT, 'w'}, {"openssl", T_SECRET_OPT, 'k' | F_PFLAG},
    {"ssh", T_SSH, 0}, {"autossh", T_SSH, 0},
    {"env", T_WRAPPER, 0}, {"sudo", T_WRAPPER, 0}, {"doas", T_WRAPPER, 0},
    {"nice", T_WRAPPER, 0}, {"nohup", T_WRAPPER, 0}, {"time", T_WRAPPER, 0},
    {"timeout", T_WRAPPER, 0}, {"exec", T_WRAPPER, 0}, {"command", T_WRAPPER, 0},
    {"stdbuf", T_WRAPPER, 0}, {"ionice", T_WRAPPER, 0}, {"chrt", T_WRAPPER, 0},
    {"taskset", T_WRAPPER, 0}, {"xargs", T_WRAPPER, 0}, {"watch", T_WRAPPER, 0},
    {"setsid", T_WRAPPER, 0}, {"strace", T_WRAPPER, 0}, {"ltrace", T_WRAPPER, 0},
    {"valgrind", T_WRAPPER, 0}, {"flock", T_WRAPPER, 0},
    {"mkdir", T_PFLAG, 0}, {"cp", T_PFLAG, 0}, {"mv", T_PFLAG, 0}, {"ln", T_PFLAG, 0},
    {"ls", T_PFLAG, 0}, {"install", T_PFLAG, 0}, {"tar", T_PFLAG, 0}, {"rsync", T_PFLAG, 0},
    {"git", T_PFLAG, 0}, {"diff", T_PFLAG, 0}, {"grep", T_PFLAG, 0}, {"egrep", T_PFLAG, 0},
    {"fgrep", T_PFLAG, 0}, {"rg", T_PFLAG, 0}, {"find", T_PFLAG, 0}, {"ps", T_PFLAG, 0},
    {"patch", T_PFLAG, 0}, {"df", T_PFLAG, 0}, {"du", T_PFLAG, 0}, {"pwd", T_PFLAG, 0},
    {"realpath", T_PFLAG, 0}, {"chown", T_PFLAG, 0}, {"chgrp", T_PFLAG, 0},
    {"perl", T_PFLAG, 0}, {"ruby", T_PFLAG, 0}, {"python", T_PFLAG, 0},
    {"python3", T_PFLAG, 0}, {"cd", T_PFLAG, 0}, {"ssh-keygen", T_PFLAG, 0},
    {"unshare", T_PFLAG, 0}, {"nsenter", T_PFLAG, 0}, {"date", T_PFLAG, 0},
    {"cc", T_PFLAG, 0}, {"gcc", T_PFLAG, 0}, {"g++", T_PFLAG, 0}, {"c++", T_PFLAG, 0},
    {"clang", T_PFLAG, 0}, {"clang++", T_PFLAG, 0}, {"ld", T_PFLAG, 0}, {"cpp", T_PFLAG, 0},
    {"java", T_PFLAG, 0}, {"make", T_PFLAG, 0},
};

/* The tool a program word names (its basename), or -1 when unknown. */
static int tool_of(const char *w, size_t n, unsigned *flags) {
  for (size_t i = n; i > 0; i--)
    if (w[i - 1] == '/') {
      w += i;
      n -= i;
      break;
    }
  for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++)
    if (strlen(tools[i].name) == n && memcmp(tools[i].name, w, n) == 0) {
      *flags = tools[i].flags;
      return tools[i].tool;
    }
  return -1;
}

/* ---- one command's words ---- */

enum next { N_PLAIN, N_SECRET, N_USER, N_PORT, N_SQL, N_SCRIPT, N_OPTVAL };

typedef struct walker {
  int tool;           /* enum tool */
  unsigned flags;     /* F_* of the tool */
  int have_program;   /* the program word was seen (else words are VAR=x or the program) */
  int next;           /* enum next: what the following word is */
  int positional;     /* positional words seen since the program */
  int options_done;   /* after "--" */
  int depth;          /* shell nesting */
} walker;

static void walker_init(walker *w, int depth) {
  memset(w, 0, sizeof *w);
  w->depth = depth;
}

static void set_program(walker *w, const char *a, size_t n) {
  unsigned f = 0;
  int t = tool_of(a, n, &f);
  w->tool = t < 0 ? T_OTHER : t;
  w->flags = f;
  w->have_program = 1;
  w->positional = 0;
  w->options_done = 0;
}

static void redact_script(const char *s, size_t n, int depth, out *o);

/* SQL with its literals replaced; in dialects where "..." is a string, those too. */
static void redact_sql(const walker *w, const char *a, size_t n, out *o) {
  size_t start = o->n;
  o->n += ss__sql_scrub(a, n, o->p + o->n, o->cap - o->n);
  if (!(w->flags & F_DQ_STRING)) return;
  size_t r = start, wr = start; /* in place: the result only shrinks */
  while (r < o->n) {
    if (o->p[r] == '"') {
      size_t e = r + 1;
      while (e < o->n && o->p[e] != '"') e++;
      o->p[wr++] = '?';
      r = e < o->n ? e + 1 : o->n;
    } else {
      o->p[wr++] = o->p[r++];
    }
  }
  o->n = wr;
}

/* `user:secret` (and smbclient's `user%secret`) keeps the user. */
static void redact_user(const char *a, size_t n, out *o) {
  const char *colon = memchr(a, ':', n), *pct = memchr(a, '%', n);
  if (pct && (colon == NULL || pct < colon)) colon = pct;
  if (colon == NULL || url_at(a, n, 0)) {
    redact_text(a, n, o);
    return;
  }
  put(o, a, (size_t)(colon - a) + 1);
  PUTS(o, "REDACTED");
}

/* A value the previous word announced; 1 if it was handled, 0 to treat it as a word. */
static int announced(walker *w, int what, const char *a, size_t n, out *o) {
  int option = n > 1 && a[0] == '-' && !w->options_done;
  switch (what) {
    case N_SECRET:
      if (option) return 0;
      PUTS(o, "REDACTED");
      return 1;
    case N_PORT:
      if (option) return 0;
      if (all_digits(a, n)) put(o, a, n);
      else PUTS(o, "REDACTED");
      return 1;
    case N_USER:
      if (option) return 0;
      redact_user(a, n, o);
      return 1;
    case N_SQL:
      if (option) return 0;
      redact_sql(w, a, n, o);
      return 1;
    case N_SCRIPT:
      if (option) return 0;
      redact_script(a, n, w->depth + 1, o);
      return 1;
    case N_OPTVAL:
      redact_text(a, n, o);
      return 1;
    default:
      return 0;
  }
}

static int is_sql_option(const char *name, size_t n) {
  static const char names[][LISTWORD_MAX] = {"command", "execute", "query", "cmd", "sql", ""};
  return word_in(name, n, names);
}

/* --name, --name=value (and sqlite3-style -name). */
static void long_option(walker *w, const char *a, size_t n, out *o) {
  const char *name = a;
  while (name < a + n && *name == '-') name++;
  const char *eq = memchr(name, '=', (size_t)(a + n - name));
  size_t nl = eq ? (size_t)(eq - name) : (size_t)(a + n - name);
  const char *val = eq ? eq + 1 : NULL;
  size_t vl = eq ? (size_t)(a + n - val) : 0;
  int sql = (w->tool == T_SQL || w->tool == T_SQL_POS) && is_sql_option(name, nl);
  if (secret_name(name, nl)) {
    if (val) {
      put(o, a, (size_t)(val - a));
      PUTS(o, "REDACTED");
    } else {
      put(o, a, n);
      w->next = N_SECRET;
    }
  } else if (user_name(name, nl)) {
    if (val) {
      put(o, a, (size_t)(val - a));
      redact_user(val, vl, o);
    } else {
      put(o, a, n);
      w->next = N_USER;
    }
  } else if (sql) {
    if (val) {
      put(o, a, (size_t)(val - a));
      redact_sql(w, val, vl, o);
    } else {
      put(o, a, n);
      w->next = N_SQL;
    }
  } else {
    redact_text(a, n, o);
  }
}

/* Letters of ssh's options that take a value. */
static const char ssh_valued[] = "BbcDEeFIiJLlmOoQRSWw";

static void short_option_word(walker *w, const char *a, size_t n, out *o);

/* -x, -xVALUE, or a cluster of flags (-lc). */
static void short_option(walker *w, const char *a, size_t n, out *o) {
  /* A single-dash long name that is a credential's (-pass X, -password X, -token X)
   * announces its value, whatever its first letter's rule makes of the word itself
   * (-pass is also -p with "ass": redacted, more than needed, never less). */
  int lower = n > 3 && memchr(a, '=', n) == NULL;
  for (size_t i = 1; i < n && lower; i++)
    lower = (a[i] >= 'a' && a[i] <= 'z') || is_digit(a[i]) || a[i] == '-' || a[i] == '_';
  if (lower && secret_name(a + 1, n - 1)) {
    short_option_word(w, a, n, o);
    if (w->next == N_PLAIN) w->next = N_SECRET;
    return;
  }
  short_option_word(w, a, n, o);
}

static void short_option_word(walker *w, const char *a, size_t n, out *o) {
  char c = a[1];
  const char *rest = a + 2;
  size_t rl = n - 2;
  if (w->tool == T_SHELL && memchr(a + 1, 'c', n - 1)) {
    int letters = 1;
    for (size_t i = 1; i < n; i++) letters &= is_alpha(a[i]);
    if (letters) {
      put(o, a, n);
      w->next = N_SCRIPT;
      return;
    }
  }
  if ((w->tool == T_SQL || w->tool == T_SQL_POS) &&
      (c == 'c' || c == 'e' || c == 'q' || c == 'Q')) {
    put(o, a, 2);
    if (rl) redact_sql(w, rest, rl, o);
    else w->next = N_SQL;
    return;
  }
  if (w->tool == T_SECRET_OPT && c == (char)(w->flags & 0xff)) {
    put(o, a, 2);
    if (rl) PUTS(o, "REDACTED");
    else w->next = N_SECRET;
    return;
  }
  if ((c == 'p' || c == 'P') && w->tool != T_PFLAG && !(w->flags & F_PFLAG)) {
    put(o, a, 2);
    if (rl == 0) w->next = N_PORT;
    else if (all_digits(rest, rl)) put(o, rest, rl);
    else PUTS(o, "REDACTED");
    return;
  }
  if ((c == 'u' || c == 'U') && w->tool != T_PFLAG && !(w->flags & F_PFLAG)) {
    put(o, a, 2);
    if (rl) redact_user(rest, rl, o);
    else w->next = N_USER;
    return;
  }
  if (w->tool == T_SSH && rl == 0 && strchr(ssh_valued, c)) w->next = N_OPTVAL;
  redact_text(a, n, o);
}

/* Redacts one word of a command into o. */
static void walker_word(walker *w, const char *a, size_t n, out *o) {
  int what = w->next;
  w->next = N_PLAIN;
  if (what != N_PLAIN && announced(w, what, a, n, o)) return;
  if (!w->have_program) {
    const char *eq = memchr(a, '=', n);
    if (eq && eq > a && memchr(a, '/', (size_t)(eq - a)) == NULL) { /* VAR=value */
      redact_text(a, n, o);
      return;
    }
    set_program(w, a, n);
    redact_text(a, n, o);
    return;
  }
  if (n > 1 && a[0] == '-' && !w->options_done) {
    if (n == 2 && a[1] == '-') {
      w->options_done = 1;
      put(o, a, n);
    } else if (a[1] == '-' || (w->tool == T_SQL_POS && n > 2)) {
      long_option(w, a, n, o);
    } else {
      short_option(w, a, n, o);
    }
    return;
  }
  /* A positional word. A wrapper's first plain word, or a known tool's name anywhere,
   * starts that tool's rules (`sudo -u x psql`, `docker exec c sh -c ...`). */
  unsigned f;
  int t = tool_of(a, n, &f);
  if ((w->tool == T_WRAPPER && !is_digit(a[0]) && memchr(a, '=', n) == NULL) ||
      (t >= 0 && t != T_PFLAG)) {
    set_program(w, a, n);
    redact_text(a, n, o);
    return;
  }
  w->positional++;
  if (w->tool == T_SQL_POS && w->positional > 1) {
    redact_sql(w, a, n, o);
  } else if (w->tool == T_SSH && w->positional > 1) {
    redact_script(a, n, w->depth + 1, o);
  } else {
    redact_text(a, n, o);
  }
}

/* ---- shell scripts ---- */

#define MAX_DEPTH 4 /* shells inside shells read; a deeper script is REDACTED whole */
#define WORD_MAX 8192

/* Scratch per nesting level (1..MAX_DEPTH): the current word's value and its redaction. */
static struct level {
  char val[WORD_MAX];
  char red[WORD_MAX];
} levels[MAX_DEPTH + 1];

static int shell_sep(char c) {
  return c == ';' || c == '&' || c == '|' || c == '\n' || c == '(' || c == ')' || c == '`' ||
         c == '{' || c == '}';
}

/* Whether a word can be written back without quotes. */
static int shell_plain(const char *s, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++)
    if (!is_alnum(s[i]) && !strchr("_@%+=:,./-?", s[i])) return 0;
  return 1;
}

static void put_shell_quoted(out *o, const char *s, size_t n) {
  if (shell_plain(s, n)) {
    put(o, s, n);
    return;
  }
  put1(o, '\'');
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '\'') PUTS(o, "'\\''");
    else put1(o, s[i]);
  }
  put1(o, '\'');
}

/* Reads the word starting at s[i] into val (its value, quotes removed, as the shell would
 * pass it); returns the offset after it. *too_long when val could not hold it. */
static size_t read_word(const char *s, size_t n, size_t i, char *val, size_t *vl, int *too_long) {
  size_t k = 0;
  *too_long = 0;
#define VAL(c) (k < WORD_MAX ? (void)(val[k++] = (c)) : (void)(*too_long = 1))
  while (i < n && !is_space(s[i])) {
    char c = s[i];
    if (shell_sep(c) && !(c == '&' && i > 0 && (s[i - 1] == '>' || s[i - 1] == '<')) &&
        !(c == '(' && i > 0 && s[i - 1] == '$'))
      break;
    if (c == '\'') {
      for (i++; i < n && s[i] != '\''; i++) VAL(s[i]);
      i++;
    } else if (c == '"') {
      for (i++; i < n && s[i] != '"'; i++) {
        if (s[i] == '\\' && i + 1 < n && strchr("\"\\$`\n", s[i + 1])) i++;
        VAL(s[i]);
      }
      i++;
    } else if (c == '\\' && i + 1 < n) {
      VAL(s[i + 1]);
      i += 2;
    } else {
      VAL(c);
      i++;
    }
  }
#undef VAL
  *vl = k;
  return i < n ? i : n;
}

static void redact_script(const char *s, size_t n, int depth, out *o) {
  if (depth > MAX_DEPTH) {
    PUTS(o, "REDACTED");
    return;
  }
  struct level *lv = &levels[depth];
  walker w;
  walker_init(&w, depth);
  size_t i = 0, emitted = 0;
  while (i < n && o->n < o->cap) {
    if (is_space(s[i]) && s[i] != '\n') {
      i++;
      continue;
    }
    if (shell_sep(s[i]) || s[i] == '#') {
      if (s[i] == '#') /* a comment: to the end of the line, redacted as text */
        while (i < n && s[i] != '\n') i++;
      else
        i++;
      walker_init(&w, depth);
      continue;
    }
    size_t vl, start = i;
    int too_long;
    i = read_word(s, n, i, lv->val, &vl, &too_long);
    redact_text(s + emitted, start - emitted, o); /* blanks, operators, comments */
    emitted = i;
    if (too_long) {
      PUTS(o, "REDACTED");
      continue;
    }
    out r = {lv->red, 0, sizeof lv->red};
    walker_word(&w, lv->val, vl, &r);
    if (r.n == vl && memcmp(r.p, lv->val, vl) == 0) put(o, s + start, i - start);
    else put_shell_quoted(o, r.p, r.n);
  }
  redact_text(s + emitted, n - emitted, o);
}

/* ---- argv ---- */

/* Cut to at most max bytes, never inside a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t n, size_t max) {
  if (n <= max) return n;
  while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80) max--;
  return max;
}

/* n, or less so that s does not end inside a UTF-8 sequence (text cut by a full buffer). */
static size_t utf8_whole(const char *s, size_t n) {
  size_t k = n;
  while (k > 0 && n - k < 4 && ((unsigned char)s[k - 1] & 0xC0) == 0x80) k--;
  if (k == 0) return n;
  unsigned char lead = (unsigned char)s[k - 1];
  size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  return n - (k - 1) >= want ? n : k - 1;
}

size_t ss__argv_redact(int argc, char *const *argv, int full, size_t item_max, char *dst,
                       size_t cap) {
  walker w;
  walker_init(&w, 0);
  size_t used = 0;
  for (int i = 0; i < argc && argv && argv[i]; i++) {
    if (used + 1 >= cap) break;
    out o = {dst + used, 0, cap - used - 1};
    size_t n = strlen(argv[i]);
    if (full) put(&o, argv[i], n);
    else walker_word(&w, argv[i], n, &o);
    size_t len = o.n;
    if (item_max && len > item_max) len = utf8_cut(o.p, len, item_max);
    else if (len == o.cap) len = utf8_whole(o.p, len); /* cut by cap */
    used += len;
    dst[used++] = '\0';
  }
  return used;
}
