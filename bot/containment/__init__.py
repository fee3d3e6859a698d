"""Containment: what the agent and the repository's commands run is confined by the OS (bubblewrap)."""
