// Start-up: find out whether we are logged in, then route between views by location.hash.
import { api, closeStream, onUnauthorized, openStream, setCsrf } from './api.js';
import { clear, toast } from './dom.js';
import { audit } from './views/audit.js';
import { config } from './views/config.js';
import { dashboard } from './views/dashboard.js';
import { grant } from './views/grant.js';

const views = { dashboard, config, audit, grant };
const $ = (id) => document.getElementById(id);
let teardown = null;

function showLogin() {
  closeStream();
  setCsrf('');
  if (teardown) teardown();
  teardown = null;
  clear($('view'));
  $('nav').hidden = true;
  $('who').hidden = true;
  $('login').hidden = false;
  $('login-password').value = '';
  $('login-password').focus();
}

function route() {
  if (!$('login').hidden) return;
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1] || 'dashboard';
  const view = views[name] || dashboard;
  if (teardown) teardown();
  const root = clear($('view'));
  root.dataset.view = name;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.view === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  teardown = view(root) || null;
  $('main').focus({ preventScroll: true });
}

function loggedIn(session) {
  setCsrf(session.csrf_token);
  $('login').hidden = true;
  $('nav').hidden = false;
  $('who').hidden = false;
  $('who-name').textContent = session.user;
  openStream((up) => {
    const s = $('link-state');
    s.textContent = up ? 'live' : 'reconnecting';
    s.className = `pill ${up ? 'ok' : 'warn'}`;
  });
  route();
}

$('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('login-error').textContent = '';
  try {
    const session = await api('POST', '/login', {
      username: $('login-user').value, password: $('login-password').value });
    $('login-password').value = '';
    loggedIn(session);
  } catch (err) {
    $('login-error').textContent = err.status === 429 ? 'Too many failed attempts; wait a little and try again.' : err.message;
  }
});
$('logout').addEventListener('click', async () => {
  try { await api('POST', '/logout'); } catch { /* gone anyway */ }
  showLogin();
});
onUnauthorized(() => { if ($('login').hidden) { toast('Session ended; please log in again.'); showLogin(); } });
window.addEventListener('hashchange', route);

api('GET', '/session').then(loggedIn).catch(showLogin);
