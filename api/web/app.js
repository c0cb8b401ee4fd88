// fleetmeter tenant page: plain JS, no dependencies, charts drawn as SVG by hand. Every
// figure comes from the API (/v1/...) with the key the user signed in with; money is kept
// exact as BigInt micro-units and printed with six decimals, as the API does.
'use strict';

const $ = (sel) => document.querySelector(sel);
const palette = ['#1f6feb', '#f79009', '#12b76a', '#d92d20', '#7a5af8', '#0ba5ec', '#ee46bc', '#667085'];
const DAY = 86400000;

let key = sessionStorage.getItem('fleetmeter-key') || '';

async function api(path) {
  const r = await fetch(path, { headers: { Authorization: 'Bearer ' + key } });
  const body = await r.json().catch(() => ({ error: 'HTTP ' + r.status }));
  if (!r.ok) {
    const err = new Error(body.error || ('HTTP ' + r.status));
    err.status = r.status;
    throw err;
  }
  return body;
}

// Money: "12.345678" <-> BigInt micro-units.
function micros(s) {
  const neg = s.startsWith('-');
  const [i, f = ''] = (neg ? s.slice(1) : s).split('.');
  const v = BigInt(i) * 1000000n + BigInt((f + '000000').slice(0, 6));
  return neg ? -v : v;
}
function money(m) {
  const neg = m < 0n;
  const a = neg ? -m : m;
  return (neg ? '-' : '') + (a / 1000000n).toString() + '.' + (a % 1000000n).toString().padStart(6, '0');
}
function bytes(n) {
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(n < 10 ? 2 : 1) : String(n)) + ' ' + u[i];
}
const day = (ms) => new Date(ms).toISOString().slice(0, 10);

function el(tag, attrs = {}, text) {
  const e = document.createElementNS(tag === 'svg' || attrs.svg ? 'http://www.w3.org/2000/svg' : 'http://www.w3.org/1999/xhtml', tag);
  for (const [k, v] of Object.entries(attrs)) if (k !== 'svg') e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// stacked draws a stacked bar chart of rows (bucket, group value, value) into target.
function stacked(target, rows, dim, value, fmt) {
  const buckets = [...new Set(rows.map((r) => r.bucket))].sort();
  const series = [...new Set(rows.map((r) => r[dim] || '(device fees)'))].sort();
  const v = new Map();
  for (const r of rows) {
    const k = r.bucket + '\u0000' + (r[dim] || '(device fees)');
    v.set(k, (v.get(k) || 0) + value(r));
  }
  const W = 640, H = 240, L = 70, B = 36, T = 10, R = 10;
  const tot = buckets.map((b) => series.reduce((s, x) => s + (v.get(b + '\u0000' + x) || 0), 0));
  const max = Math.max(1e-9, ...tot);
  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'data-series': series.join(',') });
  const pw = W - L - R, ph = H - T - B;
  for (let g = 0; g <= 4; g++) {
    const y = T + ph - (ph * g) / 4;
    svg.appendChild(el('line', { svg: 1, x1: L, x2: W - R, y1: y, y2: y, stroke: '#e4e7ec' }));
    svg.appendChild(el('text', { svg: 1, x: L - 6, y: y + 4, 'text-anchor': 'end' }, fmt((max * g) / 4)));
  }
  const bw = pw / Math.max(1, buckets.length);
  const every = Math.ceil(buckets.length / 8);
  buckets.forEach((b, i) => {
    let y = T + ph;
    series.forEach((s, j) => {
      const h = ((v.get(b + '\u0000' + s) || 0) / max) * ph;
      if (h > 0) {
        y -= h;
        const rect = el('rect', { svg: 1, x: L + i * bw + bw * 0.1, y, width: Math.max(1, bw * 0.8), height: h, fill: palette[j % palette.length] });
        rect.appendChild(el('title', { svg: 1 }, `${b} ${s}: ${fmt(v.get(b + '\u0000' + s))}`));
        svg.appendChild(rect);
      }
    });
    if (i % every === 0) {
      const label = b.length > 10 && !b.endsWith('T00:00:00Z') ? b.slice(5, 13).replace('T', ' ') + 'h' : b.slice(0, 10);
      svg.appendChild(el('text', { svg: 1, x: L + i * bw + bw / 2, y: H - B + 16, 'text-anchor': 'middle' }, label));
    }
  });
  target.replaceChildren(svg);
  const legend = el('div', { class: 'legend' });
  series.forEach((s, j) => {
    const item = el('span');
    item.appendChild(el('span', { class: 'swatch s' + (j % palette.length) }));
    item.appendChild(document.createTextNode(s));
    legend.appendChild(item);
  });
  target.appendChild(legend);
}

function fillTable(sel, rows) {
  const body = $(sel + ' tbody');
  body.replaceChildren(...rows.map((cells) => {
    const tr = el('tr');
    for (const c of cells) {
      const td = el('td', c.testid ? { 'data-testid': c.testid } : {}, c.text !== undefined ? c.text : c);
      tr.appendChild(td);
    }
    return tr;
  }));
}

function pickWindow(from, to) {
  const w = $('#window').value;
  if (w !== 'auto') return w;
  const days = (to - from) / DAY;
  return days <= 2 ? 'hour' : days <= 92 ? 'day' : 'month';
}

