// Khaacho console: one vanilla module, no dependencies, no build step. It speaks only the
// public API (/api/v1) with the signed-in user's token and the live-updates WebSocket, so it
// can do nothing the API would not let that user do. Pages are hash routes (#/board, …);
// every text shown to people comes from the dictionary below (English and Nepali).

// ---------------------------------------------------------------------------------------
// Labels
// ---------------------------------------------------------------------------------------

const DICT = {
  en: {
    signin: 'Sign in', signout: 'Sign out', username: 'Username', password: 'Password',
    board: 'Order board', held: 'Held orders', queue: 'Queue', agents: 'Breakers & LLM',
    sla: 'SLA & alerts', mode: 'Safe mode', vendors: 'Vendor grades', credit: 'Credit exposure',
    prices: 'Price alerts', outbox: 'Message outbox', offers: 'My offers', my_orders: 'My orders',
    account: 'My account', order: 'Order', orders: 'Orders', status: 'Status', retailer: 'Retailer',
    vendor: 'Vendor', all: 'All', total: 'Total', channel: 'Channel', created: 'Created',
    updated: 'Updated', reason: 'Reason', approve: 'Approve', reject: 'Reject', retry: 'Retry',
    discard: 'Discard', accept: 'Accept', dispatch: 'Dispatch', deliver: 'Deliver', cancel: 'Cancel',
    acknowledge: 'Acknowledge', refresh: 'Refresh', load_more: 'Load more', none: 'Nothing here.',
    timeline: 'Timeline', lines: 'Lines', line_one: 'line', line_many: 'lines', product: 'Product', qty: 'Quantity', unit: 'Unit',
    price: 'Unit price', subtotal: 'Subtotal', vat: 'VAT', hold_reason: 'Held because',
    reject_reason: 'Rejected because', priority: 'Priority', payment_mode: 'Payment',
    risk: 'Risk', credit_hold: 'Credit hold', fulfilments: 'Vendor parts', kind: 'Kind',
    attempts: 'Attempts', last_error: 'Last error', dead_jobs: 'Dead jobs',
    queued_jobs: 'Queued jobs', running_jobs: 'Running jobs', dead_messages: 'Dead messages',
    llm: 'LLM parsing', enabled: 'On', disabled: 'Off', turn_on: 'Turn on', turn_off: 'Turn off',
    breaker: 'Breaker', provider: 'Provider', window: 'Window', requests: 'Requests',
    server_errors: 'Server errors', refused: 'Of them turned away', availability: 'Availability', p95: 'p95', p99: 'p99',
    error_rate: 'Error rate', met: 'Met', not_met: 'Not met', alerts: 'Alerts',
    severity: 'Severity', message: 'Message', open_only: 'Open only', show_all: 'Show all',
    acknowledged: 'Acknowledged', level: 'Level', since: 'Since', safe_mode: 'Safe mode',
    safe_on: 'Safe mode is ON', safe_off: 'Safe mode is off', paused_queues: 'Paused queues',
    enable_safe: 'Turn safe mode on', disable_safe: 'Turn safe mode off',
    admin_only: 'Only an admin may change this.', score: 'Score', grade: 'Grade',
    needs_attention: 'Needs attention', no_score: 'No score yet', accounts: 'Accounts',
    limit: 'Limit', held_amount: 'Held', outstanding: 'Outstanding', not_due: 'Not yet due',
    overdue_0_7: 'Overdue 0–7 days', overdue_8_15: 'Overdue 8–15 days',
    overdue_16_30: 'Overdue 16–30 days', overdue_30_plus: 'Overdue over 30 days',
    credit_alerts: 'Credit alerts', recipient: 'Recipient', template: 'Template',
    deadline: 'Deadline', deliver_to: 'Deliver to', available: 'Available', balance: 'Balance', amount: 'Amount',
    ledger: 'Ledger', terms: 'Terms (days)', band: 'Band', due: 'Due', note: 'Note', at: 'When',
    live_up: 'Live: connected', live_down: 'Live: reconnecting…', network: 'Network error',
    network_detail: 'The server could not be reached. Check the connection and try again.',
    reason_needed: 'Write a reason first.', held_orders: 'Held orders',
    status_counts: 'Orders by status', subject: 'Subject', retailer_account: 'Account of',
    choose: 'Choose…', actor: 'By', vendor_grades: 'Grades', expired: 'Your session ended; sign in again.',
    window_hours: 'Window', reasons_optional: 'Reason (optional)', open: 'Open',
    s_received: 'Received', s_validated: 'Validated', s_on_hold: 'On hold', s_routed: 'Routed',
    s_accepted: 'Accepted', s_dispatched: 'Dispatched', s_delivered: 'Delivered',
    s_completed: 'Completed', s_rejected: 'Rejected', s_cancelled: 'Cancelled', s_failed: 'Failed',
    s_offered: 'Offered', s_queued: 'Queued', s_sending: 'Sending', s_sent: 'Sent', s_dead: 'Dead',
    s_running: 'Running', s_normal: 'Normal', s_degraded: 'Degraded', s_critical: 'Critical',
    s_warning: 'Warning', s_info: 'Info', s_expired: 'Expired', s_reassigned: 'Reassigned',
  },
  ne: {
    signin: 'साइन इन', signout: 'साइन आउट', username: 'प्रयोगकर्ता नाम', password: 'पासवर्ड',
    board: 'अर्डर बोर्ड', held: 'रोकिएका अर्डर', queue: 'लाइन (क्यु)', agents: 'ब्रेकर र एलएलएम',
    sla: 'सेवा स्तर र सतर्कता', mode: 'सुरक्षित मोड', vendors: 'विक्रेता ग्रेड', credit: 'उधारो जोखिम',
    prices: 'मूल्य सतर्कता', outbox: 'सन्देश आउटबक्स', offers: 'मेरा प्रस्ताव', my_orders: 'मेरा अर्डर',
    account: 'मेरो खाता', order: 'अर्डर', orders: 'अर्डरहरू', status: 'अवस्था', retailer: 'खुद्रा पसल',
    vendor: 'विक्रेता', all: 'सबै', total: 'जम्मा', channel: 'माध्यम', created: 'बनेको',
    updated: 'अद्यावधिक', reason: 'कारण', approve: 'स्वीकृत गर्नुहोस्', reject: 'अस्वीकार गर्नुहोस्',
    retry: 'फेरि प्रयास', discard: 'हटाउनुहोस्', accept: 'स्वीकार्नुहोस्', dispatch: 'पठाउनुहोस्',
    deliver: 'बुझाउनुहोस्', cancel: 'रद्द गर्नुहोस्', acknowledge: 'थाहा पाएँ', refresh: 'ताजा गर्नुहोस्',
    load_more: 'थप हेर्नुहोस्', none: 'केही छैन।', timeline: 'समयरेखा', lines: 'सामानहरू', line_one: 'सामान', line_many: 'सामान',
    product: 'सामान', qty: 'परिमाण', unit: 'एकाइ', price: 'एकाइ मूल्य', subtotal: 'उपजम्मा',
    vat: 'भ्याट', hold_reason: 'रोकिनुको कारण', reject_reason: 'अस्वीकारको कारण',
    priority: 'प्राथमिकता', payment_mode: 'भुक्तानी', risk: 'जोखिम', credit_hold: 'उधारो रोक्का',
    fulfilments: 'विक्रेताका भाग', kind: 'प्रकार', attempts: 'प्रयास', last_error: 'पछिल्लो त्रुटि',
    dead_jobs: 'मरेका काम', queued_jobs: 'लाइनमा रहेका काम', running_jobs: 'चलिरहेका काम',
    dead_messages: 'नपुगेका सन्देश', llm: 'एलएलएम पार्सिङ', enabled: 'खुला', disabled: 'बन्द',
    turn_on: 'खोल्नुहोस्', turn_off: 'बन्द गर्नुहोस्', breaker: 'ब्रेकर', provider: 'प्रदायक',
    window: 'अवधि', requests: 'अनुरोध', server_errors: 'सर्भर त्रुटि', refused: 'जसमध्ये फर्काइएका', availability: 'उपलब्धता',
    p95: 'पी९५', p99: 'पी९९', error_rate: 'त्रुटि दर', met: 'पूरा', not_met: 'पूरा भएन',
    alerts: 'सतर्कता', severity: 'गम्भीरता', message: 'सन्देश', open_only: 'खुला मात्र',
    show_all: 'सबै देखाउनुहोस्', acknowledged: 'थाहा पाइएको', level: 'स्तर', since: 'देखि',
    safe_mode: 'सुरक्षित मोड', safe_on: 'सुरक्षित मोड खुला छ', safe_off: 'सुरक्षित मोड बन्द छ',
    paused_queues: 'रोकिएका लाइन', enable_safe: 'सुरक्षित मोड खोल्नुहोस्',
    disable_safe: 'सुरक्षित मोड बन्द गर्नुहोस्', admin_only: 'यो एडमिनले मात्र बदल्न सक्छन्।',
    score: 'अंक', grade: 'ग्रेड', needs_attention: 'ध्यान चाहिन्छ', no_score: 'अहिलेसम्म अंक छैन',
    accounts: 'खाताहरू', limit: 'सीमा', held_amount: 'रोक्का', outstanding: 'बाँकी',
    not_due: 'म्याद नपुगेको', overdue_0_7: 'म्याद नाघेको ०–७ दिन', overdue_8_15: 'म्याद नाघेको ८–१५ दिन',
    overdue_16_30: 'म्याद नाघेको १६–३० दिन', overdue_30_plus: 'म्याद नाघेको ३० दिनभन्दा बढी',
    credit_alerts: 'उधारो सतर्कता', recipient: 'प्रापक', template: 'ढाँचा', deadline: 'अन्तिम समय', deliver_to: 'पठाउने ठेगाना',
    available: 'उपलब्ध', balance: 'मौज्दात', amount: 'रकम', ledger: 'खाता बही', terms: 'अवधि (दिन)',
    band: 'श्रेणी', due: 'तिर्नुपर्ने मिति', note: 'टिप्पणी', at: 'कहिले',
    live_up: 'प्रत्यक्ष: जोडिएको', live_down: 'प्रत्यक्ष: फेरि जोडिँदै…', network: 'सञ्जाल त्रुटि',
    network_detail: 'सर्भरसम्म पुग्न सकिएन। जडान जाँचेर फेरि प्रयास गर्नुहोस्।',
    reason_needed: 'पहिले कारण लेख्नुहोस्।', held_orders: 'रोकिएका अर्डर',
    status_counts: 'अवस्था अनुसार अर्डर', subject: 'विषय', retailer_account: 'खाता',
    choose: 'छान्नुहोस्…', actor: 'गर्ने', vendor_grades: 'ग्रेडहरू',
    expired: 'तपाईंको सत्र सकियो; फेरि साइन इन गर्नुहोस्।', window_hours: 'अवधि',
    reasons_optional: 'कारण (ऐच्छिक)', open: 'खुला',
    s_received: 'प्राप्त', s_validated: 'प्रमाणित', s_on_hold: 'रोकिएको', s_routed: 'विक्रेतालाई पठाइएको',
    s_accepted: 'स्वीकृत', s_dispatched: 'रवाना', s_delivered: 'बुझाइएको', s_completed: 'सम्पन्न',
    s_rejected: 'अस्वीकृत', s_cancelled: 'रद्द', s_failed: 'असफल', s_offered: 'प्रस्तावित',
    s_queued: 'लाइनमा', s_sending: 'पठाउँदै', s_sent: 'पठाइयो', s_dead: 'मरेको', s_running: 'चल्दै',
    s_normal: 'सामान्य', s_degraded: 'कमजोर', s_critical: 'गम्भीर', s_warning: 'चेतावनी',
    s_info: 'जानकारी', s_expired: 'म्याद सकिएको', s_reassigned: 'अर्कोलाई दिइएको',
  },
};

