"""/ui serves the dashboard's own files only, with a policy that keeps the page on this origin."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.ui.endpoints import CSP, FILES


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app())


def test_the_page_and_its_modules_need_no_key_and_carry_the_policy(client: TestClient) -> None:
    resp = client.get("/ui", follow_redirects=False)
    assert resp.status_code == 307 and resp.headers["location"] == "/ui/"
    page = client.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CSP
    assert "connect-src 'self'" in CSP and "default-src 'none'" in CSP
    assert 'src="js/main.js"' in page.text
    main = client.get("/ui/js/main.js")
    assert main.headers["content-type"].startswith("text/javascript")
    assert client.head("/ui/app.css").status_code == 200


def test_every_module_the_page_imports_is_served(client: TestClient) -> None:
    for name in [n for n in FILES if n.endswith(".js")]:
        text = client.get(f"/ui/{name}").text
        base = name.rsplit("/", 1)[0]
        for target in re.findall(r"from '(\.{1,2}/[^']+)'", text):
            parts = [*base.split("/"), *target.split("/")]
            resolved: list[str] = []
            for p in parts:
                if p == "..":
                    resolved.pop()
                elif p != ".":
                    resolved.append(p)
            assert "/".join(resolved) in FILES, f"{name} imports {target}, which is not served"


@pytest.mark.parametrize(
    "path", ["/ui/../app/main.py", "/ui/%2e%2e/app/main.py", "/ui/endpoints.py", "/ui/js/nope.js"]
)
def test_nothing_outside_the_static_folder_is_served(client: TestClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 404
    assert "import" not in resp.text
