/* test_config.c - configuration from the environment: defaults, valid values, one
 * diagnostic and the documented default for each malformed value, endpoint precedence,
 * the default socket path. The environment is a table behind a fake getenv. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "runtime/config.h"
#include "runtime/log.h"
#include "runtime/sanitize.h"

/* ---- fake environment ---- */
#define MAXENV 64
static const char *env_tab[MAXENV][2];
static int env_n;

static char *fake_getenv(const char *name) {
  for (int i = 0; i < env_n; i++)
    if (strcmp(env_tab[i][0], name) == 0)
      return (char *)env_tab[i][1];
  return NULL;
}

static void setenv_fake(const char *name, const char *value) {
  for (int i = 0; i < env_n; i++)
    if (strcmp(env_tab[i][0], name) == 0) {
      env_tab[i][1] = value;
      return;
    }
  ck_assert_int_lt(env_n, MAXENV);
  env_tab[env_n][0] = name;
  env_tab[env_n][1] = value;
  env_n++;
}

/* ---- captured diagnostics ---- */
static int log_fd = -1;

static void setup(void) {
  env_n = 0;
  log_fd = memfd_create("diag", 0);
  ck_assert_int_ge(log_fd, 0);
  ss__log_setup(SS_LOG_WARN, log_fd, "spanshim");
}

static void teardown(void) {
  ss__log_setup(SS_LOG_OFF, 2, "spanshim");
  close(log_fd);
}

/* The diagnostics written so far (static buffer) and their line count. */
static const char *diag_text(int *lines) {
  static char buf[16384];
  ssize_t n = pread(log_fd, buf, sizeof(buf) - 1, 0);
  ck_assert_int_ge(n, 0);
  buf[n] = '\0';
  *lines = 0;
  for (ssize_t i = 0; i < n; i++)
    *lines += buf[i] == '\n';
  return buf;
}

static int load(ss__config *c) {
  int n = ss__config_load(c, fake_getenv), lines;
  diag_text(&lines);
  ck_assert_int_eq(n, lines); /* every diagnostic counted is one line, and vice versa */
  return n;
}

static char default_ep[200];

static const char *default_endpoint(void) {
  char path[150];
  ck_assert_int_eq(ss__default_socket_path(path, sizeof(path), fake_getenv), 0);
  snprintf(default_ep, sizeof(default_ep), "unix:%s", path);
  return default_ep;
}

static void assert_defaults(const ss__config *c) {
  ck_assert_int_eq(c->disabled, 0);
  ck_assert_ptr_null(c->service_name);
  ck_assert_ptr_null(c->resource_attributes);
  ck_assert_int_eq(c->sampler, SS_SAMPLER_PB_ALWAYS_ON);
  ck_assert_double_eq(c->sampler_ratio, 1.0);
  ck_assert_str_eq(c->endpoint, default_endpoint());
  ck_assert_ptr_null(c->headers);
  ck_assert_uint_eq(c->export_timeout_ms, 10000);
  ck_assert_uint_eq(c->schedule_delay_ms, 5000);
  ck_assert_uint_eq(c->max_export_batch, 512);
  ck_assert_uint_eq(c->max_queue, 2048);
  ck_assert_uint_eq(c->attr_value_limit, 4096);
  ck_assert_uint_eq(c->hooks, SS_HOOK_ALL);
  ck_assert_int_eq(c->log_level, SS_LOG_OFF);
  ck_assert_ptr_null(c->log_file);
  ck_assert_uint_eq(c->exit_flush_ms, 100);
  ck_assert_uint_eq(c->parent.valid, 0);
  ck_assert_ptr_null(c->tracestate);
  ck_assert_ptr_null(c->redact_query_keys);
}

START_TEST(test_empty_environment_gives_defaults) {
  ss__config c;
  ck_assert_int_eq(load(&c), 0);
  assert_defaults(&c);
  ss__config_free(&c);
}
END_TEST

