"""`make quickstart`: the main job on the embedded synthetic world.

1. generates the synthetic Sentinel world and builds SEN12MS and DFC2020 from it (cached);
2. pre-trains a small Dual-SimCLR (``configs/quickstart.yaml``; resumes if interrupted);
3. probes the frozen encoders linearly on the synthetic DFC2020 labels (train on
   ``validation``, test on ``test``, single-label, 8 classes) against the same
   encoders randomly initialised, and prints the table;
4. runs the ISPRS comparison in miniature (``configs/protocol_quickstart.yaml``: the
   encoders frozen and fine-tuned against the four supervised baselines at 10 % and
   100 % of the labels, one seed) and prints its tables and the path of its plot.
   Finished runs are kept: an interrupted quick start continues where it stopped.

The data is SYNTHETIC: this shows the library working end to end, not results
on real Sentinel imagery.
"""

import argparse
import pathlib
import sys
import time

from sslrs_tf.errors import run_entry_point


def probe_table(config):
    """Linear-probe accuracy of the exported encoders and of randomly initialised ones (markdown)."""
    import keras

    from sslrs_tf.data.pipeline import make_dataset
    from sslrs_tf.datasets import open_source, synthetic_config
    from sslrs_tf.evaluation.linear_probe import extract_features, linear_probe
    from sslrs_tf.experiment import Experiment

    experiment = Experiment(config)
    labelled = open_source("dfc2020", config.data.data_dir, synthetic_config(config.data.synthetic.size))
    data = {split: make_dataset(labelled, split, training=False, label="single", batch_size=64,
                                normalization=config.data.normalization) for split in ("validation", "test")}
    export = pathlib.Path(config.run.dir) / "export"
    pretrained = {m: keras.saving.load_model(export / f"encoder_{m}.keras") for m in ("s1", "s2")}
    keras.utils.set_random_seed(config.train.seed)  # the initialisation pre-training started from
    fresh = experiment.method_class.from_model_config(config.model, experiment.method_inputs()).encoders()
    rows = []
    for name, encoders in (("random initialisation", fresh), ("Dual-SimCLR pre-trained", pretrained)):
        train, test = (extract_features(encoders, data[s]) for s in ("validation", "test"))
        report = linear_probe(train, test, num_classes=len(labelled.class_names))
        rows.append(f"| {name:24s} | {100 * report['OA']:5.1f} | {100 * report['AA']:5.1f} |")
    header = ("Linear probe on frozen S1+S2 encoders, synthetic DFC2020 (SYNTHETIC data), "
              f"{len(train[1])} train / {len(test[1])} test patches, single-label, %\n\n"
              "| encoders                 |    OA |    AA |\n|--------------------------|-------|-------|")
    return "\n".join([header, *rows])


def main(argv=None):
    """Command-line entry point of `make quickstart` (``python -m sslrs_tf.quickstart``, from any folder)."""
    parser = argparse.ArgumentParser(prog="python -m sslrs_tf.quickstart", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="quickstart.yaml", help="pre-training config (file or shipped name)")
    parser.add_argument("--protocol", default="protocol_quickstart.yaml",
                        help="the comparison run at the end (file or shipped name)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides of the pre-training config")
    args = parser.parse_args(argv)
    start = time.time()

    def action():
        from sslrs_tf.config import load_config
        from sslrs_tf.evaluation.protocol import load_protocol, report_protocol, run_protocol
        from sslrs_tf.training.run import train

        config = load_config(args.config, args.overrides)
        card = train(config, verbose=2)
        loss = card["final_metrics"].get("loss")  # none when the run had finished before
        print(f"pre-training done: {config.run.dir}/export" + (f" (loss {loss:.3f})" if loss is not None else "")
              + f"; watch it with: tensorboard --logdir {pathlib.Path(config.run.dir).parent}")
        print()
        print(probe_table(config))
        print()
        # The protocol's pretrained models start from the run just trained.
        protocol = load_protocol(args.protocol, [f"pretrained={config.run.dir}"])
        text = report_protocol(protocol, run_protocol(protocol, train))
        print()
        print(text)
        print(f"\nplot: {pathlib.Path(protocol.dir) / 'label_fractions.png'}")
        print(f"\nquick start done in {time.time() - start:.0f} s (SYNTHETIC data).")

    return run_entry_point(action)


if __name__ == "__main__":
    sys.exit(main())
