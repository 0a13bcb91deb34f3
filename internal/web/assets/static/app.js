// bpagents dashboard script: the live event feed (Server-Sent Events), live
// figures on the overview, SVG plots, lazily loaded execution logs and the
// rating form's reward preview. No library, no other host: everything this
// page needs comes from the bpagents server itself. Text from agents is only
// ever set with textContent, never parsed as HTML.
'use strict';
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const SVGNS = 'http://www.w3.org/2000/svg';
  const COLORS = ['#1f6feb', '#e8590c', '#2f9e44', '#ae3ec9', '#f59f00', '#0c8599'];

  function node(tag, attrs, text) {
    const el = tag.startsWith('svg:') ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function path(obj, dotted) {
    return dotted.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj);
  }

  function fmtNum(v) {
    if (!isFinite(v)) return '';
    const a = Math.abs(v);
    if (a >= 1000) return Math.round(v).toLocaleString('en-US');
    if (a >= 1 || a === 0) return String(Number(v.toFixed(2)));
    return String(Number(v.toPrecision(3)));
  }

  // ---- live event feed ----
  function compact(data) {
    if (data === null || typeof data !== 'object') return JSON.stringify(data);
    const s = Object.keys(data).sort().map(k => k + '=' + JSON.stringify(data[k])).join(' ');
    return s.length > 300 ? s.slice(0, 300) + '…' : s;
  }

  function eventRow(ev) {
    const tr = node('tr', { class: 'new' });
    tr.append(node('td', { class: 'num' }, String(ev.seq)));
    tr.append(node('td', { class: 'time' }, (ev.time || '').slice(11, 19)));
    tr.append(node('td', { class: 'num' }, String(ev.cycle)));
    const type = node('td');
    type.append(node('span', { class: 'etype' }, ev.type));
    tr.append(type);
    const agent = node('td');
    if (ev.agent_id) agent.append(node('a', { href: '/ui/agents/' + encodeURIComponent(ev.agent_id) }, ev.agent_id));
    tr.append(agent);
    tr.append(node('td', { class: 'data' }, compact(ev.data)));
    return tr;
  }

  function startFeed(tbody) {
    const max = parseInt(tbody.dataset.max, 10) || 200;
    const status = $('[data-feed-status]');
    const count = $('[data-feed-count]');
    const setStatus = (text, cls) => {
      if (!status) return;
      status.textContent = text;
      status.className = 'live ' + cls;
    };
    let received = 0;
    // EventSource reconnects by itself and resumes after the last id it saw.
    const es = new EventSource(tbody.dataset.feed);
    es.onopen = () => setStatus('live', 'on');
    es.onerror = () => setStatus('reconnecting…', 'off');
    es.onmessage = msg => {
      let ev;
      try { ev = JSON.parse(msg.data); } catch (e) { return; }
      tbody.insertBefore(eventRow(ev), tbody.firstChild);
      while (tbody.rows.length > max) tbody.deleteRow(-1);
      received++;
      if (count) count.textContent = String(received);
      tbody.dataset.received = String(received);
    };
    window.addEventListener('pagehide', () => es.close());
  }

  // ---- live figures on the overview ----
  function refreshStatus(root) {
    const tick = async () => {
      try {
        const r = await fetch(root.dataset.statusRefresh, { headers: { Accept: 'application/json' } });
        if (!r.ok) return;
        const st = await r.json();
        $$('[data-stat]').forEach(el => {
          const v = path(st, el.dataset.stat);
          if (v === undefined || v === null) return;
          el.textContent = el.dataset.format === 'percent' ? Math.round(v * 100) + '%' : String(v);
        });
        $$('[data-util]').forEach(td => {
          const u = path(st, 'markets.' + td.dataset.util + '.utilization');
          const fill = $('rect.fill', td);
          if (fill && typeof u === 'number') fill.setAttribute('width', (Math.max(0, Math.min(1, u)) * 100).toFixed(1));
        });
      } catch (e) { /* the server may be restarting; try again later */ }
    };
    setInterval(tick, 3000);
  }

  // ---- plots ----
  // spec: {x: "time"|"cycle", y: "credits"|"percent"|"price"|"count", step, zero, series: [{name, points: [[x, y]]}]}
  function plot(svg, spec) {
    svg._spec = spec;
    const W = Math.max(svg.clientWidth, 300), H = Math.max(svg.clientHeight, 140);
    const L = 62, R = 14, T = spec.series.length > 1 ? 26 : 14, B = 24;
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const pts = spec.series.flatMap(s => s.points.filter(p => p[1] !== null && p[1] !== undefined && isFinite(p[1])));
    if (pts.length === 0) {
      svg.append(node('svg:text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'none' }, 'no data yet'));
      return;
    }
    let xmin = Math.min(...pts.map(p => p[0])), xmax = Math.max(...pts.map(p => p[0]));
    let ymin = Math.min(...pts.map(p => p[1])), ymax = Math.max(...pts.map(p => p[1]));
    if (spec.y === 'percent') { ymin = 0; ymax = Math.max(1, ymax); }
    if (spec.zero || spec.y === 'credits' || spec.y === 'count') ymin = Math.min(0, ymin);
    if (ymax === ymin) { ymax = ymin + (Math.abs(ymin) || 1); if (spec.y === 'price') ymin = Math.max(0, ymin - (ymax - ymin)); }
    if (xmax === xmin) xmax = xmin + 1;
    const sx = x => L + (x - xmin) / (xmax - xmin) * (W - L - R);
    const sy = y => H - B - (y - ymin) / (ymax - ymin) * (H - T - B);
    const fy = v => spec.y === 'percent' ? Math.round(v * 100) + '%' : fmtNum(v);
    const fx = v => spec.x === 'time' ? new Date(v).toISOString().slice(11, 19) : 'cycle ' + Math.round(v);
    for (let i = 0; i <= 4; i++) {
      const v = ymin + i * (ymax - ymin) / 4, y = sy(v);
      svg.append(node('svg:line', { x1: L, x2: W - R, y1: y, y2: y, class: i ? 'grid' : 'axis' }));
      svg.append(node('svg:text', { x: L - 6, y: y + 4, 'text-anchor': 'end' }, fy(v)));
    }
    svg.append(node('svg:line', { x1: L, x2: L, y1: T, y2: H - B, class: 'axis' }));
    [[xmin, 'start'], [(xmin + xmax) / 2, 'middle'], [xmax, 'end']].forEach(([v, anchor]) =>
      svg.append(node('svg:text', { x: sx(v), y: H - 6, 'text-anchor': anchor }, fx(v))));
    spec.series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      const out = [];
      let prev = null;
      for (const p of s.points) {
        if (p[1] === null || p[1] === undefined || !isFinite(p[1])) continue;
        if (spec.step && prev) out.push(sx(p[0]).toFixed(1) + ',' + sy(prev[1]).toFixed(1));
        out.push(sx(p[0]).toFixed(1) + ',' + sy(p[1]).toFixed(1));
        prev = p;
      }
      svg.append(node('svg:polyline', { points: out.join(' '), stroke: color }));
      if (spec.series.length > 1) {
        const x = L + 8 + i * 130;
        svg.append(node('svg:rect', { x: x, y: 6, width: 10, height: 10, fill: color }));
        svg.append(node('svg:text', { x: x + 14, y: 15 }, s.name));
      }
    });
  }

  function redrawAll() { $$('svg.plot').forEach(svg => { if (svg._spec) plot(svg, svg._spec); }); }

  const ORDER = ['cpu', 'memory_mb', 'tokens', 'attention'];
  function marketHistory(sec) {
    const note = $('[data-history-note]', sec);
    const load = async () => {
      let h;
      try {
        const r = await fetch(sec.dataset.marketHistory, { headers: { Accept: 'application/json' } });
        if (!r.ok) throw new Error('HTTP ' + r.status);
        h = await r.json();
      } catch (e) {
        if (note) note.textContent = 'could not load: ' + e.message;
        return;
      }
      const cl = (h.clearings || []).slice().reverse();
      if (note) note.textContent = cl.length
        ? `cycles ${cl[0].cycle}–${cl[cl.length - 1].cycle} (${cl.length} clearings), refreshed ${new Date().toLocaleTimeString()}`
        : 'no clearings yet';
      $$('[data-price]', sec).forEach(svg => {
        const res = svg.dataset.price;
        plot(svg, { x: 'cycle', y: 'price', step: true, series: [{ name: res, points: cl.map(c => [c.cycle, c.prices[res]]) }] });
      });
      const present = ORDER.filter(r => cl.some(c => c.utilization && r in c.utilization));
      const util = $('[data-util-plot]', sec);
      if (util) plot(util, { x: 'cycle', y: 'percent', step: true,
        series: present.map(r => ({ name: r, points: cl.map(c => [c.cycle, c.utilization[r]]) })) });
      const size = $('[data-size-plot]', sec);
      if (size) plot(size, { x: 'cycle', y: 'count', step: true, series: [
        { name: 'pending bids', points: cl.map(c => [c.cycle, c.pending]) },
        { name: 'winners', points: cl.map(c => [c.cycle, c.winners]) }] });
    };
    load();
    setInterval(load, 5000);
  }

  // ---- execution logs, loaded when opened ----
  function lazyLogs(d) {
    d.addEventListener('toggle', async () => {
      if (!d.open || d.dataset.loaded || d.dataset.status !== 'finished') return;
      d.dataset.loaded = 'loading';
      const pre = $('pre.logs', d);
      try {
        const r = await fetch('/executions/' + encodeURIComponent(d.dataset.logs) + '/logs', { headers: { Accept: 'application/json' } });
        const body = await r.json();
        if (!r.ok) { pre.textContent = body.detail || ('HTTP ' + r.status); return; }
        pre.textContent = body.output || '(no output)';
        if (body.dropped_bytes) pre.textContent += `\n… ${body.dropped_bytes} bytes were cut from the middle`;
        d.dataset.loaded = 'yes';
      } catch (e) {
        pre.textContent = 'could not load the output: ' + e.message;
        delete d.dataset.loaded;
      }
    });
  }

  // ---- the rating form's reward preview ----
  function ratePreview(f) {
    const weight = parseFloat(f.dataset.weight) || 0;
    const out = $('[data-reward]', f);
    const update = () => {
      let sum = 0;
      for (const n of ['interesting', 'useful', 'understandable']) sum += parseInt(f.elements[n].value, 10) || 0;
      out.textContent = fmtNum(sum * weight);
    };
    f.addEventListener('input', update);
    update();
  }

  function init() {
    $$('tbody[data-feed]').forEach(startFeed);
    $$('[data-status-refresh]').forEach(refreshStatus);
    $$('svg[data-plot]').forEach(svg => {
      try { plot(svg, JSON.parse(svg.dataset.plot)); } catch (e) { /* leave it empty */ }
    });
    $$('[data-market-history]').forEach(marketHistory);
    $$('details[data-logs]').forEach(lazyLogs);
    $$('form.rate-form').forEach(ratePreview);
    $$('[data-tree]').forEach(b => b.addEventListener('click', () => {
      const open = b.dataset.tree === 'open';
      $$('ul.tree details').forEach(d => { d.open = open; });
    }));
    let pending = 0;
    window.addEventListener('resize', () => { clearTimeout(pending); pending = setTimeout(redrawAll, 150); });
    document.documentElement.dataset.ready = 'yes';
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
