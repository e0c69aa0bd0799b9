// node oidc-provider (panva, OpenID Certified) configured like a strict real provider, for the test suite.
//
//   node tests/op/server.mjs --port 9000
//
// Options (or the OP_* environment variables): --port (OP_PORT), --username (OP_USERNAME), --password
// (OP_PASSWORD), --access-token-ttl (OP_ACCESS_TOKEN_TTL, default 12 s), --id-token-ttl (OP_ID_TOKEN_TTL, 12 s),
// --refresh-token-ttl (OP_REFRESH_TOKEN_TTL, 3600 s). OP_ADMIN_TOKEN, when set, is required as a Bearer token by
// the test-only admin API under /__test/ (clients registered at runtime, event counters). OP_DPOP_NONCE=1 makes
// every DPoP proof carry a server nonce (RFC 9449 §8, §9); OP_PAR=off turns pushed authorization requests off.
//
// Listens on 127.0.0.1 only. Never logs tokens, secrets or passwords.

import { generateKeyPairSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    username: { type: 'string' },
    password: { type: 'string' },
    'access-token-ttl': { type: 'string' },
    'id-token-ttl': { type: 'string' },
    'refresh-token-ttl': { type: 'string' },
  },
});

function setting(name, env, fallback) {
  const value = args[name] ?? process.env[env] ?? fallback;
  if (value === undefined || value === '') {
    throw new Error(`--${name} (or ${env}) is required`);
  }
  return value;
}

function seconds(name, env, fallback) {
  const value = Number.parseInt(setting(name, env, String(fallback)), 10);
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`--${name} must be a positive number of seconds`);
  }
  return value;
}

const PORT = Number.parseInt(setting('port', 'OP_PORT'), 10);
const USERNAME = setting('username', 'OP_USERNAME', 'alice');
const PASSWORD = setting('password', 'OP_PASSWORD');
const ACCESS_TOKEN_TTL = seconds('access-token-ttl', 'OP_ACCESS_TOKEN_TTL', 12);
const ID_TOKEN_TTL = seconds('id-token-ttl', 'OP_ID_TOKEN_TTL', 12);
const REFRESH_TOKEN_TTL = seconds('refresh-token-ttl', 'OP_REFRESH_TOKEN_TTL', 3600);
const ADMIN_TOKEN = process.env.OP_ADMIN_TOKEN || '';
const DPOP_NONCE = process.env.OP_DPOP_NONCE === '1';
const PAR_ENABLED = process.env.OP_PAR !== 'off';
const ISSUER = `http://127.0.0.1:${PORT}`;
const ADMIN_PREFIX = '/__test/';

// The one account. `sub` is not the username, as at real providers.
const ACCOUNT = {
  sub: 'op-user-7f3a91',
  name: process.env.OP_ACCOUNT_NAME || 'Node Referee',
  email: process.env.OP_ACCOUNT_EMAIL || 'referee@example.org',
  email_verified: true,
  preferred_username: USERNAME,
};

// --- persistence -------------------------------------------------------------------------------------------
// A plain in-memory adapter (the interface of the library's example/my_adapter.js). The bundled development
// adapter is an LRU capped at 1000 entries shared by every model, which could silently drop a client registered
// at the start of a long test session.

const store = new Map(); // `${model}:${id}` -> { payload, expiresAt }
const grantMembers = new Map(); // grantId -> Set of store keys (tokens issued under that grant)
const sessionUids = new Map(); // Session uid -> Session id
const userCodes = new Map(); // DeviceCode user code -> id
const GRANTABLE = new Set([
  'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
]);

class TestAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    store.set(key, { payload, expiresAt });
    if (this.model === 'Session' && payload.uid) sessionUids.set(payload.uid, id);
    if (payload.userCode) userCodes.set(payload.userCode, id);
    if (GRANTABLE.has(this.model) && payload.grantId) {
      if (!grantMembers.has(payload.grantId)) grantMembers.set(payload.grantId, new Set());
      grantMembers.get(payload.grantId).add(key);
    }
  }

  async find(id) {
    const key = this.key(id);
    const entry = store.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      store.delete(key);
      return undefined;
    }
    return entry.payload;
  }

  async findByUid(uid) {
    const id = sessionUids.get(uid);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = userCodes.get(userCode);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const entry = store.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const key of grantMembers.get(grantId) ?? []) store.delete(key);
    grantMembers.delete(grantId);
  }
}

// Expired entries are dropped on read; this sweep bounds memory in long sessions.
setInterval(() => {
  const now = Date.now();
  for (const [key, entry] of store) if (entry.expiresAt <= now) store.delete(key);
}, 60_000).unref();

// --- the provider --------------------------------------------------------------------------------------------

const signingKey = {
  ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: randomBytes(8).toString('hex'),
  use: 'sig',
  alg: 'RS256',
};

