"""What is committed under docs/results is read on other machines: no file names a path of the one it was made on."""

import re
from pathlib import Path

RESULTS = Path(__file__).parents[1] / "docs" / "results"
# a quoted or free-standing absolute POSIX path of a machine (Windows drives too), not a URL or a unit like "ms/child"
ABSOLUTE = re.compile(r"""(?:^|[\s"'(=`])(/(?:work|tmp|root|home|Users|opt|mnt|var|srv)/[^\s"'`)]*|[A-Z]:\\[^\s"']+)""")


def test_committed_reports_carry_no_absolute_paths():
    found = []
    for path in sorted(RESULTS.rglob("*")):
        if path.suffix in {".json", ".csv", ".md", ".mk", ".txt"}:
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                found += [f"{path.relative_to(RESULTS)}:{number}: {match}" for match in ABSOLUTE.findall(line)]
    assert not found, "\n".join(found[:20])
