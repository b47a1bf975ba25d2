// peer.js - the official OpenTelemetry JS SDK as a new user would set it up, exporting
// to spanshimd; used by tests/integration/test_sdk_interop.py.
//
//   node peer.js SIGNAL EXPORTER URL [gzip] [NAME]
//     SIGNAL    traces | logs
//     EXPORTER  proto (OTLP/HTTP protobuf) | json (OTLP/HTTP JSON) | grpc (OTLP/gRPC)
//     URL       the exporter's url option, e.g. http://127.0.0.1:4318/v1/traces,
//               http://127.0.0.1:4317, unix:///path/to/grpc.sock
//     gzip      compression: gzip (else none)
//     NAME      a tag put into every span/log name and attribute (default "peer")
//
// Makes a parent span with two children (attributes of every type, an event, an error
// status) or three log records (one inside a span's context), exports them through the
// SDK's own processor and exporter, and prints one JSON line on stdout: the ids it made
// and every export result ({code, error}). Exits 0 when every export succeeded, 1 if
// one failed, 2 on bad arguments.
'use strict';

const api = require('@opentelemetry/api');
const { resourceFromAttributes } = require('@opentelemetry/resources');

function exporterFor(signal, kind, url, gzip) {
  const pkg = `@opentelemetry/exporter-${signal === 'traces' ? 'trace' : 'logs'}-otlp-${kind === 'json' ? 'http' : kind}`;
  const mod = require(pkg);
  const Cls = signal === 'traces' ? mod.OTLPTraceExporter : mod.OTLPLogExporter;
  const cfg = { url, timeoutMillis: 30000 };
  if (gzip) cfg.compression = 'gzip';
  return new Cls(cfg);
}

// Every export's result, recorded as the SDK hands it to its processor.
function recording(exporter, results) {
  const orig = exporter.export.bind(exporter);
  exporter.export = (items, done) =>
    orig(items, (r) => {
      results.push({ code: r.code, error: r.error ? String(r.error.message || r.error) : null });
      done(r);
    });
  return exporter;
}

async function traces(exporter, tag) {
  const { BasicTracerProvider, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': `interop-${tag}`, 'peer.tag': tag }),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const tracer = provider.getTracer('spanshim-interop', '1.2.3');
  const out = { spans: [] };
  const parent = tracer.startSpan(`parent-${tag}`, {
    kind: api.SpanKind.SERVER,
    attributes: { 'http.request.method': 'GET', 'peer.count': 42, 'peer.ratio': 0.5,
                  'peer.ok': true, 'peer.list': ['a', 'b'] },
  });
  const ctx = api.trace.setSpan(api.context.active(), parent);
  for (const i of [1, 2]) {
    const child = tracer.startSpan(`child-${tag}-${i}`, { kind: api.SpanKind.CLIENT,
                                                          attributes: { 'peer.index': i } }, ctx);
    child.addEvent('peer.event', { 'peer.event.n': i });
    if (i === 2) child.setStatus({ code: api.SpanStatusCode.ERROR, message: 'boom' });
    child.end();
    out.spans.push({ name: `child-${tag}-${i}`, trace_id: child.spanContext().traceId,
                     span_id: child.spanContext().spanId });
  }
  parent.end();
  out.spans.push({ name: `parent-${tag}`, trace_id: parent.spanContext().traceId,
                   span_id: parent.spanContext().spanId });
  await provider.forceFlush();
  await provider.shutdown();
  return out;
}

async function logs(exporter, tag) {
  const { LoggerProvider, SimpleLogRecordProcessor } = require('@opentelemetry/sdk-logs');
  const { SeverityNumber } = require('@opentelemetry/api-logs');
  const provider = new LoggerProvider({
    resource: resourceFromAttributes({ 'service.name': `interop-${tag}`, 'peer.tag': tag }),
    processors: [new SimpleLogRecordProcessor({ exporter })],
  });
  const logger = provider.getLogger('spanshim-interop', '1.2.3');
  const out = { logs: [] };
  // A span context of our own for one record, so its trace and span ids travel too.
  const sc = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331',
               traceFlags: api.TraceFlags.SAMPLED };
  const inSpan = api.trace.setSpanContext(api.context.active(), sc);
  for (const i of [1, 2, 3]) {
    const rec = { severityNumber: i === 3 ? SeverityNumber.ERROR : SeverityNumber.INFO,
                  severityText: i === 3 ? 'ERROR' : 'INFO', body: `log-${tag}-${i}`,
                  attributes: { 'peer.index': i, 'peer.tag': tag } };
    if (i === 2) rec.context = inSpan;
    logger.emit(rec);
    out.logs.push({ body: rec.body, trace_id: i === 2 ? sc.traceId : '', span_id: i === 2 ? sc.spanId : '' });
  }
  await provider.forceFlush();
  await provider.shutdown();
  return out;
}

async function main() {
  const [signal, kind, url, comp, tag = 'peer'] = process.argv.slice(2);
  if (!['traces', 'logs'].includes(signal) || !['proto', 'json', 'grpc'].includes(kind) || !url) {
    process.stderr.write('usage: node peer.js traces|logs proto|json|grpc URL [gzip|none] [NAME]\n');
    process.exit(2);
  }
  const results = [];
  const exporter = recording(exporterFor(signal, kind, url, comp === 'gzip'), results);
  const out = signal === 'traces' ? await traces(exporter, tag) : await logs(exporter, tag);
  out.results = results;
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(results.length > 0 && results.every((r) => r.code === 0) ? 0 : 1);
}

main().catch((e) => {
  process.stderr.write(`peer.js: ${e.stack || e}\n`);
  process.exit(1);
});
