"""A fast reader of the header of uncompressed little-endian MR/CT DICOM files.

The ingest header scan reads every file up to its pixel data. pydicom's
``dcmread(stop_before_pixels=True)`` spends most of its time in per-element Python
machinery; :func:`read_image_header` walks the same bytes with :mod:`struct` and builds a
:class:`HeaderDataset` (a pydicom Dataset) holding what pydicom's reader would hold: the same
raw (unconverted) elements, keyed by the same tags, with the same file meta and encodings.
Every value read from it is converted by pydicom itself on first access, so the values,
``in`` tests and ``get`` defaults are pydicom's; the few conversions dcmread makes while
reading (the file meta group length, SpecificCharacterSet) are made here too, so a file
pydicom refuses is left to pydicom to refuse.

Only the common case is read here: a 128-byte preamble and ``DICM``, an explicit VR little
endian file meta group naming implicit VR little endian (1.2.840.10008.1.2) or explicit VR
little endian (1.2.840.10008.1.2.1), an MR or CT Modality, and a dataset whose elements all
parse cleanly up to the pixel data element (7FE0,0010 or the float/double pixel data tags,
where pydicom stops too). Sequences of defined length are skipped by their length; those of
undefined length are walked item by item to their delimiters, checking each element as
pydicom's reader does. Anything else (no preamble, another transfer syntax, a command
group, a VR not matching the transfer syntax, an unknown VR, an undefined length outside a
sequence, a length running past the end of the file, a delimiter out of place, no pixel
data) returns None and the caller reads the file with pydicom, which then behaves as it
always did.
"""
from __future__ import annotations

import struct
from typing import Any, BinaryIO

from pydicom.charset import default_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

__all__ = ["HeaderDataset", "read_image_header", "header_dataset", "parse_image_header"]

_EXPLICIT = struct.Struct("<HH2sH").unpack_from      # tag, VR, 2-byte length
_IMPLICIT = struct.Struct("<HHL").unpack_from        # tag, 4-byte length (also item headers)
_U32 = struct.Struct("<L").unpack_from

_VRS = {vr.value.encode("ascii"): vr.value for vr in VR}                  # b"US" -> "US"
_LONG_VRS = frozenset(vr.value for vr in EXPLICIT_VR_LENGTH_32)           # 4-byte length after 2 reserved
_SYNTAXES = {b"1.2.840.10008.1.2": True, b"1.2.840.10008.1.2.1": False}  # transfer syntax -> implicit VR
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})          # where pydicom's stop_before_pixels stops
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_ITEM_BYTES = b"\xfe\xff\x00\xe0"
_UNDEFINED = 0xFFFFFFFF
_MODALITY = 0x00080060
_IMAGE_MODALITIES = (b"MR", b"CT")
_TRANSFER_SYNTAX = 0x00020010
_CHARSET = 0x00080005
_FIRST_READ = 16384
# the elements are built as pydicom's reader builds them; a pydicom whose RawDataElement has
# other fields is left to read every file itself
_RAW_LAYOUT = RawDataElement._fields == ("tag", "VR", "length", "value", "value_tell", "is_implicit_VR",
                                         "is_little_endian", "is_raw", "is_buffered")


_TAGS: dict[int, BaseTag] = {}                        # one BaseTag object per tag value read
_KEYWORDS: dict[str, tuple[BaseTag, bool]] = {}         # name -> (Tag(name), get() may look it up)


def _tag(value: int) -> BaseTag:
    """The shared :class:`BaseTag` of ``value``: dict look-ups with the very key object
    stored skip BaseTag's Python ``__eq__``."""
    tag = _TAGS.get(value)
    if tag is None:
        tag = BaseTag(value)
        if len(_TAGS) < 65536:
            _TAGS[value] = tag
    return tag


def _keyword(name: str) -> tuple[BaseTag, bool] | None:
    """``(Tag(name), whether Dataset.get(name) means that element)``, None when ``name``
    names no tag; computed once per name. ``in`` and ``get_item`` take any name ``Tag``
    takes (hexadecimal too); ``get`` only DICOM keywords that are not Dataset attributes."""
    found = _KEYWORDS.get(name)
    if found is None:
        try:
            tag = _tag(int(Tag(name)))
        except Exception:  # noqa: BLE001 - not a tag: pydicom's own path answers
            return None
        found = (tag, tag_for_keyword(name) == tag and not hasattr(HeaderDataset, name))
        if len(_KEYWORDS) < 4096:
            _KEYWORDS[name] = found
    return found


