"""Typed settings, the skill manifest and the project mapping."""
