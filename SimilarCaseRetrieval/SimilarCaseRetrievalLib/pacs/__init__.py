"""Connect the archive to a PACS: build and sync cases from DICOM studies, search from a PACS study, and
store the answer back as a DICOM Key Object Selection document.

Two transports speak the same small interface (`connection.Pacs`): DICOMweb (QIDO-RS, WADO-RS, STOW-RS with
`dicomweb-client`) and classic DIMSE (C-FIND, C-GET / C-MOVE, C-STORE with `pynetdicom`). Modules:

- ``connection``: `PacsConfig` (where, how, credentials from the environment or a config file), `open_pacs`.
- ``dicomweb`` / ``dimse``: the two transports.
- ``rules``: which series is which sequence (T2, T1, T1FS, DWI...), from SeriesDescription and sequence tags.
- ``dicom_io``: DICOM series / SEG / SR -> images, mask, segment terms and report text.
- ``privacy``: keyed pseudonyms (HMAC with the site's key, kept outside the archive).
- ``sync``: `sync_archive` (incremental, resumable, nothing half-stored) and the `pacs_studies` table.
- ``query``: read one PACS study as a search query.
- ``kos``: the Key Object Selection document with the similar studies and their scores.
- ``export``: the synthetic archive as DICOM (MR series per sequence, SEG, SR) for tests and benchmarks.
- ``viewer``: what the Slicer module calls (retrieve a hit's study on demand, store a segment as SEG).

Importing this package is cheap; pydicom, pynetdicom, highdicom and dicomweb-client load on use.
"""

from __future__ import annotations
