"""The names the connector has seen (`seen_names`), kept by processing and read by `GET /api/names`: trait keys of
users and accounts and event names, every one seen however old, and still known after the data naming it is gone."""

from tests.support.api import post_batch
from tests.support.app import admin_auth, drain


async def names_of(client):
    response = await client.get("/api/names", headers=admin_auth())
    assert response.status_code == 200, response.text
    return response.json()


async def test_every_trait_key_and_event_name_processed_is_listed_once_whichever_batch_brought_it(client, runtime):
    await runtime.settings.save({"handle_accounts": True})
    await post_batch(
        client,
        {"type": "identify", "userId": "ada", "traits": {"plan": "pro", "seats": 3}},
        {"type": "track", "userId": "ada", "event": "Report Created"},
        {"type": "page", "userId": "ada", "name": "Pricing"},
    )
    await drain(runtime)
    await post_batch(
        client,
        {"type": "identify", "userId": "bob", "traits": {"plan": "free", "title": "CTO"}},
        {"type": "track", "userId": "bob", "event": "Report Created"},
        {"type": "group", "userId": "bob", "groupId": "acme", "traits": {"industry": "retail", "name": "Acme"}},
    )
    await drain(runtime)

    names = await names_of(client)
    assert names["traits"] == {"user": ["plan", "seats", "title"], "account": ["industry", "name"]}
    assert names["events"] == ["Report Created", "page"]
    assert "traits.seats" in names["attributes"]["user"]
    assert "account.traits.industry" in names["attributes"]["user"]


async def test_names_stay_known_after_the_only_profile_holding_them_is_erased(client, runtime):
    await post_batch(
        client,
        {"type": "identify", "userId": "ada", "traits": {"paln": "pro"}},
        {"type": "track", "userId": "ada", "event": "Report Crated"},
    )
    await drain(runtime)
    erased = await client.delete("/api/users", headers=admin_auth(), params={"user_id": "ada"})
    assert erased.status_code == 200, erased.text

    names = await names_of(client)
    assert names["traits"]["user"] == ["paln"]
    assert names["events"] == ["Report Crated"]


async def test_a_group_call_with_accounts_turned_off_teaches_no_account_trait(client, runtime):
    await runtime.settings.save({"handle_accounts": False})
    await post_batch(client, {"type": "group", "userId": "ada", "groupId": "acme", "traits": {"industry": "retail"}})
    await drain(runtime)

    assert (await names_of(client))["traits"] == {"user": [], "account": []}


async def test_a_setting_naming_an_attribute_never_seen_is_saved_with_a_warning_suggesting_the_names_seen(
    client, runtime
):
    await runtime.settings.save({"handle_accounts": True})
    await post_batch(
        client,
        {"type": "identify", "userId": "ada", "traits": {"plan": "pro", "address": {"city": "Paris"}}},
        {"type": "group", "userId": "ada", "groupId": "acme", "traits": {"industry": "retail"}},
    )
    await drain(runtime)
    document = {
        "synchronized_properties": [
            "plan",
            "address/city",
            "traits.address.city",
            "usage.events_30d",
            "account.industry",
            "paln",
            {"from": "traits.paln", "to": "Plan"},
        ],
        "synchronized_account_properties": ["industry", "domain", "employees"],
    }
    response = await client.put("/api/settings", headers=admin_auth(), json=document)

    assert response.status_code == 200, response.text
    assert response.json()["warnings"] == [
        {
            "field": "synchronized_properties[5]",
            "message": "'paln' was never seen: no user has sent it yet; did you mean 'traits.plan'?",
        },
        {
            "field": "synchronized_properties[6].from",
            "message": "'traits.paln' was never seen: no user has sent it yet; did you mean 'traits.plan'?",
        },
        {
            "field": "synchronized_account_properties[2]",
            "message": "'employees' was never seen: no account has sent it yet",
        },
    ]
    saved = await runtime.settings.current()
    assert saved.synchronized_properties[5] == "paln"
    assert saved.synchronized_account_properties == ["industry", "domain", "employees"]
