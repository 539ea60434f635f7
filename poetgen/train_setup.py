"""What a training run computes on and with: one machine's devices (a cluster is refused), the warm-up
and cosine learning rate, Adam with clipping, and a resumed run's optimizer retuned to its options.

It does not build the network (model.py), choose its loss's step (train_step.py) or run the fit (train.py).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import TYPE_CHECKING

from poetgen.errors import BadInput

if TYPE_CHECKING:
    from poetgen.train import TrainConfig

STRATEGIES = ("default", "mirrored")   # one machine only: MultiWorkerMirroredStrategy fails under Keras 3


def refuse_multiworker(environ=os.environ) -> None:
    """BadInput when TF_CONFIG describes a cluster of several machines: poetgen trains on one."""
    raw = environ.get("TF_CONFIG")
    if not raw:
        return
    try:
        cluster = json.loads(raw).get("cluster", {})
        machines = sum(len(cluster.get(role, ())) for role in ("chief", "worker"))
    except (ValueError, AttributeError, TypeError):
        raise BadInput("TF_CONFIG is not a JSON object with a cluster; unset it to train on this machine",
                       field="strategy") from None
    if machines > 1:
        raise BadInput(f"multi-worker training is not supported (TF_CONFIG names {machines} machines): "
                       f"MultiWorkerMirroredStrategy does not work with Keras 3; unset TF_CONFIG and train on "
                       f"one machine (--strategy mirrored uses all of its GPUs or CPUs)", field="strategy")


def setup_devices(strategy: str):
    """TensorFlow's distribution strategy; POETGEN_LOGICAL_CPUS=N splits the CPU for mirrored tests."""
    import tensorflow as tf

    logical = int(os.environ.get("POETGEN_LOGICAL_CPUS", "0") or 0)
    if logical > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        with contextlib.suppress(RuntimeError):   # already initialised: keep what is there
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * logical)
    if strategy == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.get_strategy()


def learning_rate_schedule(config: TrainConfig, total_steps: int):
    """Warm-up to config.learning_rate, then cosine decay to 5 % of it at `total_steps`."""
    import keras

    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, total_steps - config.warmup_steps), alpha=0.05,
        warmup_target=config.learning_rate, warmup_steps=config.warmup_steps)


def compile_model(model, config: TrainConfig, total_steps: int) -> None:
    import keras

    optimizer = keras.optimizers.Adam(learning_rate_schedule(config, total_steps), clipnorm=config.clipnorm or None)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def retune_optimizer(model, config: TrainConfig, total_steps: int) -> None:
    """A resumed model's optimizer, keeping its moments and step count, with the schedule and clipping of
    `config` for `total_steps`: a run resumed as it was goes on exactly as before, one given more
    --epochs stretches its schedule over them (instead of spending them at the floor), and an explicit
    --learning-rate, --warmup-steps or --clipnorm applies from the next step on."""
    model.optimizer.learning_rate = learning_rate_schedule(config, total_steps)
    model.optimizer.clipnorm = config.clipnorm or None
