import { useEffect, useState } from 'preact/hooks';
import { html } from '../html.js';
import { all, api, seg } from '../api.js';
import { useStore } from '../store.js';
import { dateTime } from '../format.js';
import { Empty, ErrorNote, Field } from '../components.js';

function NewUser({ onCreated }) {
  const s = useStore();
  const blank = { email: '', password: '', role: 'staff', everywhere: true, locations: [] };
  const [form, setForm] = useState(blank);
  const [error, setError] = useState(null);
  const [fields, setFields] = useState({});
  const [busy, setBusy] = useState(false);
  const set = (k) => (e) => setForm({ ...form, [k]: e.currentTarget.type === 'checkbox' ? e.currentTarget.checked : e.currentTarget.value });
  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setFields({});
    try {
      const user = await api('/users', {
        method: 'POST',
        body: {
          email: form.email.trim(),
          password: form.password,
          role: form.role,
          allowed_locations: form.everywhere ? null : form.locations,
        },
      });
      setForm(blank);
      onCreated(user);
    } catch (e) {
      setError(e.message);
      setFields(e.fields);
    } finally {
      setBusy(false);
    }
  }
  return html`<form class="card" onSubmit=${submit} aria-label="New user">
    <h2>New user</h2>
    <div class="row">
      <${Field} label="E-mail" error=${fields.email}><input type="email" required value=${form.email} onInput=${set('email')} /></${Field}>
      <${Field} label="Password" hint="At least 10 characters" error=${fields.password}>
        <input type="password" autocomplete="new-password" required minlength="10" value=${form.password} onInput=${set('password')} /></${Field}>
      <${Field} label="Role" error=${fields.role}>
        <select value=${form.role} onChange=${set('role')}>
          <option value="staff">Staff: view, tare, maintenance</option>
          <option value="manager">Manager: + kegs, reports, settings, calibration</option>
          <option value="admin">Admin: + users, firmware</option>
        </select>
      </${Field}>
    </div>
    <label class="check"><input type="checkbox" checked=${form.everywhere} onChange=${set('everywhere')} /> Every location</label>
    ${form.everywhere ? null : html`<div class="row">${s.locations.map((l) => html`<label class="check" key=${l.id}>
      <input type="checkbox" checked=${form.locations.includes(l.id)} onChange=${(e) => setForm({
        ...form,
        locations: e.currentTarget.checked ? [...form.locations, l.id] : form.locations.filter((x) => x !== l.id),
      })} /> ${l.name}</label>`)}</div>`}
    <${ErrorNote} error=${error} />
    <button type="submit" class="primary" disabled=${busy}>Create user</button>
  </form>`;
}

export function Users() {
  const s = useStore();
  const [users, setUsers] = useState([]);
  const [error, setError] = useState(null);
  const [note, setNote] = useState(null);
  const load = () => all('/users').then(setUsers).catch((e) => setError(e.message));
  useEffect(() => { load(); }, []);
  async function revoke(user) {
    setNote(null);
    try {
      const r = await api(`/users/${seg(user.id)}/sessions`, { method: 'DELETE' });
      setNote(`${user.email}: ${r.revoked} session(s) ended.`);
    } catch (e) {
      setError(e.message);
    }
  }
  const names = Object.fromEntries(s.locations.map((l) => [l.id, l.name]));
  return html`<section aria-label="Users">
    <h1>Users</h1>
    <div class="card table-wrap">
      <${ErrorNote} error=${error} />
      ${note ? html`<p class="note">${note}</p>` : null}
      ${users.length ? html`<table class="table stack">
        <thead><tr><th>E-mail</th><th>Role</th><th>Locations</th><th>Since</th><th></th></tr></thead>
        <tbody>${users.map((u) => html`<tr key=${u.id} data-testid="user-row">
          <td data-label="E-mail">${u.email}</td><td data-label="Role">${u.role}</td>
          <td data-label="Locations">${u.allowed_locations ? u.allowed_locations.map((l) => names[l] || l).join(', ') : 'all'}</td>
          <td data-label="Since">${dateTime(u.created_at)}</td>
          <td><button type="button" onClick=${() => revoke(u)}>Log out everywhere</button></td></tr>`)}</tbody>
      </table>` : html`<${Empty}>No users.</${Empty}>`}
    </div>
    <${NewUser} onCreated=${() => load()} />
  </section>`;
}
