"""Train a small Keras model on scikit-learn's digits on another machine.

    bash scripts/setup.sh                 # once: builds yard and the Python binding
    .venv/bin/python examples/online_fit_keras.py

With no server configured this starts the embedded local one (state under
$YARD_HOME) and runs on this host's `local` machine type; set YARD_SERVER and
YARD_TOKEN to use a shared server, and machine_ids to choose machines.
"""
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits

from trainyard import online_fit


def main():
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target
    order = np.random.default_rng(0).permutation(len(x))  # a shuffled hold-out split
    x, y = x[order], y[order]
    x_train, y_train, x_test, y_test = x[:1500], y[:1500], x[1500:], y[1500:]

    model = tf.keras.Sequential([
        tf.keras.Input(shape=(64,)),
        tf.keras.layers.Dense(64, activation="relu"),
        tf.keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    job_id, trained, history = online_fit(
        model, x_train, y_train,
        machine_ids=["local"],             # None: pick interactively (or the server's default)
        batch_size=32, epochs=5,
        validation_data=(x_test, y_test),
        description="digits, keras example",
        directory_to_save_ckpt="runs/digits-keras/ckpt",   # one checkpoint per epoch, mirrored live
        directory_to_save_log="runs/digits-keras/logs",    # tensorboard --logdir runs/digits-keras/logs
    )
    if trained is None:
        print(f"job {job_id} ended without a model (see above)")
        return 1
    acc = np.mean(np.argmax(trained.predict(x_test, verbose=0), axis=1) == y_test)
    print(f"job {job_id}: held-out accuracy {acc:.3f}; loss by epoch {np.round(history.history['loss'], 4).tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
