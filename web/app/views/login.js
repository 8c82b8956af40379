import { useState } from 'preact/hooks';
import { html } from '../html.js';
import { login } from '../data.js';
import { ErrorNote, Field } from '../components.js';

const ACCOUNT_KEY = 'scalesense.account';

export function Login({ note }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [account, setAccount] = useState(localStorage.getItem(ACCOUNT_KEY) || '');
  const [showAccount, setShowAccount] = useState(Boolean(account));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);

  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login({ email: email.trim(), password, account: account.trim() || undefined });
      if (account.trim()) localStorage.setItem(ACCOUNT_KEY, account.trim());
      else localStorage.removeItem(ACCOUNT_KEY);
    } catch (e) {
      if (e.fields?.account) {
        setShowAccount(true);
        setError('Enter your account name.');
      } else if (e.status === 401) {
        setError('That e-mail and password do not match.');
      } else {
        setError(e.message);
      }
    } finally {
      setBusy(false);
    }
  }

  return html`<main class="login">
    <form class="card login-card" onSubmit=${submit} aria-label="Sign in">
      <h1>Scale Sense</h1>
      <p class="muted">Every keg's level, live.</p>
      ${note ? html`<p class="note">${note}</p>` : null}
      <${Field} label="E-mail">
        <input type="email" name="email" autocomplete="username" required value=${email}
          onInput=${(e) => setEmail(e.currentTarget.value)} />
      </${Field}>
      <${Field} label="Password">
        <input type="password" name="password" autocomplete="current-password" required value=${password}
          onInput=${(e) => setPassword(e.currentTarget.value)} />
      </${Field}>
      ${showAccount
        ? html`<${Field} label="Account" hint="Only if your operator gave you one.">
            <input name="account" autocomplete="organization" value=${account}
              onInput=${(e) => setAccount(e.currentTarget.value)} />
          </${Field}>`
        : html`<button type="button" class="link" onClick=${() => setShowAccount(true)}>Sign in to a specific account</button>`}
      <${ErrorNote} error=${error} />
      <button type="submit" class="primary" disabled=${busy}>${busy ? 'Signing in…' : 'Sign in'}</button>
    </form>
  </main>`;
}
