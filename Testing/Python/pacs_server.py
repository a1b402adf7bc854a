"""A real PACS for the tests: Orthanc with its DICOMweb plugin (Debian packages `orthanc`, `orthanc-dicomweb`),
started on free localhost ports with a temporary storage folder and a generated configuration, and stopped at
the end. Traffic stays on 127.0.0.1 (RemoteAccessAllowed false).

In CI (``CI=true``) a missing Orthanc is an error; elsewhere the PACS tests are skipped with the install command.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest

INSTALL = "sudo apt-get install -y orthanc orthanc-dicomweb"
BINARY_CANDIDATES = ("/usr/sbin/Orthanc", "/usr/bin/Orthanc", "/usr/local/bin/Orthanc")
PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc", "/usr/local/share/orthanc/plugins")
USER, PASSWORD = "radiologist", "not-a-real-secret"
CLIENT_AET = "SCRTEST"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_orthanc() -> tuple[str, str] | None:
    """(Orthanc binary, DICOMweb plugin) or None when not installed."""
    binary = shutil.which("Orthanc") or next((b for b in BINARY_CANDIDATES if os.path.exists(b)), None)
    plugin = next(
        (
            str(Path(d) / "libOrthancDicomWeb.so")
            for d in PLUGIN_DIRS
            if (Path(d) / "libOrthancDicomWeb.so").exists()
        ),
        None,
    )
    return (binary, plugin) if binary and plugin else None


def require_orthanc() -> tuple[str, str]:
    found = find_orthanc()
    if found:
        return found
    message = f"Orthanc with its DICOMweb plugin is not installed (install: {INSTALL})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + "; CI must install it (.ci/run)")
    pytest.skip(message)


class Orthanc:
    """One running Orthanc; `url` is the DICOMweb root, `rest` the REST API root."""

    def __init__(self, folder: Path, *, auth: bool, move_port: int | None = None):
        binary, plugin = require_orthanc()
        self.folder = folder
        self.auth = auth
        self.http_port, self.dicom_port = free_port(), free_port()
        self.move_port = move_port or free_port()
        self.aet = "ORTHANC"
        config = {
            "Name": "similar-cases-test",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": auth,
            "RegisteredUsers": {USER: PASSWORD} if auth else {},
            "Plugins": [plugin],
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "StudiesMetadata": "Full",
                "SeriesMetadata": "Full",
            },
            "DicomModalities": {CLIENT_AET: [CLIENT_AET, "127.0.0.1", self.move_port]},
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowMove": True,
            "DicomAlwaysAllowStore": True,
            "DicomCheckCalledAet": False,
            "SaveJobs": False,
            "HttpTimeout": 30,
        }
        folder.mkdir(parents=True, exist_ok=True)
        self.config_path = folder / "orthanc.json"
        self.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        self.log = (folder / "orthanc.log").open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            [binary, str(self.config_path)], stdout=self.log, stderr=subprocess.STDOUT
        )
        self._wait()

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def url(self) -> str:
        return f"{self.rest}/dicom-web"

    @property
    def dimse(self) -> str:
        return f"dimse://{self.aet}@127.0.0.1:{self.dicom_port}"

    def request(self, method: str, path: str, body: bytes | None = None):
        request = urllib.request.Request(self.rest + path, data=body, method=method)
        if self.auth:
            token = b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=30) as answer:
            data = answer.read()
        return json.loads(data) if data else None

    def _wait(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"Orthanc exited ({self.process.returncode}); see {self.folder / 'orthanc.log'}"
                )
            try:
                self.request("GET", "/system")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"Orthanc did not answer within {timeout:.0f} s; see {self.folder / 'orthanc.log'}"
        )

    def upload_folder(self, folder: Path) -> int:
        """POST every .dcm file under `folder` to /instances; -> number of files."""
        paths = sorted(folder.rglob("*.dcm"))
        for path in paths:
            self.request("POST", "/instances", path.read_bytes())
        return len(paths)

    def study_id(self, study_uid: str) -> str | None:
        """Orthanc's id of a study (None when absent)."""
        found = self.request(
            "POST",
            "/tools/find",
            json.dumps({"Level": "Study", "Query": {"StudyInstanceUID": study_uid}}).encode(),
        )
        return found[0] if found else None

    def delete_study(self, study_uid: str) -> None:
        orthanc_id = self.study_id(study_uid)
        if orthanc_id:
            self.request("DELETE", f"/studies/{orthanc_id}")

    def clear(self) -> None:
        for orthanc_id in self.request("GET", "/studies") or []:
            self.request("DELETE", f"/studies/{orthanc_id}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def delete_series(self, series_uid: str) -> None:
        found = self.request(
            "POST",
            "/tools/find",
            json.dumps({"Level": "Series", "Query": {"SeriesInstanceUID": series_uid}}).encode(),
        )
        for orthanc_id in found or []:
            self.request("DELETE", f"/series/{orthanc_id}")
