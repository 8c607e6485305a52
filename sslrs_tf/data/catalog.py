"""Sentinel-2 benchmarks from the TFDS catalog: EuroSAT (``eurosat/all``) and BigEarthNet (``bigearthnet/all``).

Both hold Sentinel-2 only, so they feed an S2 encoder (``model.inputs: only_s2``).
Their bands are matched to the encoder's by *name*, never by position:

* EuroSAT stores 13 bands in the order of its GeoTIFFs, B8A last
  (``B01 … B12, B8A``), while SEN12MS puts B8A after B08. Taking channels by
  position would feed B09 where the encoder expects B8A.
* BigEarthNet stores each band as its own feature at its own resolution
  (10 m: 120 x 120, 20 m: 60 x 60, 60 m: 20 x 20) and has no B10 (the cirrus band
  is removed from Level-2A products). The 20 m and 60 m bands are upsampled to
  the 10 m grid with bilinear interpolation (pixel-area aligned, as
  ``tf.image.resize`` does it) before they are stacked.

A band the encoder expects but the dataset lacks (B10 on BigEarthNet) is refused by
default, naming the band (``data.missing_bands: error``); pick an encoder trained
without it (e.g. ``data.s2_bands: s2_10``). With ``data.missing_bands: zeros`` the
band is fed as a channel of zeros *after* normalisation: the band's dataset mean
under z-score, its lowest value under the max and fixed scalings.

Normalisation: ``per_sample_max`` divides by the maxima of the crop (the papers'
preprocessing), ``per_patch_max`` by those of the whole stored image the crop is cut
from (computed here: these datasets store no maxima). ``class_balance`` is refused:
BigEarthNet's labels are multi-label, and EuroSAT's classes are about even already.

Labels: EuroSAT's 10 classes; BigEarthNet's 43 CORINE labels as TFDS stores them
(``data.label_scheme: bigearthnet43``, the default) or the official 19-class nomenclature
(``bigearthnet19``, Sumbul et al. 2021, :data:`BIGEARTHNET19`): each of the 19 classes is
one or more of the 43, and 11 of the 43 have none (an image labelled only with those has
no class there).

Splits: both datasets come as one ``train`` split; configs carve validation and
test parts with TFDS slicing (``train[:60%]``, ``train[60%:80%]``, ``train[80%:]``).
A label fraction keeps the first share of the split: TFDS shuffles examples when it
writes them, so that share is a random draw that is the same every run and nested
across fractions.

Getting the data (once, with internet access)::

    tfds build eurosat/all --data_dir data/tfds          # 2 GB download, ~3 GB built
    tfds build bigearthnet/all --data_dir data/tfds      # 66 GB download; needs apache-beam
"""

import dataclasses

import tensorflow as tf
import tensorflow_datasets as tfds

from sslrs_tf.data.normalization import raw_channel_max
from sslrs_tf.data.sources import (  # noqa: F401
    Reader,
    Source,
    SplitError,
    check_stored_bands,
    checked_crop,
    fill_missing,
    kept_count,
    random_crop_offsets,
    subsets,
)
from sslrs_tf.errors import UserError

#: BigEarthNet's 19-class nomenclature: each class and the CORINE labels (of the 43) it is made of
BIGEARTHNET19 = {
    "Urban fabric": ("Continuous urban fabric", "Discontinuous urban fabric"),
    "Industrial or commercial units": ("Industrial or commercial units",),
    "Arable land": ("Non-irrigated arable land", "Permanently irrigated land", "Rice fields"),
    "Permanent crops": ("Vineyards", "Fruit trees and berry plantations", "Olive groves",
                        "Annual crops associated with permanent crops"),
    "Pastures": ("Pastures",),
    "Complex cultivation patterns": ("Complex cultivation patterns",),
    "Land principally occupied by agriculture, with significant areas of natural vegetation": (
        "Land principally occupied by agriculture, with significant areas of natural vegetation",),
    "Agro-forestry areas": ("Agro-forestry areas",),
    "Broad-leaved forest": ("Broad-leaved forest",),
    "Coniferous forest": ("Coniferous forest",),
    "Mixed forest": ("Mixed forest",),
    "Natural grassland and sparsely vegetated areas": ("Natural grassland", "Sparsely vegetated areas"),
    "Moors, heathland and sclerophyllous vegetation": ("Moors and heathland", "Sclerophyllous vegetation"),
    "Transitional woodland, shrub": ("Transitional woodland/shrub",),
    "Beaches, dunes, sands": ("Beaches, dunes, sands",),
    "Inland wetlands": ("Inland marshes", "Peatbogs"),
    "Coastal wetlands": ("Salt marshes", "Salines"),
    "Inland waters": ("Water courses", "Water bodies"),
    "Marine waters": ("Coastal lagoons", "Estuaries", "Sea and ocean"),
}


