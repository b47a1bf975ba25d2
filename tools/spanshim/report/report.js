/* report.js - the spanshim HTML report (tools/spanshim/report/), built into spanshim and
 * written inline into every report. Hand-written, no library: the page must open offline
 * from file:// and fetch nothing (its Content-Security-Policy forbids it anyway).
 *
 * Data (see tools/spanshim/html.c): spans arrive grouped by trace in tree order with
 * depth and parent index, names and attribute keys interned in D.strs, times in ns from
 * the earliest span. Span data only ever goes into the DOM as text (textContent), never
 * as markup. Lists are virtualized: only the rows on screen exist, so 100k spans open as
 * fast as 100. */
'use strict';
async function ssLoad() {
  const box = document.getElementById('ss-data');
  if (box.type === 'application/json') return JSON.parse(box.textContent);
  const b64 = box.textContent.trim();
  box.textContent = '';
  let bin;
  if (Uint8Array.fromBase64) {
    bin = Uint8Array.fromBase64(b64);
  } else {
    const raw = atob(b64);
    bin = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bin[i] = raw.charCodeAt(i);
  }
  /* One in-memory chunk in (a Blob's stream would hop through blob storage per 64 KiB). */
  const text = await new Response(new Response(bin).body.pipeThrough(new DecompressionStream('gzip'))).text();
  return JSON.parse(text);
}
ssLoad().then(ssReport, (e) => {
  document.getElementById('status').textContent = 'This report could not be read: ' + e;
  throw e;
});
function ssReport(D) {
  const t_start = performance.now();
  const S = D.strs, SP = D.spans, TR = D.traces, RES = D.res;
  /* span fields */
  const SID = 0, PAR = 1, DEP = 2, NAME = 3, KIND = 4, STATUS = 5, START = 6, DUR = 7,
    RS = 8, ATTRS = 9, MSG = 10, EVENTS = 11, EXC = 12, ORPHAN = 13;
  /* trace fields */
  const TID = 0, FIRST = 1, N = 2, TSTART = 3, TDUR = 4, TERR = 5;
  const KINDS = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'];
  const T0MS = Number(BigInt(D.t0) / 1000000n), T0NS = Number(BigInt(D.t0) % 1000000n);
  const $ = (id) => document.getElementById(id);
  const plural = (n, word) => n + ' ' + word + (n === 1 ? '' : 's');

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  /* "850 ns", "1.25 µs", "12.3 ms", "123 ms", "4.50 s", "2m05s" - as the terminal does. */
  function fmtDur(ns) {
    const f = (v, u) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + ' ' + u;
    if (ns < 1000) return Math.round(ns) + ' ns';
    if (ns < 1e6) return f(ns / 1e3, 'µs');
    if (ns < 1e9) return f(ns / 1e6, 'ms');
    if (ns < 60e9) return f(ns / 1e9, 's');
    const s = Math.round(ns / 1e9);
    if (s < 3600) return Math.floor(s / 60) + 'm' + String(s % 60).padStart(2, '0') + 's';
    return Math.floor(s / 3600) + 'h' + String(Math.floor(s / 60) % 60).padStart(2, '0') + 'm';
  }
  function fmtTime(ns, withDate) {
    const d = new Date(T0MS + Math.floor((ns + T0NS) / 1e6));
    const p = (v, n) => String(v).padStart(n, '0');
    const t = p(d.getHours(), 2) + ':' + p(d.getMinutes(), 2) + ':' + p(d.getSeconds(), 2) + '.' +
      p(d.getMilliseconds(), 3);
    return withDate ? d.getFullYear() + '-' + p(d.getMonth() + 1, 2) + '-' + p(d.getDate(), 2) + ' ' + t : t;
  }
  function attrsOf(flat) {
    const out = [];
    for (let i = 0; flat && i < flat.length; i += 2) out.push([S[flat[i]], S[flat[i + 1]]]);
    return out;
  }
  function resLabel(r) {
    const x = RES[r];
    return x.svc + (x.pid !== null ? ' · pid ' + x.pid : '');
  }
  const PALETTE = ['#2563eb', '#9333ea', '#0891b2', '#c2410c', '#4d7c0f', '#be185d', '#0f766e', '#7c3aed', '#b45309', '#1d4ed8'];
  const resColor = (r) => PALETTE[r % PALETTE.length];

  /* ---- per trace: services and root, computed once ---- */
  const traceSvcs = new Array(TR.length), traceRoot = new Int32Array(TR.length);
  const traceOf = new Int32Array(SP.length);
  for (let t = 0; t < TR.length; t++) {
    const first = TR[t][FIRST], end = first + TR[t][N], seen = new Set();
    for (let i = first; i < end; i++) {
      traceOf[i] = t;
      if (!seen.has(SP[i][RS])) seen.add(SP[i][RS]);
    }
    traceSvcs[t] = Array.from(new Set(Array.from(seen, (r) => RES[r].svc))).join(', ');
    traceRoot[t] = first;
  }

  /* ---- a virtual list: only the rows in view exist ---- */
  class VList {
    constructor(box, render, onClick) {
      this.box = box;
      this.render = render;
      this.n = 0;
      this.rowH = parseFloat(getComputedStyle(document.documentElement).getPropertyValue('--row')) || 22;
      this.spacer = el('div', 'vl-spacer');
      this.rows = el('div', 'vl-rows');
      this.spacer.append(this.rows);
      box.append(this.spacer);
      this.pool = [];
      this.pending = false;
      box.addEventListener('scroll', () => this.schedule());
      if (window.ResizeObserver) new ResizeObserver(() => this.schedule()).observe(box);
      this.rows.addEventListener('click', (ev) => {
        const row = ev.target.closest('.row');
        if (row && row.dataset.i !== undefined) onClick(Number(row.dataset.i), ev);
      });
    }
    schedule() {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => { this.pending = false; this.draw(); });
    }
    setCount(n) {
      this.n = n;
      this.spacer.style.height = n * this.rowH + 'px';
      this.draw();
    }
    draw() {
      const top = this.box.scrollTop, h = this.box.clientHeight || 800;
      const first = Math.max(0, Math.floor(top / this.rowH) - 4);
      const last = Math.min(this.n, Math.ceil((top + h) / this.rowH) + 4);
      this.rows.style.transform = 'translateY(' + first * this.rowH + 'px)';
      while (this.pool.length < last - first) {
        const r = el('div', 'row');
        this.rows.append(r);
        this.pool.push(r);
      }
      for (let k = 0; k < this.pool.length; k++) {
        const r = this.pool[k], i = first + k;
        if (i < last) {
          r.hidden = false;
          r.dataset.i = i;
          this.render(r, i);
        } else {
          r.hidden = true;
          delete r.dataset.i;
        }
      }
    }
    reveal(i) {
      const top = i * this.rowH, h = this.box.clientHeight;
      if (top < this.box.scrollTop) this.box.scrollTop = top;
      else if (top + this.rowH > this.box.scrollTop + h) this.box.scrollTop = top + this.rowH - h;
      this.draw();
    }
  }

  /* ---- search: names, attribute values, status messages, services ---- */
  let hay = null;
  function haystack(i) {
    if (!hay) hay = new Array(SP.length);
    let h = hay[i];
    if (h === undefined) {
      const s = SP[i], parts = [S[s[NAME]], RES[s[RS]].svc];
      if (s[MSG]) parts.push(s[MSG]);
      for (let k = 1; s[ATTRS] && k < s[ATTRS].length; k += 2) parts.push(S[s[ATTRS][k]]);
      h = hay[i] = parts.join('\n').toLowerCase();
    }
    return h;
  }
  const state = {
    q: '', onlyErrors: false, order: null, hits: null,
    sortKey: 'start', sortDesc: false,
    trace: -1, rows: [], sel: -1, collapsed: new Set(),
  };

  function computeOrder() {
    const q = state.q, out = [];
    state.hits = q ? new Uint8Array(SP.length) : null;
    for (let t = 0; t < TR.length; t++) {
      if (state.onlyErrors && !TR[t][TERR]) continue;
      if (q) {
        let any = false;
        const first = TR[t][FIRST], end = first + TR[t][N];
        for (let i = first; i < end; i++)
          if (haystack(i).includes(q)) { state.hits[i] = 1; any = true; }
        if (!any) continue;
      }
      out.push(t);
    }
    const key = {
      svc: (t) => traceSvcs[t], root: (t) => S[SP[traceRoot[t]][NAME]], start: (t) => TR[t][TSTART],
      dur: (t) => TR[t][TDUR], n: (t) => TR[t][N], err: (t) => TR[t][TERR],
    }[state.sortKey];
    const dir = state.sortDesc ? -1 : 1;
    out.sort((a, b) => {
      const x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : a - b) * dir;
    });
    state.order = out;
  }

  /* ---- trace list ---- */
  const TCOLS = [['svc', 'service(s)'], ['root', 'root span'], ['start', 'start'], ['dur', 'duration', 1],
    ['n', 'spans', 1], ['err', 'errors', 1]];
  const thead = $('tlist-head');
  thead.classList.add('tgrid');
  for (const [k, label, num] of TCOLS) {
    const h = el('div', num ? 'num' : '', label);
    h.dataset.k = k;
    h.title = 'sort by ' + label;
    h.addEventListener('click', () => {
      if (state.sortKey === k) state.sortDesc = !state.sortDesc;
      else { state.sortKey = k; state.sortDesc = k === 'dur' || k === 'err' || k === 'n'; }
      refreshList(true);
    });
    thead.append(h);
  }
  function tlistRender(row, i) {
    const t = state.order[i], tr = TR[t], root = SP[traceRoot[t]];
    row.className = 'row tgrid' + (t === state.trace ? ' sel' : '') + (tr[TERR] ? ' has-err' : '');
    row.replaceChildren(
      el('div', '', traceSvcs[t]),
      el('div', '', (root[ORPHAN] ? '↳ ' : '') + S[root[NAME]]),
      el('div', 'num', fmtTime(tr[TSTART])),
      el('div', 'num', fmtDur(tr[TDUR])),
      el('div', 'num', tr[N]),
      el('div', 'num nerr', tr[TERR] || ''));
    row.title = 'trace ' + tr[TID];
  }
  const tlist = new VList($('tlist-body'), tlistRender, (i) => selectTrace(state.order[i], true));

  function refreshList(keepTrace) {
    computeOrder();
    for (const h of thead.children) {
      h.classList.toggle('sorted', h.dataset.k === state.sortKey);
      h.classList.toggle('desc', h.dataset.k === state.sortKey && state.sortDesc);
    }
    $('match-count').textContent = state.order.length === TR.length ? plural(TR.length, 'trace')
      : state.order.length + ' of ' + plural(TR.length, 'trace');
    tlist.setCount(state.order.length);
    if (!keepTrace || state.order.indexOf(state.trace) < 0) selectTrace(state.order.length ? state.order[0] : -1, true);
    else { tlist.reveal(state.order.indexOf(state.trace)); drawWaterfall(); }
  }

  /* ---- waterfall ---- */
  function hasKids(i) { return i + 1 < SP.length && SP[i + 1][PAR] === i; }
  function visibleRows() {
    const rows = [];
    if (state.trace < 0) return rows;
    const first = TR[state.trace][FIRST], end = first + TR[state.trace][N];
    let skipDepth = -1;
    for (let i = first; i < end; i++) {
      const d = SP[i][DEP];
      if (skipDepth >= 0) {
        if (d > skipDepth && SP[i][PAR] >= 0) continue;
        skipDepth = -1;
      }
      rows.push(i);
      if (state.collapsed.has(i)) skipDepth = d;
    }
    return rows;
  }
  function wfRender(row, k) {
    const i = state.rows[k], s = SP[i], tr = TR[state.trace];
    const err = s[STATUS] === 2;
    const procStart = s[PAR] < 0 || SP[s[PAR]][RS] !== s[RS];
    row.className = 'row wrow k' + s[KIND] + (err ? ' err' : '') + (i === state.sel ? ' sel' : '') +
      (state.hits && state.hits[i] ? ' hit' : '') + (procStart && k > 0 ? ' proc' : '');
    const name = el('div', 'wname');
    name.style.paddingLeft = Math.min(s[DEP], 40) * 14 + 'px';
    name.style.borderLeftColor = resColor(s[RS]);
    const tog = el('span', 'tog', hasKids(i) ? (state.collapsed.has(i) ? '▸' : '▾') : '');
    tog.dataset.tog = '1';
    name.append(tog);
    if (s[ORPHAN]) name.append(el('span', 'orphan', '↳'));
    if (procStart) {
      const x = RES[s[RS]];
      const chip = el('span', 'chip', (x.exe || x.svc.replace(/^unknown_service:/, '')) + (x.pid !== null ? ' ' + x.pid : ''));
      chip.style.background = resColor(s[RS]);
      chip.title = 'process boundary: ' + resLabel(s[RS]);
      name.append(chip);
    }
    name.append(el('span', 'nm', S[s[NAME]]));
    if (err) name.append(el('span', 'x', '✗'));
    const barBox = el('div', 'wbar');
    const span = tr[TDUR] || 1, left = (s[START] - tr[TSTART]) / span * 100, width = s[DUR] / span * 100;
    const bar = el('div', 'bar');
    bar.style.left = Math.max(0, Math.min(left, 100)) + '%';
    bar.style.width = Math.max(0, Math.min(width, 100 - left)) + '%';
    const dur = el('div', 'dur', fmtDur(s[DUR]) + (err && s[MSG] ? '  ✗ ' + s[MSG] : ''));
    if (left + width <= 70) dur.style.left = (left + width) + '%';
    else if (left >= 30) dur.style.right = (100 - left) + '%';
    else { dur.style.left = Math.max(0, left) + '%'; dur.classList.add('in'); }
    barBox.append(bar, dur);
    row.replaceChildren(name, barBox);
    row.title = S[s[NAME]] + ' · ' + fmtDur(s[DUR]) + (s[MSG] ? ' · ' + s[MSG] : '');
  }
  const wf = new VList($('wf-body'), wfRender, (k, ev) => {
    const i = state.rows[k];
    if (ev.target.dataset.tog && hasKids(i)) toggle(i);
    selectSpan(i, false);
  });

  function niceStep(x) {
    const p = Math.pow(10, Math.floor(Math.log10(x)));
    for (const m of [1, 2, 5, 10]) if (m * p >= x) return m * p;
    return 10 * p;
  }
  function drawAxis() {
    const axis = $('wf-axis');
    axis.replaceChildren();
    if (state.trace < 0) return;
    const dur = TR[state.trace][TDUR] || 1, step = niceStep(dur / 6);
    const lane = el('div');
    const body = $('wf-body'), scrollbar = body.offsetWidth - body.clientWidth;
    lane.style.cssText = 'position:absolute;top:0;bottom:0;left:0;right:' + scrollbar + 'px';
    const bars = el('div');  /* the bar column: 58% of the rows' width, as .wbar */
    bars.style.cssText = 'position:absolute;top:0;bottom:0;right:0;left:42%';
    lane.append(bars);
    for (let t = 0; t <= dur + 1e-9; t += step) {
      const tick = el('div', 'tick', t === 0 ? '0' : fmtDur(t));
      tick.style.left = t / dur * 100 + '%';
      if (t / dur > 0.93) { tick.style.left = ''; tick.style.right = '0'; tick.style.borderLeft = '0'; }
      bars.append(tick);
    }
    axis.append(lane);
  }
  function drawWaterfall() {
    state.rows = visibleRows();
    wf.setCount(state.rows.length);
  }
  function drawTitle() {
    const title = $('wf-title');
    title.replaceChildren();
    if (state.trace < 0) { title.textContent = 'No trace matches.'; return; }
    const tr = TR[state.trace];
    title.append(el('span', '', 'trace '), el('span', 'id', tr[TID]), el('span', '', ' · ' + traceSvcs[state.trace] +
      ' · ' + fmtTime(tr[TSTART], true) + ' · ' + fmtDur(tr[TDUR]) + ' · ' + plural(tr[N], 'span')));
    if (tr[TERR]) title.append(el('span', 'err', ' · ' + tr[TERR] + ' error' + (tr[TERR] > 1 ? 's' : '')));
  }
  function selectTrace(t, selectFirst) {
    state.trace = t;
    state.collapsed.clear();
    drawTitle();
    drawWaterfall();
    drawAxis();  /* after the rows: it leaves room for their scrollbar */
    $('wf-body').scrollTop = 0;
    tlist.draw();
    const pos = state.order.indexOf(t);
    if (pos >= 0) tlist.reveal(pos);
    if (selectFirst) selectSpan(t >= 0 ? firstInteresting(t) : -1, true);
  }
  /* The first failing span of the trace, else its root. */
  function firstInteresting(t) {
    const first = TR[t][FIRST], end = first + TR[t][N];
    for (let i = first; i < end; i++) if (SP[i][STATUS] === 2 && SP[i][EXC]) return i;
    return first;
  }
  function toggle(i) {
    if (state.collapsed.has(i)) state.collapsed.delete(i); else state.collapsed.add(i);
    drawWaterfall();
  }
  function selectSpan(i, reveal) {
    state.sel = i;
    if (reveal && i >= 0) {
      const k = state.rows.indexOf(i);
      if (k >= 0) wf.reveal(k);
    }
    wf.draw();
    drawPanel(i);
  }

  /* ---- side panel ---- */
  function kvTable(pairs) {
    const t = el('table', 'kv');
    for (const [k, v] of pairs) {
      const tr = el('tr');
      tr.append(el('td', 'k', k), el('td', 'v', v));
      t.append(tr);
    }
    return t;
  }
  /* "#0 0x5640e45591f5 in load_orders (/srv/app/orders+0x11f5) orders.c:42" */
  const FRAME = /^(#\d+)\s+(0x[0-9a-fA-F]+)\s+in\s+(.*?)\s+\(([^()]*)\)\s*(.*)$/;
  function stackView(stack) {
    const box = el('div', 'frames');
    for (const line of stack.split('\n')) {
      if (!line.trim()) continue;
      const m = FRAME.exec(line.trim()), f = el('div', 'frame');
      if (m) {
        f.append(el('span', '', m[1] + ' '), el('span', 'fn', m[3]), el('span', 'mod', '  ' + m[4] + ' ' + m[2]));
        if (m[5]) { f.append(el('span', '', '  ')); f.append(el('span', 'src', m[5])); f.classList.add('has-src'); }
      } else {
        f.textContent = line;
      }
      box.append(f);
    }
    return box;
  }
  function drawPanel(i) {
    const p = $('panel');
    p.replaceChildren();
    if (i < 0) { p.append(el('p', 'hint', 'Select a span.')); return; }
    const s = SP[i], r = RES[s[RS]], err = s[STATUS] === 2;
    p.append(el('h2', err ? 'err' : '', S[s[NAME]]));
    const badges = el('div');
    badges.append(el('span', 'badge', KINDS[s[KIND]] || 'kind ' + s[KIND]));
    badges.append(el('span', 'badge' + (err ? ' err' : ''), ['unset', 'ok', 'error'][s[STATUS]] || 'status ' + s[STATUS]));
    badges.append(el('span', 'badge', fmtDur(s[DUR])));
    p.append(badges);
    const tr = TR[traceOf[i]];
    const facts = [['service', r.svc], ['process', (r.exe || '?') + (r.pid !== null ? ' (pid ' + r.pid + ')' : '')],
      ['start', fmtTime(s[START], true) + ' (+' + fmtDur(s[START] - tr[TSTART]) + ')'],
      ['trace id', tr[TID]], ['span id', s[SID]]];
    if (s[PAR] >= 0) facts.push(['parent', S[SP[s[PAR]][NAME]] + ' (' + SP[s[PAR]][SID] + ')']);
    else if (s[ORPHAN]) facts.push(['parent', s[ORPHAN] + ' (not in this file)']);
    if (s[MSG]) facts.push(['status message', s[MSG]]);
    p.append(kvTable(facts));
    if (s[EXC]) {
      const [type, msg, stack] = s[EXC];
      p.append(el('h3', '', 'Exception'));
      const box = el('div', 'exc');
      box.id = 'exception';
      box.append(el('span', 'etype', type || 'exception'));
      if (msg) box.append(el('span', '', ': ' + msg));
      if (stack) box.append(stackView(stack));
      p.append(box);
    }
    const attrs = attrsOf(s[ATTRS]).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    p.append(el('h3', '', 'Attributes (' + attrs.length + ')'));
    if (attrs.length) p.append(kvTable(attrs));
    if (s[EVENTS]) {
      p.append(el('h3', '', 'Events (' + s[EVENTS].length + ')'));
      for (const [name, t, flat] of s[EVENTS]) {
        const ev = el('div', 'event' + (/exception$/.test(S[name]) ? ' exception' : ''));
        ev.append(el('div', '', S[name] + ' · +' + fmtDur(Math.max(0, t - s[START]))));
        const pairs = attrsOf(flat).filter(([k]) => k !== 'exception.stacktrace');
        if (pairs.length) ev.append(kvTable(pairs));
        p.append(ev);
      }
    }
    p.append(el('h3', '', 'Resource'));
    p.append(kvTable(attrsOf(r.attrs)));
  }

  /* ---- services (RED) ---- */
  const RCOLS = [['service', 0], ['span', 1], ['kind', 8], ['count', 2, 1], ['rate/s', 3, 1], ['errors', 4, 1], ['error %', -1, 1],
    ['p50', 5, 1], ['p95', 6, 1], ['p99', 7, 1]];
  const red = { key: 0, desc: false };
  function drawServices() {
    const head = document.querySelector('#services thead'), body = document.querySelector('#services tbody');
    const hr = el('tr');
    RCOLS.forEach(([label, idx, num], c) => {
      const th = el('th', (num ? 'num' : '') + (red.key === c ? ' sorted' + (red.desc ? ' desc' : '') : ''), label);
      th.addEventListener('click', () => {
        if (red.key === c) red.desc = !red.desc; else { red.key = c; red.desc = !!num; }
        drawServices();
      });
      hr.append(th);
    });
    head.replaceChildren(hr);
    const val = (row, c) => RCOLS[c][1] < 0 ? row[4] / row[2] : row[RCOLS[c][1]];
    const rows = D.red.slice().sort((a, b) => {
      const x = val(a, red.key), y = val(b, red.key);
      return (x < y ? -1 : x > y ? 1 : 0) * (red.desc ? -1 : 1);
    });
    body.replaceChildren();
    for (const row of rows) {
      const tr = el('tr', row[4] ? 'has-err' : '');
      tr.append(el('td', '', row[0]), el('td', '', row[1]), el('td', '', row[8]), el('td', 'num', row[2]),
        el('td', 'num', row[3] >= 100 ? row[3].toFixed(0) : row[3].toFixed(2)), el('td', 'num errs', row[4]),
        el('td', 'num errs', (100 * row[4] / row[2]).toFixed(1) + '%'),
        el('td', 'num', fmtDur(row[5])), el('td', 'num', fmtDur(row[6])), el('td', 'num', fmtDur(row[7])));
      tr.title = 'show the traces with "' + row[1] + '"';
      tr.addEventListener('click', () => { $('search').value = row[1]; setQuery(row[1]); showTab('traces'); });
      body.append(tr);
    }
    $('services-note').textContent = D.red.length + ' series · rate over ' + fmtDur(D.window * 1e9) +
      ' (first span start to last span end) · percentiles by nearest rank';
  }
  function showTab(which) {
    $('traces-view').hidden = which !== 'traces';
    $('services-view').hidden = which !== 'services';
    $('tab-traces').classList.toggle('on', which === 'traces');
    $('tab-services').classList.toggle('on', which === 'services');
    if (which === 'services' && !document.querySelector('#services tbody').children.length) drawServices();
    if (which === 'traces') { tlist.draw(); wf.draw(); }
  }
  $('tab-traces').addEventListener('click', () => showTab('traces'));
  $('tab-services').addEventListener('click', () => showTab('services'));

  /* ---- search and keys ---- */
  let qTimer = 0;
  function setQuery(q) {
    state.q = q.trim().toLowerCase();
    refreshList(true);
    if (state.q && state.trace >= 0 && state.hits) {
      const first = TR[state.trace][FIRST], end = first + TR[state.trace][N];
      for (let i = first; i < end; i++) if (state.hits[i]) { selectSpan(i, true); break; }
    }
  }
  $('search').addEventListener('input', (ev) => {
    clearTimeout(qTimer);
    qTimer = setTimeout(() => setQuery(ev.target.value), SP.length > 20000 ? 200 : 60);
  });
  $('only-errors').addEventListener('change', (ev) => { state.onlyErrors = ev.target.checked; refreshList(true); });

  function moveSpan(delta) {
    if (!state.rows.length) return;
    let k = state.rows.indexOf(state.sel);
    k = k < 0 ? 0 : Math.max(0, Math.min(state.rows.length - 1, k + delta));
    selectSpan(state.rows[k], true);
  }
  function moveTrace(delta) {
    if (!state.order.length) return;
    let k = state.order.indexOf(state.trace);
    k = k < 0 ? 0 : Math.max(0, Math.min(state.order.length - 1, k + delta));
    selectTrace(state.order[k], true);
  }
  document.addEventListener('keydown', (ev) => {
    const typing = ev.target instanceof HTMLInputElement && ev.target.type !== 'checkbox';
    if (ev.key === '/' && !typing) { ev.preventDefault(); $('search').focus(); $('search').select(); return; }
    if (typing) { if (ev.key === 'Escape' || ev.key === 'Enter') ev.target.blur(); return; }
    if (ev.ctrlKey || ev.metaKey || ev.altKey || $('traces-view').hidden) return;
    const i = state.sel;
    switch (ev.key) {
      case 'ArrowDown': moveSpan(1); break;
      case 'ArrowUp': moveSpan(-1); break;
      case 'PageDown': moveSpan(20); break;
      case 'PageUp': moveSpan(-20); break;
      case 'Home': moveSpan(-1e9); break;
      case 'End': moveSpan(1e9); break;
      case 'ArrowRight':
        if (i >= 0 && hasKids(i)) {
          if (state.collapsed.has(i)) toggle(i); else selectSpan(i + 1, true);
        }
        break;
      case 'ArrowLeft':
        if (i >= 0 && hasKids(i) && !state.collapsed.has(i)) toggle(i);
        else if (i >= 0 && SP[i][PAR] >= 0) selectSpan(SP[i][PAR], true);
        break;
      case 'j': moveTrace(1); break;
      case 'k': moveTrace(-1); break;
      default: return;
    }
    ev.preventDefault();
  });

  /* ---- start ---- */
  $('files').textContent = D.files.join(', ');
  $('files').title = D.files.join('\n');
  const c = D.counts, notes = [plural(c.spans, 'span') + ' in ' + plural(TR.length, 'trace')];
  if (c.logs) notes.push(c.logs + ' log records');
  if (c.dropped) notes.push(c.dropped + ' spans not read (limit)');
  if (c.invalid) notes.push(c.invalid + ' spans without valid ids skipped');
  if (c.metrics) notes.push(c.metrics + ' metrics documents skipped');
  notes.push('keys: ↑↓ spans, ←→ collapse/expand, j/k traces, / search');
  refreshList(false);
  const ms = Math.round(performance.now());
  notes.push('ready in ' + ms + ' ms (script ' + Math.round(performance.now() - t_start) + ' ms)');
  $('status').textContent = notes.join(' · ');
  document.documentElement.dataset.ready = String(ms);
  window.spanshimReport = { readyMs: ms, scriptMs: performance.now() - t_start, spans: SP.length, traces: TR.length };
}
