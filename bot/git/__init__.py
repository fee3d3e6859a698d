"""Git for Baton: safe runner, pure naming, and the per-run workspace (mirror, worktree, commit, push)."""
