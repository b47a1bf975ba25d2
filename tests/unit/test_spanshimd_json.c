/* spanshimd's OTLP/JSON decoder (otlp_json_in.c): the spec's encoding (hex ids, enums as
 * integers, int64 as strings), what receivers must also take (snake_case names, numbers
 * for int64, enum names), unknown members, null, and what it refuses with a message. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tools/common/arena.h"
#include "tools/spanshimd/spanshimd.h"

typedef Opentelemetry__Proto__Trace__V1__Span span_t;

static ss__arena arena = SS_ARENA_INIT;
static char err[256];

static ss__traces_req *traces(const char *json) {
  ss__arena_reset(&arena, 0);
  return ss__otlp_json_decode(
      &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
      (const uint8_t *)json, strlen(json), &arena, err, sizeof err);
}

/* The first span of a one-span document with span members `members`. */
static span_t *one_span(const char *members) {
  static char doc[4096];
  snprintf(doc, sizeof doc,
           "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{%s}]}]}]}", members);
  ss__traces_req *q = traces(doc);
  ck_assert_msg(q != NULL, "refused: %s (%s)", members, err);
  ck_assert_uint_eq(q->n_resource_spans, 1);
  ck_assert_uint_eq(q->resource_spans[0]->n_scope_spans, 1);
  ck_assert_uint_eq(q->resource_spans[0]->scope_spans[0]->n_spans, 1);
  return q->resource_spans[0]->scope_spans[0]->spans[0];
}

static void refused(const char *members, const char *want) {
  char doc[4096];
  snprintf(doc, sizeof doc,
           "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{%s}]}]}]}", members);
  ck_assert_msg(traces(doc) == NULL, "accepted: %s", members);
  ck_assert_msg(strstr(err, want) != NULL, "%s: error '%s' lacks '%s'", members, err, want);
  ck_assert_ptr_nonnull(strstr(err, "at byte"));
}

START_TEST(test_camel_and_snake_case_names_give_the_same_span) {
  const char *camel = "\"traceId\":\"5b8efff798038103d269b633813fc60c\","
                      "\"spanId\":\"EEE19B7EC3C1B174\",\"parentSpanId\":\"\","
                      "\"startTimeUnixNano\":\"1544712660000000000\","
                      "\"droppedAttributesCount\":3,\"traceState\":\"a=b\"";
  const char *snake = "\"trace_id\":\"5b8efff798038103d269b633813fc60c\","
                      "\"span_id\":\"eee19b7ec3c1b174\",\"parent_span_id\":\"\","
                      "\"start_time_unix_nano\":1544712660000000000,"
                      "\"dropped_attributes_count\":\"3\",\"trace_state\":\"a=b\"";
  for (int i = 0; i < 2; i++) {
    span_t *s = one_span(i ? snake : camel);
    ck_assert_uint_eq(s->trace_id.len, 16);
    ck_assert_uint_eq(s->trace_id.data[0], 0x5b);
    ck_assert_uint_eq(s->trace_id.data[15], 0x0c);
    ck_assert_uint_eq(s->span_id.len, 8);
    ck_assert_uint_eq(s->span_id.data[0], 0xee);
    ck_assert_uint_eq(s->parent_span_id.len, 0);
    ck_assert_uint_eq(s->start_time_unix_nano, 1544712660000000000ull);
    ck_assert_uint_eq(s->dropped_attributes_count, 3);
    ck_assert_str_eq(s->trace_state, "a=b");
  }
}
END_TEST

START_TEST(test_enums_by_number_or_name_and_status) {
  span_t *s = one_span("\"kind\":2,\"status\":{\"code\":\"STATUS_CODE_ERROR\",\"message\":\"m\"}");
  ck_assert_int_eq(s->kind, 2);
  ck_assert_int_eq(s->status->code, 2);
  ck_assert_str_eq(s->status->message, "m");
  s = one_span("\"kind\":\"SPAN_KIND_CONSUMER\"");
  ck_assert_int_eq(s->kind, 5);
  s = one_span("\"kind\":9");  /* open enums keep unknown numbers */
  ck_assert_int_eq(s->kind, 9);
  refused("\"kind\":\"SPAN_KIND_NOPE\"", "field kind: unknown enum value");
}
END_TEST

