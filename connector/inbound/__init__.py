"""Inbound: the HTTP endpoints Segment, its libraries and websites' analytics.js call, up to the durable journal append."""
