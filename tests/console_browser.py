"""The console in a real browser (headless Chromium through chromedriver and Selenium),
driven by tests/it/console.rs, which seeds the database and checks the store afterwards.

Environment: CONSOLE (the /ui/ base URL), RW_TOKEN and RO_TOKEN (operators alice and bob),
FAILED (the id of the failed `flaky_ui` job), SHOTS (where screenshots go).
Exits non-zero with a message on the first failed check.
"""

import os
import sys
import time
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE = os.environ["CONSOLE"].rstrip("/")  # .../ui
ORIGIN = "{0.scheme}://{0.netloc}".format(urlsplit(BASE))
FAILED = os.environ["FAILED"]
SHOTS = os.environ["SHOTS"]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def browser():
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,800", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    d = webdriver.Chrome(service=service, options=opts)
    d.set_window_size(1280, 800)
    return d


def shot(d, name):
    os.makedirs(SHOTS, exist_ok=True)
    d.save_screenshot(os.path.join(SHOTS, name + ".png"))


def wait(d, cond, what, timeout=30):
    WebDriverWait(d, timeout, poll_frequency=0.2).until(lambda _: cond(), message=what)


def login(d, token):
    d.get(BASE + "/login")
    box = d.find_element(By.NAME, "token")
    box.send_keys(token)
    box.submit()
    wait(d, lambda: d.current_url.rstrip("/") == BASE, "signed in, on the overview")


def text_of(d, css):
    """An element's rendered text, read in one script call (the live region may be
    replaced between two WebDriver calls: a stale element otherwise)."""
    return d.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : null", css)


def click(d, css):
    """Clicks `css`, finding it again if the live region replaced it meanwhile."""
    for _ in range(20):
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
            return
        except StaleElementReferenceException:
            time.sleep(0.05)
    raise AssertionError(f"{css} kept being replaced")


def job_state(d):
    """Read in one script call: the live region may be replaced between two WebDriver calls."""
    return d.execute_script(
        "const e = document.getElementById('state'); return e && e.dataset.state")


def cell(d, tool, state):
    return d.find_element(
        By.CSS_SELECTOR, f'#counts tr[data-tool="{tool}"] td[data-state="{state}"]').text