async function load() {
  const status = $('#status');
  status.dataset.state = 'loading';
  status.textContent = 'loading…';
  try {
    const from = Date.parse($('#from').value + 'T00:00:00Z');
    const to = Date.parse($('#to').value + 'T00:00:00Z');
    const win = pickWindow(from, to);
    const rng = `from=${day(from)}&to=${day(to)}`;
    const [byZone, byMob, zones, top, active, periods] = await Promise.all([
      api(`/v1/usage?${rng}&window=${win}&group_by=zone`),
      api(`/v1/usage?${rng}&window=${win}&group_by=mobility`),
      api(`/v1/usage?${rng}&window=month&group_by=zone`),
      api(`/v1/devices/top?${rng}&limit=10`),
      api(`/v1/devices/active?${rng}&window=month`),
      api(`/v1/periods?${rng}`),
    ]);
    let devices = 0;
    for (let cursor = ''; ;) {
      const page = await api(`/v1/devices?${rng}&limit=1000${cursor}`);
      devices += page.devices.length;
      if (!page.next_cursor) break;
      cursor = '&cursor=' + page.next_cursor;
    }
    const bytesOf = (r) => r.bytes_up + r.bytes_down;
    const amountOf = (r) => Number(micros(r.amount)) / 1e6;
    stacked($('#chart-bytes-zone'), byZone.rows, 'zone', bytesOf, bytes);
    stacked($('#chart-amount-zone'), byZone.rows, 'zone', amountOf, (x) => x.toFixed(2));
    stacked($('#chart-bytes-mobility'), byMob.rows, 'mobility', bytesOf, bytes);
    stacked($('#chart-amount-mobility'), byMob.rows, 'mobility', amountOf, (x) => x.toFixed(2));

    // Zone table and totals: every charge, summed exactly over the monthly buckets.
    const z = new Map();
    let recs = 0, by = 0, amt = 0n;
    for (const r of zones.rows) {
      const k = r.zone || '(device fees)';
      const cur = z.get(k) || { records: 0, bytes: 0, amount: 0n };
      cur.records += r.records; cur.bytes += bytesOf(r); cur.amount += micros(r.amount);
      z.set(k, cur);
      recs += r.records; by += bytesOf(r); amt += micros(r.amount);
    }
    fillTable('#zones', [...z.entries()].sort((a, b) => (b[1].amount > a[1].amount ? 1 : b[1].amount < a[1].amount ? -1 : 0)).map(([k, x]) => [
      { text: k, testid: 'zone-name' }, { text: String(x.records), testid: 'zone-records' },
      { text: bytes(x.bytes) }, { text: money(x.amount), testid: 'zone-amount' }]));
    $('[data-testid=total-records]').textContent = String(recs);
    $('[data-testid=total-bytes]').textContent = bytes(by);
    $('[data-testid=total-amount]').textContent = money(amt);
    $('[data-testid=total-devices]').textContent = String(devices);
    fillTable('#top', top.devices.map((d) => [{ text: d.device, testid: 'top-device' }, String(d.records), bytes(d.bytes),
      { text: d.amount, testid: 'top-amount' }]));
    fillTable('#active', active.buckets.map((b) => [{ text: b.bucket.slice(0, 7), testid: 'active-period' },
      { text: String(b.devices), testid: 'active-devices' },
      { text: b.fee_tier ? `tier ${b.fee_tier} (${b.fee_tier_upto ? 'up to ' + b.fee_tier_upto : 'unbounded'}, ${b.fee_tier_price} each)` : '—', testid: 'active-tier' }]));
    fillTable('#periods', periods.periods.map((p) => [{ text: p.period, testid: 'period-name' },
      { text: p.status + (p.fees_exact ? ' (exact)' : ' (provisional)'), testid: 'period-status' },
      p.usage_amount, p.fees, { text: p.total + ' ' + p.currency, testid: 'period-total' }]));
    status.dataset.state = 'ready';
    status.textContent = `${win} buckets · ${byZone.tenant}`;
  } catch (e) {
    status.dataset.state = 'error';
    status.textContent = e.message;
    if (e.status === 401) signOut();
  }
}

async function defaultRange() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get('from') && params.get('to')) return [params.get('from'), params.get('to')];
  // The latest billing period with records, within the last 399 days.
  const now = Date.now();
  const p = await api(`/v1/periods?from=${day(now - 399 * DAY)}&to=${day(now + DAY)}`);
  const last = p.periods.length ? p.periods[p.periods.length - 1].period : new Date(now).toISOString().slice(0, 7);
  const [y, m] = last.split('-').map(Number);
  return [`${last}-01`, day(Date.UTC(y, m, 1))];
}

async function signIn() {
  const who = await api('/v1/whoami');
  $('#who').textContent = 'tenant ' + who.tenant;
  $('#signin').hidden = true;
  $('#dash').hidden = false;
  $('#signout').hidden = false;
  const [f, t] = await defaultRange();
  $('#from').value = f;
  $('#to').value = t;
  await load();
}

function signOut() {
  sessionStorage.removeItem('fleetmeter-key');
  key = '';
  $('#signin').hidden = false;
  $('#dash').hidden = true;
  $('#signout').hidden = true;
  $('#who').textContent = '';
}

document.addEventListener('DOMContentLoaded', () => {
  $('#signin').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    key = $('#key').value.trim();
    try {
      await signIn();
      sessionStorage.setItem('fleetmeter-key', key);
      $('#signin-error').textContent = '';
    } catch (e) {
      key = '';
      $('#signin-error').textContent = e.status === 401 ? 'Unknown key.' : e.message;
    }
  });
  $('#range').addEventListener('submit', (ev) => { ev.preventDefault(); load(); });
  $('#signout').addEventListener('click', signOut);
  if (key) signIn().catch(signOut);
});
