#!/usr/bin/env python3
"""The size rule of the production code (libs/, daemons/, tools/): no file over 800 lines,
no function over 150 lines. A function is a brace block whose opening line reads as a
function head (a parameter list closing before the brace, not a control statement and
not a lambda); lambdas count toward the function around them. Prints each offender with
file:line and exits 1 if there is any."""
import os
import re
import sys

MAX_FILE, MAX_FUNCTION = 800, 150
ROOTS = ("libs", "daemons", "tools")
HEAD = re.compile(r"\)\s*(const)?\s*(noexcept)?\s*(override)?\s*(final)?\s*(->\s*[\w:<>, ]+)?\s*\{\s*$")
NOT_FUNCTION = re.compile(r"^\s*(if|for|while|switch|else|do|catch)\b|\]\s*\(|^\s*[\[]")
STRING = re.compile(r'"(\\.|[^"\\])*"|\'(\\.|[^\'\\])*\'')


def functions(lines):
    stack = []
    for number, line in enumerate(lines, 1):
        code = STRING.sub('""', line).split("//")[0]
        for ch in code:
            if ch == "{":
                stack.append((number, line))
            elif ch == "}" and stack:
                start, head = stack.pop()
                if HEAD.search(head) and not NOT_FUNCTION.search(head):
                    yield start, number - start + 1, head.strip()


def main(source_dir):
    offenders = []
    for root in ROOTS:
        for dirpath, _, files in os.walk(os.path.join(source_dir, root)):
            for name in sorted(files):
                if not name.endswith((".cpp", ".h")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, source_dir)
                with open(path, errors="replace") as f:
                    lines = f.read().split("\n")
                if len(lines) - 1 > MAX_FILE:
                    offenders.append("%s: %d lines (at most %d)" % (rel, len(lines) - 1, MAX_FILE))
                for start, length, head in functions(lines):
                    if length > MAX_FUNCTION:
                        offenders.append("%s:%d: function of %d lines (at most %d): %s" %
                                         (rel, start, length, MAX_FUNCTION, head[:70]))
    for o in offenders:
        print(o)
    return 1 if offenders else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else
                  os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")))
