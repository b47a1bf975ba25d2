/* test_otlp_json.c - the OTLP JSON lines spanshimd writes: exact text for known requests
 * (hex ids, 64-bit integers as strings, enums as integers, defaults omitted) and string
 * escaping that keeps every line valid JSON whatever bytes came in. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tools/common/otlp_json.h"

typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KV;

#define VC(x) OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_##x

/* Appends with f and returns the text (NUL-terminated copy owned by the static buf). */
static ss__buf out = SS_BUF_INIT;
static const char *text(void) {
  ss__buf_putc(&out, 0);
  out.len--;
  return out.data;
}

static const char *jstr(const char *s, size_t n) {
  ss__buf_reset(&out);
  ss__jw_str(&out, s, n);
  return text();
}

START_TEST(test_escapes_quotes_backslash_controls) {
  ck_assert_str_eq(jstr("a\"b\\c", 5), "\"a\\\"b\\\\c\"");
  ck_assert_str_eq(jstr("\n\r\t\b\f", 5), "\"\\n\\r\\t\\b\\f\"");
  ck_assert_str_eq(jstr("\x01\x1f\x7f", 3), "\"\\u0001\\u001f\x7f\"");
  ck_assert_str_eq(jstr("nul\0x", 5), "\"nul\\u0000x\"");
  ck_assert_str_eq(jstr("", 0), "\"\"");
  ck_assert_str_eq(jstr("/</script>", 10), "\"/</script>\"");
}
END_TEST

