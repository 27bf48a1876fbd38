"""The first path a user takes: identify through /v1, read the profile back."""

from conftest import admin_auth, basic_auth, drain


async def test_identify_then_read_profile(client, runtime):
    response = await client.post("/v1/identify", headers=basic_auth(),
                                 json={"userId": "u-1", "traits": {"email": "ada@example.com", "plan": "pro"}})
    assert response.status_code == 200, response.text
    await drain(runtime)
    profile = (await client.get("/api/users", params={"user_id": "u-1"}, headers=admin_auth())).json()
    assert profile["traits"] == {"email": "ada@example.com", "plan": "pro"}
    assert profile["identifiers"]["user_id"] == ["u-1"]
