"""Every file and section the repository names exists in it; nothing points outside it.

Scanned: every file git tracks, and new ones it does not ignore. What counts as a reference:

- in Markdown: a link (``[text](path)``, ``[text](path#anchor)``; the anchor must be a heading
  of that file) and any path into the repository (``bus/backend.py``, ``hack/cluster/build.sh``);
- in Python: the same paths, in comments and docstrings (code builds its paths its own way);
- in every other file: Markdown file names and paths under ``docs/``;
- anywhere: a section named as in ``README.md, "Layout"``, which must begin a heading of that
  file.

A path counts when its first part is a directory at the root of the repository or in
``src/intent_fleet``; it must exist there, or next to the file that names it. The planning
documents that live outside the repository may not be named at all.
"""

from __future__ import annotations

import ast
import io
import posixpath
import re
import subprocess
import tokenize
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "src/intent_fleet"

#: Documents outside the repository, which a reader of the repository cannot open.
OUTSIDE = re.compile(r"\b(?:DESIGN|STYLE|PROTOCOL)\.md\b|\.\./shared\b")
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S*")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
#: A path with at least one slash. Possessive, so a path that goes on as a glob or a
#: placeholder (``operator/fleet.*``, ``k8s-<version>/``) is no reference at all.
PATH = re.compile(r"(?<![\w./$<{*~-])((?:[\w.-]++/)++[\w.-]*+)(?![\w*<{$/])")
MARKDOWN_FILE = re.compile(r"(?<![\w./$<{*~-])((?:[\w.-]+/)*[\w.-]*\w\.md)(?![\w/])")
SECTION = re.compile(r"((?:[\w.-]+/)*[\w.-]*\w\.md), ((?:\"[^\"\n]+\"(?:,? and |, )?)+)")
QUOTED = re.compile(r"\"([^\"\n]+)\"")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def repository_files(root: Path) -> list[str]:
    """Tracked files, and untracked ones git does not ignore, that exist."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    )
    names = listed.stdout.decode().split("\0")
    return sorted(name for name in names if name and (root / name).is_file())


def _text(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\0" in text else text


def _python_prose(text: str) -> Iterator[tuple[int, str]]:
    """Comments and docstrings of a module, line by line."""
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        first = node.body[0] if node.body else None
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            for offset, line in enumerate(first.value.value.splitlines()):
                yield first.lineno + offset, line


def headings(path: Path) -> list[str]:
    """The headings of a Markdown file, outside its code blocks."""
    found: list[str] = []
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (match := HEADING.match(line)):
            found.append(match.group(1))
    return found


def anchors(path: Path) -> set[str]:
    """The anchors a Markdown renderer gives the headings of ``path`` (GitHub's rules: lower
    case, punctuation dropped, blanks as hyphens, ``-1``, ``-2`` after a repeated one)."""
    found: set[str] = set()
    repeats: dict[str, int] = {}
    for heading in headings(path):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = repeats.get(slug, 0)
        repeats[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


class _Checker:
    """The references of one repository: its root and the files in it (``/``-separated)."""

    def __init__(self, root: Path, files: Iterable[str]) -> None:
        self.root = root
        self.files = sorted(files)
        #: Every file and directory of the repository.
        self.known = {
            "/".join(parts[:end])
            for name in self.files
            for parts in [PurePosixPath(name).parts]
            for end in range(1, len(parts) + 1)
        }
        directories = self.known - set(self.files)
        #: Directories a path may start with: the root's, and the package's.
        self.heads = {d for d in directories if "/" not in d} | {
            d.removeprefix(PACKAGE + "/")
            for d in directories
            if d.count("/") == 2 and d.startswith(PACKAGE + "/")
        }

    def find(self, reference: str, *, near: str) -> str | None:
        """The file or directory ``reference`` names: from the root, the package or ``near``
        (the directory of the file that names it)."""
        for base in ("", PACKAGE, near):
            candidate = posixpath.normpath(posixpath.join(base, reference))
            if candidate in self.known:
                return candidate
        return None

    def _is_path(self, path: str, *, any_path: bool) -> bool:
        head = path.split("/", maxsplit=1)[0]
        return head == "docs" or (any_path and head in self.heads)

    def mentions(self, line: str, *, any_path: bool) -> list[str]:
        """Files of the repository ``line`` names, in order, each once (link targets are
        checked as links)."""
        line = LINK.sub(" ", URL.sub(" ", line))
        found = [m.group(1) for m in MARKDOWN_FILE.finditer(line)] if ".md" in line else []
        for match in PATH.finditer(line):
            path = match.group(1).rstrip(".")
            if self._is_path(path, any_path=any_path):
                found.append(path)
        return list(dict.fromkeys(found))

    def links(self, name: str, line: str) -> Iterator[str]:
        """What is wrong with the Markdown links of ``line`` in ``name``."""
        for match in LINK.finditer(line):
            target = match.group(1)
            if "://" in target or target.startswith("mailto:"):
                continue
            path, _, anchor = target.partition("#")
            linked = name
            if path:
                linked = posixpath.normpath(posixpath.join(posixpath.dirname(name), path))
            if linked not in self.known:
                yield f"link to {target}: no such file"
            elif anchor and linked.endswith(".md") and anchor not in anchors(self.root / linked):
                yield f"link to {target}: no heading with that anchor"

    def sections(self, line: str, *, near: str) -> Iterator[str]:
        """What is wrong with the sections ``line`` names, each after its Markdown file."""
        if '.md, "' not in line:
            return
        for match in SECTION.finditer(URL.sub(" ", line)):
            document = self.find(match.group(1), near=near)
            if document not in self.files:
                continue  # reported as a missing file
            titles = headings(self.root / document)
            for section in QUOTED.findall(match.group(2)):
                if not any(title.startswith(section) for title in titles):
                    yield f'{match.group(1)}, "{section}": no such heading'

    def problems(self) -> list[str]:
        """Every bad reference of the repository, as ``file:line: what is wrong``."""
        found: list[str] = []
        for name in self.files:
            text = _text(self.root / name)
            if text is not None:
                found += [f"{name}:{number}: {problem}" for number, problem in self._of(name, text)]
        return found

    def _of(self, name: str, text: str) -> list[tuple[int, str]]:
        near = posixpath.dirname(name)
        found = [
            (number, f"{match.group(0)} is outside the repository")
            for number, line in enumerate(text.splitlines(), start=1)
            for match in OUTSIDE.finditer(line)
        ]
        if name.endswith(".py"):
            # Code builds its paths its own way; its prose names them as people read them.
            # (Reading the prose of a module costs more than the rest: only where it may pay.)
            worth = self.mentions(text, any_path=True)
            lines, any_path = (sorted(_python_prose(text)) if worth else []), True
        else:
            lines, any_path = list(enumerate(text.splitlines(), start=1)), name.endswith(".md")
        for number, line in lines:
            for reference in self.mentions(line, any_path=any_path):
                if not OUTSIDE.search(reference) and self.find(reference, near=near) is None:
                    found.append((number, f"{reference}: no such file in the repository"))
            if name.endswith(".md"):
                found += [(number, problem) for problem in self.links(name, line)]
            found += [(number, problem) for problem in self.sections(line, near=near)]
        return sorted(found, key=lambda item: item[0])


def test_every_reference_names_a_file_and_section_of_the_repository() -> None:
    files = repository_files(REPO)
    assert "docs/architecture.md" in files, "the scan sees the repository"
    assert _Checker(REPO, files).problems() == []


def _tree(root: Path, files: dict[str, str]) -> list[str]:
    """Write ``files`` (name: text) under ``root``; their names."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return list(files)


