"""The durable hand-offs between stages: journal, outbox, activity log, changes."""
