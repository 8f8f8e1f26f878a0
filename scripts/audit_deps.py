"""`make audit-deps`: every pinned dependency of requirements.lock against known vulnerabilities (pip-audit).

pip-audit's default service reads PyPI's per-version JSON (`/pypi/<name>/<version>/json`, its
`vulnerabilities`); its other one is OSV (api.osv.dev). When neither answers (an offline machine, or a PyPI
access that serves only the package index), nothing can be audited: this says so plainly and exits 0, so that
an offline build still passes, unless AUDIT_STRICT=1, which makes it fail. A known vulnerability always fails.

Usage: python scripts/audit_deps.py requirements.lock"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

SERVICE = os.environ.get("AUDIT_SERVICE", "pypi")  # or "osv"
STRICT = os.environ.get("AUDIT_STRICT") == "1"


def _not_audited(why: str) -> int:
    print(f"audit-deps: NON AUDITÉ / NOT AUDITED: {why}", file=sys.stderr)
    print(
        "audit-deps: les dépendances n'ont pas été vérifiées / the dependencies were NOT checked for known "
        "vulnerabilities" + (" (AUDIT_STRICT=1: échec / failing)" if STRICT else ""),
        file=sys.stderr,
    )
    return 1 if STRICT else 0


def _probe(lock: Path) -> str | None:
    """One request like pip-audit's first, so that an unreachable service costs seconds, not a full run."""
    if SERVICE != "pypi":
        return None
    pin = next(
        (line.split()[0] for line in lock.read_text().splitlines() if line.startswith("pip==")), "pip==24.0"
    )
    name, version = pin.split("==")
    url = f"https://pypi.org/pypi/{name}/{version}/json"
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            json.load(response)
    except urllib.error.HTTPError as exc:
        return f"PyPI's per-version JSON API answers {exc.code} ({url}): this machine's PyPI access lacks it"
    except (OSError, ValueError) as exc:
        return f"PyPI's vulnerability data cannot be reached ({url}: {exc})"
    return None


def main(lock: Path) -> int:
    unreachable = _probe(lock)
    if unreachable:
        return _not_audited(unreachable)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [str(Path(sys.executable).with_name("pip-audit")), "--requirement", str(lock)]
        command += ["--no-deps", "--disable-pip", "--vulnerability-service", SERVICE]
        command += ["--progress-spinner", "off", "--format", "json", "--output", str(report)]
        done = subprocess.run(command, capture_output=True, text=True)  # noqa: S603 (our venv's pip-audit)
        try:
            dependencies = json.loads(report.read_text())["dependencies"]
        except (OSError, ValueError, KeyError):
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return _not_audited(f"pip-audit could not run: {last[:300]}")
    skipped = [d for d in dependencies if d.get("skip_reason")]
    audited = [d for d in dependencies if not d.get("skip_reason")]
    found = [(d, v) for d in audited for v in d.get("vulns", [])]
    for dep, vuln in found:
        fixed = ", ".join(vuln.get("fix_versions", [])) or "none yet"
        print(f"audit-deps: {dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixed})")
    if found:
        print(f"audit-deps: {len(found)} vulnérabilité(s) connue(s) / known vulnerabilities", file=sys.stderr)
        return 1
    if not audited:
        return _not_audited(f"none of {len(skipped)} dependencies could be looked up ({SERVICE})")
    print(
        f"audit-deps: {len(audited)} dépendance(s) vérifiée(s), aucune vulnérabilité connue / "
        f"{len(audited)} dependencies checked, no known vulnerability"
    )
    if skipped:
        names = ", ".join(sorted(d["name"] for d in skipped))
        print(f"audit-deps: non vérifiées / not checked ({len(skipped)}): {names}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "requirements.lock")))
