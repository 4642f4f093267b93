// custos web console (issue #24): the page's only script. Read-only views of the audit trail,
// every member's hash chain, the roles, a volume's ownership and replicas, and the explain form
// (`custos access explain` in a page), all from REST calls
// to this gateway that carry the signed-in bearer token. The token is kept in sessionStorage
// only (gone with the tab), never in cookies or localStorage; everything shown is what the
// token may read. Text from the server is always set as text, never parsed as markup.
'use strict';

const TOKEN_KEY = 'custos.console.token';
const VIEWS = ['audit', 'chain', 'roles', 'volumes', 'explain'];
const FOLLOW_EVERY_MS = 1500;
const PAGE = 100;

// ---- Session -------------------------------------------------------------------------------

// A token handed over in the URL fragment (`#token=...&view=audit`, which browsers never send
// to the server) moves to sessionStorage at once and leaves the address bar.
(function takeTokenFromFragment() {
  const hash = location.hash.slice(1);
  if (!hash.includes('=')) return;
  const params = new URLSearchParams(hash);
  const token = params.get('token');
  if (token) sessionStorage.setItem(TOKEN_KEY, token.trim());
  const view = params.get('view');
  const rest = VIEWS.includes(view) ? '#' + view : '';
  history.replaceState(null, '', location.pathname + location.search + rest);
})();

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  stopFollowing();
  location.hash = '';
  render();
}

// The token's claims, for display only (the gateway verifies the token on every call).
function claims(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const text = atob(part + '='.repeat((4 - (part.length % 4)) % 4));
    const bytes = Uint8Array.from(text, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (_) {
    return {};
  }
}

// ---- REST ----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, options = {}) {
  const headers = { Accept: 'application/json' };
  const jwt = token();
  if (jwt) headers.Authorization = 'bearer ' + jwt;
  const init = { method: options.method || 'GET', headers, cache: 'no-store', credentials: 'omit' };
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(options.body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'the gateway did not answer: ' + e.message);
  }
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const message = (body && body.message) || response.statusText || 'HTTP ' + response.status;
    throw new ApiError(response.status, message, body && body.code);
  }
  return body || {};
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    q.set(k, String(v));
  }
  const s = q.toString();
  return s ? '?' + s : '';
}

// ---- DOM helpers ---------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const main = () => document.getElementById('main');

function show(...nodes) {
  main().replaceChildren(...nodes);
}

function errorBanner(e) {
  const status = e.status ? ` (HTTP ${e.status})` : '';
  return el('div', { class: 'banner bad', role: 'alert' }, e.message + status);
}

function pad(n) {
  return String(n).padStart(2, '0');
}

// Milliseconds since the epoch as local `YYYY-MM-DD HH:MM:SS`.
function when(ms) {
  const d = new Date(Number(ms || 0));
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function bytes(n) {
  let v = Number(n || 0);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return (Number.isInteger(v) ? v : v.toFixed(1)) + ' ' + units[i];
}

function shortHash(h) {
  return h ? h.slice(0, 16) + '…' : '—';
}

// ---- Frame: navigation and session bar ----------------------------------------------------

let currentView = null;

async function fillSessionBar() {
  const c = claims(token());
  const name = c.name || c.email || c.sub || 'unknown';
  const roles = Array.isArray(c.roles) && c.roles.length ? ' (' + c.roles.join(', ') + ')' : '';
  document.getElementById('whoami').textContent = 'Signed in as ' + name + roles;
  const cluster = document.getElementById('cluster');
  cluster.textContent = '';
  try {
    const s = await api('/v1/custos/cluster/status');
    cluster.textContent = `${s.cluster_name || s.cluster_id || 'cluster'} · member ${s.node_id}` +
      (s.leader_id && s.leader_id !== '0' ? ` · leader ${s.leader_id}` : ' · no leader');
  } catch (e) {
    if (e.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      signInView('The gateway refused this token: ' + e.message);
    }
  }
}

function render() {
  stopFollowing();
  const signedIn = Boolean(token());
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('session').hidden = !signedIn;
  if (!signedIn) {
    currentView = null;
    signInView();
    return;
  }
  let view = location.hash.slice(1);
  if (!VIEWS.includes(view)) view = 'audit';
  const changedSession = currentView === null;
  currentView = view;
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.dataset.view === view);
  }
  if (changedSession) fillSessionBar();
  ({ audit: auditView, chain: chainView, roles: rolesView, volumes: volumesView, explain: explainView })[view]();
}

