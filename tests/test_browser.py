"""The dashboard and the API reference in a real headless Chromium, against the real service and a worker.

Driven by Playwright for Python with the system's Chromium (Debian's `chromium` package; Playwright's own
browser download is not needed). Skipped when that browser is missing. With EPOCHAL_SCREENSHOT_DIR set,
the pages are also saved there as PNG files (docs/screenshots/ was made this way).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from tests.support import ADMIN, Service, running_service, wait_until_finished

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Chromium at {CHROMIUM} (Debian: apt-get install chromium); .ci/run installs it",
        allow_module_level=True,
    )
playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is in requirements/dev.txt")
expect = playwright_api.expect

pytestmark = pytest.mark.e2e

QUEUE = "e2e-browser"
PARKED = "e2e-browser-parked"  # accepted by the API, served by no worker: its jobs stay queued until cancelled
ONE_SLOT = "e2e-browser-one-slot"  # served by no worker either, with one slot: a second job there waits its turn
TINY = {"train_size": "300", "epochs": "2", "batch_size": "64"}  # a job of a few seconds on a CPU
TRAINED_S = 240_000  # ms: the worker's first job also pays TensorFlow's start on a busy machine
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Records every value the curves' point count takes, so the test can tell live growth from a finished page.
WATCH_POINTS = """
window.__points = [];
document.addEventListener("DOMContentLoaded", () => {
  new MutationObserver((records) => {
    // A record holds the value before its change; the value after it is the next record's (or the current) one.
    // (r.target.dataset.points is the value when the callback runs, which may be several changes later.)
    for (const r of records) window.__points.push(Number(r.oldValue || 0));
  }).observe(document.body, { subtree: true, attributes: true, attributeOldValue: true,
                              attributeFilter: ["data-points"] });
});
"""
# Every Content-Security-Policy violation of a page, handed to the test as it happens (a binding of the context).
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => window.__cspViolation({
  directive: e.effectiveDirective, blocked: e.blockedURI, page: e.documentURI, sample: e.sample }));
"""
# What the policy refuses on purpose: ReDoc always shows its logo from its CDN (and hides it when it does not load).
EXPECTED_CSP_VIOLATIONS = {("img-src", "https://cdn.redoc.ly/redoc/logo-mini.svg")}


