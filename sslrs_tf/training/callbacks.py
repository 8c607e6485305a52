"""Callbacks: exact-resume checkpoints (and one on SIGTERM), the non-finite guard, input images in TensorBoard."""

import os
import shutil
import signal
import tempfile

import keras
import numpy as np
import tensorflow as tf

from sslrs_tf.errors import Preempted, UserError, reason


class Checkpointer(keras.callbacks.Callback):
    """Saves model, optimizer and the position in the data every `every` steps and at epoch ends.

    Written here because ``keras.callbacks.BackupAndRestore`` restores only the
    epoch: a mid-epoch backup resumes at the start of that epoch with mid-epoch
    weights. This one records (epoch, step) so the pipeline can restart at the
    next batch (``make_dataset(start_epoch=, start_step=)``), and a resumed run
    ends with the weights of an uninterrupted one. ``tf.train.CheckpointManager``
    updates its index only after a checkpoint is complete, so a kill during a
    save falls back to the previous checkpoint.

    Args:
        directory: where checkpoints go, and where a resumed run finds them.
        every: steps between checkpoints.
        start_step: batches of the first epoch already done (when resuming mid-epoch).
        save_directory: where this process writes its checkpoints instead (a multi-worker
            run's non-chief workers: every worker must save, one writes `directory`).
    """

    def __init__(self, directory, every, start_step=0, save_directory=None):
        super().__init__()
        self.directory, self.every, self.start_step = str(directory), every, start_step
        self.save_directory = str(save_directory or directory)
        self.position = tf.Variable([0, 0], dtype=tf.int64, trainable=False, name="position")
        self._manager = None
        self._epoch = self._done = 0
        self._saved_at = None
        self._preemption = self._handler = None
        self.passed_over, self.restored_from = [], None

    def manager(self, model):
        """The checkpoint manager of `model` (its variables must exist)."""
        if self._manager is None:
            extra = {"encoder_optimizer": model.encoder_optimizer} if getattr(model, "encoder_optimizer", None) else {}
            checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, position=self.position, **extra)
            self._manager = tf.train.CheckpointManager(checkpoint, self.save_directory, max_to_keep=2)
        return self._manager

    def restore(self, model):
        """Restores the latest usable checkpoint; returns (epoch, step) to resume from, (0, 0) if none.

        The index (``checkpoint``) lists a checkpoint once its files are complete; one it lists that
        cannot be read (a file truncated or damaged later) is passed over for the one before it,
        and recorded in :attr:`passed_over` as ``(path, reason)``; :attr:`restored_from` is the
        checkpoint used.

        Raises:
            UserError: no listed checkpoint can be read, or one does not fit the model (another
                version of the code or of the method wrote it).
        """
        manager = self.manager(model)
        self.passed_over, self.restored_from = [], None
        state = tf.train.get_checkpoint_state(self.directory)
        if state is None:
            return 0, 0
        listed = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
        for path in reversed(listed):  # the index lists them oldest first
            try:
                manager.checkpoint.restore(path).assert_existing_objects_matched()
            except AssertionError as err:
                raise UserError(f"checkpoint {path} does not fit this run's model ({reason(err)}); another "
                                "version of the code wrote it: use a new run.dir") from None
            except (tf.errors.OpError, IndexError) as err:  # what TF raises for a truncated or damaged file
                self.passed_over.append((path, reason(err)))
                continue
            self.restored_from = path
            epoch, step = (int(v) for v in self.position.numpy())
            return epoch, step
        raise UserError(f"no checkpoint in {self.directory} can be read ("
                        + "; ".join(f"{os.path.basename(p)}: {why}" for p, why in self.passed_over)
                        + "); move that folder away to train the run from its start")

    def _save(self, epoch, step):
        self.position.assign([epoch, step])
        number = int(self.model.optimizer.iterations.numpy())
        try:
            self.manager(self.model).save(checkpoint_number=number)
        except (tf.errors.OpError, OSError) as err:  # a full disk, a file size limit, a read-only folder
            kept, why = tf.train.latest_checkpoint(self.save_directory), reason(err)
            if why.startswith(self.save_directory):  # TF's "<temporary file>; File too large"
                why = why.rsplit("; ", 1)[-1]
            raise UserError(f"cannot write checkpoint {number} in {self.save_directory} ({why}); "
                            + (f"{os.path.basename(kept)} is intact: make room and run the same command to "
                               "resume from it" if kept else "no checkpoint was saved before")) from None
        self._saved_at = number

    def watch_preemption(self, cluster_resolver, describe):
        """On SIGTERM, save a checkpoint at the next batch end and stop the run (:class:`~sslrs_tf.errors.Preempted`).

        TF's ``PreemptionCheckpointHandler`` watches the signal and, under several workers, makes
        every worker save at the same step (through the cluster's coordination service) before
        all stop; the checkpoint is this callback's, with the run's position, so the same
        command resumes mid-epoch. Active from the training's start to :meth:`close`.

        Args:
            cluster_resolver: the multi-worker strategy's (None on one machine).
            describe: ``describe(epoch, step)``: the run's position in words, for the message.
        """
        self._preemption = (cluster_resolver, describe)

    def on_train_begin(self, logs=None):
        if self._preemption and self._handler is None:
            # The handler only decides when to save (save_fn): the checkpoint it would keep itself
            # is an empty one in a directory of its own.
            self._handler_dir = tempfile.mkdtemp(prefix="sslrs_preemption_")
            self._sigterm = signal.getsignal(signal.SIGTERM)
            config = tf.distribute.experimental.TerminationConfig(
                grace_period=0, save_fn=self._save_preempted, exit_fn=self._stop_preempted)
            # Its own folder inside ours: a non-chief worker's handler writes beside checkpoint_dir.
            self._handler = tf.distribute.experimental.PreemptionCheckpointHandler(
                self._preemption[0], tf.train.Checkpoint(), checkpoint_dir=os.path.join(self._handler_dir, "handler"),
                termination_config=config)

    def _save_preempted(self):
        if self._saved_at != int(self.model.optimizer.iterations.numpy()):  # not saved at this step already
            self._save(self._epoch, self._done)

    def _stop_preempted(self):
        epoch, step = (int(v) for v in self.position.numpy())
        raise Preempted(f"preempted (SIGTERM): checkpoint {self._saved_at} saved in {self.directory} at "
                        f"{self._preemption[1](epoch, step)}; run the same command to resume from there")

    def close(self):
        """Stops watching for SIGTERM (the process's previous handler is back)."""
        if self._handler is not None:
            signal.signal(signal.SIGTERM, self._sigterm)
            self._handler = None  # its watcher threads are daemons, stopped when it is collected
            shutil.rmtree(self._handler_dir, ignore_errors=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._done = self.start_step

    def on_train_batch_end(self, batch, logs=None):
        self._done = self.start_step + batch + 1
        if int(self.model.optimizer.iterations.numpy()) % self.every == 0:
            self._save(self._epoch, self._done)
        if self._handler is not None:
            self._handler.save_checkpoint_if_preempted()

    def on_epoch_end(self, epoch, logs=None):
        self.start_step = 0
        # A run stopped mid-epoch (the non-finite guard) resumes where it stopped, not at the next epoch.
        self._save(epoch, self._done) if self.model.stop_training else self._save(epoch + 1, 0)


class NonFiniteGuard(keras.callbacks.Callback):
    """Stops the run when `limit` batches in a row had a non-finite loss (each was skipped).

    Args:
        limit: consecutive skipped batches tolerated.
    """

    def __init__(self, limit):
        super().__init__()
        self.limit = limit
        self.consecutive = 0
        self.total = 0
        self.stopped = False
        self._seen = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._seen = 0.0  # the skipped_batches metric restarts every epoch

    def on_train_batch_end(self, batch, logs=None):
        skipped = float((logs or {}).get("skipped_batches", 0.0))
        if skipped > self._seen + 0.5:
            self.consecutive += 1
            self.total += 1
        else:
            self.consecutive = 0
        self._seen = skipped
        if self.consecutive >= self.limit:
            self.stopped = True
            self.model.stop_training = True


class InputImages(keras.callbacks.Callback):
    """Writes a few input patches to TensorBoard at the start: S2 as RGB (B04, B03, B02) and S1 VV.

    Args:
        log_dir: the TensorBoard folder.
        batch: one batch of inputs (``{"s1": ..., "s2": ...}``), already normalised.
        s2_bands: band names of the S2 channels.
        count: how many patches.
    """

    def __init__(self, log_dir, batch, s2_bands, count=4):
        super().__init__()
        self.log_dir, self.batch, self.s2_bands, self.count = str(log_dir), batch, list(s2_bands), count

    @staticmethod
    def _stretch(x):
        low, high = np.percentile(x, 2), np.percentile(x, 98)
        return np.clip((x - low) / max(high - low, 1e-6), 0, 1)

    def on_train_begin(self, logs=None):
        writer = tf.summary.create_file_writer(self.log_dir + "/inputs")
        with writer.as_default():
            if "s2" in self.batch and all(b in self.s2_bands for b in ("B04", "B03", "B02")):
                rgb = np.asarray(self.batch["s2"])[: self.count][..., [self.s2_bands.index(b) for b in ("B04", "B03", "B02")]]
                tf.summary.image("s2_rgb", self._stretch(rgb), step=0, max_outputs=self.count)
            if "s1" in self.batch:
                vv = np.asarray(self.batch["s1"])[: self.count][..., :1]
                tf.summary.image("s1_vv", self._stretch(vv), step=0, max_outputs=self.count)
        writer.flush()

