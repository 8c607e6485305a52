"""train.distribution: multi_worker — two worker processes on 127.0.0.1 with TF_CONFIG, as on two machines."""

import json

import numpy as np
import pytest

from tests.helpers import card_of, exported_weights


@pytest.mark.slow
def test_two_workers_killed_and_restarted_end_with_the_weights_of_one_device(two_worker_run):
    # tests/training/two_workers.py ran in the background: worker 1 was killed -9 after checkpoint 1
    # (mid-epoch), its peer stopped, both restarted with the same command.
    job, _ = two_worker_run.join()
    outcome = json.loads(job.stdout.strip().splitlines()[-1])
    assert outcome["killed"], f"the run ended before worker 1 could be killed: {outcome}"
    assert not outcome["exported_before_restart"]
    assert outcome["second"] == [0, 0]
    run = two_worker_run.dir
    assert not (run / "workers").exists()  # the other worker's checkpoints were temporary
    training = card_of(run)["training"]
    assert (training["distribution"], training["replicas"], training["batch_size"]) == ("multi_worker", 2, 8)
    # Both resumed from checkpoint 1 (the chief's, on the shared run directory), mid-epoch.
    assert outcome["resumed"] == [f"resuming from {run / 'checkpoints' / 'ckpt-1'}: epoch 1 of 1, batch 2 of 2"] * 2
    # Each worker read every record and kept its half of each global batch (sharding by data):
    # the global batches, synchronized batch norms and summed gradients of one device, so the
    # same weights up to the order of the cross-worker sums. Measured: max |difference| 4e-4, in
    # the S1 stem (synchronized batch norm computes E[x²] - E[x]² from the workers' partial sums,
    # which cancels on the stem's offset outputs); 3e-6 on the quick-start world. A real fault is
    # far above the tolerance: sharding OFF (every worker the same half-batches) differs by 0.68.
    ours = exported_weights(run, "s1", "s2")
    theirs = exported_weights(two_worker_run.reference, "s1", "s2")
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-3)
