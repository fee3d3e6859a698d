"""Minimal Atlassian Document Format conversion for REST v3 comments (stored as wiki markup, like v2)."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


class AdfError(ValueError):
    """Not an ADF document (`{"type": "doc", "version": 1, "content": [...]}`)."""


def _inline(node: Json) -> str:
    kind = node.get("type")
    if kind == "text":
        return str(node.get("text", ""))
    if kind == "hardBreak":
        return "\n"
    if kind == "mention":
        return f"[~accountid:{node.get('attrs', {}).get('id', '')}]"
    if kind == "emoji":
        return str(node.get("attrs", {}).get("text", ""))
    return "".join(_inline(child) for child in node.get("content", []))


def _block(node: Json) -> str:
    kind = node.get("type")
    text = "".join(_inline(child) for child in node.get("content", []))
    if kind == "codeBlock":
        return "{code}\n" + text + "\n{code}"
    if kind == "heading":
        return f"h{node.get('attrs', {}).get('level', 1)}. {text}"
    if kind in ("bulletList", "orderedList"):
        bullet = "*" if kind == "bulletList" else "#"
        return "\n".join(f"{bullet} {_inline(item)}" for item in node.get("content", []))
    return text


def adf_to_wiki(doc: Any) -> str:
    """ADF → wiki markup (paragraphs, text, hard breaks, mentions, code blocks, headings, lists)."""
    if not isinstance(doc, dict) or doc.get("type") != "doc" or not isinstance(doc.get("content"), list):
        raise AdfError("Comment body is not valid! Expected an Atlassian Document Format document.")
    return "\n\n".join(_block(node) for node in doc["content"] if isinstance(node, dict))


def wiki_to_adf(text: str) -> Json:
    """Wiki markup → ADF: one paragraph per blank-line-separated block, lines joined by hard breaks."""
    content = []
    for block in (b for b in text.split("\n\n") if b):
        inline: list[Json] = []
        for index, line in enumerate(block.split("\n")):
            if index:
                inline.append({"type": "hardBreak"})
            if line:
                inline.append({"type": "text", "text": line})
        content.append({"type": "paragraph", "content": inline})
    return {"type": "doc", "version": 1, "content": content}