def post(d, body):
    """A form POST from the page's own script context; returns the HTTP status."""
    return d.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch('/ui/act', {method: 'POST', body: arguments[0], credentials: 'same-origin',
            headers: {'Content-Type': 'application/x-www-form-urlencoded'}, redirect: 'manual'})
            .then(r => done(r.status)).catch(e => done('error ' + e));""", body)


def filter_jobs(d, **fields):
    d.get(BASE + "/jobs")
    form = d.find_element(By.ID, "filter")
    for k, v in fields.items():
        el = form.find_element(By.NAME, k)
        if el.tag_name == "select":
            Select(el).select_by_value(v)
        else:
            el.clear()
            el.send_keys(v)
    form.submit()
    wait(d, lambda: "/ui/jobs?" in d.current_url, "the filtered list")


def job_rows(d):
    return [r.get_attribute("data-id") for r in d.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")]


def as_read_write(d):
    d.get(BASE + "/")
    check("/login" in d.current_url, "not signed in: the login form")
    shot(d, "login")
    box = d.find_element(By.NAME, "token")
    box.send_keys("not-a-token")
    box.submit()
    wait(d, lambda: "Unknown token" in d.page_source, "a wrong token is refused")
    login(d, os.environ["RW_TOKEN"])

    # Overview: the seeded counts.
    check(cell(d, "hold", "queued") == "4", "4 hold jobs queued")
    check(cell(d, "hold", "running") == "1", "1 hold job running")
    check(cell(d, "flaky_ui", "failed") == "1", "1 flaky_ui job failed")
    check(d.find_element(By.ID, "workers").text.strip() != "", "a worker is listed")
    shot(d, "overview")

    # Filter by tool and state; open the failed job; read its stderr tail.
    filter_jobs(d, tool="flaky_ui", state="failed")
    check(job_rows(d) == [FAILED], f"the filter finds only the failed job: {job_rows(d)}")
    shot(d, "jobs")
    d.find_element(By.CSS_SELECTOR, f'#jobs tr[data-id="{FAILED}"] a').click()
    wait(d, lambda: d.find_elements(By.ID, "history"), "the job page")
    tail = text_of(d, "#history pre.stderr") or ""
    check("<script>window.__pwned = 2</script> the upstream exploded" in tail,
          f"the stderr tail shows as text: {tail!r}")
    worker = text_of(d, "#history td.worker") or ""
    check(worker not in ("", "–"), f"the attempt names its worker: {worker!r}")
    check("<script>window.__pwned = 1</script>" in (text_of(d, "#args") or ""),
          "the arguments show as text")
    check(d.execute_script("return window.__pwned === undefined"), "no markup from a job ran")
    scripts = d.execute_script(
        "return Array.from(document.scripts).map(s => s.getAttribute('src'))")
    check(scripts == ["/ui/static/console.js"], f"only the console's script: {scripts}")
    d.execute_script("document.getElementById('history').scrollIntoView()")
    shot(d, "job-failed")

    # Retry it; watch it complete without a reload.
    click(d, '#job-actions button[value="retry:one"]')
    wait(d, lambda: job_state(d) in ("queued", "running"), "the job back in the queue")
    d.execute_script("window.__mark = 'kept'")
    wait(d, lambda: job_state(d) == "succeeded", "the retried job succeeds on the open page",
         timeout=60)
    check(d.execute_script("return window.__mark") == "kept", "no reload: the page updated itself")
    check("retried by alice (console)" in d.execute_script(
        "return document.getElementById('history').textContent"),
          "the history names the operator")
    shot(d, "job-succeeded")

    # Bulk-cancel every queued job of one client, from a filter.
    filter_jobs(d, client="client-002", state="queued")
    check(len(job_rows(d)) == 3, f"client-002 has 3 queued jobs: {job_rows(d)}")
    d.find_element(By.CSS_SELECTOR, '#all-actions button[value="cancel:all"]').click()
    wait(d, lambda: d.find_elements(By.ID, "confirm-count"), "the confirmation")
    check(d.find_element(By.ID, "confirm-count").text == "3", "the confirmation says 3")
    shot(d, "confirm")
    d.find_element(By.CSS_SELECTOR, '#confirm button[value="cancel:all"]').click()
    wait(d, lambda: "3 of 3 job(s) changed" in d.page_source, "3 jobs cancelled")
    filter_jobs(d, client="client-002", state="queued")
    check(job_rows(d) == [], "no queued job of client-002 left")

    # A POST without the CSRF token is refused.
    status = post(d, "action=cancel:all&client=client-001&confirm=10")
    check(status == 403, f"a POST without CSRF is refused: {status}")

    d.get(BASE + "/tools")
    check(d.find_element(By.CSS_SELECTOR, '#tools tr[data-tool="hold"]'), "the tools page")
    shot(d, "tools")

    # No request left the console's origin; the policy forbids it anyway.
    names = d.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".concat([location.href])")
    foreign = [n for n in names if not n.startswith(ORIGIN + "/")]
    check(not foreign, f"requests to other origins: {foreign}")
    csp = d.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch('/ui/').then(r => done([r.headers.get('content-security-policy'),
                                       r.headers.get('x-frame-options')]));""")
    check(csp[0].startswith("default-src 'self'") and csp[1] == "DENY", f"headers: {csp}")

    # The same overview in dark mode, and on a phone.
    d.execute_cdp_cmd("Emulation.setEmulatedMedia",
                      {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    d.get(BASE + "/")
    shot(d, "overview-dark")
    d.execute_cdp_cmd("Emulation.setEmulatedMedia",
                      {"features": [{"name": "prefers-color-scheme", "value": "light"}]})
    d.set_window_size(390, 844)
    # Headless Chrome applies a resize asynchronously: measure only once it took effect.
    wait(d, lambda: d.execute_script("return window.innerWidth") <= 400, "a phone-sized window")
    d.get(BASE + "/")
    width = d.execute_script("return document.documentElement.scrollWidth")
    check(width <= 400, f"the overview fits a phone's width: {width}")
    shot(d, "overview-phone")
    d.set_window_size(1280, 800)
    d.find_element(By.CSS_SELECTOR, "form.logout button").click()
    wait(d, lambda: "/login" in d.current_url, "signed out")


def as_read_only(d):
    login(d, os.environ["RO_TOKEN"])
    filter_jobs(d, client="client-001", state="queued")
    check(len(job_rows(d)) == 1, f"client-001 has one queued job: {job_rows(d)}")
    check(not d.find_elements(By.CSS_SELECTOR, "#jobs-form button"), "no action buttons")
    check(not d.find_elements(By.CSS_SELECTOR, "#jobs input[name=id]"), "no selection boxes")
    queued = job_rows(d)[0]
    d.get(BASE + "/jobs/" + queued)
    check(not d.find_elements(By.ID, "job-actions"), "no actions on the job page")
    csrf = d.find_element(By.CSS_SELECTOR, "form.logout input[name=csrf]").get_attribute("value")
    status = post(d, f"csrf={csrf}&action=cancel:one&id={queued}")
    check(status == 403, f"a read-only operator's forged POST is refused: {status}")
    print("QUEUED", queued)


def main():
    d = browser()
    try:
        as_read_write(d)
        as_read_only(d)
    except Exception as e:  # report where, with a screenshot
        shot(d, "failure")
        print(f"FAILED at {d.current_url}: {e}", file=sys.stderr)
        return 1
    finally:
        d.quit()
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
