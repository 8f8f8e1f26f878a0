"""Idempotent loading: every demo resource goes in through a conditional create on its identifier."""

from __future__ import annotations

from typing import Any


def conditional_entry(full_url: str, resource: dict[str, Any], system: str, value: str) -> dict[str, Any]:
    """A transaction entry creating `resource` unless one with this identifier exists (idempotent loads)."""
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {
            "method": "POST",
            "url": resource["resourceType"],
            "ifNoneExist": f"identifier={system}|{value}",
        },
    }
