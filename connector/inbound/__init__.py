"""Inbound: the HTTP endpoints that Segment, its libraries and websites' analytics.js call, up to the
durable journal append."""