@pytest.fixture(scope="module")
def service(migrated_database: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with pytest.MonkeyPatch.context() as patch:
        # Event streams closed by the server every second: the dashboard must reconnect with Last-Event-ID
        # while a job trains, as it would after the production limit or a dropped connection.
        patch.setenv("EPOCHAL_EVENTS_MAX_S", "1")
        folder, slots = tmp_path_factory.mktemp("browser"), {"EPOCHAL_QUEUE_SLOTS": f"{ONE_SLOT}=1"}
        with running_service(folder, QUEUE, ["browser-worker"], queues=[PARKED, ONE_SLOT], env=slots) as running:
            yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Watched:
    """What a page did that it should not: requests to other hosts, and what its CSP refused."""

    outside: list[str] = field(default_factory=list)
    violations: list[dict[str, str]] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def unexpected(self) -> list[Any]:
        """The refusals, from either source, that are not in EXPECTED_CSP_VIOLATIONS."""
        events = [v for v in self.violations if (v["directive"], v["blocked"]) not in EXPECTED_CSP_VIOLATIONS]
        lines = [text for text in self.console if not any(b in text for _, b in EXPECTED_CSP_VIOLATIONS)]
        return [*events, *lines]


@pytest.fixture
def watched() -> Watched:
    return Watched()


@pytest.fixture
def page(browser: Any, service: Service, watched: Watched) -> Iterator[Any]:
    """A fresh browser context that can reach the service only (any other host is blocked and remembered), and
    whose pages may not break their Content-Security-Policy: each violation fails the test on the way out."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=service.base_url)

    def local_only(route: Any) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            watched.outside.append(route.request.url)
            route.abort()

    def note_console(message: Any) -> None:
        # Chromium reports each refusal on the console too, also where no event reaches the page (a worker's).
        if "Content Security Policy" in message.text:
            watched.console.append(message.text)

    context.route("**/*", local_only)
    context.expose_binding("__cspViolation", lambda _source, violation: watched.violations.append(violation))
    context.set_default_timeout(30_000)
    opened = context.new_page()
    opened.add_init_script(REPORT_CSP_VIOLATIONS)
    opened.add_init_script(WATCH_POINTS)
    opened.on("console", note_console)
    yield opened
    context.close()
    assert watched.outside == [], f"requests left the machine: {watched.outside}"
    assert watched.unexpected() == [], "the page broke its Content-Security-Policy"


def screenshot(page: Any, name: str) -> None:
    folder = os.environ.get("EPOCHAL_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=False)


def sign_in(page: Any, service: Service) -> None:
    page.goto("/ui/")
    page.fill("#key-input", service.api_key)
    page.click("#key-form button[type=submit]")
    expect(page.locator("#key-state")).to_have_text("key set")


def fill(page: Any, form: str, values: dict[str, str]) -> None:
    for name, value in values.items():
        page.fill(f"{form} [name={name}]", value)


def digit_png() -> bytes:
    """A white 7 on black, 28x28, drawn here: the kind of picture an MNIST network takes."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(image).line([(7, 6), (21, 6), (12, 23)], fill=255, width=3)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def drop_file(page: Any, selector: str, content: bytes, name: str) -> None:
    """A real drop event carrying a file, as dragging it from the desktop produces."""
    transfer = page.evaluate_handle(
        """([data, name]) => {
          const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
          const transfer = new DataTransfer();
          transfer.items.add(new File([bytes], name, { type: "image/png" }));
          return transfer;
        }""",
        [base64.b64encode(content).decode(), name],
    )
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def test_a_person_trains_watches_inspects_and_predicts(page: Any, service: Service) -> None:
    sign_in(page, service)
    streams: list[dict[str, str]] = []
    page.on("request", lambda request: streams.append(request.headers) if "/events" in request.url else None)
    page.click("text=New experiment or sweep")
    fill(page, "#experiment-form", {"name": "browser digits", **TINY})
    # The network's summary beside the form follows its batch size.
    expect(page.locator("#network-summary")).to_contain_text(f"training batch of {TINY['batch_size']}.")
    screenshot(page, "new-experiment")
    page.click("#experiment-form button[type=submit]")
    expect(page.locator("h1")).to_contain_text("Experiment #")
    experiment_id = int(page.url.rsplit("/", 1)[1])

    # The curves grow while it trains: one point per finished epoch, seen arriving one by one.
    expect(page.locator("#curves")).to_have_attribute("data-points", "2", timeout=TRAINED_S)
    seen = [*page.evaluate("window.__points"), int(page.locator("#curves").get_attribute("data-points") or 0)]
    assert 1 in seen and seen.index(1) < seen.index(2), f"the curve did not grow epoch by epoch: {seen}"
    assert seen == sorted(seen), f"points went missing on the way: {seen}"
    # Reconnections continued after the last event seen, with the key in the header and never in the URL.
    assert len(streams) >= 2, streams
    assert any(headers.get("last-event-id") for headers in streams[1:]), streams
    assert all(headers.get("authorization") == f"Bearer {service.api_key}" for headers in streams)
    expect(page.locator("#status [data-status]")).to_have_text("succeeded", timeout=TRAINED_S)

    matrix = page.locator("#confusion-matrix")
    expect(matrix).to_be_visible()  # open from the start, not folded away
    assert matrix.locator("tbody tr").count() == 10
    expect(page.locator("#classification-report")).to_contain_text("macro avg")
    expect(page.locator("#model-contract")).to_contain_text("0..255, raw")
    expect(page.locator("#model-contract")).to_contain_text("float32")

    digit = digit_png()
    drop_file(page, "#dropzone", digit, "seven.png")
    label = page.locator("#prediction-label")
    expect(label).to_have_text(_api_label(service, experiment_id, digit))
    assert page.locator("#probabilities .bar").count() == 10
    screenshot(page, "experiment")
    page.locator("#prediction").scroll_into_view_if_needed()
    screenshot(page, "prediction")

    with page.expect_download() as downloading:
        page.click("#download-model")
    assert downloading.value.suggested_filename == "best_model.h5"

    page.goto("/ui/#/experiments")
    expect(page.locator(f"#experiments tr[data-id='{experiment_id}']")).to_contain_text("succeeded")
    screenshot(page, "experiments")


def _api_label(service: Service, experiment_id: int, image: bytes) -> str:
    with service.http() as http:
        response = http.post(f"/experiments/{experiment_id}/predictions", files={"file": ("seven.png", image)})
    assert response.status_code == 200, response.text
    return str(response.json()["label"])


def test_a_sweep_shows_its_ranked_configurations(page: Any, service: Service) -> None:
    sign_in(page, service)
    page.goto("/ui/#/new")
    fill(page, "#sweep-form", {"name": "browser optimizers", **TINY})
    page.click("#sweep-form button[type=submit]")
    expect(page.locator("h1")).to_contain_text("Sweep #")
    expect(page.locator("#sweep-state")).to_have_text("finished", timeout=2 * TRAINED_S)
    sweep_id = int(page.url.rsplit("/", 1)[1])

    with service.http() as http:
        configurations = http.get(f"/sweeps/{sweep_id}").json()["configurations"]
    rows = page.locator("#configurations tbody tr")
    expect(rows).to_have_count(len(configurations))
    for index, configuration in enumerate(configurations):  # the API's ranking, in its order
        expect(rows.nth(index).locator("td").nth(0)).to_have_text(str(configuration["rank"]))
        expect(rows.nth(index).locator("td").nth(1)).to_have_text(configuration["label"])
    expect(page.locator("#comparison tbody tr")).to_have_count(2)
    screenshot(page, "sweep")


def inside(box: dict[str, float], outer: dict[str, float]) -> bool:
    return all(
        outer[start] <= box[start] and box[start] + box[size] <= outer[start] + outer[size]
        for start, size in (("x", "width"), ("y", "height"))
    )


@pytest.fixture(scope="module")
def trained_experiment(service: Service) -> int:
    """A succeeded experiment: the one an earlier test trained through the page, else one trained here."""
    with service.http() as http:
        done = http.get("/experiments", params={"status": "succeeded", "limit": 1}).json()["items"]
        if done:
            return int(done[0]["id"])
        body = {"dataset": "mnist", **{name: int(value) for name, value in TINY.items()}}
        created = http.post("/experiments", json=body)
        assert created.status_code == 202, created.text
        [finished] = wait_until_finished(http, [created.json()["id"]], TRAINED_S / 1000, service)
    assert finished["status"] == "succeeded", finished
    return int(finished["id"])


def test_charts_fit_their_card_on_a_phone_and_have_real_legends(
    page: Any, service: Service, trained_experiment: int
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, service)
    page.goto(f"/ui/#/experiments/{trained_experiment}")
    expect(page.locator("#status [data-status]")).to_have_text("succeeded")
    charts = ("#chart-accuracy", "#chart-loss")
    for chart in charts:
        expect(page.locator(f"{chart} .uplot")).to_be_visible()
    card_box = page.locator(".card", has=page.locator("#curves")).bounding_box()
    for chart in charts:
        box = page.locator(f"{chart} .uplot").bounding_box()
        assert inside(box, card_box), f"{chart} at {box} overflows its card at {card_box}"

    # The legend: one filled swatch in the line's colour and a label per series, with no input-like cells.
    legend = page.locator("#chart-accuracy .u-legend")
    expect(legend.locator("tr.u-series")).to_have_count(2)
    expect(legend).to_contain_text("train")
    expect(legend).to_contain_text("validation")
    looks = legend.evaluate(
        """(table) => [...table.querySelectorAll("tr.u-series")].map((row) => {
          const marker = getComputedStyle(row.querySelector(".u-marker"));
          const cells = [...row.children].map((cell) => getComputedStyle(cell));
          return { swatch: marker.backgroundColor, edge: marker.borderTopColor,
                   boxed: cells.some((c) => c.borderTopWidth !== "0px" || c.backgroundColor !== "rgba(0, 0, 0, 0)"),
                   values: row.querySelectorAll(".u-value").length };
        })"""
    )
    for look in looks:
        assert look["swatch"] == look["edge"] != "rgba(0, 0, 0, 0)", look  # filled with the line's colour
        assert not look["boxed"] and look["values"] == 0, look
    page.locator("#chart-accuracy").scroll_into_view_if_needed()
    screenshot(page, "experiment-phone")


def _percent(value: float) -> str:
    """A fraction as the dashboard writes it (dom.js pct)."""
    return f"{value * 100:.2f}%"


def test_an_experiment_is_registered_as_a_model_and_its_alias_moved(
    page: Any, service: Service, trained_experiment: int
) -> None:
    suffix = uuid.uuid4().hex[:8]
    name, taken = f"browser-digits-{suffix}", f"browser-taken-{suffix}"
    with service.http() as http:
        other = http.post("/users", json={"name": f"browser-other-{suffix}"})
        assert other.status_code == 201, other.text
        with service.http(key=other.json()["api_key"]) as theirs:
            assert theirs.post("/models", json={"name": taken}).status_code == 201
        name_taken = http.post("/models", json={"name": taken}).json()["detail"]
        bad_name = http.post("/models", json={"name": "no spaces please"}).json()["message"]
    sign_in(page, service)
    page.goto(f"/ui/#/experiments/{trained_experiment}")
    form = page.locator("#register-form")
    message = page.locator("#register-message")
    # The API's refusals, in its words: a name another user holds (409), a name it cannot take (422).
    form.locator("[name=name]").fill(taken)
    form.locator("button[type=submit]").click()
    expect(message).to_have_text(name_taken)
    expect(message).to_have_attribute("role", "alert")
    form.locator("[name=name]").fill("no spaces please")
    form.locator("button[type=submit]").click()
    expect(message).to_have_text(bad_name)

    form.locator("[name=name]").fill(name)
    form.locator("[name=visibility]").select_option("public")
    form.locator("[name=alias]").fill("production")
    form.locator("button[type=submit]").click()
    expect(message).to_have_text(f"Registered as version 1 of {name}, alias production points at it.")
    page.locator("#register").scroll_into_view_if_needed()
    screenshot(page, "register-model")
    # A second version of the same model, picked from your models this time, with no alias.
    page.reload()
    form.locator("[name=model]").select_option(name)
    expect(form.locator("[name=name]")).to_be_hidden()
    form.locator("button[type=submit]").click()
    expect(message).to_have_text(f"Registered as version 2 of {name}.")

    page.click("header nav >> text=Models")
    listed = page.locator(f"#models tr[data-name='{name}']")
    expect(listed.locator("td")).to_have_text([name, ADMIN, "public", "2", "production → 1", ""])
    expect(page.locator(f"#models tr[data-name='{taken}']")).to_contain_text("private")  # an admin sees all
    screenshot(page, "models")
    listed.locator("a").click()
    expect(page.locator("h1")).to_have_text(f"Model {name}")
    versions = page.locator("#versions tbody tr")
    expect(versions).to_have_count(2)
    with service.http() as http:
        card = http.get(f"/models/{name}/versions/1/card").json()
    first = versions.nth(0)
    expect(first.locator("td").nth(1)).to_have_text(f"#{trained_experiment}")
    expect(first.locator("td").nth(3)).to_have_text(_percent(card["figures"]["test_accuracy"]))
    expect(first.locator("td").nth(5)).to_have_text("production")
    history = page.locator("#history-production tbody tr")
    expect(history).to_have_count(1)
    expect(history.nth(0).locator("td")).to_have_text([re.compile(r"\d\d:\d\d"), "you", "\u2013", "version 1"])

    # An alias name the API refuses (422): its message on the page, and nothing moved.
    with service.http() as http:
        bad_alias = http.put(f"/models/{name}/aliases/no good", json={"version": 2}).json()["message"]
    page.get_by_label("alias for version 2").fill("no good")
    versions.nth(1).get_by_role("button", name="move here").click()
    expect(page.locator("#model-message")).to_have_text(bad_alias)
    expect(history).to_have_count(1)
    # Version 2's row takes the alias: the move is the history's second row.
    page.get_by_label("alias for version 2").fill("production")
    versions.nth(1).get_by_role("button", name="move here").click()
    expect(page.locator("#model-message")).to_have_text("Alias production now points at version 2.")
    expect(history).to_have_count(2)
    expect(history.nth(1).locator("td")).to_have_text([re.compile(r"\d\d:\d\d"), "you", "version 1", "version 2"])
    expect(versions.nth(1).locator("td").nth(5)).to_have_text("production")
    expect(versions.nth(0).locator("td").nth(5)).to_have_text("")
    with service.http() as http:
        assert http.get(f"/models/{name}").json()["aliases"] == {"production": 2}
    screenshot(page, "model")

    # The card: its sections as tables, the experiment's spec and figures among them.
    first.get_by_role("link", name="card").click()
    expect(page.locator("h1")).to_have_text(f"{name} version 1: model card")
    spec = page.locator("#card-spec")
    for key in ("dataset", "epochs", "batch_size", "train_size", "optimizer", "seed"):
        row = spec.locator("tr", has=page.locator("th", has_text=key.replace("_", " "))).first
        expect(row.locator("td").first).to_have_text(str(card["spec"][key]))
    expect(spec.locator("table.nested").first).to_be_visible()  # the head, as a table of its own
    figures = page.locator("#card-figures")
    expect(figures).to_contain_text(_percent(card["figures"]["test_accuracy"]))
    expect(figures).to_contain_text(_percent(card["figures"]["validation_accuracy"]))
    expect(page.locator("#card-input")).to_contain_text("0..255, raw")
    expect(page.locator("#card-training")).to_contain_text(card["training"]["tensorflow"])
    assert "{" not in page.locator("#version-card").inner_text()  # tables, not JSON
    screenshot(page, "model-card")

    # Another user reads the public model without the controls that change it.
    page.fill("#key-input", other.json()["api_key"])
    page.click("#key-form button[type=submit]")
    page.goto(f"/ui/#/models/{name}")
    expect(versions).to_have_count(2)
    expect(page.locator("#model-about")).to_contain_text("Read only")
    expect(page.get_by_role("button", name="move here")).to_have_count(0)
    expect(page.get_by_role("button", name="remove")).to_have_count(0)


def test_a_sweep_whose_runs_were_all_cancelled_reads_cancelled(page: Any, service: Service) -> None:
    with service.http() as http:
        tiny = {name: int(value) for name, value in TINY.items()}
        body = {"name": "browser cancelled", "base": {"dataset": "mnist", "queue": PARKED, **tiny}}
        created = http.post("/sweeps", json={**body, "grid": {"optimizer": ["sgd", "adam"]}})
        assert created.status_code == 202, created.text
        sweep = created.json()
        for experiment in sweep["experiments"]:
            assert http.post(f"/experiments/{experiment['id']}/cancel").json()["status"] == "cancelled"
    sign_in(page, service)
    page.goto(f"/ui/#/sweeps/{sweep['id']}")
    state = page.locator("#sweep-state")
    expect(state).to_have_text("cancelled")
    expect(state).to_have_attribute("class", "status status-cancelled")  # grey, not success-green
    expect(page.locator("#no-curves")).to_contain_text("No run finished an epoch")
    expect(page.locator("#sweep-curves .uplot")).to_have_count(0)
    expect(page.locator("#configurations thead")).to_contain_text("runs ok/running/failed/cancelled")
    rows = page.locator("#configurations tbody tr")
    expect(rows).to_have_count(2)
    for index in range(2):
        expect(rows.nth(index).locator("td").nth(3)).to_have_text("0/0/0/1")
    screenshot(page, "sweep-cancelled")


def _clock_of(standing: Any) -> tuple[str, str]:
    """(the time shown, the local HH:MM of its datetime attribute, worked out by the browser itself)."""
    moment = standing.locator("time")
    worked_out = moment.evaluate(
        "(t) => { const d = new Date(t.dateTime); const p = (n) => String(n).padStart(2, '0');"
        " return `${p(d.getHours())}:${p(d.getMinutes())}`; }"
    )
    return moment.inner_text(), worked_out


def test_a_queued_job_shows_its_position_and_estimated_start(page: Any, service: Service) -> None:
    from training.results import EpochResult
    from worker import jobs

    with service.http() as http:
        spec = {"dataset": "mnist", "queue": ONE_SLOT, "train_size": 300, "batch_size": 64}
        ahead, waiting = (http.post("/experiments", json={**spec, "epochs": n}).json()["id"] for n in (3, 2))
        # The job ahead starts (claimed here, as a worker would) and finishes an epoch of 30 s: two are left.
        job = jobs.claim(ahead, "browser-test@host")
        assert job is not None
        try:
            jobs.record_epoch(job, EpochResult(1, 0.5, 0.8, 0.5, 0.8, 30.0))
            read = http.get(f"/experiments/{waiting}").json()
            assert read["queue_position"] == 1 and read["estimated_start"] is not None
            sign_in(page, service)
            page.goto(f"/ui/#/experiments/{waiting}")
            place = page.locator("#standing .standing")
            expect(place).to_have_text(re.compile(r"^position 1 · starts ~\d\d:\d\d \(estimate\)$"))
            shown, worked_out = _clock_of(place)
            assert shown == worked_out, (shown, worked_out)
            page.goto(f"/ui/#/experiments/{ahead}")  # running: no place in the queue
            expect(page.locator("#status [data-status]")).to_have_text("running")
            expect(page.locator("#standing")).to_be_empty()

            # The list reads its queued rows one by one for their places.
            page.goto("/ui/#/experiments?status=queued")
            row = page.locator(f"#experiments tr[data-id='{waiting}']")
            expect(row.locator(".standing")).to_have_text(re.compile(r"^position 1 · starts ~\d\d:\d\d \(estimate\)$"))
            screenshot(page, "experiments-queued")
            assert http.post(f"/experiments/{waiting}/cancel").json()["status"] == "cancelled"
        finally:
            jobs.finish_cancelled(job, None, None)


def test_the_form_shows_the_apis_422_next_to_the_field(page: Any, service: Service) -> None:
    sign_in(page, service)
    page.goto("/ui/#/new")
    fill(page, "#experiment-form", {"epochs": "0", "batch_size": "100000"})
    page.click("#experiment-form button[type=submit]")
    expect(page.locator("#experiment-form [data-error-for=epochs]")).to_contain_text("greater than or equal to 1")
    expect(page.locator("#experiment-form [data-error-for=batch_size]")).to_contain_text("less than or equal to")
    expect(page.locator("#experiment-form [data-error-for=dataset]")).to_be_empty()
    screenshot(page, "validation")


def test_the_api_reference_renders_with_no_network(page: Any, service: Service, watched: Watched) -> None:
    page.goto("/docs")
    expect(page.locator("#swagger-ui .information-container")).to_contain_text("Epochal")
    expect(page.locator("#swagger-ui .opblock").first).to_be_visible()
    assert page.locator("#swagger-ui .opblock").count() >= 30  # every operation, not an error box
    # "Try it out" still calls the API from the page (connect-src 'self').
    health = page.locator(".opblock", has=page.locator(".opblock-summary-path[data-path='/health']"))
    health.locator(".opblock-summary").click()
    health.locator("button.try-out__btn").click()
    health.locator("button.execute").click()
    expect(health.locator(".live-responses-table tbody .response-col_status")).to_have_text("200")
    assert (watched.violations, watched.console) == ([], []), "Swagger UI broke the Content-Security-Policy"
    page.goto("/redoc")
    expect(page.locator("redoc h1").first).to_contain_text("Epochal")
    expect(page.locator("redoc [data-section-id*='/operation/']").first).to_be_attached()
    assert page.locator("redoc [data-section-id*='/operation/']").count() >= 30
    # The page fixture checks, on the way out, that no request went anywhere but 127.0.0.1 and that the CSP
    # refused nothing but ReDoc's logo.


def test_the_pages_refuse_inline_scripts_and_styles(page: Any, service: Service, watched: Watched) -> None:
    # What an injected piece of markup would try: run an inline script, style itself by attribute.
    page.goto("/ui/")
    expect(page.locator("#key-state")).not_to_be_empty()
    ran = page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.__injected = true";
          document.head.append(script);
          document.body.setAttribute("style", "background: red");
          return window.__injected === true;
        }"""
    )
    assert ran is False
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != "rgb(255, 0, 0)"
    for _ in range(100):  # the events are dispatched after the refusal, and the binding answers after that
        if len(watched.violations) >= 2:
            break
        page.wait_for_timeout(50)
    refused = {v["directive"] for v in watched.violations}
    assert refused == {"script-src-elem", "style-src-attr"}, watched.violations
    watched.violations.clear()  # refused as they should be: not a failure of the page
    watched.console.clear()


def test_a_wrong_key_is_said_plainly(page: Any, service: Service) -> None:
    page.goto("/ui/")
    page.fill("#key-input", "epk_not-a-key")
    page.click("#key-form button[type=submit]")
    expect(page.get_by_role("alert").first).to_contain_text("Check the API key")


def test_the_page_itself_needs_no_key(service: Service) -> None:
    assert httpx.get(f"{service.base_url}/ui/", timeout=10).status_code == 200
    assert httpx.get(f"{service.base_url}/experiments", timeout=10).status_code == 401


def test_the_list_pages_through_a_thousand_experiments(page: Any, service: Service) -> None:
    from sqlalchemy import select

    from domain.lifecycle import Status
    from models import User
    from models.db import session_scope
    from models.specs import experiment_from_spec
    from training.spec import ExperimentSpec

    with service.http() as http:  # other tests of this module may have cancelled some already
        total = 1000 + int(http.get("/experiments", params={"status": "cancelled", "limit": 1}).json()["total"])
    # Written straight to the database, cancelled: nothing trains them and the reaper leaves them alone.
    with session_scope() as session:
        owner = session.scalars(select(User).where(User.name == ADMIN)).one()
        for index in range(1000):
            row = experiment_from_spec(ExperimentSpec.model_validate({"dataset": "mnist", "name": f"seeded {index}"}))
            row.owner_id, row.queue, row.status = owner.id, QUEUE, Status.CANCELLED
            session.add(row)
    sign_in(page, service)
    page.goto("/ui/#/experiments?status=cancelled")
    rows = page.locator("#experiments tbody tr")
    expect(page.locator("#page-info")).to_have_text(f"1-25 of {total}")
    expect(rows).to_have_count(25)
    expect(rows.first).to_contain_text("seeded 999")
    page.click("#page-older")
    expect(page.locator("#page-info")).to_have_text(f"26-50 of {total}")
    expect(rows).to_have_count(25)
    expect(rows.first).to_contain_text("seeded 974")


# A small network of the dashboard's tests: trains in seconds; too small an image for its pooling when broken.
SMALL_GRAPH: dict[str, Any] = {
    "layers": [
        {"type": "Reshape", "target_shape": [28, 28, 1]},
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Flatten"},
        {"type": "Dense", "units": 16, "activation": "relu"},
    ]
}
BROKEN_GRAPH: dict[str, Any] = {"layers": [*SMALL_GRAPH["layers"][:2], {"type": "MaxPooling2D", "pool_size": 64}]}


def _check(service: Service, network: Any, batch_size: int = 64) -> httpx.Response:
    with service.http() as http:
        return http.post("/networks/check", json={"network": network, "dataset": "mnist", "batch_size": batch_size})


def _graph_shown(page: Any) -> Any:
    return json.loads(page.locator("#network-json").input_value())


def _without_nulls(graph: dict[str, Any]) -> dict[str, Any]:
    """A graph as the editor shows it: a stored one's nulls (unset: the default) left out."""
    return {"layers": [{k: v for k, v in layer.items() if v is not None} for layer in graph["layers"]]}


