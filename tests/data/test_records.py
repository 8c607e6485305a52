"""Finding the rasters inside serialized tf.train.Example records (sslrs_tf.data.records), against
protobuf's own parser and Python's bytes.find; records laid out otherwise are reported, and the
pipeline's parser reads them the same."""

import numpy as np
import pytest
import tensorflow as tf

from sslrs_tf.data.pipeline import as_source, read_settings
from sslrs_tf.data.records import locate_bytes
from tests.helpers import assert_cut_from_records, eager_and_in_tf_data


def _records(builder, split, n=8):
    files = [str(f) for f in builder.info.splits[split].filepaths]
    return [r.numpy() for r in tf.data.TFRecordDataset(files).take(n)]


def _bytes_features(record):
    example = tf.train.Example.FromString(record)
    return {k: f.bytes_list.value[0] for k, f in example.features.feature.items() if f.HasField("bytes_list")}


def _varint(value):
    out = bytearray()
    while True:
        low, value = value & 127, value >> 7
        out.append(low | (128 if value else 0))
        if not value:
            return bytes(out)


def _field(number, payload, overlong=False):
    length = _varint(len(payload))
    if overlong:  # one byte more than needed: valid protobuf, which parsers accept
        length = length[:-1] + bytes([length[-1] | 128, 0])
    return bytes([number << 3 | 2]) + length + payload


def _serialize(example, value_first=(), overlong=(), extra_values=(), twice=(), reverse=False):
    """`example` serialized by hand: map entries in sorted key order (or `reverse`d); for the keys in `value_first` the
    entry's value field before its key field, for those in `overlong` the Feature's length in a varint
    one byte too long, for those in `twice` a second entry at the end (all valid protobuf, read back as an
    equal message); for those in `extra_values` a second, empty BytesList value (another message)."""
    entries = b""
    for key in sorted(example.features.feature, reverse=reverse) + sorted(twice):
        feature = example.features.feature[key]
        if key in extra_values:
            values = list(feature.bytes_list.value) + [b""]
            body = _field(1, b"".join(_field(1, v) for v in values))
        else:
            body = feature.SerializeToString()
        parts = [_field(1, key.encode()), _field(2, body, overlong=key in overlong)]
        entries += _field(1, b"".join(parts[::-1] if key in value_first else parts))
    return _field(1, entries)


def _locate(records, sizes, features, in_tf_data=True):
    """``({key: offsets}, ok)``, eagerly and (`in_tf_data`) checked to be the same inside tf.data."""
    def fn(r):
        offsets, ok = locate_bytes(r, sizes, features)
        ok = tf.fill([tf.shape(r)[0], 1], tf.cast(ok, tf.int64))
        return tf.concat([tf.stack([offsets[k] for k in sizes], 1), ok], 1)

    if in_tf_data:
        eager, graph = eager_and_in_tf_data(fn, tf.constant(records))
        np.testing.assert_array_equal(eager, graph)
    else:
        eager = fn(tf.constant(records)).numpy()
    return {k: eager[:, i] for i, k in enumerate(sizes)}, bool(eager[0, -1])


@pytest.mark.parametrize("name, split", [("sen12ms", "train"), ("dfc2020", "validation")])
def test_every_raster_is_found_where_the_record_holds_it(built, name, split):
    records = _records(built[name], split)
    values = [_bytes_features(r) for r in records]
    sizes = {k: len(v) for k, v in values[0].items() if k != "id"}
    assert {"s1", "s2"} <= set(sizes)
    features = len(tf.train.Example.FromString(records[0]).features.feature)
    offsets, ok = _locate(records, sizes, features)
    assert ok
    for i, (record, value) in enumerate(zip(records, values, strict=True)):
        for k in sizes:
            assert offsets[k][i] == record.find(value[k])  # random rasters: found once, where they are
            assert record[offsets[k][i]:offsets[k][i] + sizes[k]] == value[k]


def test_varints_of_every_length_and_features_in_any_order():
    rng = np.random.default_rng(0)
    records, values = [], []
    for size in (1, 127, 128, 300, 20_000, 2_100_000):  # 1, 2, 3 and 4-byte lengths
        value = rng.integers(0, 256, size, np.uint8).tobytes()
        example = tf.train.Example()
        example.features.feature["x"].bytes_list.value.append(value)
        example.features.feature["id"].bytes_list.value.append(b"sample")
        example.features.feature["x_max"].int64_list.value.extend([2**40, 3])
        records.append(example.SerializeToString())
        values.append(value)
        offsets, ok = _locate(records[-1:], {"x": size}, 3)
        assert ok and records[-1][offsets["x"][0]:].startswith(value)
    # Keys in another order (as Beam's workers write them): each record is walked on its own.
    example = tf.train.Example.FromString(records[3])
    layouts = [records[3], _serialize(example), _serialize(example, reverse=True)]
    assert all(tf.train.Example.FromString(r) == example for r in layouts) and layouts[1] != layouts[2]
    offsets, ok = _locate(layouts, {"x": 300}, 3)
    assert ok and [r[o:o + 300] for r, o in zip(layouts, offsets["x"], strict=True)] == [values[3]] * 3


