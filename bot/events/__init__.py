"""Typed webhook payloads from GitLab and Jira: only the fields Baton reads, validated strictly."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Id = Annotated[int, Field(ge=0, lt=2**63)]
"""A numeric database id: non-negative and within a signed 64-bit column."""


class EventModel(BaseModel):
    """Base of every payload model: unknown fields are dropped, types are never coerced."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True, populate_by_name=True)
