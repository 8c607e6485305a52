"""The training callbacks: exact-resume checkpoints, the non-finite guard, input images in TensorBoard.

The resume of a whole run killed with -9 is tests/e2e/test_resume.py's; here a small dense model
whose every step is cheap shows each piece on its own.
"""

import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from sslrs_tf.data.bands import S2_BANDS
from sslrs_tf.errors import UserError
from sslrs_tf.training.callbacks import Checkpointer, InputImages, NonFiniteGuard
from tests.helpers import file_size_limit, tensorboard_logs

STEPS, EVERY = 3, 2  # batches per epoch, steps between checkpoints


def small_model(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(1, name="out")(keras.layers.Dense(8, activation="relu", name="hidden")(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.optimizer.build(model.trainable_variables)  # variables exist before a restore, as train() makes them
    return model


def batches(skip=0):
    """The epoch's STEPS batches of 4, in the same order every epoch; `skip`: those already done."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4 * STEPS, 4)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((x, x.sum(1, keepdims=True) ** 2)).batch(4).skip(skip)


def position_of(checkpoint):
    return [int(v) for v in tf.train.load_variable(checkpoint, "position/.ATTRIBUTES/VARIABLE_VALUE")]


class Saves(keras.callbacks.Callback):
    """Records, after the checkpointer's own hooks, which checkpoint is the latest and what position it holds."""

    def __init__(self, directory):
        super().__init__()
        self.directory, self.seen = str(directory), []
        self.last = self._latest()  # what was there before the run

    def _latest(self):
        latest = tf.train.latest_checkpoint(self.directory)
        return latest and (latest.rsplit("/", 1)[-1], position_of(latest))

    def _record(self, when):
        latest = self._latest()
        if latest and latest != self.last:
            self.seen.append((when, *latest))
            self.last = latest

    def on_train_batch_end(self, batch, logs=None):
        self._record(f"iteration {int(self.model.optimizer.iterations.numpy())}")

    def on_epoch_end(self, epoch, logs=None):
        self._record(f"end of epoch {epoch}")


class Killed(Exception):
    pass


class EndAt(keras.callbacks.Callback):
    """Ends the run after iteration `at` (the checkpointer, listed before, has saved): by an exception, as a
    kill does (no epoch end), or with `stop` by ``stop_training``, as the non-finite guard does."""

    def __init__(self, at, stop=False):
        super().__init__()
        self.at, self.stop = at, stop

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.at:
            if not self.stop:
                raise Killed
            self.model.stop_training = True


def state(model):
    return [v.numpy().copy() for v in model.variables] + [v.numpy().copy() for v in model.optimizer.variables]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Two epochs of STEPS batches with a checkpoint every EVERY steps: (directory, model, Saves)."""
    directory = tmp_path_factory.mktemp("uninterrupted") / "checkpoints"
    model, saves = small_model(0), Saves(directory)
    model.fit(batches(), epochs=2, verbose=0, shuffle=False, callbacks=[Checkpointer(directory, EVERY), saves])
    return directory, model, saves


def test_checkpoints_hold_the_position_of_the_next_batch_every_few_steps_and_at_epoch_ends(uninterrupted):
    directory, _, saves = uninterrupted
    # (epoch, batches of it done) after each save; a checkpoint is named by the optimizer's step.
    assert saves.seen == [("iteration 2", "ckpt-2", [0, 2]), ("end of epoch 0", "ckpt-3", [1, 0]),
                          ("iteration 4", "ckpt-4", [1, 1]), ("iteration 6", "ckpt-6", [1, 3]),
                          ("end of epoch 1", "ckpt-6", [2, 0])]
    # Two are kept: the latest and the one before.
    assert sorted(p.name for p in directory.glob("*.index")) == ["ckpt-4.index", "ckpt-6.index"]
    assert [c.rsplit("/", 1)[-1] for c in tf.train.get_checkpoint_state(str(directory)).all_model_checkpoint_paths] \
        == ["ckpt-4", "ckpt-6"]


def test_restore_into_a_fresh_model_gives_the_position_weights_and_optimizer_state(uninterrupted):
    directory, trained, _ = uninterrupted
    fresh = small_model(1)
    assert not np.array_equal(fresh.get_layer("hidden").kernel.numpy(), trained.get_layer("hidden").kernel.numpy())
    assert Checkpointer(directory, EVERY).restore(fresh) == (2, 0)
    assert int(fresh.optimizer.iterations.numpy()) == 2 * STEPS
    for got, want in zip(state(fresh), state(trained), strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_directory_without_checkpoint_restores_nothing(tmp_path):
    model = small_model(2)
    before = state(model)
    assert Checkpointer(tmp_path / "none", EVERY).restore(model) == (0, 0)
    assert all(np.array_equal(a, b) for a, b in zip(before, state(model), strict=True))


def test_a_run_stopped_mid_epoch_resumes_at_the_next_batch_and_ends_as_the_uninterrupted_one(uninterrupted, tmp_path):
    _, reference, _ = uninterrupted
    directory = tmp_path / "checkpoints"
    stopped = small_model(0)
    with pytest.raises(Killed):
        stopped.fit(batches(), epochs=2, verbose=0, shuffle=False,
                    callbacks=[Checkpointer(directory, EVERY), EndAt(4)])
    at_kill = state(stopped)

    resumed, checkpointer = small_model(3), Checkpointer(directory, EVERY)
    epoch, step = checkpointer.restore(resumed)
    assert (epoch, step) == (1, 1)
    assert all(np.array_equal(a, b) for a, b in zip(state(resumed), at_kill, strict=True))
    checkpointer.start_step = step
    saves = Saves(directory)
    resumed.fit(batches(skip=step), initial_epoch=epoch, epochs=2, verbose=0, shuffle=False,
                callbacks=[checkpointer, saves])
    # Positions count the batches done before the interruption; the next epoch starts at 0 again.
    assert [s[2] for s in saves.seen] == [[1, 3], [2, 0]]
    for got, want in zip(state(resumed), state(reference), strict=True):
        np.testing.assert_array_equal(got, want)  # the same batches in the same order: the same arithmetic


def test_a_run_stopped_by_a_callback_mid_epoch_is_checkpointed_where_it_stopped(tmp_path):
    # Keras still ends the epoch of a stopped run: its checkpoint must not claim the epoch was done.
    directory = tmp_path / "checkpoints"
    model = small_model(0)
    model.fit(batches(), epochs=2, verbose=0, shuffle=False,
              callbacks=[Checkpointer(directory, EVERY), EndAt(STEPS + 1, stop=True)])
    assert position_of(tf.train.latest_checkpoint(str(directory))) == [1, 1]  # epoch 1, one batch of it done
    assert Checkpointer(directory, EVERY).restore(small_model(1)) == (1, 1)


def test_a_checkpoint_cut_short_by_a_kill_is_ignored_for_the_last_complete_one(uninterrupted, tmp_path):
    # TF writes a checkpoint's files, then its index entry: a kill in between leaves files that the
    # index does not name (here: complete files of an older state under a newer number, and a
    # half-written temporary folder). The restore takes the index's latest.
    directory = shutil.copytree(uninterrupted[0], tmp_path / "checkpoints")
    for f in directory.glob("ckpt-4.*"):
        shutil.copy(f, directory / f.name.replace("ckpt-4", "ckpt-8"))
    (directory / "ckpt-9_temp").mkdir()
    (directory / "ckpt-9_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\0" * 10)
    fresh = small_model(4)
    assert Checkpointer(directory, EVERY).restore(fresh) == (2, 0)
    for got, want in zip(state(fresh), state(uninterrupted[1]), strict=True):
        np.testing.assert_array_equal(got, want)


def as_saved(checkpoint, seed):
    """A fresh small model with `checkpoint` restored by TF directly (not through the Checkpointer)."""
    model, position = small_model(seed), tf.Variable([0, 0], dtype=tf.int64)
    tf.train.Checkpoint(model=model, optimizer=model.optimizer, position=position).restore(str(checkpoint))
    return model


@pytest.mark.parametrize("damage", ["truncated", "bit_flipped", "deleted"])
def test_a_listed_checkpoint_that_cannot_be_read_is_passed_over_for_the_one_before(uninterrupted, tmp_path, damage):
    directory = shutil.copytree(uninterrupted[0], tmp_path / "checkpoints")
    data = directory / "ckpt-6.data-00000-of-00001"
    content = bytearray(data.read_bytes())
    if damage == "truncated":
        data.write_bytes(content[: len(content) // 2])
    elif damage == "bit_flipped":
        content[len(content) // 2] ^= 0xFF
        data.write_bytes(content)
    else:
        data.unlink()
    fresh, checkpointer = small_model(4), Checkpointer(directory, EVERY)
    assert checkpointer.restore(fresh) == (1, 1)  # ckpt-4's position: epoch 1, one batch of it done
    assert checkpointer.restored_from == str(directory / "ckpt-4")
    ((path, reason),) = checkpointer.passed_over
    assert path == str(directory / "ckpt-6") and reason and "\n" not in reason and "{{" not in reason
    for got, want in zip(state(fresh), state(as_saved(directory / "ckpt-4", 5)), strict=True):
        np.testing.assert_array_equal(got, want)


def test_when_no_listed_checkpoint_can_be_read_the_restore_names_each_and_stops(uninterrupted, tmp_path):
    directory = shutil.copytree(uninterrupted[0], tmp_path / "checkpoints")
    for f in directory.glob("*.data-*"):
        f.write_bytes(f.read_bytes()[:16])
    with pytest.raises(UserError) as err:
        Checkpointer(directory, EVERY).restore(small_model(4))
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"no checkpoint in {directory} can be read (ckpt-6: ")
    assert "; ckpt-4: " in text and text.endswith("move that folder away to train the run from its start")


def test_a_checkpoint_of_another_model_is_refused_in_one_line(uninterrupted, tmp_path):
    # A run checkpointed without an encoder optimizer, restored into a model that has one.
    model = small_model(4)
    model.encoder_optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    model.encoder_optimizer.build(model.get_layer("hidden").trainable_variables)
    with pytest.raises(UserError) as err:
        Checkpointer(uninterrupted[0], EVERY).restore(model)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(f"checkpoint {uninterrupted[0] / 'ckpt-6'} does not fit this run's model (")


def test_a_checkpoint_that_cannot_be_written_stops_the_run_and_leaves_the_previous_one(tmp_path):
    # A file size limit (what `ulimit -f` sets) fails the write of checkpoint 4 as a full disk would.
    directory = tmp_path / "checkpoints"
    model = small_model(0)
    model.fit(batches(), epochs=1, verbose=0, shuffle=False, callbacks=[Checkpointer(directory, EVERY)])
    size = (directory / "ckpt-3.data-00000-of-00001").stat().st_size
    with file_size_limit(size // 2), pytest.raises(UserError) as err:
        model.fit(batches(), initial_epoch=1, epochs=2, verbose=0, shuffle=False,
                  callbacks=[Checkpointer(directory, EVERY)])
    assert str(err.value) == (f"cannot write checkpoint 4 in {directory} (File too large); ckpt-3 is intact: "
                              "make room and run the same command to resume from it")
    assert tf.train.latest_checkpoint(str(directory)) == str(directory / "ckpt-3")
    assert Checkpointer(directory, EVERY).restore(small_model(1)) == (1, 0)


def test_a_worker_restores_from_the_runs_directory_and_saves_to_its_own(uninterrupted, tmp_path):
    chief, _, _ = uninterrupted
    own = tmp_path / "workers" / "worker_1" / "checkpoints"
    model, checkpointer = small_model(5), Checkpointer(chief, EVERY, save_directory=own)
    assert checkpointer.restore(model) == (2, 0)
    model.fit(batches(), initial_epoch=2, epochs=3, verbose=0, shuffle=False, callbacks=[checkpointer])
    assert sorted(p.name for p in chief.glob("*.index")) == ["ckpt-4.index", "ckpt-6.index"]  # left as it was
    assert sorted(p.name for p in own.glob("*.index")) == ["ckpt-8.index", "ckpt-9.index"]
    assert position_of(str(own / "ckpt-8")) == [2, 2] and position_of(str(own / "ckpt-9")) == [3, 0]


def test_an_encoder_optimizer_is_checkpointed_beside_the_models(tmp_path):
    def with_encoder_optimizer(seed):
        model = small_model(seed)
        model.encoder_optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
        model.encoder_optimizer.build(model.get_layer("hidden").trainable_variables)
        return model

    model = with_encoder_optimizer(5)
    hidden = model.get_layer("hidden").trainable_variables
    model.encoder_optimizer.apply([tf.ones_like(v) for v in hidden], hidden)  # momentum -0.1 everywhere
    model.fit(batches(), epochs=1, verbose=0, shuffle=False, callbacks=[Checkpointer(tmp_path, EVERY)])
    fresh = with_encoder_optimizer(6)
    assert Checkpointer(tmp_path, EVERY).restore(fresh) == (1, 0)
    momentum = [v for v in fresh.encoder_optimizer.variables if "momentum" in v.path]
    assert len(momentum) == 2 and all(np.array_equal(v.numpy(), np.full(v.shape, -0.1, np.float32)) for v in momentum)
    assert int(fresh.encoder_optimizer.iterations.numpy()) == 1
    for got, want in zip(state(fresh), state(model), strict=True):
        np.testing.assert_array_equal(got, want)


def guard_with_model(limit):
    guard = NonFiniteGuard(limit)
    guard.set_model(small_model(7))
    return guard


def feed(guard, epochs):
    """Runs the guard's epoch and batch hooks over `epochs`: per epoch, the running skipped_batches after each batch.
    Returns the (epoch, batch) at which the model was told to stop, or None."""
    for epoch, counts in enumerate(epochs):
        guard.on_epoch_begin(epoch)
        for batch, count in enumerate(counts):
            guard.on_train_batch_end(batch, {"loss": 1.0, "skipped_batches": count})
            if guard.model.stop_training:
                return epoch, batch
    return None


def test_the_guard_stops_at_the_limit_of_consecutive_skipped_batches():
    guard = guard_with_model(3)
    assert not guard.model.stop_training
    # skipped_batches is the epoch's running sum: +1, +1, +0 (a good batch resets the run), +1, +1, +1.
    assert feed(guard, [[1, 2, 2, 3, 4, 5, 5]]) == (0, 5)
    assert guard.stopped and guard.consecutive == 3 and guard.total == 5


def test_the_guard_lets_a_run_go_on_below_the_limit():
    guard = guard_with_model(3)
    assert feed(guard, [[0, 1, 2, 2, 3, 4, 4, 4]]) is None
    assert not guard.stopped and not guard.model.stop_training and guard.total == 4 and guard.consecutive == 0


def test_the_guard_counts_consecutive_skips_across_an_epoch_boundary_where_the_sum_restarts():
    guard = guard_with_model(3)
    # Epoch 0 ends with two skipped batches in a row; epoch 1's sum restarts at 1: the third in a row.
    assert feed(guard, [[0, 1, 2], [1, 1]]) == (1, 0)
    assert guard.total == 3


def test_the_guard_reads_a_two_replica_sum_of_halves_as_one_batch_and_missing_logs_as_none():
    guard = guard_with_model(2)
    # Each replica adds 1/2 in float32: the sums may fall a little short of whole numbers.
    assert feed(guard, [[np.float32(0.5) + np.float32(0.49999997), 1.9999999]]) == (0, 1)
    guard = guard_with_model(1)
    guard.on_epoch_begin(0)
    guard.on_train_batch_end(0, None)
    guard.on_train_batch_end(1, {"loss": 1.0})
    assert not guard.model.stop_training and guard.total == 0


def stretched(x):
    """The patches' joint 2-98 % percentile stretch to [0, 1], as uint8 the way TF encodes float images."""
    low, high = np.percentile(x, 2), np.percentile(x, 98)
    return np.floor(np.clip((x - low) / (high - low), 0, 1) * 255.5).astype(np.uint8)


def test_input_images_are_s2_rgb_and_s1_vv_of_the_first_patches(tmp_path):
    rng = np.random.default_rng(0)
    bands = list(reversed(S2_BANDS))  # a band order other than the usual: the images must follow the names
    batch = {"s1": rng.normal(size=(6, 8, 8, 2)).astype(np.float32),
             "s2": rng.normal(size=(6, 8, 8, len(bands))).astype(np.float32)}
    callback = InputImages(tmp_path, batch, bands, count=3)
    callback.on_train_begin()
    logs = tensorboard_logs(tmp_path / "inputs")
    assert sorted(logs) == ["s1_vv", "s2_rgb"]
    rgb = batch["s2"][:3][..., [bands.index("B04"), bands.index("B03"), bands.index("B02")]]
    for tag, want in (("s2_rgb", stretched(rgb)), ("s1_vv", stretched(batch["s1"][:3][..., :1]))):
        ((step, summary),) = logs[tag]
        assert step == 0
        width, height, *pngs = summary
        assert (int(width), int(height), len(pngs)) == (8, 8, 3)
        got = np.stack([tf.io.decode_png(p).numpy() for p in pngs])
        assert got.shape == want.shape
        np.testing.assert_allclose(got.astype(int), want.astype(int), atol=1)


def test_input_images_leave_out_what_the_batch_cannot_show(tmp_path):
    rng = np.random.default_rng(1)
    s2 = {"s2": rng.normal(size=(2, 4, 4, 3)).astype(np.float32)}
    s1 = {"s1": rng.normal(size=(2, 4, 4, 2)).astype(np.float32)}
    InputImages(tmp_path / "no_rgb", {**s2, **s1}, ["B08", "B11", "B12"]).on_train_begin()
    assert sorted(tensorboard_logs(tmp_path / "no_rgb")) == ["s1_vv"]
    InputImages(tmp_path / "no_s1", s2, ["B04", "B03", "B02"]).on_train_begin()
    logs = tensorboard_logs(tmp_path / "no_s1")
    assert sorted(logs) == ["s2_rgb"] and len(logs["s2_rgb"][0][1]) == 2 + 2  # both patches (fewer than count=4)


def test_sigterm_saves_at_the_next_batch_end_stops_the_run_and_gives_the_handler_back(tmp_path):
    import os
    import signal

    from sslrs_tf.errors import Preempted

    class Preempt(keras.callbacks.Callback):  # SIGTERM arrives during the first batch of epoch 2
        def on_train_batch_begin(self, batch, logs=None):
            if self.model.optimizer.iterations.numpy() == STEPS:
                os.kill(os.getpid(), signal.SIGTERM)

    model, before = small_model(7), signal.getsignal(signal.SIGTERM)
    checkpointer = Checkpointer(tmp_path, every=100)  # no regular checkpoint mid-epoch
    checkpointer.watch_preemption(None, lambda e, s: f"epoch {e + 1}, {s} batches done")
    try:
        with pytest.raises(Preempted) as stopped:
            model.fit(batches().repeat(), epochs=3, steps_per_epoch=STEPS, verbose=0,
                      callbacks=[Preempt(), checkpointer])
    finally:
        checkpointer.close()
    assert signal.getsignal(signal.SIGTERM) is before
    # The handler saves one batch after the one it noticed the signal at: step 5, mid-epoch 2.
    assert str(stopped.value) == (f"preempted (SIGTERM): checkpoint 5 saved in {tmp_path} at epoch 2, 2 batches "
                                  "done; run the same command to resume from there")
    assert position_of(tf.train.latest_checkpoint(str(tmp_path))) == [1, 2]
    assert int(model.optimizer.iterations.numpy()) == 5
    # Restored into a fresh model and trained on as train.py does, it ends where the uninterrupted run ends.
    resumed = small_model(8)
    assert Checkpointer(tmp_path, every=100).restore(resumed) == (1, 2)
    resumed.fit(batches(skip=2), initial_epoch=1, epochs=2, steps_per_epoch=STEPS - 2, verbose=0)
    resumed.fit(batches().repeat(), initial_epoch=2, epochs=3, steps_per_epoch=STEPS, verbose=0)
    uninterrupted = small_model(7)
    uninterrupted.fit(batches().repeat(), epochs=3, steps_per_epoch=STEPS, verbose=0)
    for got, want in zip(state(resumed), state(uninterrupted), strict=True):
        np.testing.assert_array_equal(got, want)
