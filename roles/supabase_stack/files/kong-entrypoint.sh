#!/bin/sh
# Start the API gateway from the org's declarative config. The config on the host names its
# secrets as $VARIABLES; they are filled in here, inside the container, from its environment,
# so no key is ever written to the host's disk.
set -eu

TEMPLATE=/home/kong/temp.yml
: "${KONG_DECLARATIVE_CONFIG:=/usr/local/kong/kong.yml}"

# Opaque API keys (sb_publishable_/sb_secret_) are not JWTs, so the services behind the gateway
# cannot verify them. When both are configured, the gateway swaps them for the matching
# pre-signed JWT (ES256, or HS256 without the EC key) before proxying; these Lua expressions are evaluated by Kong's
# request-transformer per request. Without them, the legacy key passes through unchanged.
# During an api-keys rotation's grace period the replaced keys (*_PREVIOUS) are swapped too; an
# empty one adds no comparison (an empty apikey must never match).
# is_key LUA_VALUE PREFIX KEY PREVIOUS_KEY: a Lua test that the value is PREFIX plus one of the keys.
is_key() {
  cond="$1 == '$2$3'"
  if [ -n "$4" ]; then cond="$cond or $1 == '$2$4'"; fi
  printf '(%s)' "$cond"
}
# The key an opaque key becomes: the ES256 one when the org signs with its EC key
# (sfp_org.auth.asymmetric_keys), else, as upstream's gateway does without them, the HS256 one.
ANON_SWAP="${ANON_KEY_ASYMMETRIC:-${SUPABASE_ANON_KEY:-}}"
SERVICE_SWAP="${SERVICE_ROLE_KEY_ASYMMETRIC:-${SUPABASE_SERVICE_KEY:-}}"
if [ -n "${SUPABASE_SECRET_KEY:-}" ] && [ -n "${SUPABASE_PUBLISHABLE_KEY:-}" ]; then
  LUA_AUTH_EXPR="\$((headers.authorization ~= nil and headers.authorization:sub(1, 10) ~= 'Bearer sb_' and headers.authorization) or ($(is_key headers.apikey '' "${SUPABASE_SECRET_KEY}" "${SUPABASE_SECRET_KEY_PREVIOUS:-}") and 'Bearer ${SERVICE_SWAP}') or ($(is_key headers.apikey '' "${SUPABASE_PUBLISHABLE_KEY}" "${SUPABASE_PUBLISHABLE_KEY_PREVIOUS:-}") and 'Bearer ${ANON_SWAP}') or headers.apikey)"
  LUA_RT_WS_EXPR="\$(($(is_key query_params.apikey '' "${SUPABASE_SECRET_KEY}" "${SUPABASE_SECRET_KEY_PREVIOUS:-}") and '${SERVICE_SWAP}') or ($(is_key query_params.apikey '' "${SUPABASE_PUBLISHABLE_KEY}" "${SUPABASE_PUBLISHABLE_KEY_PREVIOUS:-}") and '${ANON_SWAP}') or query_params.apikey)"
  LUA_FUNCTIONS_EXPR="\$(($(is_key headers.apikey '' "${SUPABASE_SECRET_KEY}" "${SUPABASE_SECRET_KEY_PREVIOUS:-}") and '${SERVICE_SWAP}') or ($(is_key headers.apikey '' "${SUPABASE_PUBLISHABLE_KEY}" "${SUPABASE_PUBLISHABLE_KEY_PREVIOUS:-}") and '${ANON_SWAP}') or ($(is_key headers.authorization 'Bearer ' "${SUPABASE_SECRET_KEY}" "${SUPABASE_SECRET_KEY_PREVIOUS:-}") and '${SERVICE_SWAP}') or ($(is_key headers.authorization 'Bearer ' "${SUPABASE_PUBLISHABLE_KEY}" "${SUPABASE_PUBLISHABLE_KEY_PREVIOUS:-}") and '${ANON_SWAP}') or nil)"
else
  LUA_AUTH_EXPR="\$((headers.authorization ~= nil and headers.authorization:sub(1, 10) ~= 'Bearer sb_' and headers.authorization) or headers.apikey)"
  LUA_RT_WS_EXPR="\$(query_params.apikey)"
  LUA_FUNCTIONS_EXPR="\$(nil)"
fi
export LUA_AUTH_EXPR LUA_RT_WS_EXPR LUA_FUNCTIONS_EXPR

# When the grace period of the replaced API keys ends, as the seconds the Lua check compares with
# the clock; none (no grace period) or anything but the UTC stamp the toolkit writes: 0, the keys
# refused (date(1) would read "next week" too).
API_KEYS_PREVIOUS_UNTIL_EPOCH=0
case "${API_KEYS_PREVIOUS_UNTIL:-}" in
  [0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z)
    API_KEYS_PREVIOUS_UNTIL_EPOCH="$(date -u -d "$API_KEYS_PREVIOUS_UNTIL" +%s 2>/dev/null)" || API_KEYS_PREVIOUS_UNTIL_EPOCH=0 ;;
esac
export API_KEYS_PREVIOUS_UNTIL_EPOCH

# OAuth authorization server metadata lives under the issuer's path (RFC 8414), e.g.
# /.well-known/oauth-authorization-server/auth/v1 for an issuer ending in /auth/v1.
issuer="${JWT_ISSUER%/}"
case "$issuer" in
  http://* | https://*) ;;
  *) echo "kong-entrypoint: JWT_ISSUER must be an http(s) URL, got '${JWT_ISSUER:-}'" >&2; exit 1 ;;
esac
rest="${issuer#*://}"
case "$rest" in
  */*) WELL_KNOWN_OAUTH_PATH="/.well-known/oauth-authorization-server/${rest#*/}" ;;
  *) WELL_KNOWN_OAUTH_PATH="/.well-known/oauth-authorization-server" ;;
esac
export WELL_KNOWN_OAUTH_PATH

mkdir -p "$(dirname "$KONG_DECLARATIVE_CONFIG")"
# Replace $NAME for names set in the environment; leave every other '$' alone (the Lua
# templates themselves start with '$(').
awk '{
  out = ""; line = $0
  while (match(line, /\$[A-Za-z_][A-Za-z0-9_]*/)) {
    name = substr(line, RSTART + 1, RLENGTH - 1)
    if (name in ENVIRON) out = out substr(line, 1, RSTART - 1) ENVIRON[name]
    else out = out substr(line, 1, RSTART + RLENGTH - 1)
    line = substr(line, RSTART + RLENGTH)
  }
  print out line
}' "$TEMPLATE" > "$KONG_DECLARATIVE_CONFIG.tmp"
# An unset optional key leaves "- key:" with nothing after it: drop it rather than register an
# empty credential.
sed -e '/^[[:space:]]*- key:[[:space:]]*$/d' "$KONG_DECLARATIVE_CONFIG.tmp" > "$KONG_DECLARATIVE_CONFIG"
rm -f "$KONG_DECLARATIVE_CONFIG.tmp"

exec /entrypoint.sh kong docker-start
