"""The embedded mini datasets, written in the layouts of the real ones.

The mini workflow (config/mini.yaml) runs every model and benchmark end to end on CPU in
minutes; these datasets are its inputs:

- ``imagenet/``: ImageNet folders plus MMSelfSup list files (``meta/{train,val}.txt``,
  lines ``<wnid>/<file>.JPEG <label>``); 10 classes, 96x96 JPEG. Each image shows one large,
  centred, upright object whose class is the label, and up to two small distractors of other
  looks. Its objects' bodies are recoloured at random (their textures keep only light and
  shade), so that colour, which a randomly initialised network reads well, says little of the
  class: the shape, the parts above and below it and the texture pattern say it, and they are
  what a pretext task has to learn (the orientation of the parts for rotation prediction,
  their places for relative location).
- ``voc/VOCdevkit/VOC2007`` (trainval + test) and ``VOC2012`` (trainval, Segmentation
  train/val and an SBD-style ``trainaug.txt`` with ``SegmentationClassAug/``): the 20 VOC
  classes, 1-4 objects per image, Annotations XML, ``ImageSets/Main`` class lists
  (1 / -1 / 0 for "only difficult"), palette ``SegmentationClass`` PNGs (255 = border band and
  difficult objects).
- ``coco/``: ``train2017``/``val2017`` JPEGs named by 12-digit ids and
  ``annotations/instances_{train,val}2017.json`` with 8 real COCO categories, boxes
  ``[x, y, w, h]`` and polygon masks.
- ``cityscapes/``: ``leftImg8bit`` street scenes and ``gtFine`` ``labelIds`` PNGs.
- ``places205/``: Places205 as extracted, ``data/vision/torralba/deeplearning/images256/
  <letter>/<scene>/gsun_<md5>.jpg``, with list files ``meta/{train,val}.txt`` (also as
  ``trainvalsplit_places205/{train,val}_places205.csv``, the names Places205 ships), lines
  ``<letter>/<scene>/<file>.jpg <label>`` relative to ``images256``; 8 real scene classes
  (abbey, bedroom, coast, ...), each its own layout of sky, ground, buildings or furniture with
  objects of the class looks, 96x96 JPEG.
- ``inat18/``: iNaturalist 2018, ``train_val2018/<supercategory>/<category id>/<md5>.jpg`` and
  ``{train,val}2018.json`` (images, annotations, categories with their taxonomy); 10 real
  species of 4 supercategories, long-tailed train counts, 96x96 JPEG. The species of one
  supercategory share a look and differ only in colour and pattern: a fine-grained task.

Every object class has its own look: a shape (disk, star, heart, ...) filled with a texture cut
from a photo scikit-image ships (``skimage.data.chelsea``, ``brick``, ``grass``, ...), tinted for
the grey ones, with a part above it and one below (ears, mast, roof, ...; legs, wheels, pot,
...) in a colour of its own, drawn upright (+-25 degrees). Every instance varies it: size,
aspect, rotation, texture crop and zoom, colour jitter, shading, position. Backgrounds vary too (sky/ground horizons, smooth colour fields,
blurred photos). Boxes, masks and labels are computed from the painted pixels, so they agree.

Every random choice of one image comes from ``numpy.random.default_rng([seed, stream, index])``:
one image can be re-rendered on its own (``render_*_image``; the tests do), and the same seed
gives byte-identical files.

The generator is split by job:

- :mod:`.looks`: the classes of the mini ImageNet, VOC, COCO and Cityscapes and their looks
  (``Look``, ``LOOKS``), the body shapes and parts (``SHAPES``, ``PARTS``) and how they are drawn;
- :mod:`.painting`: the random streams, photo textures, backgrounds, object placement and
  painting, and the ``Scene`` and ``Instance`` records;
- :mod:`.scenes`: ``render_imagenet_image``, ``render_voc_image``, ``render_coco_image`` and
  ``render_cityscapes_image``;
- :mod:`.places205`: the Places205 scene painters, ``render_places205_image`` and its file names;
- :mod:`.inat18`: the iNat18 species, ``render_inat18_image`` and its file names;
- :mod:`.writers`: ``MiniSizes``, the dataset writers and ``make_mini_data``.

Every name other code reads is importable from ``sslzoo.data.mini``, the private
``_SHAPE_EXTENT``, ``_paint`` and ``_sample_shape`` that the tests read included.
"""

from __future__ import annotations

from sslzoo.data.constants import VOC_CLASSES
from sslzoo.data.mini.inat18 import (
    INAT18_BY_ID,
    INAT18_SIZE,
    INAT18_SPECIES,
    Species,
    inat18_file,
    render_inat18_image,
)
from sslzoo.data.mini.looks import _SHAPE_EXTENT as _SHAPE_EXTENT
from sslzoo.data.mini.looks import (
    BODY,
    BOTTOM,
    CITYSCAPES_CITIES,
    CITYSCAPES_LABEL_IDS,
    COCO_CATEGORIES,
    IMAGENET_CLASSES,
    IMAGENET_DISTRACTORS,
    LOOKS,
    PARTS,
    SHAPES,
    TOP,
    Look,
)
from sslzoo.data.mini.painting import Instance, Scene
from sslzoo.data.mini.painting import _paint as _paint
from sslzoo.data.mini.painting import _sample_shape as _sample_shape
from sslzoo.data.mini.places205 import (
    PLACES205_CLASSES,
    PLACES205_SCENES,
    PLACES205_SIZE,
    places205_file,
    render_places205_image,
)
from sslzoo.data.mini.scenes import (
    CITYSCAPES_SIZE,
    IMAGENET_SIZE,
    render_cityscapes_image,
    render_coco_image,
    render_imagenet_image,
    render_voc_image,
)
from sslzoo.data.mini.writers import (
    GENERATED,
    PLACES205_IMAGES,
    VOC_BORDER,
    MiniSizes,
    inat18_train_counts,
    make_mini_data,
    mask_polygons,
    voc_is_difficult,
    voc_palette,
)

__all__ = [
    "BODY",
    "BOTTOM",
    "CITYSCAPES_CITIES",
    "CITYSCAPES_LABEL_IDS",
    "CITYSCAPES_SIZE",
    "COCO_CATEGORIES",
    "GENERATED",
    "IMAGENET_CLASSES",
    "IMAGENET_DISTRACTORS",
    "IMAGENET_SIZE",
    "INAT18_BY_ID",
    "INAT18_SIZE",
    "INAT18_SPECIES",
    "LOOKS",
    "PARTS",
    "PLACES205_CLASSES",
    "PLACES205_IMAGES",
    "PLACES205_SCENES",
    "PLACES205_SIZE",
    "SHAPES",
    "TOP",
    "VOC_BORDER",
    "VOC_CLASSES",
    "Instance",
    "Look",
    "MiniSizes",
    "Scene",
    "Species",
    "inat18_file",
    "inat18_train_counts",
    "make_mini_data",
    "mask_polygons",
    "places205_file",
    "render_cityscapes_image",
    "render_coco_image",
    "render_imagenet_image",
    "render_inat18_image",
    "render_places205_image",
    "render_voc_image",
    "voc_is_difficult",
    "voc_palette",
]
