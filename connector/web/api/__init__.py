"""The admin API under /api (bearer ADMIN_TOKEN): one module per resource, each docstring its OpenAPI entry."""
