"""What a tag is: a word KEY and a one-line VALUE, as ``--tag KEY=VALUE`` writes and filters it.

Jobs carry tags, batch jobs and the elastic queue's settings filter on them; all of them check
with ``tag_problems``, which sits apart so that the settings (below the store's checks) can use it.
"""

from __future__ import annotations

from collections.abc import Mapping

MAX_TAG_KEY, MAX_TAG_VALUE = 128, 1024


def _control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def tag_problems(tags: Mapping[str, str], what: str = "tag") -> list[str]:
    """Why ``tags`` cannot be kept and filtered on (empty when they can).  A key is one word
    without '=' (``--tag a b=c`` would be ambiguous to filter by); nothing spans lines."""
    problems = []
    for key, value in tags.items():
        if len(key) > MAX_TAG_KEY or len(value) > MAX_TAG_VALUE:
            problems.append(f"{what} {key[:40]!r}... is too long: keys take at most {MAX_TAG_KEY} characters, "
                            f"values {MAX_TAG_VALUE}; shorten it")  # fmt: skip
            continue
        if not key or "=" in key or _control(key) or any(c.isspace() for c in key):
            problems.append(
                f"{what} key {key!r} must be one word without '=', spaces or control characters; "
                "give KEY=VALUE with a KEY such as experiment or run_1"
            )
        if _control(value):
            problems.append(f"{what} {key}={value!r}: the value contains a control character; keep it on one line")
    return problems
