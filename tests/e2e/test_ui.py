"""The dashboard at /ui, driven in Debian's headless Chromium through Playwright.

The browser is the system's ``/usr/bin/chromium`` (``make install`` installs it with apt);
Playwright only drives it (no ``playwright install``, nothing downloaded). The API and a
real Celery worker are the e2e suite's own (``service`` fixture). The job page's screenshot
is written to ``var/test-artifacts/ui-job-page.png`` (the path is printed).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.digits import RESCALE, digits_classifier
from tests.e2e.conftest import REPO, Service
from tests.polling import wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "var" / "test-artifacts"
UI_TIMEOUT_MS = 15_000
JOB_TIMEOUT_MS = 120_000

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
if not CHROMIUM.exists():
    pytest.skip(
        "Debian's chromium is not installed (make install does it with apt as root: "
        "apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(UI_TIMEOUT_MS)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    outside: list[str] = []
    pg.on("request", lambda req: outside.append(req.url) if not _same_origin(req.url) else None)
    yield pg
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
    assert not outside, f"the page asked another origin: {outside}"


def _same_origin(url: str) -> bool:
    return url.startswith(("http://127.0.0.1:", "blob:", "data:"))


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return digits_classifier(
        tmp_path_factory.mktemp("ui-digits"), n_train=400, n_test=120, hidden=32, epochs=15
    )


def _enter_key(page: Any, service: Service, key: str) -> None:
    """By keyboard: the key page's field, then Enter."""
    page.goto(f"{service.base_url}/ui/")
    page.wait_for_url(re.compile(r"#/key$"))
    page.locator("#api-key").focus()
    page.keyboard.type(key)
    page.keyboard.press("Enter")


def _upload(page: Any, kind: str, path: Path) -> None:
    page.set_input_files(f"#{kind}-file", str(path))
    sync_api.expect(page.locator(f"#{kind}-file-status")).to_contain_text("Uploaded")
    sync_api.expect(page.locator(f"#{kind}-file-progress")).to_have_attribute("value", "100")
    sync_api.expect(page.locator(f"#{kind}-select")).not_to_have_value("")


def test_a_job_from_upload_to_delete(page: Any, service: Service, digits: dict[str, Any]) -> None:
    expect = sync_api.expect
    _enter_key(page, service, service.api_key)
    page.wait_for_url(re.compile(r"#/jobs$"))
    expect(page.locator("#banner")).to_be_hidden()

    page.get_by_role("link", name="New job").first.click()
    _upload(page, "model", digits["model"])
    _upload(page, "dataset", digits["npz"])
    page.select_option("#strategy-select", "magnitude")
    sparsity = page.locator("#f-body-strategy-sparsity")  # generated from the JSON Schema
    expect(page.locator("#f-body-strategy-sparsity-help")).to_contain_text("range ≥ 0, < 1")
    sparsity.fill("0.6")
    page.fill("#f-body-preprocessing-rescale", str(RESCALE))
    page.check("#f-body-exports-tflite")
    page.fill("#f-body-metadata", "suite=ui")
    page.click("#submit-job")

    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#job-header .status-succeeded")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    sent = service.client.get(f"/v1/jobs/{job_id}").json()
    assert sent["spec"]["strategy"]["sparsity"] == 0.6 and sent["spec"]["exports"] == ["tflite"]
    assert sent["metadata"] == {"suite": "ui"} and sent["dataset_id"]

    # the report: coloured deltas, the per-layer chart (and its table), latency per runtime
    expect(page.locator("#metrics-table")).to_be_visible()
    expect(
        page.locator("#metrics-table td.delta.worse, #metrics-table td.delta.better")
    ).not_to_have_count(0)
    layers = page.locator("figure.chart").filter(has_text="Sparsity per layer")
    expect(layers.locator("svg rect.bar")).to_have_count(2)
    speed = page.locator("figure.chart").filter(has_text="Latency speed-up")
    expect(speed.locator("svg rect.bar").first).to_be_visible()
    expect(page.locator("#events")).to_contain_text("succeeded")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "ui-job-page.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nUI job page screenshot: {shot}")
    layers.get_by_role("button", name="Show table").click()
    expect(layers.locator("table tbody tr")).to_have_count(2)
    expect(layers.locator("table")).to_contain_text("hidden/kernel")

    # downloads: the model in the input's format, byte for byte what the API serves
    with page.expect_download() as got:
        page.click("button[data-format='model']")
    downloaded = Path(got.value.path()).read_bytes()
    served = service.client.get(f"/v1/jobs/{job_id}/model").content
    assert hashlib.sha256(downloaded).digest() == hashlib.sha256(served).digest()
    assert got.value.suggested_filename.endswith(".keras")
    expect(page.locator("button[data-format='model_tflite']")).to_be_visible()

    # the list, filtered by its label, shows it without a reload
    page.get_by_role("link", name="← All jobs").click()
    page.fill("#label-filter", "suite=ui")
    page.press("#label-filter", "Enter")
    expect(page.locator(f"tr[data-job='{job_id}'] .status-succeeded")).to_be_visible()

    # the same job open at phone width in a second tab: nothing scrolls sideways, and when the
    # first tab deletes the job, this one says so
    phone = page.context.new_page()
    phone.set_viewport_size({"width": 390, "height": 844})
    _enter_key(phone, service, service.api_key)
    phone.wait_for_url(re.compile(r"#/jobs$"))
    phone.goto(f"{service.base_url}/ui/#/jobs/{job_id}")
    expect(phone.locator("#metrics-table")).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390

    page.locator(f"tr[data-job='{job_id}'] a").click()
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("button", name="Yes, delete").click()
    page.wait_for_url(re.compile(r"#/jobs$"))
    assert service.client.get(f"/v1/jobs/{job_id}").status_code == 404
    expect(phone.locator("#job-gone")).to_contain_text("no longer exists", timeout=10_000)