const ORDER_STATUSES = ['received', 'validated', 'on_hold', 'routed', 'accepted', 'dispatched',
  'delivered', 'completed', 'rejected', 'cancelled', 'failed'];

let lang = localStorage.getItem('khaacho.lang') === 'ne' ? 'ne' : 'en';

/** The label `key` in the chosen language (English, then the key itself, as fallbacks). */
function t(key) {
  return DICT[lang][key] ?? DICT.en[key] ?? key;
}

/** A status, severity or level word, translated when the dictionary knows it. */
function word(s) {
  if (s == null) return '—';
  const k = `s_${s}`;
  return DICT[lang][k] ?? DICT.en[k] ?? String(s);
}

function fmtNum(n, digits = 2) {
  if (n == null || Number.isNaN(Number(n))) return '—';
  // Lakh grouping in both; Devanagari digits in Nepali, mapped here: not every browser's
  // ICU carries the `ne` locale.
  const text = Number(n).toLocaleString('en-IN', { maximumFractionDigits: digits });
  return lang === 'ne' ? text.replace(/[0-9]/g, (d) => '०१२३४५६७८९'[d]) : text;
}

function npr(n) {
  return n == null ? '—' : `${lang === 'ne' ? 'रु' : 'NPR'} ${fmtNum(n)}`;
}

const paisa = (p) => (p == null ? null : p / 100);
const short = (id) => (id ? String(id).slice(-8) : '—');

// ---------------------------------------------------------------------------------------
// DOM
// ---------------------------------------------------------------------------------------

