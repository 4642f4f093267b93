"""The web console (issue #24) in real headless Chromium: Debian's `chromium`, driven through
Debian's `chromedriver` by Selenium, against a real 3-node cluster's REST gateway. The pages load
signed in, a refused call shows in the trail (and arrives by follow), every member's chain is ok,
the roles view lists system.admin's rules, a volume shows its ownership and replicas, the explain
form gives `custos access explain`'s answer, and the token lives in sessionStorage only.
Screenshots of each view go to $CUSTOS_CONSOLE_SCREENSHOTS (default target/console-screenshots;
docs/console/ holds the committed ones)."""

import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, _custos_bin, dev_cluster

CHROMIUM = os.environ.get("CUSTOS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CUSTOS_CHROMEDRIVER", "/usr/bin/chromedriver")
SHOTS = Path(os.environ.get("CUSTOS_CONSOLE_SCREENSHOTS", str(ROOT / "target" / "console-screenshots")))
WAIT = 30  # seconds, for any one thing the page must show
CALL_TIMEOUT = 20


def rest(base, method, path, token=None, body=None):
    """One REST call: (HTTP status, parsed JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{base}{path}", data=data, method=method)
    if token:
        req.add_header("Authorization", "bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=CALL_TIMEOUT) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def explain_cli(info, admin, case):
    """`custos access explain -o json` for one form input, through the first member's SDK port."""
    args = [_custos_bin(), "--endpoint", info["endpoints"][0], "--token", admin, "-o", "json",
            "access", "explain", "--user", case["user"], "--method", case["method"]]
    for flag in ("groups", "roles", "volume"):
        if case[flag]:
            args += [f"--{flag}", case[flag]]
    with tempfile.TemporaryDirectory(prefix="custos-console-cli-") as config:
        env = dict(os.environ, CUSTOS_CONFIG_DIR=config)
        env.pop("CUSTOS_CONTEXT", None)
        env.pop("CUSTOS_TOKEN", None)
        out = subprocess.run(args, capture_output=True, text=True, timeout=CALL_TIMEOUT, env=env,
                             stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _descendants(pid):
    """Every live process below `pid` (by /proc's parent links)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


@pytest.fixture(scope="module")
def console_cluster():
    with dev_cluster(3, prefix="custos-py-console-") as info:
        yield info


@pytest.fixture(scope="module")
def browser():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} is missing: scripts/test.sh installs Debian's chromium and chromium-driver")
    # Selenium must not look for (or download) a browser or driver of its own.
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="custos-console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1400,900",
        "--force-device-scale-factor=1",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-features=Translate,MediaRouter,OptimizationHints",
        # Loopback only: any other host fails to resolve, so nothing can load from elsewhere.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(arg)
    log = Path(profile) / "chromedriver.log"
    service = Service(executable_path=CHROMEDRIVER, log_output=str(log))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    driver_pid = service.process.pid
    try:
        yield driver
    finally:
        spawned = _descendants(driver_pid)
        try:
            driver.quit()
        finally:
            deadline = time.monotonic() + 10
            for pid in [driver_pid, *spawned]:
                while time.monotonic() < deadline:
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        break
                    time.sleep(0.1)
                else:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            import shutil
            shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, what, predicate):
    """Polls `predicate(driver)` until truthy (bounded by WAIT); fails naming `what`."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    deadline = time.monotonic() + WAIT
    last = None
    while time.monotonic() < deadline:
        try:
            value = predicate(driver)
            if value:
                return value
        except (StaleElementReferenceException, WebDriverException) as e:
            last = e
        time.sleep(0.2)
    body = driver.find_element("tag name", "body").text[:2000]
    pytest.fail(f"the page did not show {what} within {WAIT} s ({last}); it shows:\n{body}")


def css(driver, selector):
    return driver.find_elements("css selector", selector)


def shot(driver, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    time.sleep(0.3)  # let the last paint settle
    assert driver.save_screenshot(str(SHOTS / f"{name}.png")), name


def go(driver, view):
    link = wait_for(driver, f"the {view} link", lambda d: css(d, f'#nav a[data-view="{view}"]'))[0]
    link.click()
    wait_for(driver, f"the {view} view", lambda d: css(d, f"section#{view}"))


def test_console_in_headless_chromium(console_cluster, browser):
    info = console_cluster
    base = info["nodes"][0]["rest"]
    other = info["nodes"][1]["rest"]
    admin, user, view = (info["tokens"][k] for k in ("admin", "user", "view"))
    d = browser
    origin = f"http://{base}"

    # Data to look at: a volume with ACLs (created through another member), and a refused create.
    status, made = rest(other, "POST", "/v1/volumes", user, {
        "name": "console-db",
        "spec": {"size": str(10 << 30), "ha_level": "2",
                 "ownership": {"acls": {"groups": {"dba": "Write"}, "collaborators": {"alice": "Read"}}}},
        "labels": {"app": "db"},
    })
    assert status == 200, made
    volume_id = made["volume_id"]
    status, refused = rest(other, "POST", "/v1/volumes", view, {"name": "console-nope", "spec": {"size": "1024"}})
    assert status == 403, refused
    # An edge refusal reaches the trail with the next denial batch: wait (bounded) until it has.
    deadline = time.monotonic() + WAIT
    while True:
        status, page = rest(base, "GET", "/v1/custos/audit/records?filter.username=view&filter.authorized=false", admin)
        assert status == 200, page
        if page.get("records") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert page.get("records"), "the refusal never reached the trail"

    # Signed out, the page offers the sign-in form; a typed token goes to sessionStorage only.
    d.get(origin + "/")
    box = wait_for(d, "the sign-in form", lambda d: css(d, "#signin textarea#token-input"))[0]
    shot(d, "signin")
    box.send_keys(admin)
    css(d, "#signin-form button[type=submit]")[0].click()
    wait_for(d, "the audit view", lambda d: css(d, "section#audit"))
    assert d.execute_script("return document.compatMode") == "CSS1Compat"  # standards mode
    assert d.execute_script("return sessionStorage.getItem('custos.console.token')") == admin
    assert d.execute_script("return localStorage.length") == 0
    assert d.execute_script("return document.cookie") == ""
    assert d.get_cookies() == []
    wait_for(d, "who is signed in", lambda d: "Signed in as admin" in d.find_element("id", "whoami").text)

    # The trail: the refused create, found by the filters and marked refused.
    form = css(d, "#audit-filters")[0]
    form.find_element("name", "user").send_keys("view")
    form.find_element("css selector", "select[name=outcome] option[value=refused]").click()
    form.find_element("css selector", "button[type=submit]").click()

    def refused_create(d):
        rows = css(d, "#audit-rows tr")
        return rows and all(r.get_attribute("data-outcome") == "refused" for r in rows) and [
            r for r in rows if "volume.create" in r.text and "Access denied" in r.text]
    row = wait_for(d, "the refused create in the trail", refused_create)[0]
    assert "refused" in row.get_attribute("class")
    assert "refused" in row.find_element("css selector", ".badge").text
    assert "PermissionDenied" in row.text
    shot(d, "audit-refused")

    # Follow: a refusal made after the page loaded arrives by itself.
    css(d, "#audit-reset")[0].click()
    wait_for(d, "the unfiltered trail", lambda d: len(css(d, "#audit-rows tr[data-seq]")) >= 3)
    newest = max(int(r.get_attribute("data-seq")) for r in css(d, "#audit-rows tr[data-seq]"))
    css(d, "#audit-follow")[0].click()
    wait_for(d, "following", lambda d: "following" in css(d, "#audit-follow-state")[0].text)
    status, _ = rest(other, "POST", "/v1/volumes", view, {"name": "console-late", "spec": {"size": "1024"}})
    assert status == 403
    status, late = rest(base, "POST", "/v1/volumes", user, {"name": "console-web", "spec": {"size": str(1 << 30)}})
    assert status == 200, late

    def followed(d):
        rows = [r for r in css(d, "#audit-rows tr[data-seq]") if int(r.get_attribute("data-seq")) > newest]
        return any(r.get_attribute("data-outcome") == "refused" for r in rows) and any(
            late["volume_id"] in r.text for r in rows) and rows
    followed_rows = wait_for(d, "the new records by follow", followed)
    # Newest on top, in order.
    seqs = [int(r.get_attribute("data-seq")) for r in css(d, "#audit-rows tr[data-seq]")]
    assert seqs == sorted(seqs, reverse=True), seqs
    assert seqs[0] == max(int(r.get_attribute("data-seq")) for r in followed_rows)
    time.sleep(2.6)  # the new rows' glow fades
    shot(d, "audit")
    css(d, "#audit-follow")[0].click()

    # Chain status: every member verified its chain and they agree.
    go(d, "chain")
    summary = wait_for(d, "the chain summary", lambda d: css(d, "#chain-summary"))[0]
    assert summary.get_attribute("data-ok") == "true", summary.text
    assert "All 3 members verified their chains and agree" in summary.text
    members = css(d, "#chain-members tr[data-node]")
    assert [m.get_attribute("data-node") for m in members] == ["1", "2", "3"]
    assert all(m.get_attribute("data-ok") == "true" for m in members)
    facts = wait_for(d, "the cluster facts", lambda d: css(d, "#chain-cluster dl.facts"))[0]
    assert info["cluster_id"] in facts.text, facts.text
    shot(d, "chain")

    # Roles: system.admin's rules are the registry's.
    status, role = rest(base, "GET", "/v1/roles/inspect/system.admin", admin)
    assert status == 200, role
    go(d, "roles")
    card = wait_for(d, "system.admin's card", lambda d: css(d, 'article[data-role="system.admin"] table.rules'))[0]
    rows = card.find_elements("css selector", "tbody tr")
    shown = [[[c.text for c in cell.find_elements("css selector", ".chip")] for cell in r.find_elements("css selector", "td")]
             for r in rows]
    assert shown == [[rule.get("services", []), rule.get("apis", [])] for rule in role["role"]["rules"]], shown
    for name in ("system.user", "system.view", "system.guest"):
        assert css(d, f'article[data-role="{name}"]'), name
    shot(d, "roles")

    # A volume: its ownership and replicas, as the gateway reports them.
    status, inspected = rest(base, "GET", f"/v1/volumes/inspect/{volume_id}", admin)
    assert status == 200, inspected
    go(d, "volumes")
    option = wait_for(d, "the volume in the picker",
                      lambda d: css(d, f'#volume-picker option[value="{volume_id}"]'))[0]
    option.click()
    details = wait_for(d, "the volume's details", lambda d: css(d, f'#volume-details[data-volume="{volume_id}"]'))[0]
    assert css(d, "#volume-owner")[0].text == "user"
    assert css(d, "#volume-public")[0].text == "no"
    ownership = css(d, "#volume-ownership")[0].text
    assert "dba\nWrite" in ownership or "dba Write" in ownership, ownership
    assert "alice\nRead" in ownership or "alice Read" in ownership, ownership
    want = [rs.get("nodes", []) for rs in inspected["volume"].get("replica_sets", [])]
    assert want and len(want[0]) == 2, inspected
    got = [[c.text for c in r.find_elements("css selector", ".chip")] for r in css(d, "#volume-replicas tr.replica-set")]
    assert got == want, (got, want)
    assert "10 GiB" in details.text
    hosts = wait_for(d, "the replicas' storage nodes", lambda d: css(d, "#volume-nodes tr[data-node]"))
    assert sorted(h.get_attribute("data-node") for h in hosts) == sorted({n for rs in want for n in rs})
    shot(d, "volume")

    # The explain form gives the CLI's answer: `custos access explain` with the same input.
    go(d, "explain")
    cases = [
        # A refusal by role: system.view may not create.
        {"user": "view", "groups": "", "roles": "system.view", "method": "volume.create", "volume": ""},
        # Allowed through a collaborator ACL of the volume, named by its name.
        {"user": "alice", "groups": "", "roles": "system.user", "method": "volume.inspect", "volume": "console-db"},
        # Refused by ownership: a group member with Write may not delete (Admin needed).
        {"user": "bob", "groups": "dba", "roles": "system.user", "method": "volume.delete", "volume": "console-db"},
    ]
    verdicts = []
    for case in cases:
        answer = explain_cli(info, admin, case)
        form = css(d, "#explain-form")[0]
        for name, value in case.items():
            box = form.find_element("name", name)
            box.clear()
            if value:
                box.send_keys(value)
        form.find_element("css selector", "button[type=submit]").click()
        want_lines = [line.rstrip() for line in answer["lines"]]
        wait_for(d, f"the CLI's explanation of {case}", lambda d: [
            p for p in css(d, "#explain-lines") if [x.rstrip() for x in p.text.split("\n")] == want_lines])
        banner = css(d, "#explain-verdict")[0]
        allowed = answer["verdict"].get("allowed", False)
        assert banner.get_attribute("data-allowed") == ("true" if allowed else "false"), (case, banner.text)
        if not allowed:
            assert css(d, "#explain-verdict-message")[0].text == answer["verdict"]["message"], case
            assert answer["verdict"]["code"] in banner.text, (case, banner.text)
        for role in answer.get("role_checks", []):
            assert css(d, f'#explain-result .explain-role[data-role="{role["name"]}"]'), role["name"]
        verdicts.append(allowed)
        if case["user"] == "bob":
            d.set_window_size(1400, 1350)  # the whole explanation, down to the CLI's lines
            shot(d, "explain")
            d.set_window_size(1400, 900)
    assert verdicts == [False, True, False], verdicts

    # Nothing came from anywhere but this gateway.
    resources = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(r.startswith(origin + "/") for r in resources), resources

    # Sign out forgets the token; the fragment signs in without it ever reaching the server or
    # staying in the address bar, and a view token sees refusals where it may not read.
    css(d, "#signout")[0].click()
    wait_for(d, "the sign-in form again", lambda d: css(d, "#signin"))
    assert d.execute_script("return sessionStorage.length") == 0
    d.get(f"{origin}/#token={view}&view=audit")
    wait_for(d, "the view token's refusal", lambda d: [
        b for b in css(d, "#audit-error .banner") if "/custos.admin.v1.Audit/List denied" in b.text])
    assert view not in d.current_url and d.current_url.endswith("#audit"), d.current_url
    assert d.execute_script("return sessionStorage.getItem('custos.console.token')") == view
    go(d, "roles")
    wait_for(d, "roles for a view token", lambda d: css(d, 'article[data-role="system.view"]'))
    css(d, "#signout")[0].click()
    wait_for(d, "signed out", lambda d: css(d, "#signin"))
