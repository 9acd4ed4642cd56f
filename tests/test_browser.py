"""A student in a real browser: log in with a workshop account, JupyterLab loads, a cell runs."""

from __future__ import annotations

import pytest
from conftest import run_first_cell

pytestmark = [pytest.mark.hub, pytest.mark.browser]


def test_workshop_student_logs_in_and_runs_a_cell(fork_hub, browser, output_dir):
    (name,) = fork_hub.create_accounts("web", 1)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(120_000)
    page.goto(fork_hub.url + "hub/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", fork_hub.passwords[name])
    page.click("input[type=submit], button[type=submit]")
    # The hub starts the first course the student may open and sends the browser on to its notebook.
    # With subdomains (the default) on the student's own host, <name>.localhost.
    page.wait_for_url(fork_hub.server_url(name, "demo") + "lab**", timeout=180_000)
    page.goto(fork_hub.server_url(name, "demo") + "lab/tree/demo/welcome.ipynb")
    code = "print(6 * 7, 'from', __import__('os').environ['USER'])"
    text = run_first_cell(page, output_dir, "browser-jupyterlab-cell.png", code=code, expect="42")
    assert "42 from " + fork_hub.prefix + name in text
    page.close()
