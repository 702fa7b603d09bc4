"""``jobpulse assets export DIR``: from the checkout, and from a built wheel's package data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from jobpulse._cli import assets as cli_assets
from jobpulse._cli import main

from .conftest import ROOT

SOURCES = {
    "collector": ROOT / "collector",
    "alerts": ROOT / "alerts" / "rules",
    "dashboards": ROOT / "dashboards" / "json",
    "runbooks": ROOT / "docs" / "runbooks",
}
SUFFIXES = {"collector": (".yaml", ".md"), "alerts": (".yaml",), "dashboards": (".json",),
            "runbooks": (".md",)}  # fmt: skip


def expected() -> dict[str, bytes]:
    out = {}
    for kind, folder in SOURCES.items():
        for path in folder.iterdir():
            if path.is_file() and path.name.endswith(SUFFIXES[kind]):
                out[f"{kind}/{path.name}"] = path.read_bytes()
    return out


def exported(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def test_export_writes_every_asset_byte_for_byte(tmp_path: Path) -> None:
    assert main(["assets", "export", str(tmp_path / "out")]) == 0
    got = exported(tmp_path / "out")
    assert got == expected()
    assert {"collector/agent.yaml", "collector/gateway.yaml", "collector/README.md",
            "alerts/jobpulse-alerts.rules.yaml", "alerts/jobpulse-recording.rules.yaml",
            "dashboards/jobpulse-overview.json", "dashboards/jobpulse-job.json",
            "runbooks/stuck-job.md", "runbooks/alerts.md",
            "runbooks/heartbeat-logging.md"} <= set(got)  # fmt: skip


def test_export_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["assets", "export", str(tmp_path)]) == 0
    (tmp_path / "collector" / "agent.yaml").write_text("edited", encoding="utf-8")
    assert main(["assets", "export", str(tmp_path)]) == 1
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "collector" / "agent.yaml").read_text(encoding="utf-8") == "edited"
    assert main(["assets", "export", "--force", str(tmp_path)]) == 0
    assert (tmp_path / "collector" / "agent.yaml").read_bytes() == expected()[
        "collector/agent.yaml"
    ]


def test_export_only_some_kinds(tmp_path: Path) -> None:
    assert main(["assets", "export", "--only", "alerts,dashboards", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"alerts", "dashboards"}
    with pytest.raises(SystemExit):
        main(["assets", "export", "--only", "grafana", str(tmp_path)])


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assets", "list"]) == 0
    assert set(capsys.readouterr().out.split()) == set(expected())


def test_editable_install_reads_the_checkout() -> None:
    for kind, folder in SOURCES.items():
        assert Path(str(cli_assets.source(kind))) == folder


def test_wheel_ships_the_assets_as_package_data(tmp_path: Path) -> None:
    """The wheel force-includes the top-level folders; an installed wheel exports them."""
    wheel_builder = pytest.importorskip("hatchling.builders.wheel")
    (wheel,) = wheel_builder.WheelBuilder(str(ROOT)).build(
        directory=str(tmp_path / "dist"), versions=["standard"]
    )
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(site)
    for key in expected():
        assert f"jobpulse/_assets/{key}" in names, key
    out = tmp_path / "out"
    code = (
        "import sys; from jobpulse._cli import main, assets; "
        "src = str(assets.source('alerts')); "
        "assert '_assets' in src and 'site' in src, src; "
        f"sys.exit(main(['assets', 'export', {str(out)!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(site)},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert exported(out) == expected()
