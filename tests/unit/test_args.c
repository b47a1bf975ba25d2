/* process.command_args must never carry a credential, and must stay readable: each row is
 * an argv as typed and what the exported attribute holds. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "runtime/sanitize.h"

#define MAXW 12

static const struct {
  const char *argv[MAXW];
  const char *want[MAXW];
} rows[] = {
    /* URL userinfo, key=value, conninfo (quoted values whole) */
    {{"psql", "postgresql://alice:s3cret@db/app", NULL},
     {"psql", "postgresql://REDACTED:REDACTED@db/app", NULL}},
    {{"psql", "host=db user=bob password=pw123 dbname=x", NULL},
     {"psql", "host=db user=bob password=REDACTED dbname=x", NULL}},
    {{"psql", "host=db password='a b c' dbname=app", NULL},
     {"psql", "host=db password=REDACTED dbname=app", NULL}},
    {{"psql", "host=db password=\"a \\\" b\" dbname=app", NULL},
     {"psql", "host=db password=REDACTED dbname=app", NULL}},
    {{"ls", "-la", "/tmp", "a=b", NULL}, {"ls", "-la", "/tmp", "a=b", NULL}},
    {{"git", "clone", "https://user@github.com/x.git", NULL},
     {"git", "clone", "https://REDACTED:REDACTED@github.com/x.git", NULL}},
    {{"curl", "https://s3/b/k?X-Amz-Signature=abc&X-Amz-Credential=AK%2F1&x=1", NULL},
     {"curl", "https://s3/b/k?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&x=1", NULL}},
    {{"curl", "https://h/cb?token=t&page=2#access_token=z", NULL},
     {"curl", "https://h/cb?token=REDACTED&page=2#access_token=REDACTED", NULL}},
    {{"curl", "-d", "user=bob&password=pw&remember=1", "http://h/login", NULL},
     {"curl", "-d", "user=bob&password=REDACTED&remember=1", "http://h/login", NULL}},
    {{"java", "-Djavax.net.ssl.keyStorePassword=pw", "-Dfoo=bar", "-jar", "x.jar", NULL},
     {"java", "-Djavax.net.ssl.keyStorePassword=REDACTED", "-Dfoo=bar", "-jar", "x.jar", NULL}},
    {{"docker", "run", "-e", "POSTGRES_PASSWORD=pw", "-e", "MODE=dev", "postgres", NULL},
     {"docker", "run", "-e", "POSTGRES_PASSWORD=REDACTED", "-e", "MODE=dev", "postgres", NULL}},
    /* credential-named options, = or next argument */
    {{"mysql", "--password=hunter2", "-h", "db", NULL},
     {"mysql", "--password=REDACTED", "-h", "db", NULL}},
    {{"tool", "--password", "hunter2", "next", NULL},
     {"tool", "--password", "REDACTED", "next", NULL}},
    {{"/bin/true", "-pass", "hunter2j", "-token=t0k", "-p", "5432", NULL},
     {"/bin/true", "-pREDACTED", "REDACTED", "-token=REDACTED", "-p", "5432", NULL}},
    {{"curl", "-d", "{\"user\":\"bob\",\"password\":\"hunter2v\"}", NULL},
     {"curl", "-d", "{\"user\":\"bob\",\"password\":\"REDACTED\"}", NULL}},
    {{"tool", "{'api_key': 12345, \"n\": 1}", "{\"secret\" : true}", NULL},
     {"tool", "{'api_key': REDACTED, \"n\": 1}", "{\"secret\" : REDACTED}", NULL}},
    {{"wget", "--http-password=pw", "--http-user=bob", "http://h/", NULL},
     {"wget", "--http-password=REDACTED", "--http-user=bob", "http://h/", NULL}},
    {{"curl", "--oauth2-bearer", "tok", "http://h/", NULL},
     {"curl", "--oauth2-bearer", "REDACTED", "http://h/", NULL}},
    {{"gpg", "--passphrase", "pp", "--batch", NULL}, {"gpg", "--passphrase", "REDACTED", "--batch", NULL}},
    {{"aws", "--secret-key", "sk", "s3", "ls", NULL},
     {"aws", "--secret-key", "REDACTED", "s3", "ls", NULL}},
    {{"gh", "auth", "login", "--with-token", "ghp_x", NULL},
     {"gh", "auth", "login", "--with-token", "REDACTED", NULL}},
    {{"redis-server", "--requirepass", "pw", "--masterauth", "m", "--port", "6379", NULL},
     {"redis-server", "--requirepass", "REDACTED", "--masterauth", "REDACTED", "--port", "6379",
      NULL}},
    /* ...but not where the name says the value is not the secret, or no value follows */
    {{"docker", "login", "--password-stdin", "-u", "bob", "registry", NULL},
     {"docker", "login", "--password-stdin", "-u", "bob", "registry", NULL}},
    {{"tool", "--token-file", "/etc/tok", "--no-password", "db", NULL},
     {"tool", "--token-file", "/etc/tok", "--no-password", "db", NULL}},
    {{"psql", "--password", "-h", "db", NULL}, {"psql", "--password", "-h", "db", NULL}},
    /* user:password */
    {{"curl", "-u", "bob:pw", "--proxy-user=al:pw", "--user=x:pw", "-Ux:pw", NULL},
     {"curl", "-u", "bob:REDACTED", "--proxy-user=al:REDACTED", "--user=x:REDACTED",
      "-Ux:REDACTED", NULL}},
    {{"mysql", "-uroot", "-pSECRET", "-h", "db", "mydb", NULL},
     {"mysql", "-uroot", "-pREDACTED", "-h", "db", "mydb", NULL}},
    {{"curl", "-ubob:pw", "http://h/", NULL}, {"curl", "-ubob:REDACTED", "http://h/", NULL}},
    /* -p/-P: ports stay, anything else goes; tools where -p is a flag stay readable */
    {{"psql", "-X", "-h", "127.0.0.1", "-p", "5432", "-U", "app", NULL},
     {"psql", "-X", "-h", "127.0.0.1", "-p", "5432", "-U", "app", NULL}},
    {{"ssh", "-p", "22", "-P22", "host", NULL}, {"ssh", "-p", "22", "-P22", "host", NULL}},
    {{"sshpass", "-p", "pw", "ssh", "host", NULL}, {"sshpass", "-p", "REDACTED", "ssh", "host", NULL}},
    {{"docker", "login", "-u", "bob", "-p", "pw", "registry", NULL},
     {"docker", "login", "-u", "bob", "-p", "REDACTED", "registry", NULL}},
    {{"zip", "-P", "pw", "out.zip", "f", NULL}, {"zip", "-P", "REDACTED", "out.zip", "f", NULL}},
    {{"mkdir", "-p", "/srv/data", NULL}, {"mkdir", "-p", "/srv/data", NULL}},
    {{"grep", "-P", "x\\d+", "file", NULL}, {"grep", "-P", "x\\d+", "file", NULL}},
    {{"cc", "-pthread", "-O2", "-o", "x", "x.c", NULL},
     {"cc", "-pthread", "-O2", "-o", "x", "x.c", NULL}},
    {{"redis-cli", "-h", "h", "-p", "6379", "-a", "pw", "ping", NULL},
     {"redis-cli", "-h", "h", "-p", "6379", "-a", "REDACTED", "ping", NULL}},
    {{"redis-cli", "-apw", "ping", NULL}, {"redis-cli", "-aREDACTED", "ping", NULL}},
    {{"ls", "-a", "/tmp", NULL}, {"ls", "-a", "/tmp", NULL}},
    {{"ldapsearch", "-x", "-D", "cn=admin", "-w", "pw", "-H", "ldap://h", NULL},
     {"ldapsearch", "-x", "-D", "cn=admin", "-w", "REDACTED", "-H", "ldap://h", NULL}},
    {{"openssl", "enc", "-aes256", "-k", "pw", "-in", "f", NULL},
     {"openssl", "enc", "-aes256", "-k", "REDACTED", "-in", "f", NULL}},
    {{"smbclient", "//h/share", "-U", "bob%pw", NULL},
     {"smbclient", "//h/share", "-U", "bob%REDACTED", NULL}},
    /* header-like arguments */
    {{"curl", "-H", "Authorization: Bearer eyJ", "-H", "X-Auth-Token: t", "-H",
      "PRIVATE-TOKEN: t", "-HAuthorization: Bearer x", "-H", "Accept: text/plain", NULL},
     {"curl", "-H", "Authorization: REDACTED", "-H", "X-Auth-Token: REDACTED", "-H",
      "PRIVATE-TOKEN: REDACTED", "-HAuthorization: REDACTED", "-H", "Accept: text/plain", NULL}},
    {{"curl", "-H", "cookie: session=1", "-H", "X-Api-Key:k", NULL},
     {"curl", "-H", "cookie: REDACTED", "-H", "X-Api-Key:REDACTED", NULL}},
    {{"git", "-c", "http.extraheader=AUTHORIZATION: basic eHk=", "clone", "https://h/r", NULL},
     {"git", "-c", "http.extraheader=AUTHORIZATION: REDACTED", "clone", "https://h/r", NULL}},
    {{"tool", "password: x", "--header=Bearer abc", NULL},
     {"tool", "password: REDACTED", "--header=Bearer REDACTED", NULL}},
    {{"openssl", "enc", "-passin", "pass:pw", "-in", "f", NULL},
     {"openssl", "enc", "-passin", "pass:REDACTED", "-in", "f", NULL}},
    {{"git", "commit", "-m", "fix: rotate the api key handling", NULL},
     {"git", "commit", "-m", "fix: rotate the api key handling", NULL}},
    /* SQL clients: literals of -c/-e/--command strings */
    {{"psql", "-h", "db", "-c", "select * from t where pw = 'x' and n = 42", "app", NULL},
     {"psql", "-h", "db", "-c", "select * from t where pw = ? and n = ?", "app", NULL}},
    {{"psql", "--command=alter user app password 'pw'", NULL},
     {"psql", "--command=alter user app password ?", NULL}},
    {{"mysql", "-e", "select \"pw\", 'pw2' from t", NULL},
     {"mysql", "-e", "select ?, ? from t", NULL}},
    {{"sqlite3", "db.sqlite", "insert into t values ('pw')", NULL},
     {"sqlite3", "db.sqlite", "insert into t values (?)", NULL}},
    {{"clickhouse-client", "--query", "select 'pw'", NULL},
     {"clickhouse-client", "--query", "select ?", NULL}},
    {{"sudo", "-u", "postgres", "psql", "-c", "alter user x password 'pw'", NULL},
     {"sudo", "-u", "postgres", "psql", "-c", "alter user x password ?", NULL}},
    {{"env", "A=1", "PGPASSWORD=pw", "psql", "-c", "select 'pw'", NULL},
     {"env", "A=1", "PGPASSWORD=REDACTED", "psql", "-c", "select ?", NULL}},
    {{"docker", "exec", "db", "psql", "-c", "select 'pw'", NULL},
     {"docker", "exec", "db", "psql", "-c", "select ?", NULL}},
    /* shell -c scripts: each command by the same rules, replaced words re-quoted */
    {{"sh", "-c", "export API_TOKEN=abc; run", NULL},
     {"sh", "-c", "export API_TOKEN=REDACTED; run", NULL}},
    {{"sh", "-c",
      "PGPASSWORD=pw psql -h db -c \"select 'x'\" && curl -u u:pw https://h/ | redis-cli -a pw "
      "ping",
      NULL},
     {"sh", "-c",
      "PGPASSWORD=REDACTED psql -h db -c 'select ?' && curl -u u:REDACTED https://h/ | "
      "redis-cli -a REDACTED ping",
      NULL}},
    {{"bash", "-lc", "mysql --password pw -e 'select 1'; mkdir -p /srv/x # token=t", NULL},
     {"bash", "-lc", "mysql --password REDACTED -e 'select ?'; mkdir -p /srv/x # token=REDACTED",
      NULL}},
    {{"bash", "-c", "curl -H \"X-Auth-Token: t\" http://h/", NULL},
     {"bash", "-c", "curl -H 'X-Auth-Token: REDACTED' http://h/", NULL}},
    {{"sh", "-c", "sh -c \"psql -c \\\"select 'pw'\\\"\"", NULL},
     {"sh", "-c", "sh -c 'psql -c '\\''select ?'\\'''", NULL}},
    {{"kubectl", "exec", "pod", "--", "bash", "-c", "run --api-key k", NULL},
     {"kubectl", "exec", "pod", "--", "bash", "-c", "run --api-key REDACTED", NULL}},
    {{"ssh", "-i", "key", "host", "mysql -ppw -e \"select 'x'\"", NULL},
     {"ssh", "-i", "key", "host", "mysql -pREDACTED -e 'select ?'", NULL}},
    {{"sh", "-c", "echo hi | grep -P \"\\d\" > /tmp/o 2>&1", NULL},
     {"sh", "-c", "echo hi | grep -P \"\\d\" > /tmp/o 2>&1", NULL}},
};

