"""Where a deployment's replicas run: its Serve options from the settings' ``replicas`` and ``placement``.

Ray places an actor on any node that has the resources it asks for, and Serve caps replicas per
node with ``max_replicas_per_node``; placement only adds those two to a deployment's own options.
So Matting replicas go to the nodes that declare a custom resource (``ray start
--resources='{"matting_node": 1}'``) while the ingress and the store stay on the head, and an
empty placement leaves every deployment where it was (any node, as on one machine).
"""

from __future__ import annotations

from collections.abc import Mapping

PLACEMENT_KEYS = ("resources", "max_replicas_per_node")
DEPLOYMENT_NAMES = ("Matting", "Fusion", "Proposer", "Solver", "Refinement", "SessionStore", "APIIngress")
"""The app's deployments, by name (serve/app.py's graph): the only keys ``replicas`` and ``placement`` take."""


def check_deployment_names(setting: str, names) -> None:
    """A ValueError naming ``setting`` and the known names for names that are no deployment of the
    app (a typo, an old name), which Serve would otherwise ignore without a word."""
    unknown = sorted(set(names) - set(DEPLOYMENT_NAMES), key=str)
    if unknown:
        raise ValueError(f"{setting}: unknown deployments {unknown}; known: {sorted(DEPLOYMENT_NAMES)}")


def check_placement(placement: Mapping) -> None:
    """A ValueError for a placement Serve would refuse later, or silently ignore (a typo'd key)."""
    check_deployment_names("placement", placement)
    for name, spec in placement.items():
        if not isinstance(spec, Mapping) or set(spec) - set(PLACEMENT_KEYS):
            raise ValueError(f"placement[{name!r}]: expected a dict of {', '.join(PLACEMENT_KEYS)}, got {spec!r}")
        resources = spec.get("resources", {})
        if not isinstance(resources, Mapping) or any(
            not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0 for v in resources.values()
        ):
            raise ValueError(
                f"placement[{name!r}].resources: expected {{resource name: positive amount}}, got {resources!r}"
            )
        per_node = spec.get("max_replicas_per_node", 1)
        if not isinstance(per_node, int) or isinstance(per_node, bool) or per_node < 1:
            raise ValueError(f"placement[{name!r}].max_replicas_per_node must be a positive integer, got {per_node!r}")


def actor_options(deployment, settings, base: Mapping | None = None) -> dict:
    """``base`` (default: the deployment's own ``ray_actor_options``) with the placement's resources
    added: ``options(ray_actor_options=...)`` replaces the whole dict, so the CPUs must stay in it."""
    options = dict(deployment.ray_actor_options if base is None else base)
    extra = settings.placement.get(deployment.name, {}).get("resources")
    if extra:
        options["resources"] = {**options.get("resources", {}), **extra}
    return options


def deployment_options(deployment, settings, base_actor_options: Mapping | None = None) -> dict:
    """The keyword arguments of ``deployment.options(...)`` for ``settings``: its replica count, its
    placement, and ``base_actor_options`` (replacing the decorator's, e.g. the ingress's environment)."""
    name = deployment.name
    options: dict = {}
    if name in settings.replicas:
        options["num_replicas"] = settings.replicas[name]
    placed = settings.placement.get(name, {})
    if "max_replicas_per_node" in placed:
        options["max_replicas_per_node"] = placed["max_replicas_per_node"]
    if "resources" in placed or base_actor_options is not None:
        options["ray_actor_options"] = actor_options(deployment, settings, base_actor_options)
    return options
