"""The connector's settings document: one model, the source of settings.schema.json.

The names are part of the contract (settings.schema.json, which this model generates, and the README).
Each field carries a `section` so the dashboard can group the form; secrets are masked on every read.

What the outbound side sends under which name is decided here too (`sent_name`), so that
validation can refuse two entries sending the same name: an entry of a property list is an
attribute name, sent under Hull's name rule (`trait_name`), or a `Mapping` sent under its `to`.
Lists of plain names alone keep the rule they always had (identical names merged, nothing
refused), so a stored document stays valid.
"""

import functools
import json
from difflib import get_close_matches
from pathlib import Path
from typing import Any, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from connector.core.kinds import Entity

CREDENTIALS = "Credentials"
INCOMING = "Incoming"
OUTGOING_USERS = "Outgoing users"
OUTGOING_EVENTS = "Outgoing events"
OUTGOING_ACCOUNTS = "Outgoing accounts"
DATA_LIFECYCLE = "Data lifecycle"
SECTIONS = [CREDENTIALS, INCOMING, OUTGOING_USERS, OUTGOING_EVENTS, OUTGOING_ACCOUNTS, DATA_LIFECYCLE]

SECRET_FIELDS = ("write_key", "shared_secret")
ALL = "ALL"
MAX_ICP_RULES = 100
MAX_POINTS = 1_000_000
MAX_NAME_LENGTH = 200
COMPUTED_ROOTS = ("usage.", "audiences.", "persona.", "icp.")
RESERVED_TRAITS = ("hull_segments",)  # identify and group carry it: no mapping may send another value under it


@functools.lru_cache(maxsize=4096)  # read for every entry of every message sent: the same few names
def trait_name(attribute: str) -> str:
    """The outbound trait name of an attribute: traits_ stripped, / -> _, account.x -> account_x,
    and computed attributes flattened the same way (usage.top_features -> usage_top_features,
    persona.seniority -> persona_seniority, account.icp.fit -> account_icp_fit). A trait named as the
    segment rules name it is sent as Hull would name it: traits.plan -> plan, traits.address.city ->
    address_city, account.traits.industry -> account_industry."""
    if attribute.startswith("account."):
        return "account_" + trait_name(attribute[len("account.") :])
    if attribute.startswith(COMPUTED_ROOTS):
        return attribute.replace(".", "_").replace("/", "_")
    if attribute.startswith("traits."):
        return attribute[len("traits.") :].replace(".", "_").replace("/", "_")
    return attribute.removeprefix("traits_").replace("/", "_")


class Mapping(BaseModel):
    """Hightouch's field mapping: the attribute `from`, sent under the name `to`."""

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True, title="Mapping")

    source: str = Field(
        alias="from",
        title="Attribute",
        description="What segment rules can read (traits.plan, account.traits.size, created_at, usage.events_30d, "
        "...), or else an attribute name as in the plain entries (email, address/city, audiences.key).",
    )
    to: str = Field(title="Name in Segment", description="The trait or property name Segment receives.")


Property = str | Mapping


def source_of(entry: Property) -> str:
    return entry.source if isinstance(entry, Mapping) else entry


def sent_name(entry: Property) -> str:
    return entry.to if isinstance(entry, Mapping) else trait_name(entry)


def describe(entry: Property) -> str:
    if isinstance(entry, Mapping):
        return orjson.dumps(entry.model_dump()).decode()
    return repr(entry)