def test_field_errors_and_keys(
    page: Any, service: Service, other_tenant: Service, digits: dict[str, Any]
) -> None:
    expect = sync_api.expect
    mine = service.upload(digits["model"])["id"]
    theirs = other_tenant.upload(digits["model"])["id"]
    _enter_key(page, service, "pk_not-a-real-key")
    expect(page.locator("#api-key-error")).to_contain_text("This key was refused")
    page.evaluate("sessionStorage.setItem('prunekit.apiKey', 'pk_revoked')")  # a stale key
    page.goto(f"{service.base_url}/ui/#/jobs")
    expect(page.locator("#banner")).to_contain_text("Your API key was refused")
    page.wait_for_url(re.compile(r"#/key$"))

    page.fill("#api-key", service.api_key)
    page.click("#api-key ~ .actions button[type=submit]")
    page.wait_for_url(re.compile(r"#/jobs$"))

    # the models list shows this tenant's models only
    page.goto(f"{service.base_url}/ui/#/models")
    expect(page.locator(f"#models-table tr[data-id='{mine}']")).to_be_visible()
    expect(page.locator(f"#models-table tr[data-id='{theirs}']")).to_have_count(0)

    # a value outside the schema's range: the API's 422 appears next to the field it names
    page.goto(f"{service.base_url}/ui/#/new")
    page.select_option("#model-select", mine)
    page.fill("#f-body-strategy-sparsity", "1.5")
    page.click("#submit-job")
    field = page.locator("[data-field='body.strategy.sparsity']")
    expect(field.locator(".field-error")).to_contain_text("less than 1")
    expect(page.locator("#f-body-strategy-sparsity")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-body-strategy-sparsity")).to_be_focused()
    assert page.url.endswith("#/new")


RENDER_SECTIONS = """async () => {
  const r = await import('/ui/js/report.js');
  const curves = {plot: {y: 'accuracy'}, layers: [
    {name: 'fc1/kernel', size: 100, points: [{ratio: 0.5, accuracy: 0.9, loss: 0.3, drop: 0.01},
                                              {ratio: 0.9, accuracy: 0.6, loss: 1.2, drop: 0.31}]},
    {name: 'fc2/kernel', size: 10, points: [{ratio: 0.5, accuracy: 0.91, loss: 0.3, drop: 0},
                                            {ratio: 0.9, accuracy: 0.85, loss: 0.5, drop: 0.1}]}]};
  // the shape an `auto` job's report has: candidates by index, the front and the pick by index
  const c = (index, ratio, nonzero_params, val_accuracy, drop, within_budget) =>
    ({index, ratio, nonzero_params, val_accuracy, drop, within_budget});
  const search = {objective: 'size', chosen: 5, pareto_front: [3, 5, 9],
    why: 'smallest within 1 point', sensitivity: {unstructured: curves}, candidates: [
      c(3, 0.5, 900, 0.95, 0, true), c(5, 0.8, 500, 0.94, 0.01, true),
      c(7, 0.7, 600, 0.93, 0.02, false), c(9, 0.9, 300, 0.8, 0.15, false)]};
  const found = r.sensitivityReports({}, {search});
  const sf = r.sensitivityFigure(found[0][1], found[0][0]);
  const pf = r.paretoFigure({search});
  return {
    titles: found.map((f) => f[0]),
    lines: sf.querySelectorAll('svg polyline').length,
    dots: sf.querySelectorAll('svg circle').length,
    sensRows: sf.querySelectorAll('table tbody tr').length,
    front: r.paretoFlags(search.candidates.map((c) => ({x: c.nonzero_params, y: c.val_accuracy}))),
    chosen: [...pf.querySelectorAll('svg circle.chosen')].map((c) => c.textContent),
    frontLine: pf.querySelector('svg polyline').getAttribute('points').split(' ').length,
    paretoRows: [...pf.querySelectorAll('table tbody tr')].map((tr) => tr.textContent),
    why: pf.textContent.includes('Why this pick: smallest within 1 point'),
    directions: ['accuracy', 'loss', 'size_bytes.compressed', 'sparsity'].map(r.direction),
    runtime: r.runtimeName('litert_tflite_int8_2threads'),
  };
}"""


def test_report_sections_other_jobs_have_render(page: Any, service: Service) -> None:
    """Sensitivity curves and a search's Pareto front, from the report keys an `auto` job
    writes (``search``: candidates, ``pareto_front``, ``chosen`` by index, ``sensitivity``)."""
    page.goto(f"{service.base_url}/ui/#/key")
    got = page.evaluate(RENDER_SECTIONS)
    assert got["titles"] == ["Sensitivity (unstructured)"]
    assert got["lines"] == 2 and got["dots"] == 4 and got["sensRows"] == 4
    # (600, 0.93) is beaten by (500, 0.94): off the front; the others are not dominated
    assert got["front"] == [True, True, False, True]
    assert got["chosen"] == ["#5 ratio 0.8: 500, 0.94 (chosen)"]
    assert got["frontLine"] == 3  # the report's pareto_front: indices 3, 5 and 9
    assert got["paretoRows"][2] == "#7 ratio 0.76000.930.02nono"  # not within budget, off the front
    assert got["why"]
    assert got["directions"] == [1, -1, -1, 0]
    assert got["runtime"] == "LiteRT tflite_int8, 2 threads"


def test_cancel_from_the_job_page_after_its_event_stream_dropped(
    page: Any, service: Service, digits: dict[str, Any]
) -> None:
    """A running job's page whose event stream ends after one event (a dropped connection)
    follows again with ``Last-Event-ID``, shows each event once, and cancels the job."""
    expect = sync_api.expect
    model = service.upload(digits["model"])
    assert service.wait_inspection(model["id"])["inspection"]["status"] == "succeeded"
    with digits["npz"].open("rb") as f:
        dataset = service.client.post("/v1/datasets", files={"file": ("d.npz", f)}).json()
    body = {
        "model_id": model["id"], "dataset_id": dataset["id"],
        "strategy": {"name": "magnitude", "sparsity": 0.5},
        "fine_tune": {"epochs": 1000, "batch_size": 8}, "preprocessing": {"rescale": RESCALE},
    }  # fmt: skip
    job_id = service.client.post("/v1/jobs", json=body).json()["id"]
    wait_until(
        lambda: service.client.get(f"/v1/jobs/{job_id}").json()["status"] == "running",
        60, what="the job running",
    )  # fmt: skip
    so_far = service.client.get(f"/v1/jobs/{job_id}/events").json()["items"]
    streams: list[str | None] = []  # each event stream's Last-Event-ID

    def drop_the_first_stream(route: Any, request: Any) -> None:
        if request.headers.get("accept") != "text/event-stream":
            route.continue_()
            return
        streams.append(request.headers.get("last-event-id"))
        if len(streams) > 1:
            route.continue_()
            return
        # the first stream repeats what the page has already read, then the connection ends
        sse = "".join(
            f"id: {e['seq']}\nevent: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in so_far
        )
        route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=sse)

    page.route(re.compile(rf".*/v1/jobs/{job_id}/events$"), drop_the_first_stream)
    _enter_key(page, service, service.api_key)
    page.wait_for_url(re.compile(r"#/jobs$"))
    page.goto(f"{service.base_url}/ui/#/jobs/{job_id}")
    expect(page.locator("#job-header .status-running")).to_be_visible()
    for _ in range(100):  # the page follows again (after 2 s); route handlers run meanwhile
        if len(streams) >= 2:
            break
        page.wait_for_timeout(100)
    last_seen = max(e["seq"] for e in so_far)
    assert len(streams) >= 2 and streams[1] is not None and int(streams[1]) >= last_seen, streams
    page.get_by_role("button", name="Cancel").click()
    page.get_by_role("button", name="Yes, cancel").click()
    expect(page.locator("#job-header .status-cancelled")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    assert service.client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    expect(page.locator("#events")).to_contain_text("cancelled")
    seqs = page.locator("#events li").evaluate_all("items => items.map(li => li.dataset.seq)")
    assert len(seqs) == len(set(seqs)), seqs  # no event shown twice