class HeaderDataset(Dataset):
    """A pydicom :class:`~pydicom.dataset.Dataset` whose keyword look-ups (``in``,
    :meth:`get_item`, :meth:`get`) skip pydicom's keyword-to-tag conversion, which costs
    more than reading the header; answers and values are those of a Dataset.
    ``header_bytes`` holds the file's bytes up to its pixel data element's header (see
    :func:`header_dataset`)."""

    header_bytes: bytes | None = None

    def __contains__(self, name: Any) -> bool:
        if isinstance(name, str):
            found = _keyword(name)
            if found is not None:
                return found[0] in self._dict
        return super().__contains__(name)

    def get_item(self, key: Any, *, keep_deferred: bool = False) -> Any:
        if isinstance(key, str):
            found = _keyword(key)
            if found is not None:
                key = found[0]
        return super().get_item(key, keep_deferred=keep_deferred)

    def get(self, key: Any, default: Any | None = None) -> Any:
        if isinstance(key, str):
            found = _keyword(key)
            if found is not None and found[1]:
                # Dataset.get -> getattr -> __getattr__: the element's value, else default
                if found[0] not in self._dict:
                    return default
                try:
                    return self[found[0]].value
                except AttributeError:
                    return default
        return super().get(key, default)


_CHARSETS: dict[tuple, str | list[str]] = {}          # (VR, raw SpecificCharacterSet) -> encodings


def _character_set(raw: RawDataElement) -> str | list[str]:
    """The text encodings of a SpecificCharacterSet element, as dcmread records them;
    raises ``_Fallback`` where dcmread raises (it converts the element as it reads it)."""
    key = (raw.VR, raw.value)
    found = _CHARSETS.get(key)
    if found is None:
        from pydicom.charset import convert_encodings
        from pydicom.dataelem import convert_raw_data_element
        from pydicom.values import convert_string

        try:
            convert_encodings(convert_string(raw.value or b"", True))      # the element reader's
            convert_encodings(convert_raw_data_element(raw).value)          # the dataset reader's
            found = Dataset({raw.tag: raw})._character_set                  # what dcmread records
        except Exception as exc:  # noqa: BLE001 - pydicom raises it reading the file
            raise _Fallback from exc
        if len(_CHARSETS) < 256:
            _CHARSETS[key] = found
    return list(found) if isinstance(found, list) else found


class _Fallback(Exception):
    """The header is not one this reader handles: read it with pydicom."""


class _NeedMore(Exception):
    """The header runs past the bytes read so far."""

    def __init__(self, upto: int):
        super().__init__(upto)
        self.upto = upto


def _short(upto: int, eof: bool):
    """Raise for a header needing bytes up to ``upto`` beyond those read."""
    if eof:
        raise _Fallback
    raise _NeedMore(upto)


def _undefined_is_sequence(buf: bytes, tag: int, vr: str | None, start: int, eof: bool) -> bool:
    """Whether an element of undefined length is a sequence, as pydicom decides (an explicit
    UN of undefined length, which pydicom reads as an implicit VR sequence, is not handled)."""
    if vr is not None:
        return vr == "SQ"
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:                                   # private: a sequence if an item follows
        if start + 4 > len(buf):
            _short(start + 4, eof)
        return buf[start:start + 4] == _ITEM_BYTES


def _walk_sequence(buf: bytes, pos: int, implicit: bool, eof: bool) -> int:
    """Walk the items of a sequence of undefined length starting at ``pos``; the position
    after its delimiter."""
    n = len(buf)
    while True:
        if pos + 8 > n:
            _short(pos + 8, eof)
        group, elem, length = _IMPLICIT(buf, pos)
        tag = group << 16 | elem
        pos += 8
        if tag == _SEQUENCE_END:
            if length:
                raise _Fallback
            return pos
        if tag != _ITEM:
            raise _Fallback
        if length == _UNDEFINED:
            pos = _walk_item(buf, pos, None, implicit, eof)
        else:
            if pos + length > n:
                _short(pos + length, eof)
            pos = _walk_item(buf, pos, pos + length, implicit, eof)


