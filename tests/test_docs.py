"""The README starts with its two commands, and every relative link of the README and of
docs/*.md reaches a file, and a heading where it names one."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def code_blocks(text: str) -> list[str]:
    return [block.partition("\n")[2].removesuffix("```") for block in FENCE.findall(text)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        if heading := re.match(r"#{1,6} (.+)", line):
            name = slug(heading[1])
            number, unique = 0, name
            while unique in found:  # GitHub numbers a repeated heading: name-1, name-2
                number += 1
                unique = f"{name}-{number}"
            found.add(unique)
    return found


def links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def test_the_readme_opens_with_the_two_commands_in_their_own_blocks():
    blocks = code_blocks(README.read_text(encoding="utf-8"))
    assert blocks[:2] == ["scripts/run-collector\n", "scripts/test\n"]


def test_every_relative_link_of_the_readme_and_docs_reaches_a_file_and_heading():
    broken = []
    for page in PAGES:
        for target in links(page):
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert PAGES[1:] and not broken, broken


def test_the_readme_links_every_page_of_docs():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links(README)}
    assert set(PAGES[1:]) <= linked


def test_the_readme_install_line_is_one_of_the_owners_guide():
    owners = (ROOT / "docs" / "owners.md").read_text(encoding="utf-8")
    guide = owners.partition("\n## Installing a worker\n")[2].partition("```sh\n")[2]
    guide_lines = guide.partition("```")[0].splitlines()
    tour = README.read_text(encoding="utf-8").partition("installs the agent in one line\n")[2]
    line = tour.partition("```sh\n")[2].partition("```")[0].strip()
    assert line in guide_lines


def test_the_docker_group_is_called_root_equivalent_where_owners_read():
    for page in (README, ROOT / "docs" / "owners.md"):
        text = " ".join(page.read_text(encoding="utf-8").split())
        assert "`docker` group, which is root-equivalent" in text, page.name
        assert "never needs root" not in text, page.name
