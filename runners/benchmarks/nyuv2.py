"""`nyuv2`: NYUv2 in the 13-class, 288x384 protocol of mtan, CAGrad, Nash-MTL and LibMTL.

The data are mtan's preprocessed files (`runners.benchmarks.npy_layout`):
``<root>/{train,val}/{image,label,depth,normal}/<i>.npy``, 795 train and 654
test images; `<root>` is `$MTLB_NYUV2_ROOT`, else `<data root>/nyuv2`.  The
images are fed as stored, in [0, 1] (no mean subtraction, as those repositories).

Protocol v1, with the source of each value:

- 288 x 384 input, 795 / 654 images, 13 classes: mtan's preprocessing (Liu et
  al., CVPR 2019), used unchanged by the others.
- Adam, lr 1e-4, StepLR(step 100, gamma 0.5), 200 epochs: mtan's
  `model_segnet_*.py`, CAGrad's and Nash-MTL's `trainer.py`, LibMTL's README
  ("we recommend step"); here the baseline's optimiser and scheduler, and
  the limits of a spec's.
- Batch 2 with SegNet (mtan, CAGrad, Nash-MTL), 8 with the dilated ResNet-50
  (LibMTL's `--train_bs` default), which starts from ImageNet weights
  (LibMTL's `resnet_dilated('resnet50')`, pretrained); SegNet from scratch.
- Augmentation on: random scale-crop (1.0, 1.2, 1.5) and horizontal flip,
  as CAGrad's `run.sh` (`--apply_augmentation`), Nash-MTL
  (`--apply-augmentation` default True) and LibMTL's `--aug`; the single-task
  baseline of docs/design.md (mIoU 0.3830, ...) is the CAGrad/Nash-MTL one,
  trained with it.  mtan's paper trained without: that would be another
  protocol version.
- 3 seeds; one GPU and 4 CPUs per job (200 epochs of SegNet at 288x384 are
  out of reach of a CPU).
"""

from __future__ import annotations

from runners.benchmarks.base import BENCHMARKS, Protocol, Resources
from runners.benchmarks.npy_layout import MTAN_ADAM, MTAN_STEP, NpyBenchmark
from runners.tasks import Depth, Normal, Segmentation

ROOT_ENV = "MTLB_NYUV2_ROOT"
NUM_CLASSES = 13

TASKS = (Segmentation("segmentation", num_classes=NUM_CLASSES), Depth("depth"), Normal("normal"))
FOLDERS = {"image": "image", "segmentation": "label", "depth": "depth", "normal": "normal"}

PROTOCOL_V1 = Protocol(
    version=1,
    image_size=288,
    image_shape=(288, 384),
    train_size=795,
    test_size=654,
    epochs=200,
    batch_size=2,
    batch_sizes={"segnet": 2, "resnet50-dilated": 8},
    seeds=(0, 1, 2),
    backbones=("segnet", "resnet50-dilated"),
    max_lr=0.1,
    # Every architecture at its defaults fits: single-task SegNet 75M, MTAN on ResNet-50 99M
    # (the largest); hard sharing 25M (SegNet) and 24M (ResNet-50).
    max_parameters=120_000_000,
    # Every architecture at its defaults fits here too: MTAN on ResNet-50 needs 521 GFLOP
    # per 288x384 image (the largest), single-task SegNet 345, hard sharing 120 and 88.
    max_flops=600_000_000_000,
    baseline_optimizer=MTAN_ADAM,
    baseline_scheduler=MTAN_STEP,
    resources=Resources(cpus=4, gpus=1),
    pretrained_backbones=("resnet50-dilated",),
    augmentation=True,
    description=(
        "mtan's preprocessed NYUv2: 288x384, 795 train / 654 test images, 13 classes, depth,"
        " normals; Adam lr 1e-4, StepLR(100, 0.5), 200 epochs, batch 2 (SegNet) or 8"
        " (ResNet-50, ImageNet weights), scale-crop and flip augmentation, 3 seeds."
    ),
)

NYUV2 = BENCHMARKS.register("nyuv2")(
    NpyBenchmark(
        "nyuv2",
        "NYUv2 (Silberman et al. 2012) indoor scenes in mtan's 13-class protocol:"
        " semantic segmentation, depth and surface normals at 288x384.",
        TASKS,
        FOLDERS,
        ROOT_ENV,
        {1: PROTOCOL_V1},
    )
)
