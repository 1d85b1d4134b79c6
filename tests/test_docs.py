"""The README stays short and true: its headline figures are the committed reports', and every link resolves."""

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "docs" / "results" / "README.md"]


def test_the_readme_headline_is_what_the_reports_say():
    spec = importlib.util.spec_from_file_location("headline", ROOT / "docs" / "headline.py")
    headline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(headline)
    readme = (ROOT / "README.md").read_text()
    shown = readme.split("<!-- headline:start -->\n")[1].split("\n<!-- headline:end -->")[0]
    assert shown == headline.headline(), "run `python docs/headline.py` and put its output in the README"
    assert len(readme.encode()) <= 15_000, "the README is the first screen and a tour; the rest goes to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if not re.match(r"[a-z]+://", target):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_the_cluttered_pipeline_is_one_command_that_profiles_first(tmp_path):
    """``make -f docs/results/compare-cluttered/run.mk`` (dry run): the LUT is profiled and calibrated before any
    training, the critical chain (pre-training, search, InstaNAS's re-training) comes before the baselines, and every
    target's wall time is recorded."""
    dry = subprocess.run(["make", "-n", "-f", "docs/results/compare-cluttered/run.mk", f"RUN={tmp_path}"],
                         cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    first = {name: next(i for i, line in enumerate(lines) if name in line)
             for name in ("instanas profile", "instanas calibrate", "--stage pretrain", "--stage search",
                          "--method oneshot")}
    assert first["instanas profile"] < first["instanas calibrate"] < first["--stage pretrain"]
    assert first["--stage search"] < first["--method oneshot"], "the search before the baselines"
    assert "--dataset cluttered-mnist" in dry.stdout and "wall-times.txt" in dry.stdout
