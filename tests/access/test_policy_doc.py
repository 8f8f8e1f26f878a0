"""docs/access-policy.md shows the matrix the code applies, never an older copy."""

from __future__ import annotations

from pathlib import Path

from espace_sante.access.matrix import default, markdown_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "access-policy.md"


def test_the_documented_matrix_is_the_shipped_one() -> None:
    text = DOC.read_text("utf-8")
    after_start = text.split("<!-- matrix:start", 1)[1].split("-->", 1)[1]
    between = after_start.split("<!-- matrix:end -->", 1)[0].strip()
    assert between == markdown_table(default())