// ---- Sign in -------------------------------------------------------------------------------

function signInView(problem) {
  document.getElementById('nav').hidden = true;
  document.getElementById('session').hidden = true;
  const input = el('textarea', { id: 'token-input', rows: 6, autocomplete: 'off', spellcheck: 'false', required: true });
  const form = el('form', { id: 'signin-form' },
    el('label', {}, 'Bearer token (JWT)', input),
    el('div', { class: 'toolbar' }, el('button', { type: 'submit' }, 'Sign in')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const value = input.value.trim().replace(/^bearer\s+/i, '');
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    currentView = null;
    if (!location.hash) location.hash = 'audit';
    render();
  });
  show(el('section', { class: 'card narrow', id: 'signin' },
    el('h1', {}, 'Sign in to the custos console'),
    el('p', { class: 'muted' },
      'Paste a custos token. It stays in this tab\u2019s session storage, is sent only to this ' +
      'gateway with each call, and is forgotten when you sign out or close the tab. The console ' +
      'is read-only and shows what the token may read.'),
    problem ? el('div', { class: 'banner bad', role: 'alert' }, problem) : null,
    form));
  input.focus();
}

// ---- Audit trail ---------------------------------------------------------------------------

const audit = {
  filter: { user: '', method: '', outcome: '', from: '', to: '' },
  cursor: 0, // the next seq following looks at
  older: '', // page token of the next older page
  follow: false,
  timer: null,
};

function stopFollowing() {
  audit.follow = false;
  if (audit.timer) clearTimeout(audit.timer);
  audit.timer = null;
}

// The filter as query parameters of /v1/custos/audit/records.
function auditParams() {
  const f = audit.filter;
  const ms = (v) => (v ? new Date(v).getTime() : '');
  return {
    'filter.username': f.user.trim(),
    'filter.method': f.method.trim(),
    'filter.authorized': f.outcome === 'allowed' ? 'true' : f.outcome === 'refused' ? 'false' : '',
    'filter.from_time_ms': ms(f.from),
    'filter.to_time_ms': ms(f.to),
  };
}

function recordRow(r, fresh) {
  const refused = r.authorized !== true;
  const count = Number(r.count || 1);
  return el('tr', {
    class: (refused ? 'refused' : 'allowed') + (fresh ? ' fresh' : ''),
    'data-seq': r.seq,
    'data-outcome': refused ? 'refused' : 'allowed',
  },
  el('td', { class: 'num' }, r.seq),
  el('td', { class: 'time' }, when(r.time_ms)),
  el('td', { class: 'user' }, r.username || el('span', { class: 'muted' }, '(none)')),
  el('td', { class: 'mono' }, r.method),
  el('td', {},
    el('span', { class: 'badge ' + (refused ? 'bad' : 'good') }, refused ? 'refused' : 'allowed'),
    refused && r.code ? el('span', { class: 'code' }, r.code) : null),
  el('td', { class: 'msg' },
    r.message, count > 1 ? ` (×${count})` : '', r.edge ? el('span', { class: 'muted small' }, ' · edge') : null,
    r.reason && r.reason !== r.message ? el('span', { class: 'reason' }, r.reason) : null),
  el('td', { class: 'mono small' }, (r.objects || []).join(', ')),
  el('td', { class: 'num' }, r.origin_node || ''));
}

