"""CI cannot skip the browser stories (the accessibility checks among them): without Chromium they are skipped
on a developer's machine, and fail in CI (`CI` set, as .ci/run exports it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.web import browser

REPOSITORY = Path(__file__).resolve().parents[2]


def test_without_chromium_the_browser_tests_skip_outside_ci_only(tmp_path: Path) -> None:
    missing = str(tmp_path / "chromium")
    assert browser.skips_without_chromium({}, missing)
    assert browser.skips_without_chromium({"CI": ""}, missing)
    assert browser.skips_without_chromium({"CI": "false"}, missing)
    assert not browser.skips_without_chromium({"CI": "1"}, missing)
    assert not browser.skips_without_chromium({"CI": "true"}, missing)
    present = tmp_path / "present"
    present.write_text("")
    assert not browser.skips_without_chromium({}, str(present))


def test_in_ci_a_missing_chromium_is_a_failure_that_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", str(tmp_path / "chromium"))
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="chromium is missing"):
        browser.chromium()


def test_the_ci_script_says_it_is_ci() -> None:
    lines = (REPOSITORY / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert "export CI=1" in [line.split("#", 1)[0].strip() for line in lines]