const provider = new Provider(ISSUER, {
  adapter: TestAdapter,
  async findAccount(ctx, id) {
    if (id !== ACCOUNT.sub) return undefined;
    return { accountId: id, async claims() { return { ...ACCOUNT }; } };
  },
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  claims: {
    acr: null,
    auth_time: null,
    iss: null,
    sid: null,
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
  },
  // Scopes besides those named by `claims`; offline_access survives only with prompt=consent (library default,
  // lib/actions/authorization/scopes.js), and refresh tokens are issued only for it (issueRefreshToken default).
  scopes: ['openid', 'offline_access'],
  responseTypes: ['code'], // the code flow only, as our client uses it

  // Default, stated: with an access token for userinfo, the ID token carries no profile/email claims.
  conformIdTokenClaims: true,
  pkce: { required: () => true }, // S256 is the only method 9.x accepts
  // Every refresh rotates; a consumed refresh token presented again revokes the grant (refresh_token.js).
  rotateRefreshToken: true,
  clientDefaults: {
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  },
  features: {
    devInteractions: { enabled: false },
    // RFC 9126 and RFC 9449 (library defaults, stated): a client may push its authorization request, and may bind
    // its access tokens to a DPoP key; a client registered with require_pushed_authorization_requests or
    // dpop_bound_access_tokens must.
    pushedAuthorizationRequests: { enabled: PAR_ENABLED },
    dPoP: { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => DPOP_NONCE },
    userinfo: { enabled: true },
    revocation: { enabled: true },
    // RFC 7662, so tests can ask the provider whether a refresh token is still active.
    introspection: {
      enabled: true,
      allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId,
    },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      // The library's page puts the buttons outside the form (form="…" attributes); a plain form, with the
      // "sign me out everywhere" button inside it, is what the test browser can submit.
      async logoutSource(ctx, form) {
        const button = '<button type="submit" name="logout" value="yes">Yes, sign me out</button>'
          + '<button type="submit">No, stay signed in</button>';
        ctx.body = page('Sign out', `<h1>Sign out of ${escapeHtml(ctx.host)}?</h1>${form.replace('</form>', `${button}</form>`)}`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = page('Signed out', '<h1>You are signed out</h1>');
      },
    },
  },
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    IdToken: ID_TOKEN_TTL,
    RefreshToken: REFRESH_TOKEN_TTL,
    Grant: REFRESH_TOKEN_TTL,
    Session: REFRESH_TOKEN_TTL,
    Interaction: 600,
    AuthorizationCode: 60,
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', `<h1>Error</h1><p id="error">${escapeHtml(out.error)}</p>`
      + `<p id="error_description">${escapeHtml(out.error_description ?? '')}</p>`);
  },
  // 9.7+ passes its SSRF-protecting dispatcher in `options`; it refuses loopback addresses, where the test sites
  // listen. Dropping it lets back-channel logout reach 127.0.0.1 (test setup only).
  fetch(url, options) {
    delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
});

// --- counting at the provider ----------------------------------------------------------------------------------
// Event names as the library emits them (lib/actions/token.js, lib/helpers/revoke.js, lib/actions/end_session.js,
// lib/shared/error_handler.js). There is no revocation success event: a refresh token revoked at the revocation
// endpoint shows up as `grant.revoked` on route `revocation`.

const COUNTERS = [
  'authorization_code_grants', 'refresh_grants', 'authorization_code_errors', 'refresh_errors',
  'refresh_token_reuse', 'authorization_code_reuse', 'revocations', 'logout_grant_revocations',
  'backchannel_success', 'backchannel_error', 'end_session', 'pushed_authorization_requests',
  'dpop_bound_access_tokens', 'bearer_access_tokens', 'private_key_jwt_grants',
];

let counts;
let backchannelErrors;
let errors; // `${event} ${error code}` -> count, e.g. "grant.error use_dpop_nonce"
let boundKeys; // client id -> the DPoP key thumbprints (cnf.jkt) its access tokens were bound to, in order
function resetCounts() {
  counts = { total: Object.fromEntries(COUNTERS.map((name) => [name, 0])), clients: {} };
  backchannelErrors = [];
  errors = {};
  boundKeys = {};
}
resetCounts();

function count(name, clientId) {
  counts.total[name] += 1;
  if (clientId) {
    counts.clients[clientId] ??= Object.fromEntries(COUNTERS.map((n) => [n, 0]));
    counts.clients[clientId][name] += 1;
  }
  console.log(`count ${name} client=${clientId ?? '-'}`);
}

const GRANT_COUNTER = { authorization_code: 'authorization_code_grants', refresh_token: 'refresh_grants' };
const GRANT_ERROR_COUNTER = { authorization_code: 'authorization_code_errors', refresh_token: 'refresh_errors' };