function auditView() {
  const f = audit.filter;
  const input = (name, label, attrs) => {
    const i = el('input', Object.assign({ name, value: f[name] }, attrs));
    i.addEventListener('change', () => { f[name] = i.value; });
    return el('label', {}, label, i);
  };
  const outcome = el('select', { name: 'outcome' },
    el('option', { value: '' }, 'any'),
    el('option', { value: 'allowed' }, 'allowed'),
    el('option', { value: 'refused' }, 'refused'));
  outcome.value = f.outcome;
  outcome.addEventListener('change', () => { f.outcome = outcome.value; });
  const form = el('form', { class: 'filters', id: 'audit-filters' },
    input('user', 'User', { placeholder: 'any user', size: 14 }),
    input('method', 'Method', { placeholder: 'e.g. volume.create', size: 18, list: 'audit-methods' }),
    el('label', {}, 'Outcome', outcome),
    input('from', 'From (local time)', { type: 'datetime-local', step: 1 }),
    input('to', 'To (local time)', { type: 'datetime-local', step: 1 }),
    el('div', { class: 'actions' },
      el('button', { type: 'submit' }, 'Apply'),
      el('button', { type: 'button', class: 'secondary', id: 'audit-reset' }, 'Reset')));
  const methods = el('datalist', { id: 'audit-methods' },
    ['volume.create', 'volume.delete', 'volume.update', 'volume.clone', 'volume.snapshotcreate',
      'role.create', 'role.update', 'role.delete', 'node.register', 'Authentication']
      .map((m) => el('option', { value: m })));
  const follow = el('input', { type: 'checkbox', id: 'audit-follow' });
  const head = el('span', { class: 'muted', id: 'audit-head' });
  const state = el('span', { class: 'muted small', id: 'audit-follow-state' });
  const tbody = el('tbody', { id: 'audit-rows' });
  const more = el('button', { type: 'button', class: 'secondary', id: 'audit-older', hidden: true }, 'Older records');
  const problem = el('div', { id: 'audit-error' });
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    for (const name of ['user', 'method', 'from', 'to']) f[name] = form.elements[name].value;
    f.outcome = outcome.value;
    load();
  });
  form.querySelector('#audit-reset').addEventListener('click', () => {
    Object.assign(f, { user: '', method: '', outcome: '', from: '', to: '' });
    auditView();
  });
  follow.addEventListener('change', () => {
    if (follow.checked) {
      audit.follow = true;
      state.textContent = 'following…';
      tick();
    } else {
      stopFollowing();
      state.textContent = '';
    }
  });
  more.addEventListener('click', () => page(false));

  show(el('section', { id: 'audit' },
    el('div', { class: 'card' },
      el('h1', {}, 'Audit trail'),
      form, methods,
      el('div', { class: 'toolbar' },
        el('label', { class: 'toggle' }, follow, 'Follow new records'), state,
        el('span', { class: 'spacer' }), head)),
    problem,
    el('div', { class: 'table-wrap' },
      el('table', { class: 'grid audit' },
        el('thead', {}, el('tr', {},
          el('th', { class: 'num' }, 'Seq'), el('th', {}, 'Time'), el('th', {}, 'User'),
          el('th', {}, 'Method'), el('th', {}, 'Outcome'), el('th', {}, 'Message'),
          el('th', {}, 'Objects'), el('th', { class: 'num' }, 'Member'))),
        tbody)),
    el('div', { class: 'toolbar' }, more)));

  async function page(first) {
    const params = Object.assign(auditParams(), { page_size: PAGE, newest_first: 'true' });
    if (!first) params.page_token = audit.older;
    try {
      const reply = await api('/v1/custos/audit/records' + query(params));
      problem.replaceChildren();
      if (first) {
        tbody.replaceChildren();
        audit.cursor = Number(reply.last_seq || 0) + 1;
      }
      for (const r of reply.records || []) tbody.append(recordRow(r, false));
      audit.older = reply.next_page_token || '';
      more.hidden = !audit.older;
      head.textContent = reply.last_seq && reply.last_seq !== '0'
        ? `trail holds records ${reply.first_seq}–${reply.last_seq}` : 'the trail is empty';
      if (!tbody.children.length) {
        tbody.append(el('tr', { class: 'empty' }, el('td', { colspan: 8, class: 'muted' }, 'No records match.')));
      }
    } catch (e) {
      problem.replaceChildren(errorBanner(e));
    }
  }

  async function load() {
    await page(true);
  }

  // One follow step: learn the head, then fetch the matching records between the cursor and it
  // (oldest first), put them on top, and move the cursor past the head.
  async function tick() {
    audit.timer = null;
    if (!audit.follow || currentView !== 'audit') return;
    try {
      const top = await api('/v1/custos/audit/records' + query({ page_size: 1, newest_first: 'true' }));
      const last = Number(top.last_seq || 0);
      let token = '';
      let found = [];
      for (let pages = 0; last >= audit.cursor && pages < 20; pages += 1) {
        const params = Object.assign(auditParams(), {
          'filter.from_seq': audit.cursor, 'filter.to_seq': last, page_size: 1000, page_token: token,
        });
        const reply = await api('/v1/custos/audit/records' + query(params));
        found = found.concat(reply.records || []);
        token = reply.next_page_token || '';
        if (!token) {
          audit.cursor = last + 1;
          break;
        }
      }
      if (found.length) {
        const empty = tbody.querySelector('tr.empty');
        if (empty) empty.remove();
        for (const r of found) tbody.prepend(recordRow(r, true));
      }
      head.textContent = `trail holds records ${top.first_seq || 0}–${top.last_seq || 0}`;
      state.textContent = `following · checked ${when(Date.now()).slice(11)}`;
      problem.replaceChildren();
    } catch (e) {
      problem.replaceChildren(errorBanner(e));
    }
    if (audit.follow && currentView === 'audit') audit.timer = setTimeout(tick, FOLLOW_EVERY_MS);
  }

  load();
}