def test_the_check_names_each_bad_reference_by_file_and_line(tmp_path: Path) -> None:
    # Built from parts, so this file itself names nothing outside the repository.
    planning = "DESIGN" + ".md"
    shared = "../" + "shared"
    files = _tree(
        tmp_path,
        {
            "README.md": "# Title\n\n## Layout\n\n```sh\n# not a heading\n```\n",
            "docs/guide.md": (
                "# Guide\n\n## The flow, in short\n\n"
                "[ok](../README.md#layout), [ok](#the-flow-in-short), see `bus/engine.py`.\n"
                "[gone](missing.md), [bad](#nowhere), [bad](../README.md#not-a-heading)\n"
                'See `bus/gone.py`, README.md, "Layout" and README.md, "Nowhere".\n'
            ),
            "src/intent_fleet/bus/engine.py": "x = 1\n",
            "src/intent_fleet/bus/mod.py": (
                '"""The rules: docs/guide.md, "The flow"; docs/absent.md."""\n\n'
                f"# From the {planning} plan.\n"
                'ok = "docs/absent-in-code.md"  # code: not read\n'
            ),
            "Makefile": f"# notes in {shared}/notes\n",
        },
    )
    assert _Checker(tmp_path, files).problems() == [
        f"Makefile:1: {shared} is outside the repository",
        "docs/guide.md:6: link to missing.md: no such file",
        "docs/guide.md:6: link to #nowhere: no heading with that anchor",
        "docs/guide.md:6: link to ../README.md#not-a-heading: no heading with that anchor",
        "docs/guide.md:7: bus/gone.py: no such file in the repository",
        'docs/guide.md:7: README.md, "Nowhere": no such heading',
        "src/intent_fleet/bus/mod.py:1: docs/absent.md: no such file in the repository",
        f"src/intent_fleet/bus/mod.py:3: {planning} is outside the repository",
    ]


def test_anchors_follow_the_renderers_rules(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Run a bus\n## The CLI: `intent-fleet`\n## Notes\n## Notes\n")
    assert anchors(page) == {"run-a-bus", "the-cli-intent-fleet", "notes", "notes-1"}
