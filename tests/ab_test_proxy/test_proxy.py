"""The A/B test proxy in front of a real API (local profile): each mode splits as it says,
every search answer names its variant and is ordered by it, the access logs about a search
carry its variant, and a bad configuration stops it at start with the key named."""

import base64
import json
from collections import Counter
from pathlib import Path

import httpx
import pytest

from mlsys.ab_test_proxy.config import Experiment, InvalidConfig, load_experiment
from mlsys.ab_test_proxy.proxy import Assigner, create_app, user_of
from tests.helpers.cli import run_cli
from tests.helpers.http import ApiServer

pytestmark = pytest.mark.slow


def experiment(mode: str, weights=(0.5, 0.5), upstream="http://api.test") -> Experiment:
    return Experiment.model_validate({
        "name": "ranking", "mode": mode, "upstream": upstream,
        "variants": [{"name": "ranker", "weight": weights[0], "sort_by": "learn_to_rank"},
                     {"name": "likes", "weight": weights[1], "sort_by": "like"}],
    })  # fmt: skip


def test_random_mode_splits_by_the_weights():
    import random

    assigner = Assigner(experiment("random", (0.8, 0.2)), random.Random(0))
    counts = Counter(assigner.assign(None).name for _ in range(10_000))
    assert abs(counts["ranker"] / 10_000 - 0.8) < 0.02  # within 4 standard errors


def test_user_mode_keeps_a_user_on_one_variant_and_splits_users_by_weight():
    assigner = Assigner(experiment("user", (0.3, 0.7)))
    for user in ("a", "b", "c"):
        assert len({assigner.assign(user).name for _ in range(50)}) == 1
    shares = Counter(assigner.assign(f"user-{i}").name for i in range(10_000))
    assert abs(shares["ranker"] / 10_000 - 0.3) < 0.02


def test_there_is_no_mode_that_could_not_split_searches(tmp_path):
    """Issue 32, item 19: `animal` mode hashed the search's animal_id, which a search never
    has (its body forbids it): every search was drawn at random."""
    path = tmp_path / "experiment.yaml"
    path.write_text("name: x\nmode: animal\nupstream: http://a\nvariants:\n"
                    "- {name: a, weight: 1}\n- {name: b, weight: 1}")  # fmt: skip
    with pytest.raises(InvalidConfig, match=r"mode\b"):
        load_experiment(path)


def test_the_user_is_read_from_the_token_the_app_sends():
    claims = base64.urlsafe_b64encode(json.dumps({"sub": "u-42"}).encode()).decode().rstrip("=")
    assert user_of({"token": f"h.{claims}.s"}) == "u-42"
    assert user_of({"authorization": f"Bearer h.{claims}.s"}) == "u-42"
    assert user_of({"token": "garbage"}) is None and user_of({}) is None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("name: x\nmode: sometimes\nupstream: http://a\nvariants: []", "mode"),
        ("name: x\nmode: user\nupstream: http://a\nvariants:\n- {name: a, weight: 1}",
         "variants"),
        ("name: x\nmode: user\nupstream: http://a\nvariants:\n- {name: a, weight: 0}\n"
         "- {name: b, weight: 1}", "variants.0.weight"),
        ("name: x\nmode: user\nupstream: http://a\nvariants:\n- {name: a, weight: 1, "
         "sort_by: best}\n- {name: b, weight: 1}", "variants.0.sort_by"),
        ("name: x\nmode: user\nupstream: http://a\nvariants:\n- {name: a, weight: 1, "
         "colour: red}\n- {name: b, weight: 1}", "variants.0.colour"),
        ("name: x\nmode: user\nupstream: ftp://a\nvariants:\n- {name: a, weight: 1}\n"
         "- {name: a, weight: 1}", "upstream"),
    ],
)  # fmt: skip
def test_a_bad_configuration_exits_non_zero_naming_the_key(tmp_path, text, named):
    path = tmp_path / "experiment.yaml"
    path.write_text(text)
    with pytest.raises(InvalidConfig, match=rf"{named}\b"):
        load_experiment(path)
    result = run_cli("mlsys.ab_test_proxy", "serve", "--config", str(path), check=False)
    assert result.returncode == 2 and named in result.stderr


def test_a_good_configuration_is_accepted(tmp_path):
    path = tmp_path / "experiment.yaml"
    path.write_text(Path("infrastructure/ab_test_proxy/experiment.yaml").read_text())
    assert "user split" in run_cli("mlsys.ab_test_proxy", "check", "--config", str(path)).stdout


def test_answers_name_their_variant_and_access_logs_carry_it():
    """Against a recording upstream: what the API receives from the proxy."""
    received = []

    def api(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        received.append((request.url.path, body, request.headers.get("token")))
        if request.url.path == "/v0/animal/search":
            search_id = f"{len(received):032x}"
            return httpx.Response(200, content=f'{{"search_id":"{search_id}","hits":0}}'.encode(),
                                  headers={"content-type": "application/json"})  # fmt: skip
        return httpx.Response(201, json={"ok": True})

    app = create_app(experiment("user"), transport=httpx.MockTransport(api))
    claims = base64.urlsafe_b64encode(b'{"sub": "u-1"}').decode().rstrip("=")
    with ApiServer(app) as server, httpx.Client(base_url=server.url) as proxy:
        token = {"token": f"h.{claims}.s"}
        answer = proxy.post("/v0/animal/search", json={"phrases": ["ねこ"], "sort_by": "score"},
                            headers=token)  # fmt: skip
        variant = answer.headers["x-ab-variant"]
        assert answer.status_code == 200 and answer.headers["x-ab-experiment"] == "ranking"
        _, body, sent_token = received[-1]
        assert body["sort_by"] == {"ranker": "learn_to_rank", "likes": "like"}[variant]
        assert body["phrases"] == ["ねこ"] and sent_token == token["token"]
        search_id = answer.json()["search_id"]
        proxy.post("/v0/access_log", json={"search_id": search_id, "animal_id": "a" * 32,
                                           "action": "select"}, headers=token)  # fmt: skip
        assert received[-1][1]["model_name"] == f"ranking:{variant}"
        proxy.post("/v0/access_log", json={"search_id": "f" * 32, "animal_id": "a" * 32,
                                           "action": "select"}, headers=token)  # fmt: skip
        assert "model_name" not in received[-1][1]  # not a search of the experiment
        assert proxy.get("/v0/metadata", headers=token).status_code == 201  # passed through
        assert received[-1][0] == "/v0/metadata"
        metrics = proxy.get("/ab/metrics").text
        assert f'ab_requests_total{{status="200",variant="{variant}"}}' in metrics
        route = 'handler="/v0/animal/search",method="POST"'
        assert f'http_requests_total{{{route},status="2xx"}}' in metrics
        assert proxy.get("/ab/health").json()["experiment"] == "ranking"
