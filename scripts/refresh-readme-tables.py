#!/usr/bin/env python3
"""Copies generated Markdown tables into README.md.

Every block of the README between `<!-- begin docs/NAME.md -->` and
`<!-- end docs/NAME.md -->` is replaced by the current contents of docs/NAME.md, so the
README's study tables stay what the examples wrote (run the examples first)."""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
readme = root / "README.md"
text = readme.read_text()
pattern = re.compile(r"(<!-- begin (docs/[\w.-]+\.md) -->\n)(.*?)(<!-- end \2 -->)", re.S)


def splice(match):
    table = (root / match.group(2)).read_text().strip() + "\n"
    return match.group(1) + table + match.group(4)


new, count = pattern.subn(splice, text)
if count == 0:
    sys.exit("README.md: no <!-- begin docs/...md --> blocks")
readme.write_text(new)
print(f"README.md: {count} tables refreshed")
