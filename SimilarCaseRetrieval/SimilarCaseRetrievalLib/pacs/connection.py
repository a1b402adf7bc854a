"""Where the PACS is and how to talk to it: `PacsConfig`, `open_pacs`, the `Pacs` interface, `PacsError`.

A PACS is given as a JSON config file, a DICOMweb base URL (``https://pacs/dicom-web``) or a DIMSE address
(``dimse://AET@host:port``). Credentials never come from the command line: user name, password and bearer
token come from the environment (``SIMILAR_CASES_PACS_USER``, ``..._PASSWORD``, ``..._TOKEN``, or the
variables a config file names) or from the config file itself (keep it readable by its owner only).
`PacsConfig.describe()` names the PACS without any credential, for logs and error messages.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import CaseInputError

if TYPE_CHECKING:
    from pydicom import Dataset

ENV_USER = "SIMILAR_CASES_PACS_USER"
ENV_PASSWORD = "SIMILAR_CASES_PACS_PASSWORD"
ENV_TOKEN = "SIMILAR_CASES_PACS_TOKEN"
_DIMSE = re.compile(r"^dimse://(?P<aet>[^@/]{1,16})@(?P<host>[^:/]+):(?P<port>\d+)/?$")


class PacsError(CaseInputError):
    """The PACS cannot be reached, refuses us, or answers badly (one line: which PACS, what, fix)."""


class PacsNotFound(PacsError):
    """The PACS does not hold the study / series asked for (HTTP 404, or nothing retrieved)."""


@dataclass
class PacsConfig:
    """One PACS. Either `url` (DICOMweb) or `aet` + `host` + `port` (DIMSE)."""

    url: str | None = None
    aet: str | None = None
    host: str | None = None
    port: int | None = None
    calling_aet: str = "SIMILARCASES"  # our AE title (must be known to the PACS for C-MOVE)
    retrieve: str = "get"  # DIMSE retrieval: "get" (C-GET) or "move" (C-MOVE to our own storage SCP)
    move_port: int = 11113  # port of our storage SCP for C-MOVE (the PACS knows calling_aet at this port)
    auth: str = "none"  # DICOMweb: "none", "basic" or "bearer"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    verify: bool | str = True  # TLS certificate check (True, False, or a CA bundle path)
    timeout: float = 60.0

    @property
    def transport(self) -> str:
        return "dicomweb" if self.url else "dimse"

    def describe(self) -> str:
        """The PACS without credentials, e.g. 'DICOMweb https://pacs/dicom-web' or 'DIMSE PACS@host:104'."""
        if self.url:
            return f"DICOMweb {self.url}"
        return f"DIMSE {self.aet}@{self.host}:{self.port}"

    def check(self) -> PacsConfig:
        """Validate; -> self. Raises `PacsError` naming what to fix."""
        if self.url:
            if not re.match(r"^https?://", self.url):
                raise PacsError(self.url, "not an http(s) DICOMweb URL", "give e.g. https://pacs/dicom-web")
            if re.match(r"^https?://[^/]*@", self.url):
                raise PacsError(
                    "--pacs",
                    "credentials in the URL",
                    f"remove them and set {ENV_USER} / {ENV_PASSWORD} (or a config file) instead",
                )
        elif not (self.aet and self.host and self.port):
            raise PacsError(
                "PACS",
                "neither a DICOMweb url nor aet/host/port",
                "give a URL, dimse://AET@host:port or a config",
            )
        if self.auth not in ("none", "basic", "bearer"):
            raise PacsError(self.describe(), f"unknown auth {self.auth!r}", "use none, basic or bearer")
        if self.retrieve not in ("get", "move"):
            raise PacsError(self.describe(), f"unknown retrieve {self.retrieve!r}", "use get or move")
        if self.auth == "basic" and not (self.username and self.password):
            raise PacsError(
                self.describe(),
                "basic authentication without user and password",
                f"set {ENV_USER} and {ENV_PASSWORD}",
            )
        if self.auth == "bearer" and not self.token:
            raise PacsError(self.describe(), "bearer authentication without a token", f"set {ENV_TOKEN}")
        return self


def load_config(spec: str | Path, environ: dict[str, str] | None = None) -> PacsConfig:
    """A PACS from a JSON config file, a DICOMweb URL or ``dimse://AET@host:port``; credentials from the
    environment fill what the file does not give (and decide the auth when none is set)."""
    env = os.environ if environ is None else environ
    text = str(spec).strip()
    values: dict = {}
    if re.match(r"^https?://", text):
        values["url"] = text.rstrip("/")
    elif match := _DIMSE.match(text):
        values.update(aet=match["aet"], host=match["host"], port=int(match["port"]))
    else:
        values = _read_config_file(Path(text).expanduser())
    names = {
        "username": values.pop("username_env", ENV_USER),
        "password": values.pop("password_env", ENV_PASSWORD),
        "token": values.pop("token_env", ENV_TOKEN),
    }
    for key, variable in names.items():
        if not values.get(key) and env.get(variable):
            values[key] = env[variable]
    if "auth" not in values:
        values["auth"] = "bearer" if values.get("token") else "basic" if values.get("password") else "none"
    return PacsConfig(**values).check()


def _read_config_file(path: Path) -> dict:
    if not path.is_file():
        raise PacsError(
            path, "no such PACS config file", "give a JSON file, a DICOMweb URL or dimse://AET@host:port"
        )
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PacsError(path, f"not a readable JSON config ({exc})", "fix the JSON") from None
    known = {f.name for f in fields(PacsConfig)} | {"username_env", "password_env", "token_env"}
    unknown = sorted(set(values) - known) if isinstance(values, dict) else ["(not an object)"]
    if unknown:
        raise PacsError(
            path, f"unknown setting(s) {', '.join(unknown)}", f"use only {', '.join(sorted(known))}"
        )
    return values


# ---------------------------------------------------------------------------------------------------------
@dataclass
class StudyFilter:
    """Which studies to sync (empty = all). Dates are YYYYMMDD; `description` may hold * wildcards."""

    modality: str | None = None
    date_from: str | None = None
    date_to: str | None = None
    description: str | None = None
    accession_numbers: list[str] = field(default_factory=list)
    study_uids: list[str] = field(default_factory=list)

    def queries(self) -> list[dict[str, str]]:
        """One attribute-matching dict per query (one per accession number / study UID, else one)."""
        base: dict[str, str] = {}
        if self.modality:
            base["ModalitiesInStudy"] = self.modality
        if self.date_from or self.date_to:
            base["StudyDate"] = f"{self.date_from or ''}-{self.date_to or ''}"
        if self.description:
            base["StudyDescription"] = self.description
        if self.study_uids:
            return [{**base, "StudyInstanceUID": uid} for uid in self.study_uids]
        if self.accession_numbers:
            return [{**base, "AccessionNumber": a} for a in self.accession_numbers]
        return [base]


@dataclass
class StudyInfo:
    study_uid: str
    date: str = ""
    description: str = ""
    n_instances: int | None = None


@dataclass
class SeriesInfo:
    series_uid: str
    modality: str = ""
    description: str = ""
    number: int | None = None
    n_instances: int | None = None
    attributes: dict[str, str] = field(default_factory=dict)  # other series attributes, for the rules


# Series attributes asked for besides SERIES_FIELDS, for the sequence rules (a PACS may leave them out).
RULE_FIELDS = ("ScanningSequence", "SequenceVariant", "ScanOptions", "ProtocolName")
STUDY_FIELDS = ("StudyInstanceUID", "StudyDate", "StudyDescription", "NumberOfStudyRelatedInstances")
SERIES_FIELDS = (
    "SeriesInstanceUID",
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "NumberOfSeriesRelatedInstances",
)


def study_info(ds: Dataset) -> StudyInfo:
    return StudyInfo(
        study_uid=str(ds.get("StudyInstanceUID", "")),
        date=str(ds.get("StudyDate", "") or ""),
        description=str(ds.get("StudyDescription", "") or ""),
        n_instances=_int(ds.get("NumberOfStudyRelatedInstances")),
    )


def series_info(ds: Dataset) -> SeriesInfo:
    extra = {
        e.keyword: str(e.value)
        for e in ds
        if e.keyword
        and e.keyword not in SERIES_FIELDS
        and e.VR not in ("SQ", "OB", "OW", "PN")
        and not e.keyword.startswith(("Patient", "Other Patient", "Accession"))
    }
    return SeriesInfo(
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        modality=str(ds.get("Modality", "") or ""),
        description=str(ds.get("SeriesDescription", "") or ""),
        number=_int(ds.get("SeriesNumber")),
        n_instances=_int(ds.get("NumberOfSeriesRelatedInstances")),
        attributes=extra,
    )


def _int(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


class Pacs(Protocol):
    """What both transports offer."""

    config: PacsConfig

    def find_studies(self, filters: StudyFilter) -> list[StudyInfo]: ...
    def find_series(self, study_uid: str) -> list[SeriesInfo]: ...
    def retrieve_series(self, study_uid: str, series_uid: str) -> list[Dataset]: ...
    def store(self, datasets: Sequence[Dataset]) -> None: ...
    def close(self) -> None: ...


def open_pacs(config: PacsConfig | str | Path) -> Pacs:
    """A connected transport for `config` (a `PacsConfig` or anything `load_config` takes)."""
    if not isinstance(config, PacsConfig):
        config = load_config(config)
    if config.transport == "dicomweb":
        from .dicomweb import DicomWebPacs

        return DicomWebPacs(config)
    from .dimse import DimsePacs

    return DimsePacs(config)
