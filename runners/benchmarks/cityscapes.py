"""`cityscapes`: Cityscapes in the 7-class, 128x256 protocol of mtan, CAGrad, Nash-MTL and LibMTL.

The data are mtan's preprocessed files (`runners.benchmarks.npy_layout`):
``<root>/{train,val}/{image,label_7,depth}/<i>.npy``, 2975 train and 500
test (Cityscapes' val) images: image 128 x 256 x 3 in [0, 1], `label_7`
128 x 256 with the 7 classes of mtan's mapping and -1 for void, depth
128 x 256 x 1 (0: unknown); `<root>` is `$MTLB_CITYSCAPES_ROOT`, else
`<data root>/cityscapes`.  (LibMTL's own copy names the label folder `label`;
rename it to `label_7`.)

Protocol v1, with the source of each value:

- 128 x 256, 2975 / 500 images, 7 classes, segmentation and depth: mtan's
  preprocessing and CAGrad's `cityscapes/create_dataset.py` (`label_7`).
- Adam, lr 1e-4, StepLR(step 100, gamma 0.5), 200 epochs: CAGrad's
  `cityscapes/model_segnet_*.py`, LibMTL's `examples/cityscapes`.
- Batch 8 with SegNet (CAGrad, Nash-MTL), 64 with the dilated ResNet-50
  (LibMTL's `--train_bs` default), which starts from ImageNet weights.
- Augmentation on: random scale-crop (1.0, 1.2, 1.5) with depth divided by
  the scale, and horizontal flip (CAGrad's `run.sh`: `--apply_augmentation`).
- 3 seeds; one GPU and 4 CPUs per job.
"""

from __future__ import annotations

from runners.benchmarks.base import BENCHMARKS, Protocol, Resources
from runners.benchmarks.npy_layout import MTAN_ADAM, MTAN_STEP, NpyBenchmark
from runners.tasks import Depth, Segmentation

ROOT_ENV = "MTLB_CITYSCAPES_ROOT"
NUM_CLASSES = 7

TASKS = (Segmentation("segmentation", num_classes=NUM_CLASSES), Depth("depth"))
FOLDERS = {"image": "image", "segmentation": "label_7", "depth": "depth"}

PROTOCOL_V1 = Protocol(
    version=1,
    image_size=128,
    image_shape=(128, 256),
    train_size=2975,
    test_size=500,
    epochs=200,
    batch_size=8,
    batch_sizes={"segnet": 8, "resnet50-dilated": 64},
    seeds=(0, 1, 2),
    backbones=("segnet", "resnet50-dilated"),
    max_lr=0.1,
    # Every architecture at its defaults fits (MTAN on ResNet-50 is the largest).
    max_parameters=120_000_000,
    # At the defaults the largest is MTAN on ResNet-50, 111 GFLOP per 128x256 image.
    max_flops=150_000_000_000,
    baseline_optimizer=MTAN_ADAM,
    baseline_scheduler=MTAN_STEP,
    resources=Resources(cpus=4, gpus=1),
    pretrained_backbones=("resnet50-dilated",),
    augmentation=True,
    description=(
        "mtan's preprocessed Cityscapes: 128x256, 2975 train / 500 test images, 7 classes and"
        " depth; Adam lr 1e-4, StepLR(100, 0.5), 200 epochs, batch 8 (SegNet) or 64"
        " (ResNet-50, ImageNet weights), scale-crop and flip augmentation, 3 seeds."
    ),
)

CITYSCAPES = BENCHMARKS.register("cityscapes")(
    NpyBenchmark(
        "cityscapes",
        "Cityscapes (Cordts et al. 2016) street scenes in mtan's protocol: 7-class"
        " semantic segmentation and depth at 128x256.",
        TASKS,
        FOLDERS,
        ROOT_ENV,
        {1: PROTOCOL_V1},
    )
)
