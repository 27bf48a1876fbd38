"""Identity resolution in memory (processing/identity.py's Resolver), without a database: the fast tier's check of
the rules that tests/processing/test_identity.py checks through HTTP and the worker.

Messages are resolved in journal order as processing/apply.py drives the Resolver (an alias through `alias`,
every other call through `resolve` with the message's claims), starting from the stored profiles a case gives.
The expected outcome of each case is written by hand from the rules (the module's docstring): which identifiers
end in one profile, which user_id each profile holds, what is audited, and which merges and renames of stored
profiles must run as statements.
"""

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.spec import clean_id
from connector.processing.identity import NEW, Resolver, StoredMerge, StoredRename, claims_of


def resolve_all(
    messages: list[dict[str, Any]], stored: dict[int, list[str]] | None = None, by_email: bool = True
) -> tuple[Resolver, list[int]]:
    """The Resolver after `messages`, from the stored profiles {id: ["kind:value", ...]}; and each message's profile
    (followed through later merges)."""
    owners: dict[tuple[str, str], int] = {}
    held: dict[int, str] = {}
    for profile, identifiers in (stored or {}).items():
        for identifier in identifiers:
            kind, value = identifier.split(":", 1)
            # as identity.lookup answers: a previous_user_id is found by a user_id claim of the same value
            owners[("user_id", value) if kind == "previous_user_id" else (kind, value)] = profile
            if kind == "user_id":
                held[profile] = value
    resolver = Resolver(owners, held)
    keys = []
    for n, message in enumerate(messages):
        message_id = f"m{n + 1}"
        if message["type"] == "alias":
            keys.append(
                resolver.alias(clean_id(message.get("previousId")), clean_id(message.get("userId")), message_id)
            )
        else:
            keys.append(resolver.resolve(claims_of(message, by_email), message_id))
    return resolver, [resolver.find(key) for key in keys]


def profiles(resolver: Resolver, stored: dict[int, list[str]] | None = None) -> set[frozenset[str]]:
    """Every profile as the set of its identifiers ("kind:value"): the stored ones and those the batch claimed."""
    found: dict[int, set[str]] = {}
    for profile, identifiers in (stored or {}).items():
        found.setdefault(resolver.find(profile), set()).update(identifiers)
    for (kind, value), key in resolver.new_claims.items():
        found.setdefault(resolver.find(key), set()).add(f"{kind}:{value}")
    return {frozenset(identifiers) for identifiers in found.values()}


def identify(user_id: str | None = None, anonymous_id: str | None = None, **traits: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "identify", "traits": traits}
    if user_id is not None:
        message["userId"] = user_id
    if anonymous_id is not None:
        message["anonymousId"] = anonymous_id
    return message


def track(user_id: str | None = None, anonymous_id: str | None = None, email: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "track", "event": "Viewed"}
    if user_id is not None:
        message["userId"] = user_id
    if anonymous_id is not None:
        message["anonymousId"] = anonymous_id
    if email is not None:
        message["context"] = {"traits": {"email": email}}
    return message


def alias(previous: str, user_id: str) -> dict[str, Any]:
    return {"type": "alias", "previousId": previous, "userId": user_id}


@dataclass
class Case:
    name: str
    messages: list[dict[str, Any]]
    profiles: list[set[str]]  # every profile at the end, as its identifiers
    audits: list[str] = field(default_factory=list)  # the actions audited in memory, in order
    by_email: bool = True


