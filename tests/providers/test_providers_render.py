"""providers/render.py against the loopback Render stand-in (tests/fakes/render.py): add (also
idempotent and after a lost answer), get, list with pagination, verify, delete, 401, 429 then
success, 5xx retries, missing settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes.providers import Reply
from fakes.render import KEY, SERVICE, RenderFake, render_error

from faithflow_ops.config import Settings
from faithflow_ops.errors import ConfigError
from faithflow_ops.providers._http import ProviderError, RetryPolicy
from faithflow_ops.providers.render import RenderAPI

SLEEPS: list[float] = []
POLICY = RetryPolicy(attempts=3, timeout=2.0, backoff=0.01, max_wait=0.05, sleep=SLEEPS.append)


@pytest.fixture
def render() -> Iterator[RenderFake]:
    SLEEPS.clear()
    with RenderFake().serve() as fake:
        yield fake  # type: ignore[misc]


def api(fake: RenderFake, key: str = KEY) -> RenderAPI:
    settings = Settings.from_env(
        {"RENDER_API_KEY": key, "RENDER_SERVICE_ID": SERVICE, "RENDER_API_BASE": fake.url}
    )
    return RenderAPI(settings, POLICY)


def test_add_a_subdomain(render: RenderFake) -> None:
    with api(render) as client:
        domain = client.add_domain("WWW.Grace.Test.")
    assert domain.name == "www.grace.test" and domain.domain_type == "subdomain"
    assert domain.verification_status == "unverified" and not domain.verified
    assert domain.id.startswith("cdm-") and domain.server_id == SERVICE
    assert domain.created_at is not None and domain.created_at.year == 2026
    sent = render.requests[-1]
    assert sent.method == "POST" and sent.path == f"/v1/services/{SERVICE}/custom-domains"
    assert sent.json() == {"name": "www.grace.test"}
    assert sent.headers["authorization"] == f"Bearer {KEY}"


def test_add_an_apex_returns_the_apex_and_render_adds_www(render: RenderFake) -> None:
    with api(render) as client:
        domain = client.add_domain("grace.test")
        listed = {d.name: d for d in client.list_domains()}
    assert domain.name == "grace.test" and domain.domain_type == "apex"
    assert listed["www.grace.test"].redirect_for_name == "grace.test"


def test_adding_twice_returns_the_existing_domain(render: RenderFake) -> None:
    with api(render) as client:
        first = client.add_domain("www.grace.test")
        again = client.add_domain("www.grace.test")
    assert again == first
    assert [r.method for r in render.requests] == ["POST", "POST", "GET"]
    assert len(render.domains) == 1


def test_a_retry_after_a_lost_answer_adopts_the_domain(render: RenderFake) -> None:
    # The first POST lands but its answer is a 502: the retry gets 409 and reads it back.
    render.domains.clear()
    created = render.new_domain("www.grace.test")
    render.queue("POST", render.base, render_error(502, "Bad Gateway"))
    with api(render) as client:
        domain = client.add_domain("www.grace.test")
    assert domain.id == created["id"]
    assert len(SLEEPS) == 1


def test_a_name_held_by_another_service_is_refused(render: RenderFake) -> None:
    render.taken_elsewhere.add("www.grace.test")
    with api(render) as client, pytest.raises(ProviderError) as info:
        client.add_domain("www.grace.test")
    assert info.value.status == 400 and info.value.exit_code == 2
    assert "already in use" in str(info.value)


def test_get_and_delete(render: RenderFake) -> None:
    with api(render) as client:
        added = client.add_domain("www.grace.test")
        assert client.get_domain(added.id) == added
        assert client.get_domain("www.grace.test") == added
        assert client.get_domain("nope.grace.test") is None
        assert client.delete_domain("www.grace.test") is True
        assert client.delete_domain("www.grace.test") is False  # already gone
        assert client.get_domain(added.id) is None
    assert render.requests[-3].method == "DELETE"


def test_verify_reads_the_state_back(render: RenderFake) -> None:
    with api(render) as client:
        client.add_domain("www.grace.test")
        assert not client.verify_domain("www.grace.test").verified
        render.dns_ready.add("www.grace.test")
        assert client.verify_domain("www.grace.test").verified
    verify = [r for r in render.requests if r.path.endswith("/verify")]
    assert verify[-1].path == f"/v1/services/{SERVICE}/custom-domains/www.grace.test/verify"


def test_verify_of_an_unknown_domain_is_refused(render: RenderFake) -> None:
    with api(render) as client, pytest.raises(ProviderError) as info:
        client.verify_domain("www.nobody.test")
    assert info.value.status == 404


def test_list_follows_the_cursor(render: RenderFake) -> None:
    for i in range(7):
        render.new_domain(f"www.church-{i}.test")
    with api(render) as client:
        domains = client.list_domains(page_size=3)
    assert [d.name for d in domains] == [f"www.church-{i}.test" for i in range(7)]
    pages = [r.params() for r in render.requests]
    assert pages[0] == {"limit": "3"} and pages[1]["cursor"] == "cdm-0003"
    assert len(pages) == 3


def test_an_empty_service_lists_nothing(render: RenderFake) -> None:
    with api(render) as client:
        assert client.list_domains() == []


def test_a_bad_key_is_a_401_not_retried(render: RenderFake) -> None:
    with api(render, key="rnd_wrong") as client, pytest.raises(ProviderError) as info:
        client.add_domain("www.grace.test")
    assert info.value.status == 401 and info.value.exit_code == 2 and info.value.attempts == 1
    assert "Authorization information is missing or invalid" in str(info.value)
    assert len(render.requests) == 1


def test_429_then_success_honours_retry_after(render: RenderFake) -> None:
    render.queue(
        "POST",
        render.base,
        Reply(429, {"id": "rate_limited", "message": "slow down"}, {"Retry-After": "0.02"}),
    )
    with api(render) as client:
        domain = client.add_domain("www.grace.test")
    assert domain.name == "www.grace.test"
    assert SLEEPS == [0.02]


def test_5xx_is_retried_then_reported(render: RenderFake) -> None:
    path = f"{render.base}/www.grace.test"
    render.queue("GET", path, *[render_error(500, "internal error")] * 3)
    with api(render) as client, pytest.raises(ProviderError) as info:
        client.get_domain("www.grace.test")
    assert info.value.status == 500 and info.value.attempts == 3 and info.value.exit_code == 1
    assert "after 3 attempts" in str(info.value) and "try again later" in str(info.value)
    assert len(SLEEPS) == 2


def test_5xx_then_success(render: RenderFake) -> None:
    render.queue("POST", render.base, render_error(503, "unavailable"))
    with api(render) as client:
        assert client.add_domain("www.grace.test").name == "www.grace.test"
    assert len(render.domains) == 1


def test_unreachable_render_is_retryable(render: RenderFake) -> None:
    settings = Settings.from_env(
        {
            "RENDER_API_KEY": KEY,
            "RENDER_SERVICE_ID": SERVICE,
            "RENDER_API_BASE": "http://127.0.0.1:1",
        }
    )
    with RenderAPI(settings, POLICY) as client, pytest.raises(ProviderError) as info:
        client.list_domains()
    assert info.value.status is None and info.value.exit_code == 1
    assert "could not reach Render" in str(info.value)


def test_check_is_reachable_and_authenticated(render: RenderFake) -> None:
    with api(render) as client:
        assert client.check() > 0
    with api(render, key="bad") as client, pytest.raises(ProviderError) as info:
        client.check()
    assert info.value.status == 401


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"RENDER_SERVICE_ID": SERVICE}, "RENDER_API_KEY"),
        ({"RENDER_API_KEY": KEY}, "RENDER_SERVICE_ID"),
    ],
)
def test_missing_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        RenderAPI(Settings.from_env(env))