START_TEST(test_empty_values_are_unset) {
  static const char *names[] = {
      "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
      "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "SPANSHIM_ENDPOINT",
      "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
      "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_BSP_SCHEDULE_DELAY",
      "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "OTEL_BSP_MAX_QUEUE_SIZE",
      "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "SPANSHIM_HOOKS", "SPANSHIM_LOG_LEVEL",
      "SPANSHIM_LOG_FILE", "SPANSHIM_EXIT_FLUSH_MS", "TRACEPARENT", "TRACESTATE",
      "OTEL_PROPAGATORS", "SPANSHIM_PROCESS_SPAN", "BAGGAGE", "SPANSHIM_STACK_DEPTH",
      "SPANSHIM_EXCEPTION_SIGNAL", "OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN"};
  ss__config c;
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    setenv_fake(names[i], "");
  ck_assert_int_eq(load(&c), 0);
  assert_defaults(&c);
  ss__config_free(&c);
}
END_TEST

START_TEST(test_every_variable_valid) {
  ss__config c;
  setenv_fake("OTEL_SDK_DISABLED", "TRUE");
  setenv_fake("OTEL_SERVICE_NAME", "checkout");
  setenv_fake("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod");
  setenv_fake("OTEL_TRACES_SAMPLER", "ParentBased_TraceIdRatio");
  setenv_fake("OTEL_TRACES_SAMPLER_ARG", "0.25");
  setenv_fake("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
  setenv_fake("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
  setenv_fake("OTEL_EXPORTER_OTLP_COMPRESSION", "none");
  setenv_fake("OTEL_EXPORTER_OTLP_HEADERS", "api-key=secret,x=y");
  setenv_fake("OTEL_EXPORTER_OTLP_TIMEOUT", "2500");
  setenv_fake("OTEL_BSP_SCHEDULE_DELAY", "0");
  setenv_fake("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "100");
  setenv_fake("OTEL_BSP_MAX_QUEUE_SIZE", "100");
  setenv_fake("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", " 128 ");
  setenv_fake("SPANSHIM_HOOKS", "socket, LIBPQ,,process");
  setenv_fake("SPANSHIM_LOG_LEVEL", "Debug");
  setenv_fake("SPANSHIM_LOG_FILE", "/tmp/shim.log");
  setenv_fake("SPANSHIM_EXIT_FLUSH_MS", "0");
  setenv_fake("TRACEPARENT", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  setenv_fake("TRACESTATE", "congo=t61rcWkgMzE");
  ck_assert_int_eq(load(&c), 0);
  ck_assert_int_eq(c.disabled, 1);
  ck_assert_str_eq(c.service_name, "checkout");
  ck_assert_str_eq(c.resource_attributes, "deployment.environment.name=prod");
  ck_assert_int_eq(c.sampler, SS_SAMPLER_PB_RATIO);
  ck_assert_double_eq(c.sampler_ratio, 0.25);
  ck_assert_str_eq(c.endpoint, "http://127.0.0.1:4318/v1/traces");
  ck_assert_str_eq(c.headers, "api-key=secret,x=y");
  ck_assert_uint_eq(c.export_timeout_ms, 2500);
  ck_assert_uint_eq(c.schedule_delay_ms, 0);
  ck_assert_uint_eq(c.max_export_batch, 100);
  ck_assert_uint_eq(c.max_queue, 100);
  ck_assert_uint_eq(c.attr_value_limit, 128);
  ck_assert_uint_eq(c.hooks, SS_HOOK_SOCKET | SS_HOOK_LIBPQ | SS_HOOK_PROCESS);
  ck_assert_int_eq(c.log_level, SS_LOG_DEBUG);
  ck_assert_str_eq(c.log_file, "/tmp/shim.log");
  ck_assert_uint_eq(c.exit_flush_ms, 0);
  ck_assert_uint_eq(c.parent.valid, 1);
  ck_assert_uint_eq(c.parent.flags, 1);
  ck_assert_uint_eq(c.parent.trace_id[0], 0x4b);
  ck_assert_str_eq(c.tracestate, "congo=t61rcWkgMzE");
  ss__config_free(&c);
}
END_TEST

START_TEST(test_signal_specific_variables_win) {
  ss__config c;
  setenv_fake("OTEL_EXPORTER_OTLP_HEADERS", "a=1");
  setenv_fake("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=2");
  setenv_fake("OTEL_EXPORTER_OTLP_TIMEOUT", "1");
  setenv_fake("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2");
  setenv_fake("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
  setenv_fake("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf");
  setenv_fake("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip");
  setenv_fake("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none");
  setenv_fake("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "10");
  setenv_fake("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "20");
  ck_assert_int_eq(load(&c), 0);
  ck_assert_str_eq(c.headers, "b=2");
  ck_assert_uint_eq(c.export_timeout_ms, 2);
  ck_assert_uint_eq(c.attr_value_limit, 20);
  ss__config_free(&c);
}
END_TEST

START_TEST(test_samplers_by_name) {
  static const struct { const char *v; int s; } t[] = {
      {"always_on", SS_SAMPLER_ALWAYS_ON},
      {"always_off", SS_SAMPLER_ALWAYS_OFF},
      {"traceidratio", SS_SAMPLER_RATIO},
      {"parentbased_always_on", SS_SAMPLER_PB_ALWAYS_ON},
      {"parentbased_always_off", SS_SAMPLER_PB_ALWAYS_OFF},
      {"parentbased_traceidratio", SS_SAMPLER_PB_RATIO},
  };
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    ss__config c;
    setenv_fake("OTEL_TRACES_SAMPLER", t[i].v);
    ck_assert_int_eq(load(&c), 0);
    ck_assert_int_eq(c.sampler, t[i].s);
    ss__config_free(&c);
  }
}
END_TEST

START_TEST(test_sampler_arg_ignored_by_non_ratio_samplers) {
  ss__config c;
  setenv_fake("OTEL_TRACES_SAMPLER", "always_on");
  setenv_fake("OTEL_TRACES_SAMPLER_ARG", "junk");
  ck_assert_int_eq(load(&c), 0);
  ck_assert_double_eq(c.sampler_ratio, 1.0);
  ss__config_free(&c);
}
END_TEST

START_TEST(test_sampler_arg_bounds_are_inclusive) {
  ss__config c;
  setenv_fake("OTEL_TRACES_SAMPLER", "traceidratio");
  setenv_fake("OTEL_TRACES_SAMPLER_ARG", "0");
  ck_assert_int_eq(load(&c), 0);
  ck_assert_double_eq(c.sampler_ratio, 0.0);
  ss__config_free(&c);
  setenv_fake("OTEL_TRACES_SAMPLER_ARG", "1.0");
  ck_assert_int_eq(load(&c), 0);
  ck_assert_double_eq(c.sampler_ratio, 1.0);
  ss__config_free(&c);
}
END_TEST

/* ---- malformed values: exactly one diagnostic, the documented default ---- */
enum field {
  F_DISABLED, F_SAMPLER, F_RATIO, F_ENDPOINT, F_TIMEOUT, F_DELAY, F_BATCH, F_QUEUE, F_LIMIT,
  F_HOOKS, F_LOGLEVEL, F_FLUSH, F_PARENT, F_TRACESTATE, F_PROPAGATORS, F_PROCESS, F_BAGGAGE,
  F_STACK, F_EXC, F_NONE
};

static double field(const ss__config *c, enum field f) {
  switch (f) {
  case F_DISABLED: return c->disabled;
  case F_SAMPLER: return c->sampler;
  case F_RATIO: return c->sampler_ratio;
  case F_ENDPOINT: return strcmp(c->endpoint, default_endpoint()) == 0;
  case F_TIMEOUT: return c->export_timeout_ms;
  case F_DELAY: return c->schedule_delay_ms;
  case F_BATCH: return c->max_export_batch;
  case F_QUEUE: return c->max_queue;
  case F_LIMIT: return c->attr_value_limit;
  case F_HOOKS: return c->hooks;
  case F_LOGLEVEL: return c->log_level;
  case F_FLUSH: return c->exit_flush_ms;
  case F_PARENT: return c->parent.valid;
  case F_TRACESTATE: return c->tracestate != NULL;
  case F_PROPAGATORS: return c->propagators;
  case F_PROCESS: return c->process_span;
  case F_BAGGAGE: return c->baggage != NULL;
  case F_STACK: return c->stack_depth;
  case F_EXC: return c->exception_signal;
  case F_NONE: return 0;
  }
  return -1;
}

static char long_tracestate[600];
static char long_baggage[9000];

static const struct bad {
  const char *name, *value;
  enum field f;
  double expect;
} bad[] = {
    {"OTEL_SDK_DISABLED", "yes", F_DISABLED, 0},
    {"OTEL_SDK_DISABLED", "1", F_DISABLED, 0},
    {"OTEL_TRACES_SAMPLER", "jaeger_remote", F_SAMPLER, SS_SAMPLER_PB_ALWAYS_ON},
    {"OTEL_TRACES_SAMPLER_ARG", "abc", F_RATIO, 1.0},
    {"OTEL_TRACES_SAMPLER_ARG", "1.5", F_RATIO, 1.0},
    {"OTEL_TRACES_SAMPLER_ARG", "-0.1", F_RATIO, 1.0},
    {"OTEL_TRACES_SAMPLER_ARG", "0.5x", F_RATIO, 1.0},
    {"OTEL_TRACES_SAMPLER_ARG", "nan", F_RATIO, 1.0},
    {"SPANSHIM_ENDPOINT", "https://collector:4318", F_ENDPOINT, 1},
    {"SPANSHIM_ENDPOINT", "tcp://localhost", F_ENDPOINT, 1},
    {"SPANSHIM_ENDPOINT", "unix:relative.sock", F_ENDPOINT, 1},
    {"SPANSHIM_ENDPOINT", "http://", F_ENDPOINT, 1},
    {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://api.vendor.example/v1/traces", F_ENDPOINT,
     1},
    {"OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318", F_ENDPOINT, 1},
    {"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", F_NONE, 0},
    {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json", F_NONE, 0},
    {"OTEL_EXPORTER_OTLP_COMPRESSION", "gzip", F_NONE, 0},
    {"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip", F_NONE, 0},
    {"OTEL_EXPORTER_OTLP_TIMEOUT", "10s", F_TIMEOUT, 10000},
    {"OTEL_EXPORTER_OTLP_TIMEOUT", "0", F_TIMEOUT, 10000},
    {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "-5", F_TIMEOUT, 10000},
    {"OTEL_BSP_SCHEDULE_DELAY", "abc", F_DELAY, 5000},
    {"OTEL_BSP_SCHEDULE_DELAY", "99999999999999999999", F_DELAY, 5000},
    {"OTEL_BSP_SCHEDULE_DELAY", "4294967296", F_DELAY, 5000},
    {"OTEL_BSP_SCHEDULE_DELAY", "+5", F_DELAY, 5000},
    {"OTEL_BSP_SCHEDULE_DELAY", "5 000", F_DELAY, 5000},
    {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0", F_BATCH, 512},
    {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1e3", F_BATCH, 512},
    {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4096", F_BATCH, 2048}, /* clamped to the queue */
    {"OTEL_BSP_MAX_QUEUE_SIZE", "0x10", F_QUEUE, 2048},
    {"OTEL_BSP_MAX_QUEUE_SIZE", "0", F_QUEUE, 2048},
    {"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "0", F_LIMIT, 4096},
    {"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "big", F_LIMIT, 4096},
    {"SPANSHIM_HOOKS", "socket,carrier-pigeon", F_HOOKS, SS_HOOK_SOCKET},
    {"SPANSHIM_HOOKS", "sockets", F_HOOKS, SS_HOOK_ALL},
    {"SPANSHIM_LOG_LEVEL", "verbose", F_LOGLEVEL, SS_LOG_OFF},
    {"SPANSHIM_EXIT_FLUSH_MS", "100ms", F_FLUSH, 100},
    {"SPANSHIM_EXIT_FLUSH_MS", "60001", F_FLUSH, 100},
    {"TRACEPARENT", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", F_PARENT, 0},
    {"TRACEPARENT", "garbage", F_PARENT, 0},
    {"TRACESTATE", long_tracestate, F_TRACESTATE, 0},
    {"OTEL_PROPAGATORS", "b3", F_PROPAGATORS, 0},
    {"OTEL_PROPAGATORS", "tracecontext,xray", F_PROPAGATORS, SS_PROP_TRACECONTEXT},
    {"SPANSHIM_PROCESS_SPAN", "yes", F_PROCESS, 0},
    {"BAGGAGE", long_baggage, F_BAGGAGE, 0},
    {"SPANSHIM_STACK_DEPTH", "deep", F_STACK, 32},
    {"SPANSHIM_STACK_DEPTH", "500", F_STACK, 32},
    {"SPANSHIM_EXCEPTION_SIGNAL", "pigeon", F_EXC, SS_EXC_LOG | SS_EXC_EVENT},
    {"OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN", "events", F_EXC, SS_EXC_LOG | SS_EXC_EVENT},
};

START_TEST(test_exception_signal_choices) {
  ss__config c;
  ck_assert_int_eq(load(&c), 0);
  ck_assert_uint_eq(c.exception_signal, SS_EXC_LOG | SS_EXC_EVENT);
  ck_assert_int_eq(c.stack_depth, 32);
  ss__config_free(&c);
  setenv_fake("OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN", "logs");
  setenv_fake("SPANSHIM_STACK_DEPTH", "0");
  ck_assert_int_eq(load(&c), 0);
  ck_assert_uint_eq(c.exception_signal, SS_EXC_LOG);
  ck_assert_int_eq(c.stack_depth, 0);
  ss__config_free(&c);
  setenv_fake("SPANSHIM_EXCEPTION_SIGNAL", "event");
  ck_assert_int_eq(load(&c), 0);
  ck_assert_uint_eq(c.exception_signal, SS_EXC_EVENT);
  ss__config_free(&c);
}
END_TEST

START_TEST(test_propagators_and_process_span_values) {
  ss__config c;
  setenv_fake("OTEL_PROPAGATORS", "none");
  setenv_fake("SPANSHIM_PROCESS_SPAN", "1");
  setenv_fake("BAGGAGE", "userId=alice,isProduction=false");
  ck_assert_int_eq(load(&c), 0);
  ck_assert_uint_eq(c.propagators, 0);
  ck_assert_int_eq(c.process_span, 1);
  ck_assert_str_eq(c.baggage, "userId=alice,isProduction=false");
  ss__config_free(&c);
  setenv_fake("OTEL_PROPAGATORS", " Baggage , tracecontext ");
  setenv_fake("SPANSHIM_PROCESS_SPAN", "false");
  ck_assert_int_eq(load(&c), 0);
  ck_assert_uint_eq(c.propagators, SS_PROP_TRACECONTEXT | SS_PROP_BAGGAGE);
  ck_assert_int_eq(c.process_span, 0);
  ss__config_free(&c);
}
END_TEST

START_TEST(test_malformed_value_gives_one_diagnostic_and_default) {
  const struct bad *b = &bad[_i];
  ss__config c;
  int lines;

  memset(long_tracestate, 'k', sizeof(long_tracestate) - 1);
  memset(long_baggage, 'b', sizeof(long_baggage) - 1);
  if (strcmp(b->name, "OTEL_TRACES_SAMPLER_ARG") == 0)
    setenv_fake("OTEL_TRACES_SAMPLER", "traceidratio");
  if (strcmp(b->name, "TRACESTATE") == 0)
    setenv_fake("TRACEPARENT", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  setenv_fake(b->name, b->value);
  ck_assert_msg(load(&c) == 1, "%s=%s: expected one diagnostic", b->name, b->value);
  const char *text = diag_text(&lines);
  ck_assert_int_eq(lines, 1);
  ck_assert_msg(strstr(text, b->name) != NULL, "diagnostic does not name %s: %s", b->name,
                text);
  ck_assert(strncmp(text, "spanshim[", 9) == 0);
  ck_assert(strstr(text, "; using ") != NULL || strstr(text, "; ignoring it") != NULL);
  if (strlen(b->value) <= 64)
    ck_assert_msg(strstr(text, b->value) != NULL, "value missing: %s", text);
  ck_assert_msg(field(&c, b->f) == b->expect, "%s=%s: field is %g, expected %g", b->name,
                b->value, field(&c, b->f), b->expect);
  ss__config_free(&c);
}
END_TEST

START_TEST(test_diagnostic_line_format) {
  ss__config c;
  char want[200];
  int lines;
  setenv_fake("OTEL_BSP_SCHEDULE_DELAY", "abc");
  ck_assert_int_eq(load(&c), 1);
  snprintf(want, sizeof(want),
           "spanshim[%d]: OTEL_BSP_SCHEDULE_DELAY=\"abc\" is not a number of milliseconds; "
           "using 5000\n", (int)getpid());
  ck_assert_str_eq(diag_text(&lines), want);
  ss__config_free(&c);
}
END_TEST

START_TEST(test_diagnostic_truncates_and_sanitizes_value) {
  ss__config c;
  char val[300];
  int lines;
  memset(val, 'x', sizeof(val) - 1);
  val[sizeof(val) - 1] = '\0';
  val[3] = '\n';
  setenv_fake("SPANSHIM_LOG_LEVEL", val);
  ck_assert_int_eq(load(&c), 1);
  const char *text = diag_text(&lines);
  ck_assert_int_eq(lines, 1);
  ck_assert(strstr(text, "=\"xxx?") != NULL);
  ck_assert(strstr(text, "xxx...\"") != NULL);
  ck_assert(strlen(text) < 200);
  ss__config_free(&c);
}
END_TEST

START_TEST(test_diagnostics_counted_even_when_log_is_off) {
  ss__config c;
  int lines;
  ss__log_setup(SS_LOG_OFF, log_fd, "spanshim");
  setenv_fake("SPANSHIM_LOG_LEVEL", "loud");
  setenv_fake("OTEL_BSP_SCHEDULE_DELAY", "soon");
  ck_assert_int_eq(ss__config_load(&c, fake_getenv), 2);
  diag_text(&lines);
  ck_assert_int_eq(lines, 0);
  ss__config_free(&c);
}
END_TEST

START_TEST(test_several_bad_values_one_line_each) {
  ss__config c;
  setenv_fake("SPANSHIM_LOG_LEVEL", "loud");
  setenv_fake("OTEL_BSP_SCHEDULE_DELAY", "soon");
  setenv_fake("OTEL_SDK_DISABLED", "maybe");
  setenv_fake("SPANSHIM_HOOKS", "a,b,c");
  ck_assert_int_eq(load(&c), 4);
  ss__config_free(&c);
}
END_TEST

START_TEST(test_hooks_lists) {
  static const struct { const char *v; uint32_t hooks; } t[] = {
      {"all", SS_HOOK_ALL},
      {"none", 0},
      {"dns", SS_HOOK_DNS},
      {" libcurl , dns ", SS_HOOK_LIBCURL | SS_HOOK_DNS},
      {"socket,all", SS_HOOK_ALL},
      {",", SS_HOOK_ALL},
  };
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    ss__config c;
    setenv_fake("SPANSHIM_HOOKS", t[i].v);
    ck_assert_int_eq(load(&c), 0);
    ck_assert_msg(c.hooks == t[i].hooks, "SPANSHIM_HOOKS=%s gave %u", t[i].v, c.hooks);
    ss__config_free(&c);
  }
}
END_TEST

START_TEST(test_exit_flush_upper_bound_allowed) {
  ss__config c;
  setenv_fake("SPANSHIM_EXIT_FLUSH_MS", "60000");
  ck_assert_int_eq(load(&c), 0);
  ck_assert_uint_eq(c.exit_flush_ms, 60000);
  ss__config_free(&c);
}
END_TEST

START_TEST(test_tracestate_without_traceparent_is_ignored) {
  ss__config c;
  setenv_fake("TRACESTATE", "congo=t61rcWkgMzE");
  ck_assert_int_eq(load(&c), 0);
  ck_assert_ptr_null(c.tracestate);
  ss__config_free(&c);
}
END_TEST

static const char *url_redacted(const char *in) {
  static char out[256];
  size_t n = ss__url_redact(in, strlen(in), out, sizeof out - 1);
  out[n] = '\0';
  return out;
}

START_TEST(test_redact_query_keys_reach_the_redaction) {
  ss__config c;
  int lines;
  setenv_fake("SPANSHIM_REDACT_QUERY_KEYS", "Ticket, x-sso");
  ck_assert_int_eq(load(&c), 0);
  ck_assert_str_eq(c.redact_query_keys, "Ticket, x-sso");
  ck_assert_str_eq(url_redacted("http://h/?ticket=1&X-SSO=2&page=3&token=4"),
                   "http://h/?ticket=REDACTED&X-SSO=REDACTED&page=3&token=REDACTED");
  ss__config_free(&c);
  /* unset: the built-in rule alone */
  setenv_fake("SPANSHIM_REDACT_QUERY_KEYS", "");
  ck_assert_int_eq(load(&c), 0);
  ck_assert_ptr_null(c.redact_query_keys);
  ck_assert_str_eq(url_redacted("http://h/?ticket=1&token=2"), "http://h/?ticket=1&token=REDACTED");
  ss__config_free(&c);
  /* a name that cannot be a key: one diagnostic, the others used */
  setenv_fake("SPANSHIM_REDACT_QUERY_KEYS", "a=b,ticket");
  ck_assert_int_eq(load(&c), 1);
  ck_assert_ptr_nonnull(strstr(diag_text(&lines), "SPANSHIM_REDACT_QUERY_KEYS=\"a=b,ticket\""));
  ck_assert_str_eq(url_redacted("http://h/?ticket=1&a=2"), "http://h/?ticket=REDACTED&a=2");
  ss__config_free(&c);
}
END_TEST

START_TEST(test_command_args_and_db_error_messages_choices) {
  static const struct {
    const char *args, *db;
    int want_args, want_db, diags;
  } rows[] = {
      {NULL, NULL, SS_ARGS_REDACTED, SS_DBMSG_MASKED, 0},
      {"FULL", "full", SS_ARGS_FULL, SS_DBMSG_FULL, 0},
      {"none", "masked", SS_ARGS_NONE, SS_DBMSG_MASKED, 0},
      {"all", "yes", SS_ARGS_REDACTED, SS_DBMSG_MASKED, 2}, /* diagnosed: the safe default */
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    ss__config c;
    setenv_fake("SPANSHIM_COMMAND_ARGS", rows[i].args ? rows[i].args : "");
    setenv_fake("SPANSHIM_DB_ERROR_MESSAGES", rows[i].db ? rows[i].db : "");
    ck_assert_int_eq(load(&c), rows[i].diags);
    ck_assert_int_eq(c.command_args, rows[i].want_args);
    ck_assert_int_eq(c.db_error_messages, rows[i].want_db);
    ss__config_free(&c);
  }
}
END_TEST

/* ---- endpoints ---- */
START_TEST(test_endpoint_precedence) {
  ss__config c;
  setenv_fake("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318");
  ck_assert_int_eq(load(&c), 0);
  ck_assert_str_eq(c.endpoint, "http://base:4318/v1/traces");
  ss__config_free(&c);

  setenv_fake("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/custom");
  ck_assert_int_eq(load(&c), 0);
  ck_assert_str_eq(c.endpoint, "http://traces:4318/custom");
  ss__config_free(&c);

  setenv_fake("SPANSHIM_ENDPOINT", "unix:/run/x/collector.sock");
  ck_assert_int_eq(load(&c), 0);
  ck_assert_str_eq(c.endpoint, "unix:/run/x/collector.sock");
  ss__config_free(&c);
}
END_TEST

START_TEST(test_base_endpoint_avoids_double_slash) {
  ss__config c;
  setenv_fake("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318/");
  ck_assert_int_eq(load(&c), 0);
  ck_assert_str_eq(c.endpoint, "http://base:4318/v1/traces");
  ss__config_free(&c);
  setenv_fake("OTEL_EXPORTER_OTLP_ENDPOINT", "http://gw/otlp//");
  ck_assert_int_eq(load(&c), 0);
  ck_assert_str_eq(c.endpoint, "http://gw/otlp/v1/traces");
  ss__config_free(&c);
}
END_TEST

START_TEST(test_https_endpoint_refused_with_advice) {
  ss__config c;
  int lines;
  setenv_fake("SPANSHIM_ENDPOINT", "https://collector:4318");
  ck_assert_int_eq(load(&c), 1);
  ck_assert_ptr_nonnull(strstr(diag_text(&lines), "https is not supported by the shim; use a "
                                                  "local spanshimd or collector"));
  ck_assert_str_eq(c.endpoint, default_endpoint());
  ss__config_free(&c);
}
END_TEST

START_TEST(test_default_endpoint_uses_xdg_runtime_dir) {
  ss__config c;
  setenv_fake("XDG_RUNTIME_DIR", "/run/user/1000");
  ck_assert_int_eq(load(&c), 0);
  ck_assert_str_eq(c.endpoint, "unix:/run/user/1000/spanshim/collector.sock");
  ss__config_free(&c);
}
END_TEST

START_TEST(test_default_socket_path) {
  char p[200], want[64];
  snprintf(want, sizeof(want), "/tmp/spanshim-%u/collector.sock", (unsigned)getuid());
  ck_assert_int_eq(ss__default_socket_path(p, sizeof(p), fake_getenv), 0);
  ck_assert_str_eq(p, want);
  setenv_fake("XDG_RUNTIME_DIR", "relative/dir"); /* not absolute: ignored */
  ck_assert_int_eq(ss__default_socket_path(p, sizeof(p), fake_getenv), 0);
  ck_assert_str_eq(p, want);
  setenv_fake("XDG_RUNTIME_DIR", "/run/user/1000/");
  ck_assert_int_eq(ss__default_socket_path(p, sizeof(p), fake_getenv), 0);
  ck_assert_str_eq(p, "/run/user/1000/spanshim/collector.sock");
  ck_assert_int_eq(ss__default_socket_path(p, 10, fake_getenv), -1);
}
END_TEST

static Suite *config_suite(void) {
  Suite *s = suite_create("config");
  TCase *tc = tcase_create("values");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_empty_environment_gives_defaults);
  tcase_add_test(tc, test_empty_values_are_unset);
  tcase_add_test(tc, test_every_variable_valid);
  tcase_add_test(tc, test_signal_specific_variables_win);
  tcase_add_test(tc, test_samplers_by_name);
  tcase_add_test(tc, test_propagators_and_process_span_values);
  tcase_add_test(tc, test_exception_signal_choices);
  tcase_add_test(tc, test_sampler_arg_ignored_by_non_ratio_samplers);
  tcase_add_test(tc, test_sampler_arg_bounds_are_inclusive);
  tcase_add_test(tc, test_hooks_lists);
  tcase_add_test(tc, test_exit_flush_upper_bound_allowed);
  tcase_add_test(tc, test_tracestate_without_traceparent_is_ignored);
  tcase_add_test(tc, test_redact_query_keys_reach_the_redaction);
  tcase_add_test(tc, test_command_args_and_db_error_messages_choices);
  suite_add_tcase(s, tc);
  tc = tcase_create("diagnostics");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_loop_test(tc, test_malformed_value_gives_one_diagnostic_and_default, 0,
                      (int)(sizeof(bad) / sizeof(bad[0])));
  tcase_add_test(tc, test_diagnostic_line_format);
  tcase_add_test(tc, test_diagnostic_truncates_and_sanitizes_value);
  tcase_add_test(tc, test_diagnostics_counted_even_when_log_is_off);
  tcase_add_test(tc, test_several_bad_values_one_line_each);
  suite_add_tcase(s, tc);
  tc = tcase_create("endpoint");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_endpoint_precedence);
  tcase_add_test(tc, test_base_endpoint_avoids_double_slash);
  tcase_add_test(tc, test_https_endpoint_refused_with_advice);
  tcase_add_test(tc, test_default_endpoint_uses_xdg_runtime_dir);
  tcase_add_test(tc, test_default_socket_path);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(config_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
