"""Mutation check: every test marked ``detections`` must fail when detectors find nothing.

Runs ``pytest -m detections`` with HEARTHWATCH_MUTATE_EMPTY_DETECTIONS=1, under which
tests/conftest.py makes every detector source (in the test process and in the servers it
starts) answer each image with no detections. Exits non-zero, naming them, if any marked test
passed or stopped in its set-up rather than in its assertions, or if none ran."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTCOMES = (("failure", "failed"), ("error", "error"), ("skipped", "skipped"))


def outcomes(junit_xml: Path) -> dict[str, str]:
    """Each test case's outcome in a JUnit XML report: passed, failed, error or skipped."""
    found: dict[str, str] = {}
    for case in ElementTree.parse(junit_xml).iter("testcase"):
        tags = {child.tag for child in case}
        outcome = next((o for tag, o in OUTCOMES if tag in tags), "passed")
        found[f"{case.get('classname')}::{case.get('name')}"] = outcome
    return found


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "mutant.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "detections and not gpu",
            "-p",
            "no:cacheprovider",
            "-q",
            "--no-header",
            "--tb=line",
            f"--junitxml={report}",
        ]
        env = {**os.environ, "HEARTHWATCH_MUTATE_EMPTY_DETECTIONS": "1"}
        started = time.monotonic()
        run = subprocess.run(command, cwd=ROOT, env=env, check=False)
        elapsed = time.monotonic() - started
        found = outcomes(report) if report.is_file() else {}
    if run.returncode not in (0, 1) or not found:
        print(f"mutation check: pytest exited {run.returncode} after {len(found)} tests")
        return 1
    survivors = sorted(name for name, outcome in found.items() if outcome != "failed")
    if survivors:
        print("mutation check: these `detections` tests did not fail with no detections:")
        for name in survivors:
            print(f"  {found[name]:8} {name}")
        return 1
    print(f"mutation check: all {len(found)} `detections` tests failed, in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