/** Builds an element; text is always set as text (never parsed as HTML). */
function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'data') for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = dv;
    else if (k in el && k !== 'list') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid == null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

const $ = (sel, root = document) => root.querySelector(sel);
const badge = (s) => h('span', { class: `badge ${s ?? ''}` }, word(s));
/** A green or red badge with its own text. */
const flag = (good, text) => h('span', { class: `badge ${good ? 'met' : 'open'}` }, text);

function table(headers, rows, empty = t('none')) {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  return h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, headers.map((x) => (typeof x === 'string'
      ? h('th', {}, x) : h('th', { class: x.cls }, x.label))))),
    h('tbody', {}, rows)));
}

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(([, v]) => v != null && v !== '')
    .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

// ---------------------------------------------------------------------------------------
// Errors: every failure shows the problem's title and detail, never a blank page
// ---------------------------------------------------------------------------------------

class Problem extends Error {
  constructor(p) {
    super(p.detail || p.title || 'error');
    this.title = p.title || 'Error';
    this.detail = p.detail || '';
    this.status = p.status;
    this.errors = Array.isArray(p.errors) ? p.errors : [];
  }
}

function showError(e) {
  const box = $('#error');
  let p = e;
  if (!(e instanceof Problem)) {
    p = e && e.title ? new Problem(e) : new Problem({ title: t('network'), detail: t('network_detail') });
    if (e && !e.title) console.error(e);
  }
  box.replaceChildren(h('strong', {}, p.title), p.detail,
    p.errors.length ? h('ul', {}, p.errors.map((x) => h('li', {}, `${x.field ?? ''}: ${x.message ?? ''}`))) : null);
  box.hidden = false;
}

function clearError() {
  $('#error').hidden = true;
}

window.addEventListener('unhandledrejection', (ev) => showError(ev.reason));

// ---------------------------------------------------------------------------------------
// Session: tokens in sessionStorage (gone with the tab), refreshed before they expire
// ---------------------------------------------------------------------------------------

let session = null;
let refreshTimer = null;
let refreshing = null;

try {
  session = JSON.parse(sessionStorage.getItem('khaacho.session') || 'null');
} catch {
  session = null;
}

function claimsOf(token) {
  const part = token.split('.')[1] || '';
  const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

function keep(pair, username) {
  const c = claimsOf(pair.access_token);
  session = {
    access: pair.access_token,
    refresh: pair.refresh_token,
    expires: Date.now() + pair.expires_in * 1000,
    role: c.role,
    tenant: c.tenant ?? null,
    username: username ?? session?.username ?? '',
  };
  sessionStorage.setItem('khaacho.session', JSON.stringify(session));
  scheduleRefresh();
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  if (!session) return;
  const wait = Math.max(5_000, session.expires - Date.now() - 60_000);
  refreshTimer = setTimeout(() => refresh().catch(() => {}), wait);
}

/** Rotates the refresh token (one at a time); a refused one ends the session. */
function refresh() {
  if (refreshing) return refreshing;
  refreshing = (async () => {
    try {
      const res = await fetch('/api/v1/auth/refresh', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ refresh_token: session?.refresh ?? '' }),
      });
      if (!res.ok) {
        const p = await problemOf(res);
        endSession();
        showError(new Problem({ title: p.title, detail: `${p.detail} — ${t('expired')}` }));
        throw p;
      }
      keep(await res.json());
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

async function problemOf(res) {
  const text = await res.text().catch(() => '');
  try {
    const p = JSON.parse(text);
    if (p && (p.title || p.detail)) return new Problem({ status: res.status, ...p });
  } catch { /* not JSON */ }
  return new Problem({ title: `${res.status} ${res.statusText}`, detail: text.slice(0, 300), status: res.status });
}

/** Calls the API as the signed-in user; throws a `Problem` on any non-2xx answer. */
async function api(method, path, body, again = true) {
  if (session && Date.now() > session.expires - 30_000) await refresh();
  const headers = {};
  if (session) headers.authorization = `Bearer ${session.access}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`/api/v1${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401 && again && session) {
    await refresh();
    return api(method, path, body, false);
  }
  if (!res.ok) throw await problemOf(res);
  if (res.status === 204) return null;
  const ct = res.headers.get('content-type') || '';
  return ct.includes('json') ? res.json() : res.text();
}

async function signIn(username, password) {
  const res = await fetch('/api/v1/auth/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  if (!res.ok) throw await problemOf(res);
  keep(await res.json(), username);
}

async function signOut() {
  const refreshToken = session?.refresh;
  endSession();
  if (refreshToken) {
    await fetch('/api/v1/auth/logout', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token: refreshToken }),
    }).catch(() => {});
  }
  go('');
}

/** Shows page `name`: a new hash renders through `hashchange`, the same one here. */
function go(name) {
  const want = `#/${name}`;
  if (location.hash === want) render();
  else location.hash = want;
}

function endSession() {
  session = null;
  sessionStorage.removeItem('khaacho.session');
  clearTimeout(refreshTimer);
  live.stop();
}

// ---------------------------------------------------------------------------------------
// Live updates: POST /ws/tickets, then the socket; resume from the last event id seen
// ---------------------------------------------------------------------------------------

const live = {
  ws: null,
  lastId: null,
  backoff: 1000,
  stopped: true,
  starting: false,
  timer: null,
  handlers: new Set(),

  async start() {
    if (this.ws || this.starting || !session) return;
    this.stopped = false;
    this.starting = true;
    clearTimeout(this.timer);
    let ticket;
    try {
      ticket = await api('POST', '/ws/tickets');
    } catch (e) {
      this.status(false);
      this.later();
      return;
    } finally {
      this.starting = false;
    }
    if (this.stopped || this.ws || !session) return;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${proto}//${location.host}${ticket.url}`);
    this.ws = ws;
    ws.onopen = () => {
      const frame = { type: 'subscribe', topics: ['orders'] };
      if (this.lastId) frame.after = this.lastId;
      ws.send(JSON.stringify(frame));
    };
    ws.onmessage = (m) => {
      let f;
      try { f = JSON.parse(m.data); } catch { return; }
      if (f.type === 'event') {
        this.lastId = f.id;
        for (const fn of this.handlers) {
          try { fn(f); } catch (e) { showError(e); }
        }
      } else if (f.type === 'caught_up') {
        this.backoff = 1000;
        this.status(true);
      } else if (f.type === 'error' && f.problem) {
        if (f.problem.status === 404 && this.lastId) {
          // The event to resume after is gone: follow from now and read the page again.
          this.lastId = null;
          ws.send(JSON.stringify({ type: 'subscribe', topics: ['orders'] }));
          render();
        } else {
          showError(f.problem);
        }
      }
    };
    ws.onclose = () => {
      if (this.ws === ws) this.ws = null;
      this.status(false);
      this.later();
    };
  },

  later() {
    if (this.stopped || !session) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.start(), this.backoff);
    this.backoff = Math.min(this.backoff * 2, 30_000);
  },

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) { const ws = this.ws; this.ws = null; ws.close(); }
    this.lastId = null;
    this.status(null);
  },

  status(up) {
    const el = $('#live');
    if (!el) return;
    el.hidden = up == null;
    el.className = `live ${up ? 'up' : 'down'}`;
    el.dataset.state = up ? 'up' : 'down';
    el.textContent = up ? t('live_up') : t('live_down');
  },
};

