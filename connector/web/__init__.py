"""Web: the app factory, admin API, dashboard, health and metrics."""

from connector.web import paths  # noqa: F401  (registers the {name:id} path convertor before any route is built)
