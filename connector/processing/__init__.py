"""Processing: consume the journal in order into users, accounts and events."""
