"""sslrs_tf.malloc: with its settings, the training pipeline stops faulting its memory in again."""

import json
import os
import subprocess
import sys

import pytest

from sslrs_tf.malloc import user_chose_malloc
from tests.helpers import ROOT

#: a child process: the training pipeline at 128 px crops of 256 px records, minor page faults per sample
#: over 30 batches after 15 of warm-up (the shuffle buffer of 64 records and the prefetched batches filled),
#: with or without keep_freed_memory() first
CHILD = """
import json, resource, sys
import sslrs_tf
from sslrs_tf.malloc import keep_freed_memory
applied = keep_freed_memory() if sys.argv[2] == "on" else False
from sslrs_tf.data.pipeline import make_dataset
batches = iter(make_dataset(sys.argv[1], "train", crop_size=128, batch_size=8, shuffle_buffer=64))
for _ in range(15):
    next(batches)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    next(batches)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"applied": applied, "faults_per_sample": faults / (30 * 8)}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_the_pipeline_reuses_its_memory_with_the_settings_and_faults_it_in_without(tmp_path):
    from sslrs_tf.datasets import prepare_world

    world = {"patches": 40, "size": 256, "seed": 0, "dfc_validation": 1, "dfc_test": 1}
    built = prepare_world(tmp_path / "world", tmp_path / "tfds", world)["sen12ms"]
    env = {k: v for k, v in os.environ.items() if not user_chose_malloc({k: v})}
    runs = {}
    for setting in ("on", "off"):
        child = subprocess.run([sys.executable, "-c", CHILD, built.data_dir, setting], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=300)
        assert child.returncode == 0, child.stderr[-2000:]
        runs[setting] = json.loads(child.stdout.strip().splitlines()[-1])
    assert runs["on"]["applied"] is True
    record_pages = 2.49e6 / 4096
    # Measured here: 240-660 faults per sample by default (about a whole record's 608 pages), under 20 with them.
    assert runs["on"]["faults_per_sample"] < 0.2 * record_pages, runs
    assert runs["off"]["faults_per_sample"] > 3 * runs["on"]["faults_per_sample"], runs


def test_every_command_sets_them_unless_the_environment_configures_malloc():
    # run_entry_point is what every command line runs its work through; no TensorFlow is loaded here.
    code = ("from sslrs_tf import malloc; from sslrs_tf.errors import run_entry_point; "
            "status = run_entry_point(lambda: None); print(status, malloc._applied)")
    clean = {k: v for k, v in os.environ.items() if not user_chose_malloc({k: v})}
    for extra, want in (({}, "0 True"), ({"MALLOC_ARENA_MAX": "4"}, "0 False"),
                        ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}, "0 False")):
        child = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**clean, **extra}, capture_output=True,
                               text=True, timeout=60)
        assert child.stdout.strip() == want, (extra, child.stdout, child.stderr[-1000:])


def test_a_user_who_configured_malloc_is_left_alone():
    assert user_chose_malloc({"MALLOC_ARENA_MAX": "4"})
    assert user_chose_malloc({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"})
    assert user_chose_malloc({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"})
    assert not user_chose_malloc({"PATH": "/usr/bin", "LD_PRELOAD": ""})
