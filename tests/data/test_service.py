"""data.service: the training pipeline made by a tf.data service's workers gives the local pipeline's batches.

Here the dispatcher and its two workers are servers in this process; tests/e2e/test_data_service.py starts them
as processes (``python -m sslrs_tf.data.service``) and trains through them.
"""

import collections

import numpy as np
import pytest
import tensorflow as tf

from sslrs_tf.config import load_config
from sslrs_tf.data import service
from sslrs_tf.data.pipeline import make_dataset
from sslrs_tf.errors import UserError
from sslrs_tf.training.run import check_service


@pytest.fixture(scope="module")
def dispatcher():
    """A dispatcher and two workers; yields the dispatcher's ``grpc://`` address and the workers."""
    servers = tf.data.experimental.service
    main = servers.DispatchServer()
    workers = [servers.WorkerServer(servers.WorkerConfig(dispatcher_address=main._address)) for _ in range(2)]
    yield main.target, workers
    for w in workers:
        w._stop()
    main._stop()


def ids(batch):
    """A batch told apart by its samples and their crops (two epochs may draw the same pair of samples)."""
    return tuple(i.decode() for i in np.asarray(batch["id"])) + (hash(np.asarray(batch["s2"]).tobytes()),)


def test_the_workers_make_each_epochs_batches_of_the_local_pipeline_each_epoch_in_its_order(built, dispatcher):
    url, workers = dispatcher

    def pipeline():  # 4 epochs of 3 batches, finite so that both streams end
        return make_dataset(built["sen12ms"], "train", crop_size=16, batch_size=2, epochs=4, steps_per_epoch=3,
                            seed=5, with_ids=True)

    local = [{k: v.numpy() for k, v in b.items()} for b in pipeline()]
    by_ids = {ids(b): b for b in local}
    assert len(by_ids) == len(local) == 12
    stream = iter(service.distribute(pipeline(), url))
    served = [next(stream)]
    assert [w._num_tasks() for w in workers] == [1, 1]  # both workers are making this job's epochs
    served += list(stream)
    assert sorted(map(ids, served)) == sorted(by_ids)  # each batch exactly once
    for batch in served:  # the same crops and normalisation
        for key, value in batch.items():
            np.testing.assert_array_equal(value.numpy(), by_ids[ids(batch)][key])
    # Each epoch whole, in its own order: the batches of epoch e arrive as the local pipeline makes them.
    epoch_of = {ids(b): i // 3 for i, b in enumerate(local)}
    arrived = collections.defaultdict(list)
    for batch in served:
        arrived[epoch_of[ids(batch)]].append(ids(batch))
    assert all(arrived[e] == [ids(b) for b in local[3 * e:3 * e + 3]] for e in range(4)), dict(arrived)


@pytest.mark.parametrize("distribution", ["multi_worker", "tpu"])
def test_a_bad_or_silent_address_and_several_trainer_processes_are_refused_with_one_line(small_world, distribution):
    for bad in ("localhost", "grpc://host:99999", "grpc://:5050"):
        with pytest.raises(UserError, match=r"^data.service must look like grpc://HOST:PORT \(a port in 1..65535\). "
                                            rf"Received: data.service='{bad}'$"):
            service.address(bad)
    assert service.address("grpc://[::1]:5050") == ("::1", 5050)
    with pytest.raises(UserError, match=r"^--dispatcher: no tf.data dispatcher answers at grpc://127.0.0.1:9 .*"
                                        r"`python -m sslrs_tf.data.service dispatcher --port 9`$"):
        service.check_reachable("grpc://127.0.0.1:9", timeout=0, key="--dispatcher")
    config = load_config("tiny", [*small_world, "data.service=grpc://127.0.0.1:9",
                                  f"train.distribution={distribution}"])
    with pytest.raises(UserError, match="data.service feeds one trainer process .* Received: "
                                        f"train.distribution={distribution}"):
        check_service(config)
