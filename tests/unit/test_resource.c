/* test_resource.c - the process resource: service.name precedence, OTEL_RESOURCE_ATTRIBUTES
 * parsing, detected attributes. */
#include <check.h>
#include <sys/wait.h>
#include <unistd.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "runtime/log.h"
#include "runtime/resource.h"

static int log_fd = -1;

static void setup(void) {
  log_fd = memfd_create("diag", 0);
  ck_assert_int_ge(log_fd, 0);
  ss__log_setup(SS_LOG_WARN, log_fd, "spanshim");
}

static void teardown(void) {
  ss__log_setup(SS_LOG_OFF, 2, "spanshim");
  close(log_fd);
}

static int diag_lines(void) {
  char buf[4096];
  ssize_t n = pread(log_fd, buf, sizeof(buf), 0);
  int lines = 0;
  for (ssize_t i = 0; i < n; i++)
    lines += buf[i] == '\n';
  return lines;
}

static const ss__attr *find(const ss__resource *r, const char *key) {
  const ss__attr *found = NULL;
  for (size_t i = 0; i < r->n_attrs; i++)
    if (strcmp(r->attrs[i].key, key) == 0) {
      ck_assert_msg(found == NULL, "key %s appears twice", key);
      found = &r->attrs[i];
    }
  return found;
}

/* The string value of key, as a NUL-terminated copy (static), or NULL. */
static const char *str(const ss__resource *r, const char *key) {
  static char buf[512];
  const ss__attr *a = find(r, key);
  if (a == NULL)
    return NULL;
  ck_assert_int_eq(a->type, SS_ATTR_STR);
  ck_assert_uint_lt(a->len, sizeof(buf));
  memcpy(buf, a->v.s, a->len);
  buf[a->len] = '\0';
  return buf;
}

static void build(ss__resource *r, const char *service, const char *attrs) {
  ss__config c;
  memset(&c, 0, sizeof(c));
  c.service_name = (char *)service;
  c.resource_attributes = (char *)attrs;
  ck_assert_int_eq(ss__resource_build(r, &c), 0);
}

static void assert_no_duplicate_keys(const ss__resource *r) {
  for (size_t i = 0; i < r->n_attrs; i++)
    for (size_t j = i + 1; j < r->n_attrs; j++)
      ck_assert_str_ne(r->attrs[i].key, r->attrs[j].key);
}

START_TEST(test_default_service_name_is_unknown_service_exe) {
  ss__resource r;
  build(&r, NULL, NULL);
  ck_assert_str_eq(str(&r, "service.name"), "unknown_service:test_resource");
  ck_assert_str_eq(str(&r, "process.executable.name"), "test_resource");
  ss__resource_free(&r);
}
END_TEST

START_TEST(test_service_name_precedence) {
  ss__resource r;
  build(&r, NULL, "service.name=from-attrs");
  ck_assert_str_eq(str(&r, "service.name"), "from-attrs");
  ss__resource_free(&r);
  build(&r, "from-env", "service.name=from-attrs");
  ck_assert_str_eq(str(&r, "service.name"), "from-env");
  ss__resource_free(&r);
  build(&r, NULL, "service.name=");
  ck_assert_str_eq(str(&r, "service.name"), "unknown_service:test_resource");
  ss__resource_free(&r);
}
END_TEST

START_TEST(test_percent_decoding_and_trimming) {
  ss__resource r;
  build(&r, NULL, " team = pay%20ments , note=a%2Cb%3Dc%25 ,%6Bey=v, sp=%20x%20 ");
  ck_assert_str_eq(str(&r, "team"), "pay ments");
  ck_assert_str_eq(str(&r, "note"), "a,b=c%");
  ck_assert_str_eq(str(&r, "key"), "v");
  ck_assert_str_eq(str(&r, "sp"), " x ");
  ck_assert_int_eq(diag_lines(), 0);
  ss__resource_free(&r);
}
END_TEST

/* The SDK environment-variable spec: any error discards the entire value. */
START_TEST(test_malformed_entry_discards_the_whole_value_with_one_diagnostic) {
  ss__resource r;
  build(&r, NULL, "good=1,novalue,=x,bad=%zz,short=%4,also=2,,trailing=%");
  ck_assert_ptr_null(find(&r, "good"));
  ck_assert_ptr_null(find(&r, "also"));
  ck_assert_str_eq(str(&r, "service.name"), "unknown_service:test_resource");
  ck_assert_ptr_null(find(&r, "novalue"));
  ck_assert_ptr_null(find(&r, "bad"));
  ck_assert_ptr_null(find(&r, "short"));
  ck_assert_ptr_null(find(&r, "trailing"));
  ck_assert_ptr_null(find(&r, ""));
  ck_assert_int_eq(diag_lines(), 1);
  assert_no_duplicate_keys(&r);
  ss__resource_free(&r);
  build(&r, NULL, "service.name=pay,team=x,oops");
  ck_assert_str_eq(str(&r, "service.name"), "unknown_service:test_resource");
  ck_assert_ptr_null(find(&r, "team"));
  ss__resource_free(&r);
}
END_TEST

START_TEST(test_empty_value_allowed) {
  ss__resource r;
  build(&r, NULL, "k=,k2= ");
  ck_assert_str_eq(str(&r, "k"), "");
  ck_assert_str_eq(str(&r, "k2"), "");
  ck_assert_int_eq(diag_lines(), 0);
  ss__resource_free(&r);
}
END_TEST