// ---------------------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------------------

const STAFF = ['admin', 'operator'];
const PAGES = {
  board: { roles: [...STAFF, 'retailer'], label: () => (session?.role === 'retailer' ? t('my_orders') : t('board')), view: boardPage },
  held: { roles: STAFF, view: heldPage },
  queue: { roles: STAFF, view: queuePage },
  agents: { roles: ['admin'], view: agentsPage },
  sla: { roles: STAFF, view: slaPage },
  mode: { roles: STAFF, view: modePage },
  vendors: { roles: STAFF, view: vendorsPage },
  credit: { roles: STAFF, view: creditPage },
  prices: { roles: STAFF, view: pricesPage },
  outbox: { roles: STAFF, view: outboxPage },
  offers: { roles: ['vendor'], view: offersPage },
  account: { roles: ['retailer'], view: accountPage },
  order: { roles: [...STAFF, 'retailer', 'vendor'], view: orderPage, hidden: true },
};

const HOME = { admin: 'board', operator: 'board', retailer: 'board', vendor: 'offers' };

/** The page being shown; a stale render checks it and stops. */
let current = 0;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = raw.split('?');
  const [name, ...rest] = path.split('/');
  return { name, arg: rest.join('/'), query: new URLSearchParams(query) };
}

function nav(active) {
  const links = Object.entries(PAGES)
    .filter(([, p]) => !p.hidden && p.roles.includes(session.role))
    .map(([name, p]) => h('a', { href: `#/${name}`, class: name === active ? 'on' : '', data: { page: name } },
      p.label ? p.label() : t(name)));
  $('#nav').replaceChildren(...links);
  $('#who').textContent = `${session.username} · ${session.role}`;
  $('#signout').hidden = false;
  $('#signout').textContent = t('signout');
}

async function render() {
  const token = ++current;
  live.handlers.clear();
  clearError();
  const main = $('#main');
  document.documentElement.lang = lang;
  $('#lang').value = lang;
  if (!session) {
    $('#nav').replaceChildren();
    $('#who').textContent = '';
    $('#signout').hidden = true;
    document.body.dataset.page = 'login';
    main.replaceChildren(loginView());
    main.dataset.ready = '1';
    return;
  }
  scheduleRefresh();
  live.start();
  let { name, arg, query } = parseHash();
  const page = PAGES[name];
  if (!page || !page.roles.includes(session.role)) {
    name = HOME[session.role] ?? 'board';
    location.replace(`#/${name}`);
    return;
  }
  nav(name);
  document.body.dataset.page = name;
  main.dataset.ready = '';
  main.replaceChildren(h('p', { class: 'muted' }, '…'));
  const ctx = {
    alive: () => token === current,
    onLive: (fn) => live.handlers.add(fn),
    rerender: () => { if (token === current) render(); },
  };
  try {
    const view = await page.view(arg, query, ctx);
    if (!ctx.alive()) return;
    main.replaceChildren(view);
  } catch (e) {
    if (!ctx.alive()) return;
    main.replaceChildren(h('h1', {}, page.label ? page.label() : t(name)));
    showError(e);
  }
  main.dataset.ready = '1';
}

/** Runs an action from a button: disables it meanwhile, shows a failure, then `after()`. */
async function act(button, fn, after) {
  clearError();
  button.disabled = true;
  try {
    await fn();
    if (after) await after();
  } catch (e) {
    showError(e);
  } finally {
    button.disabled = false;
  }
}

function reasonInput(placeholder = t('reason')) {
  return h('input', { type: 'text', placeholder, 'aria-label': placeholder, maxLength: 500, class: 'reason' });
}

function needReason(input) {
  const v = input.value.trim();
  if (!v) {
    input.focus();
    throw new Problem({ title: t('reason'), detail: t('reason_needed') });
  }
  return v;
}

// --- sign-in ---------------------------------------------------------------------------

function loginView() {
  const user = h('input', { name: 'username', autocomplete: 'username', required: true });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const button = h('button', { type: 'submit' }, t('signin'));
  const form = h('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      await act(button, () => signIn(user.value.trim(), pass.value), () => go(HOME[session.role] ?? 'board'));
    },
  }, h('label', {}, t('username'), user), h('label', {}, t('password'), pass), button);
  return h('div', { class: 'card login' }, h('h1', {}, 'Khaacho · खाचो'), form);
}

// --- order board (staff: every order; retailer: its own) --------------------------------

let retailerNames = null;

async function retailers() {
  if (retailerNames) return retailerNames;
  const page = await api('GET', '/retailers?limit=200');
  retailerNames = new Map(page.items.map((r) => [r.id, r.name]));
  return retailerNames;
}

function orderRow(o, names) {
  return h('tr', { data: { order: o.id, status: o.status } },
    h('td', {}, h('a', { href: `#/order/${o.id}`, class: 'mono' }, short(o.id))),
    names ? h('td', {}, names.get(o.retailer_id) ?? short(o.retailer_id)) : null,
    h('td', { class: 'status' }, badge(o.status), o.hold_reason ? h('div', { class: 'muted' }, o.hold_reason) : null),
    h('td', { class: 'num' }, npr(o.totals?.total_npr)),
    h('td', { class: 'hide-sm' }, o.channel),
    h('td', { class: 'hide-sm' }, o.created_at));
}