def clean_properties(entries: list[Property], reserved: tuple[str, ...] = ()) -> list[Property]:
    """Stripped entries, identical plain names merged; an empty or duplicate sent name of a mapping refused,
    naming the entry (by its position as a person counts, from 1, and its content)."""
    cleaned: list[Property] = []
    for entry in entries:
        if isinstance(entry, Mapping):
            entry = Mapping.model_validate({"from": entry.source.strip(), "to": entry.to.strip()})
        else:
            entry = entry.strip()
        if entry not in cleaned:
            cleaned.append(entry)
    senders: dict[str, int] = {}
    for position, entry in enumerate(cleaned, start=1):
        named = f"entry {position} {describe(entry)}"
        if not source_of(entry):
            raise ValueError(f"{named}: the attribute must not be empty")
        if len(source_of(entry)) > MAX_NAME_LENGTH or len(sent_name(entry)) > MAX_NAME_LENGTH:
            raise ValueError(f"{named}: names must be at most {MAX_NAME_LENGTH} characters")
        if isinstance(entry, Mapping):
            if not entry.to:
                raise ValueError(f"{named}: the name in Segment (to) must not be empty")
            if entry.to in reserved:
                raise ValueError(f"{named}: {entry.to!r} is sent by the connector itself; choose another name")
            if (earlier := senders.get(entry.to)) is not None:
                raise ValueError(
                    f"{named}: {entry.to!r} is already sent by entry {earlier} {describe(cleaned[earlier - 1])}"
                )
        elif (earlier := senders.get(sent_name(entry))) is not None and isinstance(cleaned[earlier - 1], Mapping):
            raise ValueError(
                f"{named}: {sent_name(entry)!r} is already sent by entry {earlier} {describe(cleaned[earlier - 1])}"
            )
        senders.setdefault(sent_name(entry), position)
    return cleaned


class SegmentEvents(BaseModel):
    """Hightouch's generic track: events named by the user when a profile enters the segment, changes a mapped
    property while a member, or leaves it."""

    model_config = ConfigDict(extra="forbid", title="Segment events")

    segment: str = Field(title="Segment", description="The segment's name (a user or an account segment).")
    added: str | None = Field(None, title="Added event", description="Sent when a profile enters the segment.")
    changed: str | None = Field(
        None, title="Changed event", description="Sent when a mapped property of a member changes."
    )
    removed: str | None = Field(None, title="Removed event", description="Sent when a profile leaves the segment.")
    properties: list[Property] = Field(
        [], title="Properties", description="The event's properties: attribute names or mappings."
    )
    timestamp: str | None = Field(
        None,
        title="Timestamp attribute",
        description="The attribute whose date the event carries (for backfills); without it, the time of the change.",
    )

    @field_validator("segment")
    @classmethod
    def _clean_segment(cls, name: str) -> str:
        name = name.strip()
        if not name or len(name) > MAX_NAME_LENGTH:
            raise ValueError(f"the segment name must have 1 to {MAX_NAME_LENGTH} characters")
        return name

    @field_validator("added", "changed", "removed", "timestamp")
    @classmethod
    def _clean_name(cls, name: str | None) -> str | None:
        if name is None:
            return None
        name = name.strip()
        if not name or len(name) > MAX_NAME_LENGTH:
            raise ValueError(f"must be left empty or have 1 to {MAX_NAME_LENGTH} characters")
        return name

    @field_validator("properties")
    @classmethod
    def _clean_properties(cls, entries: list[Property]) -> list[Property]:
        return clean_properties(entries)

    def events(self) -> dict[str, str]:
        """transition (added, changed, removed) -> the event name sent for it."""
        named = {"added": self.added, "changed": self.changed, "removed": self.removed}
        return {transition: name for transition, name in named.items() if name}


def _field(default: Any, section: str, title: str, description: str, secret: bool = False, **kw: Any) -> Any:
    extra: dict[str, Any] = {"section": section}
    if secret:
        extra["secret"] = True
        extra["writeOnly"] = True
    return Field(default, title=title, description=description, json_schema_extra=extra, **kw)


class IcpRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: dict[str, Any] = Field(
        title="Rule", description="A segment rule over the account (the rule language of account segments)."
    )
    points: int = Field(
        title="Points",
        description="Added to the score of an account that matches the rule (negative points take away).",
        ge=-MAX_POINTS,
        le=MAX_POINTS,
    )


