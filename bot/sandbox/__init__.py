"""Local stand-ins for GitLab, Jira and the model API, so Baton runs end to end without the internet."""
