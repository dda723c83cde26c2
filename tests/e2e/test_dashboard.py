"""The dashboard in a real browser: Playwright drives Debian's chromium
(headless) against the embedded server of each test's YARD_HOME. The page is
signed in through `yard dashboard --no-browser`'s one-time link."""
import json
import re
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, wait_for

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in scripts/requirements-dev.txt")
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "build" / "test-artifacts"
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium comes from scripts/setup.sh")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        yield b
        b.close()


def login_link(yard, env=None):
    out = yard.run("dashboard", "--no-browser", env=env).stdout
    m = re.search(r"(http://\S+/login#code=[0-9a-f]+)", out)
    assert m, f"no login link in `yard dashboard` output:\n{out}"
    return m.group(1)


def signed_in_page(browser, yard, env=None, **context_args):
    context = browser.new_context(**context_args)
    page = context.new_page()
    page.goto(login_link(yard, env))
    page.wait_for_selector("#jobs")
    return page


def trigger_script(project, body):
    """job.sh runs `body` with `gate N` blocking until the test creates gate-N
    in the job's working folder (job_work_folder: a confined job sees no
    other folder of this host)."""
    (project / "job.sh").write_text(
        f'gate() {{ while [ ! -e gate-$1 ]; do sleep 0.05; done; }}\n{body}\n')


def job_work_folder(yard, job_id):
    inst = yard.job(job_id)["instance"]
    return wait_for(lambda: next(iter((yard.home / "instances" / inst / "jobs").glob(f"{job_id}-*/work")), None),
                    timeout=30, what=f"the working folder of {job_id}")


