"""The course's Jupyter server for formgrader: ``g2c formgrader`` (or ``jupyter server --config=<this file>``, from the
course folder) starts it with this file.

Formgrader's pages hold the instructor's session and show what students wrote, so they carry a
Content-Security-Policy (``g2c.grading.formgrader_csp``): only nbgrader's and nbconvert's own
script runs there. The server listens on the loopback only.
"""

c = get_config()  # noqa: F821 (Jupyter injects get_config)

c.ServerApp.jpserver_extensions.update({
    "nbgrader.server_extensions.formgrader": True,
    "g2c.grading.formgrader_csp": True,  # after formgrader: it wraps formgrader's page handlers
})
c.ServerApp.ip = "127.0.0.1"
c.ServerApp.open_browser = False
