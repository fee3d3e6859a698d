"""Adapters for the outside services Baton talks to (GitLab, Jira), with shared retry helpers."""
