"""The table, the list of failures, the details, and the JSON file.

Columns: ``figure | median | p95 | target | result`` for the first subject (ours),
then ``median | p95 | ours/peer`` for each peer. Values carry their unit.
A tail marked ``(p5)`` belongs to a higher-is-better figure (see
:mod:`benchmarks.common`). ``result`` is ``pass``/``FAIL`` on our median,
``info`` for figures without a target, ``n/a`` when not measured (the reason is
listed under the table). ``ours/peer`` is our median divided by the peer's, the
direction of the table's other ratios (measured / reference): below 1 ours is
lower, which is better on every row but the throughput ones (``x realtime``).
A peer's ``n/a [k]`` points to reason ``[k]`` in the legend under the table.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence

from .common import OURS, Figure, Stat


def _num(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.1 or magnitude == 0:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _cell(value: Optional[float], figure: Figure, tail: bool = False) -> str:
    if value is None:
        return "-"
    text = f"{_num(value * figure.scale)} {figure.unit}"
    return text + (" (p5)" if tail and figure.higher_is_better else "")


def _target(figure: Figure) -> str:
    if figure.target is None:
        return ""
    op = "≤" if figure.op == "<=" else "≥"
    return f"{op} {figure.target:g} {figure.unit}"


def _ratio(ours: Stat, peer: Stat) -> str:
    if ours.median is None or peer.median is None or ours.median < 0 or peer.median <= 0:
        return ""  # no ratio of signed or zero values
    value = ours.median / peer.median
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def table(figures: Sequence[Figure], subjects: Sequence[str]) -> str:
    """The table, then (with peers) the ratio's direction and the peers' n/a reasons."""
    header = ["figure", "median", "p95", "target", "result"]
    for peer in subjects[1:]:
        header += [f"{peer} median", f"{peer} p95", f"ours/{peer}"]
    rows: List[List[str]] = [header]
    reasons: Dict[str, List[str]] = {}  # why -> peers; the legend numbers them in this order
    for figure in figures:
        ours = figure.results.get(subjects[0], Stat.missing("not run"))
        row = [figure.name, _cell(ours.median, figure), _cell(ours.tail, figure, tail=True),
               _target(figure), figure.verdict(subjects[0])]
        for peer in subjects[1:]:
            stat = figure.results.get(peer, Stat.missing("not run"))
            if stat.median is None:
                why = stat.note or "no samples"
                names = reasons.setdefault(why, [])
                if peer not in names:
                    names.append(peer)
                row += [f"n/a [{list(reasons).index(why) + 1}]", "", ""]
            else:
                row += [_cell(stat.median, figure), _cell(stat.tail, figure, tail=True), _ratio(ours, stat)]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {i for i in range(1, len(header)) if i not in (3, 4)}
    lines = []
    for n, r in enumerate(rows):
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)]
        lines.append(" | ".join(cells).rstrip())
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    if len(subjects) > 1:
        lines += ["", "ours/peer = our median / the peer's median (< 1: ours is lower; lower is better "
                      "except on the 'x realtime' rows)."]
        lines += [f"[{k}] {', '.join(names)}: {why}" for k, (why, names) in enumerate(reasons.items(), 1)]
    return "\n".join(lines)


def machine_lines(machine: Dict[str, Any], mode: str, elapsed: float) -> str:
    peers = f"   peers: {machine['peers']}" if machine.get("peers") else ""
    return (f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['python']}, {machine['os']}\n"
            f"date: {machine['date']}   smallest_sync {machine['smallest_sync']}{peers}   "
            f"run: {mode}, {elapsed:.0f} s   load average at the end: {machine.get('load', '?')}")


def failures(figures: Sequence[Figure], subject: str = OURS) -> str:
    lines = []
    for figure in figures:
        verdict = figure.verdict(subject)
        stat = figure.results.get(subject)
        if verdict == "FAIL" and stat is not None and stat.median is not None:
            lines.append(f"  FAIL {figure.name}: median {_cell(stat.median, figure)} against "
                         f"{_target(figure)} ({figure.shortfall(subject)})")
        elif verdict == "n/a" or (stat is not None and stat.note):
            lines.append(f"  n/a  {figure.name}: {stat.note if stat else 'not run'}")
    return "\n".join(lines)


def details(figures: Sequence[Figure]) -> str:
    lines = []
    for figure in figures:
        for subject, info in figure.details.items():
            lines.append(f"{figure.name} [{subject}]")
            for key, value in info.items():
                lines.append(f"    {key}: {_compact(value)}")
    return "\n".join(lines)


def _compact(value: Any) -> str:
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return "; ".join(f"{k} {v.get('median')}/{v.get('p95')}" if "median" in v else f"{k} {v}"
                         for k, v in value.items()) + ("  (median/p95)" if any("median" in v for v in value.values()) else "")
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


def to_json(figures: Sequence[Figure], subjects: Sequence[str], machine: Dict[str, Any], mode: str,
            elapsed: float) -> Dict[str, Any]:
    out: Dict[str, Any] = {"machine": machine, "mode": mode, "elapsed_s": round(elapsed, 1),
                           "subjects": list(subjects), "figures": []}
    for figure in figures:
        out["figures"].append({
            "key": figure.key, "name": figure.name, "unit": figure.unit, "op": figure.op,
            "target": figure.target, "tail": "p5" if figure.higher_is_better else "p95",
            "results": {
                name: {"median": None if s.median is None else s.median * figure.scale,
                       "tail": None if s.tail is None else s.tail * figure.scale,
                       "n": s.n, "note": s.note, "verdict": figure.verdict(name) if name == subjects[0] else None}
                for name, s in figure.results.items()
            },
            "details": figure.details,
        })
    return out
