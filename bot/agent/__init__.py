"""The agent layer: Claude Code via claude-agent-sdk, scoped by profiles, a tool policy and a clean env."""
