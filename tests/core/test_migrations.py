"""Migrations: landed revisions never change, late DDL arrives as a new revision, and the wheel
carries the migrations so an installed `faithflow db upgrade` works."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
from pathlib import Path

from sqlalchemy import create_engine, inspect, text

from faithflow_ops.migrate import MIGRATIONS_DIR, current_revision, head_revision, upgrade

REPO = Path(__file__).resolve().parents[2]

# SHA-256 of each landed revision's file by revision id (line endings normalised to \n). A
# landed revision is never edited: a database that already ran it would never see the change.
# Put new DDL in a new revision, and add that revision's fingerprint here when it lands.
LANDED = {
    "0001": "b6a580eeef422895998979529c6fa3c0a9f3145c70fbef2f5541bc0bdd7354aa",
    "0002": "e109bdcbe35e7c44a2a79ca32db9d17b7f6454ba5bacc20434554f9e64d33fff",
    "0003": "aaccb36cdc9cfcab09f9e129e0bf8ad59829b9d0f792a005af22541fdc72ca3b",
    "0004": "e62d1df5334c44011ca6a1d6002dc909e516bfee253b8ce95506e7b010040f8f",
    "0005": "64093c2b77f2019712eb0088219c007c24ae421ae5d55fbd980a64317e781c88",
    "0006": "e422a7bccab07e3e7e07bb9bfced1675c71ccedcecb80011b986e867e7919028",
    "0007": "85e77fa868fa61d50168812b9eadad9a2e531f8345879eaee34126b253f601f7",
    "0008": "f7125e31d929c44082b939aff26a198682804b17d021c7ab7698df0bcf2ec7db",
    "0009": "3dd4fa56cf806139884f7a4764962dc5d1fb0d6d18fa83fd975b6b0aeb9f3115",
    "0010": "05432ae7d2a36ff47985736bd4b370bc81d7588b1b38a0c4f7c96b17b908da65",
    "0011": "b737f6a9171e56cfbd13b39a584f21fa782b0eafe749fdd9963d19396283b1bb",
    "0012": "e9d2fc506da4d0649ec7b4612b112e792c2852b6d72894ea25e674a21198e7a4",
    "0013": "5997ecf0c974e9d9cf69088aece17370447f8fc2995a63f106d789a155f95538",
    "0014": "b65793b23c4158654dcba62c120dea8a153ab1ca4ac952173aaf435716a74d4b",
    "0015": "04ecace9723b2129ab1ab61797b205189f6456dc75f04639395a787ec88bec84",
    "0016": "c1ab59b970ffe834e9dd907aa8a81b18932ee675205c340483b7b7e1dbc5018e",
    "0017": "6f5e9f43d18066017815d13afd1c4b4fcd55263a01f13f62d851ed0713816545",
    "0018": "32e319e0ac36674ab853b8ef8d26b7e7972788d13ba77a0d7db809e49e449c1e",
    "0019": "4be746dafa07603f703ab9877c708165128278105ea3117daee2cbe7e530966b",
    "0020": "9201b62b9d72a5ee1fc21fc53ce13f08b73f95d55d00e8cbf12212a989fae438",
    "0021": "3c23b67cc3180967d36721f0dba1d4b2ee28aa274335de4fce5a7ea9904ad4cb",
    "0022": "e12770af942d65ff297a2e5659a441b661efe00c926bfe61fbdcd60b3922220b",
    "0023": "a824238e1e7f7c3cd87b060875c30022068bc08899121b91978b569a715c381c",
    "0024": "7b9c22131a730b16ecf403e178196c63e209243ac8ae830b68a0915382f56ce5",
    "0025": "6475846fcb6fff909a364aa3c4759c8ce6870a4e679b979b175f396766e3a478",
}


def _fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def _revisions() -> dict[str, Path]:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()
    return {script.revision: Path(str(script.path)) for script in scripts}


def test_landed_revisions_are_never_edited() -> None:
    files = _revisions()
    found = {revision: _fingerprint(path) for revision, path in files.items()}
    edited = [
        files[rev].name for rev, digest in found.items() if rev in LANDED and LANDED[rev] != digest
    ]
    assert not edited, (
        f"landed revision(s) changed: {', '.join(edited)}. Never edit a landed revision; add a "
        "new one (`alembic revision -m …`) that makes the change, and restore the file(s)."
    )
    new = {revision: digest for revision, digest in found.items() if revision not in LANDED}
    assert not new, (
        "new revision(s) without a fingerprint: add them to LANDED in "
        "tests/core/test_migrations.py "
        "(from then on they are landed and never edited):\n"
        + "\n".join(f'    "{revision}": "{digest}",' for revision, digest in sorted(new.items()))
    )
    removed = sorted(set(LANDED) - set(found))
    assert not removed, (
        f"landed revision(s) removed: {', '.join(removed)}. A database may already be past "
        "them; never remove a landed revision."
    )


_INDEX = "ix_outbound_messages_provider_message_id"


def _provider_message_indexes(url: str) -> list[dict[str, object]]:
    engine = create_engine(url)
    try:
        indexes = inspect(engine).get_indexes("outbound_messages")
    finally:
        engine.dispose()
    return [dict(index) for index in indexes if index["name"] == _INDEX]


def test_a_database_at_0005_from_before_the_index_gets_it_from_0010(db_url: str) -> None:
    """0005 as it first landed had no provider_message_id index; 0010 adds it where missing."""
    engine = create_engine(db_url)
    try:
        upgrade(engine, "0005")
        with engine.begin() as conn:  # what 0005 left behind before it gained the index
            conn.execute(text(f"DROP INDEX {_INDEX}"))
        upgrade(engine, "0009")
        assert _provider_message_indexes(db_url) == []
        assert upgrade(engine, "head") == ("0009", head_revision())
    finally:
        engine.dispose()
    [index] = _provider_message_indexes(db_url)
    assert index["column_names"] == ["provider_message_id"]
    assert not index["unique"]
    options = index.get("dialect_options", {})
    assert isinstance(options, dict)
    where = options.get("postgresql_where", options.get("sqlite_where"))
    assert where is not None and "provider_message_id IS NOT NULL" in str(where)


def test_0010_leaves_the_index_0005_already_made(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        upgrade(engine, "0009")
        assert len(_provider_message_indexes(db_url)) == 1
        upgrade(engine, "0010")
        assert current_revision(engine) == "0010"
    finally:
        engine.dispose()
    assert len(_provider_message_indexes(db_url)) == 1


def test_downgrading_past_0005_still_works_after_0010(db_url: str) -> None:
    """0010 leaves the index on downgrade: 0005's own downgrade drops it."""
    from alembic import command
    from alembic.config import Config

    engine = create_engine(db_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0004")
        assert current_revision(engine) == "0004"
        assert upgrade(engine) == ("0004", head_revision())
    finally:
        engine.dispose()
    assert len(_provider_message_indexes(db_url)) == 1


def _copy_sources(target: Path) -> Path:
    """The files the wheel is built from, copied so the build never writes into the checkout
    (setuptools leaves build/ and *.egg-info behind) and parallel runs never share them."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("faithflow_ops", "receiver", "migrations"):
        shutil.copytree(REPO / name, target / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "MANIFEST.in"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, target / name)
    return target


def test_an_installed_wheel_upgrades_an_empty_database_to_head(tmp_path: Path) -> None:
    """Build the wheel, install it into a fresh venv and run `faithflow db upgrade` from
    outside the checkout: the migrations must come from the installed package."""
    source = _copy_sources(tmp_path / "src")
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", str(source), "-w", str(dist)], check=True)
    [wheel] = dist.glob("faithflow_ops-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", str(wheel)], check=True)
    # The dependencies come from this test's environment, after the venv's own site-packages
    # so the wheel's faithflow_ops wins. A venv made from a venv with --system-site-packages
    # would see the base interpreter's packages, not these. A plain path line: the checkout's
    # editable-install hook in that folder is not run.
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "zz_faithflow_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    database = work / "faithflow.db"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["FAITHFLOW_DATABASE_URL"] = f"sqlite:///{database}"

    located = subprocess.run(
        [
            str(python),
            "-c",
            "from faithflow_ops.migrate import MIGRATIONS_DIR; print(MIGRATIONS_DIR)",
        ],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(located) == site / "migrations"

    result = subprocess.run(
        [str(venv / "bin" / "faithflow"), "db", "upgrade"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(database) as conn:
        [(revision,)] = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert revision == head_revision()


def test_alembic_ini_and_faithflow_db_upgrade_use_the_same_scripts() -> None:
    from alembic.config import Config

    ini = Config(str(REPO / "alembic.ini"))
    assert (REPO / ini.get_main_option("script_location", "")).resolve() == MIGRATIONS_DIR
    assert MIGRATIONS_DIR == REPO / "migrations"
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
