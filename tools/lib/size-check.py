#!/usr/bin/env python3
"""Keeps the code readable in pieces: no source file under crates/*/src over 800 lines and
no function over 80 lines, except the tables named below (data laid out one row per line).

Usage: tools/lib/size-check.py [ROOT]   (exit 1 and one line per offence when over)
"""
import os
import re
import sys

MAX_FILE = 800
MAX_FN = 80
# Functions that are tables: one row per line, nothing to split.
TABLES = {
    ("crates/hsm-core/src/objects/attrs/table.rs", "class_rules"),
}

FN = re.compile(r'^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(unsafe\s+)?(extern\s+"C"\s+)?fn\s+(\w+)')


def functions(lines):
    """(name, first line, length) of every fn with a body, by brace counting outside
    strings and comments (good enough for this code base's style)."""
    i = 0
    while i < len(lines):
        m = FN.match(lines[i])
        if not m:
            i += 1
            continue
        depth, started, j = 0, False, i
        while j < len(lines):
            code = strip(lines[j])
            for ch in code:
                if ch == "{":
                    depth, started = depth + 1, True
                elif ch == "}":
                    depth -= 1
            if started and depth <= 0:
                break
            if not started and code.rstrip().endswith(";"):
                break
            j += 1
        if started:
            yield m.group(6), i + 1, j - i + 1
        i += 1


def strip(line):
    """A line without its string literals, char literals and // comment."""
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return line.split("//", 1)[0]


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    bad = []
    crates = os.path.join(root, "crates")
    for crate in sorted(os.listdir(crates)):
        src = os.path.join(crates, crate, "src")
        for dirpath, _, files in os.walk(src):
            for f in sorted(files):
                if not f.endswith(".rs"):
                    continue
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, root)
                with open(path, encoding="utf-8") as fh:
                    lines = fh.read().split("\n")
                if len(lines) - 1 > MAX_FILE:
                    bad.append(f"{rel}: {len(lines) - 1} lines (at most {MAX_FILE})")
                for name, line, n in functions(lines):
                    if n > MAX_FN and (rel, name) not in TABLES:
                        bad.append(f"{rel}:{line}: fn {name} is {n} lines (at most {MAX_FN})")
    for b in bad:
        print(b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
