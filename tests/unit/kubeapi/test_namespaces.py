"""A namespace carries kubernetes.io/metadata.name = its name, as upstream's API sets it:
a NetworkPolicy's namespaceSelector picks namespaces by name through it."""

from __future__ import annotations

from podlab.kubeapi.store import Store

LABEL = "kubernetes.io/metadata.name"


def labels(store: Store, name: str) -> dict[str, str]:
    return dict(store.get("namespaces", None, name)["metadata"]["labels"])


def test_every_namespace_is_labelled_with_its_name(store: Store) -> None:
    store.create("namespaces", {"metadata": {"name": "x", "labels": {"ns": "x"}}})
    assert labels(store, "x") == {"ns": "x", LABEL: "x"}
    assert labels(store, "default") == {LABEL: "default"}  # those the cluster starts with


def test_a_generated_name_is_the_label(store: Store) -> None:
    made = store.create("namespaces", {"metadata": {"generateName": "netpol-"}})
    assert made["metadata"]["labels"] == {LABEL: made["metadata"]["name"]}


def test_an_update_or_patch_cannot_change_or_remove_it(store: Store) -> None:
    store.create("namespaces", {"metadata": {"name": "x"}})
    ns = store.get("namespaces", None, "x")
    ns["metadata"]["labels"] = {LABEL: "y", "team": "a"}
    store.update("namespaces", ns)
    assert labels(store, "x") == {LABEL: "x", "team": "a"}
    store.patch("namespaces", None, "x", {"metadata": {"labels": {LABEL: None}}}, "merge")
    assert labels(store, "x") == {LABEL: "x", "team": "a"}
