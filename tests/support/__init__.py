"""Shared test support: real Redis and PostgreSQL servers, signed deliveries, process helpers."""
