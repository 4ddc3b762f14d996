"""The receiver's /metrics carries what ops/slo.toml's objectives read: requests by route
template and status class, recorded job runs and last successes, the outbox backlog."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import httpx
import pytest
from helpers import running
from slo_world import message, run

from faithflow_ops.config import Settings
from faithflow_ops.db import Database, utcnow
from receiver.app import create_app


@pytest.fixture
def base_url(db: Database, db_url: str) -> Iterator[str]:
    settings = Settings(
        database_url=db_url,
        integration_api_key="k" * 32,
        stripe_webhook_secrets=("whsec_slo_test",),
        webhook_worker=False,
    )
    with running(create_app(settings, db=db, jobs=[])) as url:
        yield url


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_requests_are_counted_by_route_template_and_status_class(base_url: str) -> None:
    assert httpx.get(base_url + "/healthz").status_code == 200
    refused = httpx.post(base_url + "/webhooks/stripe", content=b"{}")  # no signature
    assert refused.status_code == 400
    got = samples(httpx.get(base_url + "/metrics").text)
    count = "faithflow_http_request_duration_seconds_count"
    assert got[f'{count}{{method="GET",route="/healthz",status_class="2xx"}}'] == 1
    assert got[f'{count}{{method="POST",route="/webhooks/stripe",status_class="4xx"}}'] == 1
    bucket = 'faithflow_http_request_duration_seconds_bucket{le="0.25",method="GET"'
    assert any(k.startswith(bucket) for k in got), "the 0.25 s bucket the latency SLO reads"


def test_job_runs_and_outbox_are_read_from_the_database(db: Database, base_url: str) -> None:
    now = utcnow()
    last = now - dt.timedelta(minutes=3)
    with db.session() as session:
        run(session, "dunning", "succeeded", now - dt.timedelta(minutes=20))
        run(session, "dunning", "partial", last)
        run(session, "dunning", "failed", now - dt.timedelta(minutes=1))
        run(session, "dunning", "succeeded", now, dry_run=True)  # a preview: not counted
        run(session, "health_sweep", "abandoned", now - dt.timedelta(minutes=2))
        message(session, "sent", now - dt.timedelta(hours=1))
        message(session, "failed", now - dt.timedelta(hours=1), channel="sms")
        message(session, "queued", now - dt.timedelta(minutes=7))  # due 7 minutes ago
        message(session, "scheduled", now + dt.timedelta(hours=1))  # not due yet
    got = samples(httpx.get(base_url + "/metrics").text)
    runs = "faithflow_job_runs_recorded_total"
    assert got[f'{runs}{{job_name="dunning",status="succeeded"}}'] == 1
    assert got[f'{runs}{{job_name="dunning",status="partial"}}'] == 1
    assert got[f'{runs}{{job_name="dunning",status="failed"}}'] == 1
    assert got[f'{runs}{{job_name="health_sweep",status="abandoned"}}'] == 1
    stamp = got['faithflow_job_last_success_timestamp_seconds{job_name="dunning"}']
    assert stamp == pytest.approx(last.timestamp(), abs=1e-3)
    assert 'faithflow_job_last_success_timestamp_seconds{job_name="health_sweep"}' not in got
    finished = "faithflow_outbox_messages_finished_total"
    assert got[f'{finished}{{channel="email",status="sent"}}'] == 1
    assert got[f'{finished}{{channel="sms",status="failed"}}'] == 1
    assert got["faithflow_outbox_backlog"] == 1
    assert got["faithflow_outbox_oldest_waiting_seconds"] >= 7 * 60
    interval = "faithflow_job_schedule_interval_seconds"
    assert got[f'{interval}{{job_name="dunning"}}'] == 15 * 60  # */15 * * * *
    # no tenant label anywhere: the label sets stay small whatever the number of churches
    assert not any(re.search(r"[{,]tenant\w*=", name) for name in got)


def test_metric_names_and_labels_follow_prometheus_conventions(db: Database, base_url: str) -> None:
    """Counters end in _total, durations and ages are histograms or gauges in `_seconds`
    (base units), and no label is `job`/`instance` (Prometheus's target labels would rename
    it) or a tenant."""
    now = utcnow()
    with db.session() as session:
        run(session, "dunning", "succeeded", now)
        message(session, "sent", now)
    httpx.post(base_url + "/webhooks/stripe", content=b"{}")
    text = httpx.get(base_url + "/metrics").text
    types = dict(line.split(" ")[2:4] for line in text.splitlines() if line.startswith("# TYPE "))
    ours = {  # prometheus_client's `_created` series (creation time of a child) aside
        name: kind
        for name, kind in types.items()
        if name.startswith("faithflow_") and not name.endswith("_created")
    }
    assert len(ours) >= 12, sorted(ours)
    for line in text.splitlines():
        if not line.startswith("faithflow_"):
            continue
        name = re.split(r"[{ ]", line, maxsplit=1)[0]
        if name.endswith("_created"):
            continue
        family = next(f for f in sorted(ours, key=len, reverse=True) if name.startswith(f))
        kind = ours[family]
        if kind == "counter":
            assert name.endswith("_total"), name
        if kind == "histogram":
            assert family.endswith("_seconds"), family
        if set(family.split("_")) & {"duration", "latency", "waiting", "timestamp", "interval"}:
            assert family.endswith("_seconds"), family  # times in seconds, the base unit
        labels = set(re.findall(r"[{,](\w+)=", line))
        assert not labels & {"job", "instance"}, line
        assert not any(label.startswith("tenant") for label in labels), line
