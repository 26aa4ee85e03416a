"""Finding the application named on the command line, and telling WSGI
from ASGI."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import sys
from typing import Any, Callable

WsgiApp = Callable[..., Any]


class AppImportError(Exception):
    """The application named on the command line cannot be loaded."""


def _resolve(obj: Any, node: ast.expr, spec: str) -> Any:
    if isinstance(node, ast.Name):
        try:
            return getattr(obj, node.id)
        except AttributeError:
            raise AppImportError(f"{spec}: no attribute {node.id!r}") from None
    if isinstance(node, ast.Attribute):
        inner = _resolve(obj, node.value, spec)
        try:
            return getattr(inner, node.attr)
        except AttributeError:
            raise AppImportError(f"{spec}: no attribute {node.attr!r}") from None
    raise AppImportError(f"{spec}: expected a name, a dotted name or a call")


def load(spec: str) -> WsgiApp:
    """Loads ``module:name``, ``module:factory()`` or ``module:factory(args)``
    (literal arguments only); ``module`` alone means ``module:application``.
    The current directory is importable, as with gunicorn."""
    module_name, _, expr = spec.partition(":")
    expr = expr.strip() or "application"
    if not module_name:
        raise AppImportError(f"{spec!r}: expected module:app")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError as e:
        raise AppImportError(f"{spec!r}: cannot parse {expr!r}: {e}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        if getattr(e, "name", None) == module_name:
            raise AppImportError(f"no module named {module_name!r}") from None
        raise
    if isinstance(node, ast.Call):
        factory = _resolve(module, node.func, spec)
        try:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
        except ValueError:
            raise AppImportError(
                f"{spec!r}: factory arguments must be literals (strings, numbers, ...)"
            ) from None
        app = factory(*args, **kwargs)
    else:
        app = _resolve(module, node, spec)
    if not callable(app):
        raise AppImportError(f"{spec!r} is not callable (got {type(app).__name__})")
    return app  # type: ignore[no-any-return]


def is_asgi(app: Any) -> bool:
    """Whether ``app`` looks like an ASGI 3.0 callable: a coroutine function,
    or an object whose ``__call__`` is one (Starlette, FastAPI, Django's
    ASGIHandler). It lives here, not in :mod:`uwire.asgi`, so that a WSGI
    worker tells its app apart without importing asyncio."""
    if inspect.iscoroutinefunction(app):
        return True
    return callable(app) and inspect.iscoroutinefunction(type(app).__call__)
