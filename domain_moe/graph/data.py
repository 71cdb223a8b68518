"""Full-batch node-classification DataModules: the offline graphs, any heterophilous ``.npz`` file, and a CSBM.

Every DataModule holds one ``torch_geometric.data.Data`` graph with ``x [N, F]``, ``edge_index [2, N_e]``,
``y [N]`` and the boolean ``train_mask``/``val_mask``/``test_mask`` ``[N]`` of the selected split. Each
stage's loader yields that one graph (full batch); tasks pick the stage's mask. ``num_features``,
``num_classes`` and ``metric`` (``"accuracy"``, or ``"auroc"`` for binary graphs) are known without
``setup()`` so the CLI can link them into the model.

Real data is read from ``root`` (default ``$DOMAIN_MOE_DATA/graph``, else ``../shared/data/graph`` from the
working directory) through a temporary copy, because PyG writes ``processed/`` next to ``raw/``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, remove_self_loops, to_undirected

from domain_moe.graph.checks import check_graph

__all__ = [
    "DATASETS",
    "ContextualSBMDataModule",
    "GraphDataModule",
    "NodeClassificationDataModule",
    "contextual_sbm",
    "default_root",
    "load_npz_graph",
    "parse_graph_spec",
]

#: Registered offline dataset names (lower case) and their folder under ``root``.
DATASETS = {
    "cora": "Cora",
    "citeseer": "CiteSeer",
    "texas": "texas",
    "cornell": "cornell",
    "wisconsin": "wisconsin",
    "actor": "Actor",
    "minesweeper": "minesweeper",
    "tolokers": "tolokers",
    "chameleon": "chameleon",
    "squirrel": "squirrel",
}

Metric = Literal["auto", "accuracy", "auroc"]


def default_root() -> Path:
    """``$DOMAIN_MOE_DATA/graph``, else ``../shared/data/graph`` relative to the working directory."""
    base = os.environ.get("DOMAIN_MOE_DATA")
    return Path(base) / "graph" if base else Path("..") / "shared" / "data" / "graph"


def _identity(batch: Any) -> Any:
    return batch


def _missing(path: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{what} not found at '{path}'. Put the data there, pass root=<folder holding it>, or set DOMAIN_MOE_DATA "
        "to the shared data folder (the graph data lives in <DOMAIN_MOE_DATA>/graph)."
    )


def parse_graph_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name:key=value,key=value"`` into the name and typed options (``npz:<path>`` is kept whole).

    Example:
        >>> parse_graph_spec("csbm:num_nodes=200,homophily=0.3")
        ('csbm', {'num_nodes': 200, 'homophily': 0.3})
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"graph spec must be a non-empty string, got {spec!r}")
    if spec.lower().startswith("npz:"):
        return spec, {}
    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"graph spec {spec!r}: option {item!r} must be key=value")
        parsed: Any = value
        for cast in (int, float):
            try:
                parsed = cast(value)
                break
            except ValueError:
                continue
        options[key.strip()] = parsed
    return name.lower(), options


def load_npz_graph(path: str | os.PathLike[str]) -> Data:
    """Read a graph in the heterophilous-graphs ``.npz`` format (Platonov et al., ICLR 2023).

    Keys: ``node_features [N, F]``, ``node_labels [N]``, ``edges [N_e, 2]`` (each undirected edge once),
    ``train_masks``/``val_masks``/``test_masks`` ``[S, N]``. Edges are symmetrised (as PyG does for this
    format) and the masks transposed to ``[N, S]``.

    Args:
        path: the ``.npz`` file.

    Returns:
        ``Data(x, edge_index, y, train_mask, val_mask, test_mask)``.

    Example:
        >>> load_npz_graph("missing.npz")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: heterophilous-graphs .npz file not found at 'missing.npz'...
    """
    path = Path(path)
    if not path.is_file():
        raise _missing(path, "heterophilous-graphs .npz file")
    with np.load(path) as raw:
        needed = ("node_features", "node_labels", "edges", "train_masks", "val_masks", "test_masks")
        absent = [k for k in needed if k not in raw]
        if absent:
            raise ValueError(f"load_npz_graph: '{path}' lacks keys {absent}; expected {list(needed)}")
        x = torch.as_tensor(raw["node_features"], dtype=torch.float32)
        y = torch.as_tensor(raw["node_labels"], dtype=torch.long)
        edges = torch.as_tensor(raw["edges"], dtype=torch.long)
        masks = {
            k: torch.as_tensor(raw[f"{k}s"]).bool().t().contiguous() for k in ("train_mask", "val_mask", "test_mask")
        }
    if edges.dim() != 2 or edges.size(1) != 2:
        raise ValueError(f"load_npz_graph: 'edges' in '{path}' must be [num_edges, 2], got {tuple(edges.shape)}")
    edge_index = to_undirected(edges.t().contiguous(), num_nodes=x.size(0))
    check_graph(x, edge_index, y, where=f"load_npz_graph({path})")
    return Data(x=x, edge_index=edge_index, y=y, **masks)


def contextual_sbm(
    num_nodes: int = 1000,
    num_classes: int = 5,
    num_features: int = 32,
    homophily: float = 0.7,
    avg_degree: float = 10.0,
    informative_fraction: float = 0.5,
    signal: float = 1.0,
    num_splits: int = 3,
    split_fractions: tuple[float, float] = (0.5, 0.25),
    seed: int = 0,
) -> Data:
    """Contextual stochastic block model with a controllable *soft split* of informative features.

    Labels are uniform over ``num_classes``. Each of the ``num_nodes·avg_degree/2`` undirected edges joins a
    random node to a node of the same class with probability ``homophily``, otherwise to a node of another
    class. A ``informative_fraction`` of the nodes get features ``signal·μ_y + ε`` (class means ``μ_c ~ N(0,
    I/F)·√F``), the rest pure noise ``ε ~ N(0, I)``: the MLP is good only on the first group, the GNN is blurred
    by the heterophilous edges, which is where Mowst should beat both (``specs/graph.md`` MW4).

    Args:
        num_nodes: ``N``.
        num_classes: ``Q``.
        num_features: ``F``.
        homophily: probability that an edge joins two nodes of the same class.
        avg_degree: mean node degree.
        informative_fraction: share of nodes whose features carry the class.
        signal: scale of the class means (feature informativeness).
        num_splits: random train/val/test splits stored as mask columns.
        split_fractions: train and validation shares (test gets the rest).
        seed: generator seed; same seed, same graph.

    Returns:
        ``Data`` with masks ``[N, num_splits]`` and a bool ``informative [N]``.

    Example:
        >>> g = contextual_sbm(num_nodes=50, num_classes=2, num_features=4, seed=1)
        >>> g.x.shape, g.train_mask.shape
        (torch.Size([50, 4]), torch.Size([50, 3]))
    """
    if num_nodes < num_classes or num_classes < 2:
        raise ValueError(
            f"contextual_sbm: need num_classes >= 2 and num_nodes >= num_classes, got {num_nodes}, {num_classes}"
        )
    for name, value in (("homophily", homophily), ("informative_fraction", informative_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"contextual_sbm: {name} must be in [0, 1], got {value!r}")
    train_frac, val_frac = split_fractions
    if train_frac <= 0 or val_frac < 0 or train_frac + val_frac >= 1:
        raise ValueError(
            f"contextual_sbm: split_fractions must be (train > 0, val >= 0) summing below 1, got {split_fractions!r}"
        )
    gen = torch.Generator().manual_seed(seed)
    # Every class gets at least one node, so same-class partners always exist.
    y = torch.cat([torch.arange(num_classes), torch.randint(num_classes, (num_nodes - num_classes,), generator=gen)])
    y = y[torch.randperm(num_nodes, generator=gen)]
    order = torch.argsort(y, stable=True)
    counts = torch.bincount(y, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    num_edges = max(int(num_nodes * avg_degree / 2), 1)
    src = torch.randint(num_nodes, (num_edges,), generator=gen)
    same = torch.rand(num_edges, generator=gen) < homophily
    shift = torch.randint(1, num_classes, (num_edges,), generator=gen)
    dst_class = torch.where(same, y[src], (y[src] + shift) % num_classes)
    offset = (torch.rand(num_edges, generator=gen) * counts[dst_class]).long()
    dst = order[starts[dst_class] + offset]
    edge_index, _ = remove_self_loops(torch.stack([src, dst]))
    edge_index = coalesce(to_undirected(edge_index, num_nodes=num_nodes), num_nodes=num_nodes)
    means = torch.randn(num_classes, num_features, generator=gen)
    informative = torch.rand(num_nodes, generator=gen) < informative_fraction
    x = torch.randn(num_nodes, num_features, generator=gen) + signal * means[y] * informative.unsqueeze(-1)
    masks = {k: torch.zeros(num_nodes, num_splits, dtype=torch.bool) for k in ("train_mask", "val_mask", "test_mask")}
    n_train, n_val = int(train_frac * num_nodes), int(val_frac * num_nodes)
    for s in range(num_splits):
        perm = torch.randperm(num_nodes, generator=gen)
        masks["train_mask"][perm[:n_train], s] = True
        masks["val_mask"][perm[n_train : n_train + n_val], s] = True
        masks["test_mask"][perm[n_train + n_val :], s] = True
    return Data(x=x, edge_index=edge_index, y=y, informative=informative, **masks)


class GraphDataModule(L.LightningDataModule):
    """Base of the full-batch node-classification DataModules: one graph, one split, one loader per stage.

    Subclasses implement :meth:`load` (the graph with masks ``[N]`` or ``[N, S]``). The graph is loaded on first
    use (``num_features``, ``num_classes``, ``setup``) and the split's column selected.

    Args:
        split: index of the mask column (ignored when the masks are 1-D, as for Planetoid's public split).
        metric: ``"accuracy"``, ``"auroc"``, or ``"auto"`` (ROC-AUC for binary labels, else accuracy).
    """

    def __init__(self, split: int = 0, metric: Metric = "auto") -> None:
        super().__init__()
        if isinstance(split, bool) or not isinstance(split, int) or split < 0:
            raise ValueError(f"{type(self).__name__}: split must be an int >= 0, got {split!r}")
        if metric not in ("auto", "accuracy", "auroc"):
            raise ValueError(f"{type(self).__name__}: metric must be 'auto', 'accuracy' or 'auroc', got {metric!r}")
        self.split = split
        self._metric = metric
        self._data: Data | None = None

    def load(self) -> Data:
        """The whole graph with its masks; subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement load()")

    @property
    def data(self) -> Data:
        """The graph with the selected split's ``[N]`` masks (loaded on first access)."""
        if self._data is None:
            data = self.load()
            check_graph(data.x, data.edge_index, data.y, where=type(self).__name__)
            for key in ("train_mask", "val_mask", "test_mask"):
                mask = data[key]
                if mask.dim() == 2:
                    if self.split >= mask.size(1):
                        raise ValueError(
                            f"{type(self).__name__}: split={self.split} but the graph has {mask.size(1)} splits "
                            f"(expected 0..{mask.size(1) - 1})"
                        )
                    mask = mask[:, self.split]
                if mask.shape != (data.num_nodes,):
                    raise ValueError(
                        f"{type(self).__name__}: {key} must be [N] or [N, S], got {tuple(data[key].shape)}"
                    )
                data[key] = mask.bool().contiguous()
            self._data = data
        return self._data

    @property
    def num_features(self) -> int:
        """Input width ``F``."""
        return int(self.data.x.size(-1))

    @property
    def num_classes(self) -> int:
        """Number of classes ``Q``."""
        return int(self.data.y.max()) + 1

    @property
    def metric(self) -> str:
        """``"accuracy"`` or ``"auroc"`` (resolved from ``"auto"`` by the number of classes)."""
        if self._metric == "auto":
            return "auroc" if self.num_classes == 2 else "accuracy"
        return self._metric

    def setup(self, stage: str | None = None) -> None:
        """Load the graph (once)."""
        _ = self.data

    def _loader(self) -> DataLoader:
        # One element, no batching: every step sees the whole graph (Lightning moves Data with .to()).
        return DataLoader([self.data], batch_size=None, collate_fn=_identity)

    def train_dataloader(self) -> DataLoader:
        """The graph, once per epoch."""
        return self._loader()

    def val_dataloader(self) -> DataLoader:
        """The graph (the task reads ``val_mask``)."""
        return self._loader()

    def test_dataloader(self) -> DataLoader:
        """The graph (the task reads ``test_mask``)."""
        return self._loader()

    def predict_dataloader(self) -> DataLoader:
        """The graph."""
        return self._loader()


class NodeClassificationDataModule(GraphDataModule):
    """The offline node-classification graphs by name, or any heterophilous-graphs ``.npz`` file by path.

    Names: ``cora``, ``citeseer`` (Planetoid; ``split="public"`` or a geom-gcn split index), ``texas``,
    ``cornell``, ``wisconsin`` (WebKB), ``actor``, ``minesweeper``, ``tolokers`` (HeterophilousGraphDataset),
    ``chameleon``, ``squirrel`` (``.npz``), and ``npz:<path>``. The files are copied to a temporary folder
    before loading; nothing is written under ``root``.

    Args:
        name: dataset name (case-insensitive) or ``npz:<path>``.
        root: folder holding the dataset folders (default :func:`default_root`).
        split: split index, or ``"public"`` for Planetoid's public split.
        metric: ``"auto"`` (ROC-AUC for binary graphs), ``"accuracy"`` or ``"auroc"``.
        normalize_features: divide each feature row by its sum (PyG's ``NormalizeFeatures``, the usual
            preprocessing of the Planetoid and WebKB bag-of-words features).

    Example:
        >>> dm = NodeClassificationDataModule("cora", root="data/graph")  # doctest: +SKIP
        >>> dm.num_features, dm.num_classes  # doctest: +SKIP
        (1433, 7)
    """

    def __init__(
        self,
        name: str,
        root: str | None = None,
        split: int | Literal["public"] = 0,
        metric: Metric = "auto",
        normalize_features: bool = False,
    ) -> None:
        key = name.lower()
        if not key.startswith("npz:") and key not in DATASETS:
            raise ValueError(
                f"NodeClassificationDataModule: unknown name {name!r}; expected one of "
                f"{sorted(DATASETS)} or 'npz:<path>'"
            )
        public = split == "public"
        if public and key not in ("cora", "citeseer"):
            raise ValueError(
                f"NodeClassificationDataModule: split='public' exists only for cora/citeseer, not {name!r}"
            )
        super().__init__(split=0 if public else split, metric=metric)  # type: ignore[arg-type]
        self.name = name
        self.root = Path(root) if root is not None else default_root()
        self.public = public
        self.normalize_features = normalize_features

    def load(self) -> Data:
        """Read the dataset (through a temporary copy of its folder) and optionally row-normalise features."""
        data = self._read()
        if self.normalize_features:
            data.x = data.x / data.x.sum(dim=-1, keepdim=True).clamp(min=1e-12)
        return data

    def _read(self) -> Data:
        key = self.name.lower()
        if key.startswith("npz:"):
            return load_npz_graph(self.name[4:])
        folder = self.root / DATASETS[key]
        if not folder.is_dir():
            raise _missing(folder, f"dataset folder of {self.name!r}")
        if key in ("chameleon", "squirrel"):
            return load_npz_graph(folder / "raw" / f"{key}.npz")
        with tempfile.TemporaryDirectory(prefix="domain_moe_graph_") as tmp:
            return self._load_pyg(key, folder, Path(tmp))

    def _load_pyg(self, key: str, folder: Path, tmp: Path) -> Data:
        from torch_geometric import datasets

        dataset: Any
        if key in ("cora", "citeseer"):
            name = DATASETS[key]
            if self.public:
                shutil.copytree(folder / "raw", tmp / name / "raw")
                dataset = datasets.Planetoid(str(tmp), name, split="public")
            else:
                raw = tmp / name / "geom-gcn" / "raw"
                shutil.copytree(folder / "raw", raw)
                for f in (folder / "geom-gcn-splits").glob("*.npz"):
                    shutil.copy(f, raw / f.name)
                dataset = datasets.Planetoid(str(tmp), name, split="geom-gcn")
        elif key in ("texas", "cornell", "wisconsin"):
            shutil.copytree(folder / "raw", tmp / key / "raw")
            dataset = datasets.WebKB(str(tmp), key)
        elif key == "actor":
            shutil.copytree(folder / "raw", tmp / "raw")
            dataset = datasets.Actor(str(tmp))
        else:
            shutil.copytree(folder / "raw", tmp / key / "raw")
            dataset = datasets.HeterophilousGraphDataset(str(tmp), key)
        data = dataset[0]
        return Data(
            x=data.x.float(),
            edge_index=data.edge_index,
            y=data.y.view(-1).long(),
            train_mask=data.train_mask,
            val_mask=data.val_mask,
            test_mask=data.test_mask,
        )


class ContextualSBMDataModule(GraphDataModule):
    """A generated contextual SBM graph (:func:`contextual_sbm`): the embedded default, no files needed.

    Args:
        num_nodes: ``N``.
        num_classes: ``Q``.
        num_features: ``F``.
        homophily: probability that an edge joins two nodes of the same class.
        avg_degree: mean degree.
        informative_fraction: share of nodes whose features carry the class.
        signal: scale of the class means (feature informativeness).
        num_splits: random splits generated.
        split: which split to use.
        seed: generator seed.
        metric: ``"auto"``, ``"accuracy"`` or ``"auroc"``.

    Example:
        >>> dm = ContextualSBMDataModule(num_nodes=60, num_classes=3, num_features=8)
        >>> dm.num_features, dm.num_classes, dm.metric
        (8, 3, 'accuracy')
    """

    def __init__(
        self,
        num_nodes: int = 1000,
        num_classes: int = 5,
        num_features: int = 32,
        homophily: float = 0.7,
        avg_degree: float = 10.0,
        informative_fraction: float = 0.5,
        signal: float = 1.0,
        num_splits: int = 3,
        split: int = 0,
        seed: int = 0,
        metric: Metric = "auto",
    ) -> None:
        super().__init__(split=split, metric=metric)
        self.kwargs = {
            "num_nodes": num_nodes,
            "num_classes": num_classes,
            "num_features": num_features,
            "homophily": homophily,
            "avg_degree": avg_degree,
            "informative_fraction": informative_fraction,
            "signal": signal,
            "num_splits": num_splits,
            "seed": seed,
        }

    def load(self) -> Data:
        """Generate the graph."""
        return contextual_sbm(**self.kwargs)

    @property
    def num_classes(self) -> int:
        """Number of classes ``Q`` (as generated)."""
        return int(self.kwargs["num_classes"])
