import lightning as L
import pytest
import torch

from domain_moe.vision.canvas import AnswerSpace
from domain_moe.vision.data import CanvasDataModule, TensorDictDataset
from domain_moe.vision.experts import ExpertPool, TimmExpert, load_expert
from domain_moe.vision.heads import CaptionDecoder, ClassificationHead, DetectionHead, QuestionHead, SegmentationHead
from domain_moe.vision.metrics import map_available
from domain_moe.vision.models import Astrea, ContextRouter, ExpertNetwork, MoVA, MoVAdapter
from domain_moe.vision.tasks import AstreaTask, ExpertPretrainTask, MoVATask, centernet_targets


def _trainer(tmp_path, steps=2):
    return L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        limit_val_batches=1,
        limit_test_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )


@pytest.fixture(scope="module")
def data():
    dm = CanvasDataModule(dataset="synthetic", num_train=16, num_val=8, num_test=8, batch_size=8)
    dm.setup()
    return dm


def _mova():
    pool = ExpertPool(
        [TimmExpert("test_resnet", 3, img_size=32), TimmExpert("test_efficientnet", 2, img_size=32)], grid=4
    )
    base = TimmExpert("test_convnext", 1, img_size=32)
    router = ContextRouter(32, 4, 6, 10, num_experts=2, top_k=2, threshold=None, d_context=8)
    adapter = MoVAdapter(32, pool.channels, num_tokens=16, d_context=8, num_blocks=1, num_heads=2)
    head = QuestionHead(32, 6, 10, AnswerSpace(10, 3).mask(), d_context=8, num_heads=2)
    return MoVA(router, adapter, head, base=base, pool=pool, grid=4)


