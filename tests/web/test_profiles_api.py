"""The profile endpoints the dashboard's Profiles page reads: search by the start of an identifier, an email or
an email's domain (each way a range of an index, on both backends), and the users of an account, paged."""

import re
from typing import Any

import sqlalchemy as sa

from connector.web import profiles
from tests.support.api import post_batch
from tests.support.app import admin_auth, drain
from tests.support.fake_segment import user_id_of


async def get(client, path, **params):
    response = await client.get(path, headers=admin_auth(), params=params)
    assert response.status_code == 200, response.text
    return response.json()


def identify(user, traits, **extra):
    return {"type": "identify", "userId": user, "traits": traits, "timestamp": "2024-05-01T10:00:00Z", **extra}


async def search(client, text):
    return [(match["user_id"], match["email"]) for match in (await get(client, "/api/users/search", q=text))["users"]]


async def test_users_are_found_by_the_start_of_their_email_trait_or_of_its_domain_without_typing_an_at(client, runtime):
    # identify_by_email is off (the default): the emails are traits only.
    await post_batch(
        client,
        identify("user-1", {"email": "Bob@Acme.com"}),
        identify("user-2", {"email": "carol@acme.io"}),
        identify("user-3", {"email": "dan@other.org"}),
        identify("user-4", {"plan": "pro"}),
    )
    await drain(runtime)

    assert await search(client, "bob") == [("user-1", "Bob@Acme.com")]
    # In profile id order: these users are in different journal partitions, which two batches may store in
    # either order.
    assert sorted(await search(client, "acme")) == [("user-1", "Bob@Acme.com"), ("user-2", "carol@acme.io")]
    assert await search(client, "@ACME.C") == [("user-1", "Bob@Acme.com")]
    assert await search(client, "acme.io") == [("user-2", "carol@acme.io")]
    assert await search(client, "bob@acme") == [("user-1", "Bob@Acme.com")]
    assert await search(client, "other") == [("user-3", "dan@other.org")]
    # The domain is matched from its start only, as the rest.
    assert await search(client, "org") == []
    assert await search(client, "user-4") == [("user-4", None)]


async def test_a_profile_known_only_by_an_email_identifier_is_found_by_its_domain(client, runtime):
    await runtime.settings.save({"identify_by_email": True})
    await post_batch(
        client,
        {
            "type": "track",
            "anonymousId": "anon-eve",
            "event": "Viewed Pricing",
            "context": {"traits": {"email": "Eve@Initech.com"}},
            "timestamp": "2024-05-01T10:00:00Z",
        },
    )
    await drain(runtime)

    found = (await get(client, "/api/users/search", q="initech"))["users"]
    assert [(match["anonymous_id"], match["email"]) for match in found] == [("anon-eve", "eve@initech.com")]
    assert (await get(client, "/api/users/search", q="EVE"))["users"] == found


async def test_every_search_of_users_reads_a_range_of_an_index_and_never_the_whole_table(runtime):
    statements: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        statements.append((statement, parameters))

    engine = runtime.engine
    sa.event.listen(engine.sync_engine, "before_cursor_execute", keep)
    try:
        async with engine.connect() as conn:
            await profiles.search_users(conn, "acme")
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", keep)
    searches = [(statement, parameters) for statement, parameters in statements if "LIMIT" in statement]
    assert len(searches) == 4  # identifiers, email trait, its domain, email identifiers' domain

    plans = []
    async with engine.connect() as conn:
        postgres = engine.dialect.name == "postgresql"
        if postgres:
            # The test's tables are nearly empty: without this, reading all of them would be the cheapest plan.
            await conn.exec_driver_sql("SET enable_seqscan = off")
        explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
        for statement, parameters in searches:
            rows = (await conn.exec_driver_sql(explain + statement, parameters)).all()
            plans.append("\n".join(str(row[-1]) for row in rows))
    whole_table = r"Seq Scan" if postgres else r"(^|\n)SCAN (users|user_identifiers)\b"
    assert [re.search(whole_table, plan) for plan in plans] == [None] * 4, plans
    for index in ("ix_users_email_trait", "ix_users_email_trait_domain", "ix_user_identifiers_email_domain"):
        assert any(re.search(rf"\b{index}\b", plan) for plan in plans), (index, plans)


async def test_an_account_lists_its_users_newest_first_in_pages(client, runtime):
    await runtime.settings.save({"handle_accounts": True})
    for user, email in (("ada", "ada@acme.com"), ("bob", "bob@acme.com"), ("cid", None)):
        traits = {"email": email} if email else {}
        await post_batch(client, identify(user, traits))
        await drain(runtime)
        await post_batch(client, {"type": "group", "userId": user, "groupId": "acme-1", "traits": {"name": "Acme"}})
        await drain(runtime)
    await post_batch(client, identify("eve", {"email": "eve@else.com"}))
    await drain(runtime)
    account = (await get(client, "/api/accounts", group_id="acme-1"))["id"]
    ada, bob, cid = [await user_id_of(runtime, user) for user in ("ada", "bob", "cid")]

    first = (await get(client, f"/api/accounts/{account}/users", limit=2))["users"]
    assert [(user["id"], user["user_id"], user["email"]) for user in first] == [
        (cid, "cid", None),
        (bob, "bob", "bob@acme.com"),
    ]
    rest = (await get(client, f"/api/accounts/{account}/users", limit=2, before_id=bob))["users"]
    assert [(user["id"], user["user_id"], user["email"]) for user in rest] == [(ada, "ada", "ada@acme.com")]
    missing = await client.get("/api/accounts/999999/users", headers=admin_auth())
    assert (missing.status_code, missing.json()["message"]) == (404, "no such account")
