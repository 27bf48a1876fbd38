"""Inbound: the HTTP endpoints Segment calls, up to the durable journal append."""
