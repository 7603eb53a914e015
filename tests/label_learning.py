"""The "learns to follow labels" check every backbone must pass, written once (tests/test_models.py
and tests/test_modnet.py call it)."""

import torch

from dugray.nig import nig_loss


def follows_labels_after_training(net, steps: int, size: int, k: int, extra_loss=None) -> tuple[float, float]:
    """Train ``net`` for ``steps`` Adam steps on uninformative noise images whose alpha is the
    fg-labelled square (only the labels can tell), then return the mean gamma inside and outside
    the labelled squares of a fresh batch. ``extra_loss(net_out, aux, alpha, image)`` adds a
    backbone's own losses (its forward then takes ``return_aux=True``)."""
    g = torch.Generator().manual_seed(1)

    def batch(n=4):
        user = torch.zeros(n, 1, size, size)
        for i in range(n):
            y0, x0 = torch.randint(0, size - k, (2,), generator=g).tolist()
            user[i, :, y0 : y0 + k, x0 : x0 + k] = 1
        return torch.rand(n, 3, size, size, generator=g), user, (user > 0).float()

    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    for _ in range(steps):
        image, user, alpha = batch()
        if extra_loss is None:
            loss = nig_loss(alpha, net(image, user))
        else:
            nig, aux = net(image, user, return_aux=True)
            loss = nig_loss(alpha, nig) + extra_loss(nig, aux, alpha, image)
        opt.zero_grad()
        loss.backward()
        opt.step()
    image, user, alpha = batch()
    with torch.no_grad():
        gamma = net.eval()(image, user).gamma
    return float(gamma[alpha > 0].mean()), float(gamma[alpha == 0].mean())
