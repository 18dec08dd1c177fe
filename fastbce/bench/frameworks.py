"""More contenders: scikit-learn, JAX/optax and TensorFlow/Keras (optional libraries, imported on
use), split from :mod:`.contenders` for size; :data:`.contenders.CONTENDERS` lists them all."""

from .contenders import EPS, Contender, Unsupported
from .operations import CALIBRATION_BINS, FOCAL_ALPHA, FOCAL_GAMMA, N_GROUPS


class Sklearn(Contender):
    name = "sklearn"
    threaded = False
    modules = ("sklearn.metrics",)
    distributions = ("scikit-learn",)
    calls = {"mean": "sklearn.metrics.log_loss(y, p)",
             "roc_auc": "sklearn.metrics.roc_auc_score(y, p)",
             "average_precision": "sklearn.metrics.average_precision_score(y, p)",
             "brier": "sklearn.metrics.brier_score_loss(y, p)",
             "calibration": f"sklearn.calibration.calibration_curve(y, p, n_bins={CALIBRATION_BINS})"}
    # One call of the ranking metrics takes ~0.45 µs per element here: above this size the
    # repeats would take minutes, so those rows are skipped with this reason.
    RANKING_MAX_SIZE = 2 * 10**7
    unsupported = {
        "mean_soft": "log_loss rejects soft labels",
        "mean_logits": "log_loss takes probabilities only",
        "weighted": "log_loss has no pos_weight",
        "per_label": "log_loss has no per-column reduction",
        "per_sample": "log_loss has no per-row reduction",
        "per_group": "log_loss has no groups",
        "grad": "scikit-learn has no BCE gradient in its public API",
        "value_and_grad": "scikit-learn has no BCE gradient in its public API",
        "focal": "scikit-learn has no focal loss",
    }

    def op_mean(self, d, threads):
        from sklearn.metrics import log_loss

        return lambda: log_loss(d["y"], d["p"])

    def _ranking(self, d, function):
        if d["p"].size > self.RANKING_MAX_SIZE:
            raise Unsupported(f"not timed above {self.RANKING_MAX_SIZE:.0e} elements (one call "
                              "takes over 9 s)")
        return lambda: function(d["y"], d["p"])

    def op_roc_auc(self, d, threads):
        from sklearn.metrics import roc_auc_score

        return self._ranking(d, roc_auc_score)

    def op_average_precision(self, d, threads):
        from sklearn.metrics import average_precision_score

        return self._ranking(d, average_precision_score)

    def op_brier(self, d, threads):
        from sklearn.metrics import brier_score_loss

        return lambda: brier_score_loss(d["y"], d["p"])

    def op_calibration(self, d, threads):
        from sklearn.calibration import calibration_curve

        return lambda: calibration_curve(d["y"], d["p"], n_bins=CALIBRATION_BINS)


class Jax(Contender):
    name = "jax"
    modules = ("jax", "optax")
    distributions = ("jax", "jaxlib", "optax")
    calls = {
        "mean": "jit: clipped formula, jnp.mean", "mean_soft": "same as mean",
        "mean_logits": "jit: optax.losses.sigmoid_binary_cross_entropy(x, y).mean()",
        "weighted": "jit: Σ w·(pw·y·softplus(-x) + (1-y)·softplus(x)) / Σ w (optax has no pos_weight)",
        "per_label": "jit: clipped formula, mean(axis=0)",
        "per_sample": "jit: clipped formula, mean(axis=1)",
        "per_group": "jit: segment_sum(losses, g) / segment_sum(1, g)",
        "grad": "jit(grad(mean of optax sigmoid_binary_cross_entropy))",
        "value_and_grad": "jit(value_and_grad(...))",
        "focal": f"jit: optax.losses.sigmoid_focal_loss(x, y, alpha={FOCAL_ALPHA:g}, gamma={FOCAL_GAMMA:g}).mean()",
    }

    @staticmethod
    def _prob_losses(y, p):
        import jax.numpy as jnp

        q = jnp.clip(p, EPS, 1 - EPS)
        return -(y * jnp.log(q) + (1 - y) * jnp.log1p(-q))

    @staticmethod
    def _logit_mean(x, y):
        import optax

        return optax.losses.sigmoid_binary_cross_entropy(x, y).mean()

    def _compile(self, function, d, *keys):
        import jax

        args = [jax.device_put(d[key]) for key in keys]  # copies into JAX's own buffers
        jitted = jax.jit(function)
        return lambda: jax.block_until_ready(jitted(*args))

    def op_mean(self, d, threads):
        return self._compile(lambda y, p: self._prob_losses(y, p).mean(), d, "y", "p")

    def op_mean_soft(self, d, threads):
        return self._compile(lambda y, p: self._prob_losses(y, p).mean(), d, "ys", "p")

    def op_mean_logits(self, d, threads):
        return self._compile(lambda y, x: self._logit_mean(x, y), d, "y", "x")

    def op_weighted(self, d, threads):
        import jax

        def weighted(y, x, w, pw):
            loss = pw * y * jax.nn.softplus(-x) + (1 - y) * jax.nn.softplus(x)
            return (w * loss).sum() / w.sum()
        return self._compile(weighted, d, "y2", "x2", "w2", "pw")

    def op_per_label(self, d, threads):
        return self._compile(lambda y, p: self._prob_losses(y, p).mean(axis=0), d, "y2", "p2")

    def op_per_sample(self, d, threads):
        return self._compile(lambda y, p: self._prob_losses(y, p).mean(axis=1), d, "y2", "p2")

    def op_per_group(self, d, threads):
        import jax
        import jax.numpy as jnp

        def per_group(y, p, g):
            sums = jax.ops.segment_sum(self._prob_losses(y, p), g, num_segments=N_GROUPS)
            counts = jax.ops.segment_sum(jnp.ones_like(p), g, num_segments=N_GROUPS)
            return sums / counts
        return self._compile(per_group, d, "y", "p", "g")

    def op_grad(self, d, threads):
        import jax

        return self._compile(jax.grad(self._logit_mean), d, "x", "y")

    def op_value_and_grad(self, d, threads):
        import jax

        return self._compile(jax.value_and_grad(self._logit_mean), d, "x", "y")

    def op_focal(self, d, threads):
        import optax

        return self._compile(lambda y, x: optax.losses.sigmoid_focal_loss(
            x, y, alpha=FOCAL_ALPHA, gamma=FOCAL_GAMMA).mean(), d, "y", "x")


