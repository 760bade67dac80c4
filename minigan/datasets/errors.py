"""The one error type of the data layer."""


class DatasetError(ValueError):
    """Missing, malformed or unreadable data; the message is one line meant for the user."""