static void check_row(int i) {
  char *argv[MAXW] = {0};
  int argc = 0;
  while (rows[i].argv[argc]) {
    argv[argc] = (char *)rows[i].argv[argc];
    argc++;
  }
  char out[4096];
  size_t n = ss__argv_redact(argc, argv, 0, 0, out, sizeof out);
  size_t off = 0;
  for (int k = 0; k < argc; k++) {
    ck_assert_msg(off < n, "row %d: item %d missing", i, k);
    ck_assert_msg(strcmp(out + off, rows[i].want[k]) == 0, "row %d item %d: got [%s] want [%s]",
                  i, k, out + off, rows[i].want[k]);
    off += strlen(out + off) + 1;
  }
  ck_assert_uint_eq(off, n);
}

START_TEST(test_credentials_in_arguments_are_redacted) {
  check_row(_i);
}
END_TEST

static size_t items(char *const *argv, int argc, int full, size_t max, char *out, size_t cap) {
  return ss__argv_redact(argc, argv, full, max, out, cap);
}

START_TEST(test_each_item_is_cut_to_the_limit_not_the_array) {
  char *argv[] = {"prog", "0123456789", "ab", "h\xc3\xa9llo"};
  char out[256];
  size_t n = items(argv, 4, 0, 4, out, sizeof out);
  const char want[] = "prog\0" "0123\0" "ab\0" "h\xc3\xa9" "l";
  ck_assert_uint_eq(n, sizeof want);
  ck_assert(memcmp(out, want, n) == 0);
  /* a cut never splits a UTF-8 sequence: 'h' + 2-byte é does not fit in 2 */
  n = items(argv + 3, 1, 0, 2, out, sizeof out);
  ck_assert_uint_eq(n, 2);
  ck_assert(memcmp(out, "h", 2) == 0);
}
END_TEST

