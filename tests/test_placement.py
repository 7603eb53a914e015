"""The ``placement`` setting: where replicas may run (serve/placement.py); the cluster itself is
tests/test_serve_cluster.py."""

import json

import pytest

from serve.deployments import Matting, SessionStore
from serve.placement import deployment_options
from serve.settings import ServeSettings


def test_without_placement_every_deployment_keeps_its_own_options():
    """The single-node default: nothing asked of the nodes, only the replica counts given."""
    s = ServeSettings(replicas={"Matting": 2})
    assert deployment_options(Matting, s) == {"num_replicas": 2}
    assert deployment_options(SessionStore, s) == {}
    assert deployment_options(SessionStore, s, {"num_cpus": 0.3}) == {"ray_actor_options": {"num_cpus": 0.3}}


def test_placement_adds_node_resources_and_a_per_node_cap_to_the_deployment():
    s = ServeSettings.from_args(
        {"placement": '{"Matting": {"resources": {"matting_node": 1}, "max_replicas_per_node": 1}}'}
    )
    options = deployment_options(Matting, s)
    assert options["max_replicas_per_node"] == 1
    placed = Matting.options(**options)
    assert placed.ray_actor_options == {**Matting.ray_actor_options, "resources": {"matting_node": 1}}  # its CPUs kept
    assert deployment_options(SessionStore, s) == {}


def test_the_ingress_environment_and_the_placement_both_reach_its_actor():
    s = ServeSettings(placement={"APIIngress": {"resources": {"head": 0.01}}})
    from serve.app import APIIngress, ingress_options

    actor = deployment_options(APIIngress, s, ingress_options(s))["ray_actor_options"]
    assert actor["resources"] == {"head": 0.01} and actor["runtime_env"] == ingress_options(s)["runtime_env"]


@pytest.mark.parametrize(
    "placement",
    [
        {"Matting": {"resource": {"x": 1}}},  # a typo Serve would never see
        {"Matting": {"resources": {"x": 0}}},
        {"Matting": {"resources": ["x"]}},
        {"Matting": {"max_replicas_per_node": 0}},
        {"Matting": 1},
    ],
)
def test_a_placement_serve_would_refuse_or_ignore_fails_at_build_time(placement):
    with pytest.raises(ValueError, match="placement"):
        ServeSettings(placement=placement)


@pytest.mark.parametrize("setting", ["replicas", "placement"])
@pytest.mark.parametrize("name", ["Proposal", "Solve", "matting"])  # the old names of Proposer and Solver, a typo
def test_a_name_that_is_no_deployment_is_refused_with_the_names_there_are(setting, name):
    """Serve would ignore it without a word: the replicas never counted, the replicas placed anywhere."""
    value = {name: 2} if setting == "replicas" else {name: {"resources": {"head": 0.01}}}
    with pytest.raises(ValueError) as err:
        ServeSettings.from_args({setting: json.dumps(value)}, environ={})
    known = "['APIIngress', 'Fusion', 'Matting', 'Proposer', 'Refinement', 'SessionStore', 'Solver']"
    assert str(err.value) == f"{setting}: unknown deployments [{name!r}]; known: {known}"


def test_the_settings_know_every_deployment_of_the_app_by_its_name():
    from serve.app import DEPLOYMENTS
    from serve.placement import DEPLOYMENT_NAMES

    assert DEPLOYMENT_NAMES == tuple(d.name for d in DEPLOYMENTS)
    s = ServeSettings(
        replicas={"Proposer": 2, "Solver": 3},
        placement={name: {"resources": {"head": 0.01}} for name in DEPLOYMENT_NAMES},
    )
    assert [deployment_options(d, s).get("num_replicas") for d in DEPLOYMENTS] == [None, None, 2, 3, None, None, None]
