"""Done-criterion 2 of the foundation: the digits MLP reaches >= 90 % test accuracy
with either activation kind (the time is printed by `bnnforge train`, not asserted)."""
import pytest

from bnnforge.models.data import load_digits
from bnnforge.models.topologies import build_model
from bnnforge.models.train import train


@pytest.mark.parametrize("act", ["unipolar", "bipolar"])
def test_digits_mlp_reaches_90_percent(tmp_path, act):
    model = build_model("digits_mlp", act)
    res = train(model, load_digits(), tmp_path, epochs=12, batch_size=64, lr=0.01, seed=0,
                meta=model.meta(), progress=False)
    assert res["test_acc"] >= 0.90, res
