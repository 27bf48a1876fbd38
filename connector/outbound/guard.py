"""The outbound half of loop protection: mark every message as ours, and hash what we send.

The marks make Segment skip delivering the message back to us (`integrations`) and let
the inbound side drop it if it comes back anyway (`context.integration`). The hash
stops an identify or group whose content was already delivered: an echo of our own
data changes nothing, so it sends nothing, which ends any loop.
"""

import hashlib
from typing import Any

import orjson

from connector import __version__
from connector.core.settings import ConnectorSettings


def stamp(message: dict[str, Any], settings: ConnectorSettings) -> dict[str, Any]:
    """The marks, on a message about to be sent. A forwarded event keeps the `integrations` it was received with
    (`events.integrations`), with our loop flag added, which wins over the sender's value for our own integration
    name. What the connector builds (identify, group, segment events) has none: the loop flag alone."""
    message["integrations"] = {**(message.get("integrations") or {}), settings.integration_name: False}
    message["context"] = {
        **message.get("context", {}),
        "integration": {"name": settings.connector_name, "version": __version__},
    }
    return message


def payload_hash(message: dict[str, Any]) -> str:
    """The hash of what Segment would store: ids and traits, not the envelope."""
    content = {key: message.get(key) for key in ("type", "userId", "anonymousId", "groupId", "traits")}
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


def write_key_hash(write_key: str) -> str:
    """What Segment's last answer to a write key is kept under (segment_api_answers): never the key itself."""
    return hashlib.sha256(write_key.encode()).hexdigest()
