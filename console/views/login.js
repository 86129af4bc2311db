// The login form: POST /api/v1/login sets the HttpOnly session cookie; then back to where the
// user was sent from (an expired session anywhere lands here with ?next=).
import { html, useState, api, navigate } from '../lib.js';

export function Login() {
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget);
    setBusy(true);
    setError('');
    try {
      await api('login', { method: 'POST', body: { user: form.get('user'), password: form.get('password') }, on401: null });
      const next = new URLSearchParams(location.search).get('next');
      navigate(next && next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/login') ? next : '/', { replace: true });
    } catch (err) {
      setError(err.status === 401 || err.status === 403 ? 'Wrong user name or password.'
        : err.status === 429 ? 'Too many attempts. Wait a minute and try again.' : `Login failed: ${err.message}`);
    } finally { setBusy(false); }
  };
  return html`
    <main class="login" id="main">
      <form method="post" action="/api/v1/login" onSubmit=${submit} aria-labelledby="login-title">
        <h1 id="login-title">dns-tproxy</h1>
        <p class="muted">Log in to the console.</p>
        <label for="login-user">User</label>
        <input id="login-user" name="user" autocomplete="username" required autofocus />
        <label for="login-password">Password</label>
        <input id="login-password" name="password" type="password" autocomplete="current-password" required />
        ${error ? html`<p class="error" role="alert" data-testid="login-error">${error}</p>` : null}
        <button type="submit" class="primary" disabled=${busy}>Log in</button>
      </form>
    </main>`;
}