// ---- Chain status --------------------------------------------------------------------------

async function chainView() {
  const again = el('button', { type: 'button', class: 'secondary', id: 'chain-again' }, 'Verify again');
  const cluster = el('div', { id: 'chain-cluster' }, el('p', { class: 'muted' }, 'Asking the cluster…'));
  const chains = el('div', { id: 'chain-members' }, el('p', { class: 'muted' }, 'Every member is checking its chain…'));
  again.addEventListener('click', () => chainView());
  show(el('section', { id: 'chain' },
    el('div', { class: 'card' }, el('h1', {}, 'Cluster'), cluster),
    el('div', { class: 'card' },
      el('div', { class: 'toolbar' }, el('h1', {}, 'Audit chain of each member'), el('span', { class: 'spacer' }), again),
      chains)));

  let status = null;
  try {
    status = await api('/v1/custos/cluster/status');
    cluster.replaceChildren(
      el('dl', { class: 'facts' },
        el('dt', {}, 'Cluster'), el('dd', {}, `${status.cluster_name || ''} (${status.cluster_id || ''})`),
        el('dt', {}, 'Answered by'), el('dd', {}, `member ${status.node_id} (${status.state || 'unknown'})`),
        el('dt', {}, 'Leader'), el('dd', {}, status.leader_id && status.leader_id !== '0' ? `member ${status.leader_id}, term ${status.term || 0}` : 'none known'),
        el('dt', {}, 'Applied index'), el('dd', {}, status.applied_index || '0'),
        el('dt', {}, 'Serving'), el('dd', {}, status.serving ? 'yes' : 'no')));
  } catch (e) {
    cluster.replaceChildren(errorBanner(e));
  }

  try {
    const v = await api('/v1/custos/audit/verify/members');
    const byId = new Map((status && status.members || []).map((m) => [String(m.id), m]));
    const rows = (v.members || []).map((m) => {
      const r = m.verify;
      const member = byId.get(String(m.node_id)) || {};
      const ok = r && r.ok === true;
      return el('tr', { class: ok ? 'ok' : 'refused', 'data-node': m.node_id, 'data-ok': ok ? 'true' : 'false' },
        el('td', { class: 'num' }, m.node_id),
        el('td', {}, member.voter ? 'voter' : member.id ? 'learner' : '', status && String(status.leader_id) === String(m.node_id) ? ' · leader' : ''),
        el('td', { class: 'mono' }, m.sdk_addr),
        el('td', {}, el('span', { class: 'badge ' + (ok ? 'good' : 'bad') }, ok ? 'ok' : r ? 'broken' : 'no answer')),
        el('td', { class: 'num' }, r ? `${r.first_seq || 0}–${r.last_seq || 0}` : ''),
        el('td', { class: 'num' }, r ? r.checked || '0' : ''),
        el('td', { class: 'mono', title: r ? r.last_hash : '' }, r ? shortHash(r.last_hash) : ''),
        el('td', { class: 'mono', title: m.hash_at_common || '' }, shortHash(m.hash_at_common)),
        el('td', { class: 'error' }, (r && r.error) || m.error || ''));
    });
    const n = (v.members || []).length;
    const summary = v.ok
      ? el('div', { class: 'banner good', id: 'chain-summary', 'data-ok': 'true' },
        `All ${n} members verified their chains and agree at record ${v.common_seq}.`)
      : el('div', { class: 'banner bad', id: 'chain-summary', 'data-ok': 'false' },
        el('strong', {}, 'The chains do not verify or do not agree:'),
        el('ul', {}, (v.problems || []).map((p) => el('li', {}, p))));
    chains.replaceChildren(summary,
      el('div', { class: 'table-wrap' }, el('table', { class: 'grid' },
        el('thead', {}, el('tr', {},
          el('th', { class: 'num' }, 'Member'), el('th', {}, 'Role'), el('th', {}, 'SDK address'),
          el('th', {}, 'Chain'), el('th', { class: 'num' }, 'Records'), el('th', { class: 'num' }, 'Checked'),
          el('th', {}, 'Head hash'), el('th', {}, `Hash at record ${v.common_seq}`), el('th', {}, 'Error'))),
        el('tbody', {}, rows))));
  } catch (e) {
    chains.replaceChildren(errorBanner(e));
  }
}

