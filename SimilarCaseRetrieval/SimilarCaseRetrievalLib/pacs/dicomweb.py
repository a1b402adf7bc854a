"""DICOMweb transport: QIDO-RS (find), WADO-RS (retrieve), STOW-RS (store) with `dicomweb-client`.

Imported only when a DICOMweb PACS is opened (`connection.open_pacs`), so `requests` is imported at the top."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import requests

from .connection import (
    RULE_FIELDS,
    SERIES_FIELDS,
    STUDY_FIELDS,
    PacsConfig,
    PacsError,
    PacsNotFound,
    SeriesInfo,
    StudyFilter,
    StudyInfo,
    series_info,
    study_info,
)

if TYPE_CHECKING:
    from pydicom import Dataset

T = TypeVar("T")
PAGE = 500  # QIDO rows per request


class _Session(requests.Session):
    """A session whose configured CA bundle (or verify=False) is not overridden by REQUESTS_CA_BUNDLE /
    CURL_CA_BUNDLE from the environment, as it would be in a plain `requests.Session`."""

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None and self.verify is not True:
            settings["verify"] = self.verify
        return settings


class DicomWebPacs:
    """A DICOMweb server (base URL, e.g. https://pacs/dicom-web)."""

    def __init__(self, config: PacsConfig):
        from dicomweb_client.api import DICOMwebClient

        self.config = config
        logging.getLogger("dicomweb_client").setLevel(logging.WARNING)  # one INFO line per request
        session = _Session()
        session.verify = config.verify
        if config.auth == "basic":
            session.auth = (config.username or "", config.password or "")
        elif config.auth == "bearer":
            session.headers["Authorization"] = f"Bearer {config.token}"
        self._session = session
        self._client = DICOMwebClient(url=config.url, session=session)
        self._client.set_http_retry_params(retry=False)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one request; HTTP and network failures become one-line `PacsError`s (no credentials)."""
        where = self.config.describe()
        try:
            return fn()
        except requests.exceptions.SSLError:
            raise PacsError(
                where, f"{what}: TLS certificate verification failed", "give the site CA bundle as `verify`"
            ) from None
        except requests.exceptions.ConnectionError:
            raise PacsError(
                where,
                f"{what}: cannot connect (server down or wrong URL)",
                "check the URL and that the PACS runs",
            ) from None
        except requests.exceptions.Timeout:
            raise PacsError(
                where, f"{what}: no answer in time", "raise `timeout` or check the PACS"
            ) from None
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status in (401, 403):
                raise PacsError(
                    where,
                    f"{what}: authentication refused (HTTP {status})",
                    "check SIMILAR_CASES_PACS_USER/PASSWORD or TOKEN (or the config file)",
                ) from None
            if status == 404:
                raise PacsNotFound(
                    where, f"{what}: not found (HTTP 404)", "check the UID and the URL"
                ) from None
            raise PacsError(where, f"{what}: HTTP {status}", "check the PACS logs") from None

    def _qido(self, path: str, filters: dict[str, str], fields: Sequence[str], offset: int) -> list[dict]:
        """One QIDO-RS page. The query string is built here, keeping `*` wildcards literal: some servers
        (Orthanc 1.10) do not decode %2A, which dicomweb-client sends."""
        from urllib.parse import urlencode

        params = [
            *filters.items(),
            *(("includefield", f) for f in fields),
            ("limit", PAGE),
            ("offset", offset),
        ]
        answer = self._session.get(
            f"{self.config.url}/{path}?{urlencode(params, safe='*')}",
            headers={"Accept": "application/dicom+json"},
            timeout=self.config.timeout,
        )
        answer.raise_for_status()
        return answer.json() if answer.content else []

    def _paged(self, what: str, page: Callable[[int], list[dict]]) -> list[dict]:
        """All rows of a QIDO search, PAGE rows at a time (stops on a short or repeated page: some servers
        ignore `offset`, and a naive "until empty" loop then never ends)."""
        rows: list[dict] = []
        seen: set[str] = set()
        while True:
            batch = self._call(what, partial(page, len(rows)))
            keys = {json.dumps(r, sort_keys=True) for r in batch}
            if not batch or keys <= seen:
                return rows
            seen |= keys
            rows += batch
            if len(batch) < PAGE:
                return rows

    def find_studies(self, filters: StudyFilter) -> list[StudyInfo]:
        from pydicom import Dataset

        found: dict[str, StudyInfo] = {}
        for query in filters.queries():
            rows = self._paged(
                "study search", lambda offset, q=query: self._qido("studies", q, STUDY_FIELDS, offset)
            )
            for row in rows:
                info = study_info(Dataset.from_json(row))
                found.setdefault(info.study_uid, info)
        return list(found.values())

    def find_series(self, study_uid: str) -> list[SeriesInfo]:
        from pydicom import Dataset

        rows = self._paged(
            f"series search of study {study_uid}",
            lambda offset: self._qido(
                f"studies/{study_uid}/series", {}, (*SERIES_FIELDS, *RULE_FIELDS), offset
            ),
        )
        return [series_info(Dataset.from_json(row)) for row in rows]

    def retrieve_series(self, study_uid: str, series_uid: str) -> list[Dataset]:
        datasets = self._call(
            f"retrieve of series {series_uid}",
            lambda: self._client.retrieve_series(
                study_instance_uid=study_uid, series_instance_uid=series_uid
            ),
        )
        if not datasets:
            raise PacsNotFound(self.config.describe(), f"series {series_uid}: no instances", "check the UID")
        return list(datasets)

    def store(self, datasets: Sequence[Dataset]) -> None:
        if not datasets:
            return
        for ds in datasets:  # without a preamble the PACS keeps (and later serves) a file pydicom won't read
            if getattr(ds, "preamble", None) is None:
                ds.preamble = b"\0" * 128
        answer = self._call("store", lambda: self._client.store_instances(list(datasets)))
        failed = answer.get("FailedSOPSequence") if answer is not None else None
        if failed:
            raise PacsError(
                self.config.describe(), f"store: {len(failed)} instance(s) refused", "check the PACS logs"
            )

    def close(self) -> None:
        self._session.close()