async function boardPage(_arg, query, ctx) {
  const staff = STAFF.includes(session.role);
  const status = query.get('status') || '';
  const retailer = query.get('retailer') || '';
  const names = staff ? await retailers() : null;
  const q = new URLSearchParams({ limit: '50' });
  if (status) q.set('status', status);
  if (retailer) q.set('retailer_id', retailer);
  const page = await api('GET', `/orders?${q}`);

  const setFilter = (k, v) => {
    const next = new URLSearchParams({ status, retailer });
    next.set(k, v);
    for (const [key, val] of [...next]) if (!val) next.delete(key);
    location.hash = `#/board${next.toString() ? `?${next}` : ''}`;
  };
  const statusSel = h('select', { name: 'status', onchange: (e) => setFilter('status', e.target.value) },
    h('option', { value: '' }, t('all')),
    ORDER_STATUSES.map((s) => h('option', { value: s, selected: s === status }, word(s))));
  const retailerSel = names ? h('select', { name: 'retailer', onchange: (e) => setFilter('retailer', e.target.value) },
    h('option', { value: '' }, t('all')),
    [...names].map(([id, n]) => h('option', { value: id, selected: id === retailer }, n))) : null;

  const tbody = h('tbody', {}, page.items.map((o) => orderRow(o, names)));
  const headers = [t('order'), names ? t('retailer') : null, t('status'), { label: t('total'), cls: 'num' },
    { label: t('channel'), cls: 'hide-sm' }, { label: t('created'), cls: 'hide-sm' }].filter(Boolean);
  const tableEl = h('div', { class: 'scroll' }, h('table', { id: 'board' },
    h('thead', {}, h('tr', {}, headers.map((x) => (typeof x === 'string' ? h('th', {}, x) : h('th', { class: x.cls }, x.label))))),
    tbody));
  let cursor = page.next_cursor;
  const more = h('button', {
    class: 'plain', hidden: !cursor,
    onclick: (e) => act(e.target, async () => {
      q.set('cursor', cursor);
      const next = await api('GET', `/orders?${q}`);
      tbody.append(...next.items.map((o) => orderRow(o, names)));
      cursor = next.next_cursor;
      e.target.hidden = !cursor;
    }),
  }, t('load_more'));

  // Live: a known row changes its status in place; a new order that fits the filters is
  // fetched (as this user may see it) and put on top. No reload.
  const fetching = new Set();
  ctx.onLive(async (ev) => {
    const row = tbody.querySelector(`tr[data-order="${CSS.escape(ev.order_id)}"]`);
    if (row) {
      if (status && ev.to !== status) { row.remove(); return; }
      row.dataset.status = ev.to;
      row.querySelector('td.status').replaceChildren(badge(ev.to));
      row.classList.remove('fresh'); void row.offsetWidth; row.classList.add('fresh');
      return;
    }
    if ((status && ev.to !== status) || fetching.has(ev.order_id)) return;
    fetching.add(ev.order_id);
    try {
      const o = await api('GET', `/orders/${ev.order_id}`);
      if (!ctx.alive() || tbody.querySelector(`tr[data-order="${CSS.escape(o.id)}"]`)) return;
      if (retailer && o.retailer_id !== retailer) return;
      if (status && o.status !== status) return;
      const tr = orderRow(o, names);
      tr.classList.add('fresh');
      tbody.prepend(tr);
      const empty = tableEl.parentNode && tableEl.parentNode.querySelector('p.empty');
      if (empty) empty.remove();
    } finally {
      fetching.delete(ev.order_id);
    }
  });

  const label = staff ? t('board') : t('my_orders');
  return h('section', {},
    h('h1', {}, label),
    h('div', { class: 'filters' }, h('label', {}, t('status'), statusSel), retailerSel ? h('label', {}, t('retailer'), retailerSel) : null),
    tableEl, page.items.length ? null : h('p', { class: 'muted empty' }, t('none')), more);
}

// --- one order with its timeline --------------------------------------------------------

async function orderPage(id, _query, ctx) {
  const o = await api('GET', `/orders/${encodeURIComponent(id)}`);
  const staff = STAFF.includes(session.role);
  const names = staff ? await retailers() : null;
  ctx.onLive((ev) => { if (ev.order_id === o.id) ctx.rerender(); });
  const lines = (o.lines || []).map((l) => h('tr', {},
    h('td', {}, l.line_no), h('td', {}, l.product_name ?? l.sku, h('div', { class: 'muted mono' }, l.sku)),
    h('td', { class: 'num' }, fmtNum(l.qty)), h('td', {}, l.unit),
    h('td', { class: 'num' }, npr(l.unit_price_npr)), h('td', { class: 'num' }, npr(l.total_npr)),
    h('td', { class: 'hide-sm' }, l.reject_detail ?? l.price_reason ?? '')));
  const events = (o.events || []).map((e) => h('li', {},
    h('div', {}, e.from ? [badge(e.from), ' → '] : null, badge(e.to)),
    h('div', { class: 'muted' }, `${e.at} · ${e.actor} (${e.role})`),
    e.reason ? h('div', {}, e.reason) : null));
  const parts = (o.fulfilments || []).map((f) => h('tr', {},
    h('td', { class: 'mono' }, short(f.id)), h('td', { class: 'mono' }, short(f.vendor_id)),
    h('td', {}, badge(f.status)), h('td', { class: 'num' }, npr(f.total_npr)), h('td', {}, f.deadline ?? '')));
  let actions = null;
  if (staff && o.status === 'on_hold') actions = holdActions(o, () => ctx.rerender());
  return h('section', {},
    h('h1', {}, `${t('order')} `, h('span', { class: 'mono' }, short(o.id)), ' ', badge(o.status)),
    h('div', { class: 'card' }, kv([
      [t('retailer'), names ? (names.get(o.retailer_id) ?? o.retailer_id) : o.retailer_id],
      [t('channel'), o.channel], [t('priority'), o.priority], [t('payment_mode'), o.payment_mode],
      [t('hold_reason'), o.hold_reason], [t('reject_reason'), o.reject_reason],
      [t('subtotal'), o.totals ? npr(o.totals.subtotal_npr) : null],
      [t('vat'), o.totals ? npr(o.totals.vat_npr) : null],
      [t('total'), o.totals ? npr(o.totals.total_npr) : null],
      [t('risk'), o.risk ? `${o.risk.score} · ${o.risk.decision}` : null],
      [t('credit_hold'), o.credit_hold ? `${npr(o.credit_hold.amount_npr)} · ${o.credit_hold.status}` : null],
      [t('created'), o.created_at], [t('updated'), o.updated_at],
    ]), actions),
    h('h2', {}, t('lines')),
    table(['#', t('product'), { label: t('qty'), cls: 'num' }, t('unit'), { label: t('price'), cls: 'num' },
      { label: t('total'), cls: 'num' }, { label: t('note'), cls: 'hide-sm' }], lines),
    parts.length ? [h('h2', {}, t('fulfilments')), table([t('fulfilments'), t('vendor'), t('status'),
      { label: t('total'), cls: 'num' }, t('deadline')], parts)] : null,
    h('h2', {}, t('timeline')),
    events.length ? h('ol', { class: 'timeline' }, events) : h('p', { class: 'muted' }, t('none')));
}

function holdActions(o, after) {
  const reason = reasonInput();
  const approve = h('button', {
    data: { action: 'approve' },
    onclick: () => act(approve, () => api('POST', `/orders/${o.id}/approve`,
      reason.value.trim() ? { reason: reason.value.trim() } : {}), after),
  }, t('approve'));
  const reject = h('button', {
    class: 'danger', data: { action: 'reject' },
    onclick: () => act(reject, () => api('POST', `/orders/${o.id}/reject`, { reason: needReason(reason) }), after),
  }, t('reject'));
  return h('div', { class: 'actions' }, reason, approve, reject);
}