// ---- Roles ---------------------------------------------------------------------------------

async function rolesView() {
  const list = el('div', { class: 'roles', id: 'roles-list' }, el('p', { class: 'muted' }, 'Loading roles…'));
  show(el('section', { id: 'roles' },
    el('div', { class: 'card' }, el('h1', {}, 'Roles'),
      el('p', { class: 'muted' }, 'Each rule allows the APIs it names on the services it names; a name starting with ! denies it.')),
    list));
  try {
    const names = (await api('/v1/roles')).names || [];
    names.sort((a, b) => (a.startsWith('system.') === b.startsWith('system.') ? a.localeCompare(b) : a.startsWith('system.') ? -1 : 1));
    const roles = await Promise.all(names.map((n) =>
      api('/v1/roles/inspect/' + encodeURIComponent(n)).then((r) => r.role || { name: n }, (e) => ({ name: n, error: e }))));
    const chips = (items) => el('div', { class: 'chips' }, (items || []).map((s) => el('span', { class: 'chip' }, s)));
    list.replaceChildren(...roles.map((role) => el('article', { class: 'card role', 'data-role': role.name },
      el('h2', {}, role.name),
      role.error ? errorBanner(role.error)
        : (role.rules || []).length === 0 ? el('p', { class: 'muted' }, 'No rules: allows nothing.')
          : el('table', { class: 'grid rules' },
            el('thead', {}, el('tr', {}, el('th', {}, 'Services'), el('th', {}, 'APIs'))),
            el('tbody', {}, role.rules.map((rule) => el('tr', {}, el('td', {}, chips(rule.services)), el('td', {}, chips(rule.apis)))))))));
    if (!roles.length) list.replaceChildren(el('p', { class: 'muted' }, 'No roles.'));
  } catch (e) {
    list.replaceChildren(errorBanner(e));
  }
}

// ---- Volumes -------------------------------------------------------------------------------

const volumes = { selected: '' };

function accessTable(title, entries, who) {
  return el('div', {},
    el('h3', {}, title),
    entries.length === 0 ? el('p', { class: 'muted' }, 'none')
      : el('table', { class: 'grid' },
        el('thead', {}, el('tr', {}, el('th', {}, who), el('th', {}, 'Access'))),
        el('tbody', {}, entries.map(([name, access]) => el('tr', {}, el('td', {}, name), el('td', {}, access || 'Read'))))));
}