START_TEST(test_full_mode_copies_and_the_buffer_bounds_the_output) {
  char *argv[] = {"mysql", "-pSECRET", "plain-argument-longer-than-ten"};
  char out[64];
  size_t n = items(argv, 2, 1, 0, out, sizeof out);
  ck_assert_uint_eq(n, 15);
  ck_assert_str_eq(out + 6, "-pSECRET");
  char small[20];
  n = items(argv, 3, 0, 0, small, sizeof small);
  ck_assert_uint_le(n, sizeof small);
  ck_assert_str_eq(small, "mysql");
  ck_assert_str_eq(small + 6, "-pREDACTED");
  ck_assert_uint_eq(n, 20); /* the third item cut to what is left, NUL-terminated */
  ck_assert_str_eq(small + 17, "pl");
}
END_TEST

/* `sh -c 'inner'` with inner quoted for the shell. */
static void wrap(char *script, size_t cap) {
  char tmp[2048] = "sh -c '";
  size_t k = strlen(tmp);
  for (const char *p = script; *p && k + 5 < sizeof tmp; p++) {
    if (*p == '\'') {
      memcpy(tmp + k, "'\\''", 4);
      k += 4;
    } else {
      tmp[k++] = *p;
    }
  }
  tmp[k++] = '\'';
  tmp[k] = '\0';
  snprintf(script, cap, "%s", tmp);
}

