// grpc_raw.js - hand-made gRPC calls over one HTTP/2 connection (node's own http2
// module; no packages), for what an SDK never sends: bad framing, unknown methods,
// oversized or corrupt messages. Used by tests/integration/test_sdk_interop.py.
//
//   node grpc_raw.js < SPEC.json
// SPEC: {"url": "http://127.0.0.1:PORT" | "socket": "/path", "parallel": false,
//        "calls": [{"path": "/pkg.Service/Method", "headers": {...}, "body_hex": "..."}]}
// Each call's headers default to POST, content-type application/grpc and te: trailers;
// given headers replace them. A call with "end": false sends its body and never ends it. Calls go one after another (or all at once with
// "parallel") on the same connection. Prints one JSON line: a list with, for each call,
// {"status": HTTP status, "headers": {...}, "trailers": {...}, "data_hex": "...",
// "error": null or the stream's error}.
'use strict';

const http2 = require('http2');
const net = require('net');

function call(session, c) {
  return new Promise((resolve) => {
    const headers = Object.assign({ ':method': 'POST', ':path': c.path,
                                    'content-type': 'application/grpc', te: 'trailers' },
                                  c.headers || {});
    const res = { status: 0, headers: {}, trailers: {}, data_hex: '', error: null };
    const chunks = [];
    const req = session.request(headers);
    req.on('response', (h) => { res.status = h[':status']; res.headers = h; });
    req.on('trailers', (t) => { res.trailers = t; });
    req.on('data', (d) => chunks.push(d));
    req.on('error', (e) => { res.error = String(e.code || e.message); });
    req.on('close', () => {
      res.data_hex = Buffer.concat(chunks).toString('hex');
      if (!res.error && req.rstCode) res.error = `rst ${req.rstCode}`;
      resolve(res);
    });
    if (c.end === false) req.write(Buffer.from(c.body_hex || '', 'hex'));  // never ends
    else req.end(Buffer.from(c.body_hex || '', 'hex'));
  });
}

async function main() {
  const spec = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const opts = spec.socket ? { createConnection: () => net.connect(spec.socket) } : {};
  const session = http2.connect(spec.url || 'http://localhost', opts);
  session.on('error', (e) => {
    process.stdout.write(JSON.stringify({ session_error: String(e.code || e.message) }) + '\n');
    process.exit(1);
  });
  let out;
  if (spec.parallel) {
    out = await Promise.all(spec.calls.map((c) => call(session, c)));
  } else {
    out = [];
    for (const c of spec.calls) out.push(await call(session, c));
  }
  process.stdout.write(JSON.stringify(out) + '\n');
  session.close();
}

main().catch((e) => {
  process.stderr.write(`grpc_raw.js: ${e.stack || e}\n`);
  process.exit(1);
});
