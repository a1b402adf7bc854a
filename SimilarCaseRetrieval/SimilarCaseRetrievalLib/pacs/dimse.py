"""DIMSE transport (pynetdicom): C-FIND, C-GET or C-MOVE (to our own storage SCP), C-STORE.

No HTTP authentication exists here: the PACS knows us by our AE title (`calling_aet`) and address. For C-MOVE
the PACS must know `calling_aet` at this machine's address and `move_port`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

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

# What a study we read can hold: MR images, segmentations, reports, key object selections.
STORAGE_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection
)
_FIND = "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root Query/Retrieve - FIND
_GET = "1.2.840.10008.5.1.4.1.2.2.3"
_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"


class DimsePacs:
    """A DICOM node (AE title, host, port)."""

    def __init__(self, config: PacsConfig):
        import logging

        self.config = config
        # pynetdicom logs every identifier (patient names included) at INFO: keep its log to warnings.
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)

    # ---- associations ------------------------------------------------------------------------------------
    def _ae(self):
        from pynetdicom import AE

        ae = AE(ae_title=self.config.calling_aet)
        timeout = self.config.timeout
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
        ae.connection_timeout = min(timeout, 10.0)
        return ae

    @contextmanager
    def _association(self, ae, what: str, **kwargs):
        assoc = ae.associate(self.config.host, int(self.config.port), ae_title=self.config.aet, **kwargs)
        if not assoc.is_established:
            raise PacsError(
                self.config.describe(),
                f"{what}: no association (server down, wrong port, or our AE title {self.config.calling_aet} refused)",
                "check host, port and AE titles, and that the PACS knows us",
            )
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()

    def _find(self, level: str, query: dict[str, str], fields: Sequence[str]) -> list[Dataset]:
        from pydicom import Dataset

        ae = self._ae()
        ae.add_requested_context(_FIND)
        identifier = Dataset()
        identifier.QueryRetrieveLevel = level
        for keyword in fields:
            setattr(identifier, keyword, "")
        for keyword, value in query.items():
            setattr(identifier, keyword, value)
        out = []
        with self._association(ae, f"{level.lower()} search") as assoc:
            for status, found in assoc.send_c_find(identifier, _FIND):
                code = getattr(status, "Status", None)
                if code is None:
                    raise PacsError(
                        self.config.describe(), f"{level.lower()} search: no answer", "retry later"
                    )
                if code in (0xFF00, 0xFF01) and found is not None:
                    out.append(found)
                elif code != 0x0000:
                    raise PacsError(
                        self.config.describe(),
                        f"{level.lower()} search failed (status 0x{code:04X})",
                        "check the query",
                    )
        return out

    # ---- the Pacs interface ------------------------------------------------------------------------------
    def find_studies(self, filters: StudyFilter) -> list[StudyInfo]:
        found: dict[str, StudyInfo] = {}
        for query in filters.queries():
            for ds in self._find("STUDY", query, STUDY_FIELDS):
                info = study_info(ds)
                found.setdefault(info.study_uid, info)
        return list(found.values())

    def find_series(self, study_uid: str) -> list[SeriesInfo]:
        rows = self._find("SERIES", {"StudyInstanceUID": study_uid}, (*SERIES_FIELDS, *RULE_FIELDS))
        return [series_info(ds) for ds in rows]

    def retrieve_series(self, study_uid: str, series_uid: str) -> list[Dataset]:
        from pydicom import Dataset

        identifier = Dataset()
        identifier.QueryRetrieveLevel = "SERIES"
        identifier.StudyInstanceUID = study_uid
        identifier.SeriesInstanceUID = series_uid
        received: list[Dataset] = []
        lock = threading.Lock()

        def on_store(event) -> int:
            ds = event.dataset
            ds.file_meta = event.file_meta
            with lock:
                received.append(ds)
            return 0x0000

        if self.config.retrieve == "move":
            statuses = self._move(identifier, on_store)
        else:
            statuses = self._get(identifier, on_store)
        failed = [s for s in statuses if s not in (0x0000, 0xFF00, 0xFF01, 0xB000)]
        if not received:
            raise PacsNotFound(
                self.config.describe(),
                f"series {series_uid}: nothing retrieved",
                "check the UID (study deleted?)",
            )
        if failed:
            raise PacsError(
                self.config.describe(),
                f"series {series_uid}: retrieve failed (status 0x{failed[0]:04X})",
                "retry; check the PACS logs",
            )
        return received

    def _get(self, identifier: Dataset, on_store) -> list[int]:
        from pynetdicom import build_role, evt

        ae = self._ae()
        ae.add_requested_context(_GET)
        for uid in STORAGE_CLASSES:
            ae.add_requested_context(uid)
        roles = [build_role(uid, scp_role=True) for uid in STORAGE_CLASSES]
        handlers = [(evt.EVT_C_STORE, on_store)]
        with self._association(ae, "retrieve (C-GET)", ext_neg=roles, evt_handlers=handlers) as assoc:
            return [getattr(s, "Status", 0xC000) for s, _ in assoc.send_c_get(identifier, _GET)]

    def _move(self, identifier: Dataset, on_store) -> list[int]:
        from pynetdicom import evt

        ae = self._ae()
        ae.add_requested_context(_MOVE)
        for uid in STORAGE_CLASSES:
            ae.add_supported_context(uid)
        try:
            # A PACS on this machine sends to the loopback address only; a remote one to any interface.
            local = self.config.host in ("127.0.0.1", "localhost", "::1")
            server = ae.start_server(
                ("127.0.0.1" if local else "", int(self.config.move_port)),
                block=False,
                evt_handlers=[(evt.EVT_C_STORE, on_store)],
            )
        except OSError as exc:
            raise PacsError(
                f"port {self.config.move_port}",
                f"cannot receive C-MOVE ({exc.strerror})",
                "free the port or set move_port",
            ) from None
        try:
            with self._association(ae, "retrieve (C-MOVE)") as assoc:
                return [
                    getattr(s, "Status", 0xC000)
                    for s, _ in assoc.send_c_move(identifier, self.config.calling_aet, _MOVE)
                ]
        finally:
            server.shutdown()

    def store(self, datasets: Sequence[Dataset]) -> None:
        if not datasets:
            return
        ae = self._ae()
        for uid in sorted({str(ds.SOPClassUID) for ds in datasets}):
            ae.add_requested_context(uid)
        with self._association(ae, "store (C-STORE)") as assoc:
            for ds in datasets:
                status = assoc.send_c_store(ds)
                code = getattr(status, "Status", None)
                if code not in (0x0000, 0xB000, 0xB007, 0xB006):
                    shown = "no answer" if code is None else f"status 0x{code:04X}"
                    raise PacsError(
                        self.config.describe(),
                        f"store (C-STORE) refused an instance ({shown})",
                        "check the PACS logs",
                    )

    def close(self) -> None:
        """Nothing to close: every operation opens and releases its own association."""
