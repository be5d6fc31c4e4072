"""Struct layouts from the BTF of a compiled BPF object, and from ctypes mirrors, to compare them.

Reads the ``.BTF`` ELF section directly (pure Python, no bpftool, no root), which is enough to
learn every named struct's size and each member's offset and size. Used by the loader to refuse
an object whose maps no longer match the Python mirrors, and by tests/unit/test_map_layout.py.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass

BTF_MAGIC = 0xEB9F
# BTF kinds
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
_QUALIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)
# bytes after struct btf_type: fixed, or per member (vlen)
_EXTRA_FIXED = {INT: 4, ARRAY: 12, VAR: 4, DECL_TAG: 4}
_EXTRA_PER_MEMBER = {STRUCT: 12, UNION: 12, ENUM: 8, FUNC_PROTO: 8, DATASEC: 12, ENUM64: 12}


class BtfFormatError(ValueError):
    """The file is not an ELF object with usable BTF."""


@dataclass(frozen=True)
class Member:
    name: str
    offset: int  # bytes from the start of the struct
    size: int  # bytes


@dataclass(frozen=True)
class StructLayout:
    name: str
    size: int
    members: tuple[Member, ...]


@dataclass(frozen=True)
class _Type:
    kind: int
    name: str
    size_or_type: int
    extra: tuple  # (nelems, elem_type) for arrays; ((name, type, bit offset), ...) for structs


def _btf_section(elf: bytes, path: str) -> bytes:
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise BtfFormatError(f"{path}: not a little-endian 64-bit ELF file")
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    strtab_off, strtab_size = headers[shstrndx][4], headers[shstrndx][5]
    names = elf[strtab_off : strtab_off + strtab_size]
    for name_off, _type, _flags, _addr, offset, size in headers:
        if names[name_off : names.index(b"\0", name_off)] == b".BTF":
            return elf[offset : offset + size]
    raise BtfFormatError(f"{path}: no .BTF section (compile with clang -g)")


def _parse_types(btf: bytes, path: str) -> dict[int, _Type]:
    magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", btf, 0)
    if magic != BTF_MAGIC:
        raise BtfFormatError(f"{path}: bad BTF magic {magic:#x}")
    type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", btf, 8)
    strings = btf[hdr_len + str_off : hdr_len + str_off + str_len]

    def text(off: int) -> str:
        return strings[off : strings.index(b"\0", off)].decode()

    types: dict[int, _Type] = {}
    pos, end, type_id = hdr_len + type_off, hdr_len + type_off + type_len, 1
    while pos < end:
        name_off, info, size_or_type = struct.unpack_from("<III", btf, pos)
        pos += 12
        kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        extra: tuple = ()
        if kind == ARRAY:
            elem_type, _index_type, nelems = struct.unpack_from("<III", btf, pos)
            extra = (nelems, elem_type)
        elif kind in (STRUCT, UNION):
            members = []
            for i in range(vlen):
                m_name, m_type, m_off = struct.unpack_from("<III", btf, pos + 12 * i)
                bit_offset = m_off & 0xFFFFFF if kflag else m_off
                members.append((text(m_name), m_type, bit_offset))
            extra = tuple(members)
        pos += _EXTRA_FIXED.get(kind, 0) + _EXTRA_PER_MEMBER.get(kind, 0) * vlen
        types[type_id] = _Type(kind, text(name_off), size_or_type, extra)
        type_id += 1
    return types


def _size(types: dict[int, _Type], type_id: int) -> int:
    t = types[type_id]
    if t.kind in _QUALIFIERS:
        return _size(types, t.size_or_type)
    if t.kind == ARRAY:
        nelems, elem = t.extra
        return nelems * _size(types, elem)
    if t.kind == PTR:
        return 8
    return t.size_or_type


def read_struct_layouts(path: str) -> dict[str, StructLayout]:
    """Every named struct in the object's BTF, by name."""
    with open(path, "rb") as f:
        elf = f.read()
    try:
        types = _parse_types(_btf_section(elf, path), path)
    except (struct.error, IndexError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, BtfFormatError):
            raise
        raise BtfFormatError(f"{path}: malformed ELF/BTF ({exc})") from None
    layouts = {}
    for t in types.values():
        if t.kind == STRUCT and t.name:
            members = tuple(Member(name, bits // 8, _size(types, m_type)) for name, m_type, bits in t.extra)
            layouts[t.name] = StructLayout(t.name, t.size_or_type, members)
    return layouts


def ctypes_layout(name: str, struct_type: type[ctypes.Structure]) -> StructLayout:
    """The layout of a ctypes mirror, named after the C struct it mirrors."""
    members = tuple(
        Member(field[0], getattr(struct_type, field[0]).offset, getattr(struct_type, field[0]).size)
        for field in struct_type._fields_
    )
    return StructLayout(name, ctypes.sizeof(struct_type), members)


def layout_drift(c_layout: StructLayout, py_layout: StructLayout) -> list[str]:
    """Human-readable differences between the C struct and its mirror (empty if they agree)."""
    where = f"struct {c_layout.name}"
    problems = []
    if c_layout.size != py_layout.size:
        problems.append(f"{where}: size is {c_layout.size} in C, {py_layout.size} in Python")
    c_members = {m.name: m for m in c_layout.members}
    py_members = {m.name: m for m in py_layout.members}
    for name in c_members.keys() - py_members.keys():
        problems.append(f"{where}: member {name} is missing in Python")
    for name in py_members.keys() - c_members.keys():
        problems.append(f"{where}: member {name} does not exist in C")
    for name in c_members.keys() & py_members.keys():
        c, py = c_members[name], py_members[name]
        if (c.offset, c.size) != (py.offset, py.size):
            problems.append(
                f"{where}.{name}: offset/size {c.offset}/{c.size} in C, {py.offset}/{py.size} in Python"
            )
    if not problems and [m.name for m in c_layout.members] != [m.name for m in py_layout.members]:
        problems.append(f"{where}: members are in another order in Python")
    return sorted(problems)
