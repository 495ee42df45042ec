"""`runner status --coordinator`: the run's µ$ become USD only in its JSON and text."""

from __future__ import annotations

import json

from runner.coordination.status import RunStatus, render_status, run_json
from runner.money import Micros, micros


def _status(budget: Micros | None) -> RunStatus:
    return RunStatus(
        run="abc", name="t", manifest="t.yaml", manifest_sha256="0" * 64, run_id="",
        total=10, claimed=10, completed=7, failed=0, expired=0, leased=0, lapsed=0,
        returned=0, takeovers=0, budget=budget, spent=micros(0.14), reserved=Micros(0),
        ambiguous=micros(0.0125), stopped=None, workers=(),
    )  # fmt: skip


def test_json_keeps_the_usd_fields_in_their_place() -> None:
    doc = json.loads(json.dumps(run_json(_status(micros(0.15)))))
    money = {k: v for k, v in doc.items() if k.endswith("_usd")}
    assert money == {
        "budget_usd": 0.15,
        "spent_usd": 0.14,
        "reserved_usd": 0.0,
        "ambiguous_usd": 0.0125,
    }
    names = list(doc)
    assert names.index("takeovers") + 1 == names.index("budget_usd")
    assert names.index("ambiguous_usd") + 1 == names.index("stopped")
    assert run_json(_status(None))["budget_usd"] is None


def test_text_formats_every_amount_one_way() -> None:
    text = render_status([_status(micros(0.15))], "redis://x")
    assert "credits: $0.14 spent, $0.00 reserved, $0.0125 ambiguous of $0.15" in text
    assert "ambiguous of no cap" in render_status([_status(None)], "redis://x")