// --- held orders -------------------------------------------------------------------------

async function heldPage(_arg, _query, ctx) {
  const [page, names] = await Promise.all([api('GET', '/orders?status=on_hold&limit=100'), retailers()]);
  ctx.onLive((ev) => { if (ev.to === 'on_hold' || ev.from === 'on_hold') ctx.rerender(); });
  const rows = page.items.map((o) => h('tr', { data: { order: o.id } },
    h('td', {}, h('a', { href: `#/order/${o.id}`, class: 'mono' }, short(o.id))),
    h('td', {}, names.get(o.retailer_id) ?? short(o.retailer_id)),
    h('td', {}, o.hold_reason ?? ''),
    h('td', { class: 'num' }, npr(o.totals?.total_npr)),
    h('td', { class: 'hide-sm' }, o.created_at),
    h('td', {}, holdActions(o, () => ctx.rerender()))));
  return h('section', {}, h('h1', {}, t('held')),
    table([t('order'), t('retailer'), t('hold_reason'), { label: t('total'), cls: 'num' },
      { label: t('created'), cls: 'hide-sm' }, ''], rows));
}

// --- queue and dead letters ---------------------------------------------------------------

async function queuePage(_arg, query, ctx) {
  const status = ['queued', 'running', 'dead'].includes(query.get('status')) ? query.get('status') : 'dead';
  const [jobs, messages] = await Promise.all([
    api('GET', `/admin/jobs?status=${status}&limit=100`),
    api('GET', '/channels/messages?status=dead&limit=100'),
  ]);
  const sel = h('select', { name: 'status', onchange: (e) => { location.hash = `#/queue?status=${e.target.value}`; } },
    ['dead', 'queued', 'running'].map((s) => h('option', { value: s, selected: s === status }, t(`${s}_jobs`))));
  const jobRows = jobs.items.map((j) => {
    const retry = h('button', { data: { action: 'retry' }, onclick: () => act(retry, () => api('POST', `/admin/jobs/${j.id}/retry`), ctx.rerender) }, t('retry'));
    const discard = h('button', { class: 'danger', data: { action: 'discard' }, onclick: () => act(discard, () => api('DELETE', `/admin/jobs/${j.id}`), ctx.rerender) }, t('discard'));
    return h('tr', { data: { job: j.id } },
      h('td', {}, h('code', {}, j.kind), h('div', { class: 'muted' }, j.queue)),
      h('td', {}, badge(j.status)), h('td', { class: 'num' }, `${j.attempts}/${j.max_attempts}`),
      h('td', {}, j.last_error ?? ''), h('td', { class: 'hide-sm' }, new Date(j.updated_at_ms).toLocaleString()),
      h('td', {}, j.status === 'dead' ? h('div', { class: 'actions' }, retry, discard) : null));
  });
  const msgRows = messages.items.map((m) => messageRow(m, ctx));
  return h('section', {}, h('h1', {}, t('queue')),
    h('div', { class: 'filters' }, h('label', {}, t('status'), sel),
      h('button', { class: 'plain', onclick: ctx.rerender }, t('refresh'))),
    h('h2', {}, t(`${status}_jobs`)),
    table([t('kind'), t('status'), { label: t('attempts'), cls: 'num' }, t('last_error'), { label: t('updated'), cls: 'hide-sm' }, ''], jobRows),
    h('h2', {}, t('dead_messages')),
    table([t('recipient'), t('template'), t('status'), { label: t('attempts'), cls: 'num' }, t('last_error'), { label: t('created'), cls: 'hide-sm' }, ''], msgRows));
}

function messageRow(m, ctx) {
  const retry = h('button', { data: { action: 'retry' }, onclick: () => act(retry, () => api('POST', `/channels/messages/${m.id}/retry`), ctx.rerender) }, t('retry'));
  return h('tr', { data: { message: m.id, status: m.status } },
    h('td', {}, m.recipient, h('div', { class: 'muted' }, m.channel)),
    h('td', {}, h('code', {}, m.template)), h('td', {}, badge(m.status)),
    h('td', { class: 'num' }, m.attempts), h('td', {}, m.last_error ?? ''),
    h('td', { class: 'hide-sm' }, m.created_at),
    h('td', {}, ['dead', 'failed'].includes(m.status) ? retry : null));
}

// --- breakers and the LLM switch (admin) ------------------------------------------------

async function agentsPage(_arg, _query, ctx) {
  const a = await api('GET', '/admin/agents');
  const toggle = h('button', {
    data: { action: 'llm' },
    onclick: () => act(toggle, () => api('PUT', '/admin/agents', { llm_enabled: !a.llm_enabled }), ctx.rerender),
  }, a.llm_enabled ? t('turn_off') : t('turn_on'));
  const rows = (a.providers || []).map((p) => h('tr', {}, h('td', {}, p.name), h('td', {}, badge(p.breaker))));
  return h('section', {}, h('h1', {}, t('agents')),
    h('div', { class: 'card actions' }, h('strong', {}, `${t('llm')}: `),
      flag(a.llm_enabled, a.llm_enabled ? t('enabled') : t('disabled')), toggle),
    table([t('provider'), t('breaker')], rows));
}

// --- SLA and alerts ------------------------------------------------------------------------

function alertRows(items, ctx) {
  return items.map((a) => {
    const ack = h('button', { data: { action: 'acknowledge' }, onclick: () => act(ack, () => api('POST', `/alerts/${a.id}/acknowledge`), ctx.rerender) }, t('acknowledge'));
    return h('tr', { data: { alert: a.id } },
      h('td', {}, badge(a.severity)), h('td', {}, h('code', {}, a.kind)),
      h('td', {}, a.message, h('div', { class: 'muted' }, a.subject)),
      h('td', { class: 'hide-sm' }, a.created_at),
      h('td', {}, a.acknowledged_at ? h('span', { class: 'muted' }, `${t('acknowledged')}: ${a.acknowledged_by ?? ''} ${a.acknowledged_at}`) : ack));
  });
}

async function alertsSection(kind, query, ctx, pageName) {
  const all = query.get('all') === 'true';
  const q = new URLSearchParams({ limit: '100' });
  if (all) q.set('all', 'true');
  if (kind) q.set('kind', kind);
  const page = await api('GET', `/alerts?${q}`);
  const switcher = h('a', { href: `#/${pageName}${all ? '' : '?all=true'}` }, all ? t('open_only') : t('show_all'));
  return [h('div', { class: 'filters' }, switcher),
    table([t('severity'), t('kind'), t('message'), { label: t('created'), cls: 'hide-sm' }, ''], alertRows(page.items, ctx))];
}

