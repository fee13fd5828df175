"""The nodes page (SPEC §9, §10) in a real browser against a real cluster: two ``jobd run``
daemons on one fresh PostgreSQL database (tests/cluster.py), the page served by one of them
over TCP with its token. Every wait is a condition with a deadline (Playwright's ``expect``)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from tests import e2e
from tests.cluster import CLUSTER_WORKFLOWS, Cluster
from tests.webkit import TOKEN, WAIT_MS

expect.set_options(timeout=WAIT_MS)

#: ``encode`` runs only on a node tagged ``enc`` (node b here), ``render`` only on one tagged
#: ``gpu`` (node a), so the test knows where each job is.
WORKFLOWS = (
    CLUSTER_WORKFLOWS
    + """
[workflows.encode]
requires = ["enc"]
steps = [ { name = "wait", action = "e2e_wait_file", params = { path = "{path}" } } ]

[workflows.render]
requires = ["gpu"]
steps = [ { name = "wait", action = "e2e_wait_file", params = { path = "{path}" } } ]
"""
)


def test_the_nodes_and_queue_pages_show_the_cluster(
    browser: Browser, cluster: Cluster, base: Path
) -> None:
    token = base / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    port = e2e.free_port()
    api = f'listen = "127.0.0.1:{port}"\ntoken_file = "{token}"'
    cluster.add("a", tags=["gpu"], workflows=WORKFLOWS, api_extra=api)
    cluster.add("b", tags=["enc"], workers=2, workflows=WORKFLOWS)
    cluster.start("a", "b")
    context = browser.new_context(base_url=f"http://127.0.0.1:{port}")
    context.add_init_script(f"sessionStorage.setItem('jobd.token', {TOKEN!r})")
    context.set_default_timeout(WAIT_MS)
    try:
        tab = context.new_page()
        tab.goto("/nodes")
        a = tab.locator('tr[data-node="a"]')
        b = tab.locator('tr[data-node="b"]')
        expect(a).to_have_attribute("data-node-state", "up")
        expect(b).to_have_attribute("data-node-state", "up")
        expect(tab.locator(".nodes-summary")).to_have_text("2 nodes: 2 up, 0 lost, 0 left")
        expect(a).to_contain_text("gpu")
        expect(b).to_contain_text("enc")
        expect(b.locator("td.num").first).to_have_text("2")  # workers
        # A job running on b shows in b's row, without a reload.
        go = f"path={base / 'go'}"
        job = cluster.submit("a", "encode", "-p", go, "--asset", "tape-7")
        expect(b.locator(f'td.running a[href="/jobs/{job}"]')).to_be_visible()
        expect(a.locator("td.running")).to_have_attribute("data-count", "0")
        # The queue page shows the cluster's lock: b's job holds it, a's waits for it.
        waiter = cluster.submit("a", "render", "-p", go, "--asset", "tape-7")
        tab.get_by_role("link", name="queue", exact=True).click()
        lock = tab.locator('section.lock[data-asset="tape-7"]')
        expect(lock.locator(f'[data-role="holder"][data-job-id="{job}"]')).to_contain_text(
            "on node b"
        )
        queued = lock.locator(f'[data-role="waiter"][data-job-id="{waiter}"]')
        expect(queued).to_have_attribute("data-position", "1")
        expect(queued).to_contain_text("on node a")
        tab.get_by_role("link", name="nodes", exact=True).click()
        # b dies: once its lease ran out and a took over, the page says b is lost.
        cluster.kill("b")
        expect(b).to_have_attribute("data-node-state", "lost")
        expect(b.locator(".node-state")).to_have_text("lost")
        expect(tab.locator(".nodes-summary")).to_have_text("2 nodes: 1 up, 1 lost, 0 left")
    finally:
        context.close()
