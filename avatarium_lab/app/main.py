"""``panel serve avatarium_lab/app``: the live chat page for the configuration in ``$AVATARIUM_CONFIG`` (a YAML
path; default: the repository's default configuration).

The page is a client of the gateway API. ``avatarium serve CONFIG --ui`` (and ``make demo``) serves both on one
server, which is the way to run it; under plain ``panel serve`` point the page at a running gateway with
``$AVATARIUM_API_BASE`` (e.g. ``http://127.0.0.1:8000``; the gateway must then allow the page's origin).
"""

from __future__ import annotations

import os

import panel as pn

from avatarium_lab.app.live import build_page
from avatarium_lab.config import load_config
from avatarium_lab.secrets import install_log_redaction

pn.extension(notifications=False)
install_log_redaction()

build_page(load_config(os.environ.get("AVATARIUM_CONFIG") or None),
           api_base=os.environ.get("AVATARIUM_API_BASE", "")).servable(title="avatarium-lab")
