"""Outbound: the outbox, message builders, loop guard and the sender to Segment."""
