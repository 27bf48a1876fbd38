"""Whether a Webhooks destination read back from Segment still holds the connector's shared secret, when
Segment answers the secret in full or masked (bullets, then its last characters)."""

import pytest

from connector.service.workspace import Target

SECRET = "s3cret-shared-value"
HOOK = "https://connector.example/segment"
AUTHORIZATION = "Basic dGVzdDo="


def destination(shared_secret: object) -> dict[str, object]:
    hooks = [{"hook": HOOK, "headers": [{"key": "Authorization", "value": AUTHORIZATION}]}]
    return {"enabled": True, "settings": {"hooks": hooks, "sharedSecret": shared_secret}}


@pytest.mark.parametrize(
    ("read_back", "differs"),
    [
        ("s3cret-shared-value", False),  # in full, the same
        ("••••••••••alue", False),  # masked, ending as ours
        ("**********value", False),
        ("••••••••••lue!", True),  # masked, ending otherwise
        ("another-shared-value", True),  # in full, another
        ("••••••••••", True),  # nothing shown: cannot be ours as far as anyone can tell
        ("••••••••ue", True),  # too little shown to tell
        ("", True),  # unset
        (None, True),
        (1234, True),
    ],
)
def test_a_shared_secret_read_back_in_full_or_masked_matches_only_when_it_can_be_ours(read_back, differs):
    problems = Target(HOOK, AUTHORIZATION, SECRET).problems(destination(read_back))
    assert (problems == ["its shared secret differs"]) is differs
    assert problems in ([], ["its shared secret differs"])
