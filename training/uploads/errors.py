"""The one refusal an upload can meet: which entry of it, and what to do about it. No TensorFlow here."""

from __future__ import annotations

# What a refusal names when the fault is the upload as a whole (its format, its classes), not one of its entries.
WHOLE_UPLOAD = "(the upload)"


class UploadRefused(ValueError):
    """The upload cannot become a dataset: `entry` is the archive member (or array) at fault, `reason` says what is
    wrong with it and how to fix it. The API answers it with a 4xx naming both."""

    def __init__(self, entry: str, reason: str) -> None:
        super().__init__(f"{entry}: {reason}")
        self.entry = entry
        self.reason = reason
