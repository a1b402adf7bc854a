"""Write DICOM objects: an MR image series from a volume, a SEG (highdicom) with coded label and terms, a text
SR (report + clinical notes), and the shared header helpers the KOS document uses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from .dicom_io import HISTORY_CONCEPT, LOCAL_SCHEME, sort_slices

if TYPE_CHECKING:
    import SimpleITK as sitk
    from pydicom import Dataset

MR_CLASS = "1.2.840.10008.5.1.4.1.1.4"
COMPREHENSIVE_SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"
MANUFACTURER = "SimilarCaseRetrieval"
# Header fields copied from an existing instance of a study into a new object of that study.
PATIENT_STUDY_FIELDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "ReferringPhysicianName",
)


@dataclass
class StudyHeader:
    """Patient and study attributes of a new study (used by the synthetic export)."""

    patient_name: str
    patient_id: str
    study_uid: str
    study_date: str  # YYYYMMDD
    accession: str = ""
    study_id: str = ""
    description: str = ""
    birth_date: str = ""
    sex: str = "F"

    def apply(self, ds: Dataset) -> None:
        ds.PatientName = self.patient_name
        ds.PatientID = self.patient_id
        ds.PatientBirthDate = self.birth_date
        ds.PatientSex = self.sex
        ds.StudyInstanceUID = self.study_uid
        ds.StudyDate = self.study_date
        ds.StudyTime = "090000"
        ds.AccessionNumber = self.accession
        ds.StudyID = self.study_id
        ds.StudyDescription = self.description
        ds.ReferringPhysicianName = ""


def copy_study_header(source: Dataset, ds: Dataset) -> None:
    """Give `ds` the patient and study of `source` (an instance of that study in the PACS)."""
    for keyword in PATIENT_STUDY_FIELDS:
        setattr(ds, keyword, source.get(keyword, ""))


def new_instance(sop_class: str, sop_uid: str) -> Dataset:
    """An empty dataset with its file meta (explicit VR little endian) and SOP identity."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def _ds(value: float) -> str:
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))


def mr_series(
    image: sitk.Image,
    header: StudyHeader,
    *,
    series_uid: str,
    series_number: int,
    description: str,
    frame_of_reference_uid: str,
    scan_options: str = "",
) -> list[Dataset]:
    """One single-frame MR instance per slice of `image` (int16)."""
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(image)
    array = np.clip(np.rint(array), -32768, 32767).astype(np.int16)
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    spacing = image.GetSpacing()
    orientation = [*direction[:, 0], *direction[:, 1]]
    out = []
    for k in range(array.shape[0]):
        uid = f"{series_uid}.{k + 1}"
        ds = new_instance(MR_CLASS, uid)
        header.apply(ds)
        ds.Modality = "MR"
        ds.Manufacturer = MANUFACTURER
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = description
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = scan_options
        ds.MRAcquisitionType = "2D"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.InstanceNumber = k + 1
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [_ds(v) for v in image.TransformIndexToPhysicalPoint((0, 0, k))]
        ds.ImageOrientationPatient = [_ds(v) for v in orientation]
        ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]
        ds.SliceThickness = _ds(spacing[2])
        ds.SpacingBetweenSlices = _ds(spacing[2])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = array.shape[1], array.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = array[k].tobytes()
        out.append(ds)
    return out


def segment_code(value: str, scheme: str = LOCAL_SCHEME):
    """A coded concept for a diagnosis or lexicon term in our local scheme (value and meaning alike)."""
    from highdicom.sr import CodedConcept

    return CodedConcept(value=value, scheme_designator=scheme, meaning=value[:64])


def seg_document(
    source: Sequence[Dataset],
    mask: sitk.Image,
    *,
    series_uid: str,
    sop_uid: str,
    segment_name: str = "lesion",
    label: str | None = None,
    terms: Sequence[str] = (),
    series_number: int = 100,
) -> Dataset:
    """A binary DICOM SEG of `mask` (on `source`'s grid) with one segment; the label is the segmented
    property type (local scheme) and the terms are its modifiers, so that a sync reads them back."""
    import highdicom as hd
    import SimpleITK as sitk
    from pydicom.sr.codedict import codes

    slices = sort_slices(source, "SEG source series")
    pixels = sitk.GetArrayFromImage(mask) > 0
    property_type = segment_code(label) if label else codes.SCT.Mass
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=segment_name,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=property_type,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=slices,
        pixel_array=pixels.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="similar-cases",
        software_versions=__version__,
        device_serial_number="0",
        series_description=f"SEG {segment_name}",
    )
    if terms:
        seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[
            0
        ].SegmentedPropertyTypeModifierCodeSequence = [segment_code(t) for t in terms]
    return seg


def concept(value: str, scheme: str, meaning: str) -> Dataset:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def text_item(value: str, scheme: str, meaning: str, text: str) -> Dataset:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = [concept(value, scheme, meaning)]
    item.TextValue = text
    return item


def sr_root(ds: Dataset, title: Dataset, items: list[Dataset], *, template: str | None = None) -> None:
    """Make `ds` an SR document whose root container `title` holds `items`."""
    now = dt.datetime.now()
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = [title]
    ds.ContinuityOfContent = "SEPARATE"
    if template:
        from pydicom.dataset import Dataset

        ref = Dataset()
        ref.MappingResource, ref.TemplateIdentifier = "DCMR", template
        ds.ContentTemplateSequence = [ref]
    ds.ContentSequence = items
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.InstanceNumber = 1
    ds.Manufacturer = MANUFACTURER


def report_sr(
    header_source: Dataset | StudyHeader, report: str, notes: str, *, series_uid: str, sop_uid: str
) -> Dataset:
    """A Comprehensive SR holding the report (Findings) and the clinical notes (History) as TEXT items."""
    ds = new_instance(COMPREHENSIVE_SR_CLASS, sop_uid)
    if isinstance(header_source, StudyHeader):
        header_source.apply(ds)
    else:
        copy_study_header(header_source, ds)
    ds.Modality = "SR"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 200
    ds.SeriesDescription = "Report"
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    items = []
    if notes.strip():
        items.append(text_item(HISTORY_CONCEPT, "DCM", "History", notes.strip()))
    if report.strip():
        items.append(text_item("121070", "DCM", "Findings", report.strip()))
    sr_root(ds, concept("18748-4", "LN", "Diagnostic Imaging Report"), items)
    return ds
