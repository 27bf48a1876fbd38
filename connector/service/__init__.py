"""Processes and use cases: the worker, the batch, the runtime, retention, heartbeat, migrations."""