def test_the_form_edits_a_custom_network_with_its_summary_beside_it(page: Any, service: Service) -> None:
    with service.http() as http:
        presets = {p["name"]: p for p in http.get("/networks").json()}
    sign_in(page, service)
    page.goto("/ui/#/new")
    fill(page, "#experiment-form", {"name": "browser custom network", **TINY})
    summary = page.locator("#experiment-form #network-summary")
    # The dataset's default preset, summarised before anything is edited.
    expect(summary.locator("[data-params]")).to_have_attribute(
        "data-params", str(presets["mlp"]["summaries"]["mnist"]["total_params"])
    )
    page.locator("#experiment-form [name=network]").select_option("custom")
    editor = page.get_by_label("custom network graph, as JSON")
    expect(editor).to_be_visible()
    assert _graph_shown(page) == _without_nulls(presets["mlp"]["network"])  # custom starts from the preset's graph

    refused = _check(service, BROKEN_GRAPH)
    assert refused.status_code == 422, refused.text
    [message] = [item["msg"].removeprefix("Value error, ") for item in refused.json()["detail"]]
    assert "layers[2] MaxPooling2D" in message, message
    editor.fill(json.dumps(BROKEN_GRAPH, indent=2))
    expect(summary.get_by_role("alert")).to_have_text(message)
    screenshot(page, "network-error")
    editor.fill(json.dumps({"layers": [{"type": "Dense"}]}))  # fails the schema: the place is named
    expect(summary.get_by_role("alert")).to_have_text("layers[0] Dense.units: Field required")
    editor.fill("{not json")
    expect(summary.get_by_role("alert")).to_contain_text("not valid JSON")

    checked = _check(service, SMALL_GRAPH)
    assert checked.status_code == 200, checked.text
    params = checked.json()["figures"]["total_params"]
    editor.fill(json.dumps(SMALL_GRAPH, indent=2))
    expect(summary.locator("[data-params]")).to_contain_text(f"{params:,} parameters")
    expect(summary.locator("tbody tr")).to_have_count(len(checked.json()["layers"]))
    screenshot(page, "custom-network")
    page.click("#experiment-form button[type=submit]")
    expect(page.locator("h1")).to_contain_text("Experiment #")
    experiment_id = int(page.url.rsplit("/", 1)[1])
    try:
        with service.http() as http:
            assert http.get(f"/experiments/{experiment_id}").json()["network"] == checked.json()["network"]
        shown = page.locator("#network-summary")
        expect(shown.locator("[data-params]")).to_have_attribute("data-params", str(params))
        expect(shown.locator("tbody tr")).to_have_count(len(checked.json()["layers"]))
        expect(shown).to_contain_text("max_pooling2d_2")
        shown.scroll_into_view_if_needed()
        screenshot(page, "experiment-network")
    finally:
        with service.http() as http:  # nothing here needs it trained
            http.post(f"/experiments/{experiment_id}/cancel")