START_TEST(test_any_values_every_kind) {
  span_t *s = one_span(
      "\"attributes\":[{\"key\":\"s\",\"value\":{\"stringValue\":\"x\\u00e9\"}},"
      "{\"key\":\"i\",\"value\":{\"intValue\":\"-9223372036854775808\"}},"
      "{\"key\":\"d\",\"value\":{\"doubleValue\":\"-Infinity\"}},"
      "{\"key\":\"n\",\"value\":{\"doubleValue\":\"NaN\"}},"
      "{\"key\":\"e\",\"value\":{\"doubleValue\":1.5e3}},"
      "{\"key\":\"b\",\"value\":{\"boolValue\":false}},"
      "{\"key\":\"y\",\"value\":{\"bytesValue\":\"_-8\"}},"
      "{\"key\":\"a\",\"value\":{\"arrayValue\":{\"values\":[{\"intValue\":1},{}]}}},"
      "{\"key\":\"k\",\"value\":{\"kvlistValue\":{\"values\":[{\"key\":\"z\",\"value\":null}]}}}]");
  ck_assert_uint_eq(s->n_attributes, 9);
  Opentelemetry__Proto__Common__V1__AnyValue **v = NULL;
  Opentelemetry__Proto__Common__V1__AnyValue *vals[9];
  for (int i = 0; i < 9; i++) vals[i] = s->attributes[i]->value;
  v = vals;
  ck_assert_int_eq(v[0]->value_case, OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE);
  ck_assert_str_eq(v[0]->string_value, "x\xc3\xa9");
  ck_assert_int_eq(v[1]->value_case, OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE);
  ck_assert(v[1]->int_value == INT64_MIN);
  ck_assert(isinf(v[2]->double_value) && v[2]->double_value < 0);
  ck_assert(isnan(v[3]->double_value));
  ck_assert(v[4]->double_value == 1500.0);
  ck_assert_int_eq(v[5]->value_case, OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE);
  ck_assert(!v[5]->bool_value);
  ck_assert_uint_eq(v[6]->bytes_value.len, 2);  /* URL-safe, unpadded: 0xff 0xef */
  ck_assert_uint_eq(v[6]->bytes_value.data[0], 0xff);
  ck_assert_uint_eq(v[6]->bytes_value.data[1], 0xef);
  ck_assert_uint_eq(v[7]->array_value->n_values, 2);
  ck_assert(v[7]->array_value->values[0]->int_value == 1);
  ck_assert_int_eq(v[7]->array_value->values[1]->value_case,
                   OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE__NOT_SET);
  ck_assert_uint_eq(v[8]->kvlist_value->n_values, 1);
  ck_assert_ptr_null(v[8]->kvlist_value->values[0]->value);
}
END_TEST

START_TEST(test_unknown_members_and_null_are_skipped) {
  span_t *s = one_span("\"future\":{\"a\":[1,{\"b\":null}],\"c\":\"\\ud83d\\ude00\"},"
                       "\"name\":\"n\",\"links\":null,\"status\":null,\"events\":[],"
                       "\"a_very_long_member_name_that_no_schema_has_and_that_goes_on_and_on\":1");
  ck_assert_str_eq(s->name, "n");
  ck_assert_ptr_null(s->status);
  ck_assert_uint_eq(s->n_links, 0);
  ck_assert_uint_eq(s->n_events, 0);
}
END_TEST

START_TEST(test_ids_that_are_not_hex_stay_one_byte_for_validation) {
  span_t *s = one_span("\"traceId\":\"zz\",\"spanId\":\"abc\",\"parentSpanId\":\"\"");
  ck_assert_uint_eq(s->trace_id.len, 1);
  ck_assert_uint_eq(s->span_id.len, 1);
  ck_assert_uint_eq(s->parent_span_id.len, 0);
  s = one_span("\"traceId\":\"0102\"");  /* hex of another length: kept as is */
  ck_assert_uint_eq(s->trace_id.len, 2);
}
END_TEST

START_TEST(test_integral_exponent_and_fraction_forms_are_integers) {
  span_t *s = one_span("\"startTimeUnixNano\":\"1.5e3\",\"endTimeUnixNano\":1e18,"
                       "\"droppedAttributesCount\":30.00,\"kind\":2E0");
  ck_assert_uint_eq(s->start_time_unix_nano, 1500);
  ck_assert_uint_eq(s->end_time_unix_nano, 1000000000000000000ull);
  ck_assert_uint_eq(s->dropped_attributes_count, 30);
  ck_assert_int_eq(s->kind, 2);
}
END_TEST

