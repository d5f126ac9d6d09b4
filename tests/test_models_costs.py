"""Exit heads, attaching exits to existing models, and FLOP/parameter accounting."""

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from eekit.costs import count_flops, exit_costs, measure_latency
from eekit.models import EarlyExitNet, ExitHeads, SharedExitHead, attach_exits, branchy_lenet, pooled_head, resnet_ee


def tiny_net():
    stages = [nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)]
    heads = [pooled_head(8, 5), pooled_head(4, 5)]
    return EarlyExitNet(stages, ExitHeads(heads))


def test_flops_match_hand_count():
    # conv 3->8, 3x3, on 16x16 output: 2 * (8*16*16) * (3*9) multiply-adds
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_flops(conv, torch.zeros(1, 3, 16, 16)) == 2 * 8 * 16 * 16 * 3 * 9
    lin = nn.Linear(10, 4)
    assert count_flops(lin, torch.zeros(1, 10)) == 2 * 10 * 4


def test_cumulative_costs_include_every_head_on_the_way():
    costs = exit_costs(tiny_net(), torch.zeros(1, 3, 16, 16))
    s0, s1 = 2 * 8 * 256 * 27, 2 * 4 * 256 * 72
    h0, h1 = 2 * 8 * 5, 2 * 4 * 5
    assert costs.stage_flops.tolist() == [s0, s1]
    assert costs.head_flops.tolist() == [h0, h1]
    assert costs.cumulative_flops.tolist() == [s0 + h0, s0 + h0 + s1 + h1]
    assert costs.full_model_flops == s0 + s1 + h1
    assert costs.params.tolist() == [3 * 8 * 9 + 8 + 8 * 5 + 5, 3 * 8 * 9 + 8 + 8 * 5 + 5 + 8 * 4 * 9 + 4 + 4 * 5 + 5]


def test_max_pooled_head_keeps_a_4x4_layout_and_rejects_unknown_pooling():
    head = pooled_head(2, 3, pool_size=4, pool="max")
    x = torch.zeros(1, 2, 8, 8)
    x[0, 0, 0, 0] = 5.0  # one strong local activation survives max pooling, averaging would dilute it 4x
    assert head[0](x)[0, 0, 0, 0] == 5.0 and head[0](x).shape == (1, 2, 4, 4)
    assert head[-1].in_features == 2 * 16
    with pytest.raises(ValueError, match="'avg' or 'max'"):
        pooled_head(2, 3, pool="median")


def test_resnet_first_exit_is_cheap():
    # the first stage pools before it widens: exit 1 costs under 10 % of the plain model, the later stages ~23 % each
    costs = exit_costs(resnet_ee(width=24), torch.zeros(1, 3, 32, 32))
    share = costs.cumulative_flops / costs.full_model_flops
    assert share[0] < 0.10 and np.all(np.diff(share) > 0.2)


def test_latency_is_measured_per_exit_and_grows_with_depth():
    ms = measure_latency(resnet_ee(width=8), torch.rand(1, 3, 32, 32), repeats=5, warmup=1)
    assert ms.shape == (5,) and (ms > 0).all() and np.all(np.diff(ms) >= 0)


def test_forward_returns_every_exit_and_forward_to_matches():
    torch.manual_seed(0)
    for model, x in ((branchy_lenet(), torch.rand(4, 1, 28, 28)), (resnet_ee(width=8), torch.rand(4, 3, 32, 32))):
        model.eval()
        outs = model(x)
        assert len(outs) == model.num_exits and all(o.shape == (4, 10) for o in outs)
        for k in range(model.num_exits):
            assert torch.allclose(model.forward_to(x, k), outs[k], atol=1e-6)


def test_shared_head_zero_fills_features_not_computed_yet():
    head = SharedExitHead([2, 3], num_classes=4, pool_size=1, dropout=0.0)
    f0 = torch.ones(1, 2, 4, 4)
    with torch.no_grad():
        out = head(0, [f0])
        w = head.linear.weight
        expected = w[:, :2].sum(1) + head.linear.bias  # features of exit point 1 are zeros
    assert torch.allclose(out[0], expected)
    with pytest.raises(ValueError, match="needs the features"):
        head(1, [f0])


def test_attach_exits_to_torchvision_resnet18_keeps_its_output():
    torch.manual_seed(0)
    base = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.rand(2, 3, 64, 64)
    ee = attach_exits(base, ["layer1", "layer2", "layer3"], num_classes=10, example_input=x)
    assert ee.num_exits == 4 and ee.exit_names == ["layer1", "layer2", "layer3", "final"]
    with torch.no_grad():
        assert torch.allclose(ee(x)[-1], base(x), atol=1e-5)
    assert ee.stages[0][0] is base.conv1  # shared weights, not copies
    shared = attach_exits(base, ["layer2", "layer3"], 10, x, shared_head=True)
    with torch.no_grad():
        assert [o.shape for o in shared(x)] == [(2, 10)] * 3


def test_attach_exits_to_a_sequential():
    seq = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 3))
    ee = attach_exits(seq, ["1", "3"], 3, torch.rand(2, 1, 12, 12))
    assert ee.num_exits == 3


def test_attach_exits_explains_bad_requests():
    base = torchvision.models.resnet18(num_classes=10)
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="no top-level layer named .*layer9.*choose from"):
        attach_exits(base, ["layer9"], 10, x)
    with pytest.raises(ValueError, match="forward order"):
        attach_exits(base, ["layer3", "layer1"], 10, x)
    with pytest.raises(ValueError, match="num_classes"):
        attach_exits(base, ["layer1"], 7, x)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 16), nn.ReLU(), nn.Linear(16, 10))
    with pytest.raises(ValueError, match="conv features"):
        attach_exits(mlp, ["1"], 10, x)

    class NotAChain(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 3, 1)
            self.b = nn.Conv2d(3, 3, 1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc((self.a(x) + self.b(x)).mean((2, 3)))  # parallel branches, not a chain

    with pytest.raises(ValueError, match="not a plain chain"):
        attach_exits(NotAChain(), ["a"], 2, x)


def test_bad_shapes_are_explained():
    with pytest.raises(ValueError, match=r"expected images \[N, 1, H, W\]"):
        branchy_lenet()(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="every stage needs exactly one exit"):
        EarlyExitNet([nn.Identity()], ExitHeads([nn.Identity(), nn.Identity()]))
