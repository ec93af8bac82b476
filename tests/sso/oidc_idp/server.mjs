// Test-only OpenID Provider for tests/sso (panva/oidc-provider). Loopback only.
//
// Listens on 127.0.0.1 on a free port (PORT=0, the default) and prints one JSON line
// {"port": N, "issuer": "..."} on stdout once it accepts connections. The issuer is
// http://<ISSUER_HOST>:<port><ISSUER_SUFFIX>; ISSUER_HOST defaults to 127.0.0.1, so a test can
// make the advertised issuer differ from the URL it is reached at (issuer-mismatch case).
// EMPTY_JWKS=1 configures the provider with an empty key set (empty-JWKS case).
// CLIENTS_JSON (optional): a JSON array of client metadata registered besides the default client,
// e.g. [{"client_id": "a", "client_secret": "...", "redirect_uris": ["https://a.test/cb"]}].
// ACCOUNTS_JSON (optional): {"<login>": {"email": ..., "email_verified": true, "groups": [...]}};
// the login typed into the devInteractions form is the account id, and these are its claims
// (scopes email and groups). Without it an account has only `sub`, as before.
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const host = process.env.ISSUER_HOST || '127.0.0.1';
const suffix = process.env.ISSUER_SUFFIX || '';

const server = createServer();
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://${host}:${port}${suffix}`;
  const extraClients = process.env.CLIENTS_JSON ? JSON.parse(process.env.CLIENTS_JSON) : [];
  const accounts = process.env.ACCOUNTS_JSON ? JSON.parse(process.env.ACCOUNTS_JSON) : null;
  const accountOptions = accounts === null ? {} : {
    claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
    scopes: ['openid', 'offline_access', 'email', 'groups'],
    async findAccount(ctx, sub) {
      return { accountId: sub, async claims() { return { sub, ...(accounts[sub] || {}) }; } };
    },
  };
  const signing = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const provider = new Provider(issuer, {
    clients: [{
      client_id: 'sfp-test-client',
      client_secret: randomBytes(24).toString('hex'),
      redirect_uris: ['http://127.0.0.1/auth/v1/callback'],
    }, ...extraClients],
    jwks: { keys: process.env.EMPTY_JWKS === '1' ? [] : [{ ...signing, kid: 'sfp-test-rs256', use: 'sig', alg: 'RS256' }] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    ...accountOptions,
  });
  server.on('request', provider.callback());
  process.stdout.write(JSON.stringify({ port, issuer }) + '\n');
});

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
