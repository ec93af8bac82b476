"""Single sign-on for an org's Auth service (GoTrue): validate IdPs, configure GoTrue.

Modules: `saml` (IdP metadata), `oidc` (OpenID discovery/JWKS), `sp` (URLs and key for the
IdP side), `gotrue_admin` (admin API client + idempotent apply), `config` (inventory model and
Auth env), `check` (re-validation for cron).
"""
