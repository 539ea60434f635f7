"""A cheaper training step: sampled softmax over the output layer (full softmax stays for evaluation).

The output layer (inputs × vocabulary) is most of a step's cost; a sampled-softmax loss scores each
target against a few hundred sampled classes instead. The model itself is unchanged (the plain
functional model is what is saved and resumed); only its train_step is replaced on the instance.
"""

from __future__ import annotations

from poetgen.model import ModelConfig


def features_model(model, config: ModelConfig):
    """The same layers up to the output layer's input: ids (batch, time) → (batch, time, inputs)."""
    import keras

    if not config.tie_embeddings:
        top = model.get_layer("logits").input
    elif config.projection:
        top = model.get_layer("projection").output
    elif config.dropout:
        top = model.get_layer("output_dropout").output
    else:
        top = model.get_layer(f"rnn_{config.layers - 1}").output
    return keras.Model(model.inputs, top, name="poetgen_features")


class SampledSoftmaxStep:
    """model.train_step with tf.nn.sampled_softmax_loss: `sampled` classes drawn per step from a
    log-uniform (Zipf) distribution, which fits ids ordered by frequency as the tokenizer orders them."""

    def __init__(self, model, config: ModelConfig, sampled: int):
        self.model = model
        self.config = config
        self.sampled = min(sampled, config.vocab_size - 1)
        self.features = features_model(model, config)

    def output_weights(self):
        """(classes (vocab, inputs), biases (vocab,)) as tensors, tied or not."""
        import tensorflow as tf

        if self.config.tie_embeddings:
            table = self.model.get_layer("embedding").embeddings
            return table, tf.zeros([self.config.vocab_size], table.dtype)
        layer = self.model.get_layer("logits")
        return tf.transpose(layer.kernel), layer.bias

    def loss(self, x, y, training: bool = True):
        import tensorflow as tf

        h = tf.cast(self.features(x, training=training), tf.float32)
        weights, biases = self.output_weights()
        per_token = tf.nn.sampled_softmax_loss(
            tf.cast(weights, tf.float32), tf.cast(biases, tf.float32),
            tf.reshape(tf.cast(y, tf.int64), [-1, 1]), tf.reshape(h, [-1, h.shape[-1]]),
            self.sampled, self.config.vocab_size)
        return tf.reduce_mean(per_token)

    def __call__(self, data):
        import tensorflow as tf

        x, y = data[0], data[1]
        model = self.model
        variables = model.trainable_variables
        with tf.GradientTape() as tape:
            loss = self.loss(x, y)
        model.optimizer.apply(tape.gradient(loss, variables), variables)
        tracker = getattr(model, "_loss_tracker", None)   # Keras' running mean over the epoch
        if tracker is None:
            return {"loss": loss}
        tracker.update_state(loss)
        return {"loss": tracker.result()}


def use_sampled_softmax(model, config: ModelConfig, sampled: int) -> None:
    """Train `model` (compiled) with a sampled-softmax step from now on; 0 keeps the full softmax."""
    if sampled:
        model.train_step = SampledSoftmaxStep(model, config, sampled)
        model.train_function = None   # rebuilt from the new step on the next fit()
