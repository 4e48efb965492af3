"""Datasets users bring: an upload (a zip or tar of class folders, or an .npz) checked entry by entry against the
caps and read into a canonical packed form with a content hash. Pure: no HTTP, SQL, Celery or settings (the caller
passes the caps), and no TensorFlow (the API may check uploads without loading it)."""

from training.uploads.canonical import PreparedDataset
from training.uploads.caps import ColorMode, Fit, UploadCaps, UploadOptions
from training.uploads.errors import UploadRefused
from training.uploads.ingest import ingest
from training.uploads.progress import ProgressCallback

__all__ = [
    "ColorMode",
    "Fit",
    "PreparedDataset",
    "ProgressCallback",
    "UploadCaps",
    "UploadOptions",
    "UploadRefused",
    "ingest",
]
