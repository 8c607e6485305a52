"""Where each raster's bytes lie inside serialized ``tf.train.Example`` records, so that crops are cut
from the records themselves.

``tf.io.parse_example`` copies every bytes feature it returns: to crop 128 px out of a 256 px SEN12MS
patch it copied the patch's whole 2.2 MB of S1 and S2, to use a quarter of them. :func:`locate_bytes`
instead walks the records' protobuf wire format and returns each raster's offset in its record;
``tf.strings.substr`` then cuts the crop's rows straight from the record (measured here: 13 % less CPU
per sample for the training pipeline at 128 px crops of 256 px SEN12MS records).

Written by hand because no TensorFlow op says where a field lies without copying it
(``parse_example`` and ``decode_proto`` both copy). The walk relies on what every protobuf serializer
writes for an ``Example`` (each map entry's key first, then its value; a ``Feature`` holding one
``BytesList`` of one value, lengths in shortest varints) and checks it: every entry must start with
its key, each raster's entry must be exactly the expected bytes up to its value, no key may come
twice, and the walk must end at the record's end. A record laid out otherwise is reported (``ok``
false), and its caller parses it the ordinary way (tested with the layouts protobuf accepts that
break these: value before key, overlong varints, a key twice).

Wire format walked (``tag`` is one byte: field number << 3 | 2, length-delimited)::

    Example:   0x0a len Features
    Features:  (0x0a len MapEntry)*            one entry per feature, in any order
    MapEntry:  0x0a len key  0x12 len Feature
    Feature:   0x0a len BytesList              (bytes_list; float_list and int64_list have other tags)
    BytesList: 0x0a len value                  (one value: the raster's bytes)
"""

import tensorflow as tf

_VARINT_BYTES = 10  # the longest varint (a 64-bit value)


def _inside(pos, end):
    """`pos` kept within ``[0, end]``: a malformed record's lengths may point anywhere (substr refuses that)."""
    return tf.clip_by_value(pos, 0, end)


def _varint(serialized, pos, end):
    """The varint at byte `pos` ``[B]`` of each record (``end``: the records' lengths): its value and its
    length in bytes (both int64); past a record's end, 0 and 1."""
    length = tf.fill(tf.shape(pos), tf.constant(_VARINT_BYTES, tf.int64))
    window = tf.strings.substr(serialized, _inside(pos, end), length)
    b = tf.cast(tf.io.decode_raw(window, tf.uint8, fixed_length=_VARINT_BYTES), tf.int64)
    # A varint's bytes run up to the first one without the continuation bit (0x80).
    length = tf.argmin(tf.cast(b >= 128, tf.int32), axis=1, output_type=tf.int64) + 1
    shifts = 7 * tf.range(_VARINT_BYTES, dtype=tf.int64)
    used = shifts[None, :] < 7 * length[:, None]
    value = tf.reduce_sum(tf.where(used, tf.bitwise.left_shift(b & 127, shifts[None, :]), 0), axis=1)
    return value, length


def _byte(serialized, pos, end):
    """The byte at `pos` ``[B]`` of each record, as int64 (-1 past its end)."""
    one = tf.strings.substr(serialized, _inside(pos, end), tf.ones_like(pos))
    return tf.where(tf.strings.length(one) > 0,
                    tf.cast(tf.io.decode_raw(one, tf.uint8, fixed_length=1)[:, 0], tf.int64), -1)


def locate_bytes(serialized, sizes, features):
    """Offsets of bytes features in serialized ``tf.train.Example`` records.

    Args:
        serialized: ``[B]`` tf.string, the records.
        sizes: ``{feature key: its value's length in bytes}``; every record must hold each of these keys
            as a one-value ``BytesList`` of exactly that length.
        features: how many features a record holds: the walk visits that many map entries, and a record
            with more is not ``ok``.

    Returns:
        ``(offsets, ok)``: ``{key: [B] int64}``, the byte offset of each feature's value in its record,
        and ``ok`` (scalar bool): whether every record was found laid out as expected, with each key
        exactly once. Where ``ok`` is false the offsets mean nothing.

    Example:
    >>> offsets, ok = locate_bytes(records, {"s2": 256 * 256 * 13 * 2}, features=10)
    >>> rows = tf.strings.substr(records, offsets["s2"], tf.fill(tf.shape(records), 256 * 13 * 2))  # first rows
    """
    serialized = tf.convert_to_tensor(serialized, tf.string)
    end = tf.cast(tf.strings.length(serialized), tf.int64)
    zeros = tf.zeros_like(end)
    ok = tf.equal(_byte(serialized, zeros, end), 0x0A)
    total, n = _varint(serialized, zeros + 1, end)
    ok &= tf.equal(1 + n + total, end)
    pos = 1 + n
    offsets = {k: zeros for k in sizes}
    hits = {k: zeros for k in sizes}  # entries of the key laid out as expected
    named = {k: zeros for k in sizes}  # entries of the key, however laid out
    # Each raster's whole entry up to its value is fixed by its key and size: expected byte for byte.
    heads = {}
    for k, size in sizes.items():
        list_length = 1 + len(_encode(size)) + size
        feature_length = 1 + len(_encode(list_length)) + list_length
        key = [0x0A, *_encode(len(k)), *k.encode()]
        entry = [*key, 0x12, *_encode(feature_length), 0x0A, *_encode(list_length), 0x0A, *_encode(size)]
        heads[k] = bytes([0x0A, *_encode(len(entry) + size), *entry])  # the map entry's tag and length first
    for _ in range(features):
        pos = _inside(pos, end)  # a record with fewer entries is walked to its end and stays there
        entry, n = _varint(serialized, pos + 1, end)
        body = _inside(pos + 1 + n, end)
        key_length, n = _varint(serialized, body + 1, end)
        key = tf.strings.substr(serialized, _inside(body + 1 + n, end), _inside(key_length, end))
        # Every entry starts with its key (as every serializer writes them), so that `key` names it.
        tags = tf.equal(_byte(serialized, pos, end), 0x0A) & tf.equal(_byte(serialized, body, end), 0x0A)
        ok &= (pos >= end) | tags
        for k, head in heads.items():
            length = tf.fill(tf.shape(pos), tf.constant(len(head), tf.int64))
            hit = tf.equal(tf.strings.substr(serialized, pos, length), head)
            offsets[k] = tf.where(hit, pos + len(head), offsets[k])
            hits[k] += tf.cast(hit, tf.int64)
            named[k] += tf.cast(tf.equal(key, k) & (pos < end), tf.int64)
        pos = body + entry
    # Walked to the end: protobuf keeps the last of a repeated key, so no entry may be left unread.
    ok &= tf.equal(pos, end)
    for k in sizes:
        ok &= tf.equal(hits[k], 1) & tf.equal(named[k], 1)
    return offsets, tf.reduce_all(ok)


def _encode(value):
    """The varint bytes of `value` (a non-negative Python int)."""
    out = []
    while True:
        low, value = value & 127, value >> 7
        out.append(low | (128 if value else 0))
        if not value:
            return out
