"""SimilarCaseRetrievalLib: find similar past cases from a region of interest and clinical text.

This package never imports Qt; the Slicer module is thin glue around it.
"""

__version__ = "0.1.0"
