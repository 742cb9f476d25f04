"""What real trivy runs are tested on, all made here: three images and a vulnerability database.

- `leaky`: a config file with a realistic fake cloud credential (not AWS's documented example
  keys, which trivy ignores on purpose);
- `vulnerable`: an old Python package (requests 2.19.0) that the database marks vulnerable, with
  one fixed and one unfixed advisory;
- `clean`: a plugin module and a package the database knows nothing against.

The database is written in trivy's own format (a bbolt file plus metadata.json) by the small Go
program e2e/tools/trivydb; nothing is downloaded. Beside it is trivy's Java database (`java-db/`,
SQLite), empty but present: trivy refuses to scan a jar without one, and identifies jars by
their `META-INF/maven/**/pom.properties` (a jar that shades log4j-core 2.14.1 carries its
pom.properties, which the database marks vulnerable).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import sqlite3
import subprocess
import zipfile
from collections.abc import Iterable, Mapping
from io import BytesIO
from pathlib import Path

from e2e.localcluster.build import ensure_built, ensure_tool
from wayang_operator.images.oci import File, Image, ImageSpec, build

PIP = "pip::GitHub Security Advisory pip"
MAVEN = "maven::GitHub Security Advisory Maven"
JAR_CVE = "CVE-2021-44228"
FIXED_CVE = "CVE-2018-18074"
UNFIXED_ID = "GHSA-wayg-unfx-0001"
FAKE_KEY_ID = "AKIA2E0A8F3B244C9986"
FAKE_SECRET = "wJ8rX2u9Qm4tZp7Lk1Vb6Nc3Hd5Gf0Sa8Ye2Rw4T"


def trivy() -> Path:
    return ensure_built(["trivy"])["trivy"]


def _dist_info(name: str, version: str, license_name: str) -> File:
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nLicense: {license_name}\n"
    path = f"usr/lib/python3/site-packages/{name}-{version}.dist-info/METADATA"
    return File(path, metadata.encode())


PLUGIN_MODULE = File("app/plugin.py", b"def execute(inputs, properties):\n    return inputs\n")

SPECS = {
    "clean": ImageSpec(
        "localhost/wayang-test/clean:1.0",
        [[PLUGIN_MODULE, _dist_info("idna", "3.7", "BSD-3-Clause")]],
    ),
    "vulnerable": ImageSpec(
        "localhost/wayang-test/vulnerable:1.0",
        [[PLUGIN_MODULE, _dist_info("requests", "2.19.0", "Apache-2.0")]],
    ),
    "leaky": ImageSpec(
        "localhost/wayang-test/leaky:1.0",
        [
            [
                PLUGIN_MODULE,
                File(
                    "app/deploy.env",
                    (
                        "REGION=eu-west-1\n"
                        f"AWS_ACCESS_KEY_ID={FAKE_KEY_ID}\n"
                        f"AWS_SECRET_ACCESS_KEY={FAKE_SECRET}\n"
                    ).encode(),
                ),
            ]
        ],
    ),
}


def images(folder: Path) -> dict[str, Image]:
    """The three images as OCI layout directories under `folder` (built once per folder)."""
    return {name: build(spec, folder / name) for name, spec in SPECS.items()}


def _entries() -> list[dict[str, object]]:
    return [
        {
            "path": [PIP, "requests", FIXED_CVE],
            "value": {"VulnerableVersions": ["<2.20.0"], "PatchedVersions": ["2.20.0"]},
        },
        # the versions the vulnerable image has: the runtime images carry a current requests (the
        # host's OTLP exporter needs it), which no test advisory should match
        {"path": [PIP, "requests", UNFIXED_ID], "value": {"VulnerableVersions": ["<=2.19.0"]}},
        {
            "path": ["vulnerability", FIXED_CVE],
            "value": {
                "Title": "requests: Redirect from HTTPS to HTTP keeps the Authorization header",
                "Severity": "HIGH",
                "VendorSeverity": {"ghsa": 3},
            },
        },
        {
            "path": ["vulnerability", UNFIXED_ID],
            "value": {
                "Title": "requests: a test advisory with no fix yet",
                "Severity": "MEDIUM",
                "VendorSeverity": {"ghsa": 2},
            },
        },
        {
            "path": [MAVEN, "org.apache.logging.log4j:log4j-core", JAR_CVE],
            "value": {
                "VulnerableVersions": [">=2.0-beta9, <2.15.0"],
                "PatchedVersions": ["2.15.0"],
            },
        },
        {
            "path": ["vulnerability", JAR_CVE],
            "value": {
                "Title": "log4j-core: remote code execution through JNDI lookups in messages",
                "Severity": "CRITICAL",
                "VendorSeverity": {"ghsa": 4},
            },
        },
        {
            "path": ["data-source", MAVEN],
            "value": {
                "ID": "ghsa",
                "Name": "GitHub Security Advisory Maven",
                "URL": "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Amaven",
            },
        },
        {
            "path": ["data-source", PIP],
            "value": {
                "ID": "ghsa",
                "Name": "GitHub Security Advisory pip",
                "URL": "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Apip",
            },
        },
    ]


def vulnerability_db(cache_dir: Path, updated_at: datetime.datetime | None = None) -> Path:
    """Write trivy's database into `cache_dir/db` (trivy's `--cache-dir` layout)."""
    updated = updated_at or datetime.datetime.now(datetime.UTC)
    db = cache_dir / "db"
    db.mkdir(parents=True, exist_ok=True)
    (db / "trivy.db").unlink(missing_ok=True)
    lines = "".join(json.dumps(entry) + "\n" for entry in _entries())
    subprocess.run(
        [str(ensure_tool("trivydb")), str(db / "trivy.db")], input=lines, text=True, check=True
    )
    _metadata(db, 2, updated)
    java_db(cache_dir, updated)
    return cache_dir


def java_db(cache_dir: Path, updated: datetime.datetime) -> None:
    """trivy's Java database (`java-db/trivy-java.db`, trivy-java-db's schema version 1) with
    no rows: jars are identified by the pom.properties they carry, none by its sha1."""
    folder = cache_dir / "java-db"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trivy-java.db").unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(folder / "trivy-java.db")) as db:
        db.executescript(
            "CREATE TABLE artifacts(id INTEGER PRIMARY KEY, group_id TEXT, artifact_id TEXT);"
            "CREATE TABLE indices(artifact_id INTEGER, version TEXT, sha1 BLOB, "
            "archive_type TEXT, FOREIGN KEY (artifact_id) REFERENCES artifacts(id));"
            "CREATE UNIQUE INDEX artifacts_idx ON artifacts(artifact_id, group_id);"
            "CREATE INDEX indices_artifact_idx ON indices(artifact_id);"
            "CREATE UNIQUE INDEX indices_sha1_idx ON indices(sha1);"
        )
    _metadata(folder, 1, updated)


def _metadata(folder: Path, version: int, updated: datetime.datetime) -> None:
    """A trivy database's metadata.json (schema `version`), fresh for ten years from `updated`,
    so trivy never wants to download it again."""
    stamp = "%Y-%m-%dT%H:%M:%S.%fZ"
    metadata = {
        "Version": version,
        "NextUpdate": (updated + datetime.timedelta(days=3650)).strftime(stamp),
        "UpdatedAt": updated.strftime(stamp),
        "DownloadedAt": updated.strftime(stamp),
    }
    (folder / "metadata.json").write_text(json.dumps(metadata))


def shading(jar: bytes, group: str, artifact: str, version: str) -> bytes:
    """`jar` with another library shaded into it, as far as a scanner sees: that library's
    `pom.properties` beside the plugin's own (the vulnerable jar of the scan tests)."""
    out = BytesIO()
    with zipfile.ZipFile(BytesIO(jar)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
        properties = f"groupId={group}\nartifactId={artifact}\nversion={version}\n"
        entry = zipfile.ZipInfo(
            f"META-INF/maven/{group}/{artifact}/pom.properties", (1980, 1, 1, 0, 0, 0)
        )
        target.writestr(entry, properties)
    return out.getvalue()


def offline_scanning(images: Iterable[Image], folder: Path) -> dict[str, str]:
    """The `WAYANG_*` settings of an operator that scans `images` from a local archive folder
    (named by digest, as air-gapped clusters do) against the test database, never downloading."""
    archives = folder / "archives"
    archives.mkdir(parents=True)
    for image in images:
        (archives / image.digest.replace(":", "-")).symlink_to(image.layout)
    return {
        "WAYANG_TRIVY": str(trivy()),
        "WAYANG_SCAN_CACHE_DIR": str(vulnerability_db(folder / "cache")),
        "WAYANG_SCAN_OFFLINE": "true",
        "WAYANG_SCAN_ARCHIVES": str(archives),
    }


OPERATOR_UID = 65532
"""The operator image's user: it reads the archives and writes trivy's cache."""


def for_operator_pods(folder: Path, layouts: Mapping[str, Path]) -> tuple[Path, Path]:
    """(trivy's cache with the test database, a folder of images by digest) for operator pods
    that mount both as hostPath volumes (the chart's `scanning.cache` and `scanning.archives`):
    the images are hard links or copies, since a symlink out of a hostPath leads nowhere inside
    the container; everything is readable by the pods' user, the cache is theirs (trivy writes
    it)."""
    archives = folder / "archives"
    archives.mkdir(parents=True, exist_ok=True)
    for digest, layout in layouts.items():
        target = archives / digest.replace(":", "-")
        if not target.exists():
            _link_tree(layout, target)
    _open_to(archives, None)
    cache = vulnerability_db(folder / "trivy-cache")
    _open_to(cache, OPERATOR_UID)
    return cache, archives


def _link_tree(source: Path, target: Path) -> None:
    """Hard links where possible (image layouts are large), copies otherwise."""

    def link(src: str, dst: str) -> object:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
        return dst

    shutil.copytree(source, target, copy_function=link, symlinks=False, dirs_exist_ok=True)


def _open_to(path: Path, uid: int | None) -> None:
    """Readable by every user (and owned by `uid`, when given and we may chown)."""
    for folder, dirs, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            if uid is not None and os.geteuid() == 0:
                os.chown(name, uid, uid)
            mode = os.stat(name).st_mode
            os.chmod(name, mode | 0o444 | (0o111 if os.path.isdir(name) else 0))
