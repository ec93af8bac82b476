"""Jinja filters for compose.yaml: an operator's value as text Docker Compose takes literally.

Compose interpolates `$NAME` and `${NAME}` everywhere in compose.yaml from the org's .env, which
holds the secrets. A setting such as `site_url: https://x/${SERVICE_ROLE_KEY}` would otherwise
publish the service role key as Auth's site URL. Every value compose.yaml takes from the role's
inputs goes through `sfp_compose_literal` (`$` written as `$$`, compose's escape); the secrets'
own `${NAME}` references are written by the template itself and stay references.

The value becomes a YAML double-quoted scalar, so no setting can end the line or the mapping
it sits in: JSON string syntax, with the characters YAML would fold or refuse (DEL, C1 controls,
NEL, the Unicode line and paragraph separators, BOM) escaped too. JSON's own `\\uD83D\\uDE00`
surrogate pairs break Compose's YAML parser, so other characters are written as they are.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Outside JSON's own escapes (it escapes below 0x20, `"` and `\`), the characters YAML 1.2 does
# not take literally inside a double-quoted scalar.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
# A whole value that is one reference, as supabase_stack__auth_extra_env carries secrets ...
_REFERENCE = re.compile(r"\$\{[A-Z_][A-Z0-9_]*\}")
# ... in the variables made to carry one (GOTRUE_SAML_PRIVATE_KEY, GOTRUE_EXTERNAL_<P>_SECRET).
_SECRET_VARIABLE = re.compile(r"[A-Z0-9_]*(_SECRET|_PRIVATE_KEY|_PASSWORD|_PASS)")


def _quoted(text: str) -> str:
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))


def compose_literal(value: Any) -> str:
    """`value` as a YAML scalar whose text Compose passes on unchanged (no interpolation)."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return _quoted(text).replace("$", "$$")


def compose_env_value(value: Any, variable: str) -> str:
    """The value of environment `variable`: exactly one `${NAME}` reference (a secret, resolved by
    Compose from .env) when the variable is one that carries a secret, else literal text. So a
    client id written as `${SERVICE_ROLE_KEY}` stays that text instead of publishing the key."""
    text = str(value)
    if _REFERENCE.fullmatch(text) and _SECRET_VARIABLE.fullmatch(str(variable)):
        return _quoted(text)
    return compose_literal(text)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"sfp_compose_literal": compose_literal, "sfp_compose_env_value": compose_env_value}
