"""Errors whose message is meant for the user. No TensorFlow here: the API catches them."""


class DatasetUnavailable(RuntimeError):
    """The data is neither in the data folder nor downloadable; the message says where to put it."""


class InvalidImage(ValueError):
    """The upload is not an image this service can read; the message says why (HTTP 415)."""


class ImageTooLarge(ValueError):
    """The upload declares more pixels than the service decodes; the message says the limit (HTTP 413)."""