class IcpSettings(BaseModel):
    """The ideal customer profile: icp.score is the sum of the points of the rules an account matches."""

    model_config = ConfigDict(extra="forbid")

    rules: list[IcpRule] = Field(title="Rules", max_length=MAX_ICP_RULES)
    good_at: int = Field(
        title="Good from", description="icp.fit is `good` from this score up.", ge=-MAX_POINTS, le=MAX_POINTS
    )
    medium_at: int = Field(
        title="Medium from",
        description="icp.fit is `medium` from this score up (below good_at), `poor` below it.",
        ge=-MAX_POINTS,
        le=MAX_POINTS,
    )

    @field_validator("medium_at")
    @classmethod
    def _below_good(cls, medium_at: int, info: ValidationInfo) -> int:
        good_at = info.data.get("good_at")
        if good_at is not None and medium_at > good_at:
            raise ValueError(f"must not be above the good score ({good_at})")
        return medium_at


class ConnectorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Segment connector settings")

    # Credentials
    write_key: str | None = _field(
        None,
        CREDENTIALS,
        "Segment write key",
        "Write key of the Segment source this connector sends identify, group and track calls to.",
        secret=True,
        max_length=256,
    )
    segment_api_host: str = _field(
        "https://api.segment.io",
        CREDENTIALS,
        "Segment API host",
        "Base URL of the Segment tracking API (use https://events.eu1.segmentapis.com for the EU).",
        pattern=r"^https?://[^\s/]+(:\d+)?(/[^\s]*)?$",
        max_length=512,
    )
    shared_secret: str | None = _field(
        None,
        CREDENTIALS,
        "Shared secret",
        "When set, POST /segment requires X-Signature: hex HMAC-SHA1 of the raw body with this secret.",
        secret=True,
        max_length=256,
    )
    connector_name: str = _field(
        "hull-segment-connector",
        CREDENTIALS,
        "Connector name",
        "Sent as context.integration.name on every outbound call; inbound calls carrying it are dropped "
        "as our own echo.",
        min_length=1,
        max_length=200,
    )
    integration_name: str = _field(
        "Webhooks",
        CREDENTIALS,
        "Destination integration name",
        "Name of the Segment destination that delivers to this connector; every outbound call sets "
        "integrations[<name>] = false so Segment does not send it back.",
        min_length=1,
        max_length=200,
    )

    # Incoming
    handle_pages: bool = _field(True, INCOMING, "Store page calls", "Store page calls as `page` events.")
    handle_screens: bool = _field(True, INCOMING, "Store screen calls", "Store screen calls as `screen` events.")
    handle_accounts: bool = _field(
        False, INCOMING, "Handle group calls", "Create accounts from group calls and link their users."
    )
    identify_by_email: bool = _field(
        False,
        INCOMING,
        "Identify by email",
        "Use the person's email (traits.email, or context.traits.email) as an identity claim to find profiles. "
        "A group call's traits describe the group: its traits.email is never a claim.",
    )
    link_accounts_by_domain: bool = _field(
        False,
        INCOMING,
        "Link accounts by email domain",
        "Create or update the account of a user's company email domain (free and disposable mail "
        "providers excluded) unless a group call linked the user explicitly.",
    )
    write_key_rate_limit: int = _field(
        0,
        INCOMING,
        "Requests a second per browser write key",
        "Past this many requests in a second, a browser write key's calls to /v1 are answered 429 with "
        "Retry-After (counted per web process). 0 sets no limit. The API key is never limited.",
        ge=0,
        le=100_000,
    )

    icp: IcpSettings | None = _field(
        None,
        INCOMING,
        "Ideal customer profile",
        'Scores every account: {"rules": [{"rule": <account segment rule>, "points": <integer>}], "good_at": '
        '<points>, "medium_at": <points>}. icp.score is the sum of the points of the rules an account matches; '
        "icp.fit is good, medium or poor. Unset: accounts have no score.",
    )

    # Outgoing users
    synchronized_segments: list[str] = _field(
        [],
        OUTGOING_USERS,
        "User segments to send",
        "Users in any of these segments are sent as identify calls. `ALL` sends every user.",
    )
    synchronized_properties: list[Property] = _field(
        ["email"],
        OUTGOING_USERS,
        "User attributes to send",
        "Attributes sent as identify traits (traits.plan and traits_plan are sent as plan, / becomes _, "
        "account.traits.x and account.x become account_x), "
        'or mappings {"from": attribute, "to": trait name} sending an attribute under a name of your choosing.',
    )
    segment_membership_traits: bool = _field(
        False,
        OUTGOING_USERS,
        "Segment membership traits",
        "Also send one boolean trait per segment (snake_case name): true on entry, false once the user left it, "
        "or it was renamed or deleted.",
    )
    entered_exited_events: bool = _field(
        False,
        OUTGOING_USERS,
        "Segment Entered / Exited events",
        "Send `Segment Entered` and `Segment Exited` track events on membership changes.",
    )
    send_initial_results: bool = _field(
        False,
        OUTGOING_USERS,
        "Events for initial members",
        "Send Segment Entered events (and the added events of segment_events) for the members a new segment "
        "starts with.",
    )
    segment_events: list[SegmentEvents] = _field(
        [],
        OUTGOING_USERS,
        "Segment events",
        'Per segment, track events named by you: {"segment", "added", "changed", "removed", "properties", '
        '"timestamp"}. Sent to the members of the segment (for an account segment, to each user of the account) '
        "whatever the synchronized segments.",
    )

    # Outgoing events
    send_events: list[str] = _field(
        [],
        OUTGOING_EVENTS,
        "Events to send",
        "Event names sent as track/page/screen calls, whether Segment delivered them to /segment or a library "
        "posted them to /v1/*. `ALL` sends every event.",
    )
    forward_events: bool = _field(
        False,
        OUTGOING_EVENTS,
        "Forward events received from Segment",
        "Also send events that Segment delivered to /segment (off keeps Segment's own events from going back "
        "to it). Events posted straight to /v1/* never went through Segment and are sent whenever send_events "
        "names them.",
    )

    # Outgoing accounts
    synchronized_account_segments: list[str] = _field(
        [],
        OUTGOING_ACCOUNTS,
        "Account segments to send",
        "Accounts in these segments are sent as group calls. `ALL` sends every account.",
    )
    synchronized_account_properties: list[Property] = _field(
        ["domain"],
        OUTGOING_ACCOUNTS,
        "Account attributes to send",
        'Attributes sent as group traits, or mappings {"from": attribute, "to": trait name}.',
    )

    # Data lifecycle
    journal_retention_days: int = _field(
        7,
        DATA_LIFECYCLE,
        "Keep processed journal messages (days)",
        "Processed inbound messages are deleted this many days after they arrived. Pending ones are kept "
        "until processed, failed ones until retried or removed by hand.",
        ge=1,
        le=3650,
    )
    event_retention_days: int = _field(
        0,
        DATA_LIFECYCLE,
        "Keep events (days)",
        "Events received more than this many days ago are deleted (usage figures already counted stay). "
        "0 keeps them forever.",
        ge=0,
        le=36500,
    )
    activity_retention_days: int = _field(
        30,
        DATA_LIFECYCLE,
        "Keep the activity log (days)",
        "Activity log entries of users and accounts are deleted after this many days.",
        ge=1,
        le=3650,
    )
    dead_letter_retention_days: int = _field(
        30,
        DATA_LIFECYCLE,
        "Keep dead letters (days)",
        "Dead letters are deleted after this many days, replayed or not.",
        ge=1,
        le=3650,
    )

    @field_validator("synchronized_segments", "send_events", "synchronized_account_segments")
    @classmethod
    def _clean_names(cls, names: list[str]) -> list[str]:
        cleaned = [name.strip() for name in names]
        for name in cleaned:
            if not name:
                raise ValueError("names must not be empty")
            if len(name) > MAX_NAME_LENGTH:
                raise ValueError(f"names must be at most {MAX_NAME_LENGTH} characters")
        return list(dict.fromkeys(cleaned))

    @field_validator("synchronized_properties", "synchronized_account_properties")
    @classmethod
    def _clean_properties(cls, entries: list[Property]) -> list[Property]:
        return clean_properties(entries, RESERVED_TRAITS)

    @field_validator("segment_events")
    @classmethod
    def _one_entry_per_segment(cls, entries: list[SegmentEvents]) -> list[SegmentEvents]:
        seen: dict[str, int] = {}
        for position, entry in enumerate(entries, start=1):
            if not entry.events():
                raise ValueError(
                    f"entry {position} (segment {entry.segment!r}) names no event: set added, changed or removed"
                )
            if (earlier := seen.setdefault(entry.segment, position)) != position:
                raise ValueError(f"entry {position}: segment {entry.segment!r} already has entry {earlier}")
        return entries

    def masked(self) -> dict[str, Any]:
        """The document as every GET returns it: secrets shown by their last 4 characters only."""
        document = self.model_dump()
        for name in SECRET_FIELDS:
            document[name] = mask_secret(document[name])
        return document


