// Grant access by hand: source, profile, duration.
import { api } from '../api.js';
import { h, toast } from '../dom.js';

export function grant(root) {
  const source = h('input', { id: 'grant-source', name: 'source', required: true, inputmode: 'decimal',
    placeholder: '203.0.113.10', autocomplete: 'off', 'aria-describedby': 'grant-source-help' });
  const profile = h('select', { id: 'grant-profile', name: 'profile', required: true });
  const duration = h('input', { id: 'grant-duration', name: 'duration', placeholder: 'profile default',
    pattern: '[0-9]+[smhd]?', 'aria-describedby': 'grant-duration-help' });
  const result = h('p', { role: 'status', id: 'grant-result' });
  const form = h('form', { id: 'grant-form', onsubmit: async (e) => {
    e.preventDefault();
    const body = { source: source.value.trim(), profile: profile.value };
    if (duration.value.trim()) body.duration = duration.value.trim();
    result.className = '';
    try {
      const d = await api('POST', '/grants', body);
      result.textContent = `Granted ${d.grant.source} ${d.grant.profile} until ${d.grant.expires}`;
      toast(result.textContent);
      form.reset();
    } catch (err) {
      result.className = 'error';
      result.textContent = `Not granted: ${err.message}`;
    }
  } },
  h('label', { for: 'grant-source' }, 'Source address'), source,
  h('small', { id: 'grant-source-help' }, 'IPv4 or IPv6 address of the client'),
  h('label', { for: 'grant-profile' }, 'Profile'), profile,
  h('label', { for: 'grant-duration' }, 'Duration'), duration,
  h('small', { id: 'grant-duration-help' }, 'e.g. 30m or 2h; capped at the profile\'s maximum'),
  h('button', { type: 'submit' }, 'Grant access'), result);
  root.append(h('section', { class: 'card narrow', 'aria-labelledby': 'grant-title' },
    h('h2', { id: 'grant-title' }, 'Grant access'), form));
  api('GET', '/profiles').then((d) => {
    for (const p of d.profiles || []) profile.append(h('option', { value: p.name }, `${p.name} (${p.direction})`));
  }).catch((e) => { result.className = 'error'; result.textContent = `Profiles unavailable: ${e.message}`; });
}
