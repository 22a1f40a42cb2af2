// A real OpenID Connect provider for the web UI's sign-in test: panva's oidc-provider (npm,
// pinned in package-lock.json), on loopback, with one public client using PKCE and its
// development login form (any user name signs in; the password field is ignored).
//
//   node provider.mjs PORT REDIRECT_URI JWKS_OUT
//
// Users get the groups claim ["tw-analysts"]; JWKS_OUT receives the public signing keys
// (what trailwarden's [oidc] jwks_file reads) before the provider listens.
import Provider from "oidc-provider";
import { generateKeyPair, exportJWK } from "jose";
import { writeFileSync } from "node:fs";

const [port, redirect, jwksOut] = process.argv.slice(2);
const { privateKey } = await generateKeyPair("RS256", { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), kid: "tw-test", alg: "RS256", use: "sig" };
const { d, p, q, dp, dq, qi, ...pub } = jwk;
writeFileSync(jwksOut, JSON.stringify({ keys: [pub] }));

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: "trailwarden",
    token_endpoint_auth_method: "none",
    redirect_uris: [redirect],
    grant_types: ["authorization_code"],
    response_types: ["code"],
  }],
  jwks: { keys: [jwk] },
  claims: { openid: ["sub"], profile: ["preferred_username"], groups: ["groups"] },
  conformIdTokenClaims: false,
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, preferred_username: id, groups: ["tw-analysts"] }),
  }),
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
});
provider.proxy = false;
provider.listen(Number(port), "127.0.0.1", () => console.log(`listening ${port}`));