def mask_secret(secret: str | None) -> str | None:
    if not secret:
        return secret
    if len(secret) <= 8:
        return "•" * len(secret)
    return "•" * 8 + secret[-4:]


def settings_json_schema() -> dict[str, Any]:
    schema = ConnectorSettings.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["x-sections"] = SECTIONS
    return schema


def render_settings_schema() -> str:
    return json.dumps(settings_json_schema(), indent=2, sort_keys=False) + "\n"


def write_settings_schema(path: Path) -> None:
    path.write_text(render_settings_schema())


# --- problems in words ----------------------------------------------------------------------------------

UNION_TAGS = ("str", "Mapping")  # how pydantic names the alternatives of Property in an error's location
# What a value must be, said of the fields whose type alone does not say it.
MEANINGS = {
    "segment_api_host": "a URL such as https://api.segment.io",
    "synchronized_segments": "a list of segment names",
    "synchronized_account_segments": "a list of segment names",
    "send_events": "a list of event names",
    "synchronized_properties": "a list of attribute names or mappings",
    "synchronized_account_properties": "a list of attribute names or mappings",
    "properties": "a list of attribute names or mappings",
    "segment_events": "a list of entries, each naming a segment and its events",
    "rules": "a list of rules, each with its points",
}
ENTRY = 'an attribute name or a mapping {"from": attribute, "to": name}'


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, itself or inside a list or an optional (None for plain values)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        if (model := _model_in(argument)) is not None:
            return model
    return None


