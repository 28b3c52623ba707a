"""The formgrader policy's parts, in process (tests/test_formgrader_browser.py proves it in a browser, logged in)."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from jinja2 import DictLoader, Environment

from g2c.grading import formgrader_csp as csp

TEMPLATE = ('<script src="/formgrader/static/x.js"></script><script>var base_url = "{{ base_url }}";</script>'
            f'<script type="text/x-mathjax-config">init()</script><script src="{csp.MATHJAX_CDN}"> </script>'
            '<p>{{ student_text }}</p>')


def test_only_the_templates_inline_scripts_get_the_nonce_and_mathjax_comes_from_the_server():
    env = Environment(loader=DictLoader({"page": TEMPLATE}))
    assert csp._nonced(env, "/g2c/mathjax-stand-in.js")
    token = csp._nonce.set("N0NCE")
    try:
        page = env.get_template("page").render(base_url="", student_text="<script>alert(1)</script>")
    finally:
        csp._nonce.reset(token)
    tags = re.findall(r"<script[^>]*>", page)
    assert tags == ['<script src="/formgrader/static/x.js">', '<script nonce="N0NCE">',
                    '<script nonce="N0NCE" type="text/x-mathjax-config">', '<script src="/g2c/mathjax-stand-in.js">',
                    "<script>"]  # the last is the rendered student text: no nonce, so the browser refuses it
    assert not csp._nonced(env, "/g2c/mathjax-stand-in.js")  # once


def test_the_policy_allows_no_inline_or_foreign_script_but_nbgraders_handlers():
    from nbgrader.server_extensions.formgrader import handlers

    hashes = csp.handler_hashes(Path(handlers.template_path))
    for code in ("toggle_name(true);", "createStudentModal();"):
        assert "sha256-" + base64.b64encode(hashlib.sha256(code.encode()).digest()).decode() in hashes
    policy = dict(part.split(" ", 1) for part in csp.policy("N0NCE", hashes).split("; "))
    script = policy["script-src"].split()
    assert script[:2] == ["'self'", "'nonce-N0NCE'"] and "'unsafe-inline'" not in script and "'unsafe-eval'" not in script
    assert all(s.startswith("'") for s in script)  # no host: no foreign script
    assert policy["object-src"] == "'none'" and policy["base-uri"] == "'none'" and policy["default-src"] == "'self'"
