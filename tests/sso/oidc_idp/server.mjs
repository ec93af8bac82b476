// Test-only OpenID Provider for tests/sso (panva/oidc-provider). Loopback only.
//
// Listens on 127.0.0.1 on a free port (PORT=0, the default) and prints one JSON line
// {"port": N, "issuer": "..."} on stdout once it accepts connections. The issuer is
// http://<ISSUER_HOST>:<port><ISSUER_SUFFIX>; ISSUER_HOST defaults to 127.0.0.1, so a test can
// make the advertised issuer differ from the URL it is reached at (issuer-mismatch case).
// EMPTY_JWKS=1 configures the provider with an empty key set (empty-JWKS case).
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const host = process.env.ISSUER_HOST || '127.0.0.1';
const suffix = process.env.ISSUER_SUFFIX || '';

const server = createServer();
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://${host}:${port}${suffix}`;
  const signing = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const provider = new Provider(issuer, {
    clients: [{
      client_id: 'sfp-test-client',
      client_secret: randomBytes(24).toString('hex'),
      redirect_uris: ['http://127.0.0.1/auth/v1/callback'],
    }],
    jwks: { keys: process.env.EMPTY_JWKS === '1' ? [] : [{ ...signing, kid: 'sfp-test-rs256', use: 'sig', alg: 'RS256' }] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
  });
  server.on('request', provider.callback());
  process.stdout.write(JSON.stringify({ port, issuer }) + '\n');
});

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
