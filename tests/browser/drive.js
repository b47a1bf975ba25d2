// drive.js - opens a spanshim HTML report in Debian's chromium (headless, through
// playwright-core) and runs steps on it, for tests/integration/test_view_html.py.
//
//   node drive.js REPORT.html STEPS.json
//
// STEPS is a JSON array of {"click": SELECTOR}, {"key": KEY}, {"type": [SELECTOR, TEXT]},
// {"wait": MS}, {"viewport": [W, H]}, {"snap": NAME} (records what a user sees: trace
// rows, waterfall rows, the span panel, focus), {"screenshot": PATH}. Every request the page makes is
// recorded and anything but the report file itself is aborted; CSP violations are
// recorded too. Prints one JSON object: {loadMs, readyMs, cpu, requests, blocked,
// violations, errors, snaps}. Exits 1 on a page error or a failed step.
'use strict';
const { chromium } = require('playwright-core');
const fs = require('fs');
const path = require('path');

function snapshot() {
  const txt = (e) => (e ? e.textContent : null);
  const rows = (sel) => [...document.querySelectorAll(sel + ' .row:not([hidden])')];
  const kv = (t) => (t ? [...t.querySelectorAll('tr')].map((r) => [...r.children].map((c) => c.textContent)) : []);
  const panel = document.getElementById('panel');
  const tables = panel.querySelectorAll(':scope > table.kv');
  const exc = document.getElementById('exception');
  const services = [...document.querySelectorAll('#services tbody tr')].map((r) => [...r.children].map((c) => c.textContent));
  return {
    ready: document.documentElement.dataset.ready || null,
    traces: rows('#tlist-body').map((r) => ({
      cells: [...r.children].map((c) => c.textContent), sel: r.classList.contains('sel'),
      err: r.classList.contains('has-err'), title: r.title })),
    spans: rows('#wf-body').map((r) => ({
      name: txt(r.querySelector('.nm')), chip: txt(r.querySelector('.chip')), tog: txt(r.querySelector('.tog')),
      err: r.classList.contains('err'), sel: r.classList.contains('sel'), hit: r.classList.contains('hit'),
      proc: !!r.querySelector('.chip'), dur: txt(r.querySelector('.dur')),
      indent: parseInt(r.querySelector('.wname').style.paddingLeft, 10) || 0 })),
    title: txt(document.getElementById('wf-title')),
    axis: [...document.querySelectorAll('#wf-axis .tick')].map((t) => t.textContent),
    panel: {
      name: txt(panel.querySelector('h2')),
      badges: [...panel.querySelectorAll('.badge')].map((b) => b.textContent),
      facts: kv(tables[0]),
      attrs: kv(tables[1]),
      resource: kv(tables[tables.length - 1]),
      events: [...panel.querySelectorAll('.event')].map((e) => e.firstChild.textContent),
      exception: exc ? {
        type: txt(exc.querySelector('.etype')), text: exc.textContent,
        frames: [...exc.querySelectorAll('.frame')].map((f) => f.textContent),
        src: [...exc.querySelectorAll('.frame .src')].map((f) => f.textContent),
        fns: [...exc.querySelectorAll('.frame .fn')].map((f) => f.textContent) } : null,
    },
    active: document.activeElement ? document.activeElement.id : null,
    matchCount: txt(document.getElementById('match-count')),
    status: txt(document.getElementById('status')),
    servicesVisible: !document.getElementById('services-view').hidden,
    services,
  };
}

async function main() {
  const [report, stepsFile] = process.argv.slice(2);
  const steps = JSON.parse(fs.readFileSync(stepsFile, 'utf8'));
  const url = 'file://' + path.resolve(report);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const out = { requests: [], blocked: [], violations: [], errors: [], snaps: {} };
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, offline: true });
    await context.route('**/*', (route) => {
      const u = route.request().url();
      if (u === url) return route.continue();
      out.blocked.push(u);
      return route.abort();
    });
    await context.addInitScript(() => {
      window.__violations = [];
      document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(e.blockedURI + ' ' + e.violatedDirective));
    });
    const page = await context.newPage();
    page.on('request', (r) => out.requests.push(r.url()));
    page.on('pageerror', (e) => out.errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') out.errors.push('console: ' + m.text()); });
    const cdp = await context.newCDPSession(page);
    await cdp.send('Performance.enable');
    const t0 = Date.now();
    await page.goto(url, { waitUntil: 'load', timeout: 120000 });
    await page.waitForSelector('html[data-ready]', { timeout: 120000 });
    out.loadMs = Date.now() - t0;
    out.readyMs = Number(await page.evaluate(() => document.documentElement.dataset.ready));
    // CPU the page's renderer used until ready (main thread, whole process), in ms: on a
    // loaded machine the wall-clock time mostly measures waiting for a core.
    const metrics = Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics
      .map((m) => [m.name, m.value]));
    out.cpu = { mainThreadMs: Math.round((metrics.ThreadTime || 0) * 1000),
      processMs: Math.round((metrics.ProcessTime || 0) * 1000),
      taskMs: Math.round((metrics.TaskDuration || 0) * 1000) };
    for (const st of steps) {
      if (st.click) await page.click(st.click);
      else if (st.key) await page.keyboard.press(st.key);
      else if (st.type) { await page.fill(st.type[0], st.type[1]); await page.waitForTimeout(400); }
      else if (st.wait) await page.waitForTimeout(st.wait);
      else if (st.screenshot) await page.screenshot({ path: st.screenshot });
      else if (st.viewport) await page.setViewportSize({ width: st.viewport[0], height: st.viewport[1] });
      else if (st.snap) {
        await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
        out.snaps[st.snap] = await page.evaluate(snapshot);
      }
    }
    out.violations = await page.evaluate(() => window.__violations);
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
  if (out.errors.length) process.exitCode = 1;
}

main().catch((e) => { console.error(e && e.stack || String(e)); process.exit(1); });
