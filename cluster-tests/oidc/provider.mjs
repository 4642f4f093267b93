// The OpenID provider of cluster-tests/tests/oidc.rs: the `oidc-provider` package, served over
// HTTPS on 127.0.0.1, issuing JWT access tokens through the client_credentials grant.
//
//   node provider.mjs serve CONFIG.json     serve until killed; prints "listening <issuer>" when ready
//   node provider.mjs genkey KID            print a new private RSA JWK (RS256) for a key set file
//   node provider.mjs token ISSUER CA CLIENT SECRET RESOURCE
//                                           request an access token, print it
//
// CONFIG.json: { "issuer", "port", "cert", "key" (PEM files), "jwks" (a file holding
// {"keys": [private JWKs]}; the first signs), "clients": [{ "client_id", "client_secret",
// "claims": { ... added to its tokens } }], "resources": [ "urn:..." ] }. Each request is
// logged as "request <METHOD> <PATH>", so the test can count key set fetches.

import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import Provider from 'oidc-provider';

const [mode, ...args] = process.argv.slice(2);

if (mode === 'genkey') {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: args[0], alg: 'RS256', use: 'sig' };
  process.stdout.write(`${JSON.stringify(jwk)}\n`);
} else if (mode === 'token') {
  const [issuer, caFile, clientId, secret, resource] = args;
  const body = new URLSearchParams({ grant_type: 'client_credentials', resource, scope: 'api' }).toString();
  const auth = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64');
  const request = https.request(`${issuer}/token`, {
    method: 'POST',
    ca: readFileSync(caFile),
    headers: {
      authorization: `Basic ${auth}`,
      'content-type': 'application/x-www-form-urlencoded',
      'content-length': Buffer.byteLength(body),
    },
  }, (response) => {
    let text = '';
    response.on('data', (chunk) => { text += chunk; });
    response.on('end', () => {
      if (response.statusCode !== 200) {
        process.stderr.write(`token endpoint answered ${response.statusCode}: ${text}\n`);
        process.exit(1);
      }
      process.stdout.write(`${JSON.parse(text).access_token}\n`);
    });
  });
  request.on('error', (e) => { process.stderr.write(`${e}\n`); process.exit(1); });
  request.end(body);
} else if (mode === 'serve') {
  const config = JSON.parse(readFileSync(args[0], 'utf8'));
  const claimsOf = new Map(config.clients.map((c) => [c.client_id, c.claims]));
  const provider = new Provider(config.issuer, {
    jwks: JSON.parse(readFileSync(config.jwks, 'utf8')),
    clients: config.clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
    })),
    scopes: ['api'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // The audience of a token is the resource it was asked for.
        getResourceServerInfo: async (_ctx, resource) => {
          if (!config.resources.includes(resource)) throw new Provider.errors.InvalidTarget();
          return { scope: 'api', audience: resource, accessTokenFormat: 'jwt', accessTokenTTL: 3600 };
        },
      },
    },
    extraTokenClaims: async (_ctx, token) => claimsOf.get(token.clientId),
  });
  provider.on('server_error', (_ctx, error) => process.stderr.write(`server_error ${error}\n`));
  const callback = provider.callback();
  const server = https.createServer(
    { cert: readFileSync(config.cert), key: readFileSync(config.key) },
    (req, res) => {
      process.stdout.write(`request ${req.method} ${req.url}\n`);
      callback(req, res);
    },
  );
  server.listen(config.port, '127.0.0.1', () => process.stdout.write(`listening ${config.issuer}\n`));
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
} else {
  process.stderr.write('usage: provider.mjs serve CONFIG | genkey KID | token ISSUER CA CLIENT SECRET RESOURCE\n');
  process.exit(2);
}