CASES = [
    Case(
        "an anonymous visitor who signs up is one profile",
        [track(anonymous_id="a1"), identify("u1", "a1")],
        [{"anonymous_id:a1", "user_id:u1"}],
    ),
    Case(
        "messages of one userId are one profile",
        [track("u1"), identify("u1", plan="pro"), track("u1")],
        [{"user_id:u1"}],
    ),
    Case(
        "an anonymousId equal to the userId is one profile",
        [identify("x", "x")],
        [{"user_id:x", "anonymous_id:x"}],
    ),
    Case(
        "two anonymous visits joined by one userId merge",
        [track(anonymous_id="a1"), track(anonymous_id="a2"), identify("u1", "a1"), identify("u1", "a2")],
        [{"anonymous_id:a1", "anonymous_id:a2", "user_id:u1"}],
        ["merge"],
    ),
    Case(
        "two userIds on one anonymousId never merge: a conflict, and the second userId gets a profile of its own",
        [identify("u1", "a1"), identify("u2", "a1")],
        [{"user_id:u1", "anonymous_id:a1"}, {"user_id:u2"}],
        ["conflict"],
    ),
    Case(
        "an anonymous visit with the email of a known user joins that user (emails compared normalised)",
        [identify("u1", email="Ada@Example.com"), track(anonymous_id="a1", email="ada@example.com")],
        [{"user_id:u1", "email:ada@example.com", "anonymous_id:a1"}],
    ),
    Case(
        "without identify_by_email an email links nothing",
        [identify("u1", email="ada@example.com"), track(anonymous_id="a1", email="ada@example.com")],
        [{"user_id:u1"}, {"anonymous_id:a1"}],
        by_email=False,
    ),
    Case(
        "one email on two userIds never merges them: a conflict",
        [identify("u1", email="ada@example.com"), identify("u2", email="ada@example.com")],
        [{"user_id:u1", "email:ada@example.com"}, {"user_id:u2"}],
        ["conflict"],
    ),
    Case(
        "an email that is no address claims nothing",
        [identify("u1", email="not an address"), identify("u2", email="not an address")],
        [{"user_id:u1"}, {"user_id:u2"}],
    ),
    Case(
        "a group's traits describe the group: its email claims no profile",
        [
            identify("u1", email="billing@acme.com"),
            {"type": "group", "userId": "u2", "groupId": "acme", "traits": {"email": "billing@acme.com"}},
        ],
        [{"user_id:u1", "email:billing@acme.com"}, {"user_id:u2"}],
    ),
    Case(
        "alias from an anonymousId to a new userId: one profile, which previousId names from then on",
        [track(anonymous_id="a1"), alias("a1", "u1")],
        [{"anonymous_id:a1", "user_id:u1", "previous_user_id:a1"}],
    ),
    Case(
        "alias from a userId to one nobody holds renames the profile, which keeps the old one as previous_user_id",
        [identify("u1"), alias("u1", "u2")],
        [{"previous_user_id:u1", "user_id:u2", "anonymous_id:u1"}],
        ["rename"],
    ),
    Case(
        "after a rename the old userId still finds the profile",
        [identify("u1"), alias("u1", "u2"), track("u1")],
        [{"previous_user_id:u1", "user_id:u2", "anonymous_id:u1"}],
        ["rename"],
    ),
    Case(
        "alias between two userIds that two profiles hold merges nothing: a conflict",
        [identify("u1"), identify("u2"), alias("u1", "u2")],
        [{"user_id:u1"}, {"user_id:u2", "anonymous_id:u1"}],
        ["conflict"],
    ),
    Case(
        "an email joining two anonymous profiles merges them",
        [
            track(anonymous_id="a1", email="ada@example.com"),
            track(anonymous_id="a2"),
            identify(None, "a2", email="ada@example.com"),
        ],
        [{"anonymous_id:a1", "anonymous_id:a2", "email:ada@example.com"}],
        ["merge"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_case_ends_in_the_profiles_written_by_hand(case):
    resolver, _ = resolve_all(case.messages, by_email=case.by_email)
    assert profiles(resolver) == {frozenset(profile) for profile in case.profiles}
    assert [entry["action"] for entry in resolver.audits] == case.audits
    assert resolver.operations == []  # nothing was stored: every merge and rename is done in memory


def test_a_conflict_audits_both_user_ids_and_the_profile_left_apart():
    resolver, keys = resolve_all([identify("u1", "a1"), identify("u2", "a1")])
    first, second = keys
    assert first != second
    [conflict] = resolver.audits
    assert conflict["kept_user_id"] == second and conflict["message_id"] == "m2"
    assert conflict["details"] == {"reason": "different user_ids", "user_ids": ["u1", "u2"], "profiles": [first]}


def test_a_merge_in_memory_names_the_identifiers_the_survivor_took():
    resolver, keys = resolve_all(
        [track(anonymous_id="a1"), track(anonymous_id="a2"), identify("u1", "a1"), identify("u1", "a2")]
    )
    [merge] = resolver.audits
    assert merge["action"] == "merge" and merge["merged_user_id"] is None and merge["message_id"] == "m4"
    assert merge["details"] == {"identifiers": ["anonymous_id:a2"]}
    assert merge["kept_user_id"] == keys[0] == keys[3]  # the first profile (a1's) survives


def test_profiles_the_batch_creates_get_keys_from_new_in_order_of_creation():
    resolver, keys = resolve_all([track(anonymous_id="a1"), track("u1"), track(anonymous_id="a1")])
    assert keys == [NEW, NEW + 1, NEW]
    assert resolver.created == 2
    assert resolver.held == {NEW + 1: "u1"}


# -- stored profiles ------------------------------------------------------------------------------------------------


def test_a_message_linking_two_stored_profiles_merges_them_as_a_statement_the_one_holding_the_user_id_surviving():
    stored = {1: ["anonymous_id:a1"], 2: ["user_id:u1"]}
    resolver, keys = resolve_all([identify("u1", "a1")], stored)
    assert keys == [2]
    assert resolver.operations == [StoredMerge(survivor=2, merged=1, message_id="m1")]
    assert resolver.audits == []  # merge_users audits the merges it runs
    assert profiles(resolver, stored) == {frozenset({"anonymous_id:a1", "user_id:u1"})}


def test_without_a_user_id_the_lower_stored_id_survives():
    stored = {7: ["anonymous_id:a1"], 3: ["email:ada@example.com"]}
    resolver, keys = resolve_all([track(anonymous_id="a1", email="ada@example.com")], stored)
    assert keys == [3]
    assert resolver.operations == [StoredMerge(survivor=3, merged=7, message_id="m1")]


def test_a_profile_the_batch_created_merges_into_a_stored_one_in_memory():
    stored = {5: ["anonymous_id:a1"]}
    messages = [track(anonymous_id="a2", email="ada@example.com"), track(anonymous_id="a1", email="ada@example.com")]
    resolver, keys = resolve_all(messages, stored)
    assert keys == [5, 5]  # the new profile folded into the stored one, which survives
    assert resolver.operations == []
    assert [entry["action"] for entry in resolver.audits] == ["merge"]
    assert resolver.audits[0]["kept_user_id"] == 5
    assert profiles(resolver, stored) == {frozenset({"anonymous_id:a1", "anonymous_id:a2", "email:ada@example.com"})}


def test_a_stored_profile_is_found_by_its_previous_user_id():
    stored = {3: ["user_id:u2", "previous_user_id:u1"]}
    resolver, keys = resolve_all([track("u1")], stored)
    assert keys == [3]
    assert resolver.new_claims == {} and resolver.operations == [] and resolver.audits == []


def test_alias_renaming_a_stored_user_id_runs_as_a_statement():
    stored = {4: ["user_id:u1"]}
    resolver, keys = resolve_all([alias("u1", "u9"), track("u9")], stored)
    assert keys == [4, 4]
    assert resolver.operations == [StoredRename(holder=4, previous="u1", new="u9", message_id="m1")]
    assert resolver.held == {4: "u9"}
    assert resolver.new_claims == {("anonymous_id", "u1"): 4}


def test_two_stored_profiles_holding_different_user_ids_are_never_merged():
    stored = {1: ["user_id:u1", "anonymous_id:a1"], 2: ["user_id:u2"]}
    resolver, keys = resolve_all([identify("u2", "a1")], stored)
    assert keys == [2]
    assert resolver.operations == []
    assert [entry["action"] for entry in resolver.audits] == ["conflict"]


# -- properties -----------------------------------------------------------------------------------------------------

USER_IDS = ["u1", "u2", "u3"]
ANONYMOUS_IDS = ["a1", "a2", "a3"]
EMAILS = ["ada@example.com", "bob@example.com"]


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """A message over a few shared identities, so that streams link, merge, conflict and rename."""
    kind = draw(st.sampled_from(["identify", "track", "alias"]))
    if kind == "alias":
        return alias(draw(st.sampled_from(USER_IDS + ANONYMOUS_IDS)), draw(st.sampled_from(USER_IDS)))
    user_id = draw(st.none() | st.sampled_from(USER_IDS))
    anonymous_id = draw(
        st.sampled_from(ANONYMOUS_IDS) if user_id is None else st.none() | st.sampled_from(ANONYMOUS_IDS)
    )
    email = draw(st.none() | st.sampled_from(EMAILS))
    if kind == "identify":
        return identify(user_id, anonymous_id, **({"email": email} if email else {}))
    return track(user_id, anonymous_id, email)


@settings(max_examples=200, deadline=None)
@given(st.lists(messages(), min_size=1, max_size=12))
def test_no_profile_ever_holds_two_user_ids_and_every_identifier_finds_one_profile(stream):
    resolver, _ = resolve_all(stream)
    seen: set[str] = set()
    for profile in profiles(resolver):
        assert len([identifier for identifier in profile if identifier.startswith("user_id:")]) <= 1, profile
        assert not seen & profile, profile  # an identifier in two profiles
        seen |= profile
    # the user_id each profile holds is the one among its identifiers
    for key, user_id in resolver.held.items():
        if resolver.find(key) == key:
            assert (
                resolver.owner[("user_id", user_id)] is not None
                and resolver.find(resolver.owner[("user_id", user_id)]) == key
            )


@settings(max_examples=200, deadline=None)
@given(st.lists(messages(), min_size=1, max_size=12))
def test_every_message_ends_in_the_profile_its_user_id_names(stream):
    resolver, keys = resolve_all(stream)
    for message, key in zip(stream, keys, strict=True):
        if message["type"] != "alias" and "userId" in message:
            assert resolver.find(resolver.owner[("user_id", message["userId"])]) == resolver.find(key), message