class TensorFlow(Contender):
    name = "tensorflow"
    modules = ("tensorflow", "keras")
    distributions = ("tensorflow-cpu", "tensorflow", "keras")
    calls = {
        "mean": "tf.function: keras.losses.BinaryCrossentropy()(y, p)", "mean_soft": "same as mean",
        "mean_logits": "tf.function: BinaryCrossentropy(from_logits=True)(y, x)",
        "weighted": "tf.function: Σ w·tf.nn.weighted_cross_entropy_with_logits(y, x, pw) / Σ w "
                    "(Keras has no pos_weight)",
        "per_label": "tf.function: keras.losses.binary_crossentropy(y, p, axis=0)",
        "per_sample": "tf.function: keras.losses.binary_crossentropy(y, p)",
        "per_group": "tf.function: unsorted_segment_mean(binary_crossentropy(y[:, None], p[:, None]), g) "
                     "(0, not NaN, for an empty group)",
        "grad": "tf.function: GradientTape over BinaryCrossentropy(from_logits=True)",
        "value_and_grad": "the same, keeping the loss",
        "focal": f"tf.function: keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, "
                 f"alpha={FOCAL_ALPHA:g}, gamma={FOCAL_GAMMA:g}, from_logits=True)(y, x)",
    }

    def _compile(self, function, d, *keys):
        import tensorflow as tf

        args = [tf.constant(d[key]) for key in keys]  # copies into TensorFlow's own buffers
        traced = tf.function(function)
        return lambda: traced(*args)  # eager CPU execution: the result is ready on return

    def op_mean(self, d, threads):
        import keras

        loss = keras.losses.BinaryCrossentropy()
        return self._compile(lambda y, p: loss(y, p), d, "y", "p")

    def op_mean_soft(self, d, threads):
        import keras

        loss = keras.losses.BinaryCrossentropy()
        return self._compile(lambda y, p: loss(y, p), d, "ys", "p")

    def op_mean_logits(self, d, threads):
        import keras

        loss = keras.losses.BinaryCrossentropy(from_logits=True)
        return self._compile(lambda y, x: loss(y, x), d, "y", "x")

    def op_weighted(self, d, threads):
        import tensorflow as tf

        def weighted(y, x, w, pw):
            loss = tf.nn.weighted_cross_entropy_with_logits(labels=y, logits=x, pos_weight=pw)
            return tf.reduce_sum(w * loss) / tf.reduce_sum(w)
        return self._compile(weighted, d, "y2", "x2", "w2", "pw")

    def op_per_label(self, d, threads):
        import keras

        return self._compile(lambda y, p: keras.losses.binary_crossentropy(y, p, axis=0), d, "y2", "p2")

    def op_per_sample(self, d, threads):
        import keras

        return self._compile(lambda y, p: keras.losses.binary_crossentropy(y, p), d, "y2", "p2")

    def op_per_group(self, d, threads):
        import keras
        import tensorflow as tf

        def per_group(y, p, g):
            losses = keras.losses.binary_crossentropy(y[:, None], p[:, None])
            return tf.math.unsorted_segment_mean(losses, g, N_GROUPS)
        return self._compile(per_group, d, "y", "p", "g")

    def _grad(self, d, keep_loss):
        import keras
        import tensorflow as tf

        bce = keras.losses.BinaryCrossentropy(from_logits=True)

        def grad(y, x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = bce(y, x)
            gradient = tape.gradient(loss, x)
            return (loss, gradient) if keep_loss else gradient
        return self._compile(grad, d, "y", "x")

    def op_grad(self, d, threads):
        return self._grad(d, False)

    def op_value_and_grad(self, d, threads):
        return self._grad(d, True)

    def op_focal(self, d, threads):
        import keras

        loss = keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=FOCAL_ALPHA,
                                                    gamma=FOCAL_GAMMA, from_logits=True)
        return self._compile(lambda y, x: loss(y, x), d, "y", "x")
