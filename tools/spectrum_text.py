"""Text (CSV/TXT/DAT with or without a header), NPY and NPZ readers."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from speclm.tools.errors import CorruptFileError, JunkRowsError, MissingColumnError, UnsupportedFormatError


from speclm.tools.spectrum_raw import (FLUX_NAMES, JUNK_ROW_MAX_FRACTION, WAVE_NAMES, RawSpectrum,
                                       columns_from_mapping, find_column, medium_from_value, one_line,
                                       unit_from_string)


# --------------------------------------------------------------------------------------------
# Text and NumPy
# --------------------------------------------------------------------------------------------

_MEDIUM_RE = re.compile(r"\b(AIRORVAC|VACUUM)\b\s*[=:]\s*['\"]?([A-Za-z0-9]+)", re.IGNORECASE)
_HEADER_UNIT_RE = re.compile(r"^(.*?)\s*[\[(]\s*([^\])]*)\s*[\])]\s*$")
_NAME_UNIT_SUFFIX = {"_nm": "nm", "_um": "um", "_aa": "Angstrom", "_angstrom": "Angstrom",
                     "_a": "Angstrom"}


def _split(line: str, delim: str | None) -> list[str]:
    if delim:
        return [f.strip() for f in line.split(delim)]
    return line.split()


def _floats(fields: list[str]) -> list[float] | None:
    try:
        return [float(f) for f in fields]
    except ValueError:
        return None


def _parse_header(fields: list[str]) -> tuple[list[str], dict[str, str]]:
    """'wavelength [nm]' / 'wave(nm)' / 'wave_nm' -> name 'wavelength'/'wave', unit 'nm'."""
    names, units = [], {}
    for raw in fields:
        f = raw.strip().strip("'\"").strip()
        unit = None
        m = _HEADER_UNIT_RE.match(f)
        if m:
            f, unit = m.group(1).strip(), m.group(2).strip()
        low = f.lower()
        for suffix, u in _NAME_UNIT_SUFFIX.items():
            if low.endswith(suffix) and find_column([low[: -len(suffix)]], WAVE_NAMES):
                f, unit = f[: -len(suffix)], u
                break
        names.append(f)
        if unit:
            units[f] = unit
    return names, units


def read_text(path: Path) -> RawSpectrum:
    text = path.read_bytes().decode("utf-8", errors="replace")
    medium = None
    rows: list[tuple[int, str]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        s = line.strip().lstrip("\ufeff")
        if not s:
            continue
        if s[0] in "#%!;":
            m = _MEDIUM_RE.search(s)
            if m and medium is None:
                medium = medium_from_value(m.group(2), m.group(1))
            continue
        rows.append((lineno, s))
    if not rows:
        raise JunkRowsError(f"{path}: text file has no data rows")
    delim = "," if "," in rows[0][1] else ";" if ";" in rows[0][1] else None

    header = None
    first = _split(rows[0][1], delim)
    if _floats(first) is None:
        names, units = _parse_header(first)
        if find_column(names, WAVE_NAMES) or find_column(names, FLUX_NAMES):
            header = (names, units)
            rows = rows[1:]

    parsed = [(ln, s, _floats(_split(s, delim))) for ln, s in rows]
    if header:
        ncols = len(header[0])
    else:
        counts: dict[int, int] = {}
        for _, _, vals in parsed:
            if vals is not None:
                counts[len(vals)] = counts.get(len(vals), 0) + 1
        ncols = max(counts, key=counts.get) if counts else 0
    good = [vals for _, _, vals in parsed if vals is not None and len(vals) == ncols]
    junk = [(ln, s) for ln, s, vals in parsed if vals is None or len(vals) != ncols]
    total = len(parsed)
    if total == 0 or not good or len(junk) > JUNK_ROW_MAX_FRACTION * total:
        example = f" (e.g. line {junk[0][0]}: {junk[0][1][:40]!r})" if junk else ""
        raise JunkRowsError(
            f"{path}: {len(junk)} of {total} data rows are not {ncols or 'numeric'}-column numbers"
            f"{example}; at most {JUNK_ROW_MAX_FRACTION:.0%} may be skipped")
    if ncols < 2:
        raise MissingColumnError(
            f"{path}: text table has {ncols} column(s); need wavelength and flux")
    table = np.array(good, dtype=np.float64)
    if header:
        names, units = header
        raw = columns_from_mapping("text", names, lambda n: table[:, names.index(n)], path,
                                    units=units)
    else:
        raw = RawSpectrum(fmt="text", wave=table[:, 0], flux=table[:, 1],
                   err=table[:, 2] if ncols >= 3 else None)
        if ncols > 3:
            raw.warnings.append(f"no header: used columns 1-3 as wavelength, flux, error; "
                                f"ignored {ncols - 3} more")
    raw.medium = medium
    if junk:
        lines = ", ".join(str(ln) for ln, _ in junk[:10]) + (" ..." if len(junk) > 10 else "")
        raw.warnings.append(f"skipped {len(junk)} non-numeric row(s) at line(s) {lines}")
    return raw


def _raw_from_plain_array(arr: np.ndarray, fmt: str, path: Path) -> RawSpectrum:
    """(2|3, N) or (N, 2|3) array: wavelength, flux[, error] (error as in text files)."""
    if arr.ndim == 2 and arr.shape[0] in (2, 3) and arr.shape[1] > 3:
        cols = arr
    elif arr.ndim == 2 and arr.shape[1] in (2, 3):
        cols = arr.T
    else:
        raise MissingColumnError(
            f"{path}: array of shape {arr.shape} is not (2|3, N) or (N, 2|3) "
            "= wavelength, flux[, error]")
    cols = np.asarray(cols, dtype=np.float64)
    return RawSpectrum(fmt=fmt, wave=cols[0], flux=cols[1], err=cols[2] if len(cols) == 3 else None)


def read_npy(path: Path) -> RawSpectrum:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptFileError(one_line(f"{path}: unreadable .npy file: {exc}")) from exc
    if arr.dtype.names:
        return columns_from_mapping("npy", list(arr.dtype.names), lambda n: arr[n], path)
    if not np.issubdtype(arr.dtype, np.number):
        raise UnsupportedFormatError(f"{path}: .npy holds {arr.dtype} values, not numbers")
    return _raw_from_plain_array(arr, "npy", path)


def read_npz(path: Path) -> RawSpectrum:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except (ValueError, OSError, EOFError, KeyError) as exc:
        raise CorruptFileError(one_line(f"{path}: unreadable .npz file: {exc}")) from exc
    names = list(arrays)
    raw = columns_from_mapping("npz", names, lambda n: arrays[n], path)
    key = find_column(names, ("airorvac", "vacuum", "medium"))
    if key:
        value = arrays[key]
        raw.medium = medium_from_value(value.item() if value.ndim == 0 else value,
                                        "VACUUM" if key.lower() == "vacuum" else "AIRORVAC")
    key = find_column(names, ("wave_unit", "wavelength_unit", "unit"))
    if key and raw.wave_unit is None:
        raw.wave_unit = unit_from_string(str(arrays[key].item() if arrays[key].ndim == 0 else ""))
    return raw


