"""GMoPE tasks: contrastive loss by hand, frozen backbone bit-identical, backbone loading, checkpoints, CLI."""

import re

import lightning as L
import pytest
import torch

from domain_moe.core import losses
from domain_moe.graph.cli import run
from domain_moe.graph.fewshot import FewShotDataModule
from domain_moe.graph.gmope_tasks import GMoPEPretrainTask, GMoPEPromptTask, load_backbone, load_entropy
from domain_moe.graph.models.gmope import GMoPE
from domain_moe.graph.models.gnn import GNN
from domain_moe.graph.pretraining import EgoNetPretrainDataModule

GRAPHS = ["csbm:num_nodes=60,num_features=12,seed=1", "csbm:num_nodes=50,num_features=5,seed=2"]
TARGET = "csbm:num_nodes=80,num_features=9,num_classes=3,seed=3"


def _trainer(tmp_path, steps=3, **kwargs):
    return L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        **{"enable_checkpointing": False, **kwargs},
    )


def _model(num_classes=3, **kwargs):
    return GMoPE(num_features=8, num_classes=num_classes, num_experts=3, hidden_channels=8, **kwargs)


def _pretrain_dm():
    return EgoNetPretrainDataModule(GRAPHS, num_features=8, egos_per_graph=12, batch_size=6)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_pretrain_loss_is_symmetric_info_nce_plus_aux():
    torch.manual_seed(0)
    task = GMoPEPretrainTask(_model(1, orth_weight=0.7), temperature=0.3)
    dm = _pretrain_dm()
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    loss, out = task.compute_loss(batch, "val")
    z1, z2 = out["z1"], out["z2"]
    ssl = 0.5 * (losses.info_nce(z1, z2, temperature=0.3) + losses.info_nce(z2, z1, temperature=0.3))
    orth = 0.7 * losses.orthogonality(task.gmope.prompts.weight)
    torch.testing.assert_close(loss, ssl + orth)
    assert z1.shape == (batch[0].num_graphs, 64) == (2, 64)  # one held-out ego-net per graph


def test_pretrain_fits_and_updates_backbone(tmp_path):
    torch.manual_seed(0)
    model = _model(1)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    _trainer(tmp_path).fit(GMoPEPretrainTask(model), datamodule=_pretrain_dm())
    assert any(not torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_pretrain_task_rejects_bad_batches_and_models():
    task = GMoPEPretrainTask(_model(1))
    with pytest.raises(ValueError, match="pair of view Batches"):
        task.compute_loss(torch.zeros(3), "train")
    with pytest.raises(TypeError, match="must be a GMoPE"):
        GMoPEPretrainTask(GNN(4, 2))
    with pytest.raises(ValueError, match="temperature"):
        GMoPEPretrainTask(_model(1), temperature=0.0)


def _fewshot_dm():
    return FewShotDataModule(TARGET, shots=3, num_features=8)


@pytest.mark.parametrize("tune", ["prompt", "prompt_head", "head"])
def test_prompt_tuning_leaves_backbone_bit_identical(tmp_path, tune):
    torch.manual_seed(0)
    model = _model(dropout=0.5)
    backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    prompts, head = model.prompts.weight.detach().clone(), model.head.weight.detach().clone()
    router = model.encoder.router.weight.detach().clone()
    task = GMoPEPromptTask(model, tune=tune)
    _trainer(tmp_path, steps=5).fit(task, datamodule=_fewshot_dm())
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, backbone[k]), k
    assert not torch.equal(model.head.weight.detach(), head)
    assert torch.equal(model.prompts.weight.detach(), prompts) == (tune == "head")
    assert torch.equal(model.encoder.router.weight.detach(), router) == (tune != "prompt")


def test_full_tuning_updates_backbone(tmp_path):
    torch.manual_seed(0)
    model = _model()
    backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    task = GMoPEPromptTask(model, tune="full")
    assert task.num_trainable == sum(p.numel() for p in model.parameters())
    _trainer(tmp_path).fit(task, datamodule=_fewshot_dm())
    assert any(not torch.equal(backbone[k], v) for k, v in model.backbone.state_dict().items())


def test_prompt_tuning_is_seeded(tmp_path):
    def prompts():
        L.seed_everything(3, verbose=False)
        model = _model()
        _trainer(tmp_path, steps=4).fit(GMoPEPromptTask(model), datamodule=_fewshot_dm())
        return model.prompts.weight.detach().clone()

    torch.testing.assert_close(prompts(), prompts(), rtol=0, atol=0)


def _pretrained_checkpoint(tmp_path):
    torch.manual_seed(1)
    model = _model(1)
    trainer = _trainer(tmp_path / "pre", enable_checkpointing=True)
    trainer.fit(GMoPEPretrainTask(model), datamodule=_pretrain_dm())
    path = tmp_path / "pre.ckpt"
    trainer.save_checkpoint(path)
    return model, path


