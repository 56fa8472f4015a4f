"""Configuration that protects itself: weak editor tokens refused at start, and each path of the
code talking to the right MongoDB member."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import pytest
from pymongo import ReadPreference

from devstack import servers
from devstack.samples import load_samples, sample_articles
from renderer.services import Services
from renderer.settings import Settings, available_cpus
from renderer.tokens import usable_tokens
from tests.conftest import StackClients
from tests.helpers import request, unique_slug, wait_until
from tests.renderer.test_publish import article

STRONG = "s" * 40


def test_tokens_shorter_than_32_characters_or_from_the_docs_are_refused(caplog: pytest.LogCaptureFixture) -> None:
    assert usable_tokens(("short", "replace-with-a-long-random-token", STRONG)) == (STRONG,)
    assert "EDITOR_TOKENS #1 is shorter than 32 characters: refused" in caplog.text
    assert "EDITOR_TOKENS #2 is a placeholder from the docs: refused" in caplog.text
    assert "short" not in caplog.text.replace("shorter", "")  # tokens are never logged


def test_the_api_answers_403_for_a_refused_token_and_works_with_a_strong_one(
    make_stack: Callable[..., StackClients],
) -> None:
    s = make_stack(varnish=False)
    api = servers.renderer(
        s.stack.run_dir,
        servers.free_port(),
        {**s.stack.env, "PROCESSES": "1", "EDITOR_TOKENS": f"curto,replace-with-a-long-random-token,{STRONG}"},
    ).start()
    try:
        url = f"http://127.0.0.1:{api.port}"
        body = json.dumps(article()).encode()
        for token, status in (("curto", 403), ("replace-with-a-long-random-token", 403), (STRONG, 201)):
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            assert request(url, "PUT", f"/api/articles/{unique_slug()}", body, headers).status == status, token
        wait_until(lambda: "is a placeholder from the docs: refused" in api.log_path.read_text(), timeout=5)
    finally:
        api.stop()


def test_writes_and_the_reads_that_decide_them_use_the_primary() -> None:
    settings = Settings(mongodb_url="mongodb://127.0.0.1:1/?readPreference=secondaryPreferred")
    services = Services.build(settings)
    # Pages follow the configured preference; the editors' path, the primary.
    assert services.mongo.collection.read_preference == ReadPreference.SECONDARY_PREFERRED
    assert services.publisher.mongo.collection.read_preference == ReadPreference.PRIMARY


def test_processes_follow_the_container_cpu_limit(tmp_path: Path) -> None:
    limit = tmp_path / "cpu.max"
    limit.write_text("150000 100000\n")  # 1.5 CPUs
    assert available_cpus(str(limit)) == min(2, len(os.sched_getaffinity(0)))
    limit.write_text("max 100000\n")
    assert available_cpus(str(limit)) == len(os.sched_getaffinity(0))
    assert available_cpus(str(tmp_path / "none")) == len(os.sched_getaffinity(0))


def test_the_sample_loader_never_overwrites_an_editors_change(stack: StackClients) -> None:
    assert len({a["slug"] for a in sample_articles()}) == len(sample_articles())
    url, db = stack.stack.env["MONGODB_URL"], unique_slug("amostras")
    assert load_samples(url, db) == len(sample_articles())
    stack.mongo[db]["articles"].update_one({"_id": sample_articles()[0]["slug"]}, {"$set": {"title": "Editado"}})
    assert load_samples(url, db) == 0
    assert stack.mongo[db]["articles"].find_one({"_id": sample_articles()[0]["slug"]})["title"] == "Editado"
    stack.mongo.drop_database(db)