def test_login_link_works_once_and_leaves_no_code_behind(browser, yard, project):
    link = login_link(yard)
    context = browser.new_context()
    page = context.new_page()
    page.goto(link)
    page.wait_for_selector("#jobs")
    assert page.url.endswith("/jobs"), page.url  # the code is gone from the address
    page.go_back()  # and from the history: the entry before is the blank page
    assert "code=" not in page.url, page.url
    page.go_forward()
    page.wait_for_selector("#jobs")
    cookie = next(c for c in context.cookies() if c["name"] == "yard_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # not readable by scripts
    server_log = (yard.home / "server.log").read_text() if (yard.home / "server.log").exists() else ""
    assert link.split("#code=")[1] not in server_log
    # The same link again, in a fresh browser: refused, with what to do.
    other = browser.new_context().new_page()
    other.goto(link)
    other.wait_for_selector("form.signin")
    assert "yard dashboard" in other.inner_text(".error")


def test_yard_dashboard_opens_the_browser_with_the_link(yard, tmp_path):
    opened = tmp_path / "opened"
    browser_cmd = tmp_path / "browser.sh"
    browser_cmd.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser_cmd.chmod(0o755)
    yard.run("jobs")
    out = yard.run("dashboard", env=dict(yard.env, BROWSER=str(browser_cmd))).stdout
    link = wait_for(lambda: opened.exists() and opened.read_text().strip(), timeout=10, what="the browser")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/login#code=[0-9a-f]{48}", link), link
    assert link.split("#")[0].removesuffix("/login") in out  # the address is printed
    assert "code=" not in out  # the one-time code is not


def test_running_job_shows_output_and_curves_live_and_one_point_per_epoch(browser, yard, project, tmp_path):
    trigger_script(project, "\n".join(
        f'gate {e}; echo "epoch {e} done"; '
        f'echo \'{{"epoch": {e}, "epochs": 3, "loss": {1.0 / e}, "val_loss": {1.2 / e}}}\' >> "$YARD_METRICS"'
        for e in (1, 2, 3)) + "\ngate end\n")
    job_id = yard.run("submit", "job.sh", "-d", "live curves", cwd=project).stdout.strip()
    yard.wait_state(job_id, "running")
    gates = job_work_folder(yard, job_id)
    page = signed_in_page(browser, yard, viewport={"width": 1280, "height": 900})
    page.click(f"a[href='/jobs/{job_id}']")
    page.wait_for_selector("#job-state [data-state='running']")
    assert page.evaluate("!window.yardCharts.loss")
    for epoch in (1, 2, 3):
        (gates / f"gate-{epoch}").touch()
        page.wait_for_function(
            "n => window.yardCharts.loss && window.yardCharts.loss.data[0].length === n", arg=epoch, timeout=20000)
        page.wait_for_selector(f"#log .row:text-is('epoch {epoch} done')", timeout=20000)
    data = page.evaluate("window.yardCharts.loss.data")
    series = page.evaluate("window.yardCharts.loss.series.map(s => s.label)")
    assert data[0] == [1, 2, 3]  # one point per reported epoch
    assert series[1:] == ["loss", "val_loss"]  # validation beside training
    assert data[1] == pytest.approx([1.0, 0.5, 1 / 3]) and data[2] == pytest.approx([1.2, 0.6, 0.4])
    (gates / "gate-end").touch()
    page.wait_for_selector("#job-state [data-state='succeeded']", timeout=30000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-job.png"), full_page=True)
    # Narrow and dark: the page still fits its width.
    page.set_viewport_size({"width": 390, "height": 844})
    page.emulate_media(color_scheme="dark")
    page.goto(page.url)
    page.wait_for_function("() => window.yardCharts.loss")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert sum(map(int, re.findall(r"\d+", bg)[:3])) < 150, bg  # dark
    page.screenshot(path=str(ARTIFACTS / "dashboard-job-390-dark.png"), full_page=True)


def test_jobs_list_updates_without_reload_and_filters(browser, yard, project, tmp_path):
    page = signed_in_page(browser, yard)
    (project / "job.sh").write_text('echo \'{"epoch": 1, "loss": 0.75}\' >> "$YARD_METRICS"\n')
    job_id = yard.run("submit", "job.sh", "-d", "appears by itself", cwd=project).stdout.strip()
    row = f"tr[data-job='{job_id}']"
    page.wait_for_selector(f"{row} [data-state='succeeded']", timeout=30000)
    wait_for(lambda: "loss 0.75" in page.inner_text(f"{row} .metrics"), timeout=10, what="latest metric")
    page.fill("#search", "no such description")
    page.wait_for_selector(row, state="detached")
    page.fill("#search", "by itself")
    page.wait_for_selector(row)


def test_cancel_from_the_page_cancels_the_job(browser, yard, project):
    (project / "job.sh").write_text("echo started; sleep 300\n")
    job_id = yard.run("submit", "job.sh", cwd=project).stdout.strip()
    yard.wait_state(job_id, "running")
    page = signed_in_page(browser, yard)
    page.goto(page.url.replace("/jobs", f"/jobs/{job_id}"))
    page.wait_for_selector("#job-state [data-state='running']")
    page.once("dialog", lambda d: d.accept())
    page.click("#cancel")
    assert yard.wait_state(job_id, "cancelled")["state"] == "cancelled"
    page.wait_for_selector("#job-state [data-state='cancelled']", timeout=20000)


def test_another_user_sees_none_of_my_jobs_and_gets_404(browser, yard, project):
    (project / "job.sh").write_text('echo mine; echo ckpt > "$YARD_CHECKPOINT_DIR/c.ckpt"\n'
                                    'echo \'{"epoch": 1, "loss": 0.5}\' >> "$YARD_METRICS"\n')
    job_id = yard.run("submit", "job.sh", "-d", "alice only", "--cool-down", "300", cwd=project).stdout.strip()
    instance = yard.wait_state(job_id, "succeeded")["instance"]
    wait_for(lambda: any(i["id"] == instance and i["state"] == "cooling"
                         for i in yard.json("machines")["instances"]), timeout=20, what="a cooling instance")
    base = yard.server_info()["url"]
    with urllib.request.urlopen(urllib.request.Request(
            f"{base}/v1/jobs/{job_id}/artifacts", headers={"Authorization": f"Bearer {yard.token()}"})) as r:
        ckpt = next(a["entry"] for a in json.loads(r.read())["artifacts"] if a["entry"]["path"] == "c.ckpt")
    bob_token = yard.run("token", "create", "bob").stdout.strip()
    env = dict(yard.env, YARD_SERVER=base, YARD_TOKEN=bob_token)
    page = signed_in_page(browser, yard, env=env)
    page.wait_for_selector("#jobs tbody tr")
    assert job_id not in page.inner_text("#jobs") and "alice only" not in page.inner_text("#jobs")
    # What the page reads for its lists: none of alice's jobs, instances or cost.
    assert page.request.get(f"{base}/v1/dashboard/me").json()["user"] == "bob"
    assert page.request.get(f"{base}/v1/dashboard/jobs").json()["jobs"] == []
    assert page.request.get(f"{base}/v1/jobs").json()["jobs"] == []
    assert instance not in page.request.get(f"{base}/v1/machines").text()
    cost = page.request.get(f"{base}/v1/cost").json()
    assert cost["by_job"] == {} and cost["entries"] == [] and job_id not in json.dumps(cost)
    page.click("a[data-nav='machines']")
    page.wait_for_selector("#instances tbody td:text-is('No live instances.')", timeout=10000)
    assert instance not in page.inner_text("main")
    # Alice's job page and every route of her job: 404, as if it did not exist.
    response = page.goto(f"{base}/jobs/{job_id}")
    assert response.status == 404
    page.wait_for_selector("#not-found")
    for path in ("", "/events?follow=0", "/lines", "/lines?grep=mine", "/timeline", "/log", "/artifacts",
                 "/file?dir=checkpoints&path=c.ckpt"):
        r = page.request.get(f"{base}/v1/jobs/{job_id}{path}")
        assert r.status == 404, (path, r.status)
        assert "mine" not in r.text() and "c.ckpt" not in r.text(), path
    assert ckpt["chunks"]
    for chunk_hash, _ in ckpt["chunks"]:
        assert page.request.get(f"{base}/v1/blobs/{chunk_hash}").status in (403, 404)
    headers = {"X-Yard-Dashboard": "1"}
    assert page.request.post(f"{base}/v1/jobs/{job_id}/cancel", headers=headers).status == 404
    page.request.post(f"{base}/v1/instances/down", headers=headers, data={"instance": instance})
    assert yard.job(job_id)["state"] == "succeeded"
    assert any(i["id"] == instance and i["state"] == "cooling" for i in yard.json("machines")["instances"])


def test_a_page_session_cannot_write_without_the_dashboard_header(browser, yard, project):
    (project / "job.sh").write_text("sleep 300\n")
    job_id = yard.run("submit", "job.sh", cwd=project).stdout.strip()
    page = signed_in_page(browser, yard)
    base = yard.server_info()["url"]
    assert page.request.post(f"{base}/v1/jobs/{job_id}/cancel").status == 403
    assert yard.job(job_id)["state"] != "cancelled"
    yard.run("cancel", job_id)


def test_log_lines_come_from_the_raw_output_bytes(yard, project):
    """The line index reads output records as agents store them (bytes
    apart from the JSON): a line printed in pieces is one line, bytes that
    are not UTF-8 come as U+FFFD in JSON and exactly in the download."""
    (project / "job.sh").write_text("printf 'half'; sleep 0.5; printf 'way\\n'; printf 'caf\\351\\n'; printf 'no newline'\n")
    job_id = yard.run("submit", "job.sh", cwd=project).stdout.strip()
    yard.wait_state(job_id, "succeeded")
    base, auth = yard.server_info()["url"], {"Authorization": f"Bearer {yard.token()}"}

    def get(path):
        with urllib.request.urlopen(urllib.request.Request(base + path, headers=auth)) as r:
            return r.read()

    lines = json.loads(get(f"/v1/jobs/{job_id}/lines?from=0&count=10"))
    assert lines["lines"] == ["halfway", "caf\ufffd", "no newline"], lines
    assert lines["total"] == 3 and lines["partial"] is True
    assert json.loads(get(f"/v1/jobs/{job_id}/lines?grep=lfw"))["matches"] == [0]
    assert get(f"/v1/jobs/{job_id}/log") == b"halfway\ncaf\xe9\nno newline"


def test_a_million_line_log_opens_at_its_tail_within_2s_and_stays_responsive(browser, yard, project):
    (project / "job.sh").write_text("seq 1 1000000 | sed 's/^/line /'\n")
    job_id = yard.run("submit", "job.sh", cwd=project).stdout.strip()
    yard.wait_state(job_id, "succeeded", timeout=300)
    page = signed_in_page(browser, yard)
    url = page.url.replace("/jobs", f"/jobs/{job_id}")
    start = time.monotonic()
    page.goto(url)
    page.wait_for_selector("#log .row:text-is('line 1000000')", timeout=30000)
    opened = time.monotonic() - start
    assert page.inner_text("#log-count") == "1,000,000 lines"
    # Scroll back to the start and to the middle: lines arrive by ranged
    # fetches and the tab answers at once meanwhile.
    for target, text in ((0, "line 1"), (500000, "line 500001")):
        page.evaluate("n => { const b = document.querySelector('#log'); "
                      "b.scrollTop = n * 18 * Math.min(1, 15e6 / (1e6 * 18)); }", target)
        t = time.monotonic()
        page.evaluate("1")
        assert time.monotonic() - t < 0.5, "the tab did not answer within 0.5 s while scrolling"
        page.wait_for_selector(f"#log .row:text-is('{text}')", timeout=10000)
    assert opened < 2.0, f"the 1,000,000-line log took {opened:.2f} s to show its tail"
    # Search runs on the server; the view jumps to the hit.
    page.fill("#log-search", "line 99999")
    page.press("#log-search", "Enter")
    page.wait_for_selector("#log-hits:text-is('11 matching lines')")  # 99999 and 999990..999999
    page.wait_for_selector("#log .row.hit:text-is('line 99999')")
    # The whole log downloads as one text.
    href = page.get_attribute("#log-download", "href")
    body = page.request.get(page.url.split("/jobs/")[0] + href).body()
    assert body.count(b"\n") == 1_000_000 and body.endswith(b"line 1000000\n")


def test_compare_overlays_a_sweeps_curves_with_its_parameters(browser, yard, project):
    (project / "job.sh").write_text(
        'for e in 1 2; do echo "{\\"epoch\\": $e, \\"loss\\": $2}" >> "$YARD_METRICS"; done\n')
    out = yard.run("submit", "job.sh", "--sweep", "lr=0.5,0.25", cwd=project).stdout
    jobs = re.findall(r"^(job-\S+)", out, re.M)
    assert len(jobs) == 2, out
    for j in jobs:
        yard.wait_state(j, "succeeded")
    page = signed_in_page(browser, yard)
    page.goto(page.url.replace("/jobs", f"/compare?jobs={jobs[0]}"))
    page.click("text=select its sweep (2)")  # a sweep selects itself
    page.wait_for_function("() => window.yardCharts.loss && window.yardCharts.loss.series.length === 3")
    labels = page.evaluate("window.yardCharts.loss.series.slice(1).map(s => s.label)")
    assert sorted(labels) == sorted(f"{j} loss" for j in jobs)
    data = page.evaluate("window.yardCharts.loss.data")
    assert data[0] == [1, 2]
    assert sorted(map(tuple, data[1:])) == [(0.25, 0.25), (0.5, 0.5)]
    table = page.inner_text("#params")
    assert "lr" in table and "0.5" in table and "0.25" in table


def test_machines_end_a_cooling_instance_and_cost_shows_it(browser, yard, project):
    (project / "job.sh").write_text("echo done\n")
    job_id = yard.run("submit", "job.sh", "--cool-down", "300", cwd=project).stdout.strip()
    instance = yard.wait_state(job_id, "succeeded")["instance"]
    wait_for(lambda: any(i["id"] == instance and i["state"] == "cooling"
                         for i in yard.json("machines")["instances"]), timeout=20, what="a cooling instance")
    page = signed_in_page(browser, yard, viewport={"width": 390, "height": 844})
    page.click("a[data-nav='machines']")
    row = f"tr[data-instance='{instance}']"
    page.wait_for_selector(f"{row} [data-state='cooling']")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.click(f"{row} button:text('End')")
    wait_for(lambda: all(i["id"] != instance or i["state"] in ("terminating", "terminated")
                         for i in yard.json("machines")["instances"]), timeout=30, what="the instance to end")
    page.click("a[data-nav='cost']")
    page.wait_for_selector("#cost-totals")
    assert job_id in page.inner_text("main")


def test_a_requeued_jobs_attempts_join_on_one_curve_with_the_requeue_marked(browser, yard, project):
    yard.home.mkdir(parents=True, exist_ok=True)
    (yard.home / "catalog.json").write_text(json.dumps({"version": 1, "types": [
        {"name": "spotty", "provider": "sim", "cpus": 1, "spot_price": 0.3, "on_demand_price": 0.9,
         "default_market": "spot"}], "providers": {"sim": {"scenario": {"version": 1, "types": {"spotty": {}}}}}}))
    metric = 'echo "{\\"epoch\\": $1, \\"loss\\": $2}" >> "$YARD_METRICS"'
    (project / "job.sh").write_text(
        f'm() {{ {metric}; }}\n'
        'if [ -n "$YARD_RESUME_FROM" ]; then m 3 0.3; echo second attempt; exit 0; fi\n'
        'm 1 0.9; m 2 0.6; echo ckpt > "$YARD_CHECKPOINT_DIR/epoch-2.ckpt"; echo first attempt; sleep 1000\n')
    job_id = yard.run("submit", "job.sh", "--machines", "spotty", cwd=project).stdout.strip()
    page = signed_in_page(browser, yard)
    page.goto(page.url.replace("/jobs", f"/jobs/{job_id}"))
    page.wait_for_function("() => window.yardCharts.loss && window.yardCharts.loss.data[0].length === 2",
                           timeout=30000)
    wait_for(lambda: any(a["entry"]["path"] == "epoch-2.ckpt" for a in json.loads(urllib.request.urlopen(
        urllib.request.Request(f"{yard.server_info()['url']}/v1/jobs/{job_id}/artifacts",
                               headers={"Authorization": f"Bearer {yard.token()}"})).read())["artifacts"]),
             timeout=30, what="the checkpoint to reach the server")
    instance = yard.job(job_id)["instance"]
    req = urllib.request.Request(f"{yard.server_info()['url']}/v1/sim/interrupt/{instance}", data=b"",
                                 method="POST", headers={"Authorization": f"Bearer {yard.token()}"})
    assert urllib.request.urlopen(req).status == 200
    page.wait_for_selector("#job-state [data-state='succeeded']", timeout=60000)
    page.wait_for_function("() => window.yardCharts.loss.data[0].length === 3")
    assert page.evaluate("window.yardCharts.loss.data") == [[1, 2, 3], [0.9, 0.6, 0.3]]
    assert page.evaluate("window.yardCharts.loss.requeues") == [2]  # marked after epoch 2
    page.wait_for_selector("#log .row.marker")
    assert "requeued" in page.inner_text("#log .row.marker")
    assert "preempted" in page.inner_text("#timeline")


def test_a_read_session_watches_without_cancel_and_ends_with_its_token(browser, yard, project):
    (project / "job.sh").write_text("echo watching; sleep 600\n")
    job_id = yard.run("submit", "job.sh", cwd=project).stdout.strip()
    yard.wait_state(job_id, "running")
    user = yard.job(job_id)["user"]
    base = yard.server_info()["url"]
    reader = yard.run("token", "create", user, "--scope", "read").stdout.strip()
    page = signed_in_page(browser, yard, env=dict(yard.env, YARD_SERVER=base, YARD_TOKEN=reader))
    assert "(read only)" in page.inner_text("#who")
    assert page.request.get(f"{base}/v1/dashboard/me").json() == {"user": user, "scope": "read"}
    page.goto(f"{base}/jobs/{job_id}")
    page.wait_for_selector("#job-state [data-state='running']", timeout=20000)
    assert page.is_hidden("#cancel")
    refused = page.request.post(f"{base}/v1/jobs/{job_id}/cancel", data="{}",
                                headers={"X-Yard-Dashboard": "1", "Content-Type": "application/json"})
    assert refused.status == 403 and "scope 'submit'" in refused.json()["error"]["message"]
    token_id = next(t["id"] for t in yard.json("token", "list") if t["scope"] == "read")
    yard.run("token", "revoke", token_id)
    ended = page.request.get(f"{base}/v1/dashboard/me")
    assert ended.status == 401 and "revoked" in ended.json()["error"]["message"]
    assert yard.job(job_id)["state"] == "running"
    yard.run("cancel", job_id)