START_TEST(test_wrong_types_and_ranges_are_refused_naming_the_field) {
  refused("\"name\":5", "field name: expected a string");
  refused("\"startTimeUnixNano\":\"1e-3\"", "field start_time_unix_nano: expected an integer");
  refused("\"startTimeUnixNano\":2.5", "field start_time_unix_nano: expected an integer");
  refused("\"startTimeUnixNano\":\"1e20\"", "field start_time_unix_nano: integer out of range");
  refused("\"startTimeUnixNano\":-1", "field start_time_unix_nano: expected an unsigned");
  refused("\"startTimeUnixNano\":\"18446744073709551616\"", "out of range");
  refused("\"droppedAttributesCount\":4294967296", "field dropped_attributes_count");
  refused("\"attributes\":{}", "field attributes: expected an array");
  refused("\"attributes\":[null]", "null in a list of messages");
  refused("\"status\":[]", "field status: expected an object");
  refused("\"attributes\":[{\"value\":{\"bytesValue\":\"a*b\"}}]", "invalid base64");
  refused("\"name\":\"x\",", "expected string key");
}
END_TEST

START_TEST(test_nesting_and_top_level_are_bounded) {
  char doc[8192];
  size_t n = 0;
  n += (size_t)sprintf(doc + n, "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"attributes\":[{\"value\":");
  for (int i = 0; i < 200; i++) n += (size_t)sprintf(doc + n, "{\"arrayValue\":{\"values\":[");
  doc[n] = '\0';
  ck_assert_ptr_null(traces(doc));
  ck_assert_ptr_nonnull(strstr(err, "nesting deeper than 128"));
  ck_assert_ptr_null(traces("[]"));
  ck_assert_ptr_nonnull(strstr(err, "expected an object"));
  ck_assert_ptr_null(traces("{} {}"));
  ck_assert_ptr_nonnull(strstr(err, "trailing"));
  ck_assert_ptr_nonnull(traces(" {} "));
}
END_TEST

START_TEST(test_arena_budget_refuses_a_request_that_would_grow_too_big) {
  char doc[65536];
  size_t n = (size_t)sprintf(doc, "{\"resourceSpans\":[");
  for (int i = 0; i < 10000; i++) n += (size_t)sprintf(doc + n, "%s{}", i ? "," : "");
  sprintf(doc + n, "]}");
  ss__arena_reset(&arena, 64 << 10);
  void *m = ss__otlp_json_decode(
      &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
      (const uint8_t *)doc, strlen(doc), &arena, err, sizeof err);
  ck_assert_ptr_null(m);
  ck_assert(arena.over);
  ck_assert_ptr_nonnull(strstr(err, "more memory than allowed"));
  ss__arena_reset(&arena, 0);
  ck_assert_ptr_nonnull(traces(doc));
}
END_TEST

START_TEST(test_logs_decode_through_the_same_walk) {
  const char *doc = "{\"resource_logs\":[{\"scopeLogs\":[{\"log_records\":[{\"severityNumber\":"
                    "\"SEVERITY_NUMBER_ERROR\",\"body\":{\"stringValue\":\"b\"},\"eventName\":"
                    "\"exception\",\"observedTimeUnixNano\":\"7\",\"flags\":1}]}]}]}";
  int too_big;
  ss__logs_req *q = ss__decode_logs_json((const uint8_t *)doc, strlen(doc), &too_big, err,
                                         sizeof err);
  ck_assert_msg(q != NULL, "%s", err);
  Opentelemetry__Proto__Logs__V1__LogRecord *r = q->resource_logs[0]->scope_logs[0]->log_records[0];
  ck_assert_int_eq(r->severity_number, 17);
  ck_assert_str_eq(r->body->string_value, "b");
  ck_assert_str_eq(r->event_name, "exception");
  ck_assert_uint_eq(r->observed_time_unix_nano, 7);
  ck_assert_uint_eq(r->flags, 1);
}
END_TEST

int main(void) {
  Suite *s = suite_create("spanshimd_json");
  TCase *tc = tcase_create("otlp_json_in");
  tcase_add_test(tc, test_camel_and_snake_case_names_give_the_same_span);
  tcase_add_test(tc, test_integral_exponent_and_fraction_forms_are_integers);
  tcase_add_test(tc, test_enums_by_number_or_name_and_status);
  tcase_add_test(tc, test_any_values_every_kind);
  tcase_add_test(tc, test_unknown_members_and_null_are_skipped);
  tcase_add_test(tc, test_ids_that_are_not_hex_stay_one_byte_for_validation);
  tcase_add_test(tc, test_wrong_types_and_ranges_are_refused_naming_the_field);
  tcase_add_test(tc, test_nesting_and_top_level_are_bounded);
  tcase_add_test(tc, test_arena_budget_refuses_a_request_that_would_grow_too_big);
  tcase_add_test(tc, test_logs_decode_through_the_same_walk);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  ss__arena_release(&arena);
  ss__decode_release();
  return failed ? 1 : 0;
}