def _keys(model: type[BaseModel]) -> dict[str, Any]:
    return {info.alias or name: info for name, info in model.model_fields.items()}


def place(loc: tuple[str | int, ...]) -> tuple[str, str, type[BaseModel] | None]:
    """Where a problem is: the input's path (segment_events.0.added), its label by the fields' titles with entries
    counted from 1 (Segment events, entry 1, Added event), and the model found there (None for a plain value).
    Union tags leave no trace; a key no model has (an extra one) is named as written, and ends the walk."""
    model: type[BaseModel] | None = ConnectorSettings
    path: list[str] = []
    labels: list[str] = []
    for part in loc:
        if isinstance(part, int):
            path.append(str(part))
            labels.append(f"entry {part + 1}")
        elif part in UNION_TAGS:
            model = Mapping if part == "Mapping" else None
        elif model is not None and part in (keys := _keys(model)):
            path.append(part)
            labels.append(keys[part].title or part)
            model = _model_in(keys[part].annotation)
        else:
            path.append(part)
            labels.append(part)
            model = None
            break
    return ".".join(path) or "body", ", ".join(labels) or "The settings", model


def explain(loc: tuple[str | int, ...], kind: str, ctx: dict[str, Any], fallback: str) -> dict[str, str]:
    """One problem of a settings document in words: {"field", "label", "message"} (see `place`). `kind` is
    pydantic's error type (`union_type`: neither alternative of a union fits), `ctx` its context."""
    path, label, model = place(loc)
    named = [part for part in loc if isinstance(part, str) and part not in UNION_TAGS]
    meaning = MEANINGS.get(str(named[-1]) if named else "")
    if kind == "extra_forbidden":
        _, parent, holder = place(loc[:-1])
        keys = ", ".join(_keys(holder or ConnectorSettings))
        message = "is not a setting" if len(loc) == 1 else f"is not a key of {parent} (the keys: {keys})"
    elif kind == "value_error":
        message = str(ctx["error"])
    elif kind == "union_type":
        message = f"must be {ENTRY}"
    elif kind in ("dict_type", "model_type", "model_attributes_type"):
        message = f"must be an object with {', '.join(_keys(model))}" if model else "must be an object"
    else:
        message = _sentence(kind, ctx, meaning) or fallback.replace("Input should be", "must be")
    return {"field": path, "label": label, "message": message}