def scheme_matrix(names, scheme):
    """``[len(names), len(scheme)]`` 0/1: which class of `scheme` (``{class: (labels...)}``) each of the
    dataset's label `names` belongs to (a row of zeros: none). Labels are matched by name, ignoring case."""
    where = {label.lower(): j for j, labels in enumerate(scheme.values()) for label in labels}
    unknown = sorted({label.lower() for labels in scheme.values() for label in labels} - {n.lower() for n in names})
    if unknown:
        raise UserError(f"the dataset's labels lack {', '.join(unknown)}: its label names are not the expected ones")
    matrix = [[0.0] * len(scheme) for _ in names]
    for i, name in enumerate(names):
        if name.lower() in where:
            matrix[i][where[name.lower()]] = 1.0
    return matrix


@dataclasses.dataclass(frozen=True)
class CatalogDataset:
    """How one catalog dataset stores its Sentinel-2 bands and labels.

    Args:
        name: TFDS name with config (``"eurosat/all"``).
        label: the label kind its targets are (``"single"`` or ``"multi"``).
        label_feature: the feature holding the targets.
        bands: the S2 bands it has; for a stacked tensor, in its channel order.
        image_feature: the stacked ``[H, W, C]`` tensor, or None when each band is its own feature.
        size: side of an image in pixels (on the 10 m grid).
    """

    name: str
    label: str
    label_feature: str
    bands: tuple
    image_feature: str = None
    size: int = 64

    def raster(self, example, bands):
        """The raw values of `bands` (all present) of one example, ``[size, size, len(bands)]`` float32."""
        if self.image_feature:
            stack = example[self.image_feature]
            return tf.gather(stack, [self.bands.index(b) for b in bands], axis=-1)
        channels = []
        for b in bands:
            x = tf.cast(example[b], tf.float32)[..., None]
            if x.shape[0] != self.size:
                x = tf.image.resize(x, [self.size, self.size], method="bilinear")
            channels.append(x)
        return tf.concat(channels, axis=-1)

    def target(self, example, num_classes, matrix=None):
        """int32 class (single) or float32 multi-hot ``[num_classes]`` (multi) of one example; `matrix`
        (:func:`scheme_matrix`) maps the stored labels to another scheme's classes."""
        y = example[self.label_feature]
        if self.label == "single":
            return tf.cast(y, tf.int32)
        # A class listed twice counts once; an image without classes is all zeros.
        hot = tf.reduce_sum(tf.one_hot(y, num_classes), axis=0)
        if matrix is not None:
            hot = tf.linalg.matvec(tf.constant(matrix, tf.float32), hot, transpose_a=True)
        return tf.minimum(hot, 1.0)


CATALOG = {
    "eurosat": CatalogDataset(
        name="eurosat/all", label="single", label_feature="label", image_feature="sentinel2", size=64,
        bands=("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")),
    "bigearthnet": CatalogDataset(
        name="bigearthnet/all", label="multi", label_feature="labels", size=120,
        bands=("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")),
}
#: the label schemes of each catalog dataset besides its own
CATALOG_SCHEMES = {"bigearthnet": {"bigearthnet43": None, "bigearthnet19": BIGEARTHNET19}}


