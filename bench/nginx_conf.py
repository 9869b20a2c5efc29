"""The benchmark's nginx configurations: the fixed fake upstream and the reference proxy.

Each nginx runs with its own prefix, config, logs and temp directories under the run's private
directory (not the system's), one worker, no access log.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from scenarios import Scenario

HOST = "127.0.0.1"


def write_upstream(
    tmp: Path, port: int, scenarios: Sequence[Scenario], pacer_port: int | None = None
) -> Path:
    """The upstream nginx config and the files it serves for POST (via ``error_page 405``);
    paced scenarios are passed to the pacer on ``pacer_port``, unbuffered."""
    www = tmp / "www"
    locations = []
    for scenario in scenarios:
        if scenario.paced:
            locations.append(
                f"        location = {scenario.upstream_path} {{\n"
                f"            proxy_pass http://{HOST}:{pacer_port};\n"
                "            proxy_http_version 1.1;\n"
                "            proxy_buffering off;\n"
                "        }\n"
            )
            continue
        target = www / scenario.upstream_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(scenario.response)
        locations.append(
            f"        location = {scenario.upstream_path} {{\n"
            f"            default_type {scenario.content_type};\n"
            # nginx serves static files to GET only: POST gets 405, which this turns into the
            # file with status 200 (an internal redirect that re-runs the request as GET).
            "            error_page 405 =200 $uri;\n"
            "        }\n"
        )
    conf = tmp / "upstream.conf"
    conf.write_text(
        _nginx_main(tmp, "upstream")
        + "http {\n"
        + _nginx_http_common(tmp, "upstream")
        + "    etag off;\n"
        + "    open_file_cache max=64 inactive=3600s;\n"
        + "    open_file_cache_valid 3600s;\n"
        + f"    server {{\n        listen {HOST}:{port} backlog=4096;\n"
        + f"        root {www};\n"
        + "        location = /healthz { return 200 'ok'; }\n"
        + "".join(locations)
        + "    }\n}\n"
    )
    return conf


def write_proxy(tmp: Path, port: int, upstream_port: int) -> Path:
    """nginx as a reference proxy: one keep-alive proxy hop, streaming without buffering."""
    conf = tmp / "proxy.conf"
    conf.write_text(
        _nginx_main(tmp, "proxy")
        + "http {\n"
        + _nginx_http_common(tmp, "proxy")
        + "    upstream fake {\n"
        + f"        server {HOST}:{upstream_port};\n"
        + "        keepalive 128;\n        keepalive_requests 1000000;\n    }\n"
        + f"    server {{\n        listen {HOST}:{port} backlog=4096;\n"
        + "        location = /healthz { return 200 'ok'; }\n"
        + "        location / {\n"
        + "            proxy_pass http://fake;\n"
        + "            proxy_http_version 1.1;\n"
        + '            proxy_set_header Connection "";\n'
        + "            proxy_buffering off;\n"
        + "        }\n    }\n}\n"
    )
    return conf


def _nginx_main(tmp: Path, name: str) -> str:
    # As root the worker would switch to 'nobody', which cannot read the private temp dir.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        user + "worker_processes 1;\n"
        "daemon off;\n"
        f"pid {tmp}/{name}.pid;\n"
        f"error_log {tmp}/{name}-error.log warn;\n"
        "events { worker_connections 8192; }\n"
    )


def _nginx_http_common(tmp: Path, name: str) -> str:
    temp_dirs = "".join(
        f"    {kind}_temp_path {tmp}/{name}-{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        temp_dirs + "    access_log off;\n"
        "    keepalive_requests 1000000;\n"
        "    keepalive_timeout 120s;\n"
        "    client_body_buffer_size 64k;\n"
        "    sendfile on;\n"
        "    tcp_nodelay on;\n"
    )
