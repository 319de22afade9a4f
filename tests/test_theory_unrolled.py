"""The unrolled GAN: the look-ahead moves only a copy of D and follows D's own optimiser; G's gradient through the
unrolled copy (first-order, and exact: through the K updates) matches the same objective written in torch
(float64)."""
import contextlib
import copy

import numpy as np
import pytest
import torch

import fastgan
from fastgan import functional as F
from fastgan import optim
from fastgan.gan import frozen, simultaneous_step
from fastgan.models.toy import toy_gan
from fastgan.theory.tensor_optim import tensor_steps
from fastgan.theory.unrolled import (ExactLookAhead, FirstOrderLookAhead, check_unroll_mode, discriminator_loss,
                                     make_look_ahead, unrolled_step)

NZ, HIDDEN, BATCH, LR_D, LR_G, BETAS = 5, 8, 6, 1e-2, 1e-2, (0.5, 0.999)


def players(seed=0):
    fastgan.manual_seed(seed)
    G, D = toy_gan(NZ, 2, HIDDEN)
    G.double()
    D.double()
    return G, D, optim.Adam(G.parameters(), LR_G, BETAS), optim.Adam(D.parameters(), LR_D, BETAS)


def batch(seed):
    rng = np.random.default_rng(seed)
    return fastgan.tensor(rng.standard_normal((BATCH, 2))), fastgan.tensor(rng.standard_normal((BATCH, NZ)))


def d_steps(D, opt_d, G, seeds):
    """A few plain D steps, so that D's Adam has moments and a step count the look-ahead must carry on from."""
    for s in seeds:
        real, z = batch(s)
        opt_d.zero_grad()
        discriminator_loss(D, real, G(z).detach())[0].backward()
        opt_d.step()


def snapshot(D, opt_d):
    return D.state_dict(), copy.deepcopy(opt_d.state_dict())


def test_look_ahead_leaves_the_real_d_and_its_optimiser_unchanged():
    G, D, _, opt_d = players()
    d_steps(D, opt_d, G, [1, 2])
    weights, state = snapshot(D, opt_d)
    real, z = batch(3)
    critic = FirstOrderLookAhead(D, opt_d)(real, G(z), 5)
    for name, w in D.state_dict().items():
        np.testing.assert_array_equal(w, weights[name], err_msg=name)
        assert not np.array_equal(critic.state_dict()[name], w), f"the copy did not move: {name}"
    for before, after in zip(state["state"], opt_d.state_dict()["state"]):
        assert before["step"] == after["step"] == 2
        np.testing.assert_array_equal(before["exp_avg"], after["exp_avg"])


def test_d_takes_its_own_step_whatever_g_looks_ahead_to():
    """D's update is the un-unrolled one: the same after a K = 5 step as after a vanilla step on the same batch."""
    after = []
    for unroll in (0, 5):
        G, D, opt_g, opt_d = players()
        real, z = batch(4)
        look_ahead = make_look_ahead(D, opt_d, "first-order")
        unrolled_step(G, D, opt_g, opt_d, real, z, unroll, look_ahead)
        after.append((D.state_dict(), G.state_dict()))
    for name in after[0][0]:
        np.testing.assert_array_equal(after[0][0][name], after[1][0][name], err_msg=name)
    assert any(not np.allclose(after[0][1][n], after[1][1][n]) for n in after[0][1]), "G ignored the look-ahead"


def test_vanilla_step_is_the_simultaneous_step():
    results = []
    for step in ("unrolled", "simultaneous"):
        G, D, opt_g, opt_d = players()
        real, z = batch(5)
        if step == "unrolled":
            unrolled_step(G, D, opt_g, opt_d, real, z, 0)
        else:
            simultaneous_step(G, D, opt_g, opt_d, real, z, g_loss="minimax")
        results.append({**G.state_dict(), **{"D." + k: v for k, v in D.state_dict().items()}})
    for name in results[0]:
        np.testing.assert_allclose(results[0][name], results[1][name], rtol=1e-12, atol=1e-14, err_msg=name)


def torch_mlp(module):
    """The same tanh MLP in torch, with the module's weights (float64)."""
    weights = [torch.tensor(p.data.copy()) for p in module.parameters()]
    layers = []
    for i in range(0, len(weights), 2):
        linear = torch.nn.Linear(weights[i].shape[1], weights[i].shape[0]).double()
        with torch.no_grad():
            linear.weight.copy_(weights[i])
            linear.bias.copy_(weights[i + 1])
        layers += [linear, torch.nn.Tanh()]
    return torch.nn.Sequential(*layers[:-1])


