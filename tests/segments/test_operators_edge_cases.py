"""Rule operators mean the same whether members are found by the Python evaluator (a segment that
exists when the messages arrive) or by the SQL compiler (a segment created after them), pinned
where mutation testing found segments/evaluate.py and segments/compile.py loose: account
attributes seen through the user's own account, `within_days` on events, exists / not_exists,
dates in traits, starts_with / ends_with and booleans.
"""

from datetime import timedelta

import pytest

from connector.core.models import utcnow
from tests.support.app import admin_auth, basic_auth, drain

# rule -> the users in the segment, by hand from PEOPLE below
RULES = [
    ({"attribute": "account.traits.plan", "op": "eq", "value": "pro"}, {"ada"}),
    ({"attribute": "account.traits.plan", "op": "eq", "value": "free"}, {"bob"}),
    ({"attribute": "account.traits.plan", "op": "exists"}, {"ada", "bob"}),
    ({"attribute": "account.traits.plan", "op": "not_exists"}, {"carl", "dave"}),
    ({"attribute": "account.traits.seats", "op": "gt", "value": 10}, {"ada"}),
    ({"event": "Order Completed", "within_days": 7}, {"bob"}),
    ({"event": "Order Completed", "within_days": 60}, {"ada", "bob"}),
    ({"event": "Order Completed", "within_days": 60, "count": {"gte": 2}}, {"ada"}),
    ({"event": "Order Completed", "within_days": 7, "count": {"eq": 0}}, {"ada", "carl", "dave"}),
    ({"all": [{"event": "Order Completed", "within_days": 60}, {"event": "Signed In"}]}, set()),
    ({"attribute": "traits.plan", "op": "exists"}, {"ada", "bob"}),
    ({"attribute": "traits.plan", "op": "not_exists"}, {"carl", "dave"}),
    ({"attribute": "traits.address.city", "op": "exists"}, {"carl"}),
    ({"attribute": "traits.address.city", "op": "not_exists"}, {"ada", "bob", "dave"}),
    ({"attribute": "traits.signup", "op": "before", "value": "2024-02-01"}, {"ada"}),
    ({"attribute": "traits.signup", "op": "after", "value": "2024-02-01"}, {"bob", "carl"}),
    ({"attribute": "traits.signup", "op": "after", "value": "2024-03-01T09:00:00Z"}, {"bob", "carl"}),
    ({"attribute": "traits.signup", "op": "before", "value": "2024-03-01T11:00:00Z"}, {"ada", "bob"}),
    ({"attribute": "traits.signup", "op": "within_last_days", "value": 30}, {"carl"}),
    ({"attribute": "traits.signup", "op": "before", "value": "2024-01-15T00:00:00Z"}, set()),
    ({"attribute": "traits.signup", "op": "before", "value": "2024-01-15T12:00:00Z"}, {"ada"}),
    ({"attribute": "traits.seen", "op": "before", "value": "2030-01-01"}, {"carl"}),
    ({"attribute": "traits.last", "op": "before", "value": "2030-01-01"}, set()),
    ({"attribute": "traits.plan", "op": "starts_with", "value": "pr"}, {"ada"}),
    ({"attribute": "traits.plan", "op": "starts_with", "value": "free"}, {"bob"}),
    ({"attribute": "traits.plan", "op": "ends_with", "value": "ee"}, {"bob"}),
    ({"attribute": "traits.plan", "op": "ends_with", "value": "pro"}, {"ada"}),
    ({"attribute": "traits.beta", "op": "eq", "value": True}, {"ada"}),
    ({"attribute": "traits.beta", "op": "eq", "value": False}, {"bob"}),
    ({"attribute": "traits.beta", "op": "neq", "value": True}, {"bob", "carl", "dave"}),
]
NAMES = [f"rule {n}" for n in range(len(RULES))]


def people():
    def days_ago(days):
        return (utcnow() - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")

    return [
        {"type": "identify", "userId": "ada", "traits": {"plan": "pro", "signup": "2024-01-15", "beta": True}},
        {
            "type": "identify",
            "userId": "bob",
            "traits": {"plan": "free", "signup": "2024-03-01T10:00:00Z", "beta": False},
        },
        {
            "type": "identify",
            "userId": "carl",
            "traits": {"address": {"city": "Lyon"}, "signup": days_ago(2), "seen": "2024-01-15 10:00:00"},
        },
        # not dates: a 10-character string, a date and time joined by neither "T" nor " ", a time of letters
        {
            "type": "identify",
            "userId": "dave",
            "traits": {"signup": "not-a-date", "seen": "2024-01-15X10:00:00", "last": "2024-01-15Tab:cd:ef"},
        },
        {"type": "group", "userId": "ada", "groupId": "g-pro", "traits": {"plan": "pro", "seats": 50}},
        {"type": "group", "userId": "bob", "groupId": "g-free", "traits": {"plan": "free", "seats": 3}},
        {"type": "track", "userId": "ada", "event": "Order Completed", "timestamp": days_ago(30)},
        {"type": "track", "userId": "ada", "event": "Order Completed", "timestamp": days_ago(40)},
        {"type": "track", "userId": "bob", "event": "Order Completed", "timestamp": days_ago(0)},
        {"type": "track", "userId": "carl", "event": "Signed In", "timestamp": days_ago(0)},
    ]


async def create_segments(client):
    for name, (rule, _) in zip(NAMES, RULES, strict=True):
        response = await client.post("/api/segments", headers=admin_auth(), json={"name": name, "rule": rule})
        assert response.status_code == 201, response.text


async def send_people(client, runtime):
    response = await client.put("/api/settings", headers=admin_auth(), json={"handle_accounts": True})
    assert response.status_code == 200, response.text
    response = await client.post("/v1/batch", headers=basic_auth(), json={"batch": people()})
    assert response.status_code == 200 and "rejected" not in response.json(), response.text
    await drain(runtime)


async def members_by_rule(client):
    found: dict[str, set[str]] = {name: set() for name in NAMES}
    for user in ("ada", "bob", "carl", "dave"):
        profile = (await client.get("/api/users", params={"user_id": user}, headers=admin_auth())).json()
        for name in profile["segments"]:
            found[name].add(user)
    return found


@pytest.mark.parametrize("order", ["segments first (Python evaluator)", "messages first (SQL compiler)"])
async def test_each_rule_selects_exactly_the_users_written_beside_it(client, runtime, order):
    if order.startswith("segments"):
        await create_segments(client)
        await send_people(client, runtime)
    else:
        await send_people(client, runtime)
        await create_segments(client)
    found = await members_by_rule(client)
    assert {name: found[name] for name in NAMES} == {
        name: expected for name, (_, expected) in zip(NAMES, RULES, strict=True)
    }
