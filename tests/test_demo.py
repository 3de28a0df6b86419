from audioscene.demo import DemoConfig, run_demo


def test_demo_runs_the_pipeline_end_to_end(tmp_path):
    config = DemoConfig(n_train=24, n_eval=12, n_tune=4, width=8, epochs=1, batch_size=8, bootstrap=100)
    report = run_demo(tmp_path, config)
    for row in ("resnet_b (peak, epoch 1)", "resnet_b_att (Avg)", "ResNet B + att (Avg)",
                "yu_multilevel_att (peak, epoch 1)", "kong_att (Avg)", "Yu et al.",
                "| resnet_b_att: 0.5 thresholds — eval split",
                "| resnet_b_att: median filter + swept thresholds, 0.4 s collar — eval split",
                "| paper: median filter + swept thresholds ", "## Table 4", "| Vacuum_cleaner ",
                "| resnet_b_att_strong: median filter + swept thresholds — eval split", "## Detection summary",
                "| resnet_b_att_strong | eval "):
        assert row in report
    for path in ("report.md", "index.html", "table2.csv", "provenance.json", "spectrogram.png",
                 "per_class_resnet_b.csv", "per_class_resnet_b_att.csv",
                 "runs/resnet_b/epoch_001.pt", "runs/resnet_b_att/metrics.csv", "data/tune/strong.tsv",
                 "runs/kong_att/epoch_001.pt", "data/eval_embeddings/part-00000.tfrecord",
                 "runs/resnet_b_att_strong/epoch_001.pt", "sed/resnet_b_att/tuned_median_thresholds.json",
                 "sed/resnet_b_att_strong/events_eval_median.tsv", "sed/resnet_b_att/figure2_1.png"):
        assert (tmp_path / path).is_file(), path
    # a second run reuses the data and the finished runs: the same tables (only the date line differs)
    tables = lambda text: [line for line in text.splitlines() if "provenance.json" not in line]  # noqa: E731
    assert tables(run_demo(tmp_path, config)) == tables(report)
