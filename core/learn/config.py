"""The training options: one record of everything that decides a run's result, and the named
recipes built from it."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's result (saved in its files)."""

    dataset: str = "mnist"
    arch: str = "minivgg"  # a preset name or a blueprint .json file
    loss: str = "cross_entropy"  # or "mse", for a regression dataset (float targets)
    epochs: int = 5
    batch_size: int = 16  # small batches: many updates, so even a short run learns a lot
    optimizer: str = "adam"
    lr: float = 2e-3
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    weight_decay: float = 0.0
    augment: bool = False  # random shifts, rotations and scaling (digits and clothes alike)
    crop: int = 0  # random crops of the image zero-padded by this many pixels (0: none)
    flip: bool = False  # random horizontal flips (never for digits)
    erase: float = 0.0  # probability of random erasing (cutout) per image
    seed: int = 0
    val_size: int | None = None  # None: 5000, or a tenth of the training images if fewer
    limit: int | None = None  # train on this many images only (a stratified sample)
    clip_norm: float | None = None
    patience: int | None = None  # stop after this many epochs without a better val_acc
    data_dir: str | None = None
    init_from: str | None = None  # a model file whose matching layers start the run
    freeze: str | None = None  # layers (names or patterns, comma-separated) kept as copied
    adversarial: str | None = None  # "fgsm": train on FGSM pictures from a random start
    adv_eps: float = 0.1  # their L∞ budget, pixels in [0, 1]


FASHION_EPOCHS = 24

# Named training recipes: the main job, the shipped model and the Fashion-MNIST model.
RECIPES = {
    "default": TrainConfig(),
    "best": TrainConfig(
        arch="minivgg_bn_dropout",
        epochs=20,
        batch_size=64,
        optimizer="adam",
        lr=2e-3,
        schedule="cosine",
        warmup_epochs=1,
        augment=True,
    ),
    # Fashion-MNIST: a small residual network, SGD with Nesterov momentum, and the
    # augmentations of natural images (crops, flips). No erasing: with it this net
    # underfits in a 2-hour budget (train accuracy 94.5% after 16 epochs).
    "fashion": TrainConfig(
        dataset="fashion-mnist",
        arch="resnet",
        epochs=FASHION_EPOCHS,
        batch_size=128,
        optimizer="nesterov",
        lr=0.1,
        schedule="cosine",
        warmup_epochs=1,
        weight_decay=5e-4,
        crop=2,
        flip=True,
    ),
}