def _walk_item(buf: bytes, pos: int, end: int | None, implicit: bool, eof: bool) -> int:
    """Walk the elements of one item (to ``end``, or to its delimiter when ``end`` is None);
    the position after it."""
    n = len(buf)
    while True:
        if end is not None and pos >= end:
            if pos != end:
                raise _Fallback
            return pos
        if pos + 8 > n:
            _short(pos + 8, eof)
        group, elem, length = _IMPLICIT(buf, pos)
        if group == 0xFFFE:
            if (group << 16 | elem) != _ITEM_END or end is not None or length:
                raise _Fallback
            return pos + 8
        if group == 8 and elem == 5:
            raise _Fallback                            # pydicom converts it at once, in items too
        vr = None
        start = pos + 8
        if not implicit:
            vr = _VRS.get(buf[pos + 4:pos + 6])
            if vr is None:
                raise _Fallback
            if vr in _LONG_VRS:
                if pos + 12 > n:
                    _short(pos + 12, eof)
                length = _U32(buf, pos + 8)[0]
                start = pos + 12
            else:
                length = buf[pos + 6] | buf[pos + 7] << 8
        if length == _UNDEFINED:
            if not _undefined_is_sequence(buf, group << 16 | elem, vr, start, eof):
                raise _Fallback
            pos = _walk_sequence(buf, start, implicit, eof)
        else:
            pos = start + length
            if pos > n:
                _short(pos, eof)


def parse_image_header(buf: bytes, *, eof: bool) -> tuple[dict, dict, bool, int, str | list[str]]:
    """Parse the header at the start of ``buf`` (the file's first bytes; ``eof``: all of it).

    Returns ``(file_meta_elements, dataset_elements, implicit_vr, pixel_offset, encodings)``
    (raw pydicom elements keyed by tag; the text encodings of SpecificCharacterSet). Raises ``_Fallback`` for a header this reader does not
    handle and ``_NeedMore`` when it runs past ``buf``.
    """
    n = len(buf)
    if n < 140:
        _short(140, eof)
    if buf[128:132] != b"DICM":
        raise _Fallback
    # pydicom converts the first file meta element at once (and its group length): read here
    # only the plain (0002,0000) UL, whose conversion cannot fail
    if buf[132:140] != b"\x02\x00\x00\x00UL\x04\x00":
        raise _Fallback
    meta: dict[BaseTag, RawDataElement] = {}
    pos = 132
    while True:                                        # file meta: explicit VR little endian
        if pos + 8 > n:
            _short(pos + 8, eof)
        group, elem, vr_bytes, length = _EXPLICIT(buf, pos)
        if group != 2:
            break
        vr = _VRS.get(vr_bytes)
        if vr is None:
            raise _Fallback
        start = pos + 8
        if vr in _LONG_VRS:
            if pos + 12 > n:
                _short(pos + 12, eof)
            length = _U32(buf, pos + 8)[0]
            start = pos + 12
        if length == _UNDEFINED:
            raise _Fallback
        pos = start + length
        if pos > n:
            _short(pos, eof)
        tag = _tag(group << 16 | elem)
        meta[tag] = RawDataElement(tag, vr, length, buf[start:pos] if length else empty_value_for_VR(vr, raw=True),
                                   start, False, True)
    syntax = meta.get(_TRANSFER_SYNTAX)
    if syntax is None or syntax.VR != "UI" or not isinstance(syntax.value, bytes):
        raise _Fallback
    implicit = _SYNTAXES.get(syntax.value.rstrip(b"\0 "))
    if implicit is None:
        raise _Fallback
    # pydicom reads a command group (0000,xxxx) apart, and switches VR encoding when the first
    # element's VR does not match the transfer syntax: leave both to it
    if pos + 8 > n:
        _short(pos + 8, eof)
    if buf[pos:pos + 2] == b"\0\0":
        raise _Fallback
    if (not (0x40 < buf[pos + 4] < 0x5B and 0x40 < buf[pos + 5] < 0x5B)) != implicit:
        raise _Fallback

    elements: dict[BaseTag, RawDataElement] = {}
    charset: str | list[str] = default_encoding
    modality_checked = False
    new_raw = tuple.__new__                            # RawDataElement(...) without its Python __new__
    tags = _TAGS
    vr = None
    while True:
        if pos + 8 > n:
            _short(pos + 8, eof)
        start = pos + 8
        if implicit:
            group, elem, length = _IMPLICIT(buf, pos)
        else:
            group, elem, vr_bytes, length = _EXPLICIT(buf, pos)
            vr = _VRS.get(vr_bytes)
            if vr is None:
                raise _Fallback
            if vr in _LONG_VRS:                        # pydicom reads these 4 bytes even at the pixel data
                if pos + 12 > n:
                    _short(pos + 12, eof)
                length = _U32(buf, start)[0]
                start += 4
        tag = group << 16 | elem
        if not modality_checked and tag > _MODALITY:
            modality = elements.get(_MODALITY)
            value = None if modality is None else modality.value
            if not isinstance(value, bytes) or value.rstrip(b"\0").strip() not in _IMAGE_MODALITIES:
                raise _Fallback                        # RTSTRUCT and other files: pydicom reads them
            modality_checked = True
        if tag in _PIXEL_TAGS:
            break
        if group == 0xFFFE:
            raise _Fallback
        if length == _UNDEFINED:
            # pydicom parses it into a Sequence at once; kept raw (its items and delimiter),
            # pydicom converts it to the same Sequence on access
            if not _undefined_is_sequence(buf, tag, vr, start, eof):
                raise _Fallback
            pos = _walk_sequence(buf, start, implicit, eof)
            value = buf[start:pos]
            key = _tag(tag)
            elements[key] = new_raw(RawDataElement, (key, "SQ", length, value, start, implicit, True, True, False))
            continue
        pos = start + length
        if pos > n:
            _short(pos, eof)
        key = tags.get(tag)
        if key is None:
            key = _tag(tag)
        elements[key] = raw = new_raw(RawDataElement, (key, vr, length, buf[start:pos] if length else
                                                       empty_value_for_VR(vr, raw=True), start, implicit, True,
                                                       True, False))
        if tag == _CHARSET:
            charset = _character_set(raw)
    return meta, elements, implicit, pos, charset


