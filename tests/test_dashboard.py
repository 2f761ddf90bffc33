"""The dashboard at /ui in a real browser (Debian's Chromium driven by Playwright) against a real
API, the Hub simulator and a real inference test container. Assertions read what the page shows.
The screenshots saved into docs/img/ are the ones the README shows.
"""
from __future__ import annotations

import contextlib
import os
import re
import threading
import uuid
from pathlib import Path

import docker.errors
import httpx
import pytest
import uvicorn

from api import create_app

from .conftest import API_KEY, make_settings
from .servers import free_port, wait_until

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - the test extra pins it
    sync_playwright = None

try:
    from tests import docker_support as ds
except ImportError:  # pragma: no cover
    import docker_support as ds

pytestmark = pytest.mark.timeout(240)
ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "img"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
MB = 1_000_000
T = 20_000   # ms: the longest a page state may take to show


class Api:
    """A real uvicorn API on a fixed port that can be stopped and started again (a restart)."""

    def __init__(self, settings):
        self.settings, self.port = settings, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)

    def start(self) -> "Api":
        config = uvicorn.Config(create_app(self.settings), host="127.0.0.1", port=self.port, log_level="warning",
                                timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, 20, message="uvicorn start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def browser():
    if sync_playwright is None or not Path(CHROMIUM).exists():
        if ds.in_ci():
            pytest.fail(f"Playwright and {CHROMIUM} are required in CI")
        pytest.skip(f"no Playwright or no browser at {CHROMIUM}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def box(engine, sim, tmp_path_factory):
    uid = uuid.uuid4().hex[:8]
    name, port = f"llmbox-ui-{uid}", ds.free_port()
    tmp = tmp_path_factory.mktemp("ui")
    old = f"org/old-{uid}"
    (tmp / "box.env").write_text(f"# dashboard test box\nDEFAULT_MODEL={old}\n")
    api = None
    try:
        ds.run_test_container(name, model=old, port=port, run_id=uid)
        ds.wait_healthy(name)
        settings = make_settings(tmp, sim, docker_host=None, inference_container=name, managed_containers=name,
                                 inference_models_url=f"http://127.0.0.1:{port}/v1/models", switch_timeout=30,
                                 download_connections=4, part_size_mb=1)
        api = Api(settings).start()
        api.uid, api.name = uid, name
        yield api
    finally:
        if api is not None:
            api.stop()
        ds.remove_test_containers(uid)
        for c in engine.containers.list(all=True, filters={"name": name}):
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True, v=True)


@pytest.fixture
def page(browser, box):
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: m.type == "error" and "401" not in m.text and errors.append(m.text))
    yield pg
    ctx.close()
    assert not errors, f"errors in the page: {errors}"


def sign_in(page, box, view: str = "downloads"):
    page.goto(f"{box.url}/ui#{view}")
    page.get_by_label("Admin token").fill(API_KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#conn")).to_have_text("● Live", timeout=T)


def repo(sim, box, prefix: str, size: int) -> str:
    rid = f"org/{prefix}-{box.uid}-{uuid.uuid4().hex[:4]}"
    sim.add_repo(rid, {"config.json": b'{"model_type": "llama"}', "model.safetensors": size})
    return rid


def shot(page, name: str) -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / f"dashboard-{name}.png"), full_page=False)


def card(page, model: str):
    return page.locator("li.job", has_text=model)


def speed_of(page, model: str) -> float:
    m = re.search(r"· ([\d.]+) (B|kB|MB|GB)/s", card(page, model).locator(".meta").inner_text())
    return float(m.group(1)) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[m.group(2)] if m else 0.0


def set_limit(box, value) -> None:
    assert box.http.put("/api/limits", json={"bandwidth_bps": value}).status_code == 200


