"""The foundation: tables, database, environment, settings, the Spec, logs, metrics."""