START_TEST(test_shells_four_deep_are_read_a_fifth_hidden) {
  char script[2048] = "echo token=t1 done";
  for (int depth = 1; depth <= 5; depth++) {
    char *argv[] = {"sh", "-c", script};
    char out[4096];
    size_t n = ss__argv_redact(3, argv, 0, 0, out, sizeof out);
    const char *s = out + 6; /* after "sh\0-c\0" */
    ck_assert_uint_gt(n, 6);
    ck_assert_ptr_null(strstr(s, "t1"));
    if (depth <= 4) ck_assert_ptr_nonnull(strstr(s, "token=REDACTED done"));
    else ck_assert_ptr_null(strstr(s, "echo"));
    wrap(script, sizeof script);
  }
}
END_TEST

static const char *text(const char *in) {
  static char out[1024];
  size_t n = ss__text_redact(in, strlen(in), out, sizeof out - 1);
  out[n] = '\0';
  return out;
}

START_TEST(test_free_text) {
  ck_assert_str_eq(text("invalid URI \"postgresql://u:pw@h/db\""),
                   "invalid URI \"postgresql://REDACTED:REDACTED@h/db\"");
  ck_assert_str_eq(text("user=a password = 'x y' host=h"), "user=a password =REDACTED host=h");
  ck_assert_str_eq(text("Authorization: Bearer abc\nnext line"),
                   "Authorization: REDACTED\nnext line");
  ck_assert_str_eq(text("sent bearer abc.def to h"), "sent bearer REDACTED to h");
  ck_assert_str_eq(text("connection to server at \"127.0.0.1\", port 5433 failed: refused"),
                   "connection to server at \"127.0.0.1\", port 5433 failed: refused");
  ck_assert_str_eq(text("a==b key1=v\ntoken:x"), "a==b key1=REDACTED\ntoken:REDACTED");
  /* in prose a lowercase word before ':' is not a header; a header-like name is */
  ck_assert_str_eq(text("invalid percent-encoded token: \"x\""),
                   "invalid percent-encoded token: \"x\"");
  ck_assert_str_eq(text("sent X-Auth-Token: t"), "sent X-Auth-Token: REDACTED");
  ck_assert_str_eq(text("body {\"password\": \"p w\", \"ok\": 1}"),
                   "body {\"password\": \"REDACTED\", \"ok\": 1}");
  ck_assert_str_eq(text(""), "");
}
END_TEST

int main(void) {
  Suite *s = suite_create("args");
  TCase *tc = tcase_create("redact");
  tcase_add_loop_test(tc, test_credentials_in_arguments_are_redacted, 0,
                      (int)(sizeof rows / sizeof rows[0]));
  tcase_add_test(tc, test_each_item_is_cut_to_the_limit_not_the_array);
  tcase_add_test(tc, test_full_mode_copies_and_the_buffer_bounds_the_output);
  tcase_add_test(tc, test_free_text);
  tcase_add_test(tc, test_shells_four_deep_are_read_a_fifth_hidden);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
