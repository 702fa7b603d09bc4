"""Just enough PromQL lexing to list the metric and label names a query uses.

Not a parser: it strips strings and durations, then classifies identifiers by
context (inside ``{...}`` a label; after ``by``/``on``/... a label list;
before ``(`` a function, which must be a known one; anything else a metric).
Prometheus itself parses every query in the end-to-end test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FUNCTIONS = frozenset(
    """abs absent absent_over_time avg_over_time ceil changes clamp clamp_max clamp_min
    count_over_time day_of_month day_of_week day_of_year days_in_month delta deriv exp floor
    histogram_quantile holt_winters hour idelta increase irate label_join label_replace
    last_over_time ln log2 log10 max_over_time min_over_time minute month predict_linear
    present_over_time quantile_over_time rate resets round scalar sgn sort sort_desc sqrt
    stddev_over_time stdvar_over_time sum_over_time time timestamp vector year
    sum min max avg group stddev stdvar count count_values bottomk topk quantile""".split()  # noqa: SIM905
)
LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "offset", "bool", "atan2", "inf", "nan"})

_TOKEN = re.compile(
    r"""(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
      |(?P<range>\[[^\]]*\])
      |(?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*\b)
      |(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      |(?P<var>\$\{?[A-Za-z_][A-Za-z0-9_:.]*\}?)
      |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
      |(?P<punct>=~|!~|!=|==|>=|<=|[{}()=,<>+\-*/%^@])
      |(?P<space>\s+)""",
    re.VERBOSE,
)


@dataclass
class Names:
    metrics: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)


def names(expr: str) -> Names:
    """The metric, label and function names in ``expr``."""
    out = Names()
    tokens = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot lex {expr[pos : pos + 20]!r} in {expr!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "space":
            continue
        tokens.append((kind, m.group()))
    depth_braces = 0
    label_list = False
    for i, (kind, text) in enumerate(tokens):
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "punct":
            if text == "{":
                depth_braces += 1
            elif text == "}":
                depth_braces -= 1
            elif text == ")" and label_list:
                label_list = False
            continue
        if kind == "string" and depth_braces and i >= 2 and tokens[i - 2][1] == "__name__":
            out.metrics.update(re.split(r"\|", text[1:-1]))
            continue
        if kind != "ident":
            continue
        if depth_braces or label_list:
            out.labels.add(text)
        elif text.lower() in LABEL_LIST_KEYWORDS:
            label_list = nxt == "("
        elif text.lower() in KEYWORDS:
            continue
        elif nxt == "(" or (nxt.lower() in ("by", "without") and text in FUNCTIONS):
            if text not in FUNCTIONS:
                raise ValueError(f"unknown function {text!r} in {expr!r}")
            out.functions.add(text)
        else:
            out.metrics.add(text)
    return out


_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.*),\s*)?(?P<label>\w+)\)$", re.S)


def label_values(query: str) -> tuple[str | None, str]:
    """A Grafana ``label_values(selector, label)`` variable query: (selector, label)."""
    m = _LABEL_VALUES.match(query.strip())
    if m is None:
        raise ValueError(f"not a label_values() query: {query!r}")
    return m.group("selector"), m.group("label")
