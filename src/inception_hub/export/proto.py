"""The three small TF-Hub protocol messages the TF1 format needs, encoded by hand.

tensorflow_hub 0.16 no longer ships their generated classes, and they are tiny:
ModuleDef {Format format = 1}, ModuleAttachment {string key = 1; bytes value = 2},
ImageModuleInfo {InputSize default_image_size = 1}, InputSize {int32 height = 1; int32 width = 2}.
"""

from __future__ import annotations

FORMAT_V3 = 3


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _field_bytes(number: int, value: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(value)) + value


def module_def_v3() -> bytes:
    return _field_varint(1, FORMAT_V3)


def image_module_info(height: int, width: int) -> bytes:
    return _field_bytes(1, _field_varint(1, height) + _field_varint(2, width))


def module_attachment(key: str, value: bytes) -> bytes:
    return _field_bytes(1, key.encode()) + _field_bytes(2, value)


def parse(data: bytes) -> dict[int, list[int | bytes]]:
    """Decode one message level: {field number: [varint or bytes values]}."""
    fields: dict[int, list[int | bytes]] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            b = data[i]
            i += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            value: int | bytes = varint()
        elif wire == 2:
            n = varint()
            value, i = data[i : i + n], i + n
        else:
            raise ValueError(f"unsupported wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def read_image_size(attachment: bytes) -> tuple[str, tuple[int, int] | None]:
    """(key, (height, width)) of a ModuleAttachment; the size only for `image_module_info`."""
    msg = parse(attachment)
    key = bytes(msg.get(1, [b""])[0]).decode()
    if key != "image_module_info":
        return key, None
    info = parse(bytes(msg[2][0]))
    size = parse(bytes(info[1][0]))
    return key, (int(size[1][0]), int(size[2][0]))
