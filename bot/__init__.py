"""Baton's service shell: ASGI app, webhook ingress, durable inbox, worker, clients and CLI."""
