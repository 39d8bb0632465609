"""The clinical table: reading CSV/XLSX, validating it against a schema, requiring columns.

Only ``hospital_id`` is required; a table of ids alone is valid (the cohort then simply has
no endpoints). Known columns are typed and range-checked, and common spellings are
normalised (``T3`` -> 3, ``IVA`` -> 4, ``male`` -> ``M``). Every error names the file, the
column and the hospital id (and spreadsheet row) so the user can fix the cell.

De-identification is by allowlist (:func:`allowlist_columns`): only the schema's columns
and the columns the user names (``keep``) reach a cohort; a column whose name or content
looks identifying (names, ids, birth dates, UIDs, phone numbers, e-mail addresses, Chinese
or English headings such as 姓名 or PatientBirthDate, free text quoting a hospital id) is
refused even when named, unless identifiers are kept on purpose (``keep_ids``).

Schema (missing cells are allowed everywhere except ``hospital_id``):

=====================  ===================================================
column                 rule
=====================  ===================================================
hospital_id            required, non-empty, unique
centre                 text
age                    number in 0..120
sex                    M or F (male/female accepted)
t_stage                1..4 (T1..T4 accepted)
n_stage                0..3 (N0..N3 accepted)
stage                  1..4 (I, II, III, IV, IVA, IVB accepted)
ebv_dna                number >= 0
treatment              CCRT, IC+CCRT or RT
physician_choice       CCRT, IC+CCRT or RT
``*_months|*_days``    number >= 0 (survival times)
``*_event``            0 or 1
distant_metastasis,    0 or 1
residual_tumour
=====================  ===================================================

Examples:
    >>> import pandas as pd
    >>> df = validate_clinical(pd.DataFrame({"hospital_id": ["H1", "H2"], "t_stage": ["T3", "4"]}))
    >>> df["t_stage"].tolist()
    [3, 4]
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError

__all__ = [
    "TREATMENTS", "BINARY_COLUMNS", "read_clinical", "validate_clinical", "require_columns",
    "survival_endpoints", "binary_columns", "identifying_columns", "identifying_reason", "is_schema_column",
    "allowlist_columns",
]

TREATMENTS = ("CCRT", "IC+CCRT", "RT")
BINARY_COLUMNS = ("distant_metastasis", "residual_tumour")
_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "IVA": 4, "IVB": 4, "IVC": 4}
_TIME_RX = re.compile(r"_(months|days|years|time)$")
_IDENTIFYING_NAME_RX = re.compile(
    r"(^|_)(names?|first_?name|last_?name|surname|given_?name|dob|birth|birth_?date|birthday|date_?of_?birth|"
    r"address|street|zip|postcode|postal_?code|phone|telephone|tel|mobile|fax|email|e_?mail|mrn|medical_?record|"
    r"record_?number|ssn|national_?id|insurance|accession|initials|dates?|ids?|uids?|card|patientid|"
    r"identifier|passport|contact|institution|referring|physician_?name|operator)(_|$)", re.IGNORECASE)
#: Chinese headings of identifying columns (name, inpatient/outpatient/record numbers, ID card, birth, phone ...)
_IDENTIFYING_HEADINGS = ("姓名", "名字", "患者名", "住院号", "门诊号", "病历号", "病案号", "身份证", "证件号", "出生",
                         "生日", "电话", "手机", "联系", "地址", "住址", "影像号", "检查号", "登记号", "编号", "医保",
                         "邮箱", "日期")
_DATE_VALUE_RX = re.compile(r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})([ T].*)?\s*$")
_DATE_IN_TEXT_RX = re.compile(r"(?<!\d)(\d{4}[-/.年]\d{1,2}[-/.月]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}|"
                              r"(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01]))(?!\d)")
_IDENTIFYING_VALUE_RX = {
    "a DICOM UID": re.compile(r"(?<![\d.])\d+(\.\d+){4,}(?![\d.])"),
    "an ID card number": re.compile(r"(?<!\d)\d{17}[\dXx](?![\dXx])"),
    "a phone number": re.compile(r"(?<![\w.])\+?\d[\d\s()-]{6,}\d(?![\w.])"),
    "an e-mail address": re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+"),
    "a date": _DATE_IN_TEXT_RX,
}
_EVENT_RX = re.compile(r"_event$")


def read_clinical(path: str | os.PathLike, sheet: str | None = None) -> pd.DataFrame:
    """Read a clinical CSV or Excel workbook as text cells (validation types them).

    A workbook with several sheets needs ``sheet``; without it the error lists the sheets.
    """
    path = Path(path)
    if not path.is_file():
        raise NpcaiError(f"{path}: clinical table not found; give a .csv or .xlsx file with a hospital_id column")
    suffix = path.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm", ".xls"):
            xls = pd.ExcelFile(path)
            sheets = list(xls.sheet_names)
            if sheet is None:
                if len(sheets) > 1:
                    raise NpcaiError(f"{path}: workbook has {len(sheets)} sheets ({', '.join(map(repr, sheets))}); "
                                     "choose one with --sheet")
                sheet = sheets[0]
            elif sheet not in sheets:
                raise NpcaiError(f"{path}: no sheet {sheet!r} (sheets: {', '.join(map(repr, sheets))}); fix --sheet")
            df = xls.parse(sheet, dtype=str)
        elif suffix in (".csv", ".txt", ".tsv"):
            if sheet is not None:
                raise NpcaiError(f"{path}: --sheet applies to Excel workbooks only; drop it for a CSV file")
            df = pd.read_csv(path, dtype=str, sep=None if suffix != ".csv" else ",", engine="python",
                             skipinitialspace=True)
        else:
            raise NpcaiError(f"{path}: unsupported clinical table type {suffix!r}; give a .csv or .xlsx file")
    except NpcaiError:
        raise
    except Exception as exc:  # noqa: BLE001 - parser errors from pandas/openpyxl
        raise NpcaiError(f"{path}: cannot read the clinical table ({str(exc).splitlines()[0][:200]}); "
                         "save it as CSV (UTF-8) or XLSX") from exc
    df.columns = [str(c).strip() for c in df.columns]
    if len(df.columns) == 1:
        for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "vertical bars")):
            if sep in df.columns[0]:
                raise NpcaiError(f"{path}: the header {df.columns[0][:60]!r} is separated by {name}, not commas; "
                                 f"save the table as comma-separated CSV (or .xlsx)")
    df = df.dropna(how="all")
    df.attrs["source"] = str(path.name)
    return df


def _where(df: pd.DataFrame, idx, id_col: str) -> str:
    hid = df.at[idx, id_col] if id_col in df.columns else None
    row = int(idx) + 2 if isinstance(idx, (int, np.integer)) else idx   # header is spreadsheet row 1
    return f"{id_col} {hid} (row {row})" if hid is not None else f"row {row}"


def _blank(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and v.strip() == "")


def validate_clinical(df: pd.DataFrame, *, source: str | None = None, id_col: str = "hospital_id") -> pd.DataFrame:
    """Check and type a clinical table; returns a new DataFrame (same columns, typed values).

    Args:
        df: the raw table (text cells, as from :func:`read_clinical`, or already typed).
        source: the file name used in messages (defaults to ``df.attrs["source"]``).
        id_col: the identifier column (``hospital_id`` for an export, ``patient_id`` for a cohort).

    Raises:
        NpcaiError: one line naming the file, column and hospital id of the first bad cell.
    """
    src = source or df.attrs.get("source", "clinical table")
    df = df.copy().reset_index(drop=True)
    df.columns = [str(c).strip() for c in df.columns]
    if id_col not in df.columns:
        raise NpcaiError(f"{src}: no {id_col!r} column (columns: {', '.join(df.columns[:12])}); "
                         f"add one that matches the {'DICOM PatientID' if id_col == 'hospital_id' else 'cohort'}")
    dup_cols = [c for c in df.columns if list(df.columns).count(c) > 1]
    if dup_cols:
        raise NpcaiError(f"{src}: column {dup_cols[0]!r} appears twice; rename or remove one")
    ids = df[id_col].map(lambda v: None if _blank(v) else str(v).strip())
    for idx, v in ids.items():
        if v is None:
            raise NpcaiError(f"{src}: column {id_col!r} is empty in row {int(idx) + 2}; fill it or delete the row")
    dups = ids[ids.duplicated(keep=False)]
    if len(dups):
        first = dups.iloc[0]
        rows = [int(i) + 2 for i in dups.index[dups == first]]
        raise NpcaiError(f"{src}: duplicate {id_col} {first!r} in rows {', '.join(map(str, rows))}; "
                         "keep one row per patient")
    df[id_col] = ids
    out = df.copy()
    for col in df.columns:
        if col == id_col:
            continue
        rule = _rule_for(col)
        if rule is None:
            continue
        values = []
        for idx, v in df[col].items():
            if _blank(v):
                values.append(np.nan)
                continue
            try:
                values.append(rule(v))
            except ValueError as exc:
                msg = str(exc)
                hint = ""
                if msg.endswith(")") and " (" in msg:
                    msg, hint = msg[:-1].split(" (", 1)
                    hint = f" ({hint})"
                raise NpcaiError(f"{src}: column {col!r} has {msg} for {_where(df, idx, id_col)}{hint}; fix the cell "
                                 "or leave it empty") from None
        series = pd.Series(values, index=df.index, dtype=object)
        if rule in (_time, _number_ge0, _age):
            series = series.astype(float)
        elif rule in (_binary, _t_stage, _n_stage, _stage):
            series = series.astype("Int64") if series.isna().any() else series.astype(int)
        out[col] = series
    out.attrs["source"] = src
    return out


def _as_float(v) -> float:
    try:
        f = float(str(v).strip())
    except (TypeError, ValueError):
        raise ValueError(f"non-numeric value {v!r}") from None
    if not np.isfinite(f):
        raise ValueError(f"non-finite value {v!r}")
    return f


def _time(v) -> float:
    f = _as_float(v)
    if f < 0:
        raise ValueError(f"negative time {v!r} (times must be >= 0)")
    return f


def _number_ge0(v) -> float:
    f = _as_float(v)
    if f < 0:
        raise ValueError(f"negative value {v!r} (must be >= 0)")
    return f


def _age(v) -> float:
    f = _as_float(v)
    if not 0 <= f <= 120:
        raise ValueError(f"age {v!r} outside 0..120")
    return f


def _binary(v) -> int:
    s = str(v).strip().lower()
    if s in ("0", "0.0", "no", "false"):
        return 0
    if s in ("1", "1.0", "yes", "true"):
        return 1
    raise ValueError(f"value {v!r} outside {{0, 1}}")


def _staged(v, prefix: str, lo: int, hi: int, what: str) -> int:
    s = str(v).strip().upper()
    m = re.fullmatch(rf"{prefix}?\s*(\d)(?:\.0)?[A-C]?", s)
    if not m or not lo <= int(m.group(1)) <= hi:
        raise ValueError(f"{what} {v!r} outside {prefix}{lo}..{prefix}{hi}")
    return int(m.group(1))


def _t_stage(v) -> int:
    return _staged(v, "T", 1, 4, "T stage")


def _n_stage(v) -> int:
    return _staged(v, "N", 0, 3, "N stage")


def _stage(v) -> int:
    s = re.sub(r"^STAGE\s*", "", str(v).strip().upper())
    if s in _ROMAN:
        return _ROMAN[s]
    m = re.fullmatch(r"(\d)(?:\.0)?[A-C]?", s)
    if not m or not 1 <= int(m.group(1)) <= 4:
        raise ValueError(f"stage {v!r} outside I..IVB (1..4)")
    return int(m.group(1))


def _sex(v) -> str:
    s = str(v).strip().upper()
    if s in ("M", "MALE"):
        return "M"
    if s in ("F", "FEMALE"):
        return "F"
    raise ValueError(f"sex {v!r} not M or F")


def _treatment(v) -> str:
    s = re.sub(r"\s+", "", str(v).strip().upper())
    for t in TREATMENTS:
        if s == t:
            return t
    raise ValueError(f"treatment {v!r} not one of {', '.join(TREATMENTS)}")


def _text(v) -> str:
    return str(v).strip()


def _rule_for(col: str):
    c = col.lower()
    if c == "age":
        return _age
    if c == "sex":
        return _sex
    if c == "t_stage":
        return _t_stage
    if c == "n_stage":
        return _n_stage
    if c == "stage":
        return _stage
    if c == "ebv_dna":
        return _number_ge0
    if c in ("treatment", "physician_choice"):
        return _treatment
    if c == "centre":
        return _text
    if _TIME_RX.search(c):
        return _time
    if _EVENT_RX.search(c) or c in BINARY_COLUMNS:
        return _binary
    return None


def is_schema_column(column: str) -> bool:
    """Whether ``column`` is one the schema knows (typed and checked) and may enter a cohort."""
    return column == "hospital_id" or _rule_for(str(column)) is not None


def _name_key(column: str) -> str:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(column).strip())      # PatientBirthDate -> Patient_Birth_Date
    return re.sub(r"[^0-9a-z]+", "_", spaced.lower()).strip("_")


def identifying_reason(column: str, values: pd.Series | None = None, ids: Iterable[str] = ()) -> str | None:
    """Why a column looks identifying (by its name or its cells), or None.

    Args:
        column: the column heading (English or Chinese).
        values: its cells; checked for dates, UIDs, ID card and phone numbers, e-mail addresses.
        ids: hospital ids of the table; a cell quoting one of them is identifying.
    """
    if _IDENTIFYING_NAME_RX.search(_name_key(column)):
        return "its name"
    if any(h in str(column) for h in _IDENTIFYING_HEADINGS):
        return "its name"
    if values is None:
        return None
    cells = values.dropna().astype(str).str.strip()
    cells = cells[cells != ""]
    if not len(cells):
        return None
    if cells.str.match(_DATE_VALUE_RX).mean() >= 0.8:
        return "its cells are dates"
    for what, rx in _IDENTIFYING_VALUE_RX.items():
        hits = cells.map(lambda c, rx=rx: [m.group(0) for m in rx.finditer(c)])
        if what == "a phone number":   # at least 8 digits, so doses and ranges are not phone numbers
            hits = hits.map(lambda ms: [m for m in ms if sum(ch.isdigit() for ch in m) >= 8])
        if hits.map(bool).any():
            return f"a cell holds {what}"
    wanted = [re.escape(str(h)) for h in ids if len(str(h)) >= 3]
    if wanted:
        rx = re.compile(r"(?<![0-9A-Za-z])(?:" + "|".join(sorted(wanted, key=len, reverse=True)) + r")(?![0-9A-Za-z])")
        if cells.str.contains(rx).any():
            return "a cell quotes a hospital id"
    return None


def identifying_columns(df: pd.DataFrame, id_col: str = "hospital_id") -> list[str]:
    """Columns that look identifying and must not reach a cohort: names, ids, birth dates,
    UIDs, contact details, record numbers, dates, and free text quoting a hospital id
    (by the heading or the cells; see :func:`identifying_reason`)."""
    ids = df[id_col].dropna().astype(str).str.strip().tolist() if id_col == "hospital_id" and id_col in df else []
    return [c for c in df.columns if c not in (id_col, "hospital_id") and identifying_reason(c, df[c], ids)]


def allowlist_columns(df: pd.DataFrame, keep: Iterable[str] = (), *, keep_ids: bool = False,
                      source: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The columns of a raw clinical table that may enter a cohort, and those dropped.

    Schema columns and the columns named in ``keep`` are kept; every other column is
    dropped. A kept column (or a text schema column such as ``centre``) that looks
    identifying is refused unless ``keep_ids``.

    Args:
        df: the raw table (from :func:`read_clinical`), with ``hospital_id``.
        keep: extra columns to keep (the user's ``--keep-columns``).
        keep_ids: accept identifying columns the user asked for (the cohort is then not
            de-identified).
        source: file name for messages (defaults to ``df.attrs["source"]``).

    Returns:
        ``(table with the allowed columns, names of the dropped columns)``.

    Raises:
        NpcaiError: a kept column is missing, or looks identifying without ``keep_ids``.
    """
    src = source or df.attrs.get("source", "clinical table")
    keep = [str(k).strip() for k in keep if str(k).strip()]
    missing = [k for k in keep if k not in df.columns]
    if missing:
        raise NpcaiError(f"{src}: no column {missing[0]!r} to keep; columns are {', '.join(map(str, df.columns))}")
    ids = df["hospital_id"].dropna().astype(str).str.strip().tolist() if "hospital_id" in df.columns else []
    kept, dropped = [], []
    for col in df.columns:
        if col == "hospital_id":
            kept.append(col)
            continue
        if col not in keep and not is_schema_column(col):
            dropped.append(col)
            continue
        text_column = col in keep or _rule_for(col) in (_text, _treatment, _sex)
        reason = identifying_reason(col, df[col] if text_column else None, ids)
        if reason and not keep_ids:
            raise NpcaiError(f"{src}: column {col!r} looks identifying ({reason}), so it never enters a cohort; "
                             "remove it, or keep identifiers on purpose (--keep-ids: the cohort is then "
                             "not de-identified)")
        kept.append(col)
    out = df[kept].copy()
    out.attrs.update(df.attrs)
    return out, dropped


