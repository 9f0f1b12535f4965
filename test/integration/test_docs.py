"""
The documentation stays true: README.md and docs/*.md.

  - every relative link resolves to an existing file or directory, and a
    #anchor into a Markdown file to one of its headings (GitHub's slugs);
  - every `statemesh COMMAND [SUBCOMMAND]` shown in a code block of README.md
    or docs/*.md is a command of build/statemesh (`statemesh --help` lists
    it, or, when the CLI can tell real commands from made-up ones that way,
    `statemesh help COMMAND` / `statemesh COMMAND --help` accepts it).

Needs only build/statemesh (from $STATEMESH_BUILD, default <repo>/build); the
link checks need nothing built.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import binary  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def doc_files():
    return [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def split_fences(text):
    """Yields (code, line) for each line: code is "" outside fenced code
    blocks, else the block's language ("text" when none is given)."""
    fence, lang = None, ""
    for line in text.splitlines():
        m = re.match(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)", line)
        if m:
            mark = m.group(1)
            if fence is None:
                fence, lang = mark[0] * len(mark), (m.group(2) or "text").lower()
                yield lang, line
                continue
            if mark.startswith(fence):
                fence = None
                yield lang, line
                lang = ""
                continue
        yield (lang if fence is not None else ""), line


def slug(heading):
    """GitHub's anchor for a heading text."""
    s = heading.strip().lower()
    s = re.sub(r"<[^>]+>", "", s)              # inline HTML
    s = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", s)  # links: their text
    s = re.sub(r"[^\w\- ]", "", s)              # punctuation, backticks, …
    return s.replace(" ", "-")


_anchor_cache = {}


def anchors(path):
    if path not in _anchor_cache:
        seen = {}
        out = set()
        for in_code, line in split_fences(path.read_text(encoding="utf-8")):
            if in_code:
                continue
            m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if not m:
                continue
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
        _anchor_cache[path] = out
    return _anchor_cache[path]


LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def links(path):
    """(line number, target) of every Markdown link outside code."""
    for no, (in_code, line) in enumerate(split_fences(path.read_text(encoding="utf-8")), 1):
        if in_code:
            continue
        line = re.sub(r"`[^`]*`", lambda m: " " * len(m.group(0))
                      if "](" not in m.group(0) else m.group(0), line)
        for m in LINK.finditer(line):
            yield no, m.group(1)


def broken_links(path):
    bad = []
    for no, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):   # http:, mailto:, …
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(ROOT)}:{no}: {target}"
        if not dest.exists():
            bad.append(f"{where}: {dest} does not exist")
            continue
        if anchor and dest.suffix == ".md" and dest.is_file():
            if anchor not in anchors(dest):
                bad.append(f"{where}: no heading with anchor #{anchor} in "
                           f"{dest.relative_to(ROOT)}")
    return bad


def test_the_docs_exist_and_readme_is_a_front_page():
    readme = ROOT / "README.md"
    assert len(readme.read_text(encoding="utf-8").splitlines()) <= 260
    for name in ("python-sdk", "c-sdk", "messaging", "failure-handling", "configuration",
                 "deployment", "operations", "operations-disk", "architecture", "protocol",
                 "performance", "install", "fuzzing"):
        doc = ROOT / "docs" / f"{name}.md"
        assert doc.is_file(), doc
        assert f"docs/{name}.md" in readme.read_text(encoding="utf-8"), \
            f"README.md does not link docs/{name}.md"


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    assert not broken_links(path), "broken links:\n" + "\n".join(broken_links(path))


def test_the_link_checker_catches_a_broken_link(tmp_path):
    doc = tmp_path / "doc.md"
    (tmp_path / "there.md").write_text("# A heading: `with` code\n\ntext\n")
    doc.write_text("# Top\n\n[ok](there.md#a-heading-with-code) [self](#top)\n"
                   "[gone](missing.md) [bad anchor](there.md#nope)\n"
                   "```\n[in code](not-checked.md)\n```\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        bad = broken_links(doc)
    finally:
        ROOT = saved
    assert len(bad) == 2, bad
    assert "missing.md" in bad[0] and "#nope" in bad[1]



def cli_commands(path):
    """(line number, command, subcommand or None) of each `statemesh ...` in code blocks."""
    for no, (in_code, line) in enumerate(split_fences(path.read_text(encoding="utf-8")), 1):
        if in_code not in ("text", "sh", "bash", "shell", "console"):
            continue
        for m in re.finditer(r"(?:^|[\s;|&(`'\"$])(?:build/)?statemesh(?=\s)", line):
            words = line[m.end():].split()
            i = 0
            while i < len(words):
                w = words[i]
                if w.startswith("["):             # [--address HOST:PORT] in a synopsis
                    while i < len(words) and not words[i].endswith("]"):
                        i += 1
                    i += 1
                elif w == "--address":
                    i += 2
                elif w.startswith("--address="):
                    i += 1
                else:
                    break
            if i >= len(words) or not re.fullmatch(r"[a-z][a-z-]*", words[i]):
                continue
            sub = words[i + 1] if i + 1 < len(words) else None
            if sub is not None and not re.fullmatch(r"[a-z][a-z-]*", sub):
                sub = None
            yield no, words[i], sub


def cli_help():
    cli = binary("statemesh")
    if not cli.exists():
        if os.environ.get("STATEMESH_SKIP_MISSING"):
            pytest.skip(f"{cli} is not built")
        pytest.fail(f"{cli} is missing; run make")
    r = subprocess.run([str(cli), "--help"], capture_output=True, text=True, timeout=30)
    return cli, r.stdout + r.stderr


def known_commands(help_text):
    """{command: {subcommands}} from the commands section of `statemesh --help`."""
    cmds = {}
    in_cmds = False
    for line in help_text.splitlines():
        if re.match(r"^\s*commands:", line, re.I):
            in_cmds = True
            continue
        if in_cmds and re.match(r"^\S.*:\s*$", line):   # the next section (options:)
            break
        if not in_cmds:
            continue
        m = re.match(r"^\s{1,8}([a-z][a-z-]*)(?: ([a-z][a-z-]*)(?=\s|$))?", line)
        if m:
            cmds.setdefault(m.group(1), set())
            if m.group(2):
                cmds[m.group(1)].add(m.group(2))
    return cmds


def test_statemesh_commands_in_the_docs_are_real():
    cli, text = cli_help()
    known = known_commands(text)
    assert known, "could not read the commands from statemesh --help:\n" + text

    def accepts(args):
        r = subprocess.run([str(cli)] + args, capture_output=True, text=True, timeout=30)
        return r.returncode == 0

    # `statemesh CMD --help` / `statemesh help CMD` only count when they refuse
    # a made-up command.
    fallbacks = [f for f in (lambda c: ["help", c], lambda c: [c, "--help"])
                 if not accepts(f("no-such-command"))]

    shown, bad = 0, []
    for path in doc_files():
        for no, cmd, sub in cli_commands(path):
            shown += 1
            where = f"{path.relative_to(ROOT)}:{no}: statemesh {cmd}"
            if cmd in known:
                subs = known[cmd]
                if subs and sub not in subs:
                    bad.append(f"{where} {sub or ''}: {cmd} takes one of {sorted(subs)}")
            elif not any(accepts(f(cmd)) for f in fallbacks):
                bad.append(f"{where}: not a command of {cli} (statemesh --help lists "
                           f"{sorted(known)})")
    assert shown >= 5, "expected the README tour's statemesh commands"
    assert not bad, "\n".join(bad)
