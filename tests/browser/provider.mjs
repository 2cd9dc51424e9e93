// A real OpenID provider (the `oidc-provider` package) for the browser test, on the
// loopback. Prints {"issuer": …} once listening, then reads one JSON line on stdin,
// {"redirect_uri": …, "client_id": …, "client_secret": …}, registers that client
// (authorization code, PKCE required) and prints {"ready": true}. The ID token carries a
// `groups` claim (tests/it/idp_groups.rs). People sign in on a
// plain login form at /interaction/{uid}; consent is implied for the test client.
import crypto from "node:crypto";
import http from "node:http";
import readline from "node:readline";
import Provider from "oidc-provider";

const ACCOUNTS = {
  alice: { password: "alice-password", claims: { sub: "u-alice", email: "alice@example.test", email_verified: true, preferred_username: "alice", name: "Alice", groups: ["Release-Managers", "staff"] } },
  // Known only to the identity provider (and to jitgate through SCIM): tests/it/idp_groups.rs.
  zoe: { password: "zoe-password", claims: { sub: "u-zoe", email: "zoe@example.test", email_verified: true, preferred_username: "zoe", name: "Zoe", groups: ["staff"] } },
  mallory: { password: "mallory-password", claims: { sub: "u-mallory", email: "mallory@elsewhere.test", email_verified: true, preferred_username: "mallory", name: "Mallory" } },
};
const BY_SUB = Object.fromEntries(Object.values(ACCOUNTS).map((a) => [a.claims.sub, a.claims]));

const server = http.createServer();
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const issuer = `http://localhost:${server.address().port}`;
console.log(JSON.stringify({ issuer }));

const rl = readline.createInterface({ input: process.stdin });
const setup = JSON.parse(await new Promise((resolve) => rl.once("line", resolve)));
rl.on("close", () => process.exit(0)); // the test went away: so do we

const key = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" });
const provider = new Provider(issuer, {
  clients: [{
    client_id: setup.client_id,
    client_secret: setup.client_secret,
    redirect_uris: [setup.redirect_uri],
    response_types: ["code"],
    grant_types: ["authorization_code"],
    token_endpoint_auth_method: "client_secret_basic",
    require_auth_time: true,
  }],
  jwks: { keys: [{ ...key, kid: "browser-test-rsa", use: "sig", alg: "RS256" }] },
  pkce: { required: () => true },
  claims: { acr: null, sid: null, auth_time: null, iss: null, openid: ["sub", "amr", "groups"], email: ["email", "email_verified"], profile: ["name", "preferred_username"] },
  // Put the scope's claims in the ID token itself, as most providers do.
  conformIdTokenClaims: false,
  cookies: { keys: [crypto.randomBytes(32).toString("hex")] },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (ctx, sub) => {
    const claims = BY_SUB[sub];
    return claims && { accountId: sub, claims: async () => claims };
  },
  // First-party test client: consent is implied.
  loadExistingGrant: async (ctx) => {
    const id = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (id) return ctx.oidc.provider.Grant.find(id);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope("openid email profile");
    await grant.save();
    return grant;
  },
});

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const loginPage = (uid, problem) => `<!doctype html><html lang="en"><meta charset="utf-8"><title>Test provider sign-in</title>
<h1>Test provider</h1>${problem ? `<p role="alert">${esc(problem)}</p>` : ""}
<form method="post" action="/interaction/${esc(uid)}/login">
<label for="login">Username</label> <input id="login" name="login" autocomplete="username">
<label for="password">Password</label> <input id="password" name="password" type="password">
<button type="submit">Sign in</button></form>`;

const readBody = (req) => new Promise((resolve) => {
  let b = "";
  req.on("data", (c) => { b += c; });
  req.on("end", () => resolve(new URLSearchParams(b)));
});

const callback = provider.callback();
server.on("request", async (req, res) => {
  const m = new URL(req.url, issuer).pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (!m) return callback(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (!m[2]) {
      res.setHeader("content-type", "text/html; charset=utf-8");
      return res.end(loginPage(details.uid));
    }
    const form = await readBody(req);
    const account = ACCOUNTS[form.get("login")];
    if (!account || account.password !== form.get("password")) {
      res.statusCode = 401;
      res.setHeader("content-type", "text/html; charset=utf-8");
      return res.end(loginPage(details.uid, "wrong username or password"));
    }
    await provider.interactionFinished(req, res, { login: { accountId: account.claims.sub, amr: ["pwd"] } }, { mergeWithLastSubmission: false });
  } catch (e) {
    res.statusCode = 500;
    res.end(String(e));
  }
});

console.log(JSON.stringify({ ready: true }));
