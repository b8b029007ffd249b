"""Simulated users of the app, through the real HTTP API (and the A/B test proxy in front
of it): each logs in, searches as the generator's users do (a breed, a category, an
adjective and a category), and acts on what it is shown with the generator's click model
over the hidden post quality: it examines rank k with probability 1/(k+1)^0.8, selects an
examined result with probability 0.05 + 0.8 q, views it long with 0.2 + 0.7 q, likes it
with 0.6 q. It sends the app's access logs (impressions with positions, then the actions)
and likes, as the Android app does. So an experiment runs end to end on one machine."""

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd

from mlsys.common.logging import get_logger

log = get_logger(__name__)
SHOWN = 20
CATEGORY_WORDS = {"cat": ["猫", "ねこ", "ネコ"], "dog": ["犬", "いぬ", "イヌ"]}
ADJECTIVES = ["かわいい", "元気な", "眠そうな", "ふわふわの", "おとなしい", "やんちゃな", "小さな"]


@dataclass
class SimulationStats:
    searches: int = 0
    shown: int = 0
    selects: int = 0
    likes: int = 0
    failures: int = 0
    variants: dict[str, int] = field(default_factory=dict)


class SimulatedUsers:
    def __init__(self, api: str, quality: pd.Series, dataset: Path, users: int, seed: int):
        self.api, self.quality = api.rstrip("/"), quality.to_dict()
        people = json.loads((dataset / "user.json").read_text())
        handles = sorted(u["handle_name"] for u in people.values() if not u.get("deactivated"))
        rng = random.Random(seed)
        self.handles = rng.sample(handles, min(users, len(handles)))
        breeds = json.loads((dataset / "animal_subcategory.json").read_text())
        self.breeds = sorted(b["name_ja"] for b in breeds.values() if b["category"] > 0)
        self.seed = seed
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self.stats = SimulationStats()

    def _token(self, client: httpx.Client, handle: str) -> str:
        if handle not in self._tokens:
            response = client.post(
                "/v0/user/login", json={"handle_name": handle, "password": "password"}
            )
            response.raise_for_status()
            self._tokens[handle] = response.json()["token"]
        return self._tokens[handle]

    def _phrases(self, rng: random.Random) -> list[str]:
        kind = rng.random()
        if kind < 0.5:
            return [rng.choice(self.breeds)]
        if kind < 0.8:
            return [rng.choice(CATEGORY_WORDS[rng.choice(["cat", "dog"])])]
        return [rng.choice(ADJECTIVES), rng.choice(["猫", "犬"])]

    def _session(self, number: int) -> None:
        rng = random.Random(self.seed * 1_000_003 + number)
        handle = self.handles[rng.randrange(len(self.handles))]
        with httpx.Client(base_url=self.api, timeout=30) as client:
            headers = {"token": self._token(client, handle)}
            phrases = self._phrases(rng)
            answer = client.post(
                "/v0/animal/search",
                json={"phrases": phrases, "sort_by": "score"},
                params={"limit": SHOWN},
                headers=headers,
            )
            answer.raise_for_status()
            body = answer.json()
            results = body["results"]
            variant = answer.headers.get("x-ab-variant", "none")
            selects = likes = 0
            for position, result in enumerate(results):
                log_ = {"search_id": body["search_id"], "animal_id": result["id"],
                        "position": position, "phrases": phrases, "sort_by": "score"}  # fmt: skip
                client.post("/v0/access_log", json={**log_, "action": "impression"},
                            headers=headers).raise_for_status()  # fmt: skip
                q = float(self.quality.get(result["id"], 0.0))
                if rng.random() >= 1 / (position + 1) ** 0.8 or rng.random() >= 0.05 + 0.8 * q:
                    continue
                selects += 1
                client.post("/v0/access_log", json={**log_, "action": "select"},
                            headers=headers).raise_for_status()  # fmt: skip
                if rng.random() >= 0.2 + 0.7 * q:
                    continue
                client.post("/v0/access_log", json={**log_, "action": "see_long"},
                            headers=headers).raise_for_status()  # fmt: skip
                if rng.random() < 0.6 * q:
                    likes += 1
                    client.post("/v0/access_log", json={**log_, "action": "like"},
                                headers=headers).raise_for_status()  # fmt: skip
                    client.post("/v0/like", json={"animal_id": result["id"]}, headers=headers)
        with self._lock:
            self.stats.searches += 1
            self.stats.shown += len(results)
            self.stats.selects += selects
            self.stats.likes += likes
            self.stats.variants[variant] = self.stats.variants.get(variant, 0) + 1

    def run(self, searches: int, concurrency: int) -> SimulationStats:
        def one(number: int) -> None:
            try:
                self._session(number)
            except httpx.HTTPError as error:
                with self._lock:
                    self.stats.failures += 1
                log.warning("simulated search %d failed error=%r", number, error)

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(searches)))
        return self.stats