# --------------------------------------------------------------------------- tests
def test_sign_in_security_headers_and_wrong_token(page, box):
    r = page.goto(f"{box.url}/ui")
    h = r.headers
    assert "script-src 'self'" in h["content-security-policy"] and "unsafe-inline" not in h["content-security-policy"]
    assert h["x-frame-options"] == "DENY"
    page.get_by_label("Admin token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong token", timeout=T)
    expect(page.get_by_role("button", name="Models")).to_be_hidden()
    shot(page, "signin")
    page.get_by_label("Admin token").fill(API_KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#conn")).to_have_text("● Live", timeout=T)
    assert API_KEY not in page.url
    assert page.evaluate("sessionStorage.getItem('llmbox.token')") == API_KEY
    # a data route without the header is refused: the page itself holds no data
    assert httpx.get(f"{box.url}/api/models").status_code == 401


def test_download_progress_pause_resume_and_cancel_with_discard(page, box, sim):
    set_limit(box, "1MB/s")
    model = repo(sim, box, "ui-dl", 6 * MB)
    sign_in(page, box)
    page.get_by_label("Model id").fill(model)
    page.get_by_role("button", name="Download", exact=True).click()
    c = card(page, model)
    expect(c.locator(".badge").first).to_have_text(re.compile("Downloading"), timeout=T)
    expect(c.get_by_text("Throttled by the bandwidth limit")).to_be_visible(timeout=T)
    wait_until(lambda: 5 <= int(c.locator(".pct").inner_text().rstrip("%")) < 100, 20, message="bar moving")
    shot(page, "downloads")

    c.get_by_role("button", name="Pause").click()
    expect(c.locator(".badge").first).to_have_text("‖ Paused", timeout=T)
    paused_at = int(c.locator(".pct").inner_text().rstrip("%"))
    c.get_by_role("button", name="Resume").click()
    expect(c.locator(".badge").first).to_have_text(re.compile("Downloading|Waiting"), timeout=T)
    set_limit(box, 0)
    expect(c.locator(".pct")).to_have_text("100%", timeout=T)
    expect(c.locator(".badge").first).to_have_text("✔ Complete", timeout=T)
    assert paused_at < 100
    expect(c.get_by_role("button", name="Pause")).to_be_hidden()

    # cancel with discard: a confirmation, then the partial bytes are gone
    set_limit(box, "1MB/s")
    other = repo(sim, box, "ui-cancel", 6 * MB)
    page.get_by_label("Model id").fill(other)
    page.get_by_role("button", name="Download", exact=True).click()
    oc = card(page, other)
    wait_until(lambda: int(oc.locator(".pct").inner_text().rstrip("%")) >= 3, 20, message="second download moving")
    oc.get_by_role("button", name="Cancel").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Cancel the download of {other}?")
    dialog.get_by_label("Also discard the partial bytes").check()
    dialog.get_by_role("button", name="Cancel download").click()
    expect(oc.locator(".badge").first).to_have_text("⊘ Cancelled", timeout=T)
    expect(oc.get_by_text("Partial bytes discarded")).to_be_visible(timeout=T)
    staging = box.settings.hf_cache / ".llmbox-partial"
    assert not list(staging.glob("*.part")), list(staging.iterdir())
    set_limit(box, 0)


def test_models_verify_delete_switch_and_refuse_active(page, box, sim):
    keep, drop = repo(sim, box, "ui-keep", 2 * MB), repo(sim, box, "ui-drop", 1 * MB)
    for m in (keep, drop):
        job = box.http.post("/api/download-model", params={"model_id": m}).json()
        wait_until(lambda: box.http.get(f"/api/jobs/{job['job_id']}").json()["status"] == "complete", 30,
                   message=f"{m} downloaded")
    sign_in(page, box, "models")
    row = page.locator("tr", has_text=keep)
    expect(row).to_contain_text("✔ Complete", timeout=T)
    expect(page.locator("#disk")).to_contain_text("Free:")
    row.get_by_role("button", name="Verify").click()
    expect(row.locator(".verify")).to_contain_text("✔ Verified: 2 files match", timeout=T)

    drow = page.locator("tr", has_text=drop)
    drow.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Delete {drop}?")
    dialog.get_by_role("button", name="Delete").click()
    expect(page.locator("#models-message")).to_contain_text(f"Deleted {drop}", timeout=T)
    expect(drow).to_have_count(0, timeout=T)
    assert not (box.settings.hf_cache / ("models--" + drop.replace("/", "--"))).exists()

    # switch to `keep` from the Active model view; the steps show as they happen
    page.get_by_role("button", name="Active model").click()
    expect(page.locator("#active-container")).to_contain_text("running · health: healthy", timeout=T)
    page.locator("#switch-list li", has_text=keep).get_by_role("button", name="Switch to this model").click()
    page.get_by_role("dialog").get_by_role("button", name="Switch").click()
    expect(page.locator("#switch-steps")).to_contain_text("DEFAULT_MODEL written to .env", timeout=T)
    expect(page.locator("#switch-title")).to_contain_text("✔ Complete", timeout=40_000)
    expect(page.locator("#switch-steps")).to_contain_text("New container healthy")
    expect(page.locator("#active-model")).to_have_text(keep, timeout=T)
    expect(page.locator("#active-container")).to_contain_text("health: healthy", timeout=T)
    expect(page.locator("#logs")).not_to_have_text("…", timeout=T)
    shot(page, "active")
    assert f"DEFAULT_MODEL={keep}" in box.settings.env_file.read_text()

    # the active model cannot be deleted: the button is disabled and says why
    page.get_by_role("button", name="Models").click()
    arow = page.locator("tr", has_text=keep)
    expect(arow).to_contain_text("★ Active", timeout=T)
    expect(arow.get_by_role("button", name="Delete")).to_be_disabled()
    expect(arow).to_contain_text("Active model: switch to another before deleting")
    shot(page, "models")


def test_limits_change_and_the_speed_follows(page, box, sim):
    sign_in(page, box, "limits")
    page.get_by_label("Bandwidth limit").fill("1.5MB/s")
    page.get_by_role("button", name="Save limits").click()
    expect(page.locator("#limits-message")).to_contain_text("✔ Saved: 1.5 MB/s", timeout=T)
    expect(page.locator("#limit-bw")).to_have_text("1.5 MB/s")
    shot(page, "limits")
    model = repo(sim, box, "ui-speed", 40 * MB)
    job = box.http.post("/api/download-model", params={"model_id": model}).json()
    try:
        page.get_by_role("button", name="Downloads").click()
        wait_until(lambda: 1.0 * MB < speed_of(page, model) < 2.2 * MB, 25, interval=0.3,
                   message="speed near 1.5 MB/s")
        page.get_by_role("button", name="Limits").click()
        page.get_by_label("Bandwidth limit").fill("6MB/s")
        page.get_by_role("button", name="Save limits").click()
        expect(page.locator("#limit-bw")).to_have_text("6 MB/s", timeout=T)
        page.get_by_role("button", name="Downloads").click()
        wait_until(lambda: speed_of(page, model) > 3.5 * MB, 25, interval=0.3, message="speed rising to 6 MB/s")
    finally:
        box.http.post(f"/api/jobs/{job['job_id']}/cancel", params={"discard": "true"})
        set_limit(box, 0)


def test_reconnects_after_api_restart_and_phone_layout(browser, box, sim):
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = ctx.new_page()
    try:
        sign_in(page, box)
        box.stop()
        expect(page.locator("#conn")).to_have_text("◌ Reconnecting…", timeout=T)
        box.start()
        expect(page.locator("#conn")).to_have_text("● Live", timeout=T)
        model = repo(sim, box, "ui-after", 1 * MB)
        box.http.post("/api/download-model", params={"model_id": model})
        expect(card(page, model).locator(".badge").first).to_have_text("✔ Complete", timeout=T)
        # keyboard: the tabs are reachable with Tab and work with Enter
        page.locator("#signout").focus()
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Enter")
        expect(page.locator("#view-active")).to_be_visible()
        page.get_by_role("button", name="Downloads").click()
        shot(page, "phone")
    finally:
        ctx.close()