function measure(m, unit) {
  if (!m) return '—';
  const v = m.value == null ? '—' : unit === '%' ? `${fmtNum(m.value * 100, 2)} %` : `${fmtNum(m.value, 0)} ${unit}`;
  const o = unit === '%' ? `${fmtNum(m.objective * 100, 2)} %` : `${fmtNum(m.objective, 0)} ${unit}`;
  return h('span', {}, v, ' ', h('span', { class: 'muted' }, `(${o})`), ' ', flag(m.met, m.met ? t('met') : t('not_met')));
}

async function slaPage(_arg, query, ctx) {
  const sla = await api('GET', '/sla');
  const rows = (sla.windows || []).map((w) => h('tr', {},
    h('td', {}, w.window), h('td', { class: 'num' }, fmtNum(w.requests, 0)), h('td', { class: 'num' }, fmtNum(w.server_errors, 0)),
    h('td', { class: 'num' }, fmtNum(w.refused, 0)),
    h('td', {}, measure(w.availability, '%')), h('td', {}, measure(w.p95_ms, 'ms')), h('td', {}, measure(w.p99_ms, 'ms')),
    h('td', {}, measure(w.error_rate, '%')), h('td', {}, flag(w.met, w.met ? t('met') : t('not_met')))));
  return h('section', {}, h('h1', {}, t('sla')),
    h('p', { class: 'muted' }, sla.at),
    table([t('window'), { label: t('requests'), cls: 'num' }, { label: t('server_errors'), cls: 'num' },
      { label: t('refused'), cls: 'num' }, t('availability'),
      t('p95'), t('p99'), t('error_rate'), t('status')], rows),
    h('h2', {}, t('alerts')), await alertsSection(null, query, ctx, 'sla'));
}

// --- safe mode -----------------------------------------------------------------------------

async function modePage(_arg, _query, ctx) {
  const m = await api('GET', '/admin/mode');
  const admin = session.role === 'admin';
  const reason = reasonInput();
  const button = h('button', {
    class: m.safe_mode ? '' : 'danger', disabled: !admin, data: { action: 'safe-mode' },
    onclick: () => act(button, () => api('PUT', '/admin/safe-mode', { enabled: !m.safe_mode, reason: needReason(reason) }), ctx.rerender),
  }, m.safe_mode ? t('disable_safe') : t('enable_safe'));
  return h('section', {}, h('h1', {}, t('mode')),
    h('div', { class: 'card' }, kv([
      [t('level'), badge(m.level)], [t('since'), m.level_since],
      [t('safe_mode'), flag(!m.safe_mode, m.safe_mode ? t('safe_on') : t('safe_off'))],
      [t('actor'), m.safe_mode_by], [t('reason'), m.safe_mode_reason], [t('since'), m.safe_mode_since],
      [t('paused_queues'), (m.paused_queues || []).join(', ')],
    ])),
    h('div', { class: 'card actions' }, reason, button, admin ? null : h('span', { class: 'muted' }, t('admin_only'))));
}

// --- vendor grades -------------------------------------------------------------------------

async function vendorsPage() {
  const [vendors, summary] = await Promise.all([api('GET', '/vendors?limit=100'), api('GET', '/reports/summary')]);
  const scores = await Promise.allSettled(vendors.items.map((v) => api('GET', `/vendors/${v.id}/score`)));
  const rows = vendors.items.map((v, i) => {
    const s = scores[i].status === 'fulfilled' ? scores[i].value.current : null;
    return h('tr', { data: { vendor: v.id } },
      h('td', {}, v.name, h('div', { class: 'muted' }, (v.districts || []).join(', '))),
      h('td', {}, s ? h('strong', {}, s.grade) : h('span', { class: 'muted' }, t('no_score'))),
      h('td', { class: 'num' }, s ? fmtNum(s.score, 0) : fmtNum(v.score, 0)),
      h('td', {}, s && s.needs_attention ? badge('warning') : ''),
      h('td', { class: 'hide-sm' }, s ? s.at : ''));
  });
  const grades = Object.entries(summary.vendor_grades || {});
  return h('section', {}, h('h1', {}, t('vendors')),
    grades.length ? h('div', { class: 'card' }, h('strong', {}, `${t('vendor_grades')}: `),
      grades.map(([g, n]) => h('span', { class: 'badge' }, `${g}: ${fmtNum(n, 0)}`))) : null,
    table([t('vendor'), t('grade'), { label: t('score'), cls: 'num' }, t('needs_attention'), { label: t('updated'), cls: 'hide-sm' }], rows));
}

// --- credit exposure with ageing buckets ---------------------------------------------------

/** A bar `v / max` wide; set through the CSSOM (the CSP allows no inline style attribute). */
function fill(v, max) {
  const el = h('div', { class: 'fill' });
  el.style.width = `${Math.round(((v || 0) / max) * 100)}%`;
  return el;
}

function bars(items) {
  const max = Math.max(1, ...items.map(([, v]) => v || 0));
  return h('div', { class: 'bars' }, items.map(([label, v]) => h('div', { class: 'bar' },
    h('span', {}, label), h('div', {}, fill(v, max)),
    h('span', { class: 'num' }, npr(paisa(v))))));
}

async function creditPage(_arg, query, ctx) {
  const [summary, alerts, names] = await Promise.all([
    api('GET', '/reports/summary'), api('GET', '/credit/alerts?open=true&limit=100'), retailers(),
  ]);
  const x = summary.credit_exposure;
  const exposure = x ? h('div', { class: 'card' }, kv([
    [t('accounts'), fmtNum(x.accounts, 0)], [t('limit'), npr(paisa(x.limit_paisa))],
    [t('held_amount'), npr(paisa(x.held_paisa))], [t('outstanding'), npr(paisa(x.outstanding_paisa))],
  ]), h('h2', {}, t('outstanding')), bars([
    [t('not_due'), x.not_due_paisa], [t('overdue_0_7'), x.overdue_0_7_paisa],
    [t('overdue_8_15'), x.overdue_8_15_paisa], [t('overdue_16_30'), x.overdue_16_30_paisa],
    [t('overdue_30_plus'), x.overdue_30_plus_paisa],
  ])) : h('p', { class: 'muted' }, t('none'));
  const alertRowsEl = alerts.items.map((a) => {
    const ack = h('button', { data: { action: 'acknowledge' }, onclick: () => act(ack, () => api('POST', `/credit/alerts/${a.id}/acknowledge`), ctx.rerender) }, t('acknowledge'));
    return h('tr', {}, h('td', {}, badge(a.severity)), h('td', {}, h('code', {}, a.kind)),
      h('td', {}, h('a', { href: `#/credit?retailer=${a.retailer_id}` }, names.get(a.retailer_id) ?? short(a.retailer_id))),
      h('td', { class: 'hide-sm' }, a.created_at), h('td', {}, ack));
  });
  const chosen = query.get('retailer') || '';
  const pick = h('select', { name: 'retailer', onchange: (e) => { location.hash = `#/credit?retailer=${e.target.value}`; } },
    h('option', { value: '' }, t('choose')), [...names].map(([id, n]) => h('option', { value: id, selected: id === chosen }, n)));
  const counts = Object.entries(summary.status_counts || {});
  return h('section', {}, h('h1', {}, t('credit')),
    h('p', { class: 'muted' }, `${summary.from} – ${summary.to}`),
    exposure,
    counts.length ? h('div', { class: 'card' }, h('strong', {}, `${t('status_counts')}: `),
      counts.map(([s, n]) => h('span', {}, badge(s), ` ${fmtNum(n, 0)} `))) : null,
    h('h2', {}, t('credit_alerts')),
    table([t('severity'), t('kind'), t('retailer'), { label: t('created'), cls: 'hide-sm' }, ''], alertRowsEl),
    h('h2', {}, t('retailer_account')), h('div', { class: 'filters' }, h('label', {}, t('retailer'), pick)),
    chosen ? await accountView(chosen) : null);
}