def test_mova_checkpoint_round_trip_with_frozen_experts(tmp_path, data):
    torch.manual_seed(0)
    task = MoVATask(_mova())
    frozen_before = [p.clone() for p in task.model.pool.parameters()]
    router_before = [p.clone() for p in task.model.router.parameters()]
    trainer = _trainer(tmp_path)
    trainer.fit(task, datamodule=data)
    # The adapter stage must not move the (separately trained) router.
    assert all(torch.equal(a, b) for a, b in zip(router_before, task.model.router.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(frozen_before, task.model.pool.parameters(), strict=True))
    assert not any(p.requires_grad for p in task.model.pool.parameters())
    path = tmp_path / "mova.ckpt"
    trainer.save_checkpoint(path)
    torch.manual_seed(123)
    restored = MoVATask.load_from_checkpoint(path, model=_mova())
    batch = next(iter(data.test_dataloader()))
    task.eval()
    restored.eval()
    with torch.no_grad():
        assert torch.equal(task(batch), restored(batch))
    assert not any(p.requires_grad for p in restored.model.pool.parameters())


def test_mova_router_stage_trains_on_annotations(tmp_path, data):
    torch.manual_seed(0)
    tensors = dict(data.canvases["train"].as_dict())
    tensors["route_target"] = torch.zeros(16, 2, dtype=torch.long)
    tensors["route_target"][:, 0] = 1
    loader = torch.utils.data.DataLoader(TensorDictDataset(tensors), batch_size=8, collate_fn=lambda b: b)
    task = MoVATask(_mova(), stage="router", pool_dropout=0.5, optimizer=lambda p: torch.optim.Adam(p, lr=0.05))
    before = [p.clone() for p in task.model.adapter.parameters()]
    _trainer(tmp_path, steps=20).fit(task, train_dataloaders=loader)
    assert all(torch.equal(a, b) for a, b in zip(before, task.model.adapter.parameters(), strict=True))
    base = task.model.base_tokens({"image": tensors["image"][:8]})
    probs = task.model.router(base, tensors["context"][:8]).probs
    assert (probs[:, 0] > probs[:, 1]).all()
    with pytest.raises(ValueError, match="route_target"):
        task.compute_loss({k: v[:2] for k, v in data.canvases["train"].as_dict().items()}, "train")


@pytest.mark.parametrize(
    ("kind", "trunk", "head"),
    [
        ("presence", ("test_resnet", 3), lambda c: ClassificationHead(c, 10)),
        ("segmentation", ("test_convnext", 0), lambda c: SegmentationHead(c, 11, 64)),
        ("detection", ("test_efficientnet", 2), lambda c: DetectionHead(c, 10)),
        ("captioning", ("test_byobnet", 3), lambda c: CaptionDecoder(c, 13, 16)),
    ],
)
def test_expert_pretraining_saves_the_trunk(tmp_path, data, kind, trunk, head):
    torch.manual_seed(0)
    expert = TimmExpert(*trunk, img_size=64)
    path = tmp_path / f"{kind}.pt"
    task = ExpertPretrainTask(ExpertNetwork(expert, head(expert.channels), kind), save_path=str(path))
    trainer = _trainer(tmp_path)
    trainer.fit(task, datamodule=data)
    trainer.test(task, datamodule=data, verbose=False)
    assert "test/metric" in trainer.callback_metrics
    loaded = load_expert(path)
    x = torch.randn(2, 1, 64, 64)
    assert torch.equal(loaded(x), expert.eval()(x))


@pytest.mark.skipif(not map_available(), reason="no COCO backend (pycocotools / faster-coco-eval)")
def test_detection_pretraining_logs_box_map(tmp_path, data):
    torch.manual_seed(0)
    expert = TimmExpert("test_efficientnet", 2, img_size=64)
    task = ExpertPretrainTask(ExpertNetwork(expert, DetectionHead(expert.channels, 10), "detection"))
    trainer = _trainer(tmp_path)
    trainer.fit(task, datamodule=data)
    trainer.test(task, datamodule=data, verbose=False)
    logged = trainer.callback_metrics
    assert {"test/map", "test/map_50", "test/hit_rate", "test/metric"} <= set(logged)
    assert float(logged["test/metric"]) == float(logged["test/map_50"])
    assert 0 <= float(logged["test/map"]) <= float(logged["test/map_50"]) <= 1


def test_centernet_targets_by_hand():
    boxes = torch.tensor([[[8.0, 16.0, 24.0, 48.0], [0.0, 0.0, 0.0, 0.0]]])
    heat, size, offset, mask = centernet_targets(boxes, torch.tensor([[3, -1]]), 10, map_size=8, image_size=64)
    # centre (16, 32) px -> (2.0, 4.0) cells at stride 8
    assert mask.nonzero().tolist() == [[0, 4, 2]]
    assert heat[0, 3, 4, 2] == 1 and heat[0, 3].max() == 1 and heat[0, :3].sum() == 0
    torch.testing.assert_close(size[0, :, 4, 2], torch.tensor([0.25, 0.5]))
    torch.testing.assert_close(offset[0, :, 4, 2], torch.tensor([0.0, 0.0]))


def _astrea_batch(data):
    batch = {k: v[:8] for k, v in data.canvases["train"].as_dict().items()}
    gen = torch.Generator().manual_seed(0)
    batch["base_tokens"] = torch.randn(8, 16, 16, generator=gen)
    for j, c in enumerate((8, 12)):
        batch[f"expert_tokens_{j}"] = torch.randn(8, 16, c, generator=gen)
    return batch


def test_astrea_prealign_progression_and_fusion_step(tmp_path, data):
    torch.manual_seed(0)
    head = QuestionHead(16, 6, 10, AnswerSpace(10, 3).mask(), d_context=8, num_heads=2)
    model = Astrea(16, [8, 12], head, num_classes=10, num_heads=2, queue_size=8)
    batch = _astrea_batch(data)
    loader = torch.utils.data.DataLoader(TensorDictDataset(batch), batch_size=8, collate_fn=lambda b: b)
    task = AstreaTask(model, stage="prealign", prealign_order=[1, 0], steps_per_expert=2)
    first = model.fusion.projectors[0].weight.clone()
    _trainer(tmp_path, steps=2).fit(task, train_dataloaders=loader)
    assert torch.equal(model.fusion.projectors[0].weight, first)  # expert 1 goes first; 0 untouched
    assert task.current_expert() == (0, [1])
    fusion = AstreaTask(model, stage="fusion")
    ema_before = [p.clone() for p in model.momentum.ema.parameters()]
    _trainer(tmp_path, steps=2).fit(fusion, train_dataloaders=loader)
    assert any(not torch.equal(a, b) for a, b in zip(ema_before, model.momentum.ema.parameters(), strict=True))
    assert int(model.momentum.filled) == 8
    with pytest.raises(ValueError, match="prealign_order"):
        AstreaTask(model, prealign_order=[0, 0])


def test_astrea_fusion_with_a_describer_trains_and_logs_captions(tmp_path, data):
    from domain_moe.vision.canvas import caption_vocab_size
    from domain_moe.vision.models import Describer

    torch.manual_seed(0)
    head = QuestionHead(16, 6, 10, AnswerSpace(10, 3).mask(), d_context=8, num_heads=2)
    describer = Describer(16, caption_vocab_size(10), d_hidden=16, d_embed=8)
    model = Astrea(16, [8, 12], head, num_classes=10, num_heads=2, queue_size=8, describer=describer)
    batch = _astrea_batch(data)
    loader = torch.utils.data.DataLoader(TensorDictDataset(batch), batch_size=8, collate_fn=lambda b: b)
    task = AstreaTask(model, stage="fusion")
    before = describer.decoder.out.weight.clone()
    trainer = _trainer(tmp_path, steps=2)
    trainer.fit(task, train_dataloaders=loader)
    assert not torch.equal(before, describer.decoder.out.weight)
    assert {"train/caption", "train/retrieval"} <= set(trainer.logged_metrics)
    trainer.test(task, dataloaders=loader, verbose=False)
    logged = trainer.logged_metrics
    assert {"test/caption_token_acc", "test/caption_exact", "test/caption_bleu", "test/acc"} <= set(logged)
    assert 0.0 <= float(logged["test/caption_token_acc"]) <= 1.0