function volumeDetails(entry) {
  const v = entry.volume || {};
  const spec = v.spec || {};
  const own = spec.ownership || {};
  const acls = own.acls || {};
  const pub = acls.public;
  const replicaSets = (v.replica_sets || []).map((rs) => rs.nodes || []);
  const wanted = (spec.replica_set && spec.replica_set.nodes) || [];
  const labels = Object.entries(entry.labels || v.locator && v.locator.volume_labels || {});
  return el('div', { class: 'columns', id: 'volume-details', 'data-volume': v.id },
    el('div', { class: 'card' },
      el('h2', {}, entry.name || v.id),
      el('dl', { class: 'facts' },
        el('dt', {}, 'Id'), el('dd', { class: 'mono' }, v.id),
        el('dt', {}, 'Size'), el('dd', {}, bytes(spec.size)),
        el('dt', {}, 'Replication'), el('dd', {}, `${spec.ha_level || 1} cop${Number(spec.ha_level || 1) === 1 ? 'y' : 'ies'}`),
        el('dt', {}, 'Status'), el('dd', {}, (v.status || '').replace('VOLUME_STATUS_', '').toLowerCase() || '—'),
        el('dt', {}, 'State'), el('dd', {}, (v.state || '').replace('VOLUME_STATE_', '').toLowerCase() || '—'),
        el('dt', {}, 'Created'), el('dd', {}, v.ctime ? when(Date.parse(v.ctime)) : '—'),
        el('dt', {}, 'Labels'), el('dd', {}, labels.length ? el('div', { class: 'chips' }, labels.map(([k, val]) => el('span', { class: 'chip' }, `${k}=${val}`))) : '—'))),
    el('div', { class: 'card', id: 'volume-ownership' },
      el('h2', {}, 'Ownership'),
      el('dl', { class: 'facts' },
        el('dt', {}, 'Owner'), el('dd', { id: 'volume-owner' }, own.owner || el('span', { class: 'muted' }, 'none (a public volume of the cluster)')),
        el('dt', {}, 'Public'), el('dd', { id: 'volume-public' }, pub ? `yes, ${pub.type || 'Read'} access for everyone` : 'no')),
      accessTable('Groups', Object.entries(acls.groups || {}), 'Group'),
      accessTable('Collaborators', Object.entries(acls.collaborators || {}), 'User')),
    el('div', { class: 'card', id: 'volume-replicas' },
      el('h2', {}, 'Replicas'),
      replicaSets.length === 0 && wanted.length === 0 ? el('p', { class: 'muted' }, 'No replicas placed.')
        : el('table', { class: 'grid' },
          el('thead', {}, el('tr', {}, el('th', {}, 'Replica set'), el('th', {}, 'Storage nodes'))),
          el('tbody', {},
            replicaSets.map((nodes, i) => el('tr', { class: 'replica-set' }, el('td', {}, `#${i + 1}`), el('td', {}, el('div', { class: 'chips' }, nodes.map((n) => el('span', { class: 'chip' }, n)))))),
            wanted.length ? el('tr', {}, el('td', { class: 'muted' }, 'requested'), el('td', {}, el('div', { class: 'chips' }, wanted.map((n) => el('span', { class: 'chip' }, n))))) : null)),
      el('div', { id: 'volume-nodes' })));
}

// The storage nodes named by the replica sets: where each one is (when the token may read it).
async function fillReplicaNodes(entry) {
  const ids = [...new Set((entry.volume.replica_sets || []).flatMap((rs) => rs.nodes || []))];
  const box = document.getElementById('volume-nodes');
  if (!box || !ids.length) return;
  const nodes = await Promise.all(ids.map((id) =>
    api('/v1/nodes/inspect/' + encodeURIComponent(id)).then((r) => r.node || { id }, (e) => ({ id, error: e }))));
  const zone = (n) => (n.node_labels && (n.node_labels['topology.kubernetes.io/zone'] || n.node_labels.zone)) || '—';
  box.replaceChildren(el('h3', {}, 'Storage nodes'),
    el('table', { class: 'grid' },
      el('thead', {}, el('tr', {}, el('th', {}, 'Node'), el('th', {}, 'Host'), el('th', {}, 'Address'), el('th', {}, 'Zone'), el('th', {}, 'Status'))),
      el('tbody', {}, nodes.map((n) => el('tr', { 'data-node': n.id },
        el('td', { class: 'mono' }, n.id),
        n.error ? el('td', { class: 'error', colspan: 4 }, n.error.message)
          : [el('td', {}, n.hostname || n.scheduler_node_name || '—'), el('td', { class: 'mono' }, n.mgmt_ip || '—'),
            el('td', {}, zone(n)), el('td', {}, (n.status || 'STATUS_NONE').replace('STATUS_', '').toLowerCase())])))));
}

