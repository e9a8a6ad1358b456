"""Which files are rules, and the version of a rule set.

Only ``rules/*.yaml`` and ``rules/products/*.yaml`` are rules: a backup copy left in another
folder under ``rules/`` must never be merged into them (``engine check`` notes it instead).
The version is a hash of the rule files' names and contents, plus the git commit when the
rules directory sits in a git work tree, so a plan can say which rules decided it.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

RULE_SUFFIXES = (".yaml", ".yml")
PRODUCTS_DIR = "products"
# Admins' rule tests (engine test) live beside the rules but are not rules (nor ignored by mistake).
RULE_TESTS_DIR = "tests"


def rule_files(rules_dir: Path) -> list[Path]:
    """The rule files, sorted: the top level and ``products/``, nothing deeper."""
    found = [p for p in rules_dir.glob("*") if p.suffix in RULE_SUFFIXES and p.is_file()]
    products = rules_dir / PRODUCTS_DIR
    if products.is_dir():
        found += [p for p in products.glob("*") if p.suffix in RULE_SUFFIXES and p.is_file()]
    return sorted(found)


def fingerprint(rules_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime, size) of every rule file: it changes when a file is added, removed or written.
    Raises OSError if a file vanishes meanwhile."""
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in rule_files(rules_dir))


def ignored_entries(rules_dir: Path) -> list[str]:
    """Files and folders under the rules directory that are not rules (hidden ones aside)."""
    if not rules_dir.is_dir():
        return []
    rules = set(rule_files(rules_dir))
    ignored: list[str] = []
    for entry in sorted(rules_dir.iterdir()):
        if entry.name.startswith(".") or (entry.is_dir() and entry.name == RULE_TESTS_DIR):
            continue
        if entry.is_dir() and entry.name == PRODUCTS_DIR:
            ignored += [
                f"{PRODUCTS_DIR}/{p.name}{'/' if p.is_dir() else ''}"
                for p in sorted(entry.iterdir())
                if p not in rules and not p.name.startswith(".")
            ]
        elif entry not in rules:
            ignored.append(entry.name + ("/" if entry.is_dir() else ""))
    return ignored


def content_hash(rules_dir: Path) -> str:
    """12 hex digits of a SHA-256 over every rule file's relative path and bytes."""
    digest = hashlib.sha256()
    for path in rule_files(rules_dir):
        try:
            data = path.read_bytes()
        except OSError:
            data = b""
        digest.update(path.relative_to(rules_dir).as_posix().encode() + b"\0" + data + b"\0")
    return digest.hexdigest()[:12]


def git_commit(rules_dir: Path) -> str | None:
    """The work tree's HEAD (12 digits, ``-dirty`` if the rules differ from it), or None."""
    try:
        head = subprocess.run(
            ["git", "-C", str(rules_dir), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(rules_dir), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None  # no git on this machine (a container): the content hash is the version
    commit = head.stdout.strip()
    return f"{commit}-dirty" if status.returncode == 0 and status.stdout.strip() else commit


def rules_version(rules_dir: Path) -> str:
    """``<content hash>`` or ``<content hash>@<git commit>``; at most 80 characters."""
    digest = content_hash(rules_dir)
    commit = git_commit(rules_dir)
    return f"{digest}@{commit}" if commit else digest
