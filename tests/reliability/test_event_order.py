"""A backlog read out of order across topics, on the real broker: a worker started after the
platform has published (a first deployment, a restart after an outage) reads each topic at its
own pace. A payout read before the profile it must be judged against waits for it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import DAYLIGHT, metric_value, read_topic, run, wait_for, worker_process
from tests.reliability.conftest import Broker

pytestmark = pytest.mark.integration


def _event(kind: str, at: str, account: str, **fields: Any) -> dict[str, Any]:
    return {"schema_version": 1, "event_id": f"{account}-{kind}-{at}", "type": kind,
            "occurred_at": at, "account_id": account, **fields}  # fmt: skip


def _payout(account: str, day: int, country: str) -> dict[str, Any]:
    return _event("payout_requested", f"2026-03-{day:02d}T10:00:00Z", account,
                  payout_id=f"po-{account}", amount="950.00", currency="USD", method="bank",
                  route=[], destination={"fingerprint": f"dst-{account}", "holder_name": "Li Wei",
                                         "country": country, "institution": "Bank of China"})  # fmt: skip


def test_payouts_read_ahead_of_profiles_invent_nothing(own_broker: Broker, tmp_path: Path) -> None:
    """60 benign freelancers in China, verified in China, paid to Chinese banks; their
    profiles sit behind 20,000 other profile events on platform.accounts, so the worker reads
    every payout long before their profiles. 5 accounts with no profile at all show that the
    payouts are still judged, once the accounts topic is consumed to its end."""
    run_id = uuid.uuid4().hex[:6]
    china = [f"cnpay-{run_id}-{n}" for n in range(60)]
    ghosts = [f"ghost-{run_id}-{n}" for n in range(5)]
    events = [
        _event("profile_updated", f"2026-01-0{1 + n % 4}T{n % 24:02d}:{n % 60:02d}:00Z",
               f"filler-{run_id}-{n % 3000}", display_name=f"Filler {n}")
        for n in range(20_000)
    ]  # fmt: skip
    for account in china:
        events.append(_event("account_created", "2026-01-05T08:00:00Z", account,
                             role="freelancer", declared_country="CN",
                             declared_timezone="Asia/Shanghai"))  # fmt: skip
        events.append(_event("identity_verified", "2026-01-06T08:00:00Z", account,
                             legal_name="Li Wei", document_country="CN",
                             address_fingerprint=f"addr-{account}"))  # fmt: skip
    events += [_payout(account, 2 + n % 20, "CN") for n, account in enumerate(china + ghosts)]
    path = tmp_path / "backlog.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")

    # The backlog, no worker yet (a broker of its own: its findings stay out of other tests').
    run([DAYLIGHT, "produce", str(path)], env=own_broker.env, check=True, timeout=300)
    with worker_process(tmp_path, **own_broker.env) as worker:
        consumed = lambda: metric_value(  # noqa: E731
            worker["metrics_port"], "daylight_events_consumed_total", {"topic": "platform.accounts"}
        )
        assert wait_for(lambda: consumed() >= len(events) - len(china + ghosts), timeout=300), (
            worker["log"].read_text()[-3000:]
        )

        def ours(messages: list[Any]) -> list[dict[str, Any]]:
            found = [orjson.loads(m.value()) for m in messages]
            return [
                f for f in found
                if f["finding_info"]["analytic"]["uid"] == "payout_routing"
                and f["resources"][0]["uid"].endswith(tuple(f"-{run_id}-{n}" for n in range(60)))
            ]  # fmt: skip

        findings = ours(
            read_topic(
                "daylight.alerts",
                lambda got: {f["resources"][0]["uid"] for f in ours(got)} >= set(ghosts),
                timeout=180,
                settle=5,
                servers=own_broker.servers,
            )
        )
    flagged = sorted({f["resources"][0]["uid"] for f in findings})
    assert set(flagged) >= set(ghosts), "payouts with no profile at all were never judged"
    invented = [account for account in flagged if account in china]
    assert not invented, f"{len(invented)} of {len(china)} China-based freelancers flagged"
    assert all("none declared or verified" in f["message"] for f in findings)
