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

from sslrs_tf.errors import UserError

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
CONFIG = CONFIGS / "quickstart.yaml"
PROTOCOL = CONFIGS / "protocol_quickstart.yaml"


def probe_table(config):
    """Linear-probe accuracy of the exported encoders and of randomly initialised ones (markdown)."""
    import keras

    from sslrs_tf.data.bands import resolve_bands
    from sslrs_tf.data.build import make_builder
    from sslrs_tf.data.pipeline import make_dataset
    from sslrs_tf.evaluation.linear_probe import extract_features, linear_probe
    from sslrs_tf.methods import get_method

    syn = config.data.synthetic
    builder = make_builder("dfc2020", config.data.data_dir, {"name": f"synthetic{syn.size}", "patch_size": syn.size})
    data = {split: make_dataset(builder, split, training=False, label="single", batch_size=64,
                                normalization=config.data.normalization) for split in ("validation", "test")}
    export = pathlib.Path(config.run.dir) / "export"
    pretrained = {m: keras.saving.load_model(export / f"encoder_{m}.keras") for m in ("s1", "s2")}
    keras.utils.set_random_seed(config.train.seed)  # the initialisation pre-training started from
    fresh = get_method(config.model.method)(backbone=config.model.backbone, s1_channels=len(resolve_bands("s1")),
                                            s2_channels=len(resolve_bands("s2"))).encoders()
    rows = []
    for name, encoders in (("random initialisation", fresh), ("Dual-SimCLR pre-trained", pretrained)):
        train, test = (extract_features(encoders, data[s]) for s in ("validation", "test"))
        report = linear_probe(train, test, num_classes=8)
        rows.append(f"| {name:24s} | {100 * report['OA']:5.1f} | {100 * report['AA']:5.1f} |")
    header = ("Linear probe on frozen S1+S2 encoders, synthetic DFC2020 (SYNTHETIC data), "
              f"{len(train[1])} train / {len(test[1])} test patches, single-label, %\n\n"
              "| encoders                 |    OA |    AA |\n|--------------------------|-------|-------|")
    return "\n".join([header, *rows])


def main(argv=None):
    """Command-line entry point of `make quickstart`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(CONFIG), help="pre-training config")
    parser.add_argument("--protocol", default=str(PROTOCOL), help="the comparison run at the end")
    parser.add_argument("overrides", nargs="*", help="dotted overrides of the pre-training config")
    args = parser.parse_args(argv)
    start = time.time()
    try:
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
        text = report_protocol(protocol, run_protocol(protocol))
        print()
        print(text)
        print(f"\nplot: {pathlib.Path(protocol.dir) / 'label_fractions.png'}")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"\nquick start done in {time.time() - start:.0f} s (SYNTHETIC data).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