def torch_d_loss(D, real, fake):
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    real_logits, fake_logits = D(real), D(fake)
    return bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))


@pytest.mark.parametrize("unroll", [1, 3, 5])
def test_first_order_g_gradient_matches_torch(unroll):
    G, D, _, opt_d = players()
    G_t, D_t = torch_mlp(G), torch_mlp(D)
    opt_t = torch.optim.Adam(D_t.parameters(), LR_D, BETAS)
    d_steps(D, opt_d, G, [1, 2])
    for s in (1, 2):
        real, z = batch(s)
        opt_t.zero_grad()
        torch_d_loss(D_t, torch.tensor(real.numpy()), G_t(torch.tensor(z.numpy())).detach()).backward()
        opt_t.step()

    real, z = batch(7)
    critic = FirstOrderLookAhead(D, opt_d)(real, G(z), unroll)
    G.zero_grad()
    loss = -F.binary_cross_entropy_with_logits(critic(G(z)), 0.0)  # the minimax cost
    loss.backward()

    # torch: copy D and its Adam, `unroll` steps on the copy, then G's minimax cost against the copy, held constant
    D_k = copy.deepcopy(D_t)
    opt_k = torch.optim.Adam(D_k.parameters(), LR_D, BETAS)
    opt_k.load_state_dict(opt_t.state_dict())
    real_t, z_t = torch.tensor(real.numpy()), torch.tensor(z.numpy())
    fake_t = G_t(z_t)
    for _ in range(unroll):
        opt_k.zero_grad()
        torch_d_loss(D_k, real_t, fake_t.detach()).backward()
        opt_k.step()
    for p in D_k.parameters():
        p.requires_grad_(False)
    logits = D_k(fake_t)
    loss_t = -torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))
    loss_t.backward()

    ours = [p.data for p in critic.parameters()]
    theirs = [p.detach().numpy() for p in D_k.parameters()]
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert loss.item() == pytest.approx(loss_t.item(), rel=1e-12)
    for p, q in zip(G.parameters(), G_t.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_unknown_unroll_mode_is_refused():
    with pytest.raises(ValueError, match="unknown unroll mode 'second-order'"):
        check_unroll_mode("second-order")
    G, D, opt_g, opt_d = players()
    with pytest.raises(ValueError, match="needs a look_ahead"):
        unrolled_step(G, D, opt_g, opt_d, *batch(0), unroll=2)
    with pytest.raises(TypeError, match="exact look-ahead runs D from a list of weights.*got Sequential"):
        ExactLookAhead(fastgan.nn.Sequential(fastgan.nn.Linear(2, 1)), opt_d)
    with pytest.raises(TypeError, match="no tensor-op steps for optimiser object: expected one of"):
        tensor_steps(object())


def trained_players(seed=0):
    """Players whose D has taken two Adam steps (moments and a step count to carry on from), and torch copies."""
    G, D, opt_g, opt_d = players(seed)
    d_steps(D, opt_d, G, [1, 2])
    return G, D, opt_g, opt_d


@pytest.mark.parametrize("unroll", [1, 2, 3, 4, 5])
def test_exact_look_ahead_weights_are_the_optimisers(unroll):
    """The tensor-op Adam steps land on the weights D's own Adam (the first-order look-ahead) reaches."""
    G, D, _, opt_d = trained_players()
    real, z = batch(7)
    fake = G(z)
    weights = ExactLookAhead(D, opt_d)(real, fake, unroll).args[0]   # the critic: forward_with(weights, ·)
    plain = FirstOrderLookAhead(D, opt_d)(real, fake, unroll)
    for w, p in zip(weights, plain.parameters()):
        np.testing.assert_allclose(w.numpy(), p.data, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("momentum, nesterov, weight_decay", [(0.0, False, 0.0), (0.9, False, 1e-2), (0.9, True, 0.0)])
def test_tensor_sgd_steps_are_the_optimisers(momentum, nesterov, weight_decay):
    fastgan.manual_seed(0)
    D = toy_gan(NZ, 2, HIDDEN)[1].double()
    opt = optim.SGD(D.parameters(), 0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    grads = [[fastgan.tensor(np.random.default_rng(s).standard_normal(p.shape)) for p in D.parameters()]
             for s in range(3)]
    opt.zero_grad()
    for p, g in zip(D.parameters(), grads[0]):
        p.grad = g
    opt.step()                                   # one real step first: the tensor steps carry on its momentum
    steps, weights = tensor_steps(opt), [fastgan.tensor(p.data) for p in D.parameters()]
    for gs in grads[1:]:
        weights = steps(weights, gs)
        for p, g in zip(D.parameters(), gs):
            p.grad = g
        opt.step()
    for w, p in zip(weights, D.parameters()):
        np.testing.assert_allclose(w.numpy(), p.data, rtol=1e-12, atol=1e-14)


def torch_exact_g_grads(G, D, opt_d, real, z, unroll):
    """G's gradient of the minimax cost against θ_D^unroll, differentiated through the unroll Adam steps (torch)."""
    G_t = torch_mlp(G)
    weights = [torch.tensor(p.data.copy(), requires_grad=True) for p in D.parameters()]
    moments = [(torch.tensor(s["exp_avg"]), torch.tensor(s["exp_avg_sq"]), s["step"]) for s in opt_d.state]
    lr, (b1, b2), eps = opt_d.lr, opt_d.betas, opt_d.eps

    def critic(ws, x):
        for i in range(0, len(ws), 2):
            x = torch.nn.functional.linear(x, ws[i], ws[i + 1])
            x = torch.tanh(x) if i + 2 < len(ws) else x
        return x

    fake = G_t(torch.tensor(z.numpy()))
    for _ in range(unroll):
        loss = torch_d_loss(lambda x: critic(weights, x), torch.tensor(real.numpy()), fake)
        grads = torch.autograd.grad(loss, weights, create_graph=True)
        new_weights, new_moments = [], []
        for w, g, (m, v, t) in zip(weights, grads, moments):
            t += 1
            m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
            new_weights.append(w - lr / (1 - b1 ** t) * m / (torch.sqrt(v) / (1 - b2 ** t) ** 0.5 + eps))
            new_moments.append((m, v, t))
        weights, moments = new_weights, new_moments
    logits = critic(weights, fake)
    (-torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))).backward()
    return [p.grad.numpy() for p in G_t.parameters()]


@pytest.mark.parametrize("unroll", [1, 2, 3, 4, 5])
def test_exact_g_gradient_matches_torch(unroll):
    G, D, opt_g, opt_d = trained_players()
    real, z = batch(7)
    fake = G(z)
    critic = ExactLookAhead(D, opt_d)(real, fake, unroll)
    G.zero_grad()
    (-F.binary_cross_entropy_with_logits(critic(fake), 0.0)).backward()
    for p, expected in zip(G.parameters(), torch_exact_g_grads(G, D, opt_d, real, z, unroll)):
        np.testing.assert_allclose(p.grad.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_exact_and_first_order_g_gradients_differ():
    """The second-order term is there: through the K updates G's gradient is not the first-order one."""
    grads = {}
    for mode in ("first-order", "exact"):
        G, D, opt_g, opt_d = trained_players()
        real, z = batch(7)
        fake = G(z)
        critic = make_look_ahead(D, opt_d, mode)(real, fake, 3)
        G.zero_grad()
        with frozen(critic) if mode == "first-order" else contextlib.nullcontext():
            (-F.binary_cross_entropy_with_logits(critic(fake), 0.0)).backward()
        grads[mode] = np.concatenate([p.grad.numpy().ravel() for p in G.parameters()])
    assert not np.allclose(grads["first-order"], grads["exact"], rtol=1e-3)


def test_exact_g_step_leaves_the_real_d_unchanged():
    """An exact K = 5 step moves D only by D's own (un-unrolled) step: the same D as after a vanilla step."""
    after = {}
    for unroll, mode in ((0, None), (5, "exact")):
        G, D, opt_g, opt_d = trained_players()
        real, z = batch(4)
        look_ahead = make_look_ahead(D, opt_d, mode) if unroll else None
        before = D.state_dict()
        unrolled_step(G, D, opt_g, opt_d, real, z, unroll, look_ahead)
        after[mode] = D.state_dict(), G.state_dict(), before
    for name in after[None][0]:
        np.testing.assert_array_equal(after[None][0][name], after["exact"][0][name], err_msg=name)
        np.testing.assert_array_equal(after[None][2][name], after["exact"][2][name], err_msg=name)
    assert any(not np.allclose(after[None][1][n], after["exact"][1][n]) for n in after[None][1])