def test_records_laid_out_otherwise_are_reported_not_misread(built):
    record = _records(built["sen12ms"], "train", 1)[0]
    example = tf.train.Example.FromString(record)
    sizes = {k: len(v) for k, v in _bytes_features(record).items() if k != "id"}
    features = len(example.features.feature)
    assert _locate([record], sizes, features)[1]
    value_first = _serialize(example, value_first=("s2",))
    overlong = _serialize(example, overlong=("s2",))
    two_values = _serialize(example, extra_values=("s1",))
    without_lc = tf.train.Example.FromString(record)
    del without_lc.features.feature["lc"]
    twice = _serialize(example, twice=("s2",))
    # the record as written, then s2 again in another layout (protobuf keeps the last one)
    entries = record[1 + len(_varint(len(record) - 1 - len(_varint(len(record))))):]
    assert _field(1, entries) == record
    s2 = example.features.feature["s2"].SerializeToString()
    twice_otherwise = _field(1, entries + _field(1, _field(1, b"s2") + _field(2, s2, overlong=True)))
    for odd in (value_first, overlong, twice, twice_otherwise):
        assert tf.train.Example.FromString(odd) == example  # the same example, otherwise laid out
        assert not _locate([odd], sizes, features, in_tf_data=False)[1]
        # one odd record makes the batch's answer
        assert not _locate([record, odd], sizes, features, in_tf_data=False)[1]
    assert not _locate([two_values], sizes, features, in_tf_data=False)[1]
    assert not _locate([without_lc.SerializeToString()], sizes, features, in_tf_data=False)[1]  # a raster missing
    for odd in (twice, twice_otherwise):  # a raster twice, even when both are walked
        assert not _locate([odd], sizes, features + 1, in_tf_data=False)[1]
    assert not _locate([record], dict(sizes, s2=sizes["s2"] - 2), features, in_tf_data=False)[1]  # another size
    assert not _locate([record], sizes, 2, in_tf_data=False)[1]  # fewer entries walked than the rasters need
    assert not _locate([record[:-5], b"", b"\x0a"], sizes, features, in_tf_data=False)[1]  # cut short, empty, garbage


def test_the_parser_cuts_sen12ms_and_dfc2020_crops_from_the_records(built):
    assert_cut_from_records(built["sen12ms"], "train", label="single", label_source="lc")
    assert_cut_from_records(built["sen12ms"], "train", modalities=("s2",))
    assert_cut_from_records(built["dfc2020"], "validation", label="segmentation", normalization="per_patch_max")


@pytest.mark.parametrize("training", [True, False])
def test_the_parser_reads_records_laid_out_otherwise_the_same(built, training):
    """The fallback: a batch holding one record laid out otherwise is parsed by parse_example, to the same
    crops, labels and ids as the records the walk finds."""
    source = as_source(built["dfc2020"])
    settings = read_settings(modalities=("s1", "s2"), bands=None, normalization="fixed", crop_size=24,
                             training=training, eval_crop="tiles", label="segmentation", label_fraction=1.0,
                             with_ids=True, batch_size=4, drop_remainder=False, seed=3)
    parse = source.reader("validation", settings).parse
    records = _records(built["dfc2020"], "validation", 4)
    odd = [_serialize(tf.train.Example.FromString(records[0]), value_first=("s1", "dfc"))] + records[1:]
    epoch, batch = tf.constant(2, tf.int64), tf.constant(1, tf.int64)
    expected, got = parse(epoch, batch, tf.constant(records)), parse(epoch, batch, tf.constant(odd))
    reference = tf.io.parse_example(tf.constant(records), {"s2": tf.io.FixedLenFeature([], tf.string)})
    assert set(got) == {"s1", "s2", "label", "id"}
    for k in got:
        np.testing.assert_array_equal(got[k].numpy(), expected[k].numpy())
    # and the odd record's crop is a window of the raster parse_example returns
    s2 = np.minimum(np.frombuffer(reference["s2"].numpy()[0], np.uint16).reshape(32, 32, 13), 10000) / 10000
    crop = got["s2"].numpy()[0]
    assert any(np.allclose(crop, s2[t:t + 24, left:left + 24]) for t in range(9) for left in range(9))