def survival_endpoints(columns: Iterable[str]) -> list[str]:
    """Survival endpoint names present as ``<name>_months`` + ``<name>_event`` pairs."""
    cols = set(columns)
    names = []
    for c in sorted(cols):
        m = re.fullmatch(r"(.+)_(months|days|years|time)", c)
        if m and f"{m.group(1)}_event" in cols:
            names.append(m.group(1))
    return names


def binary_columns(df: pd.DataFrame, exclude: Iterable[str] = ()) -> list[str]:
    """Columns holding only 0/1 (and missing) values, not survival events."""
    skip = set(exclude)
    cols = []
    for c in df.columns:
        if c in skip or _EVENT_RX.search(c):
            continue
        vals = pd.to_numeric(df[c], errors="coerce")
        if df[c].notna().any() and vals.notna().sum() == df[c].notna().sum() and set(vals.dropna().unique()) <= {0, 1}:
            cols.append(c)
    return cols


def require_columns(clinical: pd.DataFrame, cols: Iterable[str], what: str) -> None:
    """Fail with one line naming the first missing column that ``what`` needs.

    Args:
        clinical: the cohort's clinical table (e.g. ``Cohort.clinical()``).
        cols: the columns needed.
        what: what needs them, e.g. ``"endpoint pfs-median"``.

    Examples:
        >>> require_columns(pd.DataFrame({"pfs_months": [1.0]}), ["pfs_months", "pfs_event"],
        ...                 "endpoint pfs-median")  # doctest: +SKIP
        NpcaiError: clinical.csv: endpoint pfs-median needs column 'pfs_event', which this cohort lacks; ...
    """
    present = set(clinical.columns) | ({clinical.index.name} if clinical.index.name else set())
    missing = [c for c in cols if c not in present]
    if missing:
        more = f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else ""
        raise NpcaiError(f"clinical.csv: {what} needs column {missing[0]!r}, which this cohort lacks{more}; "
                         "add it to the clinical table and re-run `npcai ingest`")
