"""Exceptions for problems with user input.

Everything a user can get wrong (a model spec, a file, a concept set) raises a subclass of
:class:`UserInputError` with a sentence that says what is wrong and what to do. The CLI turns
these into a message and exit code 2; the dashboard shows them with ``st.error``.
"""


class UserInputError(ValueError):
    """A problem with something the user supplied; the message is meant for them."""


class ModelLoadError(UserInputError):
    """A model spec that cannot be resolved or loaded."""


class DataError(UserInputError):
    """A dataset or input file that cannot be read or is invalid."""


class ConceptSetError(UserInputError):
    """A concept set that is missing, malformed or too small."""


class DeviceMemoryError(UserInputError):
    """Work that does not fit in the device's memory even one input at a time."""