provider.on('grant.success', (ctx) => {
  const name = GRANT_COUNTER[ctx.oidc.params.grant_type];
  if (name) count(name, ctx.oidc.client?.clientId);
  // Grants of clients registered with private_key_jwt: the provider authenticates such a client with nothing else
  // (lib/shared/client_auth.js), so each one was authenticated by a signed client assertion.
  if (ctx.oidc.client?.clientAuthMethod === 'private_key_jwt') count('private_key_jwt_grants', ctx.oidc.client.clientId);
});

provider.on('pushed_authorization_request.success', (ctx, client) => count('pushed_authorization_requests', client.clientId));

// Every access token the provider stores: bound to a DPoP key (its `jkt` is the key's RFC 7638 thumbprint) or not.
provider.on('access_token.saved', (token) => {
  if (token.jkt) {
    count('dpop_bound_access_tokens', token.clientId);
    (boundKeys[token.clientId] ??= []).push(token.jkt);
  } else {
    count('bearer_access_tokens', token.clientId);
  }
});

// Error answers by endpoint and code (error codes only: no token, no description with secrets).
for (const event of [
  'grant.error', 'pushed_authorization_request.error', 'userinfo.error', 'revocation.error', 'authorization.error',
  'introspection.error',
]) {
  provider.on(event, (ctx, err) => {
    const key = `${event} ${err.error ?? err.name}`;
    errors[key] = (errors[key] ?? 0) + 1;
    if (event !== 'grant.error') console.log(`${event}: ${err.error} (${err.error_detail ?? err.message})`);
  });
}

provider.on('grant.error', (ctx, err) => {
  const name = GRANT_ERROR_COUNTER[ctx.oidc.params?.grant_type];
  if (name) count(name, ctx.oidc.client?.clientId);
  console.log(`grant.error ${ctx.oidc.params?.grant_type ?? '-'}: ${err.error} (${err.error_detail ?? err.message})`);
});

provider.on('grant.revoked', (ctx) => {
  const clientId = ctx.oidc.client?.clientId;
  if (ctx.oidc.route === 'token') {
    // Only two grant handlers revoke: a consumed refresh token or a consumed authorization code presented again.
    const grantType = ctx.oidc.params.grant_type;
    if (grantType === 'refresh_token') count('refresh_token_reuse', clientId);
    else if (grantType === 'authorization_code') count('authorization_code_reuse', clientId);
  } else if (ctx.oidc.route === 'revocation') {
    count('revocations', clientId);
  } else if (ctx.oidc.route === 'end_session_confirm') {
    count('logout_grant_revocations', clientId);
  }
});

provider.on('backchannel.success', (ctx, client) => count('backchannel_success', client.clientId));
provider.on('backchannel.error', (ctx, err, client) => {
  count('backchannel_error', client.clientId);
  backchannelErrors.push({ client_id: client.clientId, message: String(err.message) });
});
provider.on('end_session.success', (ctx) => count('end_session', ctx.oidc.client?.clientId));
provider.on('server_error', (ctx, err) => console.error('server_error', err));

