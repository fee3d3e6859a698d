"""The proposal is the tree validate checked and the review read (orchestrators/implement.py
`commit_proposal`), with the recording fakes: a worktree changed after validate is not proposed, and the
run goes back to validate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrators import agents, implement
from orchestrators.engine import PhaseContext
from tests.support.tables import ISSUE, Table, labelled, seed_gitlab, table

FIXED = "def add(a, b):\n    return a + b\n"


async def validated_run(t: Table) -> tuple[Any, Path, dict[str, Any]]:
    """A run assembled, its worktree changed by 'the agent', and validated."""
    t.fakes.jira.add_issue(ISSUE, "Make add in calc.py return the sum", "add(a, b) ignores b.")
    seed_gitlab(t)
    run = await t.run(await labelled(t))
    assembled = await implement.assemble(PhaseContext(t.wctx, run, {}, 1))
    worktree = Path(assembled.output["worktree"])
    (worktree / "calc.py").write_text(FIXED)
    outputs: dict[str, Any] = {"assemble": dict(assembled.output)}
    checked = await implement.validate(PhaseContext(t.wctx, run, outputs, 1))
    assert checked.output["tree"] and checked.output["changed"] == ["calc.py"]
    outputs["validate"] = dict(checked.output)
    return run, worktree, outputs


async def test_the_commit_is_the_tree_validate_checked(tmp_path: Path) -> None:
    async with table(tmp_path) as t:
        run, worktree, outputs = await validated_run(t)

        sha = await implement.commit_proposal(PhaseContext(t.wctx, run, outputs, 1), worktree, "the change")

        workspace = t.wctx.need_clients().workspace
        assert await workspace.tree_of(worktree, sha) == outputs["validate"]["tree"]
        await agents.discard(t.wctx, run.id)  # the implementer's CLI assemble prestarted (none runs here)


@pytest.mark.parametrize("after", ["edited", "added"])
async def test_a_worktree_changed_after_validate_is_not_proposed(tmp_path: Path, after: str) -> None:
    async with table(tmp_path) as t:
        run, worktree, outputs = await validated_run(t)
        if after == "edited":
            (worktree / "calc.py").write_text(FIXED + "# written after validate\n")
        else:
            (worktree / "later.py").write_text("x = 1\n")
        ctx = PhaseContext(t.wctx, run, outputs, 1)

        with pytest.raises(implement.ChangedSinceValidate, match="changed after validate"):
            await implement.commit_proposal(ctx, worktree, "the change")
        result = await implement.propose(ctx)  # the commit is made; it is not what validate checked

        assert result.goto == "validate" and result.stop is None
        assert "changed after validate" in result.output["changed_since_validate"]
        assert not [
            c for c in t.fakes.jira.comments.get(ISSUE, []) if "/approve" in c.body
        ]  # nothing proposed
        await agents.discard(t.wctx, run.id)