def test_backbone_checkpoint_loads_encoder_not_head(tmp_path):
    pre, path = _pretrained_checkpoint(tmp_path)
    torch.manual_seed(2)
    model = _model(3)
    head = model.head.weight.detach().clone()
    task = GMoPEPromptTask(model, backbone_checkpoint=str(path))
    assert task.backbone_checkpoint == str(path)
    for k, v in pre.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[k], v), k
    assert torch.equal(model.head.weight.detach(), head)
    # A plain state dict works too, and without prompts the fresh ones stay.
    torch.save(pre.state_dict(), tmp_path / "plain.pt")
    fresh = _model(3)
    prompts = fresh.prompts.weight.detach().clone()
    names = load_backbone(fresh, tmp_path / "plain.pt", prompts=False)
    assert all(not n.startswith("encoder.prompt") for n in names)
    assert torch.equal(fresh.prompts.weight.detach(), prompts)


def test_random_router_model_loads_a_dense_checkpoint(tmp_path):
    pre, path = _pretrained_checkpoint(tmp_path)
    model = _model(3, router="random")
    names = load_backbone(model, path)
    assert not any(n.startswith("encoder.router") for n in names)
    assert torch.equal(model.prompts.weight.detach(), pre.prompts.weight.detach())


def test_backbone_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape("nope.ckpt")):
        GMoPEPromptTask(_model(), backbone_checkpoint=str(tmp_path / "nope.ckpt"))
    _, path = _pretrained_checkpoint(tmp_path)
    wider = GMoPE(num_features=8, num_classes=3, num_experts=3, hidden_channels=16)
    with pytest.raises(ValueError, match="has shape"):
        load_backbone(wider, path)
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="lacks backbone tensors"):
        load_backbone(_model(), tmp_path / "other.pt")


def test_prompt_task_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = _model()
    task = GMoPEPromptTask(model, tune="prompt")
    trainer = _trainer(tmp_path, steps=3, enable_checkpointing=True)
    dm = _fewshot_dm()
    trainer.fit(task, datamodule=dm)
    path = tmp_path / "prompt.ckpt"
    trainer.save_checkpoint(path)
    restored = GMoPEPromptTask.load_from_checkpoint(path, model=_model())
    assert restored.tune == "prompt" and restored.num_trainable == task.num_trainable
    data = dm.data
    model.eval()
    restored.model.eval()
    torch.testing.assert_close(restored.model(data.x, data.edge_index), model(data.x, data.edge_index), rtol=0, atol=0)


def test_prompt_task_bad_arguments():
    with pytest.raises(TypeError, match="must be a GMoPE"):
        GMoPEPromptTask(GNN(4, 2))
    with pytest.raises(ValueError, match="tune"):
        GMoPEPromptTask(_model(), tune="lora")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="aux_weight"):
        GMoPEPromptTask(_model(), aux_weight=-1.0)


def test_load_entropy_by_hand():
    torch.testing.assert_close(load_entropy(torch.tensor([0.5, 0.5, 0.0, 0.0])), torch.tensor(0.5))
    torch.testing.assert_close(load_entropy(torch.full((3,), 1 / 3)), torch.tensor(1.0))


@pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")
def test_cli_pretrain_then_prompt(tmp_path):
    trainer = {
        "max_steps": 2,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "default_root_dir": str(tmp_path),
        "enable_checkpointing": False,
    }
    model = {"class_path": "domain_moe.graph.models.gmope.GMoPE", "init_args": {"num_experts": 2, "hidden_channels": 8}}
    pre = run(
        {
            "fit": {
                "model": {
                    "class_path": "domain_moe.graph.gmope_tasks.GMoPEPretrainTask",
                    "init_args": {"model": model},
                },
                "data": {
                    "class_path": "domain_moe.graph.pretraining.EgoNetPretrainDataModule",
                    "init_args": {"graphs": GRAPHS, "num_features": 8, "egos_per_graph": 8, "batch_size": 4},
                },
                "trainer": trainer,
            }
        }
    )
    assert pre.model.model.num_features == 8
    path = tmp_path / "pre.ckpt"
    pre.trainer.save_checkpoint(path)
    cli = run(
        {
            "fit": {
                "model": {
                    "class_path": "domain_moe.graph.gmope_tasks.GMoPEPromptTask",
                    "init_args": {"model": model, "backbone_checkpoint": str(path)},
                },
                "data": {
                    "class_path": "domain_moe.graph.fewshot.FewShotDataModule",
                    "init_args": {"graph": TARGET, "shots": 2, "num_features": 8},
                },
                "trainer": trainer,
            }
        }
    )
    assert cli.model.model.num_classes == 3 and cli.model.metric == "accuracy"
    for k, v in pre.model.model.encoder.experts.state_dict().items():
        assert torch.equal(cli.model.model.encoder.experts.state_dict()[k], v)


def test_readouts_pick_centres_or_means():
    dm = _pretrain_dm()
    dm.setup()
    view, _ = next(iter(dm.val_dataloader()))
    h = torch.randn(view.num_nodes, 5)
    task = GMoPEPretrainTask(_model(1), readout="center")
    want = torch.stack([h[int(view.ptr[i]) + int(view.center[i])] for i in range(view.num_graphs)])
    torch.testing.assert_close(task.pool(h, view), want)
    task = GMoPEPretrainTask(_model(1), readout="mean")
    want = torch.stack([h[view.ptr[i] : view.ptr[i + 1]].mean(0) for i in range(view.num_graphs)])
    torch.testing.assert_close(task.pool(h, view), want)
    with pytest.raises(ValueError, match="readout"):
        GMoPEPretrainTask(_model(1), readout="max")  # type: ignore[arg-type]
