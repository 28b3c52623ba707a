"""A Content-Security-Policy on formgrader's pages: the second wall behind intake.

Formgrader renders students' markdown into pages that hold the instructor's Jupyter session
(its REST API sets grades). Intake (``g2c.grading.sandbox.intake``) makes that markdown inert;
this Jupyter server extension makes sure that, were something to slip through, no inline or
foreign script runs there. Every formgrader page gets a policy whose ``script-src`` is the
server itself plus a nonce drawn for that response: nbgrader's own templates (its pages, and the
nbconvert templates of the submission view) get the nonce on each of their inline ``<script>``
tags as they are loaded from disk, before any student byte is rendered into them, so only
script written by nbgrader or nbconvert runs. Script tags with a ``src`` get no nonce: from
another host (nbconvert's require.js CDN) they are refused. The inline ``onclick`` handlers of
nbgrader's templates are allowed by their hashes (``'unsafe-hashes'``).

MathJax 2, which the submission view loads from a CDN, would be refused too, and formgrader's
script stops where it calls it: its place is taken by MATHJAX_STAND_IN, served from the server
itself, which answers formgrader's calls and typesets nothing (formulas show as TeX).

Enabled by ``g2c/grading/jupyter_server_config.py`` (``g2c formgrader`` starts the server with it).
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import re
import secrets
from pathlib import Path

from jinja2 import BaseLoader

SCRIPT_TAG = re.compile(r"<script\b(?![^>]*\bsrc\s*=)", re.I)  # an inline script's opening tag
HANDLER = re.compile(r"""\son[a-z]+\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
_nonce: contextvars.ContextVar[str] = contextvars.ContextVar("g2c_csp_nonce", default="")
MATHJAX_CDN = "https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/latest.js?config=TeX-AMS_CHTML-full,Safe"  # nbconvert's
MATHJAX_PATH = "g2c/mathjax-stand-in.js"
MATHJAX_STAND_IN = """// MathJax 2 as formgrader's script calls it, typesetting nothing: formulas show as TeX (g2c)
if (!(window.MathJax && window.MathJax.Hub)) window.MathJax = {Hub: {Config: function () {}, Queue: function () {},
  Startup: {signal: {Interest: function (listen) { setTimeout(function () { listen("End"); }, 0); }}}}};
"""


def policy(nonce: str, handler_hashes: list[str]) -> str:
    """The policy of one formgrader page."""
    hashes = " ".join(f"'{h}'" for h in handler_hashes)
    return "; ".join([
        "default-src 'self'",
        f"script-src 'self' 'nonce-{nonce}' 'unsafe-hashes' {hashes}",
        "style-src 'self' 'unsafe-inline'",  # nbgrader's and nbconvert's pages style with inline CSS; intake removes students'
        "img-src 'self' data:",  # matplotlib figures are data: PNGs; formgrader's own icons
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    ])  # no report-uri: Jupyter's report endpoint refuses a page's reports (no XSRF token), the console shows them


def handler_hashes(template_folder: Path) -> list[str]:
    """CSP hashes of the inline event handlers written in nbgrader's templates."""
    found = {m.group(1) if m.group(1) is not None else m.group(2) for path in sorted(template_folder.rglob("*"))
             if path.is_file() for m in HANDLER.finditer(path.read_text(errors="replace"))}
    return sorted("sha256-" + base64.b64encode(hashlib.sha256(h.encode()).digest()).decode() for h in found)


class NoncedLoader(BaseLoader):
    """A template loader that adds the response's nonce to every inline script tag of a template's source, and
    puts the MathJax stand-in where the template loads MathJax from its CDN."""

    def __init__(self, inner: BaseLoader, mathjax_url: str) -> None:
        self.inner, self.mathjax_url = inner, mathjax_url

    def get_source(self, environment, template):
        source, filename, uptodate = self.inner.get_source(environment, template)
        source = SCRIPT_TAG.sub('<script nonce="{{ g2c_csp_nonce() }}"', source.replace(MATHJAX_CDN, self.mathjax_url))
        return source, filename, uptodate

    def list_templates(self):
        return self.inner.list_templates()


def _nonced(environment, mathjax_url: str) -> bool:
    """Wrap ``environment``'s loader once; True when it was wrapped now."""
    if isinstance(environment.loader, NoncedLoader):
        return False
    environment.loader = NoncedLoader(environment.loader, mathjax_url)
    environment.globals["g2c_csp_nonce"] = _nonce.get
    return True


def install(handler_class, template_folder: Path, mathjax_url: str) -> None:
    """Give ``handler_class`` (formgrader's BaseHandler, base of all its pages) the policy and the nonces."""
    hashes = handler_hashes(template_folder)
    render, exporter = handler_class.render, handler_class.exporter

    def csp_nonce(self) -> str:
        if not getattr(self, "_g2c_nonce", None):
            self._g2c_nonce = secrets.token_urlsafe(18)
        return self._g2c_nonce

    def content_security_policy(self) -> str:
        return policy(csp_nonce(self), hashes)

    def nonced_render(self, name, **ns):
        _nonced(self.settings["nbgrader_jinja2_env"], mathjax_url)
        _nonce.set(csp_nonce(self))
        return render(self, name, **ns)

    def nonced_exporter(self):
        found = exporter.fget(self)
        if _nonced(found.environment, mathjax_url):
            found._invalidate_template_cache()
        _nonce.set(csp_nonce(self))
        return found

    handler_class.content_security_policy = property(content_security_policy)
    handler_class.render = nonced_render
    handler_class.exporter = property(nonced_exporter)


def _jupyter_server_extension_points():
    return [{"module": "g2c.grading.formgrader_csp"}]


def _load_jupyter_server_extension(serverapp) -> None:
    from jupyter_server.utils import url_path_join
    from nbgrader.server_extensions.formgrader import base, handlers
    from tornado import web

    class MathJaxStandIn(web.RequestHandler):
        def get(self) -> None:
            self.set_header("Content-Type", "application/javascript")
            self.write(MATHJAX_STAND_IN)

    path = url_path_join(serverapp.web_app.settings["base_url"], MATHJAX_PATH)
    serverapp.web_app.add_handlers(".*$", [(path, MathJaxStandIn)])
    install(base.BaseHandler, Path(handlers.template_path), path)
    serverapp.log.info("g2c: formgrader pages carry a Content-Security-Policy (no inline or foreign script)")