START_TEST(test_later_duplicate_wins_and_pid_is_ours) {
  ss__resource r;
  build(&r, NULL, "a=1,a=2,process.pid=1,host.name=override,telemetry.sdk.name=x");
  ck_assert_str_eq(str(&r, "a"), "2");
  const ss__attr *pid = find(&r, "process.pid");
  ck_assert_ptr_nonnull(pid);
  ck_assert_int_eq(pid->type, SS_ATTR_INT);
  ck_assert_int_eq(pid->v.i, getpid());
  ck_assert_str_eq(str(&r, "host.name"), "override"); /* the user knows better than us */
  ck_assert_str_eq(str(&r, "telemetry.sdk.name"), "spanshim");
  assert_no_duplicate_keys(&r);
  ss__resource_free(&r);
}
END_TEST

START_TEST(test_detected_attributes_present) {
  ss__resource r;
  char host[256] = "";
  build(&r, "svc", NULL);
  ck_assert_int_eq(gethostname(host, sizeof(host)), 0);
  ck_assert_str_eq(str(&r, "host.name"), host);
  ck_assert_str_eq(str(&r, "process.executable.name"), "test_resource");
  ck_assert_int_eq(find(&r, "process.pid")->v.i, getpid());
  ck_assert_str_eq(str(&r, "telemetry.sdk.name"), "spanshim");
  ck_assert_str_eq(str(&r, "telemetry.sdk.version"), SPANSHIM_VERSION);
  ck_assert_str_eq(str(&r, "telemetry.sdk.language"), "cpp");
  ck_assert_str_eq(str(&r, "process.command"), program_invocation_name);
  /* service.instance.id: a UUID v4 (8-4-4-4-12 hex, version nibble 4, variant 10xx) */
  const char *id = str(&r, "service.instance.id");
  ck_assert_uint_eq(strlen(id), 36);
  ck_assert(id[8] == '-' && id[13] == '-' && id[18] == '-' && id[23] == '-');
  ck_assert_int_eq(id[14], '4');
  ck_assert_ptr_nonnull(strchr("89ab", id[19]));
  /* process.creation.time: ISO 8601 UTC with milliseconds, within a minute of now */
  const char *ct = str(&r, "process.creation.time");
  struct tm tm = {0};
  ck_assert_uint_eq(strlen(ct), 24);
  ck_assert_ptr_nonnull(strptime(ct, "%Y-%m-%dT%H:%M:%S", &tm));
  ck_assert_int_eq(ct[23], 'Z');
  time_t made = timegm(&tm);
  ck_assert(made <= time(NULL) + 2 && made > time(NULL) - 600);
  ck_assert_uint_eq(r.n_attrs, 10);
  assert_no_duplicate_keys(&r);
  ss__resource_free(&r);
  ck_assert_ptr_null(r.attrs);
  ck_assert_ptr_null(r.storage);
  ck_assert_uint_eq(r.n_attrs, 0);
}
END_TEST

START_TEST(test_instance_id_is_one_per_process) {
  ss__resource a, b;
  build(&a, NULL, NULL);
  build(&b, NULL, NULL); /* the exporter's and an exit's resources: one process, one id */
  char first[64];
  snprintf(first, sizeof first, "%s", str(&a, "service.instance.id"));
  ck_assert_uint_eq(strlen(first), 36);
  ck_assert_str_eq(first, str(&b, "service.instance.id"));
  int p[2];
  ck_assert_int_eq(pipe(p), 0);
  pid_t pid = fork();
  if (pid == 0) { /* another process: its own id */
    ss__resource c;
    build(&c, NULL, NULL);
    ssize_t w = write(p[1], str(&c, "service.instance.id"), 36);
    _exit(w == 36 ? 0 : 1);
  }
  char child[37] = "";
  ck_assert_int_eq(read(p[0], child, 36), 36);
  int status;
  waitpid(pid, &status, 0);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ck_assert_str_ne(first, child);
  close(p[0]);
  close(p[1]);
  ss__resource_free(&a);
  ss__resource_free(&b);
}
END_TEST

START_TEST(test_many_entries) {
  ss__resource r;
  char attrs[4096];
  size_t n = 0;
  for (int i = 0; i < 200; i++)
    n += (size_t)snprintf(attrs + n, sizeof(attrs) - n, "k%d=v%d,", i, i);
  build(&r, NULL, attrs);
  ck_assert_uint_eq(r.n_attrs, 200 + 10);
  ck_assert_str_eq(str(&r, "k199"), "v199");
  ss__resource_free(&r);
}
END_TEST

int main(void) {
  Suite *s = suite_create("resource");
  TCase *tc = tcase_create("resource");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_default_service_name_is_unknown_service_exe);
  tcase_add_test(tc, test_service_name_precedence);
  tcase_add_test(tc, test_percent_decoding_and_trimming);
  tcase_add_test(tc, test_malformed_entry_discards_the_whole_value_with_one_diagnostic);
  tcase_add_test(tc, test_empty_value_allowed);
  tcase_add_test(tc, test_later_duplicate_wins_and_pid_is_ours);
  tcase_add_test(tc, test_detected_attributes_present);
  tcase_add_test(tc, test_instance_id_is_one_per_process);
  tcase_add_test(tc, test_many_entries);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
