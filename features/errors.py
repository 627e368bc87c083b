"""The errors and warnings of bad input data, shared by the readers, the mapping and the data sets.

Every one is a `ValueError`: the command line turns it into one message and exit code 2.
`TableError` and `MappingError` are `DatasetError`s, so a caller that guards a table's
loading with `except DatasetError` also catches a file that cannot be read or mapped.
"""

from __future__ import annotations


class DatasetError(ValueError):
    """A table that cannot be used as survival data (missing column, no events, ...)."""


class TableError(DatasetError):
    """A file that cannot be read as a table (empty, binary, wrong type, unknown delimiter, ...)."""


class MappingError(DatasetError):
    """A column-mapping file that cannot be used, or that does not fit the table it maps."""


class TimeUnitError(MappingError):
    """Times whose size says they are not in months, with no `time_unit` to say what they are."""


class InputWarning(UserWarning):
    """Input accepted with a caveat the user should see (a guessed encoding, an empty column)."""