def test_clone_fills_the_form_and_submits_a_second_experiment_with_the_same_network(
    page: Any, service: Service
) -> None:
    spec = {"name": "browser original", "dataset": "mnist", "network": SMALL_GRAPH, "queue": PARKED,
            "epochs": 2, "batch_size": 32, "train_size": 300, "optimizer": "sgd", "seed": 7}  # fmt: skip
    with service.http() as http:
        created = http.post("/experiments", json=spec)
        assert created.status_code == 202, created.text
    original, network = created.json()["id"], created.json()["network"]
    made = [original]
    try:
        sign_in(page, service)
        page.goto(f"/ui/#/experiments/{original}")
        expect(page.locator("#network-summary [data-params]")).to_have_attribute(
            "data-params", str(_check(service, SMALL_GRAPH, 32).json()["figures"]["total_params"])
        )
        page.get_by_role("button", name="Clone").click()
        form = page.locator("#experiment-form")
        expect(form.locator("h2")).to_have_text(f"New experiment, cloned from #{original}")
        expect(page.get_by_label("custom network graph, as JSON")).to_be_visible()
        assert _graph_shown(page) == _without_nulls(network)
        for name, value in {"dataset": "mnist", "optimizer": "sgd", "epochs": "2", "batch_size": "32"}.items():
            expect(form.locator(f"[name={name}]")).to_have_value(value)
        expect(form.locator("[name=train_size]")).to_have_value("300")
        carried = form.locator("#carried")
        expect(carried).to_contain_text(f"queue {PARKED}")
        expect(carried).to_contain_text("seed 7")
        expect(carried).to_contain_text("head 10 \u00d7 softmax")
        # Another dataset gets its own head and loss, not the clone's (the stored spec spells the defaults out).
        form.locator("[name=dataset]").select_option("cats_vs_dogs")
        expect(carried).not_to_contain_text("head")
        expect(carried).not_to_contain_text("loss")
        form.locator("[name=dataset]").select_option("mnist")
        expect(carried).to_contain_text("head 10 \u00d7 softmax")
        form.locator("[name=validation]").select_option("test")  # which takes no validation split
        expect(carried).not_to_contain_text("validation split")
        form.locator("[name=validation]").select_option("held_out")
        expect(carried).to_contain_text("validation split 0.1")
        expect(form.locator("#network-summary [data-params]")).to_be_visible()
        screenshot(page, "clone")
        fill(page, "#experiment-form", {"epochs": "1"})  # editable before it is sent
        page.click("#experiment-form button[type=submit]")
        expect(page.locator("h1")).not_to_contain_text(f"#{original} ")
        expect(page.locator("h1")).to_contain_text("Experiment #")
        clone = int(page.url.rsplit("/", 1)[1])
        made.append(clone)
        assert clone != original
        with service.http() as http:
            read = http.get(f"/experiments/{clone}").json()
        assert read["network"] == network
        assert (read["epochs"], read["seed"], read["queue"], read["name"]) == (1, 7, PARKED, "browser original (clone)")
        expect(page.locator("#network-summary tbody tr")).to_have_count(
            len(_check(service, SMALL_GRAPH).json()["layers"])
        )
    finally:
        with service.http() as http:
            for experiment_id in made:
                http.post(f"/experiments/{experiment_id}/cancel")


