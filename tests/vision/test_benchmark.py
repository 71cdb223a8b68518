import json

import pytest

from domain_moe.vision import benchmark

TINY = [
    "--dataset",
    "synthetic",
    "--seeds",
    "1",
    "--num-train",
    "96",
    "--num-test",
    "48",
    "--expert-steps",
    "2",
    "--probe-steps",
    "2",
    "--router-steps",
    "2",
    "--adapter-steps",
    "2",
    "--prealign-steps",
    "1",
    "--matrix-steps",
    "2",
    "--batch-size",
    "16",
]


def test_records_follow_the_contract_and_resume(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.json"
    args = [
        *TINY,
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--methods",
        "expert-matrix",
        "single-experts",
        "mova",
        "astrea-no-moco",
    ]
    records = benchmark.main(args)
    keys = {"dataset", "method", "metric", "mean", "std", "n", "values", "higher_is_better", "device", "seconds"}
    assert all(set(r) == keys for r in records)
    methods = {r["method"] for r in records}
    assert {"expert:base", "expert:segmentation", "best-single-expert", "mova", "astrea-no-moco"} <= methods
    acc = {r["method"]: r["mean"] for r in records if r["metric"] == "acc"}
    singles = [v for k, v in acc.items() if k.startswith("expert:")]
    assert acc["best-single-expert"] == max(singles)
    # Captioning and retrieval: Astrea's describe branch and a describe probe per single expert.
    describe = {"caption_token_acc", "caption_bleu", "i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5"}
    for method in ("astrea-no-moco", "expert:captioning", "best-single-expert"):
        assert describe <= {r["metric"] for r in records if r["method"] == method}
    assert all(0.0 <= r["mean"] <= 1.0 for r in records if r["metric"] in describe)
    # The expert matrix: every source on every own task, plus the best per column.
    matrix = {"cls_acc", "seg_miou", "det_map_50", "det_map", "cap_token_acc", "cap_bleu"}
    for source in ("base", "classification", "captioning", "detection", "segmentation"):
        assert matrix <= {r["metric"] for r in records if r["method"] == f"matrix:{source}"}
    best = {r["metric"]: r["mean"] for r in records if r["method"] == "best-matrix"}
    assert best["det_map_50"] == max(r["mean"] for r in records if r["metric"] == "det_map_50")
    assert json.loads(out.read_text()) == records
    printed = capsys.readouterr().out
    assert "| synthetic | mova |" in printed and "| synthetic | matrix:detection |" in printed
    # A second call finds every run done and trains nothing.
    monkeypatch.setattr(benchmark, "run_method", lambda *a, **k: pytest.fail("recomputed a finished run"))
    monkeypatch.setattr(benchmark, "prepare", lambda *a, **k: pytest.fail("prepared again"))
    assert benchmark.main(args) == records


def test_unknown_method(tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        benchmark.main([*TINY, "--out", str(tmp_path / "r.json"), "--methods", "mova-xl"])


def test_describe_metrics_of_a_perfect_and_a_blind_describer():
    import torch

    gen = torch.Generator().manual_seed(0)
    classes = torch.randint(0, 4, (40, 2), generator=gen)
    presence = torch.zeros(40, 4).scatter_add_(1, classes, torch.ones(40, 2))
    caption = torch.cat([torch.ones(40, 1, dtype=torch.long), classes.sort(1).values + 3, torch.full((40, 1), 2)], 1)
    tensors = {"presence": presence, "caption": caption}

    def perfect(batch):
        emb = batch["presence"] + 0.1  # equal for equal class multisets, distinct otherwise
        return {"caption": batch["caption"], "image_embedding": emb, "caption_embedding": emb}

    res = benchmark._describe_metrics(perfect, tensors, batch_size=16)
    assert res["caption_token_acc"] == res["caption_exact"] == 1.0
    assert res["i2t_r1"] == res["t2i_r1"] == 1.0

    def blind(batch):
        b = batch["caption"].shape[0]
        emb = torch.ones(b, 4)
        return {"caption": torch.ones_like(batch["caption"]), "image_embedding": emb, "caption_embedding": emb}

    res = benchmark._describe_metrics(blind, tensors, batch_size=16)
    assert res["caption_token_acc"] == 0.0
    # Ties rank the first distinct caption first: image -> caption recall@1 is the share of that caption.
    assert res["i2t_r1"] < 0.5