def at_path(path: str, message: str) -> dict[str, str]:
    """A problem found after pydantic (an ICP rule's, at icp.rules.0.rule.all[1].op) in the same words."""
    _, label, _ = place(tuple(int(part) if part.isdigit() else part for part in path.split(".")))
    return {"field": path, "label": label, "message": message}


def _sentence(kind: str, ctx: dict[str, Any], meaning: str | None) -> str | None:
    simple = {
        "missing": "is required",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "int_type": "must be a whole number",
        "int_parsing": "must be a whole number",
        "int_from_float": "must be a whole number",
        "string_type": "must be text",
        "string_pattern_mismatch": f"must be {meaning}" if meaning else "is not in the expected form",
        "list_type": f"must be {meaning or 'a list'}",
    }
    if kind in simple:
        return simple[kind]
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}"
    if kind == "string_too_short":
        return "must not be empty" if ctx["min_length"] == 1 else f"must have at least {ctx['min_length']} characters"
    if kind == "string_too_long":
        return f"must have at most {ctx['max_length']} characters"
    if kind == "too_long":
        return f"must have at most {ctx['max_length']} entries"
    return None


# --- the segments the settings name -------------------------------------------------------------------------


def unknown_segments(
    before: ConnectorSettings, after: ConnectorSettings, segments: dict[str, str]
) -> list[dict[str, Any]]:
    """The segment names `after` brings in that no segment has, as problems (see `explain`) with `name` and
    `suggestions` (the closest names, by difflib): user segments in synchronized_segments, account segments in
    synchronized_account_segments, either in segment_events. `segments` maps each segment's name to its entity.
    `ALL` is no segment's name and always allowed; a name the settings already held is not questioned again."""
    found: list[dict[str, Any]] = []
    for name, entity in (("synchronized_segments", Entity.USER), ("synchronized_account_segments", Entity.ACCOUNT)):
        held = set(getattr(before, name))
        for segment in getattr(after, name):
            if segment != ALL and segment not in held and segments.get(segment) != entity:
                found.append(_unknown((name,), segment, segments, entity))
    held = {entry.segment for entry in before.segment_events}
    for position, entry in enumerate(after.segment_events):
        if entry.segment not in held and entry.segment not in segments:
            found.append(_unknown(("segment_events", position, "segment"), entry.segment, segments, None))
    return found


def _unknown(loc: tuple[str | int, ...], name: str, segments: dict[str, str], entity: Entity | None) -> dict[str, Any]:
    path, label, _ = place(loc)
    kind = f"{entity} segment" if entity else "segment"
    candidates = {known.lower(): known for known, of in segments.items() if entity is None or of == entity}
    close = [candidates[match] for match in get_close_matches(name.lower(), list(candidates), n=3, cutoff=0.6)]
    if name in segments:  # a segment of the other entity
        message = f"{name!r} is {'an account' if entity == Entity.USER else 'a user'} segment; this list takes {kind}s"
    elif not candidates:
        message = f"no {kind} named {name!r}: there are no {kind}s yet (create one on the Segments page)"
    else:
        message = f"no {kind} named {name!r}"
        names = sorted(candidates.values())
        known = ", ".join(map(repr, names[:5])) + (", ..." if len(names) > 5 else "")
        message += f"; did you mean {' or '.join(map(repr, close))}?" if close else f" (the {kind}s: {known})"
    return {"field": path, "label": label, "message": message, "name": name, "suggestions": close}
