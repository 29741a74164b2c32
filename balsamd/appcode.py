"""What a declared app's code must look like before a site installs it: read, never run.

A declared app arrives as the text of a module: import statements, then one
ApplicationDefinition subclass named as the app (``balsamd.declare`` builds it from the class
a user defined in a script or notebook).  The site runs it only when its author is in
``[apps] accept_from``; these checks keep the installed file honest about what it is (one app,
under the name it was accepted by, replacing no other), not a sandbox.  Pure functions.
"""

from __future__ import annotations

import ast
import keyword

from balsamd.jsonvalues import text_problem
from balsamd.validate import IDENTIFIER

MAX_CODE = 256 * 1024  # characters of a declared app's module: a class and its imports
MAX_NAME = 64


def name_problem(name: object) -> str | None:
    if type(name) is not str or not IDENTIFIER.fullmatch(name) or len(name) > MAX_NAME or keyword.iskeyword(name):
        return (
            f"the app's name {name!r:.80} is not a class name (letters, digits and _, not starting with a digit, "
            f"at most {MAX_NAME} characters)"
        )
    return None


def code_problems(name: str, code: object) -> list[str]:
    """Why ``code`` is not the module of one app class named ``name`` (empty when it is)."""
    if type(code) is not str:
        return ["its code is not text: send the app with MyApp.sync()"]
    if len(code) > MAX_CODE:
        return [f"its code is {len(code)} characters; an app's module is at most {MAX_CODE} (import the rest)"]
    problem = text_problem(code, "its code")
    if problem:
        return [problem]
    try:
        tree = ast.parse(code, f"declared_{name}.py")
    except SyntaxError as exc:
        return [f"its code is not Python: {exc.msg} at line {exc.lineno}"]
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    others = [
        node for node in tree.body
        if not isinstance(node, ast.Import | ast.ImportFrom | ast.ClassDef)
        and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
    ]  # fmt: skip
    problems = []
    if others:
        problems.append(f"line {others[0].lineno} is neither an import nor the class: a declared app's module "
                        "holds only imports and its class")  # fmt: skip
    if [c.name for c in classes] != [name]:
        problems.append(f"it must define exactly one class, {name}, at its top level "
                        f"(it defines: {', '.join(c.name for c in classes) or 'none'})")  # fmt: skip
    elif _assigns_name(classes[0]):
        problems.append("its class sets `name`: a declared app is named by its class; rename the class instead")
    return problems


def _assigns_name(cls: ast.ClassDef) -> bool:
    for node in cls.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(t, ast.Name) and t.id == "name" for t in targets):
            return True
    return False