async function volumesView() {
  const picker = el('select', { id: 'volume-picker' }, el('option', { value: '' }, 'Loading…'));
  const details = el('div', { id: 'volume-view' });
  show(el('section', { id: 'volumes' },
    el('div', { class: 'card' },
      el('h1', {}, 'Volumes'),
      el('div', { class: 'filters' }, el('label', {}, 'Volume', picker))),
    details));
  let list = [];
  try {
    list = (await api('/v1/volumes/inspectwithfilters', { method: 'POST', body: {} })).volumes || [];
  } catch (e) {
    picker.replaceChildren(el('option', { value: '' }, '—'));
    details.replaceChildren(errorBanner(e));
    return;
  }
  list.sort((a, b) => (a.name || '').localeCompare(b.name || ''));
  picker.replaceChildren(el('option', { value: '' }, list.length ? `choose one of ${list.length} volumes` : 'no volumes'),
    ...list.map((entry) => el('option', { value: entry.volume.id }, `${entry.name || '(no name)'} — ${entry.volume.id}`)));
  const pick = async () => {
    volumes.selected = picker.value;
    if (!picker.value) {
      details.replaceChildren();
      return;
    }
    try {
      // Read it again: the view shows the volume as it is now.
      const fresh = await api('/v1/volumes/inspect/' + encodeURIComponent(picker.value));
      details.replaceChildren(volumeDetails(fresh));
      await fillReplicaNodes(fresh);
    } catch (e) {
      details.replaceChildren(errorBanner(e));
    }
  };
  picker.addEventListener('change', pick);
  if (volumes.selected && list.some((entry) => entry.volume.id === volumes.selected)) {
    picker.value = volumes.selected;
    pick();
  }
}

// ---- Explain --------------------------------------------------------------------------------

const explain = { user: '', groups: '', roles: '', method: '', volume: '' };

function verdictBanner(v, id) {
  const allowed = v && v.allowed === true;
  return el('div', { class: 'banner ' + (allowed ? 'good' : 'bad'), id, 'data-allowed': allowed ? 'true' : 'false' },
    el('strong', {}, allowed ? 'Allowed' : `Refused (${(v && v.code) || 'Unknown'})`),
    !allowed && v && v.message ? el('div', { class: 'mono', id: id + '-message' }, v.message) : null);
}

function explainResult(r) {
  const list = (xs) => (xs && xs.length ? xs.join(', ') : '—');
  const rules = (role) => (role.rules || []).map((rule, i) => el('tr', { class: Number(role.deciding_rule || 0) === i + 1 ? 'deciding' : '' },
    el('td', { class: 'num' }, i + 1),
    el('td', {}, el('div', { class: 'chips' }, (rule.services || []).map((x) => el('span', { class: 'chip' }, x)))),
    el('td', {}, el('div', { class: 'chips' }, (rule.apis || []).map((x) => el('span', { class: 'chip' }, x)))),
    el('td', {}, (rule.effect || '').replace('_', ' '),
      [rule.service_deny, rule.api_deny, rule.service_allow, rule.api_allow].filter(Boolean).length
        ? el('span', { class: 'muted small' }, ' · matched ' + [rule.service_deny, rule.service_allow, rule.api_deny, rule.api_allow].filter(Boolean).join(', '))
        : null)));
  const roles = (r.role_checks || []).map((role) => el('div', { class: 'explain-role', 'data-role': role.name },
    el('h3', {}, role.name, ' ',
      el('span', { class: 'badge ' + (role.verdict === 'allow' ? 'good' : role.verdict === 'deny' ? 'bad' : 'neutral') }, (role.verdict || 'no_match').replace('_', ' ')),
      role.deciding_rule ? el('span', { class: 'muted small' }, ` rule ${role.deciding_rule}`) : null),
    (role.rules || []).length ? el('table', { class: 'grid' },
      el('thead', {}, el('tr', {}, el('th', { class: 'num' }, '#'), el('th', {}, 'Services'), el('th', {}, 'APIs'), el('th', {}, 'Effect'))),
      el('tbody', {}, rules(role))) : null));
  const volume = r.volume ? el('div', { class: 'card', id: 'explain-volume' },
    el('h2', {}, `Volume check: ${r.volume.check || r.volume_check}`),
    el('dl', { class: 'facts' },
      el('dt', {}, 'Target'), el('dd', { class: 'mono' }, r.volume.target || '—'),
      el('dt', {}, 'Volume id'), el('dd', { class: 'mono' }, r.volume.volume_id || 'does not exist')),
    (r.volume.levels || []).map((level) => el('div', {},
      el('h3', {}, `${level.want} access `, el('span', { class: 'badge ' + (level.granted ? 'good' : 'bad') }, level.granted ? 'granted' : 'not granted')),
      el('ul', { class: 'steps' }, (level.steps || []).map((step) => el('li', { class: step.grants ? 'grants' : '' }, step.text || step.kind))))),
    verdictBanner(r.volume.verdict, 'explain-volume-verdict')) : null;
  return [
    verdictBanner(r.verdict, 'explain-verdict'),
    el('div', { class: 'columns' },
      el('div', { class: 'card' },
        el('h2', {}, 'Call'),
        el('dl', { class: 'facts' },
          el('dt', {}, 'Identity'), el('dd', {}, r.anonymous ? 'anonymous (no token)' : r.user || '—'),
          el('dt', {}, 'Groups'), el('dd', {}, list(r.groups)),
          el('dt', {}, 'Roles'), el('dd', {}, list(r.roles)),
          el('dt', {}, 'Method'), el('dd', { class: 'mono' }, r.method || '—'),
          el('dt', {}, 'Dotted'), el('dd', { class: 'mono' }, r.dotted || '—'),
          el('dt', {}, 'Volume check'), el('dd', {}, r.volume_check || 'none')),
        el('h3', {}, 'Roles decide'), verdictBanner(r.role_verdict, 'explain-role-verdict'),
        roles),
      el('div', {}, volume,
        el('div', { class: 'card' },
          el('h2', {}, 'As custos access explain prints it'),
          el('pre', { id: 'explain-lines', class: 'lines' }, (r.lines || []).join('\n'))))),
  ];
}

