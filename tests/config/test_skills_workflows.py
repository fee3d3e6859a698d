"""The manifest checked against the names of the workflow table (config knows no orchestrator)."""

from __future__ import annotations

import pytest

from config.skills import SkillError, default_skills, load_skills

TEAM = (
    "skills:\n"
    "  - {name: help, orchestrator: help, help: list the commands}\n"
    "  - {name: deploy, orchestrator: deploy-preview, help: deploy a preview}\n"
)


def test_a_skill_naming_an_unknown_workflow_is_refused_with_the_known_ones() -> None:
    with pytest.raises(SkillError) as refused:
        load_skills(TEAM).check_workflows({"help", "approve", "mr_pushed"})
    message = str(refused.value)
    assert "the skill 'deploy' names the unknown workflow 'deploy-preview'" in message
    assert message.endswith("known workflows: approve, help")  # a name a skill cannot spell is not offered
    assert "'help'" not in message  # only the bad skill is named


def test_every_bad_skill_is_named_at_once() -> None:
    with pytest.raises(SkillError) as refused:
        load_skills(TEAM).check_workflows({"approve"})
    assert "'help' names the unknown workflow 'help'" in str(refused.value)
    assert "'deploy' names the unknown workflow 'deploy-preview'" in str(refused.value)


def test_a_manifest_of_known_workflows_passes() -> None:
    load_skills(TEAM).check_workflows({"help", "deploy-preview"})
    default_skills().check_workflows({s.orchestrator for s in default_skills().skills})
