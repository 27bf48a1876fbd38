"""Web: the app factory, admin API, dashboard, health and metrics."""