function explainView() {
  const field = (name, label, attrs) => {
    const i = el('input', Object.assign({ name, value: explain[name] }, attrs));
    return el('label', {}, label, i);
  };
  const form = el('form', { class: 'filters', id: 'explain-form' },
    field('user', 'User', { placeholder: 'empty: anonymous', size: 14 }),
    field('groups', 'Groups', { placeholder: 'comma-separated', size: 16 }),
    field('roles', 'Roles', { placeholder: 'e.g. system.user', size: 18 }),
    field('method', 'Method', { placeholder: 'e.g. volume.create', size: 20, list: 'explain-methods', required: true }),
    field('volume', 'Volume', { placeholder: 'id or name (optional)', size: 18 }),
    el('div', { class: 'actions' }, el('button', { type: 'submit' }, 'Explain')));
  const methods = el('datalist', { id: 'explain-methods' },
    ['volume.create', 'volume.inspect', 'volume.update', 'volume.delete', 'volume.enumerate', 'volume.clone',
      'volume.snapshotcreate', 'mountattach.attach', 'mountattach.mount', 'role.create', 'role.enumerate',
      'node.enumerate', 'cluster.inspectcurrent', 'identity.version']
      .map((m) => el('option', { value: m })));
  const result = el('div', { id: 'explain-result' });
  const split = (v) => v.split(',').map((x) => x.trim()).filter(Boolean);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const name of Object.keys(explain)) explain[name] = form.elements[name].value.trim();
    const body = { user: explain.user, groups: split(explain.groups), roles: split(explain.roles), method: explain.method, volume: explain.volume };
    result.replaceChildren(el('p', { class: 'muted' }, 'Asking the cluster…'));
    try {
      result.replaceChildren(...explainResult(await api('/v1/custos/access/explain', { method: 'POST', body })));
    } catch (e) {
      result.replaceChildren(errorBanner(e));
    }
  });
  show(el('section', { id: 'explain' },
    el('div', { class: 'card' },
      el('h1', {}, 'Explain a decision'),
      el('p', { class: 'muted' },
        'The answer a call would get, and why: each role\u2019s rules, then the volume\u2019s access checks, ' +
        'decided on the cluster\u2019s current state by the same code as real calls. Nothing is changed.'),
      form, methods),
    result));
}

// ---- Start ---------------------------------------------------------------------------------

document.getElementById('signout').addEventListener('click', signOut);
window.addEventListener('hashchange', () => {
  if (location.hash.slice(1).includes('=')) {
    location.reload();
    return;
  }
  render();
});
render();
