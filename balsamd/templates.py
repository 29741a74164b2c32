"""Where a command template's placeholders may stand: only where a quoted word stays one word.

Every placeholder's value is shell-quoted, which makes it one literal word wherever the shell
reads words.  Some places re-read text as code whatever its quotes: a here-document's body
(quotes are plain characters there, ``$(...)`` still runs), arithmetic (``$(( ))``, ``(( ))``,
``$[ ]``, and ``[[ ]]``, whose comparisons evaluate their operands as arithmetic, where an array
subscript runs commands), and commands that parse their arguments again (``eval``, ``let``,
``trap``, ``source``/``.``, ``alias``, and the script of ``sh -c``, though not its ``$1``...).  A placeholder written
inside quotes would have its own quotes undone.  Templates are refused for any of these, with
the reason, when an app is created, loaded or recorded in the store.
"""

from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_BROKEN = re.compile(r"\{\{[^{}]*\}\}")
_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
_REPARSING = frozenset({"eval", "let", "trap", "source", ".", "alias"})
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash"})
_SEPARATORS = re.compile(r"\|\||&&|[;&|\n(){}]")
_WORD = re.compile(r"\s*\S+")


def template_problems(template: str) -> list[str]:
    """Why the template's placeholders would not each be one literal word (empty when they are)."""
    problems = []
    # placeholders read as plain words of the same length: their braces are not shell syntax
    masked = PLACEHOLDER.sub(lambda m: "_" * len(m.group(0)), template)
    # a {{ ... }} left after the placeholders were masked was meant as one (a lone {{ is text)
    broken = _BROKEN.search(masked)
    if broken:
        problems.append(
            f"{broken.group(0)[:40]!r} (at character {broken.start() + 1}) is no placeholder; write one as "
            "{{ name }}, name being a parameter's (letters, digits and _)"
        )
    if "\x00" in template:
        problems.append("the command template contains a NUL character (\\x00), which no command line holds; remove it")
    # where several apply, the most specific reason wins: quotes, then here-documents, arithmetic
    contexts = _reparsed(masked) | _arithmetic(masked) | _heredocs(masked) | _quoted(template)
    for match in PLACEHOLDER.finditer(template):
        where = contexts.get(match.start())
        if where is not None:
            problems.append(f"placeholder {match.group(0)} is {where} in the command template; {_ADVICE[where]}")
    return problems


_ADVICE = {
    "inside ' quotes": "remove those quotes (every value is shell-quoted already)",
    'inside " quotes': "remove those quotes (every value is shell-quoted already)",
    "inside a here-document": "pass the value as an argument or an environment variable instead",
    "inside arithmetic": "pass numbers as plain arguments and compute in the program, not in the shell",
    "in a command that runs its arguments as code": "pass the value as an argument of a program instead",
}


def _quoted(template: str) -> dict[int, str]:
    """Placeholder starts inside quotes, with which quote."""
    quote, escaped, found = "", False, {}
    for i, c in enumerate(template):
        if escaped:
            escaped = False
        elif c == "\\" and quote != "'":
            escaped = True
        elif quote and c == quote:
            quote = ""
        elif not quote and c in "'\"":
            quote = c
        elif quote and c == "{":
            found[i] = f"inside {quote} quotes"
    return found


def _heredocs(template: str) -> dict[int, str]:
    """Positions in here-document bodies: from the line after ``<<WORD`` to the line ``WORD``."""
    found = {}
    for match in _HEREDOC.finditer(template):
        body = template.find("\n", match.end())
        if body < 0:
            continue
        strip_tabs, delimiter = match.group(1) == "-", match.group(3)
        end, at = len(template), body + 1
        while at < len(template):
            line_end = template.find("\n", at)
            line_end = len(template) if line_end < 0 else line_end
            line = template[at:line_end]
            if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                end = at
                break
            at = line_end + 1
        found.update(dict.fromkeys(range(body, end), "inside a here-document"))
    return found


def _arithmetic(template: str) -> dict[int, str]:
    """Positions inside ``$(( ))``, ``(( ))``, ``$[ ]`` and ``[[ ]]``."""
    found = {}
    for opener, closer in (("((", "))"), ("$[", "]"), ("[[", "]]")):
        start = template.find(opener)
        while start >= 0:
            depth, i = 0, start + len(opener)
            end = len(template)
            while i < len(template):
                if template.startswith(closer, i) and depth == 0:
                    end = i
                    break
                depth += {"(": 1, ")": -1}.get(template[i], 0) if opener == "((" else 0
                i += 1
            found.update(dict.fromkeys(range(start, end), "inside arithmetic"))
            start = template.find(opener, end)
    return found


def _runs_a_script(word: str) -> bool:
    """``-c``, or short options that include it (``-lc``)."""
    return word.startswith("-") and not word.startswith("--") and "c" in word[1:]


def _reparsed(template: str) -> dict[int, str]:
    """Positions in commands that parse their arguments again as shell code."""
    found, start = {}, 0
    for separator in [*_SEPARATORS.finditer(template), None]:
        end = len(template) if separator is None else separator.start()
        words = template[start:end].split()
        first = words[0].rsplit("/", 1)[-1] if words else ""
        code_from = None
        code_to = end
        if first in _REPARSING:
            code_from = start
        elif first in _SHELLS and (flag := next((w for w in words[1:] if _runs_a_script(w)), None)):
            # the script is the word after the flag; the words after it are its $0, $1, ...
            script = _WORD.match(template, template.index(flag, start) + len(flag))
            if script is not None:
                code_from, code_to = script.start(), script.end()
        if code_from is not None:
            found.update(dict.fromkeys(range(code_from, code_to), "in a command that runs its arguments as code"))
        start = end if separator is None else separator.end()
    return found
