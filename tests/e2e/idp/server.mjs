// Test OpenID Provider for the portcullis end-to-end tests.
//
// A real, certified OpenID Provider (the `oidc-provider` package, 8.x) configured for loopback
// tests: one (or more) confidential clients, the devInteractions login + consent forms that a
// scripted HTTP client can submit, PKCE (S256), RP-initiated logout and back-channel logout.
//
// Usage:
//   node server.mjs [--port N] [--client JSON] [--issuer-path /PATH] [--access-token-ttl SECONDS]
//
// Every option can also come from the environment:
//   IDP_PORT               port on 127.0.0.1 (0 or unset: any free port)
//   IDP_CLIENT             JSON object (or array of objects) of client metadata, e.g.
//                          {"client_id":"x","client_secret":"y","redirect_uris":["http://..."],
//                           "post_logout_redirect_uris":["http://..."]}
//   IDP_ISSUER_PATH        serve under a path: issuer http://127.0.0.1:<port>/PATH (default: none,
//                          the issuer is the bare origin without a trailing slash)
//   IDP_ACCESS_TOKEN_TTL   lifetime of access tokens in seconds (default 3600)
//   IDP_ID_TOKEN_TTL       lifetime of ID tokens in seconds (default 3600)
//   IDP_PKCE_REQUIRED      1 (default): authorization requests without PKCE are refused; 0: optional
//   IDP_API_RESOURCE       a resource indicator (e.g. urn:portcullis:e2e-api): enables the
//                          client_credentials grant and resource indicators; a token request with
//                          resource=<it> gets an RS256 JWT access token with aud=<it> and, for
//                          client credentials, groups ["services"] (bearer-token tests)
//   IDP_ROTATE_REFRESH_TOKENS  1: every refresh-token grant spends the token and issues a new one
//                          (oidc-provider then treats a replayed token as theft and revokes the
//                          grant); default: oidc-provider's own policy
//   IDP_TEST_HOOKS         1: serve GET /__test/refresh-tokens?account=<id> (the account's live
//                          refresh tokens, so a test can revoke one at the real revocation
//                          endpoint) and GET /__test/counts (refresh-token grants answered)
//
// Refresh tokens are issued when the client has the refresh_token grant and offline_access was
// granted (oidc-provider grants it only with prompt=consent, OIDC Core 11).
//
// The issuer is http://127.0.0.1:<port>[/PATH]. When the server listens it prints `READY <port>` on
// stdout. Accounts: any login name is accepted with any password; `alice`, `bob` and `carol`
// (130 groups) have the claims below, any other name gets a bare account whose sub is the login name.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    client: { type: 'string' },
    'access-token-ttl': { type: 'string' },
    'id-token-ttl': { type: 'string' },
    'issuer-path': { type: 'string' },
  },
  strict: true,
});

const requestedPort = Number(args.port ?? process.env.IDP_PORT ?? 0);
const clientJson = args.client ?? process.env.IDP_CLIENT;
const accessTokenTtl = Number(args['access-token-ttl'] ?? process.env.IDP_ACCESS_TOKEN_TTL ?? 3600);
const idTokenTtl = Number(args['id-token-ttl'] ?? process.env.IDP_ID_TOKEN_TTL ?? 3600);
const issuerPath = (args['issuer-path'] ?? process.env.IDP_ISSUER_PATH ?? '').replace(/\/+$/, '');
if (issuerPath && !issuerPath.startsWith('/')) {
  console.error('server.mjs: the issuer path must start with /');
  process.exit(2);
}
const pkceRequired = (process.env.IDP_PKCE_REQUIRED ?? '1') !== '0';
const apiResource = process.env.IDP_API_RESOURCE ?? '';
const rotateRefreshTokens = process.env.IDP_ROTATE_REFRESH_TOKENS === '1';
const testHooks = process.env.IDP_TEST_HOOKS === '1';

if (!clientJson) {
  console.error('server.mjs: a client is required (--client JSON or IDP_CLIENT)');
  process.exit(2);
}

let clients;
try {
  const parsed = JSON.parse(clientJson);
  clients = Array.isArray(parsed) ? parsed : [parsed];
} catch (err) {
  console.error(`server.mjs: client JSON does not parse: ${err.message}`);
  process.exit(2);
}

clients = clients.map((c) => ({
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  ...c,
}));

const ACCOUNTS = {
  alice: {
    sub: 'alice',
    email: 'alice@example.com',
    email_verified: true,
    preferred_username: 'alice',
    name: 'Alice Example',
    given_name: 'Alice',
    family_name: 'Example',
    groups: ['admins', 'devs'],
  },
  bob: {
    sub: 'bob',
    email: 'bob@other.test',
    email_verified: true,
    preferred_username: 'bob',
    name: 'Bob Other',
    given_name: 'Bob',
    family_name: 'Other',
    groups: ['devs'],
  },
};

// carol: so many groups that portcullis's session cookie is split into chunks (_portcullis_0,
// _portcullis_1, ...), for the tests of split cookies through nginx's auth_request.
ACCOUNTS.carol = {
  sub: 'carol',
  email: 'carol@example.com',
  email_verified: true,
  preferred_username: 'carol',
  name: 'Carol Many-Groups',
  groups: Array.from({ length: 130 }, (_, i) => `group-with-a-long-name-${String(i).padStart(4, '0')}`),
};

