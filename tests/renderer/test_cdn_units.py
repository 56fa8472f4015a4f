"""The CDN purge APIs' requests and the plan's rate limit, as pure logic."""

from __future__ import annotations

import json
import time

import pytest

from renderer import cdn
from renderer.purge import Purge
from renderer.rate_limit import TokenBucket
from renderer.settings import Settings


def test_fastly_batches_keys_by_256_and_marks_only_soft_ones() -> None:
    api = cdn.FastlyApi("https://api.fastly.com/", "svc", "tok")
    calls = api.calls(Purge(hard=tuple(f"h{n}" for n in range(300)), soft=("home", "section-rio")))
    assert [c.url for c in calls] == ["https://api.fastly.com/service/svc/purge"] * 3
    assert [len(c.headers["Surrogate-Key"].split()) for c in calls] == [256, 44, 2]
    assert [c.headers.get("Fastly-Soft-Purge") for c in calls] == [None, None, "1"]
    assert all(c.headers["Fastly-Key"] == "tok" for c in calls)


def test_cloudflare_batches_tags_by_100_hard_and_soft_alike() -> None:
    api = cdn.CloudflareApi("https://api.cloudflare.com", "zone", "tok")
    calls = api.calls(Purge(hard=tuple(f"t{n}" for n in range(150)), soft=("home", "t0")))
    assert [c.url for c in calls] == ["https://api.cloudflare.com/client/v4/zones/zone/purge_cache"] * 2
    tags = [json.loads(c.body or b"")["tags"] for c in calls]
    assert [len(t) for t in tags] == [100, 51] and tags[1][-1] == "home"  # t0 once
    assert calls[0].headers["Authorization"] == "Bearer tok"


def test_cloudflare_success_needs_its_success_flag() -> None:
    api = cdn.CloudflareApi("https://api.cloudflare.com", "zone", "tok")
    api.check(200, b'{"success": true, "errors": []}', {})
    with pytest.raises(cdn.CdnRefused, match="10000"):
        api.check(200, b'{"success": false, "errors": [{"code": 10000}]}', {})
    with pytest.raises(cdn.CdnRefused) as refused:
        api.check(429, b"{}", {"Retry-After": "7"})
    assert refused.value.retry_after == 7.0 and not cdn.is_transient(refused.value)
    assert cdn.is_transient(cdn.CdnRefused(503, "down"))


def test_the_bucket_allows_a_burst_then_the_rate_and_a_429_holds_it_back() -> None:
    bucket = TokenBucket(rate=10.0, burst=3)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = bucket.take()
    assert 0.05 < wait <= 0.1  # a token every 100 ms
    time.sleep(wait)
    assert bucket.take() == 0.0
    assert 4.9 < bucket.hold(5) <= 5.0
    assert 4.9 < bucket.take() <= 5.0


def test_a_purger_needs_its_settings() -> None:
    assert cdn.make_api("none", Settings()) is None
    with pytest.raises(ValueError, match="FASTLY_API_TOKEN, FASTLY_SERVICE_ID"):
        cdn.make_api("fastly", Settings())
    with pytest.raises(ValueError, match="none, fastly or cloudflare"):
        cdn.make_api("akamai", Settings())
    made = cdn.make_api("cloudflare", Settings(cloudflare_zone_id="z", cloudflare_api_token="t"))
    assert isinstance(made, cdn.CloudflareApi)