START_TEST(test_invalid_utf8_becomes_replacement_char) {
  ck_assert_str_eq(jstr("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15),
                   "\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"");  /* valid: kept */
  ck_assert_str_eq(jstr("a\xff" "b", 3), "\"a\xef\xbf\xbd" "b\"");
  ck_assert_str_eq(jstr("\xc0\xaf", 2), "\"\xef\xbf\xbd\xef\xbf\xbd\"");         /* overlong */
  ck_assert_str_eq(jstr("\xed\xa0\x80", 3), "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");  /* surrogate */
  ck_assert_str_eq(jstr("x\xe2\x82", 3), "\"x\xef\xbf\xbd\xef\xbf\xbd\"");      /* truncated */
  ck_assert_str_eq(jstr("\xf4\x90\x80\x80", 4),                                /* > U+10FFFF */
                   "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
}
END_TEST

START_TEST(test_numbers_and_hex) {
  ss__buf_reset(&out);
  ss__jw_u64(&out, 0);
  ss__buf_putc(&out, ' ');
  ss__jw_u64(&out, UINT64_MAX);
  ss__buf_putc(&out, ' ');
  uint8_t id[4] = {0x00, 0xab, 0x0f, 0xff};
  ss__jw_hex(&out, id, 4);
  ck_assert_str_eq(text(), "0 18446744073709551615 \"00ab0fff\"");
}
END_TEST

/* A request with one span exercising every kind of field. */
static uint8_t trace_id[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
                               0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
static uint8_t span_id[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};

START_TEST(test_traces_exact_line) {
  AnyValue v_str = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
  v_str.value_case = VC(STRING_VALUE);
  v_str.string_value = "say \"hi\"\n";
  AnyValue v_int = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
  v_int.value_case = VC(INT_VALUE);
  v_int.int_value = INT64_MIN;
  AnyValue v_zero = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
  v_zero.value_case = VC(INT_VALUE);  /* a set oneof member is written even at 0 */
  AnyValue v_bool = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
  v_bool.value_case = VC(BOOL_VALUE);
  AnyValue v_dbl = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
  v_dbl.value_case = VC(DOUBLE_VALUE);
  v_dbl.double_value = 0.1;
  AnyValue v_nan = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
  v_nan.value_case = VC(DOUBLE_VALUE);
  v_nan.double_value = NAN;
  AnyValue v_bytes = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
  v_bytes.value_case = VC(BYTES_VALUE);
  v_bytes.bytes_value.data = (uint8_t *)"hi!?";
  v_bytes.bytes_value.len = 4;
  AnyValue a0 = v_str, a1 = v_int, *items[] = {&a0, &a1};
  Opentelemetry__Proto__Common__V1__ArrayValue arr = OPENTELEMETRY__PROTO__COMMON__V1__ARRAY_VALUE__INIT;
  arr.n_values = 2;
  arr.values = items;
  AnyValue v_arr = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
  v_arr.value_case = VC(ARRAY_VALUE);
  v_arr.array_value = &arr;
  KV kv[8];
  AnyValue *vals[8] = {&v_str, &v_int, &v_zero, &v_bool, &v_dbl, &v_nan, &v_bytes, &v_arr};
  const char *keys[8] = {"s", "i", "z", "b", "d", "n", "y", "a"};
  KV *kvp[8];
  for (int i = 0; i < 8; i++) {
    opentelemetry__proto__common__v1__key_value__init(&kv[i]);
    kv[i].key = (char *)keys[i];
    kv[i].value = vals[i];
    kvp[i] = &kv[i];
  }
  Opentelemetry__Proto__Trace__V1__Status st = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__INIT;
  st.code = 2;
  st.message = "boom";
  Opentelemetry__Proto__Trace__V1__Span sp = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT, *spp = &sp;
  sp.trace_id.data = trace_id;
  sp.trace_id.len = 16;
  sp.span_id.data = span_id;
  sp.span_id.len = 8;
  sp.flags = 0x101;
  sp.name = "connect";
  sp.kind = 3;
  sp.start_time_unix_nano = 1700000000000000001ull;
  sp.end_time_unix_nano = 18446744073709551615ull;
  sp.n_attributes = 8;
  sp.attributes = kvp;
  sp.status = &st;
  Opentelemetry__Proto__Common__V1__InstrumentationScope sc =
      OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;
  sc.name = "spanshim";
  Opentelemetry__Proto__Trace__V1__ScopeSpans ss = OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT, *ssp = &ss;
  ss.scope = &sc;
  ss.n_spans = 1;
  ss.spans = &spp;
  Opentelemetry__Proto__Resource__V1__Resource res = OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
  res.n_attributes = 1;
  res.attributes = &kvp[0];
  Opentelemetry__Proto__Trace__V1__ResourceSpans rs = OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT, *rsp = &rs;
  rs.resource = &res;
  rs.n_scope_spans = 1;
  rs.scope_spans = &ssp;
  Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest req =
      OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
  req.n_resource_spans = 1;
  req.resource_spans = &rsp;
  ss__buf_reset(&out);
  ck_assert_int_eq(ss__json_traces(&req, &out), 0);
  ck_assert_str_eq(text(),
      "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"s\",\"value\":"
      "{\"stringValue\":\"say \\\"hi\\\"\\n\"}}]},\"scopeSpans\":[{\"scope\":{\"name\":"
      "\"spanshim\"},\"spans\":[{\"traceId\":\"4bf92f3577b34da6a3ce929d0e0e4736\","
      "\"spanId\":\"00f067aa0ba902b7\",\"flags\":257,\"name\":\"connect\",\"kind\":3,"
      "\"startTimeUnixNano\":\"1700000000000000001\",\"endTimeUnixNano\":"
      "\"18446744073709551615\",\"attributes\":["
      "{\"key\":\"s\",\"value\":{\"stringValue\":\"say \\\"hi\\\"\\n\"}},"
      "{\"key\":\"i\",\"value\":{\"intValue\":\"-9223372036854775808\"}},"
      "{\"key\":\"z\",\"value\":{\"intValue\":\"0\"}},"
      "{\"key\":\"b\",\"value\":{\"boolValue\":false}},"
      "{\"key\":\"d\",\"value\":{\"doubleValue\":0.1}},"
      "{\"key\":\"n\",\"value\":{\"doubleValue\":\"NaN\"}},"
      "{\"key\":\"y\",\"value\":{\"bytesValue\":\"aGkhPw==\"}},"
      "{\"key\":\"a\",\"value\":{\"arrayValue\":{\"values\":[{\"stringValue\":"
      "\"say \\\"hi\\\"\\n\"},{\"intValue\":\"-9223372036854775808\"}]}}}],"
      "\"status\":{\"message\":\"boom\",\"code\":2}}]}]}]}\n");
}
END_TEST

START_TEST(test_defaults_omitted_and_empty_request) {
  Opentelemetry__Proto__Trace__V1__Span sp = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT, *spp = &sp;
  Opentelemetry__Proto__Trace__V1__ScopeSpans ss = OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT, *ssp = &ss;
  ss.n_spans = 1;
  ss.spans = &spp;
  Opentelemetry__Proto__Trace__V1__ResourceSpans rs = OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT, *rsp = &rs;
  rs.n_scope_spans = 1;
  rs.scope_spans = &ssp;
  Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest req =
      OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
  ss__buf_reset(&out);
  ck_assert_int_eq(ss__json_traces(&req, &out), 0);
  ck_assert_str_eq(text(), "{\"resourceSpans\":[]}\n");
  req.n_resource_spans = 1;
  req.resource_spans = &rsp;
  ss__buf_reset(&out);
  ck_assert_int_eq(ss__json_traces(&req, &out), 0);
  ck_assert_str_eq(text(), "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{}]}]}]}\n");
}
END_TEST

START_TEST(test_logs_exact_line) {
  AnyValue body = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
  body.value_case = VC(STRING_VALUE);
  body.string_value = "ECONNREFUSED";
  KV kv = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT, *kvp = &kv;
  Opentelemetry__Proto__Common__V1__KeyValueList kl =
      OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE_LIST__INIT;
  AnyValue inner = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
  inner.value_case = VC(BOOL_VALUE);
  inner.bool_value = 1;
  KV in_kv = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT, *in_kvp = &in_kv;
  in_kv.key = "x";
  in_kv.value = &inner;
  kl.n_values = 1;
  kl.values = &in_kvp;
  AnyValue kval = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
  kval.value_case = VC(KVLIST_VALUE);
  kval.kvlist_value = &kl;
  kv.key = "exception.type";
  kv.value = &kval;
  Opentelemetry__Proto__Logs__V1__LogRecord lr = OPENTELEMETRY__PROTO__LOGS__V1__LOG_RECORD__INIT, *lrp = &lr;
  lr.time_unix_nano = 5;
  lr.severity_number = 17;
  lr.severity_text = "ERROR";
  lr.body = &body;
  lr.n_attributes = 1;
  lr.attributes = &kvp;
  lr.flags = 1;
  lr.trace_id.data = trace_id;
  lr.trace_id.len = 16;
  lr.span_id.data = span_id;
  lr.span_id.len = 8;
  lr.event_name = "exception";
  Opentelemetry__Proto__Logs__V1__ScopeLogs sl = OPENTELEMETRY__PROTO__LOGS__V1__SCOPE_LOGS__INIT, *slp = &sl;
  sl.n_log_records = 1;
  sl.log_records = &lrp;
  Opentelemetry__Proto__Logs__V1__ResourceLogs rl = OPENTELEMETRY__PROTO__LOGS__V1__RESOURCE_LOGS__INIT, *rlp = &rl;
  rl.n_scope_logs = 1;
  rl.scope_logs = &slp;
  Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest req =
      OPENTELEMETRY__PROTO__COLLECTOR__LOGS__V1__EXPORT_LOGS_SERVICE_REQUEST__INIT;
  req.n_resource_logs = 1;
  req.resource_logs = &rlp;
  ss__buf_reset(&out);
  ck_assert_int_eq(ss__json_logs(&req, &out), 0);
  ck_assert_str_eq(text(),
      "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"timeUnixNano\":\"5\","
      "\"severityNumber\":17,\"severityText\":\"ERROR\",\"body\":{\"stringValue\":"
      "\"ECONNREFUSED\"},\"attributes\":[{\"key\":\"exception.type\",\"value\":"
      "{\"kvlistValue\":{\"values\":[{\"key\":\"x\",\"value\":{\"boolValue\":true}}]}}}],"
      "\"flags\":1,\"traceId\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"spanId\":"
      "\"00f067aa0ba902b7\",\"eventName\":\"exception\"}]}]}]}\n");
}
END_TEST

START_TEST(test_deep_nesting_is_cut) {
  enum { D = SS_JSON_MAX_DEPTH + 10 };
  AnyValue v[D];
  Opentelemetry__Proto__Common__V1__ArrayValue a[D];
  AnyValue *p[D];
  for (int i = 0; i < D; i++) {
    opentelemetry__proto__common__v1__any_value__init(&v[i]);
    opentelemetry__proto__common__v1__array_value__init(&a[i]);
    v[i].value_case = VC(ARRAY_VALUE);
    v[i].array_value = &a[i];
    if (i + 1 < D) {
      p[i] = &v[i + 1];
      a[i].n_values = 1;
      a[i].values = &p[i];
    }
  }
  KV kv = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT, *kvp = &kv;
  kv.key = "deep";
  kv.value = &v[0];
  Opentelemetry__Proto__Resource__V1__Resource res = OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
  res.n_attributes = 1;
  res.attributes = &kvp;
  Opentelemetry__Proto__Trace__V1__ResourceSpans rs = OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT, *rsp = &rs;
  rs.resource = &res;
  Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest req =
      OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
  req.n_resource_spans = 1;
  req.resource_spans = &rsp;
  ss__buf_reset(&out);
  ck_assert_int_eq(ss__json_traces(&req, &out), 0);
  /* Balanced brackets: still one valid JSON value. */
  int depth = 0, maxd = 0;
  for (size_t i = 0; i < out.len; i++) {
    if (out.data[i] == '{' || out.data[i] == '[') depth++;
    if (out.data[i] == '}' || out.data[i] == ']') depth--;
    if (depth > maxd) maxd = depth;
  }
  ck_assert_int_eq(depth, 0);
  ck_assert_int_lt(maxd, 3 * SS_JSON_MAX_DEPTH + 10);  /* uncut would be ~3 * D */
}
END_TEST

int main(void) {
  Suite *s = suite_create("otlp_json");
  TCase *tc = tcase_create("json");
  tcase_add_test(tc, test_escapes_quotes_backslash_controls);
  tcase_add_test(tc, test_invalid_utf8_becomes_replacement_char);
  tcase_add_test(tc, test_numbers_and_hex);
  tcase_add_test(tc, test_traces_exact_line);
  tcase_add_test(tc, test_defaults_omitted_and_empty_request);
  tcase_add_test(tc, test_logs_exact_line);
  tcase_add_test(tc, test_deep_nesting_is_cut);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  ss__buf_free(&out);
  return failed ? 1 : 0;
}
