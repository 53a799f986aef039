"""The Muon + AdamW optimizer against torch's own AdamW and Muon, and how it splits a network."""

import pytest
import torch

from vidiff.build import build_denoiser
from vidiff.cli import _config_path
from vidiff.config import load_config
from vidiff.training.optim import MuonAdamW, muon_groups, orthogonalize


def _steps(opt_a, opt_b, pa, pb, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        grad = torch.randn(pa.shape, generator=g)
        pa.grad, pb.grad = grad.clone(), grad.clone()
        opt_a.step()
        opt_b.step()


def test_adamw_groups_match_torch_adamw():
    pa = torch.nn.Parameter(torch.randn(7, 5, 3))
    pb = torch.nn.Parameter(pa.detach().clone())
    ref = torch.optim.AdamW([pa], lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)
    ours = MuonAdamW([{"params": [pb]}], lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)
    _steps(ref, ours, pa, pb)
    torch.testing.assert_close(pb, pa, rtol=1e-6, atol=1e-7)


def _newton_schulz_reference(g, steps=5):
    # The plain iteration (Jordan et al. 2024) in fp64: X <- aX + (bA + cA^2)X with A = XX^T
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.double() / g.double().norm()
    for _ in range(steps):
        A = x @ x.T
        x = a * x + (b * A + c * A @ A) @ x
    return x


@pytest.mark.parametrize("shape", [(12, 30), (30, 12), (16, 16), (8, 72)])
def test_orthogonalize_matches_the_plain_newton_schulz_iteration(shape):
    g = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    expect = _newton_schulz_reference(g if shape[0] <= shape[1] else g.T)
    expect = expect if shape[0] <= shape[1] else expect.T
    torch.testing.assert_close(orthogonalize(g).double(), expect, rtol=0, atol=2e-5)
    s = torch.linalg.svdvals(orthogonalize(g))  # nearly orthogonal: singular values near 1
    assert s.min() > 0.5 and s.max() < 1.3


def test_muon_groups_match_torch_muon_on_matrices():
    # torch.optim.Muon takes 2-D parameters only and runs Newton-Schulz in bf16: the same steps to bf16's precision
    pa = torch.nn.Parameter(torch.randn(12, 30))
    pb = torch.nn.Parameter(pa.detach().clone())
    start = pa.detach().clone()
    ref = torch.optim.Muon([pa], lr=1e-2, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    ours = MuonAdamW([{"params": [pb], "muon": True}], lr=1e-2, weight_decay=0.1)
    _steps(ref, ours, pa, pb)
    moved_ref, moved_ours = pa.detach() - start, pb.detach() - start
    assert (moved_ours - moved_ref).norm() < 0.02 * moved_ref.norm()


def test_conv_weights_step_as_their_out_by_rest_matrix():
    w = torch.nn.Parameter(torch.zeros(8, 4, 3, 1, 1))
    opt = MuonAdamW([{"params": [w], "muon": True}], lr=1.0, momentum=0.0, nesterov=False)
    w.grad = torch.randn(8, 4, 3, 1, 1)
    opt.step()
    expect = -0.2 * 12 ** 0.5 * orthogonalize(w.grad.reshape(8, 12))
    torch.testing.assert_close(w.detach().reshape(8, 12), expect)


def test_muon_takes_hidden_matrices_and_adamw_the_rest():
    cfg = load_config(_config_path("demo"))
    net = build_denoiser(cfg).net
    hidden, rest = muon_groups(net)
    names = {id(p): n for n, p in net.named_parameters()}
    hidden_names = {names[id(p)] for p in hidden["params"]}
    rest_names = {names[id(p)] for p in rest["params"]}
    assert hidden["muon"] and not rest["muon"]
    assert "mid1.conv1.spatial.weight" in hidden_names and "down.0.blocks.0.1.qkv.weight" in hidden_names
    for name in ("label_emb.weight", "pixel_in.weight", "pixel_out.weight", "conv_in.spatial.weight",
                 "conv_out.spatial.weight", "mid1.norm1.weight", "mid1.conv1.spatial.bias"):
        assert name in rest_names
    assert len(hidden_names) + len(rest_names) == len(names)
    with pytest.raises(ValueError, match="weight matrices"):
        MuonAdamW([{"params": [torch.nn.Parameter(torch.zeros(3))], "muon": True}])
