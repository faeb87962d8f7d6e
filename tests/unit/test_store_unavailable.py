"""Redis out of reach (restart, failover) answers 503 problem+json with Retry-After, not 500.

Found by the chaos drill (``bench/chaos_drill.py``): while its Redis restarted, ``GET
/v1/jobs`` answered 500 ``internal-error``.
"""

from __future__ import annotations

import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.problems import MEDIA_TYPE, install
from core.embedded_redis import free_port


def _app(client: redis.Redis) -> FastAPI:
    app = FastAPI()
    install(app)

    @app.get("/read")
    def read() -> dict[str, str | None]:
        return {"value": client.get("k")}

    @app.get("/bug")
    def bug() -> None:
        raise RuntimeError("a real bug")

    return app


def test_unreachable_redis_is_503_with_retry_after() -> None:
    nobody = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    with TestClient(_app(nobody), raise_server_exceptions=False) as http:
        resp = http.get("/read")
        assert resp.status_code == 503, resp.text
        assert resp.headers["content-type"].startswith(MEDIA_TYPE)
        assert resp.headers["retry-after"] == "1"
        assert resp.json()["type"].endswith("store-unavailable")
        assert http.get("/bug").status_code == 500  # other failures stay server errors


def test_redis_timeout_is_503() -> None:
    class Silent(redis.Redis):
        def get(self, name: object) -> None:  # what a stalled connection raises
            raise redis.TimeoutError("Timeout reading from socket")

    with TestClient(_app(Silent()), raise_server_exceptions=False) as http:
        assert http.get("/read").status_code == 503
