"""The worker's PACS requests: search from a PACS study (optionally storing the answer as a KOS), a hit whose
images are only in the PACS retrieved into a cache folder, and a segment stored back as DICOM SEG. The
connection comes from a config file or URL (`pacs.connection.load_config`): credentials only from the
environment or that file. Qt-free, no scene."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CaseInputError

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

    from ..pacs.connection import Pacs
    from ..store import Case, CaseStore
    from ..study import Study
    from .server import Progress


def check_pacs_spec(spec) -> str:
    """The PACS connection as given (config file, DICOMweb URL or dimse://AET@host:port), refusing a URL that
    carries credentials: those belong in the environment or the config file, never in a saved field."""
    import re

    text = str(spec or "").strip()
    if not text:
        raise CaseInputError("PACS connection", "not set", "give a PACS config file or DICOMweb URL")
    if re.match(r"^[a-z]+://[^/@]*:[^/@]*@", text, re.IGNORECASE):
        raise CaseInputError(
            "PACS connection",
            "holds a password",
            "remove it from the URL; set SIMILAR_CASES_PACS_USER and SIMILAR_CASES_PACS_PASSWORD or use a config file",
        )
    return text


def images_on_disk(store: CaseStore, case: Case, names) -> bool:
    """Whether the case's files (these sequences and its mask) are in the archive."""
    paths = [store.resolve(case.sequences[n]) for n in names if n in case.sequences]
    if case.mask:
        paths.append(store.resolve(case.mask))
    return all(Path(str(p).partition("#")[0]).exists() for p in paths)


def study_from_pacs_cache(
    pacs: Pacs, store: CaseStore, case: Case, names, cache_dir
) -> tuple[Study, sitk.Image]:
    """The case's sequences `names` (the first is the reference) and its segment, retrieved from the PACS into
    `cache_dir` (`pacs.viewer.retrieve_case_study`; a complete copy is reused) and read as the sync reads them."""
    from ..pacs.dicom_io import read_segment, seg_source_series, series_image
    from ..pacs.export import read_dicom_folder
    from ..pacs.sync import record_for_case
    from ..pacs.viewer import retrieve_case_study
    from ..segmentation import conform_mask
    from ..study import study_from_images

    where = f"case {case.case_id}"
    folders = retrieve_case_study(pacs, store, case.case_id, cache_dir)
    missing = [n for n in names if n not in folders]
    if missing or "SEG" not in folders:
        raise CaseInputError(where, f"the PACS study has no {', '.join(missing or ['SEG'])}", "sync it again")
    datasets = {name: read_dicom_folder(folders[name]) for name in folders}
    images = {name: series_image(datasets[name], f"{where} {name}") for name in names}
    study = study_from_images(images, reference=names[0])
    seg = datasets["SEG"][0]
    record = record_for_case(store, case.case_id)
    source_uid = seg_source_series(seg)
    source = next((n for n, uid in record.series.items() if uid == source_uid), names[0])
    if source not in datasets:
        raise CaseInputError(where, "the SEG's source series was not synced", "sync the study again")
    segment = read_segment(seg, datasets[source], None, f"{where} SEG")
    return study, conform_mask(segment.mask, study.reference_image, f"{where} SEG")


class PacsRequests:
    """Mixed into `WorkerSession`: `pacs_search`, and the PACS connections the other requests use."""

    pacs_connections: dict[str, Pacs]

    def pacs_for(self, spec) -> Pacs:
        """One open connection per spec, kept between requests."""
        from ..pacs.connection import open_pacs

        spec = check_pacs_spec(spec)
        if spec not in self.pacs_connections:
            self.pacs_connections[spec] = open_pacs(spec)
        return self.pacs_connections[spec]

    def close_pacs(self) -> None:
        for pacs in self.pacs_connections.values():
            pacs.close()
        self.pacs_connections.clear()

    def on_pacs_search(
        self,
        progress: Progress,
        archive,
        pacs,
        study_uid,
        folder,
        segment=None,
        model_dir=None,
        text="",
        k=10,
        text_weight=0.3,
        label=None,
        terms=None,
        store_answer=False,
    ) -> dict[str, Any]:
        """Retrieve the PACS study and its SEG, search with it (its notes unless `text` is given), write the
        query's sequences and mask into `folder` for the scene; `store_answer`: the hits to the PACS as a KOS."""
        import SimpleITK as sitk

        from ..pacs.query import query_from_pacs
        from ..pacs.sync import case_id_for
        from ..pacs.viewer import store_answer as store_kos
        from .handlers import compact_image

        study_uid = str(study_uid or "").strip()
        if not study_uid:
            raise CaseInputError("PACS study", "no Study Instance UID given", "type the study's UID")
        connection = self.pacs_for(pacs)
        progress(0, 0, "opening the archive")
        engine = self.engine_for(archive, model_dir)
        progress(0, 0, "retrieving the study from the PACS")
        found, study, mask = query_from_pacs(
            connection, study_uid, engine.encoder.config.sequences, segment=(segment or "").strip() or None
        )
        text = text or found.notes
        progress(0, 0, "searching")
        result = engine.search(
            study=study,
            mask=mask,
            text=text,
            k=int(k),
            text_weight=float(text_weight),
            label=label or None,
            terms=list(terms) if terms else None,
            query_id=case_id_for(study_uid),
        )
        summary = self._keep(result)
        kos = None
        if store_answer:
            progress(0, 0, "storing the answer to the PACS (KOS)")
            kos = store_kos(connection, engine.store, found, result)
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, image in study.sequences.items():
            paths[name] = str(out / f"query_{name}.nrrd")
            sitk.WriteImage(compact_image(image), paths[name], False)
        mask_path = str(out / "query_mask.nrrd")
        sitk.WriteImage(sitk.Cast(mask > 0, sitk.sitkUInt8), mask_path, False)
        query = {
            "case": {"case_id": "PACS query", "notes": found.notes, "report": found.report},
            "reference": study.reference,
            "sequences": paths,
            "mask": mask_path,
        }
        return {**summary, "query": query, "study_uid": study_uid, "kos": kos}

    def store_seg(self, pacs, study_uid, mask, case) -> str:
        """The new case's segment to the PACS as a DICOM SEG of `study_uid` (label and terms coded)."""
        from ..pacs.viewer import store_segment_as_seg

        study_uid = str(study_uid or "").strip()
        if not study_uid:
            raise CaseInputError(
                "PACS study", "no Study Instance UID to store the SEG in", "give the query study's UID"
            )
        return store_segment_as_seg(
            self.pacs_for(pacs),
            study_uid,
            mask,
            segment_name=case.case_id,
            label=case.label,
            terms=case.terms,
        )
