"""Exception types for everything that can be wrong with a spectrum a user hands us.

Each bad-input case has its own type so the CLI, the agent and the UI can say precisely what
went wrong (one line, no traceback) and so tests can assert the *kind* of failure, not a string.
All derive from :class:`SpectrumError`, which derives from ``ValueError``.
"""
from __future__ import annotations


class SpeclmError(Exception):
    """Any user-facing error: the CLI prints it as one line, the agent as a chat message."""


class ConfigError(SpeclmError, ValueError):
    """A configuration value (preset, codec, preprocessing, training) is invalid."""


class SpectrumError(SpeclmError, ValueError):
    """Base class: the input cannot be used as a galaxy spectrum."""


class SpectrumFileNotFound(SpectrumError):
    """The path does not exist or is not a regular file."""


class EmptyFileError(SpectrumError):
    """The file has zero bytes."""


class FileTooLargeError(SpectrumError):
    """The file exceeds the configured size limit (protects the UI and the laptop)."""


class UnsupportedFormatError(SpectrumError):
    """The extension / magic bytes match no reader we have."""


class CorruptFileError(SpectrumError):
    """The file claims a format but cannot be parsed (e.g. a truncated FITS)."""


class MissingColumnError(SpectrumError):
    """A table was read but has no usable wavelength or flux column (e.g. no COADD HDU)."""


class ImageFITSError(SpectrumError):
    """A FITS file holding only an image (2-D data), not a 1-D spectrum."""


class InvalidFluxError(SpectrumError):
    """Flux values are all NaN/inf/absent."""


class InvalidIvarError(SpectrumError):
    """Inverse variance is all zero/negative/non-finite: no pixel carries information."""


class WavelengthOrderError(SpectrumError):
    """Wavelengths are not strictly increasing (after sorting is refused as ambiguous)."""


class WavelengthRangeError(SpectrumError):
    """After unit inference the wavelengths fall outside the optical window we support."""


class TooFewPixelsError(SpectrumError):
    """Fewer valid pixels than the minimum needed for a redshift."""


class TargetNotFoundError(SpectrumError):
    """A ``FILE[TARGETID]`` / ``FILE[#index]`` address names a target the file does not hold."""


class JunkRowsError(SpectrumError):
    """A text table whose rows are mostly not numbers."""


# --- physics tools (lines, cosmology, redshift_check) -------------------------------------------


class UnknownLineError(ConfigError):
    """A spectral line name that the one line list (speclm.tools.lines) does not know."""


class UnknownCosmologyError(ConfigError):
    """A cosmology name that speclm.tools.cosmology cannot build (typo, or missing H0/Om0)."""


class RedshiftRangeError(SpeclmError, ValueError):
    """A redshift outside the range a tool can answer for (e.g. z < 0 for distances, z > 20)."""


# --- SDSS access (speclm.tools.sdss, speclm.tools.sdss_lookup) ----------------------------------


class SDSSError(SpeclmError):
    """SkyServer or the Science Archive Server could not answer (network, HTTP error, bad reply)."""


class SDSSNotFound(SDSSError, LookupError):
    """The archive answered, but holds no object / spectrum for the identifier asked about."""


class SDSSIdentifierError(SDSSError, ValueError):
    """A string or argument set that names no SDSS object (malformed plate-mjd-fiber, bad RA/Dec)."""


class DatasetError(SpeclmError):
    """A dataset directory is missing, incomplete, corrupt, or would be overwritten."""


# --- the agent's model backends (speclm.agent.llm) ---------------------------------------------


class BackendError(SpeclmError):
    """A language-model backend (local runtime or OpenAI-compatible endpoint) failed to answer."""


class ScriptError(ConfigError):
    """A conversation script for `speclm ask --script` is malformed (names the line)."""