# A class whose folder name is markup: the pages must show it as text (and the CSP would refuse its handler).
HOSTILE_CLASS = "<img src=x onerror=window.__xss=1>"


def _samples_route_answers(service: Service, name: str, version: int) -> bool:
    with service.http() as http:
        return http.get(f"/datasets/{name}/samples.png", params={"version": version}).status_code == 200


def test_a_dataset_is_uploaded_prepared_offered_to_the_form_and_deleted(
    page: Any, service: Service, tmp_path: Path
) -> None:
    from tests.upload_archives import class_files, write_zip

    name = f"browser-shapes-{uuid.uuid4().hex[:8]}"
    archive = write_zip(tmp_path / "Hand Shapes.zip", class_files({"cat": 6, "dog": 5, HOSTILE_CLASS: 4}, seed=3))
    broken = tmp_path / "notes.zip"
    broken.write_bytes(b"not an archive at all, only text")
    sign_in(page, service)
    page.click("header nav >> text=Datasets")
    expect(page.locator("h1")).to_have_text("Datasets")
    expect(page.locator("#datasets tr[data-name='mnist']")).to_contain_text("ready")  # the built-ins are listed

    form = page.locator("#upload-form")
    form.locator("[name=file]").set_input_files(str(archive))
    expect(form.locator("[name=name]")).to_have_value("hand-shapes")  # suggested from the file's name
    form.locator("[name=name]").fill(name)
    # An option the API refuses (422): its words next to the option, and nothing stored.
    form.locator("[name=image_size]").fill("0")
    form.locator("button[type=submit]").click()
    expect(form.locator("[data-error-for=image_size]")).to_contain_text("image_size is HEIGHTxWIDTH")
    with service.http() as http:
        assert http.get(f"/datasets/{name}").status_code == 404
    form.locator("[name=image_size]").fill("")
    form.locator("[name=visibility]").select_option("public")
    form.locator("[name=test_fraction]").fill("0.25")
    form.locator("[name=seed]").fill("7")
    form.locator("button[type=submit]").click()

    # Every byte sent, then the worker's preparation followed until the version is ready.
    size = archive.stat().st_size
    expect(page.locator("#upload-progress")).to_have_attribute("data-sent", str(size))
    expect(page.locator("#upload-progress")).to_have_attribute("max", str(size))
    expect(page.locator("#upload-sent")).to_contain_text("(100%)")
    state = page.locator("#upload-state")
    expect(state.locator("[data-status]")).to_have_text("ready", timeout=TRAINED_S)
    with service.http() as http:
        [version] = http.get(f"/datasets/{name}").json()["versions"]
    assert version["status"] == "ready" and version["options"] == {"test_fraction": 0.25, "seed": 7}, version
    assert sorted(version["class_names"]) == sorted(["cat", "dog", HOSTILE_CLASS])
    expect(page.locator("#upload-result")).to_contain_text(f"{version['images']} images")
    screenshot(page, "dataset-upload")

    def counts_shown(table: Any) -> None:
        for class_name in version["class_names"]:
            cells = table.locator("tbody tr").filter(has=page.locator("td", has_text=class_name)).first.locator("td")
            per_split = [version["counts"][split][class_name] for split in version["counts"]]
            expect(cells).to_have_text([class_name, *map(str, per_split), str(sum(per_split))])
        expect(table.locator("tfoot td").last).to_have_text(str(version["images"]))

    counts_shown(page.locator("#upload-counts"))
    # The list has it once the version settled: its classes (as text: no image made of a class name), images, shape.
    row = page.locator(f"#datasets tr[data-name='{name}']")
    classes = f"3: {', '.join(version['class_names'])}"
    shape = " \u00d7 ".join(map(str, version["input_shape"]))
    expect(row.locator("td")).to_have_text([name, "1", "ready", "public", classes, str(version["images"]), shape])
    assert page.locator("#view img").count() == 0
    assert page.evaluate("window.__xss") is None

    # Its page: the version with its counts per split; the sample grid where the service draws one, read with the key.
    asked: list[dict[str, str]] = []
    page.on("request", lambda request: asked.append(request.headers) if "samples.png" in request.url else None)
    page.click("#uploaded-dataset")
    expect(page.locator("h1")).to_have_text(f"Datasets / {name}")
    card = page.locator("#version-1")
    expect(card.locator("[data-status]")).to_have_text("ready")
    counts_shown(page.locator("#counts-1"))
    expect(card).to_contain_text("held out of the upload (0.25, seed 7)")
    samples = page.locator("#samples-1")
    if _samples_route_answers(service, name, 1):
        expect(samples).to_have_attribute("data-state", "shown")
        expect(samples.locator("img")).to_be_visible()
    else:  # a service without the route yet: no broken image, no message
        expect(samples).to_have_attribute("data-state", "absent")
        expect(samples).to_be_hidden()
    assert [headers.get("authorization") for headers in asked] == [f"Bearer {service.api_key}"], asked
    screenshot(page, "dataset")

    # Offered in the experiment form's picker as NAME@VERSION, after the built-ins, which stay as they were.
    card.get_by_role("link", name="Train on it").click()
    picker = page.locator("#experiment-form [name=dataset]")
    expect(picker).to_have_value(f"{name}@1")
    page.goto("/ui/#/new")
    expect(picker).to_have_value("mnist")
    expect(picker.locator(f"option[value='{name}@1']")).to_have_count(1)
    values = picker.locator("option").evaluate_all("(options) => options.map((o) => o.value)")
    assert values[:3] == ["mnist", "fashion_mnist", "cats_vs_dogs"] and f"{name}@1" in values[3:], values
    expect(page.locator(f"#sweep-form [name=dataset] option[value='{name}@1']")).to_have_count(1)
    assert page.evaluate("window.__xss") is None

    # Another user reads the public dataset, and has it in their picker, without the controls that delete it.
    with service.http() as http:
        other = http.post("/users", json={"name": f"browser-reader-{uuid.uuid4().hex[:8]}"})
        assert other.status_code == 201, other.text
    page.fill("#key-input", other.json()["api_key"])
    page.click("#key-form button[type=submit]")
    expect(picker.locator(f"option[value='{name}@1']")).to_have_count(1)
    page.goto(f"/ui/#/datasets/{name}")
    expect(page.locator("#version-1 [data-status]")).to_have_text("ready")
    expect(page.locator("#dataset-about")).to_contain_text("Uploaded by user #")
    expect(page.locator("#dataset-about")).to_contain_text("Read only")
    expect(page.locator(".delete-version")).to_have_count(0)
    sign_in(page, service)

    # A second upload that is no archive: the version fails, with the problem and the entry it is in.
    page.goto("/ui/#/datasets")
    form.locator("[name=file]").set_input_files(str(broken))
    form.locator("[name=name]").fill(name)
    form.locator("button[type=submit]").click()
    expect(state.locator("[data-status]")).to_have_text("failed", timeout=TRAINED_S)
    with service.http() as http:
        [error] = http.get(f"/datasets/{name}").json()["versions"][1]["errors"]
    expect(page.locator("#upload-result .dataset-errors li")).to_have_text(f"{error['entry']}: {error['reason']}")
    page.goto(f"/ui/#/datasets/{name}")
    expect(page.locator("#version-2 .dataset-errors li")).to_have_text(f"{error['entry']}: {error['reason']}")
    expect(page.locator("#version-2 [data-status]")).to_have_text("failed")
    expect(page.locator("#version-2 .train-on")).to_have_count(0)  # a failed version is not offered
    screenshot(page, "dataset-failed")

    # Deleting asks first: dismissed, nothing happens; accepted, the version goes.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.locator("#version-2 .delete-version").click()
    expect(page.locator("#version-2")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#version-2 .delete-version").click()
    expect(page.locator("#dataset-message")).to_have_text("Version 2 deleted.")
    expect(page.locator(".dataset-version")).to_have_count(1)
    # Refused (deleted meanwhile, elsewhere): the API's words on the page.
    with service.http() as http:
        assert http.delete(f"/datasets/{name}/1").status_code == 204
        refusal = http.delete(f"/datasets/{name}/1").json()["detail"]
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#version-1 .delete-version").click()
    expect(page.locator("#dataset-message")).to_have_text(refusal)
    expect(page.locator("#dataset-message")).to_have_attribute("role", "alert")
    expect(page.locator("#no-versions")).to_be_visible()


def test_an_upload_is_browsed_trained_on_shared_and_unshared(page: Any, service: Service, tmp_path: Path) -> None:
    from tests.upload_archives import class_files, write_zip

    # Made through the API (the upload form has its own test): three classes of small noise, one named as markup,
    # and enough images of each for two pages of thumbnails.
    name = f"browser-trio-{uuid.uuid4().hex[:8]}"
    classes = ["circle", "square", HOSTILE_CLASS]
    archive = write_zip(tmp_path / "trio.zip", class_files(dict.fromkeys(classes, 36), size=(8, 8), seed=5))
    with service.http() as http:
        made = http.post("/datasets", params={"name": name}, content=archive.read_bytes())
        assert made.status_code == 202, made.text
        other = http.post("/users", json={"name": f"browser-friend-{uuid.uuid4().hex[:8]}"})
        assert other.status_code == 201, other.text
    friend_id, friend_key = other.json()["id"], other.json()["api_key"]

    # Its page follows the worker's preparation until the version is ready.
    sign_in(page, service)
    page.goto(f"/ui/#/datasets/{name}")
    expect(page.locator("#version-1 [data-status]")).to_have_text("ready", timeout=TRAINED_S)
    with service.http() as http:
        [version] = http.get(f"/datasets/{name}").json()["versions"]
    train = version["counts"]["train"]
    assert sorted(version["class_names"]) == sorted(classes) and min(train.values()) > 24, version

    # The image browser: nothing read until it is opened; then a page of one class's thumbnails, each read with
    # the key and shown from a blob: URL, and the next page and back.
    asked: list[dict[str, str]] = []
    page.on("request", lambda request: asked.append(request.headers) if "/images/" in request.url else None)
    browser_box = page.locator("#images-1")
    grid = browser_box.locator(".thumbs")
    expect(grid).to_have_attribute("data-state", "idle")
    browser_box.locator("summary").click()
    browser_box.locator("[name=split]").select_option("train")
    browser_box.locator("[name=class]").select_option(HOSTILE_CLASS)
    expect(grid).to_have_attribute("data-state", "shown")
    thumbs = grid.locator("img")
    expect(thumbs).to_have_count(24)
    expect(grid.locator("img[data-state=shown]")).to_have_count(24)
    assert all(src.startswith("blob:") for src in thumbs.evaluate_all("(images) => images.map((i) => i.src)"))
    expect(browser_box).to_contain_text(f"1-24 of {train[HOSTILE_CLASS]}")
    with service.http() as http:
        listed = http.get(f"/datasets/{name}/images", params={"class": HOSTILE_CLASS, "limit": 200}).json()
    indices = [str(item["index"]) for item in listed["items"]]
    expect(grid.locator("figure").first).to_have_attribute("data-index", indices[0])
    expect(browser_box.locator(".images-previous")).to_be_disabled()
    browser_box.locator(".images-next").click()
    expect(grid).to_have_attribute("data-offset", "24")
    expect(thumbs).to_have_count(train[HOSTILE_CLASS] - 24)
    expect(grid.locator("figure").first).to_have_attribute("data-index", indices[24])
    expect(browser_box.locator(".images-next")).to_be_disabled()
    browser_box.locator(".images-previous").click()
    expect(grid).to_have_attribute("data-offset", "0")
    expect(thumbs).to_have_count(24)
    assert asked and all(h.get("authorization") == f"Bearer {service.api_key}" for h in asked)
    expect(grid.locator("img[data-state=shown]")).to_have_count(24)
    assert page.evaluate("window.__xss") is None
    browser_box.scroll_into_view_if_needed()
    screenshot(page, "dataset-images")

    # Trained on from the experiment form's picker: the worker reads the upload, the results carry its class names.
    page.goto("/ui/#/new")
    form = page.locator("#experiment-form")
    form.locator("[name=dataset]").select_option(f"{name}@1")
    fill(page, "#experiment-form", {"name": "browser trio", "epochs": "2", "batch_size": "16"})
    form.locator("button[type=submit]").click()
    expect(page.locator("h1")).to_contain_text("Experiment #")
    experiment_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("#status [data-status]")).to_have_text("succeeded", timeout=TRAINED_S)
    with service.http() as http:
        experiment = http.get(f"/experiments/{experiment_id}").json()
        labels = http.get(f"/experiments/{experiment_id}/evaluation").json()["confusion_matrix"]["labels"]
    assert (experiment["dataset"], experiment["dataset_version"]) == (name, 1), experiment
    assert sorted(labels) == sorted(classes), labels
    matrix = page.locator("#confusion-matrix")
    expect(matrix.locator("thead th")).to_have_text(["true \\ predicted", *labels])
    expect(matrix.locator("tbody th")).to_have_text(labels)
    expect(page.locator("#classification-report")).to_contain_text(HOSTILE_CLASS)
    assert page.evaluate("window.__xss") is None
    matrix.scroll_into_view_if_needed()
    screenshot(page, "upload-results")

    # The experiment list's dataset filter offers the upload, and keeps the experiment on it.
    page.goto("/ui/#/experiments")
    page.locator(".filters [name=dataset]").select_option(name)
    expect(page.locator("#experiments tbody tr")).to_have_count(1)
    expect(page.locator(f"#experiments tr[data-id='{experiment_id}'] td.dataset")).to_have_text(f"{name}@1")

    # Shared through its page. A refusal is shown in the API's words; the admin picks the user from the list.
    page.goto(f"/ui/#/datasets/{name}")
    sharing = page.locator("#dataset-sharing")
    expect(sharing.locator("tbody")).to_have_text("Shared with no one.")
    with service.http() as http:
        refusal = http.put(f"/datasets/{name}/shares/99999999").json()["detail"]
    sharing.locator("[name=user_id]").fill("99999999")
    sharing.locator("#share-form button[type=submit]").click()
    expect(page.locator("#share-message")).to_have_text(refusal)
    expect(page.locator("#share-message")).to_have_attribute("role", "alert")
    expect(sharing.locator("[name=user_id]")).to_have_value("99999999")  # left to be corrected
    sharing.locator("#share-pick").select_option(str(friend_id))
    expect(sharing.locator("[name=user_id]")).to_have_value(str(friend_id))
    sharing.locator("#share-form button[type=submit]").click()
    expect(page.locator("#share-message")).to_have_text(f"Shared with {other.json()['name']} (#{friend_id}).")
    expect(sharing.locator("[name=user_id]")).to_have_value("")  # the form is cleared for the next
    expect(sharing.locator(f"tr[data-user-id='{friend_id}']")).to_contain_text("you")  # shared by
    with service.http() as http:
        assert [s["user_id"] for s in http.get(f"/datasets/{name}/shares").json()] == [friend_id]
    screenshot(page, "dataset-sharing")

    # The friend finds it in their picker, and on its page no sharing controls.
    picker = page.locator("#experiment-form [name=dataset]")
    page.fill("#key-input", friend_key)
    page.click("#key-form button[type=submit]")
    expect(page.locator("#version-1 [data-status]")).to_have_text("ready")
    expect(page.locator("#dataset-about")).to_contain_text("Read only")
    expect(page.locator("#dataset-sharing")).to_have_count(0)
    page.goto("/ui/#/new")
    expect(picker.locator(f"option[value='{name}@1']")).to_have_count(1)

    # A dataset of their own, they share themselves (no admin's list of users: they type the id), and a share
    # the API refuses (with its owner) is its words on the page.
    own = f"browser-own-{uuid.uuid4().hex[:8]}"
    with service.http(key=friend_key) as http:
        assert http.post("/datasets", params={"name": own}, content=archive.read_bytes()).status_code == 202
        refusal = http.put(f"/datasets/{own}/shares/{friend_id}").json()["detail"]
    page.goto(f"/ui/#/datasets/{own}")
    expect(sharing.locator("tbody")).to_have_text("Shared with no one.")
    expect(sharing.locator("#share-pick")).to_have_count(0)
    sharing.locator("[name=user_id]").fill(str(friend_id))
    sharing.locator("#share-form button[type=submit]").click()
    expect(page.locator("#share-message")).to_have_text(refusal)

    # Unshared, it is gone from their picker.
    sign_in(page, service)
    page.goto(f"/ui/#/datasets/{name}")
    sharing.locator(f"tr[data-user-id='{friend_id}'] .unshare").click()
    expect(page.locator("#share-message")).to_contain_text("No longer shared with")
    expect(sharing.locator("tbody")).to_have_text("Shared with no one.")
    page.fill("#key-input", friend_key)
    page.click("#key-form button[type=submit]")
    expect(page.locator("#no-versions")).to_be_visible()
    page.goto("/ui/#/new")
    expect(picker).to_have_attribute("data-uploads", re.compile(r"^\d+$"))  # the list of uploads was read
    expect(picker.locator(f"option[value='{name}@1']")).to_have_count(0)
