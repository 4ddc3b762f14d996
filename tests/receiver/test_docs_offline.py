"""The Swagger page at /docs works offline (issue 16): every script and stylesheet it loads is
served by the receiver itself (shipped in the package), none from a CDN."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin, urlparse

import httpx
from helpers import running

from faithflow_ops.config import Settings
from faithflow_ops.db import Database
from receiver.app import create_app


def test_docs_load_every_asset_from_the_receiver(tmp_path: Path) -> None:
    db = Database.from_url(f"sqlite:///{tmp_path / 'docs.db'}")
    try:
        app = create_app(Settings(database_url=str(db.engine.url), webhook_worker=False), db=db)
        with running(app) as base:
            page = httpx.get(base + "/docs", timeout=5)
            assert page.status_code == 200
            urls = re.findall(r'<script[^>]*\bsrc="([^"]+)"', page.text)
            urls += re.findall(r'<link[^>]*\bhref="([^"]+)"', page.text)
            assert any(u.endswith(".js") for u in urls) and any(u.endswith(".css") for u in urls)
            for url in urls:
                absolute = urljoin(base + "/docs", url)
                assert urlparse(absolute).netloc == urlparse(base).netloc, f"{url} is not local"
                asset = httpx.get(absolute, timeout=5)
                assert asset.status_code == 200, url
                assert len(asset.content) > 1000, url
    finally:
        db.dispose()
