"""The runbooks: one section per alert, the stuck-job runbook, the logging schema."""

from __future__ import annotations

import re

from alerts import generate as gen

from .conftest import ROOT

RUNBOOKS = ROOT / "docs" / "runbooks"


def sections(text: str, level: int = 2) -> dict[str, str]:
    """Heading text -> body, for headings of exactly ``level``."""
    marker = "#" * level
    parts = re.split(rf"^{marker} (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def test_one_section_per_alert_with_the_operator_steps() -> None:
    body = sections((RUNBOOKS / "alerts.md").read_text(encoding="utf-8"))
    assert list(body) == list(gen.ALERT_ORDER), "one section per alert, in the rules' order"
    for alert, text in body.items():
        for part in ("**Means:**", "**First checks, in order:**", "**Collect:**"):
            assert part in text, (alert, part)
        assert "**Contain" in text, alert
        assert "ecover" in text, alert
        assert re.search(r"^1\. ", text, re.M), f"{alert}: first checks are a numbered list"


def test_stuck_job_runbook_has_the_five_steps_and_the_decision_rules() -> None:
    text = (RUNBOOKS / "stuck-job.md").read_text(encoding="utf-8")
    steps = list(sections(text))
    assert steps[:5] == [
        "1. Scope: what is stuck, since when, how much",
        "2. Blocker: what is it waiting on",
        "3. Contain: stop the damage spreading",
        "4. Recover: make it whole again, safely",
        "5. Prevent: make this one boring next time",
    ]
    rules = sections(text)["Decision rules"]
    for action in ("**retry**", "**stop**", "**quarantine**", "**escalate**"):
        assert action in rules, action
    assert "max_attempts" in rules, "retries are bounded"


def test_heartbeat_logging_schema_lists_every_contract_field() -> None:
    text = (RUNBOOKS / "heartbeat-logging.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Za-z]+)`", text, re.M))
    documented |= {f for row in re.findall(r"^\| (`\w+`(?:, `\w+`)+) \|", text, re.M)
                   for f in re.findall(r"`(\w+)`", row)}  # fmt: skip
    contract_fields = {
        "ts", "level", "job", "runId", "jobId", "attempt", "worker", "step", "processed",
        "total", "elapsedMs", "heartbeat", "dependency", "timeoutMs", "outcome", "action",
        "stallReason", "waitingOn", "stack", "traceId", "spanId",
    }  # fmt: skip
    assert contract_fields <= documented, contract_fields - documented


def test_schema_matches_what_the_json_formatter_writes() -> None:
    """Every field name jobpulse.logs can write is documented."""
    source = (ROOT / "src" / "jobpulse" / "logs.py").read_text(encoding="utf-8")
    written = set(re.findall(r'out\["(\w+)"\]', source))
    written |= set(re.findall(r'\(n\.\w+, "(\w+)"\)', source))
    written |= {"waitingOn", "dependency"}
    text = (RUNBOOKS / "heartbeat-logging.md").read_text(encoding="utf-8")
    missing = {f for f in written if f"`{f}`" not in text}
    assert not missing, missing


def test_relative_links_between_runbooks_resolve() -> None:
    for page in RUNBOOKS.glob("*.md"):
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", text):
            assert (page.parent / target).is_file(), (page.name, target)
        for target, anchor in re.findall(r"\]\(([^)#:]*\.md)?#([^)]+)\)", text):
            linked = page.parent / target if target else page
            headings = {
                re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#{1,6} (.+)$", linked.read_text(encoding="utf-8"), re.M)
            }
            assert anchor in headings, (page.name, target, anchor)
