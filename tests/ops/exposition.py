"""A strict reader of the Prometheus text exposition format (0.0.4), for
checking what /metrics serves: it raises on anything the format does not
allow rather than skipping it."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
# A label value: any character but ", \ and newline, which are escaped.
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
LABEL = rf"{LABEL_NAME}={LABEL_VALUE}"
SAMPLE = re.compile(
    rf"^(?P<name>{NAME})(?:\{{(?P<labels>(?:{LABEL})(?:,{LABEL})*)?,?\}})?"
    r" (?P<value>[-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|Inf|NaN))(?: (?P<ts>-?[0-9]+))?$")
HELP = re.compile(rf"^# HELP (?P<name>{NAME}) (?P<text>.*)$")
TYPE = re.compile(rf"^# TYPE (?P<name>{NAME}) (?P<type>counter|gauge|histogram|summary|untyped)$")
ONE_LABEL = re.compile(rf"({LABEL_NAME})=({LABEL_VALUE})")

Labels = Tuple[Tuple[str, str], ...]


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value[1:-1])


@dataclass
class Family:
    name: str
    type: str = ""
    help: str = ""
    samples: Dict[Tuple[str, Labels], float] = field(default_factory=dict)


def parse(text: str) -> Dict[str, Family]:
    """Families by name. Raises AssertionError where the text breaks the format."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: Dict[str, Family] = {}
    current: Family = Family("")
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if m := HELP.match(line):
            assert m["name"] not in families, f"line {n}: a second HELP for {m['name']}"
            current = families[m["name"]] = Family(m["name"], help=m["text"])
        elif m := TYPE.match(line):
            assert m["name"] == current.name and not current.type, f"line {n}: TYPE without its HELP"
            current.type = m["type"]
        elif line.startswith("#") or not line:
            raise AssertionError(f"line {n}: unexpected {line!r}")
        else:
            m = SAMPLE.match(line)
            assert m, f"line {n}: not a sample: {line!r}"
            name = m["name"]
            base = current.name
            allowed = {base} if current.type != "histogram" else {
                base + "_bucket", base + "_sum", base + "_count"}
            assert name in allowed, f"line {n}: {name} outside its family {base}"
            labels = tuple(sorted((k, unescape(v)) for k, v in ONE_LABEL.findall(m["labels"] or "")))
            assert len({k for k, _ in labels}) == len(labels), f"line {n}: a label twice"
            key = (name, labels)
            assert key not in current.samples, f"line {n}: the same series twice"
            value = m["value"]
            current.samples[key] = math.inf if value == "+Inf" else float(value)
    for f in families.values():
        assert f.type, f"{f.name} has no TYPE"
        if f.type == "counter":
            assert f.name.endswith("_total"), f"counter {f.name} must end in _total"
        if f.type == "histogram":
            check_histogram(f)
    return families


def check_histogram(f: Family) -> None:
    """Buckets cumulative and ascending, ending at +Inf equal to _count; a _sum."""
    series: Dict[Labels, List[Tuple[float, float]]] = {}
    for (name, labels), value in f.samples.items():
        if name.endswith("_bucket"):
            le = dict(labels)["le"]
            rest = tuple(kv for kv in labels if kv[0] != "le")
            series.setdefault(rest, []).append((math.inf if le == "+Inf" else float(le), value))
    for labels, buckets in series.items():
        bounds = [b for b, _ in buckets]
        assert bounds == sorted(bounds), f"{f.name}{labels}: buckets out of order"
        assert bounds[-1] == math.inf, f"{f.name}{labels}: no +Inf bucket"
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), f"{f.name}{labels}: buckets not cumulative"
        assert f.samples[(f.name + "_count", labels)] == counts[-1], f"{f.name}{labels}: _count"
        assert (f.name + "_sum", labels) in f.samples, f"{f.name}{labels}: no _sum"


def value(families: Dict[str, Family], name: str, **labels: str) -> float:
    """The one sample of `name` with exactly these labels."""
    base = name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in families:
            base = name[: -len(suffix)]
    key = (name, tuple(sorted(labels.items())))
    return families[base].samples[key]
