"""Named batches: how datasets name their fields, what reaches the loss, class-conditional DSM, validation."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

import genflow as gf
from genflow.data import NamedTensorDataset, load_digits_split
from genflow.errors import ConfigError, ShapeError
from genflow.objectives import DenoisingScoreMatching, Objective
from genflow.train import Trainer
from genflow.train.batches import fetch_batch
from tests.train._ddp_script import TinyNet

G = torch.Generator().manual_seed(0)
X, LABELS, W = torch.randn(64, 2, generator=G), torch.randint(0, 3, (64,), generator=G), torch.rand(64, generator=G)


class Items(Dataset):
    """Items built by a function of the index (no ``tensors`` attribute: read one by one and collated)."""

    def __init__(self, item, fields=None):
        self.item = item
        if fields is not None:
            self.fields = fields

    def __len__(self):
        return 64

    def __getitem__(self, i):
        return self.item(i)


INDICES = torch.tensor([5, 0, 17])


@pytest.mark.parametrize(
    "dataset,expected",
    [
        (TensorDataset(X), {"x": X}),
        (TensorDataset(X, LABELS), {"x": X, "label": LABELS}),
        (NamedTensorDataset(x=X, label=LABELS, weight=W), {"x": X, "label": LABELS, "weight": W}),
        (Items(lambda i: X[i]), {"x": X}),
        (Items(lambda i: (X[i], int(LABELS[i]))), {"x": X, "label": LABELS}),
        (Items(lambda i: {"x": X[i], "weight": W[i]}), {"x": X, "weight": W}),
        (Items(lambda i: (W[i], X[i], LABELS[i]), fields=("weight", "x", "label")),
         {"x": X, "label": LABELS, "weight": W}),
        (load_digits_split("val"), None),
    ],
)  # fmt: skip
def test_datasets_name_their_fields(dataset, expected):
    batch = fetch_batch(dataset, INDICES)
    if expected is None:  # an ImageTensorDataset: (image, label)
        expected = {"x": dataset.images, "label": dataset.labels}
    assert set(batch) == set(expected)
    for name, value in expected.items():
        assert torch.equal(batch[name], value[INDICES]), name
        assert batch[name].dtype == value.dtype or name == "label"  # ints collated from Python become int64
    assert batch.get("label", torch.zeros(1, dtype=torch.int64)).dtype == torch.int64


def test_unnamed_or_bad_fields_are_refused():
    with pytest.raises(ConfigError, match="3-tuples: name them"):
        fetch_batch(TensorDataset(X, LABELS, W), INDICES)
    with pytest.raises(ConfigError, match="names 2 fields"):
        fetch_batch(Items(lambda i: (X[i], LABELS[i], W[i]), fields=("x", "label")), INDICES)
    with pytest.raises(ConfigError, match="distinct field names"):
        fetch_batch(Items(lambda i: (X[i], W[i]), fields=("x", "x")), INDICES)
    with pytest.raises(ConfigError, match="must collate to a tensor"):
        fetch_batch(Items(lambda i: (X[i], "seven")), INDICES)
    with pytest.raises(ShapeError, match="same number of examples"):
        NamedTensorDataset(x=X, label=LABELS[:10])
    with pytest.raises(ShapeError, match="at least one"):
        NamedTensorDataset()
    with pytest.raises(ShapeError, match="field 'x' must be a tensor"):
        NamedTensorDataset(x=[1.0, 2.0])


class Recorder(Objective):
    """Records the batches it is given; the loss is a plain regression so that training runs."""

    fields = ("x", "label", "weight")

    def __init__(self):
        self.seen = []

    def draw(self, n, shapes, generator, *, dtype, device):
        self.shapes = dict(shapes)
        return {"t": torch.rand(n, generator=generator, dtype=dtype).to(device)}

    def loss(self, model, batch, draws):
        self.seen.append({k: v.clone() for k, v in batch.items()})
        error = (model(batch["x"], draws["t"], cond=batch["label"]) - batch["x"]).pow(2).mean(1)
        return (batch["weight"] * error).mean()


def test_the_whole_batch_reaches_the_loss_with_dtypes_kept():
    data = NamedTensorDataset(x=X, label=LABELS, weight=W)  # float32 fields, a float64 model
    objective = Recorder()
    torch.manual_seed(0)
    Trainer(TinyNet(num_classes=3).double(), objective, steps=3, batch_size=16, progress=False, ema_decay=0).fit(data)
    assert objective.shapes == {"x": (2,), "label": (), "weight": ()}
    seen_x = torch.cat([b["x"] for b in objective.seen])
    for batch in objective.seen:
        assert batch["x"].dtype == batch["weight"].dtype == torch.float64 and batch["label"].dtype == torch.int64
        # every field comes from the same examples: find each x row in the data and compare the other fields
        rows = [int((X.double() == row).all(1).nonzero()) for row in batch["x"]]
        assert torch.equal(batch["label"], LABELS[rows]) and torch.equal(batch["weight"], W[rows].double())
    assert len(set(map(tuple, seen_x.tolist()))) == 48  # three disjoint batches of one epoch's permutation


def test_missing_fields_are_named_before_training():
    with pytest.raises(ConfigError, match=r"reads the batch fields \('x', 'label', 'weight'\).*missing weight"):
        Trainer(TinyNet(3).double(), Recorder(), steps=1, batch_size=8, progress=False).fit(TensorDataset(X, LABELS))
    with pytest.raises(ConfigError, match="missing label"):
        objective = DenoisingScoreMatching("vp", cond_field="label")
        Trainer(TinyNet().double(), objective, steps=1, batch_size=8, progress=False).fit(TensorDataset(X))
    with pytest.raises(ConfigError, match="cond_field"):
        DenoisingScoreMatching("vp", cond_field="")


class CondSpy(TinyNet):
    def forward(self, x, t, *, cond=None, exit=None):
        self.conds.append(cond)
        return super().forward(x, t, cond=cond)


def test_class_conditional_dsm_passes_the_label_field_as_cond():
    torch.manual_seed(0)
    model = CondSpy(num_classes=3).double()
    model.conds = []
    objective = gf.DenoisingScoreMatching("vp", cond_field="label")
    assert objective.fields == ("x", "label") and gf.DenoisingScoreMatching("vp").fields == ("x",)
    Trainer(model, objective, steps=2, batch_size=32, progress=False).fit(TensorDataset(X, LABELS))
    assert all(c.dtype == torch.int64 and c.shape == (32,) and set(c.tolist()) <= {0, 1, 2} for c in model.conds)
    clone = gf.OBJECTIVES.from_config(objective.to_config())
    assert clone.cond_field == "label" and gf.FlowMatching(cond_field="label").fields == ("x", "label")


class MeanAbsError(Objective):
    """Deterministic validation metric: |model(x, 1/2) - x| per example (an independent oracle computes it)."""

    def draw(self, n, shapes, generator, *, dtype, device):
        return {"t": torch.rand(n, generator=generator, dtype=dtype).to(device)}

    def loss(self, model, batch, draws):
        return (model(batch["x"], draws["t"]) - batch["x"]).pow(2).mean()

    def metrics(self, model, batch):
        t = torch.full((len(batch["x"]),), 0.5, dtype=batch["x"].dtype)
        return {"mae": (model(batch["x"], t) - batch["x"]).abs().mean(1)}


def test_validation_averages_metrics_over_the_whole_set_with_the_ema_model(tmp_path):
    valid = TensorDataset(torch.randn(37, 2, generator=torch.Generator().manual_seed(5)))  # 37: a partial batch
    torch.manual_seed(0)
    trainer = Trainer(TinyNet().double(), MeanAbsError(), out_dir=tmp_path, steps=6, batch_size=16, validation=valid,
                      validate_every=4, ema_decay=0.9, log_every=2, progress=False)  # fmt: skip
    result = trainer.fit(TensorDataset(X))
    assert [r["step"] for r in result.validation] == [4, 6]
    x = valid.tensors[0].double()
    with torch.no_grad():
        expected = (trainer.ema(x, torch.full((37,), 0.5, dtype=x.dtype)) - x).abs().mean()
    assert result.validation[-1]["val_mae"] == pytest.approx(float(expected), rel=1e-12)
    assert trainer.model.training and not trainer.ema.training
    logged = (tmp_path / "metrics.jsonl").read_text()
    assert logged.count("val_mae") == 2