async function accountView(retailerId) {
  const [a, ledger] = await Promise.all([
    api('GET', `/credit/accounts/${retailerId}`), api('GET', `/credit/accounts/${retailerId}/ledger?limit=100`),
  ]);
  const rows = ledger.items.map((e) => h('tr', {},
    h('td', { class: 'num' }, e.seq), h('td', {}, e.kind), h('td', { class: 'num' }, npr(e.amount_npr)),
    h('td', { class: 'num' }, npr(e.balance_npr)), h('td', {}, e.due_at ?? ''), h('td', { class: 'hide-sm' }, e.note ?? ''),
    h('td', { class: 'hide-sm' }, e.at)));
  return h('div', { id: 'account' },
    h('div', { class: 'card' }, kv([
      [t('status'), badge(a.status)], [t('limit'), npr(a.limit_npr)], [t('held_amount'), npr(a.held_npr)],
      [t('outstanding'), npr(a.outstanding_npr)], [t('available'), npr(a.available_npr)],
      [t('terms'), a.terms_days], [t('score'), a.score], [t('band'), a.band],
    ])),
    h('h2', {}, t('ledger')),
    table(['#', t('kind'), { label: t('amount'), cls: 'num' }, { label: t('balance'), cls: 'num' }, t('due'),
      { label: t('note'), cls: 'hide-sm' }, { label: t('at'), cls: 'hide-sm' }], rows));
}

// --- price alerts ----------------------------------------------------------------------------

async function pricesPage(_arg, query, ctx) {
  return h('section', {}, h('h1', {}, t('prices')), await alertsSection('price_change', query, ctx, 'prices'));
}

// --- message outbox ---------------------------------------------------------------------------

async function outboxPage(_arg, query, ctx) {
  const statuses = ['queued', 'sending', 'sent', 'delivered', 'failed', 'dead'];
  const status = statuses.includes(query.get('status')) ? query.get('status') : '';
  const page = await api('GET', `/channels/messages?limit=100${status ? `&status=${status}` : ''}`);
  const sel = h('select', { name: 'status', onchange: (e) => { location.hash = `#/outbox${e.target.value ? `?status=${e.target.value}` : ''}`; } },
    h('option', { value: '' }, t('all')), statuses.map((s) => h('option', { value: s, selected: s === status }, word(s))));
  return h('section', {}, h('h1', {}, t('outbox')),
    h('div', { class: 'filters' }, h('label', {}, t('status'), sel), h('button', { class: 'plain', onclick: ctx.rerender }, t('refresh'))),
    table([t('recipient'), t('template'), t('status'), { label: t('attempts'), cls: 'num' }, t('last_error'), { label: t('created'), cls: 'hide-sm' }, ''],
      page.items.map((m) => messageRow(m, ctx))));
}

// --- vendor: its offers -------------------------------------------------------------------------

async function offersPage(_arg, _query, ctx) {
  const page = await api('GET', '/fulfilments?limit=100');
  let pending = null;
  ctx.onLive(() => { clearTimeout(pending); pending = setTimeout(ctx.rerender, 300); });
  const rows = page.items.map((f) => {
    const reason = reasonInput(t('reasons_optional'));
    const buttons = (f.allowed_actions || []).map((a) => {
      const b = h('button', {
        class: a === 'reject' || a === 'cancel' ? 'danger' : '', data: { action: a },
        onclick: () => act(b, () => {
          const r = reason.value.trim();
          if (a === 'reject' || a === 'cancel') return api('POST', `/fulfilments/${f.id}/${a}`, { reason: needReason(reason) });
          if (a === 'deliver') {
            return api('POST', `/fulfilments/${f.id}/deliver`, {
              lines: f.lines.map((l) => ({ line_no: l.line_no, quantity: l.quantity })), ...(r ? { reason: r } : {}),
            });
          }
          return api('POST', `/fulfilments/${f.id}/${a}`, r ? { reason: r } : {});
        }, ctx.rerender),
      }, t(a));
      return b;
    });
    return h('tr', { data: { fulfilment: f.id, order: f.order_id, status: f.status } },
      h('td', {}, h('span', { class: 'mono' }, short(f.order_id)), h('div', { class: 'muted' }, `${f.lines.length} ${t(f.lines.length === 1 ? 'line_one' : 'line_many')}`)),
      h('td', { class: 'shop' }, shopCell(f.deliver_to)),
      h('td', {}, badge(f.status)), h('td', { class: 'num' }, npr(f.total_npr)), h('td', {}, f.deadline ?? ''),
      h('td', {}, buttons.length ? h('div', { class: 'actions' }, reason, buttons) : null));
  });
  return h('section', {}, h('h1', {}, t('offers')),
    table([t('order'), t('deliver_to'), t('status'), { label: t('total'), cls: 'num' }, t('deadline'), ''], rows));
}

// The shop a part goes to: its name and district; its address and phone once accepted.
function shopCell(to) {
  if (!to) return '';
  const contact = [to.address, to.phone].filter(Boolean).join(' · ');
  return [h('div', {}, `${to.name}, ${to.district}`), contact ? h('div', { class: 'muted' }, contact) : null];
}

// --- retailer: its account and ledger -------------------------------------------------------------

async function accountPage() {
  return h('section', {}, h('h1', {}, t('account')), await accountView(session.tenant));
}

// ---------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------

$('#lang').addEventListener('change', (e) => {
  lang = e.target.value === 'ne' ? 'ne' : 'en';
  localStorage.setItem('khaacho.lang', lang);
  live.status(live.ws ? true : (session ? false : null));
  render();
});
$('#signout').addEventListener('click', () => signOut());
window.addEventListener('hashchange', () => render());
render();
