"""Alembic migrations of the projection tables (package data: works when installed)."""
