"""Plain text that people read: names may not hide control or bidirectional characters."""

from __future__ import annotations

import unicodedata

#: Unicode categories refused in names: controls (Cc), format characters (Cf: the
#: bidirectional overrides and isolates, zero-width characters), line and paragraph
#: separators, surrogates, private use and unassigned code points.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def unsafe_char(text: str) -> str | None:
    """The first character of ``text`` that a name may not hold, as ``U+XXXX``; None if
    there is none."""
    for ch in text:
        if unicodedata.category(ch) in UNSAFE_CATEGORIES:
            return f"U+{ord(ch):04X}"
    return None


def check_name(text: str) -> str:
    """``text`` if it holds no unsafe character (ValueError naming the first otherwise)."""
    bad = unsafe_char(text)
    if bad is not None:
        raise ValueError(
            f"holds the control or bidirectional character {bad}; names must be plain text"
        )
    return text