def read_image_header(fh: BinaryIO, size: int) -> tuple[HeaderDataset, int] | None:
    """``(dataset, pixel_offset)`` of the MR/CT file open in ``fh`` (at its start; ``size``
    bytes), reading only its header, or None when pydicom must read it (see the module
    docstring). The dataset holds the elements and file meta of the one
    ``pydicom.dcmread(fh, stop_before_pixels=True)`` gives (a :class:`HeaderDataset` with
    ``file_meta``, not a FileDataset: no preamble, file name or time stamp), and
    ``pixel_offset`` is where that call leaves ``fh``: the start of the pixel data element.
    Raises OSError as ``fh.read`` does.
    """
    if not _RAW_LAYOUT:
        return None
    buf = fh.read(min(size, _FIRST_READ))
    while True:
        try:
            meta, elements, implicit, offset, charset = parse_image_header(buf, eof=len(buf) >= size)
            break
        except _NeedMore as more:
            if more.upto > size:
                return None
            more_bytes = fh.read(min(size, max(more.upto, 2 * len(buf))) - len(buf))
            if not more_bytes:
                return None
            buf += more_bytes
        except Exception:  # noqa: BLE001 - _Fallback, or a surprise (sequences nested past the recursion
            return None    # limit...): pydicom reads the file, as before
    ds = _dataset(meta, elements, implicit, charset)
    ds.header_bytes = buf[:offset + 12]
    return ds, offset


def _dataset(meta: dict, elements: dict, implicit: bool, charset: str | list[str]) -> HeaderDataset:
    file_meta = FileMetaDataset(meta)
    file_meta.set_original_encoding(False, True, default_encoding)
    ds = HeaderDataset(elements)
    ds.file_meta = file_meta
    ds.set_original_encoding(implicit, True, charset)
    return ds


def header_dataset(header_bytes: bytes) -> HeaderDataset:
    """The dataset :func:`read_image_header` gave, from its ``header_bytes`` (the header scan
    sends these between processes rather than the dataset or values read from it)."""
    meta, elements, implicit, _, charset = parse_image_header(header_bytes, eof=True)
    ds = _dataset(meta, elements, implicit, charset)
    ds.header_bytes = header_bytes
    return ds
