"""``jobpulse assets``: the shipped operations assets, for a deployment.

``jobpulse assets export DIR`` writes the collector configs, the Prometheus
rules, the Grafana dashboards and the runbooks::

    DIR/collector/   agent.yaml, gateway.yaml, README.md
    DIR/alerts/      jobpulse-recording.rules.yaml, jobpulse-alerts.rules.yaml
    DIR/dashboards/  jobpulse-overview.json, jobpulse-job.json
    DIR/runbooks/    stuck-job.md, alerts.md, heartbeat-logging.md, README.md

They come from package data (``jobpulse/_assets/``, force-included into the
wheel from the repository's top-level ``collector/``, ``alerts/rules/``,
``dashboards/json/`` and ``docs/runbooks/``, the single source of truth). In
an editable install, where the wheel's copy does not exist, they are read
from the checkout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

#: kind -> (folder under jobpulse/_assets/, folder in a checkout, file suffixes)
KINDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "collector": ("collector", "collector", (".yaml", ".md")),
    "alerts": ("alerts", "alerts/rules", (".yaml",)),
    "dashboards": ("dashboards", "dashboards/json", (".json",)),
    "runbooks": ("runbooks", "docs/runbooks", (".md",)),
}


class AssetsNotFound(RuntimeError):
    """Neither the package data nor a checkout holds the assets."""


def _checkout_root() -> Path | None:
    """The repository root when jobpulse runs from a checkout (editable install)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "collector" / "gateway.yaml").is_file() and (parent / "alerts").is_dir():
            return parent
    return None


def source(kind: str) -> Traversable:
    """Where the assets of ``kind`` are read from: package data, else the checkout."""
    packaged, in_checkout, _ = KINDS[kind]
    data = resources.files("jobpulse").joinpath("_assets").joinpath(packaged)
    if data.is_dir():
        return data
    root = _checkout_root()
    if root is not None and (root / in_checkout).is_dir():
        return root / in_checkout
    raise AssetsNotFound(
        f"jobpulse's {kind} assets are missing: neither jobpulse/_assets/{packaged} (a wheel) "
        f"nor a checkout's {in_checkout}/ was found; reinstall jobpulse from a wheel"
    )


def files(kind: str) -> Iterator[Traversable]:
    suffixes = KINDS[kind][2]
    for entry in sorted(source(kind).iterdir(), key=lambda e: e.name):
        if entry.is_file() and entry.name.endswith(suffixes):
            yield entry


def export(directory: Path, kinds: list[str], *, force: bool = False) -> list[Path]:
    """Copy the assets into ``directory/<kind>/``; refuses to overwrite unless ``force``."""
    plan = [(entry, directory / kind / entry.name) for kind in kinds for entry in files(kind)]
    clashes = [dest for _, dest in plan if dest.exists()]
    if clashes and not force:
        raise FileExistsError(
            f"{len(clashes)} file(s) already exist, e.g. {clashes[0]}; "
            "use --force to overwrite them"
        )
    written = []
    for entry, dest in plan:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(entry.read_bytes())
        written.append(dest)
    return written


def _kinds(raw: str) -> list[str]:
    names = [k.strip() for k in raw.split(",") if k.strip()]
    bad = [k for k in names if k not in KINDS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown asset kind(s) {bad}; valid values: a comma-separated list of {list(KINDS)}"
        )
    return names


def _export(args: argparse.Namespace) -> int:
    try:
        written = export(args.directory, args.only, force=args.force)
    except (FileExistsError, AssetsNotFound) as exc:
        print(f"jobpulse assets export: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    print(f"wrote {len(written)} files to {args.directory}", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    try:
        for kind in args.only:
            for entry in files(kind):
                print(f"{kind}/{entry.name}")
    except AssetsNotFound as exc:
        print(f"jobpulse assets list: {exc}", file=sys.stderr)
        return 1
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "assets",
        help="write the collector configs, alert rules, dashboards and runbooks",
        description="The operations assets that ship with jobpulse.",
    )
    actions = p.add_subparsers(dest="assets_command", metavar="ACTION", required=True)
    exp = actions.add_parser(
        "export",
        help="write the assets into DIR/{collector,alerts,dashboards,runbooks}/",
        description=(
            "Write the OpenTelemetry Collector configs (agent, gateway), the Prometheus "
            "recording and alerting rules, the Grafana dashboards and the runbooks into DIR."
        ),
    )
    exp.add_argument("directory", metavar="DIR", type=Path)
    exp.add_argument(
        "--only", type=_kinds, default=list(KINDS), metavar="KINDS",
        help=f"comma-separated subset of {','.join(KINDS)} (default: all)",
    )  # fmt: skip
    exp.add_argument("--force", action="store_true", help="overwrite existing files")
    exp.set_defaults(handler=_export)
    lst = actions.add_parser("list", help="list the shipped assets")
    lst.add_argument("--only", type=_kinds, default=list(KINDS), metavar="KINDS")
    lst.set_defaults(handler=_list)
