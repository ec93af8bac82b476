"""GoTrue admin client + idempotent apply, against a recording STAND-IN of the admin API.

The stand-in (gotrue_standin.py) answers as supabase/auth v2.196.0 documents; it is not GoTrue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from installer.errors import SfpError
from installer.sso.gotrue_admin import DesiredOidcProvider, DesiredSamlProvider, GoTrueAdmin
from tests.sso.gotrue_standin import GoTrueAdminStandIn
from tests.sso.idp_fixtures import SamlIdP, free_closed_port

KEY = "service-role-key-for-tests-0123456789"
SECRET = "oidc-client-secret-never-printed"
MAPPING = {"keys": {"email": {"name": "mail"}, "groups": {"name": "memberOf", "array": True}}}


@pytest.fixture
def standin() -> Iterator[GoTrueAdminStandIn]:
    s = GoTrueAdminStandIn(KEY)
    yield s
    s.close()


@pytest.fixture
def admin(standin: GoTrueAdminStandIn) -> GoTrueAdmin:
    return GoTrueAdmin(standin.url, KEY, timeout=5)


def _desired(idp: SamlIdP, **kw: object) -> DesiredSamlProvider:
    args: dict[str, object] = {"metadata_xml": idp.metadata_xml, "domains": ["acme.com"], "attribute_mapping": MAPPING}
    args.update(kw)
    return DesiredSamlProvider(**args)  # type: ignore[arg-type]


def test_standin_create_sends_documented_request(admin: GoTrueAdmin, standin: GoTrueAdminStandIn,
                                                 saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp()
    result = admin.apply_saml_provider(_desired(idp, domains=["Acme.com", "acme.org"]))
    assert (result.action, result.changed, result.key) == ("created", True, idp.entity_id)
    assert [(r.method, r.path) for r in standin.requests] == [
        ("GET", "/auth/v1/admin/sso/providers"), ("POST", "/auth/v1/admin/sso/providers")]
    for r in standin.requests:
        assert r.headers["apikey"] == KEY and r.headers["authorization"] == f"Bearer {KEY}"
    post = standin.requests[1].body
    assert post == {"type": "saml", "metadata_xml": idp.metadata_xml, "domains": ["acme.com", "acme.org"],
                    "attribute_mapping": MAPPING}
    assert result.provider_id in standin.saml


def test_standin_apply_twice_is_unchanged_without_writes(admin: GoTrueAdmin, standin: GoTrueAdminStandIn,
                                                        saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp()
    first = admin.apply_saml_provider(_desired(idp))
    standin.requests.clear()
    second = admin.apply_saml_provider(_desired(idp))
    assert (second.action, second.changed, second.provider_id) == ("unchanged", False, first.provider_id)
    assert standin.writes == []
    assert [r.path for r in standin.requests] == ["/auth/v1/admin/sso/providers",
                                                  f"/auth/v1/admin/sso/providers/{first.provider_id}"]


def test_standin_changed_domains_is_one_put_to_the_same_id(admin: GoTrueAdmin, standin: GoTrueAdminStandIn,
                                                           saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp()
    first = admin.apply_saml_provider(_desired(idp, name_id_format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"))
    standin.requests.clear()
    result = admin.apply_saml_provider(_desired(idp, domains=["acme.com", "acme.de"],
                                                name_id_format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"))
    assert (result.action, result.fields, result.provider_id) == ("updated", ("domains",), first.provider_id)
    [put] = standin.writes
    assert (put.method, put.path) == ("PUT", f"/auth/v1/admin/sso/providers/{first.provider_id}")
    # name_id_format is always sent: GoTrue clears it when a PUT omits it.
    assert put.body == {"domains": ["acme.com", "acme.de"],
                        "name_id_format": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"}
    assert len(standin.saml) == 1
    assert admin.apply_saml_provider(_desired(idp, domains=["acme.de", "acme.com"],
                                              name_id_format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent")
                                     ).action == "unchanged"


def test_standin_attribute_mapping_and_metadata_rotation(admin: GoTrueAdmin, standin: GoTrueAdminStandIn,
                                                         saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp()
    admin.apply_saml_provider(_desired(idp))
    new_map = {"keys": {"email": {"name": "emailAddress"}}}
    standin.requests.clear()
    r1 = admin.apply_saml_provider(_desired(idp, attribute_mapping=new_map))
    assert (r1.action, r1.fields) == ("updated", ("attribute_mapping",))
    assert standin.writes[0].body == {"attribute_mapping": new_map, "name_id_format": ""}

    # Same IdP, new signing certificate (same entityID): the metadata is pushed by PUT.
    rotated = saml_idp(stem="rotated")
    assert rotated.entity_id == idp.entity_id
    standin.requests.clear()
    r2 = admin.apply_saml_provider(_desired(rotated, attribute_mapping=new_map))
    assert (r2.action, r2.fields) == ("updated", ("metadata",))
    [put] = standin.writes
    assert put.body == {"metadata_xml": rotated.metadata_xml, "name_id_format": ""}

    # Cosmetically different but equivalent metadata (re-serialised): no write.
    standin.requests.clear()
    same = admin.apply_saml_provider(_desired(rotated, attribute_mapping=new_map,
                                              metadata_xml=rotated.metadata_xml.replace("><", ">\n<")))
    assert same.action == "unchanged" and standin.writes == []


def test_standin_domain_held_by_another_entity_is_refused(admin: GoTrueAdmin, standin: GoTrueAdminStandIn,
                                                          saml_idp: Callable[..., SamlIdP]) -> None:
    admin.apply_saml_provider(_desired(saml_idp()))
    other_xml = saml_idp().metadata_xml.replace('entityID="', 'entityID="urn:other-')
    standin.requests.clear()
    with pytest.raises(SfpError) as exc:
        admin.apply_saml_provider(DesiredSamlProvider(metadata_xml=other_xml, domains=["acme.com"]))
    assert "acme.com already belong to SAML provider" in exc.value.message
    assert "cannot change a provider's entityID" in (exc.value.hint or "")
    assert standin.writes == []


def test_standin_remove_saml(admin: GoTrueAdmin, standin: GoTrueAdminStandIn, saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp()
    created = admin.apply_saml_provider(_desired(idp))
    removed = admin.remove_saml_provider(idp.entity_id)
    assert (removed.action, removed.provider_id) == ("removed", created.provider_id)
    assert standin.writes[-1].method == "DELETE"
    assert standin.writes[-1].path == f"/auth/v1/admin/sso/providers/{created.provider_id}"
    standin.requests.clear()
    again = admin.remove_saml_provider(idp.entity_id)
    assert (again.action, again.changed) == ("absent", False) and standin.writes == []


def test_standin_gotrue_validation_message_surfaces(admin: GoTrueAdmin, saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp()  # http:// metadata URL: GoTrue refuses anything but https
    with pytest.raises(SfpError) as exc:
        admin.apply_saml_provider(_desired(idp, metadata_url=idp.metadata_url))
    assert "HTTP 400: metadata_url is not a HTTPS URL [validation_failed]" in exc.value.message


def _oidc(**kw: object) -> DesiredOidcProvider:
    args: dict[str, object] = {"name": "corp", "issuer": "https://idp.example.com/realms/corp",
                               "client_id": "supabase", "client_secret": SECRET}
    args.update(kw)
    return DesiredOidcProvider(**args)  # type: ignore[arg-type]


def test_standin_custom_oidc_lifecycle(admin: GoTrueAdmin, standin: GoTrueAdminStandIn) -> None:
    created = admin.apply_custom_oidc_provider(_oidc(scopes=["email", "profile"]))
    assert created.action == "created" and created.key == "custom:corp"
    post = standin.writes[0]
    assert (post.method, post.path) == ("POST", "/auth/v1/admin/custom-providers")
    assert post.body["identifier"] == "custom:corp" and post.body["provider_type"] == "oidc"
    assert post.body["client_secret"] == SECRET and post.body["issuer"] == "https://idp.example.com/realms/corp"
    assert post.body["scopes"] == ["openid", "email", "profile"]
    assert "discovery_url" not in post.body
    assert post.headers["apikey"] == KEY and post.headers["authorization"] == f"Bearer {KEY}"

    standin.requests.clear()
    assert admin.apply_custom_oidc_provider(_oidc(scopes=["email", "profile"])).action == "unchanged"
    assert standin.writes == []

    changed = admin.apply_custom_oidc_provider(_oidc(scopes=["email", "profile", "groups"]))
    assert (changed.action, changed.fields) == ("updated", ("scopes",))
    [put] = standin.writes
    assert (put.method, put.path) == ("PUT", "/auth/v1/admin/custom-providers/custom:corp")
    assert put.body == {"scopes": ["openid", "email", "profile", "groups"]}  # no secret unless asked

    standin.requests.clear()
    rotated = admin.apply_custom_oidc_provider(_oidc(scopes=["email", "profile", "groups"], client_secret="new"),
                                               rotate_secret=True)
    assert rotated.fields == ("client_secret",)
    assert standin.writes[0].body == {"client_secret": "new"}
    assert SECRET not in repr(rotated)

    standin.requests.clear()
    assert admin.remove_custom_provider("corp").action == "removed"
    assert [(r.method, r.path) for r in standin.writes] == [("DELETE", "/auth/v1/admin/custom-providers/custom:corp")]
    assert admin.remove_custom_provider("custom:corp").action == "absent"


@pytest.mark.parametrize(("status", "expect_message", "expect_hint"), [
    (403, "forbade", "not a service_role key"),
    (404, "not found (404)", "GOTRUE_SAML_ENABLED must be true"),
    (500, "failed with HTTP 500", "auth container's log"),
])
def test_standin_error_statuses(admin: GoTrueAdmin, standin: GoTrueAdminStandIn, status: int,
                                expect_message: str, expect_hint: str) -> None:
    standin.fail_next = (status, {"code": status, "msg": "injected by the stand-in"})
    with pytest.raises(SfpError) as exc:
        admin.list_saml_providers()
    assert expect_message in exc.value.message and "injected by the stand-in" in exc.value.message
    assert expect_hint in (exc.value.hint or "")
    assert KEY not in str(exc.value)


def test_standin_wrong_key_is_401(standin: GoTrueAdminStandIn) -> None:
    wrong = GoTrueAdmin(standin.url, "not-the-service-role-key", timeout=5)
    with pytest.raises(SfpError) as exc:
        wrong.list_custom_providers()
    assert "refused the service_role key (401)" in exc.value.message
    assert "not-the-service-role-key" not in str(exc.value) and KEY not in str(exc.value)
    assert "GoTrueAdmin(" in repr(wrong) and "not-the-service-role-key" not in repr(wrong)


def test_unreachable_admin_api() -> None:
    admin = GoTrueAdmin(f"http://127.0.0.1:{free_closed_port()}", KEY, timeout=3)
    with pytest.raises(SfpError) as exc:
        admin.list_saml_providers()
    assert "cannot reach the GoTrue admin API (GET http://127.0.0.1:" in exc.value.message
    assert KEY not in str(exc.value)


def test_invalid_metadata_is_refused_before_any_request(admin: GoTrueAdmin, standin: GoTrueAdminStandIn,
                                                        saml_idp: Callable[..., SamlIdP]) -> None:
    with pytest.raises(SfpError) as exc:
        admin.apply_saml_provider(_desired(saml_idp(cert_expired=True)))
    assert "failed validation (1 error)" in exc.value.message and "expired on" in exc.value.message
    assert standin.requests == []
