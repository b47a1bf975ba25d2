// otel_js_anchor.js - the anchor of spanshim's cost table: what the official OpenTelemetry
// JS SDK costs per span, set up as its docs show (BasicTracerProvider, BatchSpanProcessor,
// OTLP/HTTP protobuf exporter), exporting to spanshimd; run by tests/bench/bench.py.
//
//   NODE_PATH=BUILD/interop/node_modules node otel_js_anchor.js URL N
//     URL  the exporter's url, e.g. http://127.0.0.1:4318/v1/traces
//     N    spans to make
//
// Makes N CLIENT spans shaped like spanshim's connect spans (four attributes), in blocks
// of 512 with a turn of the event loop between blocks (so the batch processor exports as
// it goes, as in a real program), first with the API alone (no SDK registered: the no-op
// tracer) and then with the SDK; the queue holds all N, so every span is exported.
// Prints: n=N noop_cpu_ns_per_span=A sdk_cpu_ns_per_span=B exported=E failed=F
// where the CPU is this process's user + system time (process.cpuUsage) from the first
// span to the end of provider.shutdown(), and B - A is the SDK's cost per span.
'use strict';

const api = require('@opentelemetry/api');
const { BasicTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const { resourceFromAttributes } = require('@opentelemetry/resources');

const BLOCK = 512;

function turn() {
  return new Promise((resolve) => setImmediate(resolve));
}

function cpuNs(start) {
  const u = process.cpuUsage(start);
  return (u.user + u.system) * 1000;
}

async function makeSpans(tracer, n) {
  for (let i = 0; i < n; i += BLOCK) {
    for (let j = i; j < i + BLOCK && j < n; j++) {
      tracer.startSpan('connect', {
        kind: api.SpanKind.CLIENT,
        attributes: { 'network.transport': 'udp', 'network.type': 'ipv4',
                      'network.peer.address': '127.0.0.1', 'network.peer.port': 9 },
      }).end();
    }
    await turn();
  }
}

async function main() {
  const [url, nArg] = process.argv.slice(2);
  const n = parseInt(nArg || '100000', 10);
  if (!url || !(n > 0)) {
    process.stderr.write('usage: node otel_js_anchor.js URL N\n');
    process.exit(2);
  }
  // Warm-up of the no-op path, then the no-op API's cost.
  await makeSpans(api.trace.getTracer('anchor'), 10000);
  let t = process.cpuUsage();
  await makeSpans(api.trace.getTracer('anchor'), n);
  const noop = cpuNs(t) / n;

  let exported = 0, failed = 0;
  // Exports in flight are not limited (the default, 30, refuses exports when the loop
  // outpaces the collector; the queue bound above is the SDK's memory bound anyway).
  const exporter = new OTLPTraceExporter({ url, timeoutMillis: 30000, concurrencyLimit: n });
  const orig = exporter.export.bind(exporter);
  exporter.export = (spans, done) => orig(spans, (r) => {
    if (r.code === 0) exported += spans.length; else failed += spans.length;
    done(r);
  });
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'otel-js-anchor' }),
    spanProcessors: [new BatchSpanProcessor(exporter, {
      maxQueueSize: n + BLOCK, maxExportBatchSize: 512, scheduledDelayMillis: 200,
    })],
  });
  const tracer = provider.getTracer('anchor');
  t = process.cpuUsage();
  await makeSpans(tracer, n);
  await provider.forceFlush();
  await provider.shutdown();
  const sdk = cpuNs(t) / n;
  process.stdout.write(`n=${n} noop_cpu_ns_per_span=${noop.toFixed(1)} ` +
                       `sdk_cpu_ns_per_span=${sdk.toFixed(1)} exported=${exported} ` +
                       `failed=${failed}\n`);
}

main().catch((e) => {
  process.stderr.write(`otel_js_anchor.js: ${e.stack || e}\n`);
  process.exit(1);
});