class CatalogSource(Source):
    """A catalog dataset in a TFDS data folder, read the way the pipeline needs it.

    Args:
        dataset: a key of :data:`CATALOG` (``"eurosat"``, ``"bigearthnet"``).
        data_dir: the TFDS data folder it was built in.

    Example:
    >>> source = CatalogSource("eurosat", "data/tfds")
    >>> source.num_examples("train[:60%]"), source.class_names[:2]
    (16200, ['AnnualCrop', 'Forest'])
    """

    def __init__(self, dataset, data_dir=None):
        if dataset not in CATALOG:
            raise UserError(f"unknown catalog dataset {dataset!r}; expected one of {', '.join(CATALOG)}")
        self.dataset, self.data_dir, self.spec = dataset, data_dir, CATALOG[dataset]
        self.builder = tfds.builder(self.spec.name, data_dir=data_dir)
        self.full_name = self.builder.info.full_name
        feature = self.builder.info.features[self.spec.label_feature]
        self.class_names = list((feature.feature if self.spec.label == "multi" else feature).names)
        self.schemes = {name: tuple(scheme or self.class_names)
                        for name, scheme in CATALOG_SCHEMES.get(dataset, {}).items()}

    def read(self, split):
        """The examples of `split` (TFDS split syntax, e.g. ``train[:60%]``), in their stored order."""
        try:
            return self.builder.as_dataset(split=split, shuffle_files=False)
        except (AssertionError, ValueError, KeyError, tf.errors.OpError) as err:
            if not self.builder.is_prepared():
                raise UserError(f"dataset {self.spec.name} is not in {self.data_dir}; download and build it once with "
                                f"`tfds build {self.spec.name} --data_dir {self.data_dir}`") from None
            raise SplitError(f"{self.full_name}: cannot read split {split!r} ({str(err).splitlines()[0]}); "
                             f"it has {sorted(self.builder.info.splits)}") from None

    def num_examples(self, split):
        """Number of examples of `split` (slices included)."""
        n = int(self.read(split).cardinality())
        if n < 0:
            raise UserError(f"{self.full_name}: the size of split {split!r} is unknown")
        return n

    def epoch_size(self, split, settings):
        refuse_class_balance(self, settings)
        return super().epoch_size(split, settings)

    def reader(self, split, settings):
        spec = self.spec
        refuse_class_balance(self, settings)
        if settings.modalities != ("s2",):
            raise UserError(f"{spec.name} holds Sentinel-2 only; it feeds an S2 encoder (model.inputs: only_s2). "
                            f"Received: modalities={list(settings.modalities)}")
        label = settings.label
        if label not in (None, spec.label):
            raise UserError(f"{spec.name} has {spec.label}-label targets; set data.label: {spec.label}. "
                            f"Received: label={label!r}")
        if settings.eval_crop != "center":
            raise UserError(f"{spec.name} is evaluated on centre crops. Received: eval_crop={settings.eval_crop!r}")
        wanted = list(settings.bands["s2"])
        check_stored_bands(spec.name, {"s2": spec.bands}, settings)
        present = [b for b in wanted if b in spec.bands]
        size, classes, normalization = spec.size, len(self.class_names), settings.normalization
        scheme = CATALOG_SCHEMES.get(self.dataset, {}).get(settings.label_scheme)
        self.label_names(settings.label_scheme)  # a clear error for a scheme it lacks
        matrix = scheme_matrix(self.class_names, scheme) if scheme else None
        crop = checked_crop(settings.crop_size, size)
        base = self.read(split)
        if subsets(settings):
            # TFDS shuffled the examples when writing: the first share is a fixed random draw, nested across fractions.
            base = base.take(kept_count(self.num_examples(split), settings.label_fraction, settings.label_count))
        base = base.map(lambda ex: {"s2": spec.raster(ex, present),
                                    **({"label": spec.target(ex, classes, matrix)} if label else {})},
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

        def parse(epoch, batch_index, batch):
            x = batch["s2"]
            # per_patch_max: the maxima of the whole image, taken before cropping.
            patch_max = raw_channel_max(x) if normalization.method == "per_patch_max" else None
            if crop < size:
                n = tf.shape(x)[0]
                if settings.training:
                    top, left = random_crop_offsets(settings.seed, epoch, batch_index, n, size, crop)
                else:
                    top = left = tf.fill([n], (size - crop) // 2)
                x = tf.gather(x, top[:, None] + tf.range(crop)[None, :], axis=1, batch_dims=1)
                x = tf.gather(x, left[:, None] + tf.range(crop)[None, :], axis=2, batch_dims=1)
            x = fill_missing(normalization(x, "s2", present, raw_max=patch_max), wanted, present)
            return ({"s2": x}, batch["label"]) if label else {"s2": x}

        return Reader(lambda epoch_seed: base, parse, lambda batches: batches)


def refuse_class_balance(source, settings):
    """Raises a UserError: catalog datasets are not class-balanced."""
    if settings.class_balance:
        raise UserError(f"{source.spec.name}: class_balance is supported for SEN12MS and DFC2020 only; turn it off")
