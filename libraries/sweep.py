"""Parameter sweeps: a grid from the command line, one pipeline run per grid point, and a ranked table.

Points are ranked by the SVM's cross-validated accuracy on the training split (what script 4 chose C by);
the test accuracy is shown, never used to rank. Points without a cross-validated figure (classifier 'dnn',
which has no SVM) are listed after the ranked ones.
"""
from __future__ import annotations

import itertools

from .errors import BadParameter
from .settings import parse_value


def split_values(text: str) -> list[str]:
    """Split 'a,b,[1,2],"x,y"' at the commas that are not inside brackets or quotes."""
    values, depth, quote, current = [], 0, None, ""
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(current.strip())
            current = ""
            continue
        current += char
    values.append(current.strip())
    return [v for v in values if v]


def parse_grid(items: list[str], known: dict) -> dict[str, list]:
    """``['name=v1,v2', ...]`` -> {name: [v1, v2]}, values parsed as Python literals (bare words as strings)."""
    grid = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not text.strip():
            raise BadParameter(f"--grid {item!r}: expected name=value1,value2,...")
        if name not in known:
            raise BadParameter(f"--grid {item!r}: {name!r} is not a parameter of PARAMETERS.py")
        grid[name] = [parse_value(v) for v in split_values(text)]
    return grid


def points(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, in order."""
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def as_set_arguments(point: dict) -> list[str]:
    """A grid point as ``--set name=value`` arguments with values written as Python literals."""
    args = []
    for name, value in point.items():
        args += ["--set", f"{name}={value!r}"]
    return args


def set_values(arguments: list[str]) -> list[str]:
    """The ``name=value`` items of a ``--set name=value ...`` argument list."""
    return [a for a in arguments if a != "--set"]


def rank(rows: list[dict]) -> list[dict]:
    """Rows with a 'cv_accuracy' first, best first; then the others in their order."""
    ranked = sorted((r for r in rows if r.get("cv_accuracy") is not None), key=lambda r: -r["cv_accuracy"])
    return ranked + [r for r in rows if r.get("cv_accuracy") is None]


def table(rows: list[dict], names: list[str]) -> str:
    def pct(v):
        return "    n/a" if v is None else f"{100 * v:6.2f}%"

    widths = {n: max(len(n), *(len(str(r["point"][n])) for r in rows)) for n in names}
    header = "rank  " + "  ".join(f"{n:<{widths[n]}}" for n in names) + "  CV acc (train)  test acc  class-avg  status    MLflow run"
    lines = [header]
    for i, r in enumerate(rows, 1):
        rank_text = str(i) if r.get("cv_accuracy") is not None else "-"
        values = "  ".join(f"{str(r['point'][n]):<{widths[n]}}" for n in names)
        lines.append(f"{rank_text:>4}  {values}  {pct(r.get('cv_accuracy')):>14}  {pct(r.get('test_accuracy')):>8}  "
                     f"{pct(r.get('class_averaged')):>9}  {r['status']:<8}  {r.get('run_id') or ''}")
    return "\n".join(lines)