// --- interactions: login and consent pages -------------------------------------------------------------------

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>`
    + `<body>${body}</body></html>`;
}

function sendHtml(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

function sendJson(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

async function readBody(req, limit = 64 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw Object.assign(new Error('request body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function sameSecret(given, expected) {
  const a = Buffer.from(String(given));
  const b = Buffer.from(String(expected));
  return a.length === b.length && timingSafeEqual(a, b);
}

function loginPage(uid, clientId, error) {
  return page('Sign in', `<h1>Sign in to continue to ${escapeHtml(clientId)}</h1>`
    + (error ? `<p id="error">${escapeHtml(error)}</p>` : '')
    + `<form method="post" action="/interaction/${escapeHtml(uid)}/login">`
    + '<label>Username <input type="text" name="username" autocomplete="username" required></label>'
    + '<label>Password <input type="password" name="password" autocomplete="current-password" required></label>'
    + '<button type="submit">Sign in</button></form>');
}

function consentPage(uid, clientId, details) {
  const scopes = [...(details.missingOIDCScope ?? [])].join(' ');
  return page('Authorize', `<h1>Allow ${escapeHtml(clientId)} access?</h1>`
    + `<p id="scopes">${escapeHtml(scopes)}</p>`
    + `<form method="post" action="/interaction/${escapeHtml(uid)}/confirm">`
    + '<button type="submit" name="allow" value="yes">Allow</button>'
    + '<button type="submit" name="deny" value="yes">Deny</button></form>');
}

// The flow of the library's example (example/routes/express.js): interactionDetails → login or consent →
// interactionFinished, with a Grant carrying what the consent prompt reports missing.
async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return sendHtml(res, 400, page('Error', '<h1>Interaction mismatch</h1>'));
  const { prompt, params } = details;

  if (req.method === 'GET' && action === '') {
    if (prompt.name === 'login') return sendHtml(res, 200, loginPage(uid, params.client_id));
    if (prompt.name === 'consent') return sendHtml(res, 200, consentPage(uid, params.client_id, prompt.details));
    return sendHtml(res, 400, page('Error', `<h1>Unsupported prompt ${escapeHtml(prompt.name)}</h1>`));
  }
  if (req.method !== 'POST') return sendHtml(res, 405, page('Error', '<h1>Method not allowed</h1>'));
  const form = new URLSearchParams(await readBody(req));

  if (action === 'login' && prompt.name === 'login') {
    if (form.get('username') !== USERNAME || !sameSecret(form.get('password') ?? '', PASSWORD)) {
      return sendHtml(res, 401, loginPage(uid, params.client_id, 'Invalid username or password.'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: ACCOUNT.sub } }, {
      mergeWithLastSubmission: false,
    });
  }

  if (action === 'confirm' && prompt.name === 'consent') {
    if (!form.has('allow')) {
      return provider.interactionFinished(req, res, {
        error: 'access_denied', error_description: 'End-User denied the authorization request',
      }, { mergeWithLastSubmission: false });
    }
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    const consent = details.grantId ? {} : { grantId };
    return provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
  }

  return sendHtml(res, 400, page('Error', '<h1>This step does not match the interaction</h1>'));
}

// --- test-only admin API ---------------------------------------------------------------------------------------

const CLIENT_FIELDS = [
  'client_id', 'client_secret', 'redirect_uris', 'post_logout_redirect_uris', 'backchannel_logout_uri',
  'backchannel_logout_session_required', 'token_endpoint_auth_method', 'grant_types', 'response_types',
  'client_name', 'jwks', 'jwks_uri', 'token_endpoint_auth_signing_alg', 'require_pushed_authorization_requests',
  'dpop_bound_access_tokens',
];

async function admin(req, res, path) {
  if (ADMIN_TOKEN && !sameSecret(req.headers.authorization ?? '', `Bearer ${ADMIN_TOKEN}`)) {
    return sendJson(res, 401, { error: 'unauthorized' });
  }
  if (path === 'clients' && req.method === 'POST') {
    // Register or replace a client through the provider's adapter, as dynamic registration stores it
    // (lib/helpers/add_client.js); Client.find caches instances by their metadata, so a replacement takes effect.
    const body = JSON.parse(await readBody(req));
    const metadata = Object.fromEntries(CLIENT_FIELDS.filter((k) => body[k] !== undefined).map((k) => [k, body[k]]));
    let client;
    try {
      client = new provider.Client(metadata);
    } catch (err) {
      return sendJson(res, 400, { error: err.error ?? 'invalid_client_metadata', error_description: err.error_description ?? err.message });
    }
    await provider.Client.adapter.upsert(client.clientId, client.metadata());
    const { client_secret: _secret, ...shown } = client.metadata();
    console.log(`client registered: ${client.clientId}`);
    return sendJson(res, 201, shown);
  }
  if (path === 'counts' && req.method === 'GET') {
    return sendJson(res, 200, { ...counts, backchannel_errors: backchannelErrors, errors, bound_keys: boundKeys });
  }
  if (path === 'counts/reset' && req.method === 'POST') {
    resetCounts();
    return sendJson(res, 200, { ok: true });
  }
  return sendJson(res, 404, { error: 'not_found' });
}

// --- server ----------------------------------------------------------------------------------------------------

const handleProvider = provider.callback();
const INTERACTION = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm))?$/;

const server = createServer(async (req, res) => {
  const { pathname } = new URL(req.url, ISSUER);
  try {
    if (pathname.startsWith(ADMIN_PREFIX)) return await admin(req, res, pathname.slice(ADMIN_PREFIX.length));
    const match = INTERACTION.exec(pathname);
    if (match) return await interaction(req, res, match[1], match[2] ?? '');
    return handleProvider(req, res);
  } catch (err) {
    if (err instanceof Provider.errors.SessionNotFound) {
      return sendHtml(res, 400, page('Error', '<h1>This sign-in has expired; start again.</h1>'));
    }
    console.error(`error handling ${req.method} ${pathname}:`, err);
    if (!res.headersSent) sendHtml(res, err.status ?? 500, page('Error', '<h1>Server error</h1>'));
    else res.end();
  }
});

server.listen(PORT, '127.0.0.1', () => {
  console.log(`oidc-provider listening at ${ISSUER} (access/ID tokens ${ACCESS_TOKEN_TTL}/${ID_TOKEN_TTL} s, refresh ${REFRESH_TOKEN_TTL} s)`);
});

function shutdown(signal) {
  console.log(`${signal}: shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
