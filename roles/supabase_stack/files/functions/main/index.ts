// Entry point of the edge runtime ("main service"). When VERIFY_JWT is on it checks the caller's
// token (HS256 with the legacy secret, ES256/RS256 with the org's public key set), then runs the
// function named by the first path segment in a user worker of its own.
import * as jose from "jsr:@panva/jose@6";

const JWT_SECRET = Deno.env.get("JWT_SECRET") ?? "";
const VERIFY_JWT = Deno.env.get("VERIFY_JWT") === "true";
const JWKS = (() => {
  try {
    const raw = Deno.env.get("SUPABASE_JWKS");
    return raw ? jose.createLocalJWKSet(JSON.parse(raw)) : null;
  } catch {
    return null;
  }
})();

function unauthorized(code: string, message: string): Response {
  return new Response(JSON.stringify({ code, message, msg: message }), {
    status: 401,
    headers: { "Content-Type": "application/json", "sb-error-code": code },
  });
}

async function checkToken(req: Request): Promise<Response | null> {
  const header = req.headers.get("Authorization") ?? "";
  const [scheme, token] = header.split(" ");
  if (scheme !== "Bearer" || !token) return unauthorized("UNAUTHORIZED_NO_AUTH_HEADER", "Missing authorization header");
  let alg: string | undefined;
  try {
    alg = jose.decodeProtectedHeader(token).alg;
  } catch {
    return unauthorized("UNAUTHORIZED_INVALID_JWT_FORMAT", "Invalid JWT");
  }
  try {
    if (alg === "HS256") {
      await jose.jwtVerify(token, new TextEncoder().encode(JWT_SECRET));
    } else if ((alg === "ES256" || alg === "RS256") && JWKS) {
      await jose.jwtVerify(token, JWKS);
    } else {
      return unauthorized("UNAUTHORIZED_UNSUPPORTED_TOKEN_ALGORITHM", `Unsupported token algorithm ${alg}`);
    }
  } catch {
    return unauthorized(alg === "HS256" ? "UNAUTHORIZED_LEGACY_JWT" : "UNAUTHORIZED_ASYMMETRIC_JWT", "Invalid JWT");
  }
  return null;
}

Deno.serve(async (req: Request) => {
  if (req.method !== "OPTIONS" && VERIFY_JWT) {
    const refused = await checkToken(req);
    if (refused) return refused;
  }
  const name = new URL(req.url).pathname.split("/").filter(Boolean)[0];
  if (!name) {
    return new Response(JSON.stringify({ msg: "missing function name in request" }), {
      status: 400,
      headers: { "Content-Type": "application/json" },
    });
  }
  try {
    // deno-lint-ignore no-explicit-any
    const runtime = (globalThis as any).EdgeRuntime;
    const worker = await runtime.userWorkers.create({
      servicePath: `/home/deno/functions/${name}`,
      memoryLimitMb: 150,
      workerTimeoutMs: 60_000,
      noModuleCache: false,
      importMapPath: null,
      envVars: Object.entries(Deno.env.toObject()),
    });
    return await worker.fetch(req);
  } catch (err) {
    return new Response(JSON.stringify({ msg: String(err) }), {
      status: 500,
      headers: { "Content-Type": "application/json" },
    });
  }
});
