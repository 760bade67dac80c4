"""The part of CuPy's namespace the stand-in offers: names, kinds and parameter lists.

namespace.txt is read from a real cupy by `python -m cupy_standin.namespace` (run in tests/ with
cupy importable; cupy needs no GPU to be imported) and checked in, so the stand-in is as strict
on a machine without cupy. Only names NumPy has too are kept: the stand-in computes each with
NumPy's function of the same name. One line per name: `path<TAB>kind<TAB>detail`, where kind is
function (detail: its parameters, '?' where CuPy's compiled code hides them), ufunc (detail:
nin nout and the methods), type or constant.
"""
import inspect
import os
import sys

import numpy

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "namespace.txt")
SUBMODULES = ("", "random.", "linalg.")


def params_of(fn):
    """'a, dtype=, *, copy=' for fn's signature (defaults dropped: only names and kinds
    matter for a call), or '?' without one."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return "?"
    out, star = [], False
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            out.append(f"*{p.name}")
            star = True
        elif p.kind is p.VAR_KEYWORD:
            out.append(f"**{p.name}")
        else:
            if p.kind is p.KEYWORD_ONLY and not star:
                out.append("*")
                star = True
            prefix = "/" if p.kind is p.POSITIONAL_ONLY else ""
            out.append(prefix + p.name + ("=" if p.default is not p.empty else ""))
    return ", ".join(out)


def signature_of(spec):
    """An inspect.Signature from a params_of() string (None for '?')."""
    if spec == "?":
        return None
    P, params, kind = inspect.Parameter, [], inspect.Parameter.POSITIONAL_OR_KEYWORD
    for word in filter(None, (w.strip() for w in spec.split(","))):
        if word == "*":
            kind = P.KEYWORD_ONLY
        elif word.startswith("**"):
            params.append(P(word[2:], P.VAR_KEYWORD))
        elif word.startswith("*"):
            params.append(P(word[1:], P.VAR_POSITIONAL))
            kind = P.KEYWORD_ONLY
        else:
            k = P.POSITIONAL_ONLY if word.startswith("/") else kind
            name = word.lstrip("/").rstrip("=")
            params.append(P(name, k, default=None if word.endswith("=") else P.empty))
    return inspect.Signature(params)


def _kind(obj):
    name = type(obj).__name__
    if name == "ufunc":
        methods = [m for m in ("reduce", "accumulate", "at", "outer", "reduceat")
                   if hasattr(obj, m)]
        return "ufunc", f"{obj.nin} {obj.nout} {','.join(methods)}"
    if isinstance(obj, type):
        return "type", ""
    if callable(obj):
        return "function", params_of(obj)
    if isinstance(obj, (int, float)) or obj is None:
        return "constant", ""
    return None, None


def from_cupy(cupy):
    """namespace.txt's lines for an imported cupy: its names that NumPy also has."""
    lines = []
    for prefix in SUBMODULES:
        mod = cupy
        np_mod = numpy
        for part in filter(None, prefix.split(".")):
            mod, np_mod = getattr(mod, part), getattr(np_mod, part)
        for name in sorted(dir(mod)):
            if name.startswith("_") or not hasattr(np_mod, name):
                continue
            kind, detail = _kind(getattr(mod, name))
            if kind:
                lines.append(f"{prefix}{name}\t{kind}\t{detail}")
    return lines


def load(path=PATH):
    """{path: (kind, detail)} from namespace.txt."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                name, kind, detail = (line.rstrip("\n").split("\t") + ["", ""])[:3]
                out[name] = (kind, detail)
    return out


def header(cupy):
    return f"# read from cupy {cupy.__version__} by python -m cupy_standin.namespace"


if __name__ == "__main__":
    import cupy
    with open(PATH, "w", encoding="utf-8") as f:
        f.write("\n".join([header(cupy)] + from_cupy(cupy)) + "\n")
    sys.stdout.write(f"{PATH}: {len(from_cupy(cupy))} names of cupy {cupy.__version__}\n")