function claimsOf(accountId) {
  return ACCOUNTS[accountId] ?? { sub: accountId };
}

function log(line) {
  process.stdout.write(`${new Date().toISOString()} ${line}\n`);
}

// A fresh signing key for every run: nothing secret is kept on disk.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: crypto.randomBytes(8).toString('hex'),
  use: 'sig',
  alg: 'RS256',
};

const server = http.createServer();

server.listen(requestedPort, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}${issuerPath}`;

  const configuration = {
    clients,
    jwks: { keys: [signingKey] },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    // Scopes map to claims. With the default conformIdTokenClaims, claims asked for through a
    // scope are only returned by the userinfo endpoint for response_type=code, not in the ID
    // token: relying parties have to call userinfo to learn email and groups.
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username', 'given_name', 'family_name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    pkce: {
      methods: ['S256'],
      required: () => pkceRequired,
    },
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      backchannelLogout: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
      userinfo: { enabled: true },
      clientCredentials: { enabled: Boolean(apiResource) },
      resourceIndicators: {
        enabled: Boolean(apiResource),
        // Only an explicit resource=<apiResource> gets a JWT; the login flow stays as it was.
        defaultResource: () => undefined,
        useGrantedResource: () => false,
        getResourceServerInfo(ctx, resourceIndicator) {
          if (resourceIndicator !== apiResource) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: 'api:read',
            audience: apiResource,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    ...(apiResource ? {
      async extraTokenClaims(ctx, token) {
        return token.kind === 'ClientCredentials' ? { groups: ['services'] } : undefined;
      },
    } : {}),
    ...(rotateRefreshTokens ? { rotateRefreshToken: () => true } : {}),
    ttl: {
      AccessToken: accessTokenTtl,
      ClientCredentials: accessTokenTtl,
      IdToken: idTokenTtl,
    },
    async findAccount(ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          return { ...claimsOf(sub) };
        },
      };
    },
  };

  const provider = new Provider(issuer, configuration);

  provider.use(async (ctx, next) => {
    await next();
    log(`${ctx.method} ${ctx.url} -> ${ctx.status}`);
  });

  for (const event of [
    'server_error', 'authorization.error', 'grant.error', 'userinfo.error',
    'end_session.error', 'backchannel.error', 'introspection.error', 'revocation.error',
  ]) {
    provider.on(event, (ctx, err) => {
      const detail = err ?? ctx;
      log(`EVENT ${event}: ${detail?.message ?? detail} ${detail?.error_description ?? ''}`);
    });
  }
  // Refresh-token bookkeeping for the test hooks: live tokens by account, grants answered.
  const liveRefreshTokens = new Map(); // token value (jti) -> accountId
  const counts = { refresh_grants: 0, refresh_errors: 0 };
  provider.on('refresh_token.saved', (token) => {
    liveRefreshTokens.set(token.jti, token.accountId);
  });
  provider.on('refresh_token.consumed', (token) => liveRefreshTokens.delete(token.jti));
  provider.on('refresh_token.destroyed', (token) => liveRefreshTokens.delete(token.jti));
  provider.on('grant.success', (ctx) => {
    const grantType = ctx.oidc.params?.grant_type;
    if (grantType === 'refresh_token') counts.refresh_grants += 1;
    log(`EVENT grant.success grant_type=${grantType}`);
  });
  provider.on('grant.error', (ctx, err) => {
    if (ctx.oidc?.params?.grant_type === 'refresh_token') counts.refresh_errors += 1;
  });
  provider.on('grant.revoked', (ctx, grantId) => {
    log(`EVENT grant.revoked ${grantId}`);
  });

  provider.on('backchannel.success', (client, accountId, sid) => {
    log(`EVENT backchannel.success client=${client.clientId} account=${accountId} sid=${sid}`);
  });

  const callback = provider.callback();
  server.on('request', (req, res) => {
    if (testHooks && req.url.startsWith('/__test/')) {
      const url = new URL(req.url, 'http://127.0.0.1');
      let body;
      if (url.pathname === '/__test/refresh-tokens') {
        const account = url.searchParams.get('account');
        body = [...liveRefreshTokens].filter(([, a]) => a === account).map(([t]) => t);
      } else if (url.pathname === '/__test/counts') {
        body = counts;
      }
      res.statusCode = body === undefined ? 404 : 200;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(body ?? {}));
      log(`${req.method} ${url.pathname} -> ${res.statusCode}`);
      return;
    }
    if (issuerPath) {
      // Mounted under a path: strip it; oidc-provider reads the mount from req.originalUrl.
      const rest = req.url.slice(issuerPath.length);
      if (!req.url.startsWith(issuerPath) || !(rest === '' || rest.startsWith('/') || rest.startsWith('?'))) {
        log(`${req.method} ${req.url} -> 404 (outside ${issuerPath})`);
        res.statusCode = 404;
        res.end();
        return;
      }
      req.originalUrl = req.url;
      req.url = rest.startsWith('/') ? rest : `/${rest}`;
    }
    callback(req, res);
  });

  log(`issuer ${issuer}; clients ${clients.map((c) => c.client_id).join(', ')}`);
  process.stdout.write(`READY ${port}\n`);
});

server.on('error', (err) => {
  console.error(`server.mjs: ${err.message}`);
  process.exit(1);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  });
}
